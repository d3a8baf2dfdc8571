//! The network edge (SPEC §12) over real sockets: `[dns] allow`, `[http] allow`, the
//! TCP caps and timeouts, and response-rate limiting, each with clients bound to their
//! own 127.0.0.x source addresses (Linux routes all of 127.0.0.0/8 to loopback), each
//! asserting both the refused and the still-served side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use lagdns::dns::query::QueryStats;
use lagdns::dns::records::Zone;
use lagdns::dns::DnsServer;
use lagdns::store::Store;
use lagdns::testkit::SnapshotBuilder;

const NODES: &str = r#"
[[cluster]]
name = "main"
[[cluster.node]]
name = "pg1"
address = "10.0.0.11"
dsn = "host=127.0.0.1 port=1"
"#;

struct Edge {
    dns: SocketAddr,
    store: Arc<Store<Zone>>,
    stats: Arc<QueryStats>,
    cancel: CancellationToken,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An in-process DNS server with `extra` config (the `[dns]` table's keys and
/// `[dns.limits]`), on 127.0.0.1:0.
async fn serve(dns_keys: &str, limits: &str) -> Edge {
    let text = format!("[dns]\nlisten = [\"127.0.0.1:0\"]\n{dns_keys}\n[dns.limits]\n{limits}\n{NODES}");
    let store = Store::new(SnapshotBuilder::new(&text).ready(true).build(), Zone::derive);
    let stats = Arc::new(QueryStats::default());
    let listen = ["127.0.0.1:0".parse().unwrap()];
    let server = DnsServer::bind(&listen, store.clone(), stats.clone(), Vec::new(), 10_000).unwrap();
    let dns = server.local_addrs()[0];
    let cancel = CancellationToken::new();
    tokio::spawn(server.run(cancel.clone()));
    Edge { dns, store, stats, cancel }
}

fn src(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn soa_query(id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_ascii("db.internal.").unwrap(), RecordType::SOA));
    m.to_vec().unwrap()
}

/// One UDP SOA query from `from`; `None` when nothing came back within `wait`.
async fn udp_from(server: SocketAddr, from: IpAddr, wait: Duration) -> Option<Message> {
    let sock = UdpSocket::bind(SocketAddr::new(from, 0)).await.unwrap();
    sock.send_to(&soa_query(7), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = timeout(wait, sock.recv_from(&mut buf)).await.ok()?.unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

async fn connect_from(server: SocketAddr, from: IpAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    sock.connect(server).await.unwrap()
}

/// Sends one SOA query on `stream` and reads the response.
async fn tcp_ask(stream: &mut TcpStream) -> std::io::Result<Message> {
    let q = soa_query(9);
    stream.write_all(&(q.len() as u16).to_be_bytes()).await?;
    stream.write_all(&q).await?;
    let len = timeout(Duration::from_secs(3), stream.read_u16()).await??;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok(Message::from_vec(&buf).unwrap())
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(timeout(within, stream.read(&mut byte)).await, Ok(Ok(0)) | Ok(Err(_)))
}

fn counted(stats: &QueryStats, kind: &str, rcode: &str) -> u64 {
    stats.nonzero().iter().filter(|(k, _, r, _)| k.as_str() == kind && r.as_str() == rcode).map(|c| c.3).sum()
}

#[tokio::test]
async fn dns_allow_refuses_outsiders_over_udp_and_tcp_and_serves_the_rest() {
    let edge = serve(r#"allow = ["127.0.0.2/32", "127.0.1.0/24"]"#, "").await;
    let wait = Duration::from_secs(3);
    for (from, want) in [(2, ResponseCode::NoError), (3, ResponseCode::Refused), (1, ResponseCode::Refused)] {
        let m = udp_from(edge.dns, src(from), wait).await.expect("an answer");
        assert_eq!(m.metadata.response_code, want, "UDP from 127.0.0.{from}");
        assert_eq!(m.metadata.authoritative, want == ResponseCode::NoError);
        assert!(want == ResponseCode::NoError || m.answers.is_empty());
        let m = tcp_ask(&mut connect_from(edge.dns, src(from)).await).await.unwrap();
        assert_eq!(m.metadata.response_code, want, "TCP from 127.0.0.{from}");
    }
    let inside = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 77));
    assert_eq!(udp_from(edge.dns, inside, wait).await.unwrap().metadata.response_code, ResponseCode::NoError);
    assert_eq!(counted(&edge.stats, "denied", "REFUSED"), 4);
    assert_eq!(counted(&edge.stats, "apex", "NOERROR"), 3);
}

#[tokio::test]
async fn http_allow_disconnects_outsiders_and_serves_the_rest() {
    let text = format!("[http]\nallow = [\"127.0.0.2/32\"]\n{NODES}");
    let store = Store::new(SnapshotBuilder::new(&text).build(), Zone::derive);
    let stats = Arc::new(QueryStats::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let reloads = Arc::new(lagdns::metrics::Reloads::new(std::time::SystemTime::now()));
    let sources = lagdns::http::Sources { snapshots: store.clone(), stats: stats.clone(), reloads };
    tokio::spawn(lagdns::http::serve(listener, sources, cancel.clone()));
    let get = |from: u8| async move {
        let mut s = connect_from(http, src(from)).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut body = String::new();
        let _ = timeout(Duration::from_secs(3), s.read_to_string(&mut body)).await.expect("answer or close");
        body
    };
    assert!(get(2).await.starts_with("HTTP/1.1 200"), "inside is served");
    assert_eq!(get(3).await, "", "outside is disconnected without a byte");
    assert!(get(2).await.starts_with("HTTP/1.1 200"), "still served");
    assert_eq!(stats.edge.http_denied_total(), 1);
    cancel.cancel();
}

#[tokio::test]
async fn tcp_caps_close_new_connections_at_once_and_others_are_served() {
    let edge = serve("", "tcp_connections = 4\ntcp_connections_per_client = 2").await;
    let mut a1 = connect_from(edge.dns, src(2)).await;
    let mut a2 = connect_from(edge.dns, src(2)).await;
    tcp_ask(&mut a1).await.unwrap();
    tcp_ask(&mut a2).await.unwrap();
    // a third from 127.0.0.2 is over the per-client cap: closed at once
    let mut a3 = connect_from(edge.dns, src(2)).await;
    assert!(closed_within(&mut a3, Duration::from_secs(2)).await, "over the per-client cap");
    // another client still gets in, up to the total
    let mut b1 = connect_from(edge.dns, src(3)).await;
    let mut b2 = connect_from(edge.dns, src(3)).await;
    tcp_ask(&mut b1).await.unwrap();
    tcp_ask(&mut b2).await.unwrap();
    let mut c1 = connect_from(edge.dns, src(4)).await;
    assert!(closed_within(&mut c1, Duration::from_secs(2)).await, "over the total cap");
    // UDP is untouched by the TCP caps, and held connections keep working
    assert!(udp_from(edge.dns, src(4), Duration::from_secs(3)).await.is_some());
    tcp_ask(&mut a1).await.unwrap();
    // a freed slot is reusable
    drop(b2);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut c2 = connect_from(edge.dns, src(4)).await;
        if tcp_ask(&mut c2).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused: Vec<_> = edge.stats.edge.tcp_events().filter(|(e, n)| e.is_refusal() && *n > 0).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // real time: the server's timers are real
async fn idle_slow_drip_and_old_connections_are_closed() {
    let edge = serve("", "tcp_idle = \"300ms\"\ntcp_lifetime = \"1500ms\"").await;
    // idle: nothing sent
    let started = std::time::Instant::now();
    let mut idle = connect_from(edge.dns, src(2)).await;
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await, "idle connection kept");
    let idle_for = started.elapsed();
    assert!(idle_for >= Duration::from_millis(250) && idle_for < Duration::from_millis(1200), "{idle_for:?}");
    // slow drip: a byte every 100 ms never completes a query, so it is idle too
    let started = std::time::Instant::now();
    let mut drip = connect_from(edge.dns, src(3)).await;
    let q = soa_query(1);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    for byte in &framed {
        if drip.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed_within(&mut drip, Duration::from_secs(3)).await, "slow drip kept");
    let drip_for = started.elapsed();
    assert!(drip_for < Duration::from_millis(1200), "closed at tcp_idle, not later: {drip_for:?}");
    // busy: a query every 100 ms keeps it open until tcp_lifetime
    let started = std::time::Instant::now();
    let mut busy = connect_from(edge.dns, src(4)).await;
    while tcp_ask(&mut busy).await.is_ok() {
        assert!(started.elapsed() < Duration::from_secs(4), "never closed at tcp_lifetime");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lived = started.elapsed();
    assert!(lived >= Duration::from_millis(1400), "closed before tcp_lifetime: {lived:?}");
    let closes: std::collections::HashMap<_, _> = edge.stats.edge.tcp_events().map(|(e, n)| (e.as_str(), n)).collect();
    assert_eq!((closes["idle"], closes["lifetime"]), (2, 1), "{closes:?}");
}

#[tokio::test]
async fn rate_limit_slips_and_drops_over_the_rate_per_prefix_and_spares_others_and_tcp() {
    let edge = serve("", "rate = 5\nslip = 2\nrate_prefix_v4 = 32").await;
    let sock = UdpSocket::bind(SocketAddr::new(src(2), 0)).await.unwrap();
    for id in 0..40u16 {
        sock.send_to(&soa_query(id), edge.dns).await.unwrap();
    }
    let (mut full, mut slipped) = (0u64, 0u64);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok((n, _))) = timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty() && m.authorities.is_empty(), "a slipped response carries no records");
            assert_eq!(m.queries.len(), 1, "but echoes the question");
            slipped += 1;
        } else {
            assert_eq!(m.answers.len(), 1);
            full += 1;
        }
    }
    let dropped = 40 - full - slipped;
    // one second window (two if the burst straddles a second)
    assert!((5..=10).contains(&full), "full answers: {full}");
    assert!(slipped >= 15 && dropped >= 15, "slipped {slipped}, dropped {dropped}");
    let (s, d) = edge.stats.edge.rrl();
    assert_eq!((s, d), (slipped, dropped));
    // another /32 and TCP from the limited source are still answered in full
    let m = udp_from(edge.dns, src(3), Duration::from_secs(2)).await.expect("another prefix is answered");
    assert!(!m.metadata.truncation && m.answers.len() == 1);
    let m = tcp_ask(&mut connect_from(edge.dns, src(2)).await).await.unwrap();
    assert!(!m.metadata.truncation && m.answers.len() == 1, "TCP is never rate limited");
    // a reload that turns it off applies at once
    let off = format!("[dns]\nlisten = [\"127.0.0.1:0\"]\n{NODES}");
    edge.store.publish(SnapshotBuilder::new(&off).ready(true).build());
    for _ in 0..10 {
        let m = udp_from(edge.dns, src(2), Duration::from_secs(2)).await.expect("answered once the rate is off");
        assert!(!m.metadata.truncation);
    }
}

/// A scratch directory for a `lagdns serve` process, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("lagdns-edge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn serve_text(ports: (u16, u16), limits: &str) -> String {
    format!(
        "[dns]\nlisten = [\"127.0.0.1:{}\"]\n[dns.limits]\n{limits}\n[http]\nlisten = \"127.0.0.1:{}\"\n{NODES}",
        ports.0, ports.1
    )
}

/// Sends a query one byte every 200 ms (completing one takes 6 s).
fn drip(mut stream: TcpStream) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let q = soa_query(3);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        for byte in framed {
            if stream.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_tcp_slot_held_idle_or_dripping_others_are_answered_and_descriptors_stay_bounded() {
    let scratch = Scratch::new("slots");
    let ports = (crate::common::free_port(), crate::common::free_port());
    let limits = "tcp_connections = 24\ntcp_connections_per_client = 8";
    let mut p = crate::common::ServeProcess::spawn(&scratch.0, &serve_text(ports, limits), ports);
    p.wait_listening(Duration::from_secs(10)).await;
    let baseline = p.open_fds();
    // every slot: 16 idle from two sources, 8 dripping from a third, 40 more trying
    let mut held = Vec::new();
    let mut drips = Vec::new();
    for from in [10, 11] {
        for _ in 0..8 {
            held.push(connect_from(p.dns, src(from)).await);
        }
    }
    for _ in 0..8 {
        drips.push(drip(connect_from(p.dns, src(12)).await));
    }
    for from in 13..18 {
        for _ in 0..8 {
            held.push(connect_from(p.dns, src(from)).await);
        }
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // UDP and a TCP client from another source are answered
    for i in 0..5u8 {
        let m = udp_from(p.dns, src(30 + i), Duration::from_secs(2)).await.expect("UDP answered");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let mut s = connect_from(p.dns, src(40 + i)).await;
        let m = tcp_ask(&mut s).await.unwrap_or_else(|e| panic!("TCP from 127.0.0.{}: {e}", 40 + i));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fds = p.open_fds();
    assert!(fds <= baseline + 24 + 2, "{fds} descriptors open, {baseline} before 24 slots were taken");
    let (status, metrics) = crate::common::http_get(p.http, "/metrics").await;
    assert_eq!(status, 200);
    for needle in ["reason=\"over_total\"", "reason=\"evicted\""] {
        let line = metrics.lines().find(|l| l.contains(needle)).unwrap_or_default();
        assert!(!line.ends_with(" 0") && !line.is_empty(), "{needle}: {line:?}");
    }
    drips.iter().for_each(|d| d.abort());
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_accept_neither_spins_nor_stops() {
    let scratch = Scratch::new("emfile");
    let ports = (crate::common::free_port(), crate::common::free_port());
    let mut p = crate::common::ServeProcess::spawn_limited(&scratch.0, &serve_text(ports, ""), ports, 48);
    p.wait_listening(Duration::from_secs(10)).await;
    assert!(p.log_text().contains("does not fit the open-file limit"), "{}", p.log_text());
    // take every descriptor with HTTP connections the server accepts and holds
    let mut hogs = Vec::new();
    while p.open_fds() < 48 && hogs.len() < 60 {
        hogs.push(TcpStream::connect(p.http).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(p.open_fds() >= 47, "descriptors not exhausted: {}", p.open_fds());
    // a DNS TCP connection now waits in the backlog; accept fails with EMFILE
    let mut waiting = TcpStream::connect(p.dns).await.unwrap();
    let before = p.cpu_time();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = p.cpu_time() - before;
    assert!(spent < Duration::from_millis(300), "accept spins: {spent:?} of CPU in 2 s");
    // UDP needs no descriptor and is answered throughout
    let m = udp_from(p.dns, src(1), Duration::from_secs(2)).await.expect("UDP answered while out of descriptors");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // once descriptors are free, the waiting connection is accepted and answered
    drop(hogs);
    let m = tcp_ask(&mut waiting).await.expect("answered once descriptors are free");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let (_, metrics) = crate::common::http_get(p.http, "/metrics").await;
    let errors = metrics.lines().find(|l| l.starts_with("lagdns_dns_tcp_accept_errors_total ")).unwrap_or_default();
    assert!(!errors.ends_with(" 0"), "{errors}");
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}
