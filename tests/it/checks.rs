//! The load-balancer checks (SPEC §10) over real TCP with fabricated snapshots: HTTP
//! `/check` (GET and HEAD, 200/503/404/400, bodies, `?max_lag=`) and the HAProxy agent
//! listener (one line in, one out; the bounds on what a client may send; `[http]
//! allow`; the connection cap; a request before the first probe round).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use lagdns::dns::query::QueryStats;
use lagdns::health::NodeState;
use lagdns::snapshot::{Snapshot, WriteTarget};
use lagdns::store::Store;
use lagdns::testkit::SnapshotBuilder;
use lagdns::topology::Role;

const CONFIG: &str = r#"
[http]
allow = ["127.0.0.1/32"]

[[cluster]]
name = "main"
max_lag = "100ms"
node = [
    { name = "pg1", address = "10.0.0.11", dsn = "host=a" },
    { name = "pg2", address = "10.0.0.12", dsn = "host=a" },
    { name = "pg3", address = "10.0.0.13", dsn = "host=a", weight = 50 },
    { name = "pg4", address = "10.0.0.14", dsn = "host=a" },
]

[[cluster.endpoint]]
name = "analytics"
nodes = ["pg3"]
max_lag = "5m"
"#;

/// pg1 primary; pg2 caught up; pg3 2.5 s behind (weight 50); pg4 down.
fn snapshot(ready: bool) -> Snapshot {
    let built = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    SnapshotBuilder::new(CONFIG)
        .ready(ready)
        .built(built)
        .write("main", WriteTarget::Primary(0))
        .each_node("main", |_, n| {
            (n.state, n.role, n.lag, n.lag_bytes) = (NodeState::Up, Role::Replica, Some(Duration::ZERO), Some(0))
        })
        .node("main", "pg1", |n| (n.role, n.lag, n.lag_bytes) = (Role::Primary, None, None))
        .node("main", "pg3", |n| (n.lag, n.lag_bytes) = (Some(Duration::from_millis(2500)), Some(4096)))
        .node("main", "pg4", |n| n.state = NodeState::Down)
        .build()
}

/// HTTP and the agent listener in-process over one store, on 127.0.0.1:0.
struct Checks {
    http: SocketAddr,
    agent: SocketAddr,
    store: Arc<Store<()>>,
    stats: Arc<QueryStats>,
    cancel: CancellationToken,
}

impl Drop for Checks {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve(snap: Snapshot) -> Checks {
    let store = Store::new(snap, |_, _| ());
    let stats = Arc::new(QueryStats::default());
    let cancel = CancellationToken::new();
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http, agent) = (http_listener.local_addr().unwrap(), agent_listener.local_addr().unwrap());
    let reloads = Arc::new(lagdns::metrics::Reloads::new(SystemTime::now()));
    let sources = lagdns::http::Sources { snapshots: store.clone(), stats: stats.clone(), reloads };
    tokio::spawn(lagdns::http::serve(http_listener, sources, cancel.clone()));
    tokio::spawn(lagdns::http::agent::serve(agent_listener, store.clone(), stats.clone(), cancel.clone()));
    Checks { http, agent, store, stats, cancel }
}

/// One raw HTTP/1.1 request: (status, headers, body).
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: lagdns\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    timeout(Duration::from_secs(5), s.read_to_string(&mut text)).await.expect("a response").unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn http_checks_answer_200_or_503_with_the_node_line() {
    let c = serve(snapshot(true)).await;
    let cases: &[(&str, u16, &str)] = &[
        ("/check/main/write/pg1", 200, "pg1 10.0.0.11 role=primary state=up lag=- lag_bytes=- weight=100 write: answered\n"),
        ("/check/main/write/pg2", 503, "pg2 10.0.0.12 role=replica state=up lag=0ms lag_bytes=0 weight=100 write: not answered\n"),
        ("/check/main/read/pg1", 503, "pg1 10.0.0.11 role=primary state=up lag=- lag_bytes=- weight=100 ineligible: primary\n"),
        ("/check/main/read/pg2", 200, "pg2 10.0.0.12 role=replica state=up lag=0ms lag_bytes=0 weight=100 eligible\n"),
        ("/check/main/read/pg3", 503, "pg3 10.0.0.13 role=replica state=up lag=2500ms lag_bytes=4096 weight=50 ineligible: lag 2500ms > max_lag 100ms\n"),
        ("/check/main/read/pg4", 503, "pg4 10.0.0.14 role=replica state=down lag=0ms lag_bytes=0 weight=100 ineligible: down\n"),
        ("/check/main/analytics/pg3", 200, "pg3 10.0.0.13 role=replica state=up lag=2500ms lag_bytes=4096 weight=50 eligible\n"),
        ("/check/main/analytics/pg2", 503, "pg2 10.0.0.12 role=replica state=up lag=0ms lag_bytes=0 weight=100 ineligible: not in endpoint\n"),
        // ?max_lag= overrides the bound for this check, both ways, and the line says so
        ("/check/main/read/pg3?max_lag=5s", 200, "pg3 10.0.0.13 role=replica state=up lag=2500ms lag_bytes=4096 weight=50 eligible\n"),
        ("/check/main/analytics/pg3?max_lag=1s", 503, "pg3 10.0.0.13 role=replica state=up lag=2500ms lag_bytes=4096 weight=50 ineligible: lag 2500ms > max_lag 1s\n"),
        ("/check/main/read/pg2?max_lag=0ms", 200, "pg2 10.0.0.12 role=replica state=up lag=0ms lag_bytes=0 weight=100 eligible\n"),
        // names the config does not have, and queries that cannot be used
        ("/check/other/read/pg2", 404, "no cluster \"other\"\n"),
        ("/check/main/reads/pg2", 404, "cluster main has no name \"reads\" (its write name, its read name or an endpoint)\n"),
        ("/check/main/read/pg9", 404, "cluster main has no node \"pg9\"\n"),
        ("/check/main/read/pg2?max_lag=fast", 400, "max_lag: \"fast\" is not a duration: expected a number and a unit, like \"250ms\"\n"),
        ("/check/main/read/pg2?lag=1s", 400, "unknown parameter \"lag\" (the only one is max_lag)\n"),
        ("/check/main/write/pg1?max_lag=1s", 400, "max_lag applies to read names, not to the write name\n"),
    ];
    for (path, code, body) in cases {
        let (got, head, text) = request(c.http, "GET", path).await;
        assert_eq!((got, text.as_str()), (*code, *body), "GET {path}");
        assert!(head.contains("content-type: text/plain; charset=utf-8"), "{path}: {head}");
        assert!(head.contains("cache-control: no-store"), "{path}: {head}");
        // HEAD: the same status, no body
        let (got, head, text) = request(c.http, "HEAD", path).await;
        assert_eq!((got, text.as_str()), (*code, ""), "HEAD {path}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "HEAD {path}: {head}");
    }
    // not a check path at all
    assert_eq!(request(c.http, "GET", "/check/main/read").await.0, 404);
    assert_eq!(request(c.http, "GET", "/check/main/read/pg2/x").await.0, 404);
    assert_eq!(request(c.http, "POST", "/check/main/read/pg2").await.0, 405);
}

#[tokio::test]
async fn http_checks_are_503_until_the_first_probe_round_and_follow_the_snapshot() {
    let c = serve(snapshot(false)).await;
    let not_ready = (503, "not ready: the first probe round has not finished\n".to_string());
    for path in ["/check/main/write/pg1", "/check/main/read/pg2"] {
        let (code, _, body) = request(c.http, "GET", path).await;
        assert_eq!((code, body), not_ready, "{path}");
    }
    // names are known from the config before any probe
    assert_eq!(request(c.http, "GET", "/check/main/read/pg9").await.0, 404);
    c.store.publish(snapshot(true));
    assert_eq!(request(c.http, "GET", "/check/main/write/pg1").await.0, 200);
    // the next snapshot: pg2 promoted
    let mut next = snapshot(true);
    next.cluster_mut(0).write = WriteTarget::Primary(1);
    c.store.publish(next);
    assert_eq!(request(c.http, "GET", "/check/main/write/pg1").await.0, 503);
    assert_eq!(request(c.http, "GET", "/check/main/write/pg2").await.0, 200);
}

fn src(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn connect_from(addr: SocketAddr, from: IpAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    sock.connect(addr).await.unwrap()
}

/// Sends `bytes` on a new connection and reads until the server closes it: the reply
/// (empty when it closed without one), within `within`.
async fn agent_says(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_to_close(&mut s, within).await
}

async fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    match timeout(within, s.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!("the agent did not close the connection within {within:?}"),
    }
}

fn agent_count(stats: &QueryStats, reply: &str) -> u64 {
    stats.edge.agent_replies().find(|(r, _)| *r == reply).map_or(0, |(_, n)| n)
}

#[tokio::test]
async fn the_agent_answers_one_line_per_connection() {
    let c = serve(snapshot(true)).await;
    let quick = Duration::from_secs(3);
    let cases: &[(&[u8], &str)] = &[
        (b"main/write/pg1\n", "up ready 100%\n"),
        (b"main/write/pg2\n", "down\n"),
        (b"main/read/pg1\n", "drain\n"),
        (b"main/read/pg2\n", "up ready 100%\n"),
        (b"main/read/pg3\n", "drain\n"),
        (b"main/read/pg4\n", "down\n"),
        (b"main/analytics/pg3\n", "up ready 100%\n"),
        (b"main/analytics/pg2\n", "drain\n"),
        // \r\n, surrounding whitespace, case
        (b"main/read/pg2\r\n", "up ready 100%\n"),
        (b"  MAIN/Read/pg2 \t\r\n", "up ready 100%\n"),
        // unparseable or unknown: down
        (b"main/read\n", "down\n"),
        (b"main/read/pg9\n", "down\n"),
        (b"other/read/pg2\n", "down\n"),
        (b"GET / HTTP/1.0\r\n\r\n", "down\n"),
        (b"\xff\xfe\n", "down\n"),
    ];
    for (line, want) in cases {
        assert_eq!(agent_says(c.agent, line, quick).await, *want, "{:?}", String::from_utf8_lossy(line));
    }
    // the line ends at the first newline; the rest is ignored
    assert_eq!(agent_says(c.agent, b"main/read/pg2\nmain/read/pg4\n", quick).await, "up ready 100%\n");
    // a client that half-closes after its line without a newline is answered too
    let mut s = TcpStream::connect(c.agent).await.unwrap();
    s.write_all(b"main/write/pg1").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut s, quick).await, "up ready 100%\n");
    assert_eq!(agent_count(&c.stats, "up"), 7);
    assert_eq!(agent_count(&c.stats, "drain"), 3);
    assert_eq!(agent_count(&c.stats, "down"), 7);
    // the weight is relative to the highest of the name's nodes
    let mut weighted = snapshot(true);
    weighted.cluster_mut(0).nodes[2].lag = Some(Duration::ZERO);
    lagdns::testkit::reevaluate(&mut weighted);
    c.store.publish(weighted);
    assert_eq!(agent_says(c.agent, b"main/read/pg3\n", quick).await, "up ready 50%\n");
    assert_eq!(agent_says(c.agent, b"main/analytics/pg3\n", quick).await, "up ready 100%\n");
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // real time: the server's timers are real
async fn the_agent_drops_silent_slow_and_oversized_clients() {
    let c = serve(snapshot(true)).await;
    // nothing sent: dropped after about a second, without a reply
    let started = std::time::Instant::now();
    let mut silent = TcpStream::connect(c.agent).await.unwrap();
    assert_eq!(read_to_close(&mut silent, Duration::from_secs(4)).await, "");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500), "{waited:?}");
    // a line without its newline, trickling: dropped at the same deadline
    let started = std::time::Instant::now();
    let mut slow = TcpStream::connect(c.agent).await.unwrap();
    for b in b"main/read/pg2" {
        if slow.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read_to_close(&mut slow, Duration::from_secs(4)).await, "");
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
    // more than 512 bytes without a newline: dropped at once
    let started = std::time::Instant::now();
    let long = vec![b'a'; 600];
    let mut big = TcpStream::connect(c.agent).await.unwrap();
    let _ = big.write_all(&long).await;
    assert_eq!(read_to_close(&mut big, Duration::from_secs(4)).await, "");
    assert!(started.elapsed() < Duration::from_millis(800), "{:?}", started.elapsed());
    // 511 bytes and a newline are a line (an unknown one)
    let mut exact = vec![b'a'; 511];
    exact.push(b'\n');
    assert_eq!(agent_says(c.agent, &exact, Duration::from_secs(3)).await, "down\n");
    // connected and closed without a byte
    drop(TcpStream::connect(c.agent).await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(agent_count(&c.stats, "none"), 4);
    assert_eq!(agent_count(&c.stats, "down"), 1);
}

#[tokio::test]
async fn the_agent_obeys_http_allow_and_its_connection_cap() {
    let c = serve(snapshot(true)).await;
    let quick = Duration::from_secs(3);
    // allow = 127.0.0.1/32: another source is disconnected without a byte
    let mut outside = connect_from(c.agent, src(2)).await;
    let _ = outside.write_all(b"main/read/pg2\n").await;
    assert_eq!(read_to_close(&mut outside, quick).await, "");
    assert_eq!(c.stats.edge.http_denied_total(), 1);
    let mut inside = connect_from(c.agent, src(1)).await;
    inside.write_all(b"main/read/pg2\n").await.unwrap();
    assert_eq!(read_to_close(&mut inside, quick).await, "up ready 100%\n");
    // every slot held by a silent client: the next connection is closed at once ...
    let mut held = Vec::new();
    for _ in 0..lagdns::http::agent::MAX_CONNECTIONS {
        held.push(TcpStream::connect(c.agent).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(c.agent).await.unwrap();
    let _ = over.write_all(b"main/read/pg2\n").await;
    assert_eq!(read_to_close(&mut over, Duration::from_millis(900)).await, "", "over the cap");
    // ... and served again once the silent ones are dropped (after a second)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if agent_says(c.agent, b"main/read/pg2\n", quick).await == "up ready 100%\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not free its slots");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(held);
}

#[tokio::test]
async fn before_the_first_probe_round_the_agent_holds_then_closes_unanswered() {
    let c = serve(snapshot(false)).await;
    // never ready: closed without a reply (HAProxy keeps the server's state), in time
    let started = Instant::now();
    assert_eq!(agent_says(c.agent, b"main/read/pg2\n", Duration::from_secs(4)).await, "");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500), "{waited:?}");
    // ready while the request waits: answered as soon as the round completes
    let mut s = TcpStream::connect(c.agent).await.unwrap();
    s.write_all(b"main/write/pg1\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.store.publish(snapshot(true));
    assert_eq!(read_to_close(&mut s, Duration::from_secs(3)).await, "up ready 100%\n");
    assert_eq!((agent_count(&c.stats, "none"), agent_count(&c.stats, "up")), (1, 1));
}
