//! The README's Unbound recipe against a real Unbound: the shipped snippet
//! (examples/resolvers/unbound.conf) with its stub-addr pointed at an in-process
//! lagdns, and the answers checked through the resolver, cache included; node names
//! and SRV through its query-name minimisation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{self, addrs, eventually, rcode, Settings, Stack};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// The snippet the README tells operators to install.
const SNIPPET: &str = include_str!("../../examples/resolvers/unbound.conf");

/// How long Unbound may keep serving an answer lagdns no longer gives: lagdns' 1 s TTL
/// plus slack for a loaded machine.
const CACHE_MARGIN: Duration = Duration::from_secs(4);

/// The unbound binary, or a failure telling how to get it (never a skip).
pub(crate) fn unbound_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("unbound")).collect::<Vec<_>>())
        .unwrap_or_default();
    let fixed = ["/usr/sbin/unbound", "/usr/local/sbin/unbound"].map(PathBuf::from);
    on_path.into_iter().chain(fixed).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("unbound is not installed: this test needs a real Unbound (`./dev deps` or `./dev test` installs the Debian package `unbound`)")
    })
}

/// The snippet with its example lagdns addresses replaced by `lagdns`: the first
/// `stub-addr:`/`forward-addr:` line is rewritten, the others dropped.
fn delegation(snippet: &str, lagdns: SocketAddr) -> String {
    let mut replaced = false;
    let mut out = String::new();
    for line in snippet.lines() {
        let t = line.trim_start();
        let key = ["stub-addr:", "forward-addr:"].into_iter().find(|k| t.starts_with(k));
        match key {
            Some(_) if replaced => continue,
            Some(k) => {
                out.push_str(&format!("    {k} {}@{}\n", lagdns.ip(), lagdns.port()));
                replaced = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(replaced, "examples/resolvers/unbound.conf has no stub-addr/forward-addr line to point at lagdns");
    out
}

/// A whole Unbound config: the test's process settings (loopback only, foreground, no
/// privileges dropped, files in `dir`, no trust anchor, no remote control), then the
/// shipped snippet.
pub(crate) fn unbound_conf(dir: &Path, port: u16, lagdns: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"server:
    verbosity: 1
    interface: 127.0.0.1
    port: {port}
    interface-automatic: no
    outgoing-interface: 127.0.0.1
    do-ip6: no
    num-threads: 1
    so-reuseport: no
    outgoing-range: 64
    num-queries-per-thread: 32
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: "{d}/unbound.log"
    access-control: 127.0.0.0/8 allow

remote-control:
    control-enable: no

{}"#,
        delegation(SNIPPET, lagdns)
    )
}

/// A running `unbound -d`, killed by PID on drop.
pub(crate) struct Unbound {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
}

impl Unbound {
    /// Writes the config (with `extra` clauses after it) into `dir`, checks it and
    /// starts `unbound -d` on `port`.
    fn spawn(bin: &Path, dir: &Path, port: u16, lagdns: SocketAddr, extra: &str) -> Unbound {
        let conf = dir.join("unbound.conf");
        std::fs::write(&conf, unbound_conf(dir, port, lagdns) + extra).unwrap();
        checkconf(bin, &conf);
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("unbound.stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Unbound { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), dir: dir.to_path_buf() }
    }

    /// Starts Unbound on `port` for a lagdns that is not running yet, and waits only
    /// until it listens (a query for db.internal now would cache lagdns's absence).
    async fn start_before_lagdns(dir: &Path, port: u16, lagdns: SocketAddr) -> Unbound {
        let mut u = Unbound::spawn(&unbound_bin(), dir, port, lagdns, "");
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(u.addr).await.is_err() {
            if let Some(status) = u.child.try_wait().unwrap() {
                panic!("unbound exited early ({status}); {}", u.logs());
            }
            assert!(Instant::now() < deadline, "unbound not listening; {}", u.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        u
    }

    /// Writes the config into `dir`, checks it with `unbound-checkconf` and starts
    /// Unbound on a free port, retrying if another process took the port first.
    async fn start(dir: &Path, lagdns: SocketAddr) -> Unbound {
        Unbound::start_with(dir, lagdns, "").await
    }

    /// [`Unbound::start`] with `extra` config clauses after the shipped snippet (e.g. a
    /// second `server:` clause).
    pub(crate) async fn start_with(dir: &Path, lagdns: SocketAddr, extra: &str) -> Unbound {
        let bin = unbound_bin();
        let mut last = String::new();
        for _ in 0..3 {
            let port = common::free_port();
            let mut u = Unbound::spawn(&bin, dir, port, lagdns, extra);
            match u.wait_answering(Duration::from_secs(15)).await {
                Ok(()) => return u,
                Err(e) => last = e,
            }
        }
        panic!("unbound did not start: {last}");
    }

    /// Polls until Unbound resolves `write.db.internal` (over TCP, which reports a
    /// closed port instead of hanging); `Err` if it exited or never answered.
    async fn wait_answering(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited early ({status}); {}", self.logs()));
            }
            match recursive_query(self.addr, "write.db.internal.", true).await {
                Ok(m) if rcode(&m) == ResponseCode::NoError && !addrs(&m).is_empty() => return Ok(()),
                Ok(m) => return Err(format!("first answer was {:?} {:?}; {}", rcode(&m), addrs(&m), self.logs())),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return Err(format!("no answer within {within:?} ({e}); {}", self.logs())),
            }
        }
    }

    pub(crate) fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("unbound.log:\n{}\nstderr:\n{}", read("unbound.log"), read("unbound.stderr"))
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `unbound-checkconf` on the generated file, when the package ships it (it does on
/// Debian): a broken snippet fails here with Unbound's own message.
pub(crate) fn checkconf(bin: &Path, conf: &Path) {
    let checker = bin.with_file_name("unbound-checkconf");
    if !checker.is_file() {
        return;
    }
    let out = Command::new(&checker).arg(conf).output().unwrap();
    assert!(
        out.status.success(),
        "unbound-checkconf rejects the config built from examples/resolvers/unbound.conf:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One A query with RD set (a resolver refuses the non-recursive queries an
/// authoritative server gets), over TCP or UDP, with a 5 s deadline.
pub(crate) async fn recursive_query(server: SocketAddr, name: &str, tcp: bool) -> std::io::Result<Message> {
    recursive_query_of(server, name, RecordType::A, tcp).await
}

/// [`recursive_query`] for any type.
async fn recursive_query_of(server: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> std::io::Result<Message> {
    let mut msg = Message::query();
    msg.add_query(Query::query(name.parse::<Name>().unwrap(), qtype));
    msg.metadata.recursion_desired = true;
    let bytes = msg.to_vec().unwrap();
    let exchange = async {
        if tcp {
            let mut s = tokio::net::TcpStream::connect(server).await?;
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            s.write_all(&framed).await?;
            let mut buf = vec![0u8; s.read_u16().await? as usize];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        } else {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(server).await?;
            sock.send(&bytes).await?;
            let mut buf = vec![0u8; 65535];
            let n = sock.recv(&mut buf).await?;
            buf.truncate(n);
            Ok::<_, std::io::Error>(buf)
        }
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5 s"))??;
    let resp = Message::from_vec(&reply).map_err(|e| std::io::Error::other(e.to_string()))?;
    assert_eq!(resp.metadata.id, msg.metadata.id, "response id matches");
    Ok(resp)
}

/// Sorted node names answered for `name` A through Unbound, with the response.
async fn via(stack: &Stack, unbound: SocketAddr, name: &str) -> (Message, Vec<String>) {
    let m =
        recursive_query(unbound, name, false).await.unwrap_or_else(|e| panic!("{name} A via unbound {unbound}: {e}"));
    let mut names: Vec<String> = addrs(&m).into_iter().map(|a| stack.name_of(a)).collect();
    names.sort();
    (m, names)
}

/// Waits until Unbound answers `read.db.internal` with exactly `want`.
async fn wait_read_via(stack: &Stack, unbound: SocketAddr, want: &[&str], within: Duration) {
    eventually(within, &format!("read.db.internal via unbound → {want:?}"), || async {
        let (m, names) = via(stack, unbound, "read.db.internal.").await;
        if rcode(&m) == ResponseCode::NoError && names == want {
            Ok(())
        } else {
            Err(format!("{:?} {names:?}", rcode(&m)))
        }
    })
    .await
}

/// A real primary and two replicas behind lagdns (`answers = "all"`), both replicas in
/// `read`, and Unbound in front with the shipped snippet.
async fn stack_behind_unbound() -> (Stack, Unbound) {
    let stack = Stack::start(2, Settings { answers: "all", ..Settings::default() }).await;
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], stack.settings.rounds(6)).await;
    let unbound = Unbound::start(stack.cluster.dir(), stack.dns()).await;
    (stack, unbound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_with_the_shipped_snippet_follows_lagdns() {
    let (mut stack, unbound) = stack_behind_unbound().await;
    let (within, ub) = (stack.settings.rounds(6), unbound.addr);

    // write → the primary, answered by the resolver (RA, not AA) with lagdns' TTL
    let (w, names) = via(&stack, ub, "write.db.internal.").await;
    assert_eq!((rcode(&w), names), (ResponseCode::NoError, vec!["pg1".to_string()]));
    assert_eq!(addrs(&w), vec![stack.addr_of("pg1")]);
    assert!(w.metadata.recursion_available && !w.metadata.authoritative, "answered by unbound, not lagdns: {w:?}");
    assert!(w.answers.iter().all(|r| r.ttl <= 1), "unbound must not stretch the 1 s TTL: {:?}", w.answers);

    // read → replicas only
    let (r, names) = via(&stack, ub, "read.db.internal.").await;
    assert_eq!(rcode(&r), ResponseCode::NoError);
    assert!(!names.is_empty() && names.iter().all(|n| n == "pg2" || n == "pg3"), "{names:?}");

    // a name lagdns does not have
    let (n, names) = via(&stack, ub, "nosuch.db.internal.").await;
    assert_eq!((rcode(&n), names), (ResponseCode::NXDomain, Vec::<String>::new()));

    // pg2 stops replaying while pg1 writes: once lagdns drops it, Unbound's cache
    // follows within the TTL plus a margin; the same when resume brings it back
    wait_read_via(&stack, ub, &["pg2", "pg3"], CACHE_MARGIN).await;
    let _writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(50));
    stack.cluster.node("pg2").pause_replay().unwrap();
    stack.wait_answer("read.db.internal.", &["pg3"], within).await;
    wait_read_via(&stack, ub, &["pg3"], CACHE_MARGIN).await;
    stack.cluster.node("pg2").resume_replay().unwrap();
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], within).await;
    wait_read_via(&stack, ub, &["pg2", "pg3"], CACHE_MARGIN).await;

    drop(unbound);
    stack.shutdown().await;
}

/// SPEC §9: Unbound minimises query names (RFC 9156, on by default), so it asks for
/// `main.db.internal` before `pg2.main.db.internal` and `_tcp.read.db.internal` before
/// the SRV name. An NXDOMAIN there would deny every name below (RFC 8020; Unbound acts
/// on it for signed zones, other resolvers more eagerly); lagdns answers NODATA, and
/// the names below resolve. (With NXDOMAIN instead, this Unbound still resolves them,
/// db.internal being unsigned: the metrics assertion is what fails.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_names_and_srv_resolve_through_unbound_past_the_empty_non_terminals() {
    let (mut stack, unbound) = stack_behind_unbound().await;
    let ub = unbound.addr;

    for node in ["pg1", "pg2", "pg3"] {
        let (m, names) = via(&stack, ub, &format!("{node}.main.db.internal.")).await;
        assert_eq!((rcode(&m), names), (ResponseCode::NoError, vec![node.to_string()]), "{}", unbound.logs());
    }
    let m = recursive_query_of(ub, "_postgresql._tcp.read.db.internal.", RecordType::SRV, false).await.unwrap();
    assert_eq!(rcode(&m), ResponseCode::NoError, "{}", unbound.logs());
    let port = stack.cluster.node("pg1").port;
    let mut got = common::srv(&m);
    got.sort();
    let target = |n: &str| format!("{n}.main.db.internal.");
    assert_eq!(got, [(10, 100, port, target("pg2")), (10, 100, port, target("pg3")), (30, 100, port, target("pg1"))]);

    // the minimised queries reached lagdns, and were answered NODATA
    let (_, metrics) = common::http_get(stack.http(), "/metrics").await;
    let empty: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("lagdns_queries_total{kind=\"empty\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(empty >= 2.0, "no empty non-terminal asked: {metrics}");
    assert!(!metrics.contains("kind=\"unknown\""), "an NXDOMAIN on the way: {metrics}");
    drop(unbound);
    stack.shutdown().await;
}

/// SPEC §3 / issue: a restart must not turn into seconds of SERVFAIL through a resolver
/// that caches it. Unbound runs first; lagdns starts; from the moment its sockets are
/// bound, `write` is asked through Unbound and directly, side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_unbound_a_restart_gives_no_servfail_and_answers_as_soon_as_lagdns_does() {
    let cluster = common::start_cluster(2).await;
    let settings = Settings { ports: (common::free_port(), common::free_port()), ..Settings::default() };
    let lagdns = SocketAddr::from(([127, 0, 0, 1], settings.ports.0));
    let unbound = Unbound::start_before_lagdns(cluster.dir(), common::free_port(), lagdns).await;
    let mut p = common::ServeProcess::spawn(cluster.dir(), &common::config_text(&cluster, &settings), settings.ports);
    p.wait_listening(Duration::from_secs(30)).await;
    let bound = Instant::now();
    let ub = unbound.addr;
    let direct = tokio::spawn(async move {
        loop {
            if let Ok(m) = common::try_query(lagdns, "write.db.internal.").await {
                if rcode(&m) == ResponseCode::NoError {
                    return Instant::now();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut seen = Vec::new();
    let via_unbound = loop {
        let m = recursive_query(ub, "write.db.internal.", false).await.expect("unbound answers");
        seen.push(rcode(&m));
        if rcode(&m) == ResponseCode::NoError {
            assert!(!addrs(&m).is_empty());
            break Instant::now();
        }
        assert!(bound.elapsed() < Duration::from_secs(10), "no answer through unbound: {seen:?}; {}", unbound.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let direct = direct.await.unwrap();
    let failed = seen.iter().filter(|r| **r != ResponseCode::NoError).count();
    assert_eq!(failed, 0, "{failed} failed answers through unbound before the first NOERROR ({:?} …)", seen.first());
    let behind = via_unbound.saturating_duration_since(direct);
    assert!(behind < Duration::from_millis(500), "through unbound {behind:?} after lagdns itself");
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

/// With a node that hangs, the first round cannot finish before probe.timeout: a held
/// query gets its answer (SERVFAIL: the only primary is the hung node) at that time,
/// not later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_hung_primary_the_held_query_gets_servfail_at_probe_timeout() {
    let cluster = common::start_cluster(1).await;
    let primary = cluster.node("pg1");
    primary.freeze().unwrap();
    struct Thaw<'a>(&'a localpg::LocalNode);
    impl Drop for Thaw<'_> {
        fn drop(&mut self) {
            let _ = self.0.thaw();
        }
    }
    let _thaw = Thaw(primary);
    let settings =
        Settings { ports: (common::free_port(), common::free_port()), timeout_ms: 1500, ..Settings::default() };
    let mut p = common::ServeProcess::spawn(cluster.dir(), &common::config_text(&cluster, &settings), settings.ports);
    let spawned = Instant::now();
    p.wait_listening(Duration::from_secs(30)).await;
    let m = common::try_query(p.dns, "write.db.internal.").await.expect("an answer");
    let at = spawned.elapsed();
    assert_eq!(rcode(&m), ResponseCode::ServFail);
    assert!(at >= Duration::from_millis(1400) && at < Duration::from_millis(2600), "SERVFAIL after {at:?}");
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}
