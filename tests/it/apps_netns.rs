//! Real clients through the real system resolver, in the production shape: psql
//! (libpq), Python with psycopg 3 (`examples/read_your_writes.py`), the libpq recipe
//! (`examples/read_your_writes.sh`) and PgBouncer (`examples/pgbouncer.ini`) resolve
//! `write`, `read` and `lsn-` names like any application — glibc's getaddrinfo, or
//! PgBouncer's c-ares — through a real Unbound on 127.0.0.1:53 that delegates
//! `db.internal` to lagdns with `examples/resolvers/unbound.conf`, and connect to a real
//! cluster.
//!
//! How: each test here re-executes this test binary as its inside half
//! (`inside::<same name>`, `#[ignore]`d so that an ordinary run passes it by) under
//! `unshare --net --mount --fork`. The new network namespace has a loopback of its own
//! (Unbound takes port 53, lagdns 5353, PgBouncer 6432.., and nothing on the machine
//! is touched or in the way); in the new mount namespace a small `sh` script
//! ([`SETUP`]) brings `lo` up and bind-mounts over the machine's files, for the
//! namespace only (and adds 127.0.1.1 to `lo`, standing in for the host's own address
//! that glibc's AI_ADDRCONFIG looks for): `/etc/resolv.conf` (`nameserver 127.0.0.1`), `/etc/hosts`
//! (localhost only, so no stray entry answers a name) and `/etc/nsswitch.conf` (the
//! machine's, with `hosts: files dns`: no systemd-resolved, mDNS or LDAP module), and
//! it hides a running nscd's socket (glibc would ask it, and it resolves in the
//! machine's namespace). Inside run the cluster (localpg: its 127.77.n.x addresses are
//! the namespace's loopback, all of 127/8), lagdns (in-process), Unbound, PgBouncer and
//! the clients; when the inside half ends the namespace goes with it. The pid
//! namespace is shared on purpose: localpg's slots record pids that every other
//! process on the machine must be able to check. Daemons started inside get
//! `PR_SET_PDEATHSIG`, so a killed run leaves none behind (localpg reclaims its
//! postmasters itself).
//!
//! Everything these tests need is real and a missing piece fails them with the reason,
//! never a skip: `unshare` and `ip`, a machine that allows namespaces (root or
//! CAP_SYS_ADMIN; unshare's own error is shown), Unbound, psql, PgBouncer, and
//! psycopg for `/usr/bin/python3` (`./dev deps` installs the packages). Each test
//! prints its figures (run with `--nocapture` to see them).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::common::{eventually, Settings, Stack};
use crate::resolver_unbound;

/// Set for the inside half: the outer test's network namespace (`/proc/self/ns/net`).
const MARK: &str = "LAGDNS_APPS_NETNS";
/// Set for the inside half: the outer test's scratch directory.
const DIR: &str = "LAGDNS_APPS_DIR";

/// The libpq connection strings the README gives applications (everything else from
/// libpq's environment: PGPORT, PGUSER, PGDATABASE, PGPASSWORD, ...).
pub(crate) const WRITE_CONNINFO: &str = "host=write.db.internal target_session_attrs=read-write";
pub(crate) const READ_CONNINFO: &str = "host=read.db.internal";

/// Run by `unshare` in the new namespaces as `sh -c SETUP lagdns-netns DIR CMD...`.
const SETUP: &str = r#"set -eu
dir=$1
shift
ip link set lo up
# glibc's AI_ADDRCONFIG (getent, and many programs) sees no IPv4 on a host whose only
# one is 127.0.0.1 and then answers nothing without asking DNS; a networked host
# always has another: a second loopback address stands in for it.
ip addr add 127.0.1.1/32 dev lo
[ -e /etc/resolv.conf ] || { echo "no /etc/resolv.conf to mount over" >&2; exit 1; }
mount --bind "$dir/resolv.conf" /etc/resolv.conf
[ ! -e /etc/hosts ] || mount --bind "$dir/hosts" /etc/hosts
[ ! -e /etc/nsswitch.conf ] || mount --bind "$dir/nsswitch.conf" /etc/nsswitch.conf
# glibc asks a running nscd through its socket, which works across network
# namespaces: an empty directory over it makes glibc resolve by itself.
[ ! -d /var/run/nscd ] || mount -t tmpfs -o size=64k lagdns-no-nscd /var/run/nscd
exec "$@"
"#;

/// How long one inside half may take before it is killed.
const INSIDE_DEADLINE: Duration = Duration::from_secs(360);

macro_rules! in_a_namespace {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {$(
        $(#[doc = $doc])*
        #[test]
        fn $name() {
            run_inside(stringify!($name));
        }
    )*};
}

in_a_namespace! {
    /// psql through getaddrinfo: `write` is the primary, `read` a replica, and after a
    /// promotion a new `write` connection reaches the new primary.
    psql_reaches_the_primary_and_a_replica_by_name_and_follows_a_promotion,
    /// psycopg (examples/read_your_writes.py) and psql (examples/read_your_writes.sh)
    /// read every row they wrote through `lsn-` names; the figures say how often a
    /// replica served it.
    psycopg_and_psql_read_their_writes_through_lsn_names,
    /// PgBouncer pools on `read.db.internal` reach only eligible replicas and, with the
    /// right settings, leave a replica that starts lagging; measured per setting.
    pgbouncer_read_pool_leaves_a_lagging_replica,
}

// ---------------------------------------------------------------------------------
// The outer half: namespaces and the re-executed test binary

/// `name` on PATH or in /usr/sbin and /sbin, or a failure saying where it comes from.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let fixed = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    path.into_iter().chain(fixed).map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("{name} is not installed: these tests need it (Debian package {package}; `./dev deps` installs it)")
    })
}

/// This process's network namespace, e.g. `net:[4026531840]`.
fn netns() -> String {
    std::fs::read_link("/proc/self/ns/net").map(|p| p.display().to_string()).unwrap_or_default()
}

/// A directory of its own under /tmp, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lagdns-apps-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The machine's nsswitch.conf with its `hosts:` line made `files dns`.
fn nsswitch() -> String {
    let machine = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let mut out: String =
        machine.lines().filter(|l| !l.trim_start().starts_with("hosts:")).map(|l| format!("{l}\n")).collect();
    out.push_str("hosts:          files dns\n");
    out
}

/// Runs `inside::<test>` in a new network and mount namespace and fails with its
/// output if it fails; its output (figures included) is printed either way.
fn run_inside(test: &str) {
    let unshare = tool("unshare", "util-linux");
    tool("ip", "iproute2");
    let scratch = Scratch::new();
    scratch.write("resolv.conf", "nameserver 127.0.0.1\n");
    scratch.write("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    scratch.write("nsswitch.conf", &nsswitch());
    let out_path = scratch.0.join("inside.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let exe = std::env::current_exe().unwrap();
    let filter = format!("apps_netns::inside::{test}");
    let mut cmd = Command::new(&unshare);
    cmd.args(["--net", "--mount", "--propagation", "private", "--fork", "--kill-child", "--"])
        .args(["/bin/sh", "-c", SETUP, "lagdns-netns"])
        .arg(&scratch.0)
        .arg(&exe)
        .args(["--exact", &filter, "--ignored", "--nocapture", "--test-threads=1"])
        .env(MARK, netns())
        .env(DIR, &scratch.0)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours. The test thread
    // that spawns unshare waits for it, so the signal fires only if this process dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", unshare.display()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > INSIDE_DEADLINE {
            let _ = child.kill(); // unshare, by pid; --kill-child takes the inside half with it
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    for line in output.lines() {
        println!("  netns| {line}");
    }
    println!("{test}: {:.1} s in its namespace", started.elapsed().as_secs_f64());
    let tail: String = {
        let lines: Vec<&str> = output.lines().collect();
        lines[lines.len().saturating_sub(120)..].join("\n")
    };
    let Some(status) = status else {
        panic!("{test}: the inside half did not finish within {INSIDE_DEADLINE:?}; its output:\n{tail}");
    };
    if !status.success() && (output.contains("unshare failed") || output.starts_with("unshare: ")) {
        panic!(
            "{test}: this machine does not allow a network and mount namespace here (these tests need \
             root or CAP_SYS_ADMIN, and no seccomp filter refusing unshare(2)):\n{tail}"
        );
    }
    assert!(status.success(), "{test}: the inside half failed ({status}); its output:\n{tail}");
    assert!(
        output.contains("test result: ok. 1 passed"),
        "{test}: the inside half ran no test (is `{filter}` still its name?):\n{tail}"
    );
}

// ---------------------------------------------------------------------------------
// The inside half's world: the cluster, lagdns, Unbound, the system resolver

/// The scratch directory, after checking that this really is the inside half.
fn namespace_dir() -> PathBuf {
    let outer = std::env::var(MARK).unwrap_or_else(|_| {
        panic!("this is the inside half of an apps_netns test: run the test of the same name outside `inside`")
    });
    assert_ne!(netns(), outer, "the inside half runs in a network namespace of its own");
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(resolv.trim(), "nameserver 127.0.0.1", "/etc/resolv.conf inside the namespace");
    PathBuf::from(std::env::var_os(DIR).expect("the scratch directory"))
}

/// A process started inside the namespace, killed (by its pid) on drop; it also gets
/// SIGKILL if the thread that spawned it ends, so spawn from the test's own thread.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
        // SAFETY: prctl is async-signal-safe; it runs after std's setuid, so it stays set.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Daemon { name, child, log }
    }

    fn log_text(&self) -> String {
        format!(
            "{} log ({}):\n{}",
            self.name,
            self.log.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// Fails with the log if the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}); {}", self.name, self.log_text());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A cluster (pg1 primary, pg2 and pg3 replicas), lagdns on 127.0.0.1:5353 and Unbound
/// on 127.0.0.1:53 delegating db.internal to it with the shipped snippet; the system
/// resolver already answers through them.
struct World {
    dir: PathBuf,
    stack: Stack,
    unbound: Daemon,
}

impl World {
    async fn start(settings: Settings) -> World {
        let dir = namespace_dir();
        let stack = Stack::start(2, Settings { ports: (5353, 8053), ..settings }).await;
        let within = stack.settings.rounds(8);
        stack.wait_answer("write.db.internal.", &["pg1"], within).await;
        let all = stack.settings.answers == "all";
        eventually(within, "read.db.internal answers the replicas", || async {
            let (rcode, names) = stack.answer("read.db.internal.").await;
            let replicas = !names.is_empty() && names.iter().all(|n| n == "pg2" || n == "pg3");
            if replicas && (!all || names.len() == 2) {
                Ok(())
            } else {
                Err(format!("{rcode:?} {names:?}"))
            }
        })
        .await;
        let bin = resolver_unbound::unbound_bin();
        let conf = dir.join("unbound.conf");
        std::fs::write(&conf, resolver_unbound::unbound_conf(&dir, 53, stack.dns())).unwrap();
        resolver_unbound::checkconf(&bin, &conf);
        let unbound =
            Daemon::spawn("unbound", Command::new(&bin).arg("-d").arg("-c").arg(&conf), dir.join("unbound.err"));
        let mut world = World { dir, stack, unbound };
        let primary = world.addr("pg1");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            world.unbound.assert_running();
            match getent("write.db.internal") {
                Ok(a) if a == vec![primary] => break,
                got if Instant::now() > deadline => panic!(
                    "getent ahostsv4 write.db.internal (glibc through unbound) never gave {primary}: {got:?}\n{}\n{}",
                    world.unbound.log_text(),
                    std::fs::read_to_string(world.dir.join("unbound.log")).unwrap_or_default()
                ),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        world
    }

    fn addr(&self, node: &str) -> IpAddr {
        self.stack.addr_of(node)
    }

    /// Node name of an address text as the server reports it.
    fn node_of(&self, addr: &str) -> String {
        addr.parse().map(|a| self.stack.name_of(a)).unwrap_or_else(|_| addr.to_string())
    }
}

/// The IPv4 addresses glibc's getaddrinfo gives for `name` (`getent ahostsv4`).
fn getent(name: &str) -> Result<Vec<IpAddr>, String> {
    let out = Command::new("getent").args(["ahostsv4", name]).output().map_err(|e| format!("getent: {e}"))?;
    if !out.status.success() {
        return Err(format!("getent ahostsv4 {name}: {}", out.status));
    }
    let mut addrs: Vec<IpAddr> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    addrs.dedup();
    Ok(addrs)
}

/// libpq's environment for the test cluster, and nothing else of the caller's.
fn pg_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGPASSFILE",
        "PGPASSWORD",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGTARGETSESSIONATTRS",
        "PGAPPNAME",
    ] {
        cmd.env_remove(var);
    }
    let port = localpg::port().expect("the cluster's port");
    cmd.env("PGPORT", port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "postgres")
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
}

fn psql_bin() -> PathBuf {
    localpg::bin_dir()
        .map(|d| d.join("psql"))
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| tool("psql", "postgresql-client"))
}

/// `psql -d CONNINFO -c SQL` (unaligned, tuples only): its output, or its error.
fn psql(conninfo: &str, sql: &str) -> Result<String, String> {
    let out =
        pg_env(Command::new(psql_bin()).args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql]))
            .output()
            .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

const WHO: &str = "SELECT pg_is_in_recovery(), host(inet_server_addr())";

// ---------------------------------------------------------------------------------
// The inside halves

mod inside {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "the inside half of the test of the same name, which runs it in a namespace"]
    async fn psql_reaches_the_primary_and_a_replica_by_name_and_follows_a_promotion() {
        let world = World::start(Settings::default()).await;
        let (pg1, pg2) = (world.addr("pg1"), world.addr("pg2"));

        let w = psql(WRITE_CONNINFO, WHO).expect("psql to write.db.internal");
        assert_eq!(w, format!("f|{pg1}"), "write.db.internal reaches the primary");

        // At once, then spread over time: a resolver hands every client the same
        // `answers = 1` pick for the 1 s TTL.
        for (n, every) in [(10, Duration::ZERO), (12, Duration::from_millis(500))] {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for _ in 0..n {
                let r = psql(READ_CONNINFO, WHO).expect("psql to read.db.internal");
                let (in_recovery, addr) = r.split_once('|').unwrap_or_else(|| panic!("{r:?}"));
                let node = world.node_of(addr);
                assert!(in_recovery == "t" && (node == "pg2" || node == "pg3"), "read.db.internal reached {r:?}");
                *seen.entry(node).or_default() += 1;
                tokio::time::sleep(every).await;
            }
            println!("psql, {n} new connections to {READ_CONNINFO:?}, {} s apart: {seen:?}", every.as_secs_f64());
        }

        let cluster = &world.stack.cluster;
        cluster.node("pg1").stop().unwrap();
        let stopped = Instant::now();
        cluster.node("pg2").promote().unwrap();
        let promoted = Instant::now();
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        let reached = loop {
            match psql(WRITE_CONNINFO, WHO) {
                Ok(w) if w == format!("f|{pg2}") => break Instant::now(),
                Ok(other) => *failures.entry(format!("reached {other}")).or_default() += 1,
                Err(e) => *failures.entry(e.lines().next().unwrap_or_default().to_string()).or_default() += 1,
            }
            assert!(promoted.elapsed() < Duration::from_secs(30), "write never reached pg2: {failures:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "promotion: pg1 stopped, pg2 promoted {:.2} s later; the first new connection to {WRITE_CONNINFO:?} \
             on pg2 {:.2} s after the promotion ({:.2} s after the stop); failed attempts before it (every 100 ms): {failures:?}",
            (promoted - stopped).as_secs_f64(),
            (reached - promoted).as_secs_f64(),
            (reached - stopped).as_secs_f64(),
        );
        assert_eq!(getent("write.db.internal"), Ok(vec![pg2]));
        drop(world);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "the inside half of the test of the same name, which runs it in a namespace"]
    async fn psycopg_and_psql_read_their_writes_through_lsn_names() {
        let world = World::start(Settings::default()).await;
        let pg1 = world.stack.cluster.node("pg1");
        pg1.sql("CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)").unwrap();
        let _load = pg1.start_writer(Duration::from_millis(50)); // the rest of the application

        let python = python_with_psycopg();
        for (rounds, pause) in [(50, "0"), (20, "0.3")] {
            let out = pg_env(Command::new(&python).arg(example("read_your_writes.py")).args([
                "--rounds",
                &rounds.to_string(),
                "--pause",
                pause,
            ]))
            .output()
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            assert!(
                out.status.success(),
                "read_your_writes.py --rounds {rounds} --pause {pause}: {}\n{text}",
                out.status
            );
            let lines: Vec<serde_json::Value> =
                stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
            let mut on: BTreeMap<String, usize> = BTreeMap::new();
            for round in &lines[..lines.len() - 1] {
                assert_eq!(round["found"], true, "{round}");
                let node = world.node_of(round["server"].as_str().unwrap());
                assert_eq!(round["address"], round["server"], "read where the name pointed: {round}");
                assert_eq!(round["replica"], node != "pg1", "{round}");
                assert!(round["name"].as_str().unwrap().starts_with("lsn-"), "{round}");
                *on.entry(node).or_default() += 1;
            }
            let summary = &lines[lines.len() - 1]["summary"];
            assert_eq!(summary["rounds"], rounds, "{text}");
            assert_eq!(summary["missed"], 0, "{text}");
            println!(
                "psycopg, {rounds} rounds, read {pause} s after the write: {} on a replica, {} on the primary, \
                 0 missed ({on:?})",
                summary["replica"], summary["primary"]
            );
        }

        let mut on: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..10 {
            let body = format!("from sh {i}");
            let out = pg_env(Command::new("sh").arg(example("read_your_writes.sh")).arg(&body)).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(out.status.success(), "read_your_writes.sh: {stdout}{}", String::from_utf8_lossy(&out.stderr));
            let fields: Vec<&str> = stdout.split('|').collect();
            assert_eq!(fields.len(), 4, "{stdout}");
            assert_eq!(fields[1], body);
            let node = world.node_of(fields[3]);
            assert_eq!(fields[2] == "t", node != "pg1", "{stdout}");
            *on.entry(node).or_default() += 1;
        }
        println!("psql (examples/read_your_writes.sh), 10 rounds, read at once: 0 missed ({on:?})");
        drop(world);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "the inside half of the test of the same name, which runs it in a namespace"]
    async fn pgbouncer_read_pool_leaves_a_lagging_replica() {
        super::pgbouncer::run(World::start(Settings { answers: "all", ..Settings::default() }).await).await;
    }
}

/// A python3 that has psycopg 3: Debian's /usr/bin/python3 first (python3-psycopg is
/// installed for it), then the one on PATH.
fn python_with_psycopg() -> PathBuf {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| Command::new(p).args(["-c", "import psycopg"]).output().is_ok_and(|o| o.status.success()))
        .unwrap_or_else(|| {
            panic!(
                "no python3 that can import psycopg (3): this test needs Debian's python3-psycopg for \
                 /usr/bin/python3 (`./dev deps` installs it)"
            )
        })
}

mod pgbouncer;

/// The README's recipes are the files and strings these tests run.
#[test]
fn the_readme_shows_the_recipes_the_tests_run() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for s in [WRITE_CONNINFO, READ_CONNINFO] {
        assert!(readme.contains(s), "README.md shows the connection string {s:?}");
    }
    // Each block that starts with a comment naming an example file is an excerpt of
    // that file: its lines appear there, in order.
    let mut excerpts = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("\n```") {
        let after = &rest[start + 4..];
        let Some(body_start) = after.find('\n') else { break };
        let Some(end) = after[body_start..].find("\n```") else { break };
        let body = &after[body_start + 1..body_start + end];
        rest = &after[body_start + end + 4..];
        let first = body.lines().next().unwrap_or_default();
        let Some(file) = ["# ", "; ", ";; "]
            .iter()
            .find_map(|p| first.strip_prefix(p))
            .and_then(|f| f.strip_prefix("examples/"))
            .map(|f| f.split_whitespace().next().unwrap_or_default())
        else {
            continue;
        };
        let text =
            std::fs::read_to_string(example(file)).unwrap_or_else(|e| panic!("README names examples/{file}: {e}"));
        let mut lines = text.lines();
        for want in body.lines().skip(1).filter(|l| !l.trim().is_empty() && l.trim() != "...") {
            assert!(
                lines.any(|l| l == want),
                "README's excerpt of examples/{file}: line {want:?} is not in the file (in this order)"
            );
        }
        excerpts += 1;
    }
    assert!(excerpts >= 3, "README has excerpts of read_your_writes.py, read_your_writes.sh and pgbouncer.ini");
}
