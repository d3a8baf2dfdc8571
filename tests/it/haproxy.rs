//! The README's HAProxy recipe (`examples/haproxy.cfg`, shown verbatim in README.md)
//! with a real HAProxy in front of a real primary and two streaming replicas, routed by
//! an in-process lagdns's checks: HTTP `/check` for the read-write frontend, the agent
//! for the read-only one. Only the example's addresses, ports and stats socket path are
//! replaced. Measures how fast HAProxy follows a paused replica, its resumption and a
//! failover (printed, for the README), with generous bounds in the assertions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::common::{eventually, free_port, http_get, start_cluster, Settings, Stack};
use lagdns::cmd::serve::Server;
use lagdns::config::Config;

/// The config the README shows.
const EXAMPLE: &str = include_str!("../../examples/haproxy.cfg");

/// How long HAProxy may take to follow lagdns's checks, in the assertions (measured:
/// well under; lagdns's own reactions get `Settings::rounds`).
const REACTION: Duration = Duration::from_secs(3);

/// The haproxy binary, or a failure telling how to get it (never a skip).
fn haproxy_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("haproxy")).collect::<Vec<_>>())
        .unwrap_or_default();
    let fixed = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"].map(PathBuf::from);
    on_path.into_iter().chain(fixed).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("haproxy is not installed: this test needs a real HAProxy (`./dev deps` or `./dev test` installs the Debian package `haproxy`)")
    })
}

#[test]
fn the_readme_shows_the_example_verbatim() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains(&format!("```haproxy\n{EXAMPLE}```\n")), "README.md shows examples/haproxy.cfg verbatim");
}

/// The example with `subs` (its addresses, ports, the stats socket) replaced; each
/// must be there.
fn configured(subs: &[(&str, String)]) -> String {
    let mut text = EXAMPLE.to_string();
    for (from, to) in subs {
        assert!(text.contains(from), "examples/haproxy.cfg has no {from:?} to point at the test's");
        text = text.replace(from, to);
    }
    text
}

/// `haproxy -f cfg -db` in the foreground, in a directory of its own; killed on drop.
struct HaProxy {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl HaProxy {
    fn start(dir: &Path, config: &str) -> HaProxy {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap();
        let checked = Command::new(haproxy_bin()).arg("-c").arg("-f").arg(&cfg).output().unwrap();
        assert!(
            checked.status.success(),
            "haproxy -c rejects the config built from examples/haproxy.cfg:\n{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new(haproxy_bin())
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        HaProxy { child, dir: dir.to_path_buf(), socket: dir.join("admin.sock") }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }

    /// `show stat` on the stats socket: every server of every backend.
    async fn servers(&mut self) -> Result<Vec<Srv>, String> {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("haproxy exited ({status}); log:\n{}", self.log());
        }
        let mut s = tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| format!("stats socket: {e}"))?;
        s.write_all(b"show stat\n").await.map_err(|e| e.to_string())?;
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut text))
            .await
            .map_err(|_| "show stat: no answer".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(parse_stat(&text))
    }

    /// The servers of `backend` taking new connections now.
    async fn serving(&mut self, backend: &str) -> Result<Vec<String>, String> {
        let servers = self.servers().await?;
        Ok(servers.iter().filter(|s| s.backend == backend && s.serving()).map(|s| s.name.clone()).collect())
    }

    /// Polls lagdns's `check` until it answers `code` (within `lagdns_within`), then
    /// HAProxy until `backend` serves `want` (within [`REACTION`] of that): how long
    /// each took from now.
    async fn react(
        &mut self,
        http: SocketAddr,
        (check, code, lagdns_within): (&str, u16, Duration),
        backend: &str,
        want: &[&str],
    ) -> (Duration, Duration) {
        let started = Instant::now();
        let lagdns = time_until(lagdns_within, || async { http_get(http, check).await.0 == code }).await;
        let lagdns = lagdns.unwrap_or_else(|| panic!("{check} did not answer {code} within {lagdns_within:?}"));
        self.wait_serving(backend, want, REACTION).await;
        (lagdns, started.elapsed())
    }

    /// Polls until `backend`'s serving servers are `want`; returns how long that took.
    async fn wait_serving(&mut self, backend: &str, want: &[&str], within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let got = self.serving(backend).await;
            if got.as_ref().is_ok_and(|g| g == want) {
                return started.elapsed();
            }
            if started.elapsed() > within {
                let all = self.servers().await.unwrap_or_default();
                panic!("{backend}: serving {got:?}, want {want:?} within {within:?}; servers {all:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server row of `show stat`.
#[derive(Debug, Clone, PartialEq)]
struct Srv {
    backend: String,
    name: String,
    /// `UP`, `DOWN`, `DRAIN (agent)`, `DOWN (agent)`, `UP 1/2` (going down), ...
    status: String,
    weight: u32,
}

impl Srv {
    /// Takes new connections: up (also while going down) with a weight.
    fn serving(&self) -> bool {
        self.status.starts_with("UP") && self.weight > 0
    }
}

fn parse_stat(text: &str) -> Vec<Srv> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    let (px, sv, status, weight) = (col("pxname"), col("svname"), col("status"), col("weight"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > weight && !["FRONTEND", "BACKEND"].contains(&f[sv]))
        .map(|f| Srv {
            backend: f[px].to_string(),
            name: f[sv].to_string(),
            status: f[status].to_string(),
            weight: f[weight].parse().unwrap_or(0),
        })
        .collect()
}

/// Connects through HAProxy's frontend on `port`: the node that answers (by its
/// address) and whether it is in recovery.
async fn land(stack: &Stack, port: u16) -> Result<(String, bool), String> {
    let dsn = format!("host=127.0.0.1 port={port} user=lagdns dbname=postgres connect_timeout=3");
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one("SELECT host(inet_server_addr()), pg_is_in_recovery()", &[])
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    let _ = task.await;
    let (addr, in_recovery): (String, bool) = (row.get(0), row.get(1));
    Ok((stack.name_of(addr.parse().map_err(|e| format!("{addr}: {e}"))?), in_recovery))
}

/// `n` new connections through the frontend on `port`: the nodes they reached, sorted
/// and deduplicated; panics if one reached a node whose recovery state is not
/// `in_recovery`.
async fn landings(stack: &Stack, port: u16, n: usize, in_recovery: bool) -> Vec<String> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        let (node, recovery) = land(stack, port).await.unwrap_or_else(|e| panic!("through port {port}: {e}"));
        assert_eq!(recovery, in_recovery, "{node} through port {port}");
        nodes.push(node);
    }
    nodes.sort();
    nodes.dedup();
    nodes
}

/// A real cluster with lagdns serving it, the agent listener on too.
async fn stack_with_agent(settings: Settings) -> Stack {
    let cluster = start_cluster(2).await;
    let plain = crate::common::config_text(&cluster, &settings);
    let http = "[http]\nlisten = \"127.0.0.1:0\"\n";
    assert!(plain.contains(http), "the test config's [http] table");
    let text = plain.replacen(http, &format!("{http}agent_listen = \"127.0.0.1:0\"\n"), 1);
    let config = Config::parse(&text, "haproxy-test.toml").expect("test config is valid");
    let server = Server::start(config).await.expect("lagdns starts");
    assert!(server.agent_addr.is_some(), "the agent listener is bound");
    Stack { server: Some(server), settings, cluster }
}

/// How long until `check` first holds, polling every 20 ms; `None` after `within`.
async fn time_until<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() <= within {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_routes_by_lagdns_checks_through_paused_replay_and_failover() {
    haproxy_bin();
    let mut stack = stack_with_agent(Settings { answers: "all", ..Settings::default() }).await;
    let s = stack.settings.clone();
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], s.rounds(4)).await;
    let (http, agent) = (stack.http(), stack.server().agent_addr.unwrap());
    let (rw, ro) = (free_port(), free_port());
    let node = |n: &str| stack.cluster.node(n).socket_addr().to_string();
    let dir = stack.cluster.dir().join("haproxy");
    let config = configured(&[
        ("/run/haproxy/admin.sock", dir.join("admin.sock").display().to_string()),
        ("bind :5000", format!("bind 127.0.0.1:{rw}")),
        ("bind :5001", format!("bind 127.0.0.1:{ro}")),
        ("check addr 127.0.0.1 port 8053", format!("check addr {} port {}", http.ip(), http.port())),
        ("agent-addr 127.0.0.1 agent-port 8054", format!("agent-addr {} agent-port {}", agent.ip(), agent.port())),
        ("10.0.0.11:5432", node("pg1")),
        ("10.0.0.12:5432", node("pg2")),
        ("10.0.0.13:5432", node("pg3")),
    ]);
    let mut haproxy = HaProxy::start(&dir, &config);
    eventually(Duration::from_secs(10), "HAProxy's stats socket", || {
        let socket = haproxy.socket.clone();
        async move { tokio::net::UnixStream::connect(&socket).await.map(|_| ()).map_err(|e| e.to_string()) }
    })
    .await;
    haproxy.wait_serving("primary", &["pg1"], Duration::from_secs(10)).await;
    haproxy.wait_serving("replicas", &["pg2", "pg3"], Duration::from_secs(10)).await;
    let servers = haproxy.servers().await.unwrap();
    let pg1_ro = servers.iter().find(|x| x.backend == "replicas" && x.name == "pg1").unwrap();
    assert_eq!(pg1_ro.status, "DRAIN (agent)", "the primary is drained from the read-only frontend");

    // rw reaches the primary; ro only the eligible replicas, both of them
    assert_eq!(landings(&stack, rw, 3, false).await, ["pg1"]);
    assert_eq!(landings(&stack, ro, 8, true).await, ["pg2", "pg3"]);

    // pg2's replay paused while the primary writes: out of the read-only frontend
    let writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(50));
    stack.cluster.node("pg2").pause_replay().unwrap();
    let (lagdns, out) = haproxy.react(http, ("/check/main/read/pg2", 503, s.rounds(4)), "replicas", &["pg3"]).await;
    eprintln!(
        "paused replay: lagdns's /check says 503 after {lagdns:?}; out of HAProxy's read-only backend after {out:?}"
    );
    assert_eq!(landings(&stack, ro, 8, true).await, ["pg3"], "new connections avoid the lagging replica");
    // a check with its own, looser bound still takes it
    let (code, strict) = http_get(http, "/check/main/read/pg2").await;
    assert!(code == 503 && strict.contains(" ineligible: lag "), "{code} {strict}");
    let (code, loose) = http_get(http, "/check/main/read/pg2?max_lag=30s").await;
    assert!(code == 200 && loose.ends_with(" eligible\n"), "{code} {loose}");
    eprint!("paused replay: /check/main/read/pg2 → 503 {strict}paused replay: ?max_lag=30s → 200 {loose}");
    assert_eq!(landings(&stack, rw, 2, false).await, ["pg1"]);

    // resumed: back
    stack.cluster.node("pg2").resume_replay().unwrap();
    let (lagdns, back) =
        haproxy.react(http, ("/check/main/read/pg2", 200, s.rounds(4)), "replicas", &["pg2", "pg3"]).await;
    eprintln!(
        "resumed replay: lagdns's /check says 200 after {lagdns:?}; back in HAProxy's read-only backend after {back:?}"
    );
    let seen = eventually(Duration::from_secs(5), "a new read-only connection on pg2", || async {
        let nodes = landings(&stack, ro, 4, true).await;
        if nodes.contains(&"pg2".to_string()) {
            Ok(nodes)
        } else {
            Err(format!("{nodes:?}"))
        }
    });
    seen.await;

    // failover: the primary stops, pg2 is promoted; the read-write frontend follows
    drop(writer);
    stack.cluster.node("pg1").stop().unwrap();
    let stopped = Instant::now();
    stack.cluster.node("pg2").promote().unwrap();
    let promoted = stopped.elapsed();
    let (lagdns, moved) = haproxy.react(http, ("/check/main/write/pg2", 200, s.rounds(4)), "primary", &["pg2"]).await;
    eprintln!(
        "failover: promote took {promoted:?} after pg1 stopped; then lagdns's /check says 200 for pg2 after \
         {lagdns:?}, HAProxy's read-write backend moved to pg2 after {moved:?}"
    );
    assert_eq!(landings(&stack, rw, 3, false).await, ["pg2"]);
    // the new primary leaves the read-only frontend; pg3 is on the old timeline and
    // the old primary is down, so nothing qualifies there any more
    let ro_empty = haproxy.wait_serving("replicas", &[], REACTION).await;
    eprintln!("failover: HAProxy's read-only backend emptied {ro_empty:?} after the move");
    // the new primary drained, the old one down in both backends
    let deadline = Instant::now() + REACTION;
    loop {
        let servers = haproxy.servers().await.unwrap();
        let status = |b: &str, n: &str| servers.iter().find(|x| x.backend == b && x.name == n).unwrap().status.clone();
        let (pg2_ro, pg1_ro, pg1_rw) = (status("replicas", "pg2"), status("replicas", "pg1"), status("primary", "pg1"));
        if pg2_ro == "DRAIN (agent)" && pg1_ro.starts_with("DOWN") && pg1_rw.starts_with("DOWN") {
            break;
        }
        assert!(Instant::now() < deadline, "after the failover: {servers:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(haproxy);
    stack.shutdown().await;
}

/// A stats line as HAProxy 2.6 prints it parses into the servers.
#[test]
fn stat_lines_parse() {
    let text = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act\n\
                replicas,FRONTEND,,,0,0,,0,0,0,0,0,0,,,,,OPEN,,\n\
                replicas,pg1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN (agent),100,1\n\
                replicas,pg2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,50,1\n\
                replicas,BACKEND,0,0,0,0,,0,0,0,0,0,,0,0,0,0,UP,150,2\n";
    let servers = parse_stat(text);
    assert_eq!(servers.len(), 2);
    assert_eq!((servers[0].name.as_str(), servers[0].serving()), ("pg1", false));
    assert_eq!((servers[1].status.as_str(), servers[1].weight, servers[1].serving()), ("UP", 50, true));
}
