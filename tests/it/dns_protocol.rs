//! DNS protocol behaviour of an in-process server on 127.0.0.1:0, queried over real UDP
//! and TCP sockets with fabricated snapshots: every row of SPEC §5, node names, SRV and
//! empty non-terminals (SPEC §9), plus AA, case echo, EDNS, truncation,
//! FORMERR/NOTIMP/BADVERS, NSID and robustness to malformed packets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use lagdns::config::Config;
use lagdns::dns::query::{Qtype, QueryKind, QueryStats, Rcode};
use lagdns::dns::records::Zone;
use lagdns::dns::txt;
use lagdns::dns::DnsServer;
use lagdns::health::NodeState;
use lagdns::snapshot::{ClusterView, NodeView, Snapshot, WriteTarget};
use lagdns::store::Store;
use lagdns::testkit::SnapshotBuilder;
use lagdns::topology::{Conflict, ConflictKind, Role};
use lagdns::wal::Lsn;

const NSID: &[u8] = b"lagdns-test-1";
const WAIT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------- fixtures

/// (name, address, weight, role, state, lag ms, replay LSN)
type NodeSpec = (&'static str, &'static str, u32, Role, NodeState, Option<u64>, u64);

/// pg1 primary; pg2 10 ms; pg3 2 s; pg4 drained; pg5 IPv6 5 ms; pg6..pg9 down.
const MAIN: [NodeSpec; 9] = [
    ("pg1", "10.0.0.11", 100, Role::Primary, NodeState::Up, None, 0),
    ("pg2", "10.0.0.12", 100, Role::Replica, NodeState::Up, Some(10), 0x3000000),
    ("pg3", "10.0.0.13", 100, Role::Replica, NodeState::Up, Some(2000), 0x2000000),
    ("pg4", "10.0.0.14", 0, Role::Replica, NodeState::Up, Some(0), 0x3000000),
    ("pg5", "2001:db8::15", 100, Role::Replica, NodeState::Up, Some(5), 0x3000000),
    ("pg6", "10.0.0.16", 100, Role::Replica, NodeState::Down, None, 0),
    ("pg7", "10.0.0.17", 100, Role::Replica, NodeState::Down, None, 0),
    ("pg8", "10.0.0.18", 100, Role::Replica, NodeState::Down, None, 0),
    ("pg9", "10.0.0.19", 100, Role::Replica, NodeState::Down, None, 0),
];

const BILLING: [NodeSpec; 2] = [
    ("b1", "10.1.0.1", 100, Role::Primary, NodeState::Up, None, 0),
    ("b2", "10.1.0.2", 100, Role::Primary, NodeState::Up, None, 0),
];

/// Zone db.internal (ttl 1 s, negative 5 s). `main`: write, read (all nodes, 100 ms, 1
/// answer, fallback primary), analytics (pg3 only, 1 s, fallback none). `billing`:
/// split brain.
fn config() -> Config {
    let mut text = String::from(
        r#"[dns]
listen = ["127.0.0.1:0"]
zone = "db.internal"
ttl = "1s"
negative_ttl = "5s"
nameservers = [{ name = "ns1.db.internal", address = "192.0.2.1" }]

[[cluster]]
name = "main"
write = "write"
read = "read"
max_lag = "100ms"
answers = 1
fallback = "primary"

[[cluster.endpoint]]
name = "analytics"
nodes = ["pg3"]
max_lag = "1s"
answers = "all"
fallback = "none"
"#,
    );
    text += &node_tables(&MAIN);
    text += r#"
[[cluster]]
name = "billing"
write = "billing-write"
read = "billing-read"
max_lag = "100ms"
answers = 1
fallback = "primary"
"#;
    text += &node_tables(&BILLING);
    Config::parse(&text, "dns_protocol.toml").expect("valid test config")
}

/// `[[cluster.node]]` tables for `specs`.
fn node_tables(specs: &[NodeSpec]) -> String {
    specs
        .iter()
        .map(|(name, address, weight, ..)| {
            format!(
                "\n[[cluster.node]]\nname = \"{name}\"\naddress = \"{address}\"\n\
                 dsn = \"host={address}\"\nweight = {weight}\n"
            )
        })
        .collect()
}

/// Sets each node's facts from its spec.
fn facts(specs: &'static [NodeSpec]) -> impl FnMut(usize, &mut NodeView) {
    |i, n| {
        let s = specs[i];
        n.role = s.3;
        n.state = s.4;
        n.lag = s.5.map(Duration::from_millis);
        n.lag_bytes = s.5.map(|_| 0x3000000 - s.6);
        n.replay_lsn = s.5.map(|_| Lsn(s.6));
    }
}

fn snapshot(serial: u32, ready: bool) -> Snapshot {
    let conflict = Conflict { nodes: vec![0, 1], why: ConflictKind::SystemIdMismatch };
    let primary_lsn = |c: &mut ClusterView| (c.primary_lsn, c.split_brain_events) = (Some(Lsn(0x3000000)), 1);
    SnapshotBuilder::from_config(config())
        .serial(serial)
        .ready(ready)
        .built(SystemTime::now())
        .write("main", WriteTarget::Primary(0))
        .cluster("main", primary_lsn)
        .each_node("main", facts(&MAIN))
        .write("billing", WriteTarget::Conflict(conflict))
        .cluster("billing", primary_lsn)
        .each_node("billing", facts(&BILLING))
        .build()
}

// ---------------------------------------------------------------- harness

struct Harness {
    addr: SocketAddr,
    store: Arc<Store<Zone>>,
    stats: Arc<QueryStats>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(snap: Snapshot) -> Harness {
    let store = Store::new(snap, Zone::derive);
    let stats = Arc::new(QueryStats::default());
    let listen: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
    let server = DnsServer::bind(&listen, store.clone(), stats.clone(), NSID.to_vec(), 1000).unwrap();
    let addr = server.local_addrs()[0];
    assert_ne!(addr.port(), 0);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));
    Harness { addr, store, stats, cancel, task }
}

impl Harness {
    async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(WAIT, self.task).await.expect("server did not stop");
        result.unwrap().unwrap();
    }

    async fn udp(&self, msg: &Message) -> (Message, usize) {
        let bytes = udp_raw(self.addr, &msg.to_vec().unwrap(), msg.metadata.id).await.expect("no UDP reply");
        (decode_exact(&bytes), bytes.len())
    }

    async fn tcp(&self, msg: &Message) -> Message {
        tcp_once(self.addr, msg).await
    }

    /// Polls until the server answers with the SOA serial `serial`.
    async fn wait_for_serial(&self, serial: u32) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (r, _) = self.udp(&query("db.internal.", RecordType::SOA)).await;
            if let Some(RData::SOA(soa)) = r.answers.first().map(|a| &a.data) {
                if soa.serial == serial {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "serial {serial} never served");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One query over a new TCP connection.
async fn tcp_once(addr: SocketAddr, msg: &Message) -> Message {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let bytes = msg.to_vec().unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut len)).await.unwrap().unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.unwrap();
    decode_exact(&buf)
}

/// Sends a datagram and returns the first reply with id `id` (None on timeout).
async fn udp_raw(addr: SocketAddr, bytes: &[u8], id: u16) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (n, _) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await.ok()?.unwrap();
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return Some(buf[..n].to_vec());
        }
    }
}

/// Decodes a message and checks that no bytes trail it.
fn decode_exact(bytes: &[u8]) -> Message {
    let mut decoder = BinDecoder::new(bytes);
    let msg = Message::read(&mut decoder).expect("undecodable response");
    assert_eq!(decoder.len(), 0, "{} trailing bytes after the message", decoder.len());
    msg
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m
}

fn with_edns(mut m: Message, payload: u16, version: u8, nsid: bool) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    e.set_version(version);
    if nsid {
        e.options_mut().insert(EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap()));
    }
    m.set_edns(e);
    m
}

/// Records as `dig` prints them: `write.db.internal. 1 IN A 10.0.0.11`.
fn lines(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.to_string().split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

fn txt_strings(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r.data {
            RData::TXT(t) => String::from_utf8(t.txt_data.concat()).unwrap(),
            other => panic!("not TXT: {other:?}"),
        })
        .collect()
}

const SOA: &str = "db.internal. 5 IN SOA ns1.db.internal. hostmaster.db.internal. 7 3600 600 86400 5";

/// rcode, AA, answer lines, authority lines.
type Summary = (ResponseCode, bool, Vec<String>, Vec<String>);

fn summary(r: &Message) -> Summary {
    assert_eq!(r.metadata.message_type, MessageType::Response);
    (r.metadata.response_code, r.metadata.authoritative, lines(&r.answers), lines(&r.authorities))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn spec_table_over_udp_and_tcp() {
    let h = start(snapshot(7, true)).await;
    use ResponseCode::*;
    let ok = |answers: &[&str]| (NoError, true, s(answers), vec![]);
    let nodata = || (NoError, true, vec![], s(&[SOA]));
    let cases: Vec<(&str, RecordType, Summary)> = vec![
        ("write.db.internal.", RecordType::A, ok(&["write.db.internal. 1 IN A 10.0.0.11"])),
        ("write.db.internal.", RecordType::AAAA, nodata()),
        ("write.db.internal.", RecordType::MX, nodata()),
        ("billing-write.db.internal.", RecordType::A, (ServFail, true, vec![], vec![])),
        ("billing-read.db.internal.", RecordType::A, (ServFail, true, vec![], vec![])),
        // only pg2 is an eligible IPv4 replica; pg5 the IPv6 one
        ("read.db.internal.", RecordType::A, ok(&["read.db.internal. 1 IN A 10.0.0.12"])),
        ("read.db.internal.", RecordType::AAAA, ok(&["read.db.internal. 1 IN AAAA 2001:db8::15"])),
        // analytics: pg3 lags 2 s > 1 s, fallback none
        ("analytics.db.internal.", RecordType::A, nodata()),
        ("maxlag-5s.analytics.db.internal.", RecordType::A, ok(&["maxlag-5s.analytics.db.internal. 1 IN A 10.0.0.13"])),
        ("maxlag-1ms.read.db.internal.", RecordType::A, ok(&["maxlag-1ms.read.db.internal. 1 IN A 10.0.0.11"])),
        ("lsn-0-3000000.read.db.internal.", RecordType::A, ok(&["lsn-0-3000000.read.db.internal. 0 IN A 10.0.0.12"])),
        ("lsn-0-3000001.read.db.internal.", RecordType::A, ok(&["lsn-0-3000001.read.db.internal. 0 IN A 10.0.0.11"])),
        ("lsn-1-0.analytics.db.internal.", RecordType::A, ok(&["lsn-1-0.analytics.db.internal. 0 IN A 10.0.0.11"])),
        ("db.internal.", RecordType::SOA, ok(&[SOA])),
        ("db.internal.", RecordType::A, nodata()),
        ("ns1.db.internal.", RecordType::A, ok(&["ns1.db.internal. 1 IN A 192.0.2.1"])),
        ("nosuch.db.internal.", RecordType::A, (NXDomain, true, vec![], s(&[SOA]))),
        ("maxlag-abc.read.db.internal.", RecordType::A, (NXDomain, true, vec![], s(&[SOA]))),
        ("sub.write.db.internal.", RecordType::AAAA, (NXDomain, true, vec![], s(&[SOA]))),
        ("example.com.", RecordType::A, (Refused, false, vec![], vec![])),
        ("internal.", RecordType::SOA, (Refused, false, vec![], vec![])),
    ];
    for (name, rtype, want) in cases {
        let q = query(name, rtype);
        let (udp, _) = h.udp(&q).await;
        assert_eq!(summary(&udp), want, "UDP {name} {rtype}");
        assert_eq!(udp.metadata.id, q.metadata.id);
        assert!(!udp.metadata.recursion_available, "{name}");
        let tcp = h.tcp(&q).await;
        assert_eq!(summary(&tcp), want, "TCP {name} {rtype}");
    }
    h.stop().await;
}

#[tokio::test]
async fn maxlag_picks_among_replicas_within_the_bound() {
    let h = start(snapshot(7, true)).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (r, _) = h.udp(&query("maxlag-5s.read.db.internal.", RecordType::A)).await;
        assert_eq!(r.answers.len(), 1);
        seen.extend(lines(&r.answers));
    }
    let want = s(&["maxlag-5s.read.db.internal. 1 IN A 10.0.0.12", "maxlag-5s.read.db.internal. 1 IN A 10.0.0.13"]);
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), want);
    h.stop().await;
}

#[tokio::test]
async fn apex_ns_carries_glue_and_txt_renders_the_snapshot() {
    let snap = snapshot(7, true);
    let write_lines = txt::write_lines(&snap.clusters[0], snap.built, &snap.config.locations);
    let read_lines = txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations);
    let h = start(snap).await;
    let (r, _) = h.udp(&query("db.internal.", RecordType::NS)).await;
    assert_eq!(lines(&r.answers), ["db.internal. 1 IN NS ns1.db.internal."]);
    assert_eq!(lines(&r.additionals), ["ns1.db.internal. 1 IN A 192.0.2.1"]);
    assert!(r.metadata.authoritative);

    let r = h.tcp(&query("write.db.internal.", RecordType::TXT)).await;
    assert_eq!(txt_strings(&r.answers), write_lines);
    assert!(r.answers.iter().all(|a| a.ttl == 1));
    let r = h.tcp(&query("lsn-0-1.read.db.internal.", RecordType::TXT)).await;
    assert_eq!(txt_strings(&r.answers), read_lines);
    assert!(r.answers.iter().all(|a| a.ttl == 0));
    let r = h.tcp(&query("maxlag-3s.read.db.internal.", RecordType::TXT)).await;
    assert_eq!(txt_strings(&r.answers), read_lines);
    h.stop().await;
}

#[tokio::test]
async fn not_ready_fails_closed_until_the_first_round() {
    // SPEC §3: held until probe.timeout (1 s here) from the start, then SERVFAIL
    #[allow(clippy::disallowed_methods)] // real time: the server's hold is real
    let started = std::time::Instant::now();
    let h = start(snapshot(1, false)).await;
    let (r, _) = h.udp(&query("db.internal.", RecordType::SOA)).await;
    assert_eq!(lines(&r.answers), [SOA.replace(" 7 ", " 1 ")], "the apex is never held");
    let held = ["write.db.internal.", "read.db.internal.", "maxlag-5s.read.db.internal.", "lsn-0-1.read.db.internal."];
    let addr = h.addr;
    let asks: Vec<_> = held
        .iter()
        .map(|name| {
            let q = query(name, RecordType::A);
            tokio::spawn(async move { udp_raw(addr, &q.to_vec().unwrap(), q.metadata.id).await.expect("an answer") })
        })
        .collect();
    let mut answers = Vec::new();
    for ask in asks {
        answers.push(decode_exact(&ask.await.unwrap()));
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500), "{waited:?}");
    for (name, r) in held.iter().zip(answers) {
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{name}");
        assert!(r.answers.is_empty());
    }
    // after the hold, SERVFAIL at once
    #[allow(clippy::disallowed_methods)]
    let asked = std::time::Instant::now();
    let (r, _) = h.udp(&query("write.db.internal.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(asked.elapsed() < Duration::from_millis(500));

    h.store.publish(snapshot(2, true));
    h.wait_for_serial(2).await;
    let (r, _) = h.udp(&query("write.db.internal.", RecordType::A)).await;
    assert_eq!(lines(&r.answers), ["write.db.internal. 1 IN A 10.0.0.11"]);
    h.stop().await;
}

#[tokio::test]
async fn queries_held_before_the_first_round_are_answered_when_it_completes() {
    #[allow(clippy::disallowed_methods)] // real time: the server's hold is real
    let started = std::time::Instant::now();
    let h = start(snapshot(1, false)).await;
    let (addr, store) = (h.addr, h.store.clone());
    let udp = tokio::spawn(async move {
        let q = query("write.db.internal.", RecordType::A);
        let bytes = udp_raw(addr, &q.to_vec().unwrap(), q.metadata.id).await;
        decode_exact(&bytes.expect("an answer"))
    });
    let tcp_query = query("read.db.internal.", RecordType::A);
    let tcp = tokio::spawn(async move { tcp_once(addr, &tcp_query).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!udp.is_finished() && !tcp.is_finished(), "held while the round runs");
    store.publish(snapshot(2, true));
    let (u, t) = (udp.await.unwrap(), tcp.await.unwrap());
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(800), "answered when the round completed, not at the timeout: {waited:?}");
    assert_eq!(lines(&u.answers), ["write.db.internal. 1 IN A 10.0.0.11"]);
    assert_eq!(t.metadata.response_code, ResponseCode::NoError);
    assert_eq!(t.answers.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn a_new_snapshot_changes_answers_and_serial() {
    let h = start(snapshot(7, true)).await;
    let mut next = snapshot(8, true);
    next.cluster_mut(0).write = WriteTarget::Stale { node: 1, since: SystemTime::now() };
    h.store.publish(next);
    h.wait_for_serial(8).await;
    let (r, _) = h.udp(&query("write.db.internal.", RecordType::A)).await;
    assert_eq!(lines(&r.answers), ["write.db.internal. 1 IN A 10.0.0.12"]);
    let (r, _) = h.udp(&query("nosuch.db.internal.", RecordType::A)).await;
    assert_eq!(lines(&r.authorities), [SOA.replace(" 7 ", " 8 ")]);
    h.stop().await;
}

#[tokio::test]
async fn echoes_the_question_case() {
    let h = start(snapshot(7, true)).await;
    let (r, _) = h.udp(&query("WrItE.Db.InTeRnAl.", RecordType::A)).await;
    assert_eq!(r.queries[0].name().to_ascii(), "WrItE.Db.InTeRnAl.");
    assert_eq!(lines(&r.answers), ["WrItE.Db.InTeRnAl. 1 IN A 10.0.0.11"]);
    assert!(r.metadata.authoritative);
    let (r, _) = h.udp(&query("NoSuch.DB.internal.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    h.stop().await;
}

#[tokio::test]
async fn edns_payload_is_echoed_and_clamped() {
    let h = start(snapshot(7, true)).await;
    for (asked, given) in [(4096u16, 1232u16), (1232, 1232), (800, 800), (100, 512)] {
        let (r, _) = h.udp(&with_edns(query("write.db.internal.", RecordType::A), asked, 0, false)).await;
        let edns = r.edns.as_ref().expect("OPT echoed");
        assert_eq!((edns.max_payload(), edns.version()), (given, 0), "asked {asked}");
        assert!(edns.option(EdnsCode::NSID).is_none());
    }
    let (r, _) = h.udp(&query("write.db.internal.", RecordType::A)).await;
    assert!(r.edns.is_none(), "OPT without one in the request");
    h.stop().await;
}

#[tokio::test]
async fn large_answers_truncate_on_udp_and_complete_over_tcp() {
    let snap = snapshot(7, true);
    let all = txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations);
    let h = start(snap).await;
    let q = query("read.db.internal.", RecordType::TXT);
    let (plain, size) = h.udp(&q).await;
    assert!(size <= 512, "{size} bytes without EDNS");
    assert!(plain.metadata.truncation, "TC not set");
    assert!(plain.answers.len() < all.len());
    assert_eq!(txt_strings(&plain.answers), all[..plain.answers.len()]);

    let full = h.tcp(&q).await;
    assert!(!full.metadata.truncation);
    assert_eq!(txt_strings(&full.answers), all);

    let (edns, size) = h.udp(&with_edns(q.clone(), 1232, 0, true)).await;
    assert!(size > 512 && size <= 1232, "{size}");
    assert!(!edns.metadata.truncation);
    assert_eq!(txt_strings(&edns.answers), all);
    assert!(edns.edns.is_some());

    // EDNS with a small buffer: truncated, OPT (and NSID) still there, no trailing bytes.
    let (small, size) = h.udp(&with_edns(q, 600, 0, true)).await;
    assert!(size <= 600, "{size}");
    assert!(small.metadata.truncation);
    assert!(small.edns.as_ref().unwrap().option(EdnsCode::NSID).is_some());
    h.stop().await;
}

#[tokio::test]
async fn protocol_errors() {
    let h = start(snapshot(7, true)).await;
    // qdcount 2 → FORMERR
    let mut two = query("write.db.internal.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("read.db.internal.").unwrap(), RecordType::A));
    let (r, _) = h.udp(&two).await;
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // qdcount 0 → FORMERR
    let empty = Message::new(77, MessageType::Query, OpCode::Query);
    let (r, _) = h.udp(&empty).await;
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // garbage after a valid header → FORMERR
    let garbage = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0x01];
    let reply = udp_raw(h.addr, &garbage, 0x1234).await.expect("FORMERR expected");
    assert_eq!(decode_exact(&reply).metadata.response_code, ResponseCode::FormErr);
    // opcode STATUS and NOTIFY → NOTIMP, without AA, RA, RD, AD or CD (defined for
    // QUERY only: genreport's opcodeflg test)
    for op in [OpCode::Status, OpCode::Notify] {
        let mut m = query("write.db.internal.", RecordType::A);
        m.metadata.op_code = op;
        (m.metadata.recursion_desired, m.metadata.checking_disabled) = (true, true);
        let (r, _) = h.udp(&m).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "{op:?}");
        let md = r.metadata;
        let flags = [md.authoritative, md.recursion_available, md.recursion_desired, md.authentic_data];
        assert_eq!((flags, md.checking_disabled), ([false; 4], false), "{op:?}");
        assert_eq!(md.op_code, op, "the opcode is echoed");
    }
    // EDNS version 1 → BADVERS (16) with an OPT of version 0
    let (r, _) = h.udp(&with_edns(query("write.db.internal.", RecordType::A), 1232, 1, false)).await;
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert_eq!(r.edns.as_ref().map(|e| e.version()), Some(0));
    // class CH → REFUSED
    let mut ch = Message::new(78, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii("write.db.internal.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    ch.add_query(q);
    let (r, _) = h.udp(&ch).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    h.stop().await;
}

#[tokio::test]
async fn nsid_is_returned_when_asked() {
    let h = start(snapshot(7, true)).await;
    let (r, _) = h.udp(&with_edns(query("write.db.internal.", RecordType::A), 1232, 0, true)).await;
    let got = r.edns.as_ref().and_then(|e| e.option(EdnsCode::NSID).cloned());
    assert_eq!(got, Some(EdnsOption::NSID(NSIDPayload::new(NSID.to_vec()).unwrap())));
    let r = h.tcp(&with_edns(query("nosuch.db.internal.", RecordType::A), 1232, 0, true)).await;
    assert!(r.edns.as_ref().and_then(|e| e.option(EdnsCode::NSID)).is_some());
    h.stop().await;
}

#[tokio::test]
async fn survives_a_burst_of_malformed_packets() {
    let h = start(snapshot(7, true)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let valid = query("write.db.internal.", RecordType::A).to_vec().unwrap();
    let mut packets: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0xff; 11], vec![0xff; 12], vec![0xff; 600]];
    for cut in 12..valid.len() {
        packets.push(valid[..cut].to_vec());
    }
    let mut flipped = valid.clone();
    flipped[2] |= 0x80; // QR=1: a response, must be ignored
    packets.push(flipped);
    let mut pointer_loop = valid[..12].to_vec();
    pointer_loop.extend([0xc0, 0x0c, 0, 1, 0, 1]);
    packets.push(pointer_loop);
    for i in 0..200u32 {
        let mut junk = valid.clone();
        let at = 12 + (i as usize * 7) % (valid.len() - 12);
        junk[at] = junk[at].wrapping_add(i as u8 | 1);
        packets.push(junk);
    }
    for p in &packets {
        socket.send_to(p, h.addr).await.unwrap();
    }
    // Garbage over TCP too.
    let mut tcp = TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(&[0, 5, 1, 2, 3, 4, 5, 0xff, 0xff]).await.unwrap();
    drop(tcp);

    let (r, _) = h.udp(&query("write.db.internal.", RecordType::A)).await;
    assert_eq!(lines(&r.answers), ["write.db.internal. 1 IN A 10.0.0.11"]);
    let r = h.tcp(&query("write.db.internal.", RecordType::A)).await;
    assert_eq!(lines(&r.answers), ["write.db.internal. 1 IN A 10.0.0.11"]);
    h.stop().await;
}

#[tokio::test]
async fn every_answered_query_is_counted() {
    let h = start(snapshot(7, true)).await;
    h.udp(&query("write.db.internal.", RecordType::A)).await;
    h.tcp(&query("write.db.internal.", RecordType::A)).await;
    h.udp(&query("maxlag-1s.read.db.internal.", RecordType::AAAA)).await;
    h.udp(&query("nosuch.db.internal.", RecordType::TXT)).await;
    h.udp(&query("example.com.", RecordType::A)).await;
    h.udp(&query("_postgresql._tcp.read.db.internal.", RecordType::SRV)).await;
    h.tcp(&query("pg2.main.db.internal.", RecordType::A)).await;
    h.udp(&query("_tcp.read.db.internal.", RecordType::SRV)).await;
    let mut m = query("write.db.internal.", RecordType::A);
    m.metadata.op_code = OpCode::Status;
    h.udp(&m).await;
    let mut got = h.stats.nonzero();
    got.sort_by_key(|(k, t, r, _)| (k.as_str(), t.as_str(), r.as_str()));
    let mut want = vec![
        (QueryKind::Write, Qtype::A, Rcode::NoError, 2),
        (QueryKind::MaxLag, Qtype::Aaaa, Rcode::NoError, 1),
        (QueryKind::Unknown, Qtype::Txt, Rcode::NxDomain, 1),
        (QueryKind::OutOfZone, Qtype::A, Rcode::Refused, 1),
        (QueryKind::Malformed, Qtype::A, Rcode::NotImp, 1),
        (QueryKind::Srv, Qtype::Srv, Rcode::NoError, 1),
        (QueryKind::Node, Qtype::A, Rcode::NoError, 1),
        (QueryKind::Empty, Qtype::Srv, Rcode::NoError, 1),
    ];
    want.sort_by_key(|(k, t, r, _)| (k.as_str(), t.as_str(), r.as_str()));
    assert_eq!(got, want);
    h.stop().await;
}

#[tokio::test]
async fn binds_several_addresses_and_stops_cleanly() {
    let store = Store::new(snapshot(7, true), Zone::derive);
    let listen: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap(), "127.0.0.2:0".parse().unwrap()];
    let stats = Arc::new(QueryStats::default());
    let server = DnsServer::bind(&listen, store, stats, Vec::new(), 1000).unwrap();
    let addrs = server.local_addrs();
    assert_eq!(addrs.len(), 2);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));
    for addr in &addrs {
        let q = query("write.db.internal.", RecordType::A);
        let reply = udp_raw(*addr, &q.to_vec().unwrap(), q.metadata.id).await.expect("reply");
        assert_eq!(lines(&decode_exact(&reply).answers), ["write.db.internal. 1 IN A 10.0.0.11"]);
        // TCP on the same port
        TcpStream::connect(addr).await.expect("TCP on the UDP port");
        // a second server on the same address is refused
        let again = DnsServer::bind(
            &[*addr],
            Store::new(snapshot(7, true), Zone::derive),
            Arc::new(QueryStats::default()),
            Vec::new(),
            1000,
        );
        assert_eq!(again.err().map(|e| e.kind()), Some(std::io::ErrorKind::AddrInUse), "{addr} bound twice");
    }
    // every query is answered, whichever worker takes it
    for i in 0..64u16 {
        let mut q = query("write.db.internal.", RecordType::A);
        q.metadata.id = 1000 + i;
        let reply = udp_raw(addrs[0], &q.to_vec().unwrap(), q.metadata.id).await.expect("reply");
        assert_eq!(decode_exact(&reply).metadata.id, 1000 + i);
    }
    // NSID is not configured: no option even when asked.
    let q = with_edns(query("write.db.internal.", RecordType::A), 1232, 0, true);
    let reply = decode_exact(&udp_raw(addrs[0], &q.to_vec().unwrap(), q.metadata.id).await.unwrap());
    assert!(reply.edns.unwrap().option(EdnsCode::NSID).is_none());
    cancel.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap().unwrap();
}

// ---------------------------------------------------------------- SPEC §9

/// The SRV target names of SRV answers, in order, and their ports.
fn srv_targets(records: &[Record]) -> Vec<(String, u16)> {
    records
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => (srv.target.to_ascii(), srv.port),
            other => panic!("not SRV: {other:?}"),
        })
        .collect()
}

/// Every additional record is an address record of an SRV target, in the answers'
/// order (the first `n` of them).
fn assert_additional_match_targets(r: &Message) {
    let targets = srv_targets(&r.answers);
    assert!(r.additionals.len() <= targets.len(), "{:?}", lines(&r.additionals));
    for (extra, (target, _)) in r.additionals.iter().zip(&targets) {
        assert_eq!(&extra.name.to_ascii(), target, "{}", extra);
        assert!(matches!(extra.data, RData::A(_) | RData::AAAA(_)), "{extra}");
    }
}

#[tokio::test]
async fn srv_answers_carry_their_targets_addresses() {
    let h = start(snapshot(7, true)).await;
    let read = query("_postgresql._tcp.read.db.internal.", RecordType::SRV);
    let want = s(&[
        "_postgresql._tcp.read.db.internal. 1 IN SRV 10 100 5432 pg2.main.db.internal.",
        "_postgresql._tcp.read.db.internal. 1 IN SRV 10 100 5432 pg5.main.db.internal.",
        "_postgresql._tcp.read.db.internal. 1 IN SRV 30 100 5432 pg1.main.db.internal.",
    ]);
    let additional = s(&[
        "pg2.main.db.internal. 1 IN A 10.0.0.12",
        "pg5.main.db.internal. 1 IN AAAA 2001:db8::15",
        "pg1.main.db.internal. 1 IN A 10.0.0.11",
    ]);
    let (udp, _) = h.udp(&read).await;
    let tcp = h.tcp(&read).await;
    let (edns, _) = h.udp(&with_edns(read, 1232, 0, false)).await;
    for r in [&udp, &tcp, &edns] {
        assert_eq!(summary(r), (ResponseCode::NoError, true, want.clone(), vec![]));
        assert_eq!(lines(&r.additionals), additional);
        assert!(!r.metadata.truncation);
        assert_additional_match_targets(r);
    }
    for (name, want) in [
        (
            "_postgresql._tcp.write.db.internal.",
            "_postgresql._tcp.write.db.internal. 1 IN SRV 0 0 5432 pg1.main.db.internal.",
        ),
        (
            "_postgresql._tcp.lsn-0-3000001.read.db.internal.",
            "_postgresql._tcp.lsn-0-3000001.read.db.internal. 0 IN SRV 30 100 5432 pg1.main.db.internal.",
        ),
        (
            "_postgresql._tcp.maxlag-5s.analytics.db.internal.",
            "_postgresql._tcp.maxlag-5s.analytics.db.internal. 1 IN SRV 10 100 5432 pg3.main.db.internal.",
        ),
    ] {
        let (r, _) = h.udp(&query(name, RecordType::SRV)).await;
        assert_eq!(lines(&r.answers), [want], "{name}");
        assert_additional_match_targets(&r);
        assert_eq!(r.additionals.len(), 1, "{name}");
    }
    // the case of the question is echoed on SRV answers too
    let (r, _) = h.udp(&query("_PostgreSQL._TCP.Write.db.internal.", RecordType::SRV)).await;
    assert_eq!(lines(&r.answers), ["_PostgreSQL._TCP.Write.db.internal. 1 IN SRV 0 0 5432 pg1.main.db.internal."]);
    // split brain: SERVFAIL, like the A query
    let (r, _) = h.udp(&query("_postgresql._tcp.billing-write.db.internal.", RecordType::SRV)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    h.stop().await;
}

#[tokio::test]
async fn node_names_and_empty_non_terminals() {
    let snap = snapshot(7, true);
    let pg3_line = txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations)[2].clone();
    let h = start(snap).await;
    use ResponseCode::*;
    let ok = |answers: &[&str]| (NoError, true, s(answers), vec![]);
    let nodata = || (NoError, true, vec![], s(&[SOA]));
    let nx = || (NXDomain, true, vec![], s(&[SOA]));
    let cases: Vec<(&str, RecordType, Summary)> = vec![
        ("pg2.main.db.internal.", RecordType::A, ok(&["pg2.main.db.internal. 1 IN A 10.0.0.12"])),
        ("pg5.main.db.internal.", RecordType::AAAA, ok(&["pg5.main.db.internal. 1 IN AAAA 2001:db8::15"])),
        ("pg5.main.db.internal.", RecordType::A, nodata()),
        // down: still its address
        ("pg9.main.db.internal.", RecordType::A, ok(&["pg9.main.db.internal. 1 IN A 10.0.0.19"])),
        ("b1.billing.db.internal.", RecordType::A, ok(&["b1.billing.db.internal. 1 IN A 10.1.0.1"])),
        ("pg2.main.db.internal.", RecordType::MX, nodata()),
        // RFC 8020: what only exists because names below it do is NODATA
        ("main.db.internal.", RecordType::A, nodata()),
        ("billing.db.internal.", RecordType::NS, nodata()),
        ("_tcp.read.db.internal.", RecordType::SRV, nodata()),
        ("_tcp.write.db.internal.", RecordType::A, nodata()),
        ("_tcp.maxlag-5s.read.db.internal.", RecordType::TXT, nodata()),
        ("_postgresql._tcp.read.db.internal.", RecordType::A, nodata()),
        ("read.db.internal.", RecordType::SRV, nodata()),
        // and what has nothing below it does not exist
        ("pg1.billing.db.internal.", RecordType::A, nx()),
        ("x.pg2.main.db.internal.", RecordType::A, nx()),
        ("_tcp.main.db.internal.", RecordType::A, nx()),
        ("_udp.read.db.internal.", RecordType::A, nx()),
        ("_postgresql._tcp.main.db.internal.", RecordType::SRV, nx()),
    ];
    for (name, rtype, want) in cases {
        let q = query(name, rtype);
        let (udp, _) = h.udp(&q).await;
        assert_eq!(summary(&udp), want, "UDP {name} {rtype}");
        assert_eq!(summary(&h.tcp(&q).await), want, "TCP {name} {rtype}");
    }
    let (r, _) = h.udp(&query("pg3.main.db.internal.", RecordType::TXT)).await;
    assert_eq!(txt_strings(&r.answers), [pg3_line]);
    h.stop().await;
}

/// `big`: pg01 the primary, pg02..pg40 replicas caught up, node i on port 6000 + i;
/// endpoint `eight` over pg02..pg09.
fn big_snapshot() -> Snapshot {
    let mut text = String::from(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"db.internal\"\nnegative_ttl = \"5s\"\n\
         nameservers = [{ name = \"ns1.db.internal\", address = \"192.0.2.1\" }]\n\
         [[cluster]]\nname = \"big\"\n[[cluster.endpoint]]\nname = \"eight\"\n",
    );
    let eight: Vec<String> = (2..=9).map(|i| format!("\"pg{i:02}\"")).collect();
    text += &format!("nodes = [{}]\n", eight.join(", "));
    for i in 1..=40 {
        text += &format!(
            "[[cluster.node]]\nname = \"pg{i:02}\"\naddress = \"10.2.0.{i}\"\nport = {}\ndsn = \"host=10.2.0.{i}\"\n",
            6000 + i
        );
    }
    let config = Config::parse(&text, "big.toml").expect("valid big config");
    SnapshotBuilder::from_config(config)
        .serial(7)
        .write("big", WriteTarget::Primary(0))
        .cluster("big", |c| c.primary_lsn = Some(Lsn(0x3000000)))
        .each_node("big", |i, n| {
            n.state = NodeState::Up;
            n.role = if i == 0 { Role::Primary } else { Role::Replica };
            if i > 0 {
                (n.lag, n.lag_bytes, n.replay_lsn) = (Some(Duration::ZERO), Some(0), Some(Lsn(0x3000000)));
            }
        })
        .build()
}

#[tokio::test]
async fn srv_of_forty_nodes_truncates_over_udp_and_completes_over_tcp() {
    let h = start(big_snapshot()).await;
    let q = query("_postgresql._tcp.read.db.internal.", RecordType::SRV);
    // TCP: all 39 replicas at 10, the primary at 30, every target's address
    let full = h.tcp(&q).await;
    assert!(!full.metadata.truncation);
    let targets = srv_targets(&full.answers);
    assert_eq!(targets.len(), 40);
    let mut want: Vec<(String, u16)> = (2..=40).map(|i| (format!("pg{i:02}.big.db.internal."), 6000 + i)).collect();
    want.push(("pg01.big.db.internal.".into(), 6001));
    assert_eq!(targets, want);
    assert_eq!(full.additionals.len(), 40);
    assert_additional_match_targets(&full);
    assert_eq!(lines(&full.additionals[..1]), ["pg02.big.db.internal. 1 IN A 10.2.0.2"]);

    // UDP without EDNS (512 bytes): the additional section goes first, then the
    // answers that fit stay, with TC so the client retries over TCP
    let (plain, size) = h.udp(&q).await;
    assert!(size <= 512, "{size}");
    assert!(plain.metadata.truncation, "TC not set");
    assert!(!plain.answers.is_empty() && plain.answers.len() < 40, "{}", plain.answers.len());
    assert_eq!(srv_targets(&plain.answers), want[..plain.answers.len()]);
    assert!(plain.additionals.is_empty() && plain.authorities.is_empty());
    // EDNS 1232: more of them, still truncated
    let (edns, size) = h.udp(&with_edns(q.clone(), 1232, 0, false)).await;
    assert!(size <= 1232 && size > 512, "{size}");
    assert!(edns.metadata.truncation);
    assert!(edns.answers.len() > plain.answers.len() && edns.answers.len() < 40);
    assert!(edns.additionals.is_empty());

    // Nine records fit 512 bytes, their addresses only in part: the additional records
    // that fit stay, in order, and no TC (RFC 2181 §9)
    let q = query("_postgresql._tcp.eight.db.internal.", RecordType::SRV);
    let (r, size) = h.udp(&q).await;
    assert!(size <= 512, "{size}");
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 9);
    assert!(!r.additionals.is_empty() && r.additionals.len() < 9, "{}", r.additionals.len());
    assert_additional_match_targets(&r);
    let full = h.tcp(&q).await;
    assert_eq!((full.answers.len(), full.additionals.len()), (9, 9));
    assert_additional_match_targets(&full);
    h.stop().await;
}
