//! Soak benchmark on a real cluster (run with `bench/soak [seconds] [percent]` or
//! `cargo bench --bench soak -- 60 50`): the real `lagdns serve` binary over a local
//! primary and two streaming replicas, under paced DNS load while the cluster misbehaves.
//! Every answer is checked; it exits non-zero if a query was lost or an answer was wrong.
//!
//! 1. Saturation: 5 s of unpaced UDP `read`/`write` A queries (a closed loop of
//!    4 sockets × 32 queries in flight), answers checked; its q/s is printed.
//! 2. Soak (60 s by default) at `percent` (50) of that rate, paced: 80 % UDP over 4
//!    sockets, 20 % TCP over 2 pipelined connections (each replaced every 20 s, after its
//!    last answer, as the server closes connections at `tcp_lifetime`), `read` and
//!    `write` A alternately. Meanwhile pg1 commits an INSERT every 10 ms, and every ~5 s
//!    one fault is held for 3 s, alternating: a replica's replay is paused (then resumed),
//!    the other replica is stopped (then started); the two swap roles each cycle.
//!
//! Checks, for every query sent:
//! * lost: no response within 2 s (also a send that failed, or a TCP connection that
//!   closed under it). Nothing is ever retransmitted, so retransmits are always 0.
//! * wrong: not NOERROR + AA, a question other than the one asked, TC, no address;
//!   `write` other than exactly pg1; `read` naming anything but replicas (or exactly
//!   pg1: the `fallback`, counted apart); or `read` naming a replica that, when the
//!   answer arrived, had been known-bad for longer than the detection bound. A fault is
//!   timed from when it was requested (before the command runs, so the judgement errs
//!   against lagdns) to when its undoing was requested; a `read` naming the node in that
//!   window, later than the bound after its start, is wrong:
//!   - replay paused: `max_lag + interval × (rise + 1)` (850 ms). True lag passes
//!     `max_lag` at pause + `max_lag`; the lag lagdns measures trails it by at most one
//!     interval (the primary's WAL position is sampled once per interval); eligibility
//!     changes after `rise` consecutive probes agree, the first at most one interval on.
//!   - stopped: `interval × (fall + 1) + timeout` (1750 ms). `fall` failed probes make it
//!     down, the first at most one interval after the stop, and a probe that hangs
//!     fails only at `timeout`.
//!
//! It also fails if lagdns exited, or does not name both replicas again within 10 s of
//! the end. Every 10 s it prints q/s, lost, wrong, the kernel's UDP drops (on lagdns's
//! socket / the load generator's: where a lost query went), the lagdns process's RSS
//! (VmRSS), open file descriptors, CPU and time spent waiting for a CPU, and the
//! machine's load average; each fault's reaction (its last `read` naming the node,
//! relative to the fault) against its bound; and a summary line.
//! `LAGDNS_SOAK_FAULTS=0` runs the same load without faults (a control run).

// Measures real elapsed times of real processes (std Instant): there is no tokio clock
// to pause, and the fault driver is a plain thread.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use localpg::LocalCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const INTERVAL_MS: u64 = 250;
const TIMEOUT_MS: u64 = 1000;
const FALL: u64 = 2;
const RISE: u64 = 2;
const MAX_LAG_MS: u64 = 100;
/// A query unanswered for this long is lost.
const LOST_AFTER: Duration = Duration::from_secs(2);
const SATURATION: Duration = Duration::from_secs(5);
const UDP_SOCKETS: usize = 4;
/// Queries in flight per UDP socket while measuring saturation.
const WINDOW: usize = 32;
const TCP_CONNECTIONS: usize = 2;
/// Every 5th query goes over TCP.
const TCP_EVERY: u64 = 5;
/// A TCP connection takes new queries for this long, well under the default
/// `tcp_lifetime` (2 m), at which the server closes it whatever is in flight.
const TCP_ROTATE: Duration = Duration::from_secs(20);
/// Queries waiting for a TCP connection's writer, at most.
const TCP_QUEUE: usize = 65_536;
const FAULT_HOLD: Duration = Duration::from_secs(3);
const FAULT_GAP: Duration = Duration::from_secs(2);
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Wrong answers and lost queries printed in full, at most.
const SHOW: u64 = 20;
const MAX_SECS: u64 = 86_400;

fn main() {
    let nums: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let secs = nums.first().copied().unwrap_or(60).clamp(1, MAX_SECS);
    let percent = nums.get(1).copied().unwrap_or(50).clamp(1, 100);
    let pause_bound = Duration::from_millis(MAX_LAG_MS + INTERVAL_MS * (RISE + 1));
    let stop_bound = Duration::from_millis(INTERVAL_MS * (FALL + 1) + TIMEOUT_MS);
    println!(
        "lagdns soak benchmark: probe interval {INTERVAL_MS}ms, timeout {TIMEOUT_MS}ms, fall {FALL}, rise {RISE}, \
         max_lag {MAX_LAG_MS}ms, answers \"all\"; detection bounds: paused {} ms (max_lag + interval × (rise+1)), \
         stopped {} ms (interval × (fall+1) + timeout); lost = no answer within {} s",
        pause_bound.as_millis(),
        stop_bound.as_millis(),
        LOST_AFTER.as_secs()
    );
    let cluster = LocalCluster::start(2).expect("local cluster");
    // As in benches/reaction.rs: production's synchronous_commit = on, so WAL (and lag)
    // moves with every commit instead of every wal_writer_delay.
    let pg1 = cluster.node("pg1");
    pg1.sql("ALTER SYSTEM SET synchronous_commit = on").expect("synchronous_commit");
    pg1.sql("SELECT pg_reload_conf()").expect("reload");
    let writer = pg1.start_writer(Duration::from_millis(10));
    let names: Vec<String> = cluster.nodes().iter().map(|n| format!("{} {}", n.name, n.address)).collect();
    println!("cluster: {} (pg1 primary); writer: an INSERT every 10 ms on pg1", names.join(", "));
    let mut lagdns = Lagdns::spawn(&cluster);
    println!(
        "lagdns: pid {} ({} serve), DNS {}, HTTP {}; RSS {}",
        lagdns.pid(),
        env!("CARGO_BIN_EXE_lagdns"),
        lagdns.dns,
        lagdns.http,
        lagdns.rss_line()
    );
    let truth = Arc::new(Truth::new(&cluster, [pause_bound, stop_bound]));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(wait_for_both(lagdns.dns, &truth, Duration::from_secs(30))).expect("lagdns ready");

    lagdns.cpu_share(); // from here
    let sat = rt.block_on(saturate(lagdns.dns, truth.clone()));
    let cpu = lagdns.cpu_share();
    println!(
        "saturation ({} s unpaced UDP, {UDP_SOCKETS} sockets × {WINDOW} in flight): {:.0} q/s, lost {}, wrong {}, {}; \
         lagdns CPU {:.0} % of a core, waiting for a CPU {:.0} ms/s; RSS {}; load average {}",
        SATURATION.as_secs(),
        sat.rate,
        sat.lost,
        sat.wrong,
        sat.latency,
        cpu.0,
        cpu.1,
        lagdns.rss_line(),
        loadavg()
    );
    let rate = (sat.rate * percent as f64 / 100.0).max(1.0);
    println!(
        "soak: {secs} s at {rate:.0} q/s ({percent} % of saturation), paced; UDP {} % over {UDP_SOCKETS} sockets, \
         TCP {} % over {TCP_CONNECTIONS} pipelined connections (renewed every {} s); read/write A 50/50; \
         no retransmits",
        100 - 100 / TCP_EVERY,
        100 / TCP_EVERY,
        TCP_ROTATE.as_secs()
    );
    let duration = Duration::from_secs(secs);
    let start = Instant::now();
    let soak = std::thread::scope(|s| {
        let faults = s.spawn(|| drive_faults(&cluster, &truth, start, start + duration));
        let soak = rt.block_on(soak(lagdns.dns, truth.clone(), rate, duration, &lagdns));
        faults.join().expect("fault driver");
        soak
    });
    let recovered = rt.block_on(async {
        let t = Instant::now();
        wait_for_both(lagdns.dns, &truth, Duration::from_secs(10)).await.map(|()| t.elapsed())
    });
    let alive = lagdns.alive();
    let verdict = summary(&soak, &truth, secs, recovered, alive);
    drop(lagdns);
    drop(writer);
    drop(cluster);
    if !verdict {
        std::process::exit(1);
    }
}

/// `lagdns serve` as a child process (the real binary, so its RSS is its own), on
/// loopback ports it picks itself; stopped with SIGTERM (by pid) on drop.
struct Lagdns {
    child: Child,
    dir: PathBuf,
    dns: SocketAddr,
    http: SocketAddr,
    /// (when, CPU ticks, run-queue wait in ns) at the last `cpu_share` call.
    cpu: Mutex<(Instant, u64, u64)>,
}

impl Lagdns {
    fn spawn(cluster: &LocalCluster) -> Lagdns {
        let dir = std::env::temp_dir().join(format!("lagdns-soak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = format!(
            "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"db.internal\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [probe]\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"{TIMEOUT_MS}ms\"\nfall = {FALL}\nrise = {RISE}\n\
             [[cluster]]\nname = \"main\"\nmax_lag = \"{MAX_LAG_MS}ms\"\nanswers = \"all\"\nfallback = \"primary\"\n"
        );
        for n in cluster.nodes() {
            text += &n.config_table(100);
        }
        let (config, log) = (dir.join("soak.toml"), dir.join("lagdns.log"));
        std::fs::write(&config, text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lagdns"))
            .args(["--log-format", "json", "--log-level", "info", "serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start lagdns serve");
        let mut me = Lagdns {
            child,
            dir,
            dns: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            cpu: Mutex::new((Instant::now(), 0, 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some((dns, http)) = text.lines().find_map(serving) {
                (me.dns, me.http) = (dns, http);
                break;
            }
            assert!(me.alive(), "lagdns exited; log:\n{text}");
            assert!(Instant::now() < deadline, "lagdns did not log \"serving\" within 30 s; log:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        *lock(&me.cpu) = (Instant::now(), me.cpu_ticks(), me.runq_wait_ns());
        me
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM).
    fn status_kib(&self, key: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    fn threads(&self) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok()).unwrap_or(0)
    }

    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        // Fields counted among all of them, from the state (field 3): some are not u64
        // (the state letter; tpgid is -1 without a controlling terminal).
        let f: Vec<&str> = after_name.split_whitespace().collect();
        let field = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime: fields 14 and 15 of proc_pid_stat(5)
        field(14) + field(15)
    }

    /// Time its threads spent runnable but waiting for a CPU (schedstat(5), field 2),
    /// summed over its threads.
    fn runq_wait_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else { return 0 };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    }

    /// Since the last call: CPU used, in % of one core (ticks are 1/100 s on Linux), and
    /// time spent waiting for a CPU, in ms per s (others' processes share the cores).
    fn cpu_share(&self) -> (f64, f64) {
        let mut last = lock(&self.cpu);
        let (now, ticks, wait) = (Instant::now(), self.cpu_ticks(), self.runq_wait_ns());
        let secs = now.duration_since(last.0).as_secs_f64();
        let share = (ticks - last.1) as f64 / 100.0 / secs * 100.0;
        let waited = wait.saturating_sub(last.2) as f64 / 1e6 / secs;
        *last = (now, ticks, wait);
        (share, waited)
    }

    fn rss_line(&self) -> String {
        format!("{} (peak {})", mib(self.status_kib("VmRSS")), mib(self.status_kib("VmHWM")))
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
        let _ = std::fs::remove_dir_all(&self.dir);
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

/// Datagrams the kernel dropped (full receive buffer) on lagdns's UDP socket on `port`
/// and on the sockets connected to it (the load generator's), from /proc/net/udp.
fn udp_drops(port: u16) -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let port = format!(":{port:04X}");
    let (mut server, mut clients) = (0, 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(drops)) =
            (f.get(1), f.get(2), f.last().and_then(|d| d.parse::<u64>().ok()))
        else {
            continue;
        };
        if local.ends_with(&port) && remote.ends_with(":0000") {
            server += drops;
        } else if remote.ends_with(&port) {
            clients += drops;
        }
    }
    (server, clients)
}

/// The machine's 1-minute load average (others' builds share these cores).
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_string()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// What is true of the cluster, and what an answer may therefore say.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qname {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Pause,
    Stop,
}

impl FaultKind {
    fn label(self) -> &'static str {
        match self {
            FaultKind::Pause => "replay paused",
            FaultKind::Stop => "stopped",
        }
    }
}

struct Fault {
    node: usize,
    kind: FaultKind,
    /// When the fault was requested (before the command).
    begin: Instant,
    /// When its undoing was requested; None while it lasts.
    end: Option<Instant>,
    /// The last `read` answer naming the node while the fault lasted.
    last_named: Option<Instant>,
    violations: u64,
}

struct Truth {
    primary: Ipv4Addr,
    /// (name, address) of pg2, pg3.
    replicas: Vec<(String, Ipv4Addr)>,
    /// Detection bound per FaultKind (Pause, Stop).
    bounds: [Duration; 2],
    faults: Mutex<Vec<Fault>>,
}

impl Truth {
    fn new(cluster: &LocalCluster, bounds: [Duration; 2]) -> Truth {
        let replicas = cluster.nodes()[1..].iter().map(|n| (n.name.clone(), n.address)).collect();
        Truth { primary: cluster.node("pg1").address, replicas, bounds, faults: Mutex::new(Vec::new()) }
    }

    fn bound(&self, kind: FaultKind) -> Duration {
        self.bounds[kind as usize]
    }

    /// Judges an answer's addresses, received at `at`; Ok(true) for a `read` answered
    /// with the primary (the fallback).
    fn judge(&self, q: Qname, addrs: &[Ipv4Addr], at: Instant) -> Result<bool, String> {
        if q == Qname::Write {
            return match addrs {
                [a] if *a == self.primary => Ok(false),
                _ => Err(format!("write → {addrs:?}, the primary is {}", self.primary)),
            };
        }
        match addrs {
            [] => return Err("read answered no address".into()),
            [a] if *a == self.primary => return Ok(true),
            _ => {}
        }
        let mut faults = lock(&self.faults);
        for a in addrs {
            let Some(ix) = self.replicas.iter().position(|r| r.1 == *a) else {
                return Err(format!("read → {addrs:?}: {a} is not a replica"));
            };
            let Some(f) =
                faults.iter_mut().rev().find(|f| f.node == ix && f.begin <= at && f.end.is_none_or(|e| at < e))
            else {
                continue;
            };
            f.last_named = Some(at);
            let bound = self.bound(f.kind);
            if at >= f.begin + bound {
                f.violations += 1;
                return Err(format!(
                    "read → {addrs:?} names {}, {} ms after it was {} (bound {} ms)",
                    self.replicas[ix].0,
                    at.duration_since(f.begin).as_millis(),
                    f.kind.label(),
                    bound.as_millis()
                ));
            }
        }
        Ok(false)
    }
}

/// Queries `read` until it names both replicas (and `write` names pg1), up to `within`.
async fn wait_for_both(server: SocketAddr, truth: &Truth, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    let mut last = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        last = (ask(&sock, "read.db.internal.").await, ask(&sock, "write.db.internal.").await);
        if truth.replicas.iter().all(|r| last.0.contains(&r.1)) && last.1 == [truth.primary] {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("read/write did not name both replicas / the primary within {within:?}: {last:?}"))
}

async fn ask(sock: &UdpSocket, name: &str) -> Vec<Ipv4Addr> {
    let q = query_bytes(&Name::from_ascii(name).unwrap(), rand::random());
    let mut buf = [0u8; 4096];
    let _ = sock.send(&q).await;
    match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
        Ok(Ok(n)) => check(&buf[..n], &Name::from_ascii(name).unwrap()).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn query_bytes(name: &Name, id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name.clone(), RecordType::A));
    m.to_vec().unwrap()
}

/// The A addresses of a well-formed authoritative answer to `name` A, or what is wrong.
fn check(resp: &[u8], name: &Name) -> Result<Vec<Ipv4Addr>, String> {
    let m = Message::from_vec(resp).map_err(|e| format!("undecodable response: {e}"))?;
    let md = &m.metadata;
    if md.message_type != MessageType::Response || md.response_code != ResponseCode::NoError {
        return Err(format!("{:?} {}", md.message_type, md.response_code));
    }
    if !md.authoritative || md.truncation {
        return Err(format!("flags: aa={} tc={}", md.authoritative, md.truncation));
    }
    match m.queries.as_slice() {
        [q] if q.name == *name && q.query_type == RecordType::A => {}
        other => return Err(format!("question {other:?}, asked {name} A")),
    }
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) if r.name == *name => Ok(a.0),
            other => Err(format!("unexpected answer record {} {other:?}", r.name)),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The load generator: lanes (UDP sockets, TCP connections), each with its queries in
// flight by id; every response is matched, checked and judged; what is not answered
// within LOST_AFTER is lost.

struct Pending {
    sent: Instant,
    qname: Qname,
}

#[derive(Default)]
struct InFlight {
    next: u16,
    map: HashMap<u16, Pending>,
    /// The TCP connection is gone: nothing more may be registered on it.
    closed: bool,
}

impl InFlight {
    /// A fresh id for a query about to be sent; None if the lane cannot take it.
    fn register(&mut self, qname: Qname, sent: Instant) -> Option<u16> {
        if self.closed || self.map.len() >= 60_000 {
            return None;
        }
        while self.map.contains_key(&self.next) {
            self.next = self.next.wrapping_add(1);
        }
        let id = self.next;
        self.next = id.wrapping_add(1);
        self.map.insert(id, Pending { sent, qname });
        Some(id)
    }
}

/// Latencies in 10 µs buckets up to 100 ms (the last bucket holds the rest).
struct Histogram {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

impl Histogram {
    const BUCKET_US: u64 = 10;

    fn new() -> Histogram {
        Histogram { buckets: (0..10_000).map(|_| AtomicU64::new(0)).collect(), max_us: AtomicU64::new(0) }
    }

    fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        self.buckets[((us / Self::BUCKET_US) as usize).min(self.buckets.len() - 1)].fetch_add(1, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    fn line(&self, label: &str) -> String {
        format!(
            "{label} p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms",
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.max_us.load(Relaxed) as f64 / 1000.0
        )
    }

    /// The `q` quantile in ms (upper edge of its bucket).
    fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let want = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want.max(1) {
                return ((i as u64 + 1) * Self::BUCKET_US) as f64 / 1000.0;
            }
        }
        0.0
    }
}

#[derive(Default)]
struct Stats {
    sent_udp: AtomicU64,
    sent_tcp: AtomicU64,
    answered: AtomicU64,
    lost: AtomicU64,
    wrong: AtomicU64,
    /// Responses whose query was already counted lost (or that match no query).
    late: AtomicU64,
    /// `read` answered with the primary (fallback = "primary").
    fallback: AtomicU64,
    tcp_connections: AtomicU64,
    shown: AtomicU64,
}

/// One phase's load: what to ask, and what came back.
struct Load {
    truth: Arc<Truth>,
    names: [Name; 2],
    stats: Stats,
    /// Per transport: UDP, TCP.
    latency: [Histogram; 2],
    t0: Instant,
}

impl Load {
    fn new(truth: Arc<Truth>) -> Load {
        let names = [Name::from_ascii("read.db.internal.").unwrap(), Name::from_ascii("write.db.internal.").unwrap()];
        Load {
            truth,
            names,
            stats: Stats::default(),
            latency: [Histogram::new(), Histogram::new()],
            t0: Instant::now(),
        }
    }

    fn query(&self, q: Qname, id: u16) -> Vec<u8> {
        query_bytes(&self.names[q as usize], id)
    }

    fn show(&self, what: &str, detail: &str) {
        if self.stats.shown.fetch_add(1, Relaxed) < SHOW {
            println!("  {what} at +{:.3} s: {detail}", self.t0.elapsed().as_secs_f64());
        }
    }

    fn lose(&self, n: u64, why: &str) {
        if n > 0 {
            self.stats.lost.fetch_add(n, Relaxed);
            self.show("LOST", &format!("{n} queries: {why}"));
        }
    }

    fn on_response(&self, inflight: &Mutex<InFlight>, bytes: &[u8], tcp: bool) {
        let now = Instant::now();
        let id = match bytes {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => {
                self.stats.late.fetch_add(1, Relaxed);
                return;
            }
        };
        let Some(p) = lock(inflight).map.remove(&id) else {
            self.stats.late.fetch_add(1, Relaxed);
            return;
        };
        self.stats.answered.fetch_add(1, Relaxed);
        self.latency[usize::from(tcp)].record(now.duration_since(p.sent));
        match check(bytes, &self.names[p.qname as usize]).and_then(|a| self.truth.judge(p.qname, &a, now)) {
            Ok(true) => {
                self.stats.fallback.fetch_add(1, Relaxed);
            }
            Ok(false) => {}
            Err(e) => {
                self.stats.wrong.fetch_add(1, Relaxed);
                self.show("WRONG", &e);
            }
        }
    }

    /// Counts as lost (and forgets) the queries unanswered for LOST_AFTER.
    fn expire(&self, inflight: &Mutex<InFlight>, transport: &str) {
        let now = Instant::now();
        let mut f = lock(inflight);
        let before = f.map.len();
        f.map.retain(|_, p| now.duration_since(p.sent) < LOST_AFTER);
        let n = (before - f.map.len()) as u64;
        drop(f);
        self.lose(n, &format!("no {transport} answer within {} s", LOST_AFTER.as_secs()));
    }
}

struct UdpLane {
    sock: UdpSocket,
    inflight: Mutex<InFlight>,
}

impl UdpLane {
    /// A socket connected to `server`, with the receive buffer lagdns also asks for
    /// (4 MiB), so a client stall does not drop answers in the kernel.
    async fn open(server: SocketAddr) -> Arc<UdpLane> {
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let _ = raw.set_recv_buffer_size(4 << 20);
        raw.set_nonblocking(true).unwrap();
        raw.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
        let sock = UdpSocket::from_std(raw.into()).unwrap();
        sock.connect(server).await.unwrap();
        Arc::new(UdpLane { sock, inflight: Mutex::new(InFlight::default()) })
    }

    async fn send(&self, load: &Load, q: Qname) {
        let Some(id) = lock(&self.inflight).register(q, Instant::now()) else {
            return load.lose(1, "UDP socket has 60000 queries in flight");
        };
        load.stats.sent_udp.fetch_add(1, Relaxed);
        if let Err(e) = self.sock.send(&load.query(q, id)).await {
            lock(&self.inflight).map.remove(&id);
            load.lose(1, &format!("UDP send failed: {e}"));
        }
    }

    /// Receives until `done` and nothing is left in flight; with `refill`, sends the
    /// next query after every response until that instant (the closed loop).
    async fn receive(self: Arc<UdpLane>, load: Arc<Load>, done: CancellationToken, refill: Option<Instant>) {
        let mut buf = vec![0u8; 4096];
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut n = 0u64;
        loop {
            tokio::select! {
                r = self.sock.recv(&mut buf) => match r {
                    Ok(len) => {
                        load.on_response(&self.inflight, &buf[..len], false);
                        if refill.is_some_and(|until| Instant::now() < until) {
                            n += 1;
                            self.send(&load, if n % 2 == 0 { Qname::Read } else { Qname::Write }).await;
                        }
                    }
                    Err(e) => load.show("UDP receive error", &e.to_string()),
                },
                _ = tick.tick() => {
                    load.expire(&self.inflight, "UDP");
                    if done.is_cancelled() && lock(&self.inflight).map.is_empty() {
                        return;
                    }
                }
            }
        }
    }
}

/// A TCP lane: one pipelined connection at a time, renewed every TCP_ROTATE (the old
/// one is kept open until its last query is answered or lost).
async fn tcp_lane(load: Arc<Load>, server: SocketAddr, mut rx: mpsc::Receiver<Qname>) {
    let mut carry: Option<Qname> = None;
    let mut readers = Vec::new();
    'connections: loop {
        let stream = match TcpStream::connect(server).await {
            Ok(s) => s,
            Err(e) => {
                let mut n = u64::from(carry.take().is_some());
                while rx.try_recv().is_ok() {
                    n += 1;
                }
                load.lose(n, &format!("TCP connect failed: {e}"));
                if rx.is_closed() && rx.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        load.stats.tcp_connections.fetch_add(1, Relaxed);
        let (rd, mut wr) = stream.into_split();
        let inflight = Arc::new(Mutex::new(InFlight::default()));
        let closing = CancellationToken::new();
        readers.push(tokio::spawn(tcp_reader(load.clone(), rd, inflight.clone(), closing.clone())));
        let renew = tokio::time::sleep(TCP_ROTATE);
        tokio::pin!(renew);
        let mut frame = Vec::with_capacity(64);
        let open = loop {
            let q = match carry.take() {
                Some(q) => Some(q),
                None => tokio::select! { q = rx.recv() => q, _ = &mut renew => break true },
            };
            let Some(q) = q else { break false };
            let Some(id) = lock(&inflight).register(q, Instant::now()) else {
                carry = Some(q); // never sent: it goes out first on the next connection
                break true;
            };
            load.stats.sent_tcp.fetch_add(1, Relaxed);
            let body = load.query(q, id);
            frame.clear();
            frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
            frame.extend_from_slice(&body);
            if let Err(e) = wr.write_all(&frame).await {
                load.show("TCP write error", &e.to_string()); // what is in flight: the reader's to judge
                break true;
            }
        };
        closing.cancel();
        // The write half stays open until the reader has every answer (or has given up).
        let reader = readers.pop().expect("just pushed");
        readers.push(tokio::spawn(async move {
            let _ = reader.await;
            drop(wr);
        }));
        if !open {
            break 'connections;
        }
    }
    for r in readers {
        let _ = r.await;
    }
}

/// Reads length-prefixed responses (cancel-safe: plain reads into a buffer) until the
/// server closes the connection, or `closing` and nothing is left in flight.
async fn tcp_reader(
    load: Arc<Load>,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    inflight: Arc<Mutex<InFlight>>,
    closing: CancellationToken,
) {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            r = rd.read(&mut chunk) => {
                let n = match r {
                    Ok(0) | Err(_) => {
                        let mut f = lock(&inflight);
                        f.closed = true;
                        let n = f.map.drain().count() as u64;
                        drop(f);
                        load.lose(n, "the server closed the TCP connection with queries in flight");
                        return;
                    }
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut at = 0;
                while buf.len() - at >= 2 {
                    let len = usize::from(u16::from_be_bytes([buf[at], buf[at + 1]]));
                    if buf.len() - at - 2 < len {
                        break;
                    }
                    load.on_response(&inflight, &buf[at + 2..at + 2 + len], true);
                    at += 2 + len;
                }
                buf.drain(..at);
            }
            _ = tick.tick() => {
                load.expire(&inflight, "TCP");
                if closing.is_cancelled() && lock(&inflight).map.is_empty() {
                    return;
                }
            }
        }
    }
}

struct Saturation {
    rate: f64,
    latency: String,
    lost: u64,
    wrong: u64,
}

/// Unpaced UDP: a closed loop of WINDOW queries in flight per socket for SATURATION.
async fn saturate(server: SocketAddr, truth: Arc<Truth>) -> Saturation {
    let load = Arc::new(Load::new(truth));
    let done = CancellationToken::new();
    let start = Instant::now();
    let until = start + SATURATION;
    let mut tasks = Vec::new();
    for _ in 0..UDP_SOCKETS {
        let lane = UdpLane::open(server).await;
        for i in 0..WINDOW {
            lane.send(&load, if i % 2 == 0 { Qname::Read } else { Qname::Write }).await;
        }
        tasks.push(tokio::spawn(lane.receive(load.clone(), done.clone(), Some(until))));
    }
    tokio::time::sleep_until(until.into()).await;
    let answered = load.stats.answered.load(Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    done.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let s = &load.stats;
    let latency = load.latency[0].line("latency");
    Saturation { rate: answered as f64 / elapsed, latency, lost: s.lost.load(Relaxed), wrong: s.wrong.load(Relaxed) }
}

struct Soak {
    load: Arc<Load>,
    /// Kernel UDP drops: lagdns's socket, the load generator's.
    drops: (u64, u64),
    rss_start: u64,
    rss_end: u64,
    rss_peak: u64,
    fds_end: usize,
}

/// Paced load at `rate` for `duration` over UDP and TCP lanes, reported every 10 s.
async fn soak(server: SocketAddr, truth: Arc<Truth>, rate: f64, duration: Duration, lagdns: &Lagdns) -> Soak {
    let load = Arc::new(Load::new(truth));
    let done = CancellationToken::new();
    let mut udp = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..UDP_SOCKETS {
        let lane = UdpLane::open(server).await;
        tasks.push(tokio::spawn(lane.clone().receive(load.clone(), done.clone(), None)));
        udp.push(lane);
    }
    let mut tcp = Vec::new();
    for _ in 0..TCP_CONNECTIONS {
        let (tx, rx) = mpsc::channel(TCP_QUEUE);
        tasks.push(tokio::spawn(tcp_lane(load.clone(), server, rx)));
        tcp.push(tx);
    }
    let rss_start = lagdns.status_kib("VmRSS");
    lagdns.cpu_share();
    let start = Instant::now();
    let mut next_report = start + REPORT_EVERY;
    let mut last = (start, 0);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= next_report {
            last = report(&load, lagdns, start, last);
            next_report += REPORT_EVERY;
        }
        let elapsed = now.duration_since(start);
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while seq < due {
            let q = if seq % 2 == 0 { Qname::Read } else { Qname::Write };
            if seq % TCP_EVERY == 0 {
                let lane = &tcp[(seq / TCP_EVERY) as usize % TCP_CONNECTIONS];
                if lane.try_send(q).is_err() {
                    load.lose(1, "TCP queue full");
                }
            } else {
                udp[seq as usize % UDP_SOCKETS].send(&load, q).await;
            }
            seq += 1;
        }
    }
    drop(tcp); // the TCP lanes finish once their queues are sent
    done.cancel();
    for t in tasks {
        let _ = t.await;
    }
    Soak {
        load,
        drops: udp_drops(lagdns.dns.port()),
        rss_start,
        rss_end: lagdns.status_kib("VmRSS"),
        rss_peak: lagdns.status_kib("VmHWM"),
        fds_end: lagdns.fds(),
    }
}

/// Prints one progress line (q/s answered since the `last` one); returns (now, answered).
fn report(load: &Load, lagdns: &Lagdns, start: Instant, last: (Instant, u64)) -> (Instant, u64) {
    let s = &load.stats;
    let (now, answered) = (Instant::now(), s.answered.load(Relaxed));
    let drops = udp_drops(lagdns.dns.port());
    let cpu = lagdns.cpu_share();
    let window = now.duration_since(last.0).as_secs_f64();
    println!(
        "[{:>4.0} s] {:>7.0} q/s  sent {} (udp {} tcp {})  answered {}  lost {}  wrong {}  late {}  \
         read→primary {}  udp drops lagdns/client {}/{}  | lagdns RSS {}  fds {}  threads {}  CPU {:.0} %  waiting for a CPU {:.0} ms/s  | load {}",
        now.duration_since(start).as_secs_f64(),
        (answered - last.1) as f64 / window,
        s.sent_udp.load(Relaxed) + s.sent_tcp.load(Relaxed),
        s.sent_udp.load(Relaxed),
        s.sent_tcp.load(Relaxed),
        answered,
        s.lost.load(Relaxed),
        s.wrong.load(Relaxed),
        s.late.load(Relaxed),
        s.fallback.load(Relaxed),
        drops.0,
        drops.1,
        mib(lagdns.status_kib("VmRSS")),
        lagdns.fds(),
        lagdns.threads(),
        cpu.0,
        cpu.1,
        loadavg()
    );
    (now, answered)
}

// ---------------------------------------------------------------------------------------
// Faults: one at a time, alternating pause (replay) and stop, the replicas swapping roles
// each cycle: pause pg2, stop pg3, pause pg3, stop pg2, ...

fn drive_faults(cluster: &LocalCluster, truth: &Truth, t0: Instant, until: Instant) {
    let replicas = &cluster.nodes()[1..];
    std::thread::sleep(Duration::from_secs(1).min(until.saturating_duration_since(Instant::now())));
    if std::env::var("LAGDNS_SOAK_FAULTS").is_ok_and(|v| v == "0") {
        println!("  (no faults: LAGDNS_SOAK_FAULTS=0)");
        return;
    }
    let mut i = 0usize;
    // Only a fault that can be held and undone before the load stops.
    while Instant::now() + FAULT_HOLD + Duration::from_secs(1) < until {
        let kind = if i % 2 == 0 { FaultKind::Pause } else { FaultKind::Stop };
        let ix = (i / 2 + i) % 2;
        let node = &replicas[ix];
        let begin = Instant::now();
        lock(&truth.faults).push(Fault { node: ix, kind, begin, end: None, last_named: None, violations: 0 });
        match kind {
            FaultKind::Pause => node.pause_replay(),
            FaultKind::Stop => node.stop(),
        }
        .unwrap_or_else(|e| panic!("{} {}: {e}", node.name, kind.label()));
        let applied = begin.elapsed();
        std::thread::sleep((begin + FAULT_HOLD).saturating_duration_since(Instant::now()));
        let end = Instant::now();
        let (last, violations) = {
            let mut faults = lock(&truth.faults);
            let f = faults.last_mut().expect("just pushed");
            f.end = Some(end);
            (f.last_named, f.violations)
        };
        let undo = Instant::now();
        match kind {
            FaultKind::Pause => node.resume_replay(),
            FaultKind::Stop => node.start(),
        }
        .unwrap_or_else(|e| panic!("{} undo {}: {e}", node.name, kind.label()));
        let last = last.map_or("never".to_string(), |l| format!("+{:.3} s", l.duration_since(begin).as_secs_f64()));
        println!(
            "  fault {}: {} {} at +{:.1} s (took {:.2} s) for {:.1} s, undone in {:.2} s; last read naming it {last} \
             (bound +{:.3} s), violations {violations}",
            i + 1,
            node.name,
            kind.label(),
            begin.duration_since(t0).as_secs_f64(),
            applied.as_secs_f64(),
            end.duration_since(begin).as_secs_f64(),
            undo.elapsed().as_secs_f64(),
            truth.bound(kind).as_secs_f64()
        );
        i += 1;
        let gap_end = Instant::now() + FAULT_GAP;
        std::thread::sleep(gap_end.min(until).saturating_duration_since(Instant::now()));
    }
}

/// Prints the summary; true if nothing was lost, nothing was wrong, and lagdns is still
/// running and answering both replicas again.
fn summary(soak: &Soak, truth: &Truth, secs: u64, recovered: Result<Duration, String>, alive: bool) -> bool {
    let s = &soak.load.stats;
    let (lost, wrong) = (s.lost.load(Relaxed), s.wrong.load(Relaxed));
    let faults = lock(&truth.faults);
    let worst = |kind: FaultKind| {
        let of_kind = faults.iter().filter(|f| f.kind == kind);
        let worst = of_kind.clone().filter_map(|f| f.last_named.map(|l| l.duration_since(f.begin))).max();
        format!(
            "{} {} (worst last read naming it +{:.3} s, bound +{:.3} s)",
            of_kind.count(),
            kind.label(),
            worst.unwrap_or_default().as_secs_f64(),
            truth.bound(kind).as_secs_f64()
        )
    };
    let [udp, tcp] = &soak.load.latency;
    let pass = lost == 0 && wrong == 0 && alive && recovered.is_ok();
    let recovered = match recovered {
        Ok(t) => format!("read named both replicas again {:.2} s after the load", t.as_secs_f64()),
        Err(e) => format!("NOT RECOVERED: {e}"),
    };
    println!(
        "soak summary: {secs} s, sent {} (udp {}, tcp {} over {} connections), answered {}, lost {lost}, \
         wrong {wrong}, retransmits 0, late {}, read→primary fallback {}; kernel UDP drops lagdns/client {}/{}; latency {}; {}; lagdns RSS {} → {} (peak {}), fds {}, {}; faults: {}, {}; \
         {recovered}; load average {}: {}",
        s.sent_udp.load(Relaxed) + s.sent_tcp.load(Relaxed),
        s.sent_udp.load(Relaxed),
        s.sent_tcp.load(Relaxed),
        s.tcp_connections.load(Relaxed),
        s.answered.load(Relaxed),
        s.late.load(Relaxed),
        s.fallback.load(Relaxed),
        soak.drops.0,
        soak.drops.1,
        udp.line("udp"),
        tcp.line("tcp"),
        mib(soak.rss_start),
        mib(soak.rss_end),
        mib(soak.rss_peak),
        soak.fds_end,
        if alive { "still running" } else { "EXITED" },
        worst(FaultKind::Pause),
        worst(FaultKind::Stop),
        loadavg(),
        if pass { "PASS" } else { "FAIL" }
    );
    pass
}
