//! PgBouncer pools on `read.db.internal` (`examples/pgbouncer.ini`, one PgBouncer per
//! variant of its DNS settings, side by side in the namespace): their server
//! connections reach only eligible replicas, and when a replica starts lagging each
//! variant is watched for how long it keeps connections to it (PgBouncer's admin
//! console, `SHOW SERVERS`) and sends queries to it (the clients' own
//! `inet_server_addr()`).

use super::*;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// What a variant's settings are expected to do with the lagging replica's
/// connections within the observation window.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Gone from the pool within this long after lagdns dropped the replica.
    Leaves(Duration),
    /// Still pooled (and used) at the end of the window: nothing makes PgBouncer
    /// look the name up again.
    Stays,
}

struct Variant {
    what: &'static str,
    overrides: &'static [(&'static str, &'static str)],
    expect: Expect,
}

const DEFAULTS: &[(&str, &str)] = &[
    ("dns_max_ttl", "15"),
    ("dns_nxdomain_ttl", "15"),
    ("dns_zone_check_period", "0"),
    ("server_lifetime", "3600"),
    ("server_idle_timeout", "600"),
];

const VARIANTS: &[Variant] = &[
    Variant {
        what: "examples/pgbouncer.ini: dns_max_ttl=1 dns_zone_check_period=1 server_lifetime=300",
        overrides: &[],
        expect: Expect::Leaves(Duration::from_secs(8)),
    },
    Variant {
        what: "PgBouncer's defaults: dns_max_ttl=15 dns_zone_check_period=0 server_lifetime=3600",
        overrides: DEFAULTS,
        expect: Expect::Stays,
    },
    Variant {
        what: "dns_max_ttl=1 (zone check off, server_lifetime=3600)",
        overrides: &[
            ("dns_max_ttl", "1"),
            ("dns_zone_check_period", "0"),
            ("server_lifetime", "3600"),
            ("server_idle_timeout", "600"),
        ],
        expect: Expect::Stays,
    },
    Variant {
        what: "dns_max_ttl=1 server_lifetime=5 (zone check off)",
        overrides: &[
            ("dns_max_ttl", "1"),
            ("dns_zone_check_period", "0"),
            ("server_lifetime", "5"),
            ("server_idle_timeout", "600"),
        ],
        expect: Expect::Leaves(Duration::from_secs(12)),
    },
    Variant {
        what: "dns_zone_check_period=1 (dns_max_ttl=15, server_lifetime=3600)",
        overrides: &[
            ("dns_max_ttl", "15"),
            ("dns_zone_check_period", "1"),
            ("server_lifetime", "3600"),
            ("server_idle_timeout", "600"),
        ],
        expect: Expect::Leaves(Duration::from_secs(8)),
    },
];

/// Server connections per pool, and as many clients keeping them all busy.
const POOL: usize = 4;
/// How long the pools are watched after lagdns drops the replica.
const WINDOW: Duration = Duration::from_secs(15);
const FIRST_PORT: u16 = 6432;

/// `examples/pgbouncer.ini` for the test cluster: its PostgreSQL port and database,
/// trust auth with a userlist of its own, the admin console for `postgres`, no unix
/// socket (the directory would be the machine's), the pool size, then `overrides`.
fn ini(example: &str, port: u16, dir: &Path, overrides: &[(&str, &str)]) -> String {
    let pg_port = localpg::port().unwrap().to_string();
    let userlist = dir.join("userlist.txt").display().to_string();
    let pool = POOL.to_string();
    let port = port.to_string();
    let mut set: Vec<(&str, &str)> = vec![
        ("listen_port", &port),
        ("auth_type", "trust"),
        ("auth_file", &userlist),
        ("admin_users", "postgres"),
        ("unix_socket_dir", ""),
        ("default_pool_size", &pool),
    ];
    set.extend_from_slice(overrides);
    let mut out = String::new();
    let mut section = String::new();
    for line in example.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_string();
        }
        let key = t.split('=').next().unwrap_or_default().trim();
        if section == "[pgbouncer]" && set.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let line =
            if section == "[databases]" { line.replace("port=5432", &format!("port={pg_port}")) } else { line.into() };
        out.push_str(&line.replace("dbname=app", "dbname=postgres"));
        out.push('\n');
    }
    assert_eq!(section, "[pgbouncer]", "examples/pgbouncer.ini ends with its [pgbouncer] section");
    for (k, v) in set {
        out.push_str(&format!("{k} = {v}\n"));
    }
    out
}

/// Where the pool's server connections are, by PgBouncer's `SHOW SERVERS`.
#[derive(Debug, Clone)]
struct Servers {
    at: Instant,
    /// (connection id `ptr`, address)
    conns: Vec<(String, String)>,
}

/// One pooled query's server address, as the client saw it.
type Served = (Instant, String);

struct Bouncer {
    variant: &'static Variant,
    port: u16,
    daemon: Daemon,
    servers: Arc<Mutex<Vec<Servers>>>,
    served: Arc<Mutex<Vec<Served>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn connect(port: u16, db: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname={db} connect_timeout=5");
    let (client, conn) = tokio_postgres::connect(&conninfo, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A client of the read pool: one query after another, each noting the server.
async fn client(port: u16, stop: CancellationToken, served: Arc<Mutex<Vec<Served>>>, errors: Arc<Mutex<Vec<String>>>) {
    while !stop.is_cancelled() {
        let c = match connect(port, "app_ro").await {
            Ok(c) => c,
            Err(e) => {
                lock(&errors).push(format!("connect: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while !stop.is_cancelled() {
            match c.simple_query("SELECT host(inet_server_addr()), pg_sleep(0.05)").await {
                Ok(msgs) => {
                    for m in msgs {
                        if let SimpleQueryMessage::Row(r) = m {
                            lock(&served).push((Instant::now(), r.get(0).unwrap_or_default().to_string()));
                        }
                    }
                }
                Err(e) => {
                    lock(&errors).push(format!("query: {e}"));
                    break;
                }
            }
        }
    }
}

/// Polls the admin console's SHOW SERVERS every 100 ms.
async fn watch(port: u16, stop: CancellationToken, servers: Arc<Mutex<Vec<Servers>>>, errors: Arc<Mutex<Vec<String>>>) {
    let mut admin = None;
    while !stop.is_cancelled() {
        if admin.is_none() {
            admin = connect(port, "pgbouncer").await.map_err(|e| lock(&errors).push(format!("admin: {e}"))).ok();
        }
        if let Some(c) = &admin {
            match c.simple_query("SHOW SERVERS").await {
                Ok(msgs) => {
                    let conns = msgs
                        .iter()
                        .filter_map(|m| match m {
                            SimpleQueryMessage::Row(r) if r.get("database") == Some("app_ro") => Some((
                                r.get("ptr").unwrap_or_default().to_string(),
                                r.get("addr").unwrap_or_default().to_string(),
                            )),
                            _ => None,
                        })
                        .collect();
                    lock(&servers).push(Servers { at: Instant::now(), conns });
                }
                Err(e) => {
                    lock(&errors).push(format!("SHOW SERVERS: {e}"));
                    admin = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one pool did with the lagging replica, relative to the moment lagdns
/// stopped answering it.
#[derive(Debug)]
struct Outcome {
    at_drop: usize,
    last_query: Option<Duration>,
    gone: Option<Duration>,
    new_after_drop: usize,
    at_end: Vec<String>,
}

fn since(t: Instant, drop: Instant) -> Option<Duration> {
    t.checked_duration_since(drop)
}

fn outcome(b: &Bouncer, lagging: &str, dropped: Instant) -> Outcome {
    let servers = lock(&b.servers).clone();
    let before: Vec<&Servers> = servers.iter().filter(|s| s.at <= dropped).collect();
    let after: Vec<&Servers> = servers.iter().filter(|s| s.at > dropped).collect();
    let has = |s: &Servers| s.conns.iter().any(|(_, a)| a == lagging);
    let at_drop = before.last().map_or(0, |s| s.conns.iter().filter(|(_, a)| a == lagging).count());
    let known: BTreeSet<&String> = before.iter().flat_map(|s| s.conns.iter().map(|(p, _)| p)).collect();
    let new_after_drop: BTreeSet<&String> = after
        .iter()
        .flat_map(|s| s.conns.iter().filter(|(p, a)| a == lagging && !known.contains(p)).map(|(p, _)| p))
        .collect();
    let gone = match after.iter().rposition(|s| has(s)) {
        None => after.first().and_then(|s| since(s.at, dropped)),
        Some(i) if i + 1 < after.len() => since(after[i + 1].at, dropped),
        Some(_) => None, // still there at the end
    };
    let last_query =
        lock(&b.served).iter().filter(|(_, a)| a == lagging).map(|(t, _)| *t).max().and_then(|t| since(t, dropped));
    let at_end = after.last().map(|s| s.conns.iter().map(|(_, a)| a.clone()).collect()).unwrap_or_default();
    Outcome { at_drop, last_query, gone, new_after_drop: new_after_drop.len(), at_end }
}

fn secs(d: Option<Duration>, none: &str) -> String {
    d.map_or(none.to_string(), |d| format!("+{:.1} s", d.as_secs_f64()))
}

pub(super) async fn run(world: World) {
    let bin = tool("pgbouncer", "pgbouncer");
    let example = std::fs::read_to_string(example("pgbouncer.ini")).unwrap();
    let dir = world.dir.join("pgbouncer");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
    let pg = postgres_account();
    std::os::unix::fs::chown(&dir, Some(pg.0), Some(pg.1)).unwrap();

    // PgBouncer refuses to run as root: as postgres, one per variant.
    let mut bouncers: Vec<Bouncer> = VARIANTS
        .iter()
        .enumerate()
        .map(|(i, variant)| {
            let port = FIRST_PORT + i as u16;
            let conf = dir.join(format!("pgbouncer-{port}.ini"));
            std::fs::write(&conf, ini(&example, port, &dir, variant.overrides)).unwrap();
            let log = dir.join(format!("pgbouncer-{port}.log"));
            let daemon = Daemon::spawn("pgbouncer", Command::new(&bin).arg(&conf).uid(pg.0).gid(pg.1), log);
            Bouncer {
                variant,
                port,
                daemon,
                servers: Default::default(),
                served: Default::default(),
                errors: Default::default(),
            }
        })
        .collect();
    for b in &mut bouncers {
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], b.port))).await.is_err() {
            b.daemon.assert_running();
            assert!(Instant::now() < deadline, "pgbouncer not listening on {}; {}", b.port, b.daemon.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let cluster = &world.stack.cluster;
    let _writes = cluster.node("pg1").start_writer(Duration::from_millis(50));
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for b in &bouncers {
        for _ in 0..POOL {
            tasks.spawn(client(b.port, stop.clone(), b.served.clone(), b.errors.clone()));
        }
        tasks.spawn(watch(b.port, stop.clone(), b.servers.clone(), b.errors.clone()));
    }

    let (primary, lagging, other) =
        (world.addr("pg1").to_string(), world.addr("pg2").to_string(), world.addr("pg3").to_string());
    // Every pool full, with connections on both replicas.
    let warm = Instant::now();
    for b in &mut bouncers {
        loop {
            b.daemon.assert_running();
            let last = lock(&b.servers).last().cloned();
            let addrs: BTreeSet<String> = last.iter().flat_map(|s| s.conns.iter().map(|(_, a)| a.clone())).collect();
            let full = last.as_ref().is_some_and(|s| s.conns.len() == POOL);
            if full && addrs.contains(&lagging) && addrs.contains(&other) {
                break;
            }
            assert!(
                warm.elapsed() < Duration::from_secs(30),
                "{}: its pool never held connections to both replicas: {last:?}; errors {:?}; {}",
                b.variant.what,
                lock(&b.errors),
                b.daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.node("pg2").pause_replay().unwrap();
    let paused = Instant::now();
    world.stack.wait_answer("read.db.internal.", &["pg3"], world.stack.settings.rounds(8)).await;
    let dropped = Instant::now();
    tokio::time::sleep(WINDOW).await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}

    println!(
        "PgBouncer {} pools (pool_mode=transaction, {POOL} server connections each, {POOL} busy clients), \
         host=read.db.internal through Unbound; pg2's replay paused under writes, lagdns stopped answering \
         pg2 {:.1} s later (max_lag 500ms); watched {} s after that:",
        VARIANTS.len(),
        (dropped - paused).as_secs_f64(),
        WINDOW.as_secs()
    );
    let mut failed = Vec::new();
    for b in &mut bouncers {
        b.daemon.assert_running();
        let o = outcome(b, &lagging, dropped);
        println!(
            "  {:<88} pg2 conns at drop {}, last query on pg2 {}, pg2 gone from the pool {}, new pg2 conns after drop {}",
            b.variant.what,
            o.at_drop,
            secs(o.last_query, "none after"),
            secs(o.gone, &format!("no (still pooled at +{} s)", WINDOW.as_secs())),
            o.new_after_drop
        );
        let all_servers = lock(&b.servers).clone();
        if all_servers.iter().any(|s| s.conns.iter().any(|(_, a)| *a == primary))
            || lock(&b.served).iter().any(|(_, a)| *a == primary)
        {
            failed.push(format!("{}: a read-pool connection reached the primary", b.variant.what));
        }
        if o.at_drop == 0 {
            failed.push(format!("{}: no pg2 connection when lagdns dropped pg2", b.variant.what));
        }
        match b.variant.expect {
            Expect::Leaves(within) => {
                if o.gone.is_none_or(|g| g > within) {
                    failed.push(format!("{}: pg2 not gone within {within:?}: {o:?}", b.variant.what));
                }
                if o.at_end.is_empty() || o.at_end.iter().any(|a| *a != other) {
                    failed.push(format!("{}: at the end the pool is not on pg3 only: {o:?}", b.variant.what));
                }
            }
            Expect::Stays => {
                if o.gone.is_some() {
                    failed.push(format!(
                        "{}: pg2 left the pool although nothing should make PgBouncer look again \
                         (did PgBouncer change? then update the README): {o:?}",
                        b.variant.what
                    ));
                }
            }
        }
        let errors = lock(&b.errors).clone();
        if !errors.is_empty() {
            println!("    {} client errors, e.g. {:?}", errors.len(), errors.first());
        }
    }
    if !failed.is_empty() {
        let logs: Vec<String> = bouncers.iter().map(|b| b.daemon.log_text()).collect();
        panic!("{}\n{}", failed.join("\n"), logs.join("\n"));
    }
    drop(bouncers);
    drop(world);
}

/// The postgres account's uid and gid.
fn postgres_account() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns NULL or static storage, copied out at once; this test
    // process runs one test, on one thread, when it calls this.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        assert!(!pw.is_null(), "no postgres account to run PgBouncer as (it refuses root)");
        ((*pw).pw_uid, (*pw).pw_gid)
    }
}

#[test]
fn the_example_config_is_rewritten_only_where_the_test_cluster_differs() {
    let example = std::fs::read_to_string(super::example("pgbouncer.ini")).unwrap();
    let text = ini(&example, 7000, Path::new("/x"), DEFAULTS);
    let port = localpg::port().unwrap();
    assert!(text.contains(&format!("app_ro = host=read.db.internal port={port} dbname=postgres\n")), "{text}");
    assert!(text.contains("pool_mode = transaction"), "{text}");
    for (k, v) in DEFAULTS.iter().chain(&[("listen_port", "7000"), ("auth_type", "trust")]) {
        let lines: Vec<&str> = text.lines().filter(|l| l.split('=').next().unwrap().trim() == *k).collect();
        assert_eq!(lines, vec![format!("{k} = {v}")], "{text}");
    }
}
