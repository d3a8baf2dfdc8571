//! Micro-benchmarks of the answer path, in process, at 3 and at 1,000 nodes
//! (`cargo bench --bench micro`; `cargo bench --bench micro -- parse` for one group):
//!
//! * `parse`: query name → target (`Names::parse`);
//! * `place`: client address or ECS subnet → location (`locality::place`) over 3 and
//!   1,000 `[[locality.network]]` entries;
//! * `select`: target → records chosen (`dns::answer::answer`), with and without a
//!   client location;
//! * `encode`: the records' sections (`Zone::sections`) and their wire form
//!   (`wire::encode`);
//! * `respond`: the whole responder, packet in → packet out (`Responder::respond`),
//!   and `respond_full` the same without the fast path (`dns::fast`);
//! * `derive`: what the publisher builds per snapshot (`Zone::derive`, the fast path's
//!   table included);
//! * `publish`: one probe's observation folded and published (`Publisher::observe`:
//!   the cluster's state, every cluster's view, the snapshot and its zone), with 1, 33
//!   and 333 clusters of 3 nodes (a primary and two replicas), as bench/probe-cost runs.
//!
//! The fixture of N nodes: cluster `main`, `pg0` the primary, every other node a replica
//! 10 ms behind that replayed up to 0/3000000, the nodes spread over locations a, b, c
//! (node i in the (i mod 3)th); endpoints `read` (1 answer, max_lag 100ms) and `every`
//! (all answers); N `[[locality.network]]` entries: IPv4 /24s under 172.16.0.0/12 and a
//! few IPv6 /48s under 2001:db8::/32, spread over the same locations.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use divan::{black_box, Bencher};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use lagdns::config::Config;
use lagdns::dns::answer::{answer, Answer};
use lagdns::dns::name::Target;
use lagdns::dns::query::{Qtype, QueryStats};
use lagdns::dns::records::Zone;
use lagdns::dns::respond::{Ask, Reply, Responder, Transport};
use lagdns::dns::wire::{encode, Head, Question, MAX_MESSAGE};
use lagdns::health::NodeState;
use lagdns::locality::{place, Locality, Placement, Subnet};
use lagdns::probe::{NodeId, Observation, Sample};
use lagdns::publisher::Publisher;
use lagdns::snapshot::{Snapshot, WriteTarget};
use lagdns::store::Store;
use lagdns::testkit::SnapshotBuilder;
use lagdns::topology::Role;
use lagdns::wal::{Lsn, SystemId, Timeline};
use rand::rngs::SmallRng;
use rand::SeedableRng;

fn main() {
    divan::main();
}

/// Nodes (and `[[locality.network]]` entries) of the two fixtures.
const SIZES: [usize; 2] = [3, 1000];

const LOCATIONS: [&str; 3] = ["a", "b", "c"];

/// A client source address inside a network of location `a` (the first one).
const CLIENT_V4: &str = "172.16.0.7";
/// A client source address inside the first IPv6 network.
const CLIENT_V6: &str = "2001:db8::7";
/// A client no network holds.
const NOWHERE: &str = "192.0.2.1";

struct Fixture {
    snap: Snapshot,
    zone: Zone,
    responder: Responder,
    /// The same without the fast path.
    full: Responder,
}

impl Fixture {
    fn locality(&self) -> &Locality {
        self.snap.config.locality.as_ref().expect("the fixture has [locality]")
    }

    fn target(&self, qname: &str) -> Target {
        self.zone.names.table.parse(qname)
    }
}

/// The fixture of `n` nodes, built once per size.
fn fixture(n: usize) -> &'static Fixture {
    static FIXTURES: [OnceLock<Fixture>; SIZES.len()] = [OnceLock::new(), OnceLock::new()];
    let i = SIZES.iter().position(|&s| s == n).expect("one of SIZES");
    FIXTURES[i].get_or_init(|| {
        let snap = snapshot(n);
        let zone = Zone::derive(&snap, None);
        let store = Store::new(snapshot(n), Zone::derive);
        let responder = Responder::new(store.clone(), Arc::new(QueryStats::default()), Vec::new());
        let full = Responder::new(store, Arc::new(QueryStats::default()), Vec::new()).full_path_only();
        Fixture { snap, zone, responder, full }
    })
}

/// The config text of `n` nodes and `n` networks (see the module doc).
fn config_text(n: usize) -> String {
    let mut t = String::from(
        "[dns]\nzone = \"db.internal\"\n\n[[cluster]]\nname = \"main\"\nmax_lag = \"100ms\"\nanswers = 1\nnode = [\n",
    );
    for i in 0..n {
        let (hi, lo) = (i / 256, i % 256);
        let loc = LOCATIONS[i % 3];
        writeln!(
            t,
            "  {{ name = \"pg{i}\", address = \"10.{hi}.{lo}.1\", dsn = \"host=h{i}\", location = \"{loc}\" }},"
        )
        .unwrap();
    }
    t.push_str("]\n\n[[cluster.endpoint]]\nname = \"every\"\nanswers = \"all\"\n\n[locality]\n");
    let v6 = if n <= 3 { 1 } else { 4 };
    for k in 0..n - v6 {
        let loc = LOCATIONS[k % 3];
        writeln!(t, "[[locality.network]]\nprefix = \"172.{}.{}.0/24\"\nlocation = \"{loc}\"", 16 + k / 256, k % 256)
            .unwrap();
    }
    for k in 0..v6 {
        let loc = LOCATIONS[k % 3];
        writeln!(t, "[[locality.network]]\nprefix = \"2001:db8:{k:x}::/48\"\nlocation = \"{loc}\"").unwrap();
    }
    t
}

fn snapshot(n: usize) -> Snapshot {
    let config = Config::parse(&config_text(n), "micro.toml").unwrap_or_else(|e| panic!("bench config: {e}"));
    let snap = SnapshotBuilder::from_config(config)
        .cluster("main", |c| (c.write, c.primary_lsn) = (WriteTarget::Primary(0), Some(Lsn(0x3000000))))
        .each_node("main", |i, node| {
            node.state = NodeState::Up;
            node.timeline = Some(Timeline(1));
            if i == 0 {
                node.role = Role::Primary;
                node.current_lsn = Some(Lsn(0x3000000));
            } else {
                node.role = Role::Replica;
                node.lag = Some(Duration::from_millis(10));
                node.lag_bytes = Some(0);
                node.replay_lsn = Some(Lsn(0x3000000));
            }
        })
        .build();
    assert_eq!(snap.clusters[0].endpoints[0].eligible.len(), n - 1, "every replica eligible for read");
    snap
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Query name → target.
mod parse {
    use super::*;

    fn bench(b: Bencher, n: usize, qname: &str) {
        let fx = fixture(n);
        assert_ne!(fx.target(qname), Target::OutOfZone, "{qname}");
        b.bench(|| fx.zone.names.table.parse(black_box(qname)));
    }

    #[divan::bench(args = SIZES)]
    fn read(b: Bencher, n: usize) {
        bench(b, n, "read.db.internal.");
    }

    #[divan::bench(args = SIZES)]
    fn maxlag(b: Bencher, n: usize) {
        bench(b, n, "maxlag-500ms.read.db.internal.");
    }

    #[divan::bench(args = SIZES)]
    fn lsn(b: Bencher, n: usize) {
        bench(b, n, "lsn-0-3000000.read.db.internal.");
    }

    #[divan::bench(args = SIZES)]
    fn srv(b: Bencher, n: usize) {
        bench(b, n, "_postgresql._tcp.read.db.internal.");
    }

    /// The last node's own name.
    #[divan::bench(args = SIZES)]
    fn node(b: Bencher, n: usize) {
        bench(b, n, &format!("pg{}.main.db.internal.", n - 1));
    }

    #[divan::bench(args = SIZES)]
    fn nxdomain(b: Bencher, n: usize) {
        bench(b, n, "nosuch.db.internal.");
    }
}

/// Client → location, over `n` networks.
mod place {
    use super::*;

    fn bench(b: Bencher, n: usize, source: &str, ecs: Option<Subnet>) {
        let locality = fixture(n).locality();
        let source = ip(source);
        b.bench(|| place(black_box(locality), black_box(source), black_box(ecs)));
    }

    #[divan::bench(args = SIZES)]
    fn source_v4(b: Bencher, n: usize) {
        bench(b, n, CLIENT_V4, None);
    }

    #[divan::bench(args = SIZES)]
    fn source_v6(b: Bencher, n: usize) {
        bench(b, n, CLIENT_V6, None);
    }

    /// A source no network holds: the default.
    #[divan::bench(args = SIZES)]
    fn source_unknown(b: Bencher, n: usize) {
        bench(b, n, NOWHERE, None);
    }

    /// An ECS /24 (a resolver's source is elsewhere).
    #[divan::bench(args = SIZES)]
    fn ecs_v4(b: Bencher, n: usize) {
        bench(b, n, NOWHERE, Some(Subnet { ip: ip("172.16.0.0"), prefix: 24 }));
    }

    /// An ECS /56 inside an IPv6 network.
    #[divan::bench(args = SIZES)]
    fn ecs_v6(b: Bencher, n: usize) {
        bench(b, n, NOWHERE, Some(Subnet { ip: ip("2001:db8::"), prefix: 56 }));
    }
}

/// Target → the records chosen, with a seeded draw.
mod select {
    use super::*;

    fn bench(b: Bencher, n: usize, qname: &str, qtype: Qtype, local: bool) {
        let fx = fixture(n);
        let target = fx.target(qname);
        let placement: Option<Placement> = local.then(|| place(fx.locality(), ip(CLIENT_V4), None));
        let mut rng = SmallRng::seed_from_u64(1);
        let a = answer(&fx.snap, &target, qtype, placement.as_ref(), &mut rng);
        assert!(!a.answers.is_empty(), "{qname}: {a:?}");
        b.bench_local(|| {
            answer(black_box(&fx.snap), black_box(&target), qtype, black_box(placement.as_ref()), &mut rng)
        });
    }

    macro_rules! benches {
        ($($name:ident: $qname:literal, $qtype:expr, $local:expr;)*) => {$(
            #[divan::bench(args = SIZES)]
            fn $name(b: Bencher, n: usize) {
                bench(b, n, $qname, $qtype, $local);
            }
        )*};
    }

    benches! {
        read_1: "read.db.internal.", Qtype::A, false;
        read_1_local: "read.db.internal.", Qtype::A, true;
        read_all: "every.db.internal.", Qtype::A, false;
        read_all_local: "every.db.internal.", Qtype::A, true;
        maxlag: "maxlag-500ms.read.db.internal.", Qtype::A, false;
        maxlag_local: "maxlag-500ms.read.db.internal.", Qtype::A, true;
        lsn: "lsn-0-3000000.read.db.internal.", Qtype::A, false;
        lsn_local: "lsn-0-3000000.read.db.internal.", Qtype::A, true;
        srv: "_postgresql._tcp.read.db.internal.", Qtype::Srv, false;
        srv_local: "_postgresql._tcp.read.db.internal.", Qtype::Srv, true;
        write: "write.db.internal.", Qtype::A, false;
    }
}

/// An answer's sections and their wire form (as TCP: no size limit short of 64 KiB).
mod encode {
    use super::*;

    fn decided(fx: &Fixture, qname: &str, qtype: Qtype) -> Answer {
        let placement = place(fx.locality(), ip(CLIENT_V4), None);
        answer(&fx.snap, &fx.target(qname), qtype, Some(&placement), &mut SmallRng::seed_from_u64(1))
    }

    fn sections(b: Bencher, n: usize, qname: &str, qtype: Qtype) {
        let fx = fixture(n);
        let a = decided(fx, qname, qtype);
        b.bench(|| fx.zone.sections(black_box(&a)).answers.len());
    }

    fn wire(b: Bencher, n: usize, qname: &str, qtype: Qtype, rtype: RecordType) {
        let fx = fixture(n);
        let a = decided(fx, qname, qtype);
        let body = fx.zone.sections(&a);
        let packet = packet(qname, rtype, false, None);
        let question = Question { bytes: &packet[12..], count: 1 };
        let head = Head { id: 0x4242, aa: true, rd: true, ..Head::default() };
        let mut out = Vec::with_capacity(MAX_MESSAGE);
        b.bench_local(|| {
            encode(&mut out, black_box(head), black_box(question), black_box(&body), None, MAX_MESSAGE);
            black_box(out.len());
        });
    }

    #[divan::bench(args = SIZES)]
    fn sections_read_1(b: Bencher, n: usize) {
        sections(b, n, "read.db.internal.", Qtype::A);
    }

    #[divan::bench(args = SIZES)]
    fn sections_read_all(b: Bencher, n: usize) {
        sections(b, n, "every.db.internal.", Qtype::A);
    }

    #[divan::bench(args = SIZES)]
    fn sections_srv(b: Bencher, n: usize) {
        sections(b, n, "_postgresql._tcp.read.db.internal.", Qtype::Srv);
    }

    #[divan::bench(args = SIZES)]
    fn wire_read_1(b: Bencher, n: usize) {
        wire(b, n, "read.db.internal.", Qtype::A, RecordType::A);
    }

    #[divan::bench(args = SIZES)]
    fn wire_read_all(b: Bencher, n: usize) {
        wire(b, n, "every.db.internal.", Qtype::A, RecordType::A);
    }

    #[divan::bench(args = SIZES)]
    fn wire_srv(b: Bencher, n: usize) {
        wire(b, n, "_postgresql._tcp.read.db.internal.", Qtype::Srv, RecordType::SRV);
    }
}

/// A query packet; with `edns`, an OPT (payload 1232), plus an ECS option of `ecs`
/// (family, source prefix, scope, address bytes) if given.
fn packet(qname: &str, qtype: RecordType, edns: bool, ecs: Option<&[u8]>) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
    if edns || ecs.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.edns = Some(e);
    }
    let mut p = m.to_vec().unwrap();
    if let Some(ecs) = ecs {
        // The OPT is last and has no options yet: grow its RDLENGTH by one option.
        let len = p.len();
        p[len - 2..].copy_from_slice(&(4 + ecs.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 8]);
        p.extend_from_slice(&(ecs.len() as u16).to_be_bytes());
        p.extend_from_slice(ecs);
    }
    p
}

/// Packet in → packet out, over UDP from a client placed by its source address.
fn respond_bench(b: Bencher, responder: &Responder, packet: Vec<u8>) {
    let client = ip(CLIENT_V4);
    let mut out = Vec::with_capacity(MAX_MESSAGE);
    assert_eq!(responder.respond(&Ask::new(&packet, client, Transport::Udp, 0), &mut out), Reply::Send);
    assert_eq!(out[3] & 0x0f, 0, "NOERROR");
    b.bench_local(|| {
        let reply = responder.respond(&Ask::new(black_box(&packet), client, Transport::Udp, 0), &mut out);
        black_box((reply, out.len()));
    });
}

/// The same rows for the responder (`respond`: the fast path first) and for the full
/// path alone (`respond_full`).
macro_rules! respond_rows {
    ($module:ident, $responder:ident) => {
        mod $module {
            use super::*;

            fn bench(b: Bencher, n: usize, packet: Vec<u8>) {
                respond_bench(b, &fixture(n).$responder, packet);
            }

            #[divan::bench(args = SIZES)]
            fn read_a(b: Bencher, n: usize) {
                bench(b, n, packet("read.db.internal.", RecordType::A, false, None));
            }

            #[divan::bench(args = SIZES)]
            fn read_a_edns(b: Bencher, n: usize) {
                bench(b, n, packet("read.db.internal.", RecordType::A, true, None));
            }

            /// ECS 172.16.1.0/24 (location b), which places the client instead of its
            /// source.
            #[divan::bench(args = SIZES)]
            fn read_a_ecs(b: Bencher, n: usize) {
                bench(b, n, packet("read.db.internal.", RecordType::A, true, Some(&[0, 1, 24, 0, 172, 16, 1])));
            }

            /// `answers = "all"`: every replica in weighted random order (at 1,000
            /// nodes past 1,232 bytes, truncated: the full path's).
            #[divan::bench(args = SIZES)]
            fn every_a_edns(b: Bencher, n: usize) {
                bench(b, n, packet("every.db.internal.", RecordType::A, true, None));
            }

            #[divan::bench(args = SIZES)]
            fn write_a(b: Bencher, n: usize) {
                bench(b, n, packet("write.db.internal.", RecordType::A, false, None));
            }

            #[divan::bench(args = SIZES)]
            fn soa(b: Bencher, n: usize) {
                bench(b, n, packet("db.internal.", RecordType::SOA, false, None));
            }

            /// SRV with EDNS (1232 bytes: at 1,000 nodes the answer is truncated).
            #[divan::bench(args = SIZES)]
            fn read_srv(b: Bencher, n: usize) {
                bench(b, n, packet("_postgresql._tcp.read.db.internal.", RecordType::SRV, true, None));
            }
        }
    };
}

respond_rows!(respond, responder);
respond_rows!(respond_full, full);

/// The publisher's per-snapshot work: the zone of a new snapshot, the config's names
/// reused from the previous zone (as `Store::publish` does).
#[divan::bench(args = SIZES)]
fn derive(b: Bencher, n: usize) {
    let fx = fixture(n);
    b.bench(|| Zone::derive(black_box(&fx.snap), Some(&fx.zone)));
}

/// One observation through the publisher, with `clusters` clusters of 3 nodes: the cost
/// of every probe, since the publisher publishes after each one it folds on its own.
#[divan::bench(args = [1, 33, 333])]
fn publish(b: Bencher, clusters: usize) {
    let mut t = String::from("[dns]\nzone = \"db.internal\"\n");
    for c in 0..clusters {
        write!(t, "\n[[cluster]]\nname = \"c{c}\"\nread = \"read-c{c}\"\nwrite = \"write-c{c}\"\nnode = [\n").unwrap();
        for i in 0..3 {
            writeln!(t, "  {{ name = \"pg{i}\", address = \"10.0.0.{}\", dsn = \"host=h{i}\" }},", i + 1).unwrap();
        }
        t.push_str("]\n");
    }
    let config = Arc::new(Config::parse(&t, "micro.toml").unwrap_or_else(|e| panic!("bench config: {e}")));
    let store = Store::new(Snapshot::initial(config.clone(), 1, SystemTime::now()), Zone::derive);
    let mut publisher = Publisher::new(config.clone(), store);
    for c in &config.clusters {
        for i in 0..3 {
            publisher.observe(&observation(&c.name, i));
        }
    }
    let replica = observation("c0", 1);
    b.bench_local(|| publisher.observe(black_box(&replica)));
}

/// A successful probe of node `pg<i>` of `cluster`: pg0 the primary at 0/3000000, the
/// others replicas that replayed it.
// An observation carries the std instant it was read at; no tokio clock here.
#[allow(clippy::disallowed_methods)]
fn observation(cluster: &str, i: usize) -> Observation {
    let lsn = Some(Lsn(0x3000000));
    let primary = i == 0;
    Observation {
        node: NodeId::new(cluster, &format!("pg{i}")),
        at: std::time::Instant::now(),
        wall: SystemTime::now(),
        duration: Duration::from_micros(300),
        result: Ok(Sample {
            in_recovery: !primary,
            system_id: SystemId(7),
            timeline: Some(Timeline(1)),
            current_lsn: if primary { lsn } else { None },
            receive_lsn: if primary { None } else { lsn },
            replay_lsn: if primary { None } else { lsn },
            replay_paused: false,
        }),
    }
}
