//! Probe cost at scale (run with `bench/probe-cost [reps] [window-seconds]` or
//! `cargo bench --bench probe_cost -- 5 10`): what probing costs lagdns and the
//! PostgreSQL servers with ~1,000 configured nodes, against 3, in one run.
//!
//! One real local cluster (primary pg1, replicas pg2 and pg3; `max_connections` raised
//! to fit), pg1 committing an INSERT every 10 ms with `synchronous_commit = on` (as in
//! benches/reaction.rs). For each size (default 1 and 333 clusters;
//! `LAGDNS_PROBE_COST_CLUSTERS=1,111,333` for others), the optimized `lagdns serve`
//! binary (cargo's bench profile: release without LTO) runs as a child process with
//! clusters `c0001`, `c0002`, ... of three nodes each, all pointing at the same three
//! servers (a primary and two replicas per cluster; `read-c0001`, `write-c0001`, ...),
//! probe interval 250ms, timeout 1s, fall 2, rise 2, max_lag 100ms, `answers = "all"`.
//!
//! Start: lagdns is started with the whole config (a cold start, as after a restart) and
//! given 30 s until every swept cluster's `read` names both replicas; printed: how long
//! it took, how many probes failed meanwhile, and how many connections each server
//! received (forked a backend for: `log_connections` lines "connection received") and
//! authorized. If the cold start is not ready by then, that lagdns is stopped and, once
//! the servers are quiet again, another is started with 37 clusters and grown by SIGHUP
//! reloads of 37 clusters more each (each step waits until its clusters are ready), so
//! the steady state can still be measured. Once every cluster's `read` names both
//! replicas and a warm-up has passed, over a steady window (10 s, no DNS queries) it
//! measures:
//!
//! * lagdns: CPU per second and per node per round, as the time its threads ran
//!   (/proc/<pid>/task/*/schedstat, in ns: a 3-node lagdns uses less than the 10 ms
//!   tick of utime + stime, which is printed beside it), and the time they waited for
//!   a CPU (the machine is shared); RSS (VmRSS, VmHWM), threads, fds; probes per node
//!   per second and mean probe duration from its /metrics (`lagdns_probes_total`,
//!   `lagdns_probe_duration_seconds_total`).
//! * each PostgreSQL server: the probes connect to a database of their own
//!   (`probe_cost`), so its rows count only lagdns: the statements it executes per
//!   second (Δ Σ calls in pg_stat_statements, loaded for this run), its new sessions
//!   per second (Δ pg_stat_database.sessions) and its client backends in
//!   pg_stat_activity (beside all client backends); the connections it received and
//!   authorized per second (its log); and the CPU of the server's processes (the live
//!   postmaster tree's utime + stime plus the postmaster's cutime + cstime, which holds
//!   its exited backends', from /proc), against a baseline window with the writer but no
//!   lagdns.
//!   pg_stat_database's xact_commit + xact_rollback is printed too, but PostgreSQL 15
//!   does not count the probes there while they run: a backend flushes its database
//!   counters only along with table (or function, WAL, SLRU) statistics, and the probe
//!   reads no table, so its transactions reach pg_stat_database only when the
//!   connection closes (pgstat_report_stat returns early on an empty pending list).
//!
//! Then the reaction, as benches/reaction.rs measures it: pg2's replay is paused while
//! pg1 writes; its true lag passes max_lag at pause + max_lag (the pause instant is taken
//! before the pause is sent); measured from then to the last `read` answer naming pg2,
//! polled every 2 ms on one cluster (the middle one), and for up to 34 clusters spread
//! over the config (every k-th, the watched one included) by a sweep that asks them all
//! every 10 ms: the slowest of those per repetition. Repeated `reps` times (default 5);
//! median and worst are printed per size, and the comparison with 3 nodes at the end.
//! A reaction that does not come within 10 s is printed as `>10000` (and counted as
//! 10 s); a repetition whose clusters are not all ready before the pause is skipped.
//! The benchmark reports a slow server rather than stopping.
//!
//! `LAGDNS_BIN=path` measures another lagdns binary (an older build, say);
//! `LAGDNS_PROBE_COST_KEEP=1` keeps each lagdns's config and log.

// Measures real elapsed times of real processes (std Instant): no tokio clock here.
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use localpg::{LocalCluster, LocalNode};

const INTERVAL_MS: u64 = 250;
const TIMEOUT_MS: u64 = 1000;
const FALL: u64 = 2;
const RISE: u64 = 2;
const MAX_LAG_MS: u64 = 100;
const WRITE_EVERY: Duration = Duration::from_millis(10);
const WARM_UP: Duration = Duration::from_secs(3);
/// Clusters the sweep asks, at most, and how often it asks them.
const SWEEP_MAX: usize = 34;
const SWEEP_EVERY: Duration = Duration::from_millis(10);
/// Connections a server keeps beyond one per cluster (writer, psql, a lagdns exiting).
const SPARE_CONNECTIONS: u32 = 40;
/// The database the probes connect to (see the header).
const PROBE_DB: &str = "probe_cost";
/// How long a reaction or readiness is waited for.
const REACTION_LIMIT: Duration = Duration::from_secs(10);
const READY_LIMIT: Duration = Duration::from_secs(30);
/// Clusters added per reload when a cold start is not ready within [`READY_LIMIT`].
const RAMP_STEP: usize = 37;
/// Linux's USER_HZ: /proc/<pid>/stat counts CPU in 1/100 s.
const TICK_MS: f64 = 10.0;

fn main() {
    let nums: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let reps = nums.first().copied().unwrap_or(5).clamp(1, 50) as usize;
    let window = Duration::from_secs(nums.get(1).copied().unwrap_or(10).clamp(1, 120));
    let sizes: Vec<usize> = std::env::var("LAGDNS_PROBE_COST_CLUSTERS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).filter(|&n| (1..=3000).contains(&n)).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 333]);
    let most = *sizes.iter().max().expect("a size");
    let max_connections = most as u32 + SPARE_CONNECTIONS;
    println!(
        "lagdns probe-cost benchmark: interval {INTERVAL_MS}ms, timeout {TIMEOUT_MS}ms, fall {FALL}, rise {RISE}, \
         max_lag {MAX_LAG_MS}ms, answers \"all\"; clusters of 3 nodes on the same 3 servers: {sizes:?}; \
         window {} s after {} s warm-up; {reps} reaction repetitions; load average {}",
        window.as_secs(),
        WARM_UP.as_secs(),
        loadavg()
    );
    let started = Instant::now();
    let cluster = LocalCluster::builder(2).max_connections(max_connections).start().expect("local cluster");
    let pg1 = cluster.node("pg1");
    pg1.sql("ALTER SYSTEM SET synchronous_commit = on").expect("synchronous_commit");
    pg1.sql("SELECT pg_reload_conf()").expect("reload");
    pg1.sql(&format!("CREATE DATABASE {PROBE_DB}")).expect("create the probes' database");
    let version = pg1.sql("SHOW server_version").unwrap_or_default();
    let servers: Vec<&LocalNode> = cluster.nodes().iter().collect();
    load_pg_stat_statements(&servers);
    for s in &servers[1..] {
        s.wait_sql("the probes' database replayed", &db_exists(), "t", Duration::from_secs(30)).expect("replayed");
    }
    println!(
        "PostgreSQL {version}: {} (pg1 primary), max_connections {max_connections}; probes use database {PROBE_DB}",
        servers.iter().map(|n| format!("{} {}", n.name, n.address)).collect::<Vec<_>>().join(", ")
    );
    let writer = pg1.start_writer(WRITE_EVERY);
    std::thread::sleep(Duration::from_secs(1));
    let baseline = baseline(&servers, Duration::from_secs(5));
    println!(
        "writer: an INSERT every {} ms on pg1; baseline without lagdns (5 s): server CPU {}",
        WRITE_EVERY.as_millis(),
        servers.iter().zip(&baseline).map(|(n, b)| format!("{} {b:.1} ms/s", n.name)).collect::<Vec<_>>().join(", ")
    );

    let mut rows = Vec::new();
    for &n in &sizes {
        rows.push(measure(&cluster, n, window, reps, &baseline));
    }
    drop(writer);
    drop(cluster);
    compare(&rows);
    println!("total time {:.0} s; load average {}", started.elapsed().as_secs_f64(), loadavg());
}

/// What one size measured.
struct Row {
    nodes: usize,
    cpu_ms_per_s: f64,
    reaction_one: Vec<Option<f64>>,
    reaction_sweep: Vec<Option<f64>>,
}

fn measure(cluster: &LocalCluster, clusters: usize, window: Duration, reps: usize, baseline: &[f64]) -> Row {
    let nodes = clusters * 3;
    println!("\n== {clusters} cluster(s), {nodes} nodes ==");
    let servers: Vec<&LocalNode> = cluster.nodes().iter().collect();
    let (pg2, pg3) = (cluster.node("pg2"), cluster.node("pg3"));
    let (a2, a3) = (IpAddr::V4(pg2.address), IpAddr::V4(pg3.address));
    let both = |g: &[IpAddr]| g.contains(&a2) && g.contains(&a3);

    let logged: Vec<(u64, u64)> = servers.iter().map(|s| connections_logged(s)).collect();
    let t0 = Instant::now();
    let mut lagdns = Lagdns::spawn(cluster, clusters, clusters);
    let ready = Sweep::new(lagdns.dns, clusters).until_all(READY_LIMIT, both);
    let took = t0.elapsed().as_secs_f64();
    let metrics = lagdns.metrics();
    println!(
        "cold start, lagdns pid {}: {} {took:.1} s after spawn; {} failed probes of {}; RSS {}",
        lagdns.pid(),
        match ready {
            Ok(()) => "every swept read-c* names pg2 and pg3".to_string(),
            Err(bad) => format!("NOT READY: {bad} swept read names do not name pg2 and pg3"),
        },
        metric_sum(&metrics, "lagdns_probe_errors_total"),
        metric_sum(&metrics, "lagdns_probes_total"),
        lagdns.rss_line()
    );
    for (s, (received, authorized)) in servers.iter().zip(&logged) {
        let (r, a) = connections_logged(s);
        let (r, a) = (r - received, a - authorized);
        println!(
            "  {:<4} received {r} connections ({:.0}/s), authorized {a} ({:.0}/s)",
            s.name,
            r as f64 / took,
            a as f64 / took
        );
    }
    if ready.is_err() && clusters > RAMP_STEP {
        drop(lagdns);
        let quiet = wait_quiet(&servers, Duration::from_secs(60));
        println!("stopped it; servers quiet (no backend of lagdns's) after {quiet:.1} s");
        let t0 = Instant::now();
        lagdns = Lagdns::spawn(cluster, clusters, RAMP_STEP);
        let (mut n, mut steps_ready) = (RAMP_STEP, true);
        loop {
            if let Err(bad) = Sweep::new(lagdns.dns, n).until_all(READY_LIMIT, both) {
                println!("  ramp: {bad} swept read names of the first {n} clusters not ready; going on");
                steps_ready = false;
            }
            if n == clusters {
                break;
            }
            n = (n + RAMP_STEP).min(clusters);
            lagdns.reload(cluster, n);
        }
        let metrics = lagdns.metrics();
        println!(
            "ramped up, lagdns pid {}: {clusters} clusters by reloads of {RAMP_STEP}, {}, in {:.1} s; \
             {} failed probes of {}",
            lagdns.pid(),
            if steps_ready { "every step ready" } else { "NOT every step ready" },
            t0.elapsed().as_secs_f64(),
            metric_sum(&metrics, "lagdns_probe_errors_total"),
            metric_sum(&metrics, "lagdns_probes_total"),
        );
    }
    let sweep = Sweep::new(lagdns.dns, clusters);
    std::thread::sleep(WARM_UP);

    // The steady window: no DNS queries, only probes (and the writer on pg1).
    let before = Sample::take(&lagdns, &servers);
    std::thread::sleep(window);
    let after = Sample::take(&lagdns, &servers);
    let secs = after.at.duration_since(before.at).as_secs_f64();
    let ticks = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
    let cpu_ms_per_s = after.run_ns.saturating_sub(before.run_ns) as f64 / 1e6 / secs;
    let wait_ms_per_s = after.wait_ns.saturating_sub(before.wait_ns) as f64 / 1e6 / secs;
    let probes = after.probes - before.probes;
    let errors = after.probe_errors - before.probe_errors;
    let probe_ms = if probes > 0.0 { (after.probe_seconds - before.probe_seconds) / probes * 1e3 } else { f64::NAN };
    let rounds_per_s = probes / nodes as f64 / secs;
    let per_round_us = cpu_ms_per_s * 1e3 / (nodes as f64 * 1e3 / INTERVAL_MS as f64);
    println!(
        "lagdns CPU {cpu_ms_per_s:.1} ms/s = {per_round_us:.1} µs per node per round (utime+stime {:.0} ms/s), \
         waited for a CPU {wait_ms_per_s:.1} ms/s; RSS {}; threads {}, fds {}",
        ticks * TICK_MS / secs,
        lagdns.rss_line(),
        lagdns.threads(),
        lagdns.fds()
    );
    println!(
        "probes: {:.2} per node per s (configured {:.2}), {errors} failed; mean probe {probe_ms:.2} ms; \
         lagdns CPU per probe done {:.1} µs",
        rounds_per_s,
        1e3 / INTERVAL_MS as f64,
        if probes > 0.0 { cpu_ms_per_s * secs * 1e3 / probes } else { f64::NAN }
    );
    for (k, node) in servers.iter().enumerate() {
        let (b, a) = (&before.servers[k], &after.servers[k]);
        let dt = a.at.duration_since(b.at).as_secs_f64();
        let calls = (a.calls - b.calls) as f64 / dt;
        let cpu = a.cpu.saturating_sub(b.cpu) as f64 * TICK_MS / dt;
        println!(
            "  {:<4} lagdns: {:>7.1} queries/s ({:.2} per connection), {:>4} connections (of {:>4} client backends), \
             {:>5.2} new sessions/s, pg_stat_database {:>5.1} xacts/s; all clients: {:.1} connections received/s, \
             {:.1} authorized/s; server CPU {:>6.1} ms/s (baseline {:.1})",
            node.name,
            calls,
            if a.lagdns > 0 { calls / a.lagdns as f64 } else { f64::NAN },
            a.lagdns,
            a.clients,
            (a.sessions - b.sessions) as f64 / dt,
            (a.xacts - b.xacts) as f64 / dt,
            (a.received - b.received) as f64 / dt,
            (a.authorized - b.authorized) as f64 / dt,
            cpu,
            baseline[k]
        );
    }

    // The reaction: pause pg2's replay while pg1 writes.
    let watched = clusters.div_ceil(2);
    let one = Client::new(lagdns.dns);
    let name = read_name(watched);
    let (mut reaction_one, mut reaction_sweep) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let mut ready = sweep.until_all(READY_LIMIT, both);
        if ready.is_ok() {
            std::thread::sleep(Duration::from_millis(300 + (rep as u64 * 37) % 250)); // vary the phase
            ready = sweep.until_all(Duration::from_secs(5), both);
        }
        if let Err(bad) = ready {
            println!("  repetition {rep} skipped: {bad} swept read names do not name both replicas");
            continue;
        }
        let paused = Instant::now();
        let gone = |g: &[IpAddr]| !g.contains(&a2) && !g.is_empty();
        let (last_one, last_all) = std::thread::scope(|sc| {
            sc.spawn(|| pg2.pause_replay().expect("pause replay"));
            let swept = sc.spawn(|| sweep.watch(a2, paused, REACTION_LIMIT, gone));
            let last = one.watch(&name, a2, paused, REACTION_LIMIT, gone);
            (last, swept.join().expect("sweep"))
        });
        let crossed = paused + Duration::from_millis(MAX_LAG_MS);
        let ms = |last: Instant| last.saturating_duration_since(crossed).as_secs_f64() * 1e3;
        reaction_one.push(last_one.map(ms));
        reaction_sweep.push(last_all.map(|all| ms(all.into_iter().max().unwrap_or(paused))));
        pg2.resume_replay().expect("resume replay");
    }
    summary(&format!("lag passes max_lag → last read naming it (c{watched:04})"), &reaction_one);
    summary(
        &format!("  slowest of {} clusters (sweep every {} ms)", sweep.names.len(), SWEEP_EVERY.as_millis()),
        &reaction_sweep,
    );
    println!("lagdns after the reactions: RSS {}; load average {}", lagdns.rss_line(), loadavg());
    drop(lagdns);
    Row { nodes, cpu_ms_per_s, reaction_one, reaction_sweep }
}

/// The figures of every size against the first (the smallest, normally 3 nodes).
fn compare(rows: &[Row]) {
    let Some(base) = rows.iter().min_by_key(|r| r.nodes) else { return };
    println!("\n== summary (against {} nodes) ==", base.nodes);
    let (bm, bw) = (median(&base.reaction_one), worst(&base.reaction_one));
    let per_round = |r: &Row| r.cpu_ms_per_s * 1e3 / (r.nodes as f64 * 1e3 / INTERVAL_MS as f64);
    for r in rows {
        let (m, w) = (median(&r.reaction_one), worst(&r.reaction_one));
        let (sm, sw) = (median(&r.reaction_sweep), worst(&r.reaction_sweep));
        let within = m - bm <= INTERVAL_MS as f64 && w - bw <= INTERVAL_MS as f64;
        println!(
            "{:>5} nodes: lagdns CPU {:>7.1} ms/s, {:>6.1} µs per node per round ({:>6.2}× {} nodes'); \
             reaction median {m:>5.0} worst {w:>5.0} ms (Δ {:+.0} / {:+.0} ms vs {} nodes: {}); \
             slowest swept: median {sm:.0}, worst {sw:.0} ms",
            r.nodes,
            r.cpu_ms_per_s,
            per_round(r),
            per_round(r) / per_round(base),
            base.nodes,
            m - bm,
            w - bw,
            base.nodes,
            if within { "within one interval" } else { "MORE than one interval" }
        );
    }
}

fn read_name(cluster: usize) -> String {
    format!("read-c{cluster:04}.db.internal.")
}

/// The lagdns config: `clusters` clusters of the cluster's three servers.
fn config_text(cluster: &LocalCluster, clusters: usize) -> String {
    let mut t = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"db.internal\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [probe]\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"{TIMEOUT_MS}ms\"\nfall = {FALL}\nrise = {RISE}\n"
    );
    for c in 1..=clusters {
        t += &format!(
            "\n[[cluster]]\nname = \"c{c:04}\"\nread = \"read-c{c:04}\"\nwrite = \"write-c{c:04}\"\n\
             max_lag = \"{MAX_LAG_MS}ms\"\nanswers = \"all\"\n"
        );
        for n in cluster.nodes() {
            t += &n.config_table(100).replace("dbname=postgres", &format!("dbname={PROBE_DB}"));
        }
    }
    t
}

fn db_exists() -> String {
    format!(
        "SELECT count(*) = 2 FROM pg_database WHERE datname = '{PROBE_DB}' \
         OR datname = 'postgres' AND EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements')"
    )
}

/// pg_stat_statements on every server (a restart each; replicas stream again after),
/// its view in the `postgres` database the sampling queries run in.
fn load_pg_stat_statements(servers: &[&LocalNode]) {
    for s in servers {
        s.sql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'").expect("preload");
        s.sql("ALTER SYSTEM SET log_connections = on").expect("log_connections");
        s.stop().expect("stop");
        s.start().expect("start");
    }
    for s in &servers[1..] {
        s.wait_streaming(Duration::from_secs(30)).expect("streaming again");
    }
    servers[0].sql("CREATE EXTENSION pg_stat_statements").expect("pg_stat_statements");
}

/// Each server's CPU in ms/s over `window` without lagdns (the writer runs).
fn baseline(servers: &[&LocalNode], window: Duration) -> Vec<f64> {
    let before: Vec<(Instant, u64)> = servers.iter().map(|s| (Instant::now(), server_cpu(s))).collect();
    std::thread::sleep(window);
    before
        .iter()
        .zip(servers)
        .map(|((at, b), s)| server_cpu(s).saturating_sub(*b) as f64 * TICK_MS / at.elapsed().as_secs_f64())
        .collect()
}

/// CPU ticks the server has used so far: its live processes' utime + stime, and the
/// postmaster's cutime + cstime (what its reaped backends used).
fn server_cpu(node: &LocalNode) -> u64 {
    let Some(pid) = node.postmaster_pid() else { return 0 };
    let procs = all_procs();
    let mine = tree(&procs, pid);
    let live: u64 = procs.iter().filter(|p| mine.contains(&p.0)).map(|p| p.2).sum();
    live + procs.iter().find(|p| p.0 == pid).map_or(0, |p| p.3)
}

/// Lines "connection received" and "connection authorized" in the server's log so far.
fn connections_logged(node: &LocalNode) -> (u64, u64) {
    let text = std::fs::read(node.log_path()).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let count = |what: &str| text.lines().filter(|l| l.contains(what)).count() as u64;
    (count("connection received: "), count("connection authorized: "))
}

/// Waits until no server has a backend in the probes' database; the seconds it took.
fn wait_quiet(servers: &[&LocalNode], within: Duration) -> f64 {
    let t0 = Instant::now();
    let q = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{PROBE_DB}'");
    while t0.elapsed() < within {
        if servers.iter().all(|s| s.sql(&q).is_ok_and(|n| n == "0")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    t0.elapsed().as_secs_f64()
}

/// Everything read at one end of the window.
struct Sample {
    at: Instant,
    cpu_ticks: u64,
    run_ns: u64,
    wait_ns: u64,
    probes: f64,
    probe_errors: f64,
    probe_seconds: f64,
    servers: Vec<ServerSample>,
}

impl Sample {
    fn take(lagdns: &Lagdns, servers: &[&LocalNode]) -> Sample {
        let metrics = lagdns.metrics();
        let at = Instant::now();
        let (cpu_ticks, (run_ns, wait_ns)) = (lagdns.cpu_ticks(), lagdns.schedstat());
        let servers = servers.iter().map(|s| ServerSample::take(s)).collect();
        Sample {
            at,
            cpu_ticks,
            run_ns,
            wait_ns,
            probes: metric_sum(&metrics, "lagdns_probes_total"),
            probe_errors: metric_sum(&metrics, "lagdns_probe_errors_total"),
            probe_seconds: metric_sum(&metrics, "lagdns_probe_duration_seconds_total"),
            servers,
        }
    }
}

/// One server's counters: one psql session, one query.
struct ServerSample {
    at: Instant,
    /// Of the probes' database: statements executed, pg_stat_database's transactions
    /// and sessions, client backends.
    calls: i64,
    xacts: i64,
    sessions: i64,
    lagdns: i64,
    clients: i64,
    /// From the log: connections received (a backend forked) and authorized, so far.
    received: u64,
    authorized: u64,
    /// CPU ticks (see [`server_cpu`]).
    cpu: u64,
}

/// Run from the `postgres` database: the probes' database counts only lagdns.
fn sample_sql() -> String {
    format!(
        "SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '{PROBE_DB}')), \
         (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{PROBE_DB}'), \
         (SELECT sessions FROM pg_stat_database WHERE datname = '{PROBE_DB}'), \
         (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = '{PROBE_DB}'), \
         (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
    )
}

impl ServerSample {
    fn take(node: &LocalNode) -> ServerSample {
        let cpu = server_cpu(node);
        let (received, authorized) = connections_logged(node);
        let at = Instant::now();
        let out = node.sql(&sample_sql()).expect("sample pg_stat_*");
        let f: Vec<i64> = out.split('|').map(|v| v.trim().parse().unwrap_or(0)).collect();
        assert_eq!(f.len(), 5, "{}: {out:?}", node.name);
        ServerSample {
            at,
            calls: f[0],
            xacts: f[1],
            sessions: f[2],
            lagdns: f[3],
            clients: f[4],
            received,
            authorized,
            cpu,
        }
    }
}

/// Every process: pid, ppid, utime + stime, cutime + cstime (proc_pid_stat(5) fields
/// 4, 14 + 15, 16 + 17).
fn all_procs() -> Vec<(u32, u32, u64, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect(); // f[0] is field 3, the state
            let ppid = f.get(4 - 3)?.parse().ok()?;
            let field = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
            Some((pid, ppid, field(14)? + field(15)?, field(16)? + field(17)?))
        })
        .collect()
}

/// `root` and all its descendants among `procs`.
fn tree(procs: &[(u32, u32, u64, u64)], root: u32) -> HashSet<u32> {
    let mut mine: HashSet<u32> = HashSet::from([root]);
    loop {
        let before = mine.len();
        for (pid, ppid, _, _) in procs {
            if mine.contains(ppid) {
                mine.insert(*pid);
            }
        }
        if mine.len() == before {
            return mine;
        }
    }
}

/// lagdns processes started so far: names their directories.
static SPAWNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `lagdns serve` (the optimized binary cargo bench builds) as a child process, on loopback ports it picks;
/// SIGTERM (by pid) then SIGKILL on drop, and SIGTERM from the kernel if this process
/// dies first (PR_SET_PDEATHSIG).
struct Lagdns {
    child: Child,
    dir: PathBuf,
    dns: SocketAddr,
    http: SocketAddr,
}

impl Lagdns {
    /// Started with the first `first` clusters (`clusters` when they grow by reloads
    /// names its directory).
    fn spawn(cluster: &LocalCluster, clusters: usize, first: usize) -> Lagdns {
        let k = SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lagdns-probe-cost-{}-{clusters}-{k}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (config, log) = (dir.join("probe-cost.toml"), dir.join("lagdns.log"));
        std::fs::write(&config, config_text(cluster, first)).unwrap();
        let bin =
            std::env::var_os("LAGDNS_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lagdns")), PathBuf::from);
        let mut cmd = Command::new(bin);
        cmd.args(["--log-format", "json", "--log-level", "info", "serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        // SAFETY: prctl(2) is async-signal-safe; it only sets this child's death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start lagdns serve");
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut me = Lagdns { child, dir, dns: unbound, http: unbound };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some((dns, http)) = text.lines().find_map(serving) {
                (me.dns, me.http) = (dns, http);
                return me;
            }
            assert!(me.alive(), "lagdns exited; log:\n{text}");
            assert!(Instant::now() < deadline, "lagdns did not log \"serving\" within 60 s; log:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Rewrites the config with the first `clusters` clusters and sends SIGHUP.
    fn reload(&self, cluster: &LocalCluster, clusters: usize) {
        std::fs::write(self.dir.join("probe-cost.toml"), config_text(cluster, clusters)).unwrap();
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn proc_file(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.pid())).unwrap_or_default()
    }

    /// A `/proc/<pid>/status` field (VmRSS, VmHWM in KiB; Threads).
    fn status_field(&self, key: &str) -> u64 {
        self.proc_file("status")
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn rss_line(&self) -> String {
        format!("{} (peak {})", mib(self.status_field("VmRSS")), mib(self.status_field("VmHWM")))
    }

    fn threads(&self) -> u64 {
        self.status_field("Threads")
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// utime + stime of the whole process (fields 14 and 15 of proc_pid_stat(5),
    /// counted among all the fields: some, like tpgid, may be -1).
    fn cpu_ticks(&self) -> u64 {
        let stat = self.proc_file("stat");
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let f: Vec<&str> = rest.split_whitespace().collect(); // f[0] is field 3, the state
        let field = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        field(14) + field(15)
    }

    /// Summed over its threads (schedstat(5)): (ns spent on a CPU, ns spent runnable
    /// but waiting for one).
    fn schedstat(&self) -> (u64, u64) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else { return (0, 0) };
        tasks.flatten().filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok()).fold(
            (0, 0),
            |(run, wait), s| {
                let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
                (run + f.next().unwrap_or(0), wait + f.next().unwrap_or(0))
            },
        )
    }

    /// The /metrics text (a plain HTTP/1.1 GET).
    fn metrics(&self) -> String {
        let mut tcp = TcpStream::connect_timeout(&self.http, Duration::from_secs(5)).expect("connect to /metrics");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(tcp, "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http).unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).expect("read /metrics");
        text
    }
}

impl Drop for Lagdns {
    fn drop(&mut self) {
        if self.alive() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.alive() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        if std::thread::panicking() || std::env::var_os("LAGDNS_PROBE_COST_KEEP").is_some() {
            eprintln!("lagdns's config and log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The DNS and HTTP addresses from lagdns's JSON "serving" log line.
fn serving(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "serving" {
        return None;
    }
    let dns = v["dns"].as_str()?.trim_matches(['[', ']']).split(',').next()?.trim().parse().ok()?;
    Some((dns, v["http"].as_str()?.parse().ok()?))
}

/// The sum of every sample of `name` (all label sets) in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn query(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(name.parse::<Name>().unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// The response's id and its A addresses.
fn addresses(bytes: &[u8]) -> Option<(u16, Vec<IpAddr>)> {
    let resp = Message::from_vec(bytes).ok()?;
    let addrs = resp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    Some((resp.metadata.id, addrs))
}

/// One name asked every 2 ms (as benches/reaction.rs does).
struct Client {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Client {
    fn new(server: SocketAddr) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        Client { sock, server }
    }

    /// The addresses answered for `name` A (empty on error or timeout).
    fn ask(&self, name: &str) -> Vec<IpAddr> {
        let _ = self.sock.send_to(&query(name, 1), self.server);
        let mut buf = [0u8; 4096];
        let Ok(n) = self.sock.recv(&mut buf) else { return vec![] };
        addresses(&buf[..n]).map(|(_, a)| a).unwrap_or_default()
    }

    /// Polls `name` every 2 ms until `done(answer)`; returns the last instant at which
    /// `named` was still answered (or `since` if never); None if `done` did not hold
    /// within `within`.
    fn watch(
        &self,
        name: &str,
        named: IpAddr,
        since: Instant,
        within: Duration,
        done: impl Fn(&[IpAddr]) -> bool,
    ) -> Option<Instant> {
        let mut last = since;
        loop {
            let got = self.ask(name);
            let now = Instant::now();
            if got.contains(&named) {
                last = now;
            }
            if done(&got) {
                return Some(last);
            }
            if now >= since + within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Up to [`SWEEP_MAX`] clusters' `read` names asked together (one burst, answers
/// matched by id), every [`SWEEP_EVERY`].
struct Sweep {
    sock: UdpSocket,
    server: SocketAddr,
    names: Vec<String>,
}

impl Sweep {
    fn new(server: SocketAddr, clusters: usize) -> Sweep {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let step = clusters.div_ceil(SWEEP_MAX).max(1);
        let watched = clusters.div_ceil(2);
        let mut picked: Vec<usize> = (1..=clusters).step_by(step).collect();
        if !picked.contains(&watched) {
            picked.push(watched);
        }
        Sweep { sock, server, names: picked.into_iter().map(read_name).collect() }
    }

    /// One round: every name asked; the answers (None: no answer within 500 ms).
    fn round(&self) -> Vec<Option<Vec<IpAddr>>> {
        for (i, name) in self.names.iter().enumerate() {
            let _ = self.sock.send_to(&query(name, i as u16), self.server);
        }
        let mut got: Vec<Option<Vec<IpAddr>>> = vec![None; self.names.len()];
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut buf = [0u8; 4096];
        while got.iter().any(Option::is_none) && Instant::now() < deadline {
            let Ok(n) = self.sock.recv(&mut buf) else { continue };
            if let Some((id, addrs)) = addresses(&buf[..n]) {
                if let Some(slot) = got.get_mut(id as usize) {
                    *slot = Some(addrs);
                }
            }
        }
        got
    }

    /// Rounds until every name's answer satisfies `ok`; after `within`, how many do not.
    fn until_all(&self, within: Duration, ok: impl Fn(&[IpAddr]) -> bool) -> Result<(), usize> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.round();
            let bad = got.iter().filter(|g| !g.as_deref().is_some_and(&ok)).count();
            if bad == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(bad);
            }
            std::thread::sleep(SWEEP_EVERY);
        }
    }

    /// Rounds until every name is `done`; per name, the last instant an answer still
    /// named `named` (or `since`); None if some name was not done within `within`.
    fn watch(
        &self,
        named: IpAddr,
        since: Instant,
        within: Duration,
        done: impl Fn(&[IpAddr]) -> bool,
    ) -> Option<Vec<Instant>> {
        let mut last = vec![since; self.names.len()];
        let mut finished = vec![false; self.names.len()];
        loop {
            let got = self.round();
            let now = Instant::now();
            for (i, g) in got.iter().enumerate() {
                let Some(g) = g else { continue };
                if g.contains(&named) {
                    last[i] = now;
                }
                finished[i] = finished[i] || done(g);
            }
            if finished.iter().all(|f| *f) {
                return Some(last);
            }
            if now >= since + within {
                return None;
            }
            std::thread::sleep(SWEEP_EVERY);
        }
    }
}

/// A timed-out reaction counts as [`REACTION_LIMIT`]; NaN if there is none.
fn values(ms: &[Option<f64>]) -> Vec<f64> {
    ms.iter().map(|v| v.unwrap_or(REACTION_LIMIT.as_secs_f64() * 1e3)).collect()
}

fn median(ms: &[Option<f64>]) -> f64 {
    let mut v = values(ms);
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn worst(ms: &[Option<f64>]) -> f64 {
    values(ms).into_iter().fold(f64::NAN, f64::max)
}

fn summary(label: &str, ms: &[Option<f64>]) {
    let limit = REACTION_LIMIT.as_millis();
    let all: Vec<String> = ms.iter().map(|v| v.map_or(format!(">{limit}"), |v| format!("{v:.0}"))).collect();
    if ms.is_empty() {
        println!("{label:<52} n=0   (every repetition skipped)");
        return;
    }
    println!(
        "{label:<52} n={:<3} median {:>5.0} ms  worst {:>5.0} ms  [{}]",
        ms.len(),
        median(ms),
        worst(ms),
        all.join(" ")
    );
}

/// The machine's 1-minute load average (others' builds share these cores).
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_string()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
