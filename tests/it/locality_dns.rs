//! Locality (SPEC §8, §9) over real sockets: an in-process DNS server with fabricated
//! snapshots, asked by UDP and TCP clients bound to source addresses in two locations
//! (127.0.1.x in `a`, 127.0.2.x in `b`: Linux routes all of 127.0.0.0/8 to loopback),
//! and with EDNS Client Subnet options as resolvers send them: the replica of the
//! client's location, `prefer` against `only` when it is ineligible, the echoed ECS
//! option and its SCOPE, FORMERR for malformed ECS, the TXT client line, the SRV
//! priorities and their truncation over small UDP sizes.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio_util::sync::CancellationToken;

use crate::common::{addrs, query_from, srv, tcp_query_from, txt, udp_from};
use lagdns::config::Config;
use lagdns::dns::query::{Nearness, QueryStats};
use lagdns::dns::records::Zone;
use lagdns::dns::DnsServer;
use lagdns::health::NodeState;
use lagdns::snapshot::{Snapshot, WriteTarget};
use lagdns::store::Store;
use lagdns::testkit::SnapshotBuilder;
use lagdns::topology::Role;
use lagdns::wal::Lsn;

const WAIT: Duration = Duration::from_secs(3);

/// Client sources: two in `a`, two in `b` (x values no other test uses), one nowhere.
const A1: &str = "127.0.1.101";
const A2: &str = "127.0.1.102";
const B1: &str = "127.0.2.101";
const B2: &str = "127.0.2.102";
const NOWHERE: &str = "127.0.0.1";

/// Networks: 127.0.1.0/24 and 10.1.0.0/16 in `a`, 127.0.2.0/24 and 10.2.0.0/16 in `b`,
/// 2001:db8:a::/48 in `a`.
const LOCALITY: &str = r#"
[locality]
[[locality.network]]
prefix = "127.0.1.0/24"
location = "a"
[[locality.network]]
prefix = "127.0.2.0/24"
location = "b"
[[locality.network]]
prefix = "10.1.0.0/16"
location = "a"
[[locality.network]]
prefix = "10.2.0.0/16"
location = "b"
[[locality.network]]
prefix = "2001:db8:a::/48"
location = "a"
"#;

/// `main`: pg1 the primary (in `a`), pg2 (in `a`) and pg3 (in `b`) replicas; `read`
/// prefers the client's location (1 answer, fallback primary), `near` is `only`,
/// `anywhere` ignores locations.
fn config() -> Config {
    let text = format!(
        r#"[dns]
listen = ["127.0.0.1:0"]
zone = "db.internal"
ttl = "1s"
negative_ttl = "5s"
nameservers = [{{ name = "ns1.db.internal", address = "192.0.2.1" }}]

[[cluster]]
name = "main"
max_lag = "100ms"
answers = 1
fallback = "primary"

[[cluster.endpoint]]
name = "near"
locality = "only"

[[cluster.endpoint]]
name = "anywhere"
locality = "ignore"

[[cluster.node]]
name = "pg1"
address = "10.0.0.11"
dsn = "host=10.0.0.11"
location = "a"

[[cluster.node]]
name = "pg2"
address = "10.0.0.12"
dsn = "host=10.0.0.12"
location = "a"

[[cluster.node]]
name = "pg3"
address = "10.0.0.13"
dsn = "host=10.0.0.13"
location = "b"
{LOCALITY}"#
    );
    Config::parse(&text, "locality_dns.toml").expect("valid test config")
}

/// Every replica caught up (10 ms), except pg2 lagging `pg2_lag`.
fn snapshot(serial: u32, pg2_lag: Duration) -> Snapshot {
    SnapshotBuilder::from_config(config())
        .serial(serial)
        .write("main", WriteTarget::Primary(0))
        .cluster("main", |c| c.primary_lsn = Some(Lsn(0x3000000)))
        .each_node("main", |i, n| {
            n.state = NodeState::Up;
            n.role = if i == 0 { Role::Primary } else { Role::Replica };
            if i > 0 {
                let lag = if i == 1 { pg2_lag } else { Duration::from_millis(10) };
                (n.lag, n.lag_bytes, n.replay_lsn) = (Some(lag), Some(0), Some(Lsn(0x3000000)));
            }
        })
        .build()
}

const HEALTHY: Duration = Duration::from_millis(10);

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
    let server = DnsServer::bind(&listen, store.clone(), stats.clone(), Vec::new(), 1000).unwrap();
    let addr = server.local_addrs()[0];
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

    /// One UDP query from `source`.
    async fn ask(&self, source: &str, msg: &Message) -> Message {
        let r = query_from(ip(source), self.addr, msg).await;
        assert_eq!(r.metadata.id, msg.metadata.id);
        r
    }

    /// The node names answered for `name` A over UDP from `source`.
    async fn nodes(&self, source: &str, name: &str) -> Vec<String> {
        let r = self.ask(source, &query(name, RecordType::A)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name} from {source}");
        addrs(&r).into_iter().map(node_name).collect()
    }

    /// Polls until the server answers with the SOA serial `serial`.
    async fn wait_for_serial(&self, serial: u32) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = self.ask(NOWHERE, &query("db.internal.", RecordType::SOA)).await;
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

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// pg1..pg3 by their 10.0.0.1x address.
fn node_name(addr: IpAddr) -> String {
    match addr.to_string().rsplit_once('.') {
        Some(("10.0.0", last)) => format!("pg{}", last.parse::<u8>().unwrap() - 10),
        _ => addr.to_string(),
    }
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m
}

/// `query` with an OPT of UDP size `payload` carrying `subnet` as ECS, if any.
fn with_ecs(mut m: Message, payload: u16, subnet: Option<&str>) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    if let Some(s) = subnet {
        e.options_mut().insert(EdnsOption::Subnet(s.parse::<ClientSubnet>().unwrap()));
    }
    m.set_edns(e);
    m
}

/// The ECS option of a response as (address/source, scope).
fn echoed(r: &Message) -> Option<(String, u8)> {
    match r.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((format!("{}/{}", s.addr(), s.source_prefix()), s.scope_prefix())),
        other => panic!("ECS option not decoded as one: {other:?}"),
    }
}

/// Records as `dig` prints them.
fn lines(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.to_string().split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn clients_get_the_replica_of_their_own_location_by_source_address() {
    let h = start(snapshot(7, HEALTHY)).await;
    // interleaved, repeatedly: a client's answer never depends on who asked before
    for _ in 0..10 {
        for (source, want) in [(A1, "pg2"), (B1, "pg3"), (A2, "pg2"), (B2, "pg3")] {
            assert_eq!(h.nodes(source, "read.db.internal.").await, [want], "read from {source}");
            assert_eq!(h.nodes(source, "near.db.internal.").await, [want], "near (only) from {source}");
            assert_eq!(h.nodes(source, "maxlag-1s.read.db.internal.").await, [want], "maxlag- from {source}");
            assert_eq!(h.nodes(source, "lsn-0-3000000.near.db.internal.").await, [want], "lsn- from {source}");
            assert_eq!(h.nodes(source, "write.db.internal.").await, ["pg1"], "write from {source}");
        }
    }
    // over TCP the peer address places the client the same way
    for (source, want) in [(A1, "pg2"), (B1, "pg3")] {
        let r = tcp_query_from(ip(source), h.addr, &query("read.db.internal.", RecordType::A)).await;
        assert_eq!(addrs(&r).into_iter().map(node_name).collect::<Vec<_>>(), [want], "TCP from {source}");
    }
    // a client no network matches (no default): either replica, by weight, as without
    // locality; `anywhere` (ignore) gives either to everyone
    let mut seen = BTreeSet::new();
    let mut ignored = BTreeSet::new();
    for _ in 0..40 {
        seen.extend(h.nodes(NOWHERE, "read.db.internal.").await);
        ignored.extend(h.nodes(A1, "anywhere.db.internal.").await);
    }
    assert_eq!(seen, BTreeSet::from(["pg2".to_string(), "pg3".to_string()]));
    assert_eq!(ignored, seen);
    // a query with EDNS but no ECS gets no ECS back
    let r = h.ask(A1, &with_ecs(query("read.db.internal.", RecordType::A), 1232, None)).await;
    assert_eq!((addrs(&r).into_iter().map(node_name).collect::<Vec<_>>(), echoed(&r)), (strings(&["pg2"]), None));
    // the metrics count: 40 local `read` + 40 `near` + 40 maxlag- + 40 lsn- answers (TCP
    // included: 2 more), the unknown client's 40, the ignoring endpoint's 40 (its
    // client is known: local or remote as the draw fell) and the EDNS one
    let by: Vec<(Nearness, u64)> = h.stats.by_nearness().to_vec();
    let count = |n: Nearness| by.iter().find(|(k, _)| *k == n).unwrap().1;
    assert_eq!(count(Nearness::Unknown), 40, "{by:?}");
    assert_eq!(count(Nearness::Local) + count(Nearness::Remote), 4 * 40 + 2 + 40 + 1, "{by:?}");
    assert!(count(Nearness::Remote) > 0 && count(Nearness::Remote) < 40, "{by:?}");
    h.stop().await;
}

#[tokio::test]
async fn prefer_spills_to_the_other_location_and_only_falls_back_when_the_local_replica_lags() {
    let h = start(snapshot(7, HEALTHY)).await;
    assert_eq!(h.nodes(A1, "read.db.internal.").await, ["pg2"]);
    // pg2 (the only replica in `a`) lags 5 s > max_lag
    h.store.publish(snapshot(8, Duration::from_secs(5)));
    h.wait_for_serial(8).await;
    for _ in 0..5 {
        // prefer: the eligible replica elsewhere; only: the fallback, the primary
        assert_eq!(h.nodes(A1, "read.db.internal.").await, ["pg3"]);
        assert_eq!(h.nodes(A1, "near.db.internal.").await, ["pg1"]);
        // b's clients do not notice
        assert_eq!(h.nodes(B1, "read.db.internal.").await, ["pg3"]);
        assert_eq!(h.nodes(B1, "near.db.internal.").await, ["pg3"]);
    }
    // SRV: prefer lists pg3 as the remote one, only leaves it out
    let read_a = h.ask(A1, &query("_postgresql._tcp.read.db.internal.", RecordType::SRV)).await;
    assert_eq!(targets(&read_a), ["pg3.main.db.internal.@20", "pg1.main.db.internal.@30"]);
    let near_a = h.ask(A1, &query("_postgresql._tcp.near.db.internal.", RecordType::SRV)).await;
    assert_eq!(targets(&near_a), ["pg1.main.db.internal.@30"]);
    // and back
    h.store.publish(snapshot(9, HEALTHY));
    h.wait_for_serial(9).await;
    assert_eq!(h.nodes(A1, "read.db.internal.").await, ["pg2"]);
    assert_eq!(h.nodes(A1, "near.db.internal.").await, ["pg2"]);
    h.stop().await;
}

#[tokio::test]
async fn ecs_places_the_client_and_comes_back_with_its_scope() {
    let h = start(snapshot(7, HEALTHY)).await;
    let either = &["pg2", "pg3"][..];
    // (source, ECS subnet, name, type, possible answers, scope)
    type Case = (&'static str, &'static str, &'static str, RecordType, &'static [&'static str], u8);
    let cases: Vec<Case> = vec![
        // a /16 network matched: scope 16, whatever the source says
        (NOWHERE, "10.2.3.0/24", "read.db.internal.", RecordType::A, &["pg3"], 16),
        (A1, "10.2.0.0/16", "read.db.internal.", RecordType::A, &["pg3"], 16),
        (B1, "10.1.77.0/24", "near.db.internal.", RecordType::A, &["pg2"], 16),
        // a /24 network: scope 24, also for a /32 subnet inside it
        (NOWHERE, "127.0.2.0/24", "read.db.internal.", RecordType::A, &["pg3"], 24),
        (B1, "127.0.1.7/32", "read.db.internal.", RecordType::A, &["pg2"], 24),
        (A1, "2001:db8:a:1::/64", "read.db.internal.", RecordType::A, &["pg2"], 48),
        // no network matched: the source prefix length (unknown location: either)
        (A1, "192.0.2.0/24", "read.db.internal.", RecordType::A, either, 24),
        (A1, "127.0.0.0/16", "read.db.internal.", RecordType::A, either, 16),
        (A1, "2001:db8:b::/56", "read.db.internal.", RecordType::A, either, 56),
        // a /0 subnet is no subnet: the source decides, scope 0
        (B1, "0.0.0.0/0", "read.db.internal.", RecordType::A, &["pg3"], 0),
        // answers that do not depend on the location: scope 0
        (A1, "10.2.3.0/24", "write.db.internal.", RecordType::A, &["pg1"], 0),
        (A1, "10.2.3.0/24", "anywhere.db.internal.", RecordType::A, either, 0),
        (A1, "10.2.3.0/24", "pg2.main.db.internal.", RecordType::A, &["pg2"], 0),
        (A1, "10.2.3.0/24", "db.internal.", RecordType::SOA, &[], 0),
        (A1, "10.2.3.0/24", "db.internal.", RecordType::NS, &[], 0),
        (A1, "10.2.3.0/24", "nosuch.db.internal.", RecordType::A, &[], 0),
        (A1, "10.2.3.0/24", "read.db.internal.", RecordType::MX, &[], 0),
        // the TXT and SRV answers of a read name depend on it
        (A1, "10.2.3.0/24", "read.db.internal.", RecordType::TXT, &[], 16),
        (A1, "10.2.3.0/24", "_postgresql._tcp.read.db.internal.", RecordType::SRV, &[], 16),
    ];
    for (source, subnet, name, rtype, want, scope) in cases {
        for tcp in [false, true] {
            let q = with_ecs(query(name, rtype), 1232, Some(subnet));
            let r = match tcp {
                false => h.ask(source, &q).await,
                true => tcp_query_from(ip(source), h.addr, &q).await,
            };
            let what = format!("{name} {rtype} from {source} with ECS {subnet} (TCP: {tcp})");
            let rcode = if name.starts_with("nosuch") { ResponseCode::NXDomain } else { ResponseCode::NoError };
            assert_eq!(r.metadata.response_code, rcode, "{what}");
            if rtype == RecordType::A && rcode == ResponseCode::NoError {
                let got = addrs(&r).into_iter().map(node_name).collect::<Vec<_>>();
                assert!(got.len() == 1 && want.contains(&got[0].as_str()), "{what}: {got:?}");
            }
            // the same family, address and source prefix, our scope
            assert_eq!(echoed(&r), Some((subnet.to_string(), scope)), "{what}");
        }
    }
    // what the placement was, as the TXT and SRV answers show it
    let r = h.ask(A1, &with_ecs(query("read.db.internal.", RecordType::TXT), 1232, Some("10.2.3.0/24"))).await;
    assert_eq!(txt(&r)[0], "client 10.2.3.0/24 location=b via ecs");
    let q = with_ecs(query("_postgresql._tcp.read.db.internal.", RecordType::SRV), 1232, Some("10.2.3.0/24"));
    let r = h.ask(A1, &q).await;
    assert_eq!(targets(&r), ["pg3.main.db.internal.@10", "pg2.main.db.internal.@20", "pg1.main.db.internal.@30"]);
    h.stop().await;
}

/// EDNS options as (code, data).
type Options = Vec<(u16, Vec<u8>)>;

/// A query for `name` A whose OPT carries `options` as given, bytes and all:
/// hickory-proto would not encode most malformed ECS options.
fn raw_query(id: u16, name: &str, options: &Options) -> Vec<u8> {
    let mut q = query(name, RecordType::A);
    q.metadata.id = id;
    let mut p = q.to_vec().unwrap();
    p[11] = 1; // ARCOUNT
    let rdata: Vec<u8> = options
        .iter()
        .flat_map(|(code, data)| {
            let mut o = code.to_be_bytes().to_vec();
            o.extend_from_slice(&(data.len() as u16).to_be_bytes());
            o.extend_from_slice(data);
            o
        })
        .collect();
    p.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0]); // root, OPT, 1232, ext rcode, version, flags
    p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    p.extend_from_slice(&rdata);
    p
}

/// ECS option data: family, source prefix, scope, address bytes.
fn ecs(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
    let mut d = family.to_be_bytes().to_vec();
    d.extend_from_slice(&[source, scope]);
    d.extend_from_slice(addr);
    d
}

#[tokio::test]
async fn malformed_ecs_options_get_formerr_and_the_server_keeps_answering() {
    let h = start(snapshot(7, HEALTHY)).await;
    // RFC 7871 §7.1.2: FORMERR, with the question and an OPT (RFC 6891 §6.1.1), without
    // the ECS option
    let cases: Vec<(&str, Options)> = vec![
        ("family 3", vec![(8, ecs(3, 24, 0, &[10, 2, 3]))]),
        ("family 0", vec![(8, ecs(0, 0, 0, &[]))]),
        ("source /33", vec![(8, ecs(1, 33, 0, &[10, 2, 3, 4, 5]))]),
        ("source /129", vec![(8, ecs(2, 129, 0, &[0x20; 17]))]),
        ("an address byte too many", vec![(8, ecs(1, 24, 0, &[10, 2, 3, 0]))]),
        ("an address byte too few", vec![(8, ecs(1, 24, 0, &[10, 2]))]),
        ("bits past the prefix", vec![(8, ecs(1, 20, 0, &[10, 2, 0x31]))]),
        ("shorter than its fixed part", vec![(8, vec![0, 1, 24])]),
        ("two ECS options", vec![(8, ecs(1, 24, 0, &[10, 2, 3])), (8, ecs(1, 24, 0, &[10, 1, 3]))]),
    ];
    for (i, (what, options)) in cases.into_iter().enumerate() {
        let id = 0x4c00 + i as u16;
        let reply = udp_from(ip(A1), h.addr, &raw_query(id, "read.db.internal.", &options)).await;
        let r = Message::from_vec(&reply).unwrap_or_else(|e| panic!("{what}: undecodable reply: {e}"));
        assert_eq!((r.metadata.id, r.metadata.response_code), (id, ResponseCode::FormErr), "{what}");
        assert!(r.answers.is_empty(), "{what}: {:?}", r.answers);
        assert_eq!(echoed(&r), None, "{what}: a malformed option is not echoed");
        assert_eq!(r.queries.len(), 1, "{what}: the question echoed");
        assert_eq!(r.edns.as_ref().map(|e| (e.version(), e.max_payload())), Some((0, 1232)), "{what}: the OPT");
    }
    // well-formed ones next to them, in raw bytes too: a nonzero scope in a query is
    // ignored (RFC 7871 §7.1.2 only says it SHOULD be 0), other options pass
    let good: [(&str, Options); 3] = [
        ("a nonzero scope", vec![(8, ecs(1, 24, 9, &[10, 2, 3]))]),
        ("after a cookie", vec![(10, vec![7; 8]), (8, ecs(1, 24, 0, &[10, 2, 3]))]),
        ("source /20", vec![(8, ecs(1, 20, 0, &[10, 2, 0x30]))]),
    ];
    for (i, (what, options)) in good.into_iter().enumerate() {
        let id = 0x4d00 + i as u16;
        let r = Message::from_vec(&udp_from(ip(A1), h.addr, &raw_query(id, "read.db.internal.", &options)).await)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{what}");
        assert_eq!(addrs(&r).into_iter().map(node_name).collect::<Vec<_>>(), ["pg3"], "{what}");
        assert_eq!(echoed(&r).map(|(_, scope)| scope), Some(16), "{what}");
    }
    assert_eq!(h.nodes(A1, "read.db.internal.").await, ["pg2"]);
    h.stop().await;
}

#[tokio::test]
async fn txt_starts_with_where_the_client_was_placed() {
    let h = start(snapshot(7, HEALTHY)).await;
    let cases = [
        (A1, None, "client 127.0.1.101 location=a via source"),
        (B2, None, "client 127.0.2.102 location=b via source"),
        (NOWHERE, None, "client 127.0.0.1 location=unknown via default"),
        (NOWHERE, Some("10.1.2.0/24"), "client 10.1.2.0/24 location=a via ecs"),
        (A1, Some("192.0.2.0/24"), "client 192.0.2.0/24 location=unknown via default"),
        (A1, Some("0.0.0.0/0"), "client 127.0.1.101 location=a via source"),
    ];
    for name in ["read.db.internal.", "near.db.internal.", "maxlag-2s.read.db.internal.", "anywhere.db.internal."] {
        for (source, subnet, want) in cases {
            let q = with_ecs(query(name, RecordType::TXT), 1232, subnet);
            let t = txt(&h.ask(source, &q).await);
            assert_eq!(t[0], want, "{name} from {source} with {subnet:?}");
            // then one line per node, each with its location
            assert_eq!(t.len(), 4, "{t:?}");
            for (line, node) in t[1..].iter().zip([
                "pg1 10.0.0.11 location=a ",
                "pg2 10.0.0.12 location=a ",
                "pg3 10.0.0.13 location=b ",
            ]) {
                assert!(line.starts_with(node), "{line:?}");
            }
        }
    }
    // TCP too; write's TXT has node lines only
    let t = txt(&tcp_query_from(ip(B1), h.addr, &query("read.db.internal.", RecordType::TXT)).await);
    assert_eq!(t[0], "client 127.0.2.101 location=b via source");
    let t = txt(&h.ask(B1, &query("write.db.internal.", RecordType::TXT)).await);
    assert!(t.len() == 3 && t[0].starts_with("pg1 10.0.0.11 location=a role=primary "), "{t:?}");
    h.stop().await;
}

#[tokio::test]
async fn srv_orders_local_then_remote_then_the_primary_with_their_addresses() {
    let h = start(snapshot(7, HEALTHY)).await;
    let node = |n: &str| format!("{n}.main.db.internal.");
    // (source, name, [(priority, node)])
    type Case = (&'static str, &'static str, Vec<(u16, &'static str)>);
    let cases: Vec<Case> = vec![
        (A1, "read", vec![(10, "pg2"), (20, "pg3"), (30, "pg1")]),
        (B1, "read", vec![(10, "pg3"), (20, "pg2"), (30, "pg1")]),
        (NOWHERE, "read", vec![(10, "pg2"), (10, "pg3"), (30, "pg1")]),
        // only: the replicas elsewhere are left out
        (A1, "near", vec![(10, "pg2"), (30, "pg1")]),
        (B2, "near", vec![(10, "pg3"), (30, "pg1")]),
        (A1, "anywhere", vec![(10, "pg2"), (10, "pg3"), (30, "pg1")]),
        (B1, "maxlag-1s.read", vec![(10, "pg3"), (20, "pg2"), (30, "pg1")]),
        (A2, "write", vec![(0, "pg1")]),
    ];
    for (source, name, want) in cases {
        let qname = format!("_postgresql._tcp.{name}.db.internal.");
        for tcp in [false, true] {
            let q = query(&qname, RecordType::SRV);
            let r = match tcp {
                false => h.ask(source, &q).await,
                true => tcp_query_from(ip(source), h.addr, &q).await,
            };
            assert!(!r.metadata.truncation && r.metadata.authoritative, "{qname}");
            let got: Vec<(u16, u16, u16, String)> = srv(&r);
            let want_srv: Vec<(u16, u16, u16, String)> =
                want.iter().map(|&(p, n)| (p, if p == 0 { 0 } else { 100 }, 5432, node(n))).collect();
            assert_eq!(got, want_srv, "{qname} from {source} (TCP: {tcp})");
            // each target's A record in the additional section, in the same order
            let want_extra: Vec<String> =
                want.iter().map(|&(_, n)| format!("{} 1 IN A 10.0.0.1{}", node(n), &n[2..])).collect();
            assert_eq!(lines(&r.additionals), want_extra, "{qname} from {source}");
        }
    }
    h.stop().await;
}

/// `big`: pg01 the primary and pg02..pg09 replicas in `a`, pg10..pg17 replicas in `b`,
/// all caught up; `near` is `only`.
fn big_snapshot() -> Snapshot {
    let mut text = String::from(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"db.internal\"\n\
         [[cluster]]\nname = \"big\"\n[[cluster.endpoint]]\nname = \"near\"\nlocality = \"only\"\n",
    );
    for i in 1..=17 {
        let location = if i <= 9 { "a" } else { "b" };
        text += &format!(
            "[[cluster.node]]\nname = \"pg{i:02}\"\naddress = \"10.3.0.{i}\"\ndsn = \"host=10.3.0.{i}\"\n\
             location = \"{location}\"\n"
        );
    }
    text += LOCALITY;
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

/// The SRV answers as `target@priority`.
fn targets(r: &Message) -> Vec<String> {
    srv(r).into_iter().map(|(p, _, _, t)| format!("{t}@{p}")).collect()
}

/// The additional records are A records of the first SRV targets, in their order.
fn assert_additional_follow_the_targets(r: &Message) {
    let order: Vec<String> = srv(r).into_iter().map(|(_, _, _, t)| t).collect();
    let extra: Vec<String> = r.additionals.iter().map(|a| a.name.to_ascii()).collect();
    assert!(extra.len() <= order.len() && extra == order[..extra.len()], "{extra:?} after {order:?}");
    assert!(r.additionals.iter().all(|a| matches!(a.data, RData::A(_))), "{:?}", r.additionals);
}

#[tokio::test]
async fn srv_over_small_udp_drops_the_additional_records_first_and_sets_tc_only_when_answers_do_not_fit() {
    let h = start(big_snapshot()).await;
    let big = |i: u32| format!("pg{i:02}.big.db.internal.");
    let read = query("_postgresql._tcp.read.db.internal.", RecordType::SRV);
    // the whole list over TCP: a's 8 at 10, b's 8 at 20, the primary at 30
    let full = tcp_query_from(ip(A1), h.addr, &read).await;
    let mut want: Vec<String> = (2..=9).map(|i| format!("{}@10", big(i))).collect();
    want.extend((10..=17).map(|i| format!("{}@20", big(i))));
    want.push(format!("{}@30", big(1)));
    assert_eq!(targets(&full), want);
    assert_eq!(full.additionals.len(), 17);
    assert!(!full.metadata.truncation);

    // EDNS 512 with ECS: the answers do not fit; those that do stay, in order, with TC
    // and no additional records, and the OPT still carries the ECS option and scope
    for subnet in [None, Some("127.0.1.0/24")] {
        let q = with_ecs(read.clone(), 512, subnet);
        let bytes = udp_from(ip(A1), h.addr, &q.to_vec().unwrap()).await;
        let r = Message::from_vec(&bytes).unwrap();
        assert!(bytes.len() <= 512, "{}", bytes.len());
        assert!(r.metadata.truncation, "TC not set");
        let got = targets(&r);
        assert!(!got.is_empty() && got.len() < 17, "{got:?}");
        assert_eq!(got, want[..got.len()], "a prefix of the ordered list");
        assert!(r.additionals.is_empty() && r.authorities.is_empty());
        assert_eq!(echoed(&r), subnet.map(|s| (s.to_string(), 24)));
    }
    // EDNS 1232: every answer, no TC, the addresses that fit
    let r = h.ask(A1, &with_ecs(read.clone(), 1232, Some("127.0.1.0/24"))).await;
    assert!(!r.metadata.truncation);
    assert_eq!(targets(&r), want);
    assert_additional_follow_the_targets(&r);

    // `near` (only) from a: 9 records fit 512 bytes, their addresses only in part: the
    // additional records that fit stay, in order, and no TC (RFC 2181 §9)
    let near = query("_postgresql._tcp.near.db.internal.", RecordType::SRV);
    let mut want: Vec<String> = (2..=9).map(|i| format!("{}@10", big(i))).collect();
    want.push(format!("{}@30", big(1)));
    let full = tcp_query_from(ip(A1), h.addr, &near).await;
    assert_eq!((targets(&full), full.additionals.len()), (want.clone(), 9));
    let q = with_ecs(near, 512, Some("127.0.1.0/24"));
    let bytes = udp_from(ip(A1), h.addr, &q.to_vec().unwrap()).await;
    let r = Message::from_vec(&bytes).unwrap();
    assert!(bytes.len() <= 512, "{}", bytes.len());
    assert!(!r.metadata.truncation, "TC set although every answer fits");
    assert_eq!(targets(&r), want);
    assert!(!r.additionals.is_empty() && r.additionals.len() < 9, "{}", r.additionals.len());
    assert_additional_follow_the_targets(&r);
    assert_eq!(echoed(&r), Some(("127.0.1.0/24".to_string(), 24)));
    h.stop().await;
}
