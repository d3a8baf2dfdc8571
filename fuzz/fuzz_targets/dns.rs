//! Fuzz target `dns`: the whole answer path (parse → checks → answer → encode), as the
//! sockets drive it, with the fast path (`dns::fast`) held to the full path's bytes.
//!
//! Every message is answered twice over the same store: by a responder as it serves
//! (fast path first) and by one that never takes it (`Responder::full_path_only`), both
//! with `respond_with` and a `SmallRng` seeded from the input, so that weighted answers
//! draw alike, and with rate-limit tables keyed alike. Both must give the same reply, the
//! same bytes and the same query counters, or the target panics with both responses in
//! hex. The response must also parse back with hickory-proto, echo the ID and fit the
//! size limit. Anything else (or a panic, or an overflow with the fuzz profile's checks)
//! is a crash.
//!
//! The first byte chooses:
//!
//! | bits | |
//! |---|---|
//! | 0 | a TCP stream (split into messages by the production codec, each answered in turn), else a UDP datagram |
//! | 1 | the config with `[locality]` (node locations, networks covering most of [`CLIENTS`]), else without |
//! | 2 | with a rate limit and an allow list |
//! | 3–5 | the client address: [`CLIENTS`]`[n]` |
//! | 6 and 7 both set | a server whose first probe round has not finished (held queries are released); otherwise one that is ready, whose fast table is filled |
//!
//! The rest is the packet or stream.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hickory_proto::op::Message;
use lagdns::dns::query::QueryStats;
use lagdns::dns::records::Zone;
use lagdns::dns::respond::{Ask, Reply, Responder, Transport};
use lagdns::dns::tcp::message_codec;
use lagdns::health::NodeState;
use lagdns::snapshot::{Snapshot, WriteTarget};
use lagdns::store::Store;
use lagdns::testkit::SnapshotBuilder;
use lagdns::topology::Role;
use lagdns::wal::Lsn;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio_util::codec::Decoder;

/// The client addresses bits 3–5 choose from. With `[locality]`: in `a`, in `c` (a /25
/// inside `a`'s /24, so the ECS scope is raised), in `b`, unknown (outside every
/// network, and outside the allow list), IPv6 in `a`, IPv6 in `b`, IPv6 unknown, and an
/// IPv4-mapped IPv6 address in `b` (placed as IPv4).
const CLIENTS: [IpAddr; 8] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 7)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 200)),
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, 9)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 55)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 5)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 9)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0203)),
];

/// Cluster `main`: `write`, `read` (one weighted answer), `analytics` (all answers of
/// pg3, pg4, pg6; no fallback), `open` (two answers within 15 ms, fallback open),
/// `local` (one answer); cluster `billing`. With `[locality]`: pg1 and pg2 in `a`, pg3
/// and pg4 in `b`, pg6 in `c`, pg5 nowhere; `read` prefers the client's location,
/// `analytics` and `local` answer only there, `open` ignores it.
fn config(locality: bool, edge: bool) -> String {
    let key = |key: &str, value: &str| {
        if locality && !value.is_empty() {
            format!("{key} = \"{value}\"\n")
        } else {
            String::new()
        }
    };
    let node = |name: &str, address: &str, extra: &str, location: &str| {
        let at = key("location", location);
        format!("[[cluster.node]]\nname = \"{name}\"\naddress = \"{address}\"\ndsn = \"host=h\"\n{extra}{at}")
    };
    let mut text = String::from(
        r#"
[dns]
zone = "db.internal"
nsid = "fuzz"
nameservers = [{ name = "ns1.db.internal", address = "192.0.2.1" }, { name = "ns2.sub.db.internal", address = "2001:db8::53" }]
"#,
    );
    if edge {
        text += "allow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n";
    }
    text += "[[cluster]]\nname = \"main\"\nmax_lag = \"100ms\"\nanswers = 1\nfallback = \"primary\"\n";
    text += &node("pg1", "10.0.0.1", "", "a");
    text += &node("pg2", "10.0.0.2", "", "a");
    text += &node("pg3", "2001:db8::3", "port = 6432\nweight = 300\n", "b");
    text += &node("pg4", "10.0.0.4", "weight = 0\n", "b");
    text += &node("pg5", "10.0.0.5", "", "");
    text += &node("pg6", "10.0.0.6", "", "c");
    text += "[[cluster.endpoint]]\nname = \"analytics\"\nnodes = [\"pg3\", \"pg4\", \"pg6\"]\nanswers = \"all\"\n";
    text += &format!("fallback = \"none\"\n{}", key("locality", "only"));
    text += "[[cluster.endpoint]]\nname = \"open\"\nmax_lag = \"15ms\"\nanswers = 2\nfallback = \"open\"\n";
    text += &key("locality", "ignore");
    text += &format!("[[cluster.endpoint]]\nname = \"local\"\n{}", key("locality", "only"));
    text += "[[cluster]]\nname = \"billing\"\nread = \"billing-read\"\nwrite = \"billing-write\"\n";
    text += "[[cluster.node]]\nname = \"b1\"\naddress = \"10.1.0.1\"\ndsn = \"host=h\"\n";
    text += "[[cluster.node]]\nname = \"b2\"\naddress = \"10.1.0.2\"\ndsn = \"host=h\"\n";
    if locality {
        text += "[locality]\n";
        for (prefix, location) in [
            ("10.0.1.0/24", "a"),
            ("10.0.1.128/25", "c"),
            ("10.0.2.0/24", "b"),
            ("2001:db8:1::/48", "a"),
            ("2001:db8:2::/56", "b"),
        ] {
            text += &format!("[[locality.network]]\nprefix = \"{prefix}\"\nlocation = \"{location}\"\n");
        }
    }
    if edge {
        text += "[dns.limits]\nrate = 3\nslip = 2\n";
    }
    text
}

/// (role, state, lag ms) of main's nodes: pg1 primary, pg2–pg4 and pg6 qualify for
/// `read` (pg4 with weight 0), pg5 is down.
const MAIN: [(Role, NodeState, Option<u64>); 6] = [
    (Role::Primary, NodeState::Up, None),
    (Role::Replica, NodeState::Up, Some(10)),
    (Role::Replica, NodeState::Up, Some(20)),
    (Role::Replica, NodeState::Up, Some(0)),
    (Role::Replica, NodeState::Down, Some(0)),
    (Role::Replica, NodeState::Up, Some(5)),
];

/// The snapshot the probes would publish. pg6 stands for a host name that resolves to
/// many addresses (SPEC §11): 40 IPv4 and 12 IPv6, so its answers do not fit 512 bytes.
fn snapshot(locality: bool, edge: bool, ready: bool) -> Snapshot {
    let many: Vec<IpAddr> = (0..40u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 6, i)))
        .chain((0..12u16).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, i))))
        .collect();
    SnapshotBuilder::new(&config(locality, edge))
        .ready(ready)
        .cluster("main", |c| (c.write, c.primary_lsn) = (WriteTarget::Primary(0), Some(Lsn(0x3000000))))
        .each_node("main", |i, n| {
            let (role, state, lag) = MAIN[i];
            (n.role, n.state) = (role, state);
            n.lag = lag.map(Duration::from_millis);
            n.lag_bytes = lag.map(|l| l * 100);
            n.replay_lsn = lag.map(|l| Lsn(0x3000000 - l * 100));
            n.current_lsn = Some(Lsn(0x3000000)).filter(|_| role == Role::Primary);
            if i == 5 {
                n.addresses = many.clone();
            }
        })
        .cluster("billing", |c| (c.write, c.primary_lsn) = (WriteTarget::Primary(0), Some(Lsn(0x100))))
        .each_node("billing", |i, n| {
            (n.state, n.role) = (NodeState::Up, if i == 0 { Role::Primary } else { Role::Replica });
            (n.lag, n.lag_bytes, n.replay_lsn) = match i {
                0 => (None, None, None),
                _ => (Some(Duration::from_millis(1)), Some(0), Some(Lsn(0x100))),
            };
        })
        .build()
}

/// A responder as served and one without the fast path, over one store.
struct Pair {
    fast: Responder,
    full: Responder,
    fast_stats: Arc<QueryStats>,
    full_stats: Arc<QueryStats>,
}

fn pair(locality: bool, edge: bool, ready: bool) -> Pair {
    let store = Store::new(snapshot(locality, edge, ready), Zone::derive);
    let (fast_stats, full_stats) = (Arc::new(QueryStats::default()), Arc::new(QueryStats::default()));
    let fast = Responder::new(store.clone(), fast_stats.clone(), b"fuzz".to_vec()).rate_seed(7);
    let full = Responder::new(store, full_stats.clone(), b"fuzz".to_vec()).full_path_only().rate_seed(7);
    Pair { fast, full, fast_stats, full_stats }
}

/// One message answered as the socket loops do: held queries asked again once released.
fn answer(r: &Responder, ask: Ask<'_>, seed: u64, out: &mut Vec<u8>) -> Reply {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut reply = r.respond_with(&Ask { may_hold: true, ..ask }, out, &mut rng);
    if reply == Reply::Hold {
        reply = r.respond_with(&Ask { released: true, ..ask }, out, &mut rng);
        assert_ne!(reply, Reply::Hold, "held again after release");
    }
    reply
}

fn check(packet: &[u8], out: &[u8], transport: Transport) {
    let m =
        Message::from_vec(out).unwrap_or_else(|e| panic!("unparseable response ({e}) to {packet:02x?}: {out:02x?}"));
    assert_eq!(&out[..2], &packet[..2], "ID not echoed");
    let limit = match transport {
        Transport::Tcp => 65_535,
        Transport::Udp => m.edns.as_ref().map_or(512, |e| usize::from(e.max_payload())),
    };
    assert!(out.len() <= limit, "{} bytes over {limit}", out.len());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// FNV-1a: the draws' seed, from the whole input.
fn seed_of(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn main() {
    // [locality << 0 | edge << 1 | cold << 2]
    let pairs: Vec<Pair> = (0..8).map(|i| pair(i & 1 != 0, i & 2 != 0, i & 4 == 0)).collect();
    // (a panic is the crash AFL looks for: nothing is used after one)
    let state = std::panic::AssertUnwindSafe(std::cell::RefCell::new((Vec::new(), Vec::new(), 0u64)));
    let pairs = std::panic::AssertUnwindSafe(pairs);
    afl::fuzz!(|data: &[u8]| {
        let Some((&mode, input)) = data.split_first() else { return };
        let cold = mode & 0xC0 == 0xC0;
        let pair = &pairs[usize::from(mode >> 1 & 3) | usize::from(cold) << 2];
        let client = CLIENTS[usize::from(mode >> 3 & 7)];
        let seed = seed_of(data);
        let mut state = state.borrow_mut();
        let (fast_out, full_out, n) = &mut *state;
        *n += 1;
        let now = *n / 64;
        let mut ask = |i: u64, packet: &[u8], transport| {
            let ask = Ask::new(packet, client, transport, now);
            let got = answer(&pair.fast, ask, seed ^ i, fast_out);
            let want = answer(&pair.full, ask, seed ^ i, full_out);
            if (got, &fast_out[..]) != (want, &full_out[..]) {
                panic!(
                    "the fast path answered differently (mode {mode:#04x}, client {client}, {transport:?})\n\
                     query:     {}\nfast path: {got:?} {}\nfull path: {want:?} {}",
                    hex(packet),
                    hex(fast_out),
                    hex(full_out),
                );
            }
            if got == Reply::Send {
                check(packet, fast_out, transport);
            }
        };
        if mode & 1 == 0 {
            ask(0, input, Transport::Udp);
        } else {
            let (mut codec, mut stream) = (message_codec(), BytesMut::from(input));
            let mut i = 0;
            while let Ok(Some(message)) = codec.decode(&mut stream) {
                ask(i, &message, Transport::Tcp);
                i += 1;
            }
        }
        let counted = |s: &QueryStats| (s.nonzero(), s.by_nearness());
        assert_eq!(counted(&pair.fast_stats), counted(&pair.full_stats), "the fast path counted differently");
    });
}
