//! Reaction benchmark on a real cluster (run with `bench/reaction` or
//! `cargo bench --bench reaction`): how long after a fault `read`/`write` still
//! answered the wrong node. Prints median and worst over N repetitions (default 10).
//!
//! * lag: a replica's replay is paused while the primary writes every 10 ms (with
//!   `synchronous_commit = on`, PostgreSQL's default); its true
//!   lag passes `max_lag` at pause + `max_lag` (the pause instant is taken *before*
//!   the pause is sent, so the figure errs on the slow side). Measured: from then to
//!   the last `read` answer that still named it.
//! * freeze: SIGSTOP of a replica's processes → the last `read` answer naming it.
//! * promotion: the primary is stopped, a replica promoted (`pg_ctl promote -w`
//!   returned) → the first `write` answer naming the new primary.

// Measures real reaction times of real processes from synchronous code (std Instant);
// there is no tokio clock here to pause.
#![allow(clippy::disallowed_methods)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use lagdns::cmd::serve::Server;
use lagdns::config::Config;
use localpg::LocalCluster;

const INTERVAL_MS: u64 = 250;
const TIMEOUT_MS: u64 = 1000;
const FALL: u64 = 2;
const MAX_LAG_MS: u64 = 100;

fn config(cluster: &LocalCluster) -> Config {
    let mut t = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"db.internal\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [probe]\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"{TIMEOUT_MS}ms\"\nfall = {FALL}\nrise = 2\n\
         [[cluster]]\nname = \"main\"\nmax_lag = \"{MAX_LAG_MS}ms\"\nanswers = \"all\"\n"
    );
    for n in cluster.nodes() {
        t += &n.config_table(100);
    }
    Config::parse(&t, "bench.toml").expect("bench config")
}

struct Client {
    sock: std::net::UdpSocket,
    server: std::net::SocketAddr,
}

impl Client {
    fn new(server: std::net::SocketAddr) -> Client {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        Client { sock, server }
    }

    /// The addresses answered for `name` A (empty on error or timeout).
    fn ask(&self, name: &str) -> Vec<IpAddr> {
        let mut m = Message::query();
        m.add_query(Query::query(name.parse::<Name>().unwrap(), RecordType::A));
        let _ = self.sock.send_to(&m.to_vec().unwrap(), self.server);
        let mut buf = [0u8; 4096];
        let Ok(n) = self.sock.recv(&mut buf) else { return vec![] };
        let Ok(resp) = Message::from_vec(&buf[..n]) else { return vec![] };
        resp.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect()
    }

    /// Polls `name` every 2 ms until `done(answer)`; returns the last instant at which
    /// `named` was still answered (or `since` if never) and when `done` held.
    fn watch(
        &self,
        name: &str,
        named: IpAddr,
        since: Instant,
        within: Duration,
        done: impl Fn(&[IpAddr]) -> bool,
    ) -> (Instant, Instant) {
        let mut last = since;
        loop {
            let got = self.ask(name);
            let now = Instant::now();
            if got.contains(&named) {
                last = now;
            }
            if done(&got) {
                return (last, now);
            }
            assert!(now < since + within, "{name}: no reaction within {within:?}: {got:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn summary(label: &str, mut ms: Vec<f64>, target: &str) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = if ms.len() % 2 == 1 { ms[ms.len() / 2] } else { (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0 };
    let worst = ms.last().copied().unwrap_or(f64::NAN);
    let all: Vec<String> = ms.iter().map(|v| format!("{v:.0}")).collect();
    println!(
        "{label:<44} n={:<3} median {median:>6.0} ms  worst {worst:>6.0} ms   (target {target})  [{}]",
        ms.len(),
        all.join(" ")
    );
}

fn main() {
    let reps: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!(
        "lagdns reaction benchmark: interval {INTERVAL_MS}ms, timeout {TIMEOUT_MS}ms, fall {FALL}, rise 2, max_lag {MAX_LAG_MS}ms, {reps} repetitions"
    );
    let cluster = LocalCluster::start(2).expect("local cluster");
    // The harness runs synchronous_commit = off for speed; then WAL reaches disk (and
    // replicas, and pg_current_wal_lsn) only every wal_writer_delay (200 ms), well after
    // the commit is visible. Production runs the default, so the benchmark does too.
    let pg1 = cluster.node("pg1");
    pg1.sql("ALTER SYSTEM SET synchronous_commit = on").expect("synchronous_commit");
    pg1.sql("SELECT pg_reload_conf()").expect("reload");
    let server = rt.block_on(Server::start(config(&cluster))).expect("lagdns");
    let client = Client::new(server.dns_addrs[0]);
    let (pg2, pg3) = (cluster.node("pg2"), cluster.node("pg3"));
    let (a2, a3) = (IpAddr::V4(pg2.address), IpAddr::V4(pg3.address));
    let both = |g: &[IpAddr]| g.contains(&a2) && g.contains(&a3);
    client.watch("read.db.internal.", a2, Instant::now(), Duration::from_secs(30), both);
    let _writer = cluster.node("pg1").start_writer(Duration::from_millis(10));

    let mut lag = Vec::new();
    for _ in 0..reps {
        client.watch("read.db.internal.", a2, Instant::now(), Duration::from_secs(30), both);
        std::thread::sleep(Duration::from_millis(300 + (lag.len() as u64 * 37) % 250)); // vary the phase
        client.watch("read.db.internal.", a2, Instant::now(), Duration::from_secs(30), both);
        let paused = Instant::now();
        // pause in the background and watch at once (the pause command itself takes time)
        let (last, _) = std::thread::scope(|sc| {
            sc.spawn(|| pg2.pause_replay().unwrap());
            client
                .watch("read.db.internal.", a2, paused, Duration::from_secs(10), |g| !g.contains(&a2) && !g.is_empty())
        });
        let crossed = paused + Duration::from_millis(MAX_LAG_MS);
        lag.push(last.saturating_duration_since(crossed).as_secs_f64() * 1e3);
        pg2.resume_replay().unwrap();
    }
    summary("lag passes max_lag → last read naming it", lag, "median ≤ 300, worst ≤ 600");

    let mut freeze = Vec::new();
    for _ in 0..reps {
        client.watch("read.db.internal.", a2, Instant::now(), Duration::from_secs(30), both);
        std::thread::sleep(Duration::from_millis(300 + (freeze.len() as u64 * 37) % 250));
        client.watch("read.db.internal.", a2, Instant::now(), Duration::from_secs(30), both);
        let frozen = Instant::now();
        let (last, _) = std::thread::scope(|sc| {
            sc.spawn(|| pg2.freeze().unwrap());
            client
                .watch("read.db.internal.", a2, frozen, Duration::from_secs(15), |g| !g.contains(&a2) && !g.is_empty())
        });
        freeze.push(last.saturating_duration_since(frozen).as_secs_f64() * 1e3);
        pg2.thaw().unwrap();
    }
    let bound = FALL * TIMEOUT_MS + 300;
    summary("freeze → last read naming it", freeze, &format!("≤ fall × timeout + 300 = {bound}"));
    rt.block_on(server.shutdown());
    drop(cluster);

    let mut promote = Vec::new();
    for _ in 0..reps {
        let cluster = LocalCluster::start(1).expect("local cluster");
        let server = rt.block_on(Server::start(config(&cluster))).expect("lagdns");
        let client = Client::new(server.dns_addrs[0]);
        let (p1, p2) = (cluster.node("pg1"), cluster.node("pg2"));
        let (a1, a2) = (IpAddr::V4(p1.address), IpAddr::V4(p2.address));
        client.watch("write.db.internal.", a1, Instant::now(), Duration::from_secs(30), |g| g == [a1]);
        p1.stop().unwrap();
        std::thread::sleep(Duration::from_millis((promote.len() as u64 * 37) % 250));
        p2.promote().unwrap();
        let promoted = Instant::now();
        let (_, first) = client.watch("write.db.internal.", a2, promoted, Duration::from_secs(10), |g| g == [a2]);
        promote.push(first.saturating_duration_since(promoted).as_secs_f64() * 1e3);
        rt.block_on(server.shutdown());
    }
    summary("promotion → first write naming the new primary", promote, &format!("≤ one interval ({INTERVAL_MS})"));
}
