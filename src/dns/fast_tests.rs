//! The fast path against the full path: over every name of SPEC §5, §8 and §9 (the
//! zone's own names, and the `maxlag-`, `lsn-`, NXDOMAIN and out-of-zone names it
//! leaves to the full path), every query type, random IDs, flags and 0x20 case, with
//! and without EDNS, NSID and ECS, from clients in every location, over UDP sizes that
//! force truncation and over TCP, both give the same bytes with the same draw.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::dns::query::QueryStats;
use crate::dns::respond::{Ask, Reply, Responder};
use crate::dns::testdata::{locality_snapshot, snapshot};
use crate::health::NodeState;
use crate::snapshot::WriteTarget;
use crate::store::Store;
use crate::testkit::SnapshotBuilder;
use crate::topology::Role;

/// One query as the tests build it on the wire.
#[derive(Debug, Clone)]
struct Q {
    id: u16,
    /// Byte 2 and 3 of the header as sent (QR and opcode clear).
    flags: [u8; 2],
    name: String,
    qtype: u16,
    class: u16,
    edns: Option<E>,
}

#[derive(Debug, Clone)]
struct E {
    payload: u16,
    version: u8,
    /// (code, data) in order.
    options: Vec<(u16, Vec<u8>)>,
}

impl Q {
    fn new(name: &str, qtype: u16) -> Q {
        Q { id: 0x4242, flags: [0x01, 0], name: name.into(), qtype, class: 1, edns: None }
    }

    fn wire(&self) -> Vec<u8> {
        let mut p = self.id.to_be_bytes().to_vec();
        p.extend_from_slice(&self.flags);
        let ar = u16::from(self.edns.is_some());
        for count in [1, 0, 0, ar] {
            p.extend_from_slice(&count.to_be_bytes());
        }
        for label in self.name.split('.').filter(|l| !l.is_empty()) {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&self.qtype.to_be_bytes());
        p.extend_from_slice(&self.class.to_be_bytes());
        if let Some(e) = &self.edns {
            let data: Vec<u8> = e
                .options
                .iter()
                .flat_map(|(code, d)| [&code.to_be_bytes()[..], &(d.len() as u16).to_be_bytes(), d].concat())
                .collect();
            p.push(0);
            p.extend_from_slice(&41u16.to_be_bytes());
            p.extend_from_slice(&e.payload.to_be_bytes());
            p.extend_from_slice(&[0, e.version, 0x80, 0]); // DO set: echoed as not set
            p.extend_from_slice(&(data.len() as u16).to_be_bytes());
            p.extend_from_slice(&data);
        }
        p
    }
}

fn responders(snap: Snapshot) -> (Responder, Responder, Arc<Store<Zone>>) {
    let store = Store::new(snap, Zone::derive);
    let stats = Arc::new(QueryStats::default());
    let fast = Responder::new(store.clone(), stats.clone(), b"ns-a".to_vec());
    let full = Responder::new(store.clone(), stats, b"ns-a".to_vec()).full_path_only();
    (fast, full, store)
}

fn respond(r: &Responder, packet: &[u8], client: IpAddr, transport: Transport, seed: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let ask = Ask::new(packet, client, transport, 0);
    (r.respond_with(&ask, &mut out, &mut SmallRng::seed_from_u64(seed)) == Reply::Send).then_some(out)
}

/// Whether the fast path itself answers `packet`.
fn fast_answers(store: &Store<Zone>, packet: &[u8], client: IpAddr, transport: Transport) -> bool {
    let generation = store.load();
    let Some(query) = Query::read(packet) else { return false };
    let locality = generation.snapshot.config.locality.as_ref();
    let cx = Context { client, locality, nsid: b"ns-a", transport };
    generation.derived.fast.answer(&query, &cx, &mut Vec::new(), &mut SmallRng::seed_from_u64(1)).is_some()
}

/// Every letter's case flipped at random (DNS 0x20).
fn random_case(name: &str, rng: &mut SmallRng) -> String {
    name.chars().map(|c| if rng.random::<bool>() { c.to_ascii_uppercase() } else { c }).collect()
}

/// A random ECS option: valid mostly (any family, prefix and address bits allowed),
/// sometimes malformed (bits past the prefix), which the full path refuses.
fn random_ecs(rng: &mut SmallRng, clients: &[IpAddr]) -> (u16, Vec<u8>) {
    let ip = clients[rng.random_range(0..clients.len())];
    let (family, bytes, width): (u16, Vec<u8>, u8) = match ip {
        IpAddr::V4(v4) => (1, v4.octets().to_vec(), 32),
        IpAddr::V6(v6) => (2, v6.octets().to_vec(), 128),
    };
    let source = [0, 8, 16, 24, width.min(32), width][rng.random_range(0..6usize)];
    let mut addr = bytes[..usize::from(source.div_ceil(8))].to_vec();
    let spare = source % 8;
    if let (Some(last), true) = (addr.last_mut(), spare != 0) {
        *last &= !(0xFFu8 >> spare);
    }
    if rng.random_ratio(1, 20) && !addr.is_empty() {
        let last = addr.len() - 1;
        addr[last] |= 1; // a host bit (or a full last byte: still valid)
    }
    let scope = if rng.random_ratio(1, 10) { 7 } else { 0 };
    let data = [&family.to_be_bytes()[..], &[source, scope], &addr].concat();
    (8, data)
}

fn random_edns(rng: &mut SmallRng, clients: &[IpAddr]) -> Option<E> {
    if rng.random_ratio(1, 3) {
        return None;
    }
    let payload = [0, 100, 511, 512, 513, 600, 1232, 1400, 4096, 65535][rng.random_range(0..10usize)];
    let mut options = Vec::new();
    if rng.random_ratio(1, 2) {
        options.push((3, Vec::new()));
    }
    if rng.random_ratio(1, 2) {
        options.push(random_ecs(rng, clients));
    }
    if rng.random_ratio(1, 4) {
        options.insert(0, (10, vec![7; 8])); // a client cookie: ignored
    }
    let version = if rng.random_ratio(1, 30) { 1 } else { 0 };
    Some(E { payload, version, options })
}

/// The names asked: the zone's own, and those the fast path leaves to the full path.
fn names(snap: &Snapshot) -> Vec<String> {
    let table = crate::dns::name::Names::new(&snap.config);
    let zone = table.zone().to_owned();
    let mut names = table.exact();
    for extra in [
        "nosuch",
        "maxlag-15ms.read",
        "maxlag-5s.read",
        "lsn-0-3000000.read",
        "lsn-0-2000000.read",
        "_postgresql._tcp.maxlag-15ms.read",
        "a.b.nosuch",
        "x.pg1.main",
        "pg9.main",
        "hostmaster",
        "x.hostmaster",
        "x.ns1",
        "maxlag-5ms.nosuch",
        "_postgresql._tcp.nosuch",
        "under_score.x-y.0",
        "a*b",
        "caf\u{e9}",
    ] {
        names.push(format!("{extra}.{zone}"));
    }
    // long enough that the SOA's pointers past it need their high byte
    names.push(format!("{0}.{0}.{0}.{1}", "n".repeat(63), zone));
    names.push("example.com".into());
    names
}

const TYPES: [u16; 10] = [1, 2, 6, 16, 28, 33, 255, 15, 257, 0];

/// Asks both responders the same queries; returns (queries, answered by the fast path).
fn compare(snap: Snapshot, clients: &[IpAddr], rounds: usize, seed: u64) -> (usize, usize) {
    let (fast, full, store) = responders(snap);
    compare_in(&store, (&fast, &full), clients, rounds, &mut SmallRng::seed_from_u64(seed))
}

/// [`compare`] over the store's current generation.
fn compare_in(
    store: &Store<Zone>,
    (fast, full): (&Responder, &Responder),
    clients: &[IpAddr],
    rounds: usize,
    rng: &mut SmallRng,
) -> (usize, usize) {
    let names = names(&store.load().snapshot);
    let (mut asked, mut hits) = (0, 0);
    for name in &names {
        for qtype in TYPES {
            for _ in 0..rounds {
                let mut q = Q::new(&random_case(name, rng), qtype);
                q.id = rng.random();
                q.flags = [rng.random::<u8>() & 0x07, rng.random::<u8>() & 0xF0];
                q.edns = random_edns(rng, clients);
                if rng.random_ratio(1, 50) {
                    q.class = 3;
                }
                let client = clients[rng.random_range(0..clients.len())];
                let transport = if rng.random_ratio(1, 5) { Transport::Tcp } else { Transport::Udp };
                let packet = q.wire();
                let draw = rng.random();
                let got = respond(fast, &packet, client, transport, draw);
                let want = respond(full, &packet, client, transport, draw);
                assert_eq!(got, want, "{q:?} from {client} over {transport:?}");
                asked += 1;
                hits += usize::from(fast_answers(store, &packet, client, transport));
            }
        }
    }
    (asked, hits)
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn the_fast_path_gives_the_full_paths_bytes_for_spec_5_and_9() {
    let (asked, hits) = compare(snapshot(), &ips(&["127.0.0.1", "::1", "10.9.8.7"]), 12, 1);
    // both paths are exercised: most queries are fast, many are not
    eprintln!("{hits} of {asked} fast");
    assert!(hits * 3 > asked && hits * 10 < asked * 9, "{hits} of {asked} fast");
}

#[test]
fn the_fast_path_gives_the_full_paths_bytes_with_locations_spec_8() {
    let clients = ips(&["127.0.1.5", "127.0.2.5", "127.0.3.5", "192.0.2.1", "::1", "::ffff:127.0.1.9"]);
    let (asked, hits) = compare(locality_snapshot(), &clients, 16, 2);
    eprintln!("{hits} of {asked} fast");
    assert!(hits * 3 > asked && hits * 10 < asked * 9, "{hits} of {asked} fast");
}

/// A snapshot change, and which clusters' entries it leaves as they were.
type Change = (&'static str, fn(&mut Snapshot), &'static [usize]);

/// A table built on the previous one keeps the entries nothing changed under (the
/// names of no cluster, the clusters whose view is equal) and gives the full path's
/// bytes after every kind of change a snapshot brings.
#[test]
fn a_table_built_on_the_previous_one_gives_the_full_paths_bytes() {
    let changes: [Change; 9] = [
        ("the serial alone", |s| s.serial += 1, &[0, 1]),
        (
            "main's probe bookkeeping",
            |s| {
                let built = s.built;
                let n = &mut s.cluster_mut(0).nodes[1];
                n.probes += 1;
                n.last_probe = Some(built);
                n.last_probe_duration = Some(Duration::from_millis(3));
            },
            &[0, 1],
        ),
        ("a replica's lag (its TXT)", |s| s.cluster_mut(0).nodes[1].lag = Some(Duration::from_millis(1234)), &[1]),
        (
            "a replica leaves read",
            |s| {
                let read = &mut s.cluster_mut(0).endpoints[0];
                read.eligible.retain(|&i| i != 1);
                read.verdicts[1] = crate::topology::Eligibility::Ineligible(crate::topology::Reason::Down);
                s.serial += 1;
            },
            &[1],
        ),
        ("a weight", |s| s.cluster_mut(0).nodes[2].weight = 7, &[1]),
        ("an address", |s| s.cluster_mut(0).nodes[1].addresses = ips(&["10.1.1.1", "fd00::9"]), &[1]),
        ("billing's nodes", |s| s.cluster_mut(1).nodes[0].lag_bytes = Some(99), &[0]),
        (
            "main's write stale",
            |s| {
                s.cluster_mut(0).write = WriteTarget::Stale { node: 0, since: s.built };
                s.built += Duration::from_secs(5);
            },
            &[1],
        ),
        // the stale primary's TXT dates it by the snapshot's time
        ("time passes", |s| s.built += Duration::from_secs(3), &[1]),
    ];
    let (fast, full, store) = responders(snapshot());
    let mut rng = SmallRng::seed_from_u64(3);
    let clients = ips(&["127.0.0.1", "::1"]);
    for (what, change, kept) in changes {
        let before = store.load();
        let mut next = (*before.snapshot).clone();
        change(&mut next);
        store.publish(next);
        let published = store.load();
        let afresh = Zone::derive(&published.snapshot, None);
        assert!(published.derived.same_records(&afresh), "{what}: the zone built on the previous one");
        let (was, now) = (&before.derived.fast, &published.derived.fast);
        assert!(Arc::ptr_eq(&was.index, &now.index) && Arc::ptr_eq(&was.shared, &now.shared), "{what}");
        for c in 0..2 {
            let same = Arc::ptr_eq(&was.clusters[c], &now.clusters[c]);
            assert_eq!(same, kept.contains(&c), "{what}: cluster {c} kept");
        }
        let (asked, hits) = compare_in(&store, (&fast, &full), &clients, 3, &mut rng);
        assert!(hits * 3 > asked, "{what}: {hits} of {asked} fast");
    }
}

/// 40 replicas with long names: NS, SRV, TXT and `answers = "all"` answers past 512
/// and 1,232 bytes, which only the full path truncates.
fn big_snapshot() -> Snapshot {
    let mut toml = String::from(
        "[dns]\nzone = \"db.internal\"\nnameservers = [{ name = \"ns1.db.internal\", address = \"192.0.2.1\" }]\n\
         [[cluster]]\nname = \"main\"\nmax_lag = \"100ms\"\n",
    );
    for i in 0..40 {
        toml += &format!(
            "[[cluster.node]]\nname = \"replica-with-a-long-name-{i:02}\"\naddress = \"10.0.1.{i}\"\ndsn = \"host=x{i}\"\n"
        );
    }
    toml += "[[cluster.endpoint]]\nname = \"all\"\nanswers = \"all\"\n";
    SnapshotBuilder::new(&toml)
        .cluster("main", |c| c.write = WriteTarget::Primary(0))
        .each_node("main", |i, n| {
            n.state = NodeState::Up;
            n.role = if i == 0 { Role::Primary } else { Role::Replica };
            n.lag = (i > 0).then_some(Duration::from_millis(i as u64));
            n.lag_bytes = n.lag.map(|_| 0);
        })
        .build()
}

#[test]
fn the_fast_path_leaves_what_does_not_fit_to_the_full_path() {
    let (asked, hits) = compare(big_snapshot(), &ips(&["127.0.0.1"]), 8, 3);
    assert!(hits > 0 && hits < asked, "{hits} of {asked} fast");
    let (_, _, store) = responders(big_snapshot());
    let client = ips(&["127.0.0.1"])[0];
    let srv = Q::new("_postgresql._tcp.read.db.internal", 33).wire();
    assert!(!fast_answers(&store, &srv, client, Transport::Udp), "over 512 bytes: the full path truncates");
    assert!(!fast_answers(&store, &srv, client, Transport::Tcp), "over 1,232 bytes: not in the table");
    let write = Q::new("_postgresql._tcp.write.db.internal", 33).wire();
    assert!(fast_answers(&store, &write, client, Transport::Tcp));
}

/// `read` with one weighted answer among pg2 (one address) and pg3 (40: a host name
/// that resolves to many), whose A answer does not fit 512 bytes.
fn many_addresses_snapshot() -> Snapshot {
    let toml = "[dns]\nzone = \"db.internal\"\n[[cluster]]\nname = \"main\"\nanswers = 1\nnode = [\n\
        { name = \"pg1\", address = \"10.0.0.1\", dsn = \"host=a\" },\n\
        { name = \"pg2\", address = \"10.0.0.2\", dsn = \"host=b\" },\n\
        { name = \"pg3\", address = \"10.0.0.3\", dsn = \"host=c\" },\n]\n";
    SnapshotBuilder::new(toml)
        .cluster("main", |c| c.write = WriteTarget::Primary(0))
        .each_node("main", |i, n| {
            n.state = NodeState::Up;
            n.role = if i == 0 { Role::Primary } else { Role::Replica };
            n.lag = (i > 0).then_some(Duration::ZERO);
            n.lag_bytes = n.lag.map(|_| 0);
            if i == 2 {
                n.addresses = (0..40).map(|j| IpAddr::from([10, 0, 3, j])).collect();
            }
        })
        .build()
}

/// Found by the `dns` fuzz target (fuzz/regressions/dns/fast-draw-too-large-1): the fast
/// path drew pg3, found its answer too large for the client, and left the query to the
/// full path, which drew again from the same generator, one draw further on, and could
/// send pg2's answer where the full path alone sends pg3's, truncated.
#[test]
fn a_weighted_answer_that_might_not_fit_is_left_to_the_full_path_before_drawing() {
    let (fast, full, store) = responders(many_addresses_snapshot());
    let client = ips(&["127.0.0.1"])[0];
    let plain = Q::new("read.db.internal", 1);
    let small_edns = Q { edns: Some(E { payload: 512, version: 0, options: vec![(3, vec![])] }), ..plain.clone() };
    let big_edns = Q { edns: Some(E { payload: 1232, version: 0, options: vec![] }), ..plain.clone() };
    let (mut truncated, mut whole) = (0, 0);
    for seed in 0..200 {
        for (q, transport) in [(&plain, Transport::Udp), (&small_edns, Transport::Udp), (&plain, Transport::Tcp)] {
            let packet = q.wire();
            let got = respond(&fast, &packet, client, transport, seed);
            let want = respond(&full, &packet, client, transport, seed);
            assert_eq!(got, want, "seed {seed}: {q:?} over {transport:?}");
            let tc = want.as_ref().is_some_and(|out| out[2] & 0x02 != 0);
            (truncated, whole) = (truncated + usize::from(tc), whole + usize::from(!tc));
        }
    }
    assert!(truncated > 0 && whole > 0, "both candidates drawn: {truncated} truncated, {whole} whole");
    assert!(!fast_answers(&store, &plain.wire(), client, Transport::Udp), "pg3 would not fit 512 bytes");
    assert!(!fast_answers(&store, &small_edns.wire(), client, Transport::Udp));
    assert!(fast_answers(&store, &big_edns.wire(), client, Transport::Udp), "both fit 1,232 bytes");
    assert!(fast_answers(&store, &plain.wire(), client, Transport::Tcp));
}

#[test]
fn before_the_first_round_everything_takes_the_full_path() {
    let mut snap = snapshot();
    snap.ready = false;
    let (_, _, store) = responders(snap);
    let client = ips(&["127.0.0.1"])[0];
    for name in ["write.db.internal", "db.internal", "pg1.main.db.internal"] {
        assert!(!fast_answers(&store, &Q::new(name, 1).wire(), client, Transport::Udp), "{name}");
    }
}

#[test]
fn queries_the_fast_path_reads_and_those_it_leaves() {
    let base = Q::new("WRITE.db.internal", 1);
    let with = |f: &dyn Fn(&mut Q)| {
        let mut q = base.clone();
        f(&mut q);
        q.wire()
    };
    let edns = |options: Vec<(u16, Vec<u8>)>| Some(E { payload: 1232, version: 0, options });
    let ecs = |data: &[u8]| (8u16, data.to_vec());
    let pointer = {
        let mut p = base.wire();
        p.truncate(12);
        p.extend_from_slice(&[5, b'w', b'r', b'i', b't', b'e', 0xC0, 12, 0, 1, 0, 1]);
        p
    };
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("plain", base.wire(), true),
        (
            "EDNS, NSID, ECS, a cookie",
            with(&|q| q.edns = edns(vec![(3, vec![]), ecs(&[0, 1, 24, 0, 10, 1, 2]), (10, vec![1; 8])])),
            true,
        ),
        ("opcode NOTIFY", with(&|q| q.flags[0] = 4 << 3), false),
        ("class CH", with(&|q| q.class = 3), false),
        ("EDNS version 1", with(&|q| q.edns = Some(E { payload: 1232, version: 1, options: vec![] })), false),
        ("NSID with data", with(&|q| q.edns = edns(vec![(3, vec![1])])), false),
        ("ECS with host bits", with(&|q| q.edns = edns(vec![ecs(&[0, 1, 23, 0, 10, 1, 3])])), false),
        ("two ECS", with(&|q| q.edns = edns(vec![ecs(&[0, 1, 0, 0]), ecs(&[0, 1, 0, 0])])), false),
        ("an option running past the OPT", with(&|q| q.edns = edns(vec![(10, vec![1; 8])])), true),
        ("a compression pointer", pointer, false),
        ("trailing bytes", [base.wire(), vec![0]].concat(), false),
        ("cut short", base.wire()[..20].to_vec(), false),
    ];
    for (what, packet, fast) in cases {
        assert_eq!(Query::read(&packet).is_some(), fast, "{what}");
    }
    let mut cut = with(&|q| q.edns = edns(vec![(10, vec![1; 8])]));
    let len = cut.len();
    cut[len - 9] = 9; // the cookie's length says 9: past the OPT
    assert!(Query::read(&cut).is_none());
    let plain = base.wire();
    let q = Query::read(&plain).unwrap();
    assert_eq!(q.name(), b"\x05write\x02db\x08internal\x00", "lower-cased");
    assert_eq!(to_wire("a.bc."), Some(b"\x01a\x02bc\x00".to_vec()));
    assert_eq!(to_wire(&"x".repeat(64)), None);
}

#[test]
fn nxdomain_names_the_fast_path_answers_and_those_it_leaves() {
    let (_, _, store) = responders(snapshot());
    let client: IpAddr = "127.0.0.1".parse().unwrap();
    for (name, qtype, fast) in [
        ("nosuch.db.internal", 1, true),
        ("NoSuch.DB.internal", 28, true),
        ("a.b.nosuch.db.internal", 6, true),
        ("maxlag-5ms.nosuch.db.internal", 1, true),
        ("_postgresql._tcp.nosuch.db.internal", 33, true),
        ("nosuch.db.internal", 15, false),          // MX: not a type of the table
        ("hostmaster.db.internal", 1, false),       // the SOA's RNAME: compressed against it
        ("x.hostmaster.db.internal", 1, false),     // below it
        ("x.pg1.main.db.internal", 1, false),       // below a node's name
        ("pg9.main.db.internal", 1, false),         // below a cluster's
        ("maxlag-15ms.read.db.internal", 1, false), // an endpoint's variant
        ("lsn-0-3000000.read.db.internal", 1, false),
        ("a*b.db.internal", 1, false), // not a letter, digit, - or _
        ("example.com", 1, false),     // out of the zone
        ("xdb.internal", 1, false),
    ] {
        let packet = Q::new(name, qtype).wire();
        assert_eq!(fast_answers(&store, &packet, client, Transport::Udp), fast, "{name} {qtype}");
    }
}
