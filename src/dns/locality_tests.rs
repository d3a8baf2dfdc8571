//! Table tests for locality (SPEC §8) in the answers: which replicas each policy picks
//! for clients in each location, with seeded draws, and the SRV priorities, TXT lines
//! and flags that go with them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;
use crate::dns::name::Names;
use crate::dns::testdata::locality_snapshot as snapshot;
use crate::dns::txt;
use crate::locality::place;
use crate::testkit::reevaluate;
use crate::wal::Lsn;

fn client(snap: &Snapshot, ip: &str) -> Placement {
    place(snap.config.locality.as_ref().unwrap(), ip.parse::<IpAddr>().unwrap(), None)
}

const A: &str = "127.0.1.5";
const B: &str = "127.0.2.5";
const C: &str = "127.0.3.5";
const NOWHERE: &str = "192.0.2.1";

/// The node names answered, in order.
fn names(snap: &Snapshot, a: &Answer) -> Vec<String> {
    a.answers
        .iter()
        .map(|rr| match rr {
            Rr::Addr(ip) => snap.clusters[0].nodes.iter().find(|n| n.addresses.contains(ip)).unwrap().name.clone(),
            Rr::Srv { node, priority, .. } => format!("{}@{}", snap.clusters[0].nodes[*node].name, priority.value()),
            other => format!("{other:?}"),
        })
        .collect()
}

fn ask(snap: &Snapshot, qname: &str, qtype: Qtype, from: &str, rng: &mut SmallRng) -> Answer {
    let target = Names::new(&snap.config).parse(qname);
    answer(snap, &target, qtype, Some(&client(snap, from)), rng)
}

/// How often each answer came back over 4,000 seeded queries, in percent, each
/// rounded to the nearest value in `want` within 3 points (so equal to `want` when
/// every share is close enough).
fn shares(snap: &Snapshot, qname: &str, from: &str, want: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..4000 {
        let a = ask(snap, qname, Qtype::A, from, &mut rng);
        *counts.entry(names(snap, &a).join(",")).or_default() += 1;
    }
    let near = |k: &String, got: f64| match want.get(k) {
        Some(&w) if (got - f64::from(w)).abs() <= 3.0 => w,
        _ => got.round() as u32,
    };
    counts.into_iter().map(|(k, n)| (k.clone(), near(&k, f64::from(n) / 40.0))).collect()
}

fn pct(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
    list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn each_policy_picks_by_the_clients_location() {
    let mut snap = snapshot();
    let everywhere = pct(&[("pg2", 17), ("pg3", 17), ("pg4", 50), ("pg5", 17)]); // 100/600, 300/600
    let cases: Vec<(&str, &str, BTreeMap<String, u32>)> = vec![
        // prefer (the default): the local replica; the local ones by weight
        ("read.db.internal.", A, pct(&[("pg2", 100)])),
        ("read.db.internal.", B, pct(&[("pg3", 25), ("pg4", 75)])),
        // no replica in `c`, or the location unknown: all of them, as without locality
        ("read.db.internal.", C, everywhere.clone()),
        ("read.db.internal.", NOWHERE, everywhere.clone()),
        // only: the local ones; unknown behaves as prefer; none there → the fallback
        ("only.db.internal.", B, pct(&[("pg3", 25), ("pg4", 75)])),
        ("only.db.internal.", NOWHERE, everywhere.clone()),
        ("only.db.internal.", C, pct(&[("pg1", 100)])),
        // ignore: locations do not count
        ("ignore.db.internal.", A, everywhere.clone()),
        // maxlag- and lsn- names too (pg3 has not replayed 0/3000000)
        ("maxlag-1s.read.db.internal.", A, pct(&[("pg2", 100)])),
        ("lsn-0-3000000.read.db.internal.", B, pct(&[("pg4", 100)])),
        ("lsn-0-3000000.only.db.internal.", B, pct(&[("pg4", 100)])),
        ("lsn-0-2000000.read.db.internal.", B, pct(&[("pg3", 25), ("pg4", 75)])),
        // two answers under only: never a replica from elsewhere
        ("two.db.internal.", A, pct(&[("pg2", 100)])),
    ];
    for (qname, from, want) in &cases {
        assert_eq!(&shares(&snap, qname, from, want), want, "{qname} from {from}");
    }
    // zone `a`'s replica lags: `a` clients spill to the others (prefer), or get the
    // fallback (only: the primary; none: nothing)
    snap.cluster_mut(0).nodes[1].lag = Some(Duration::from_secs(5));
    reevaluate(&mut snap);
    let others = pct(&[("pg3", 20), ("pg4", 60), ("pg5", 20)]);
    let want = others;
    assert_eq!(shares(&snap, "read.db.internal.", A, &want), want);
    let want = pct(&[("pg1", 100)]);
    assert_eq!(shares(&snap, "only.db.internal.", A, &want), want);
    let want = pct(&[("", 100)]);
    assert_eq!(shares(&snap, "two.db.internal.", A, &want), want);
    // lsn-: no local replica has it, so the others that have, then the primary
    snap.cluster_mut(0).nodes[1].replay_lsn = Some(Lsn(0x2000000));
    let want = pct(&[("pg4", 75), ("pg5", 25)]);
    assert_eq!(shares(&snap, "lsn-0-3000000.read.db.internal.", A, &want), want);
    let want = pct(&[("pg1", 100)]);
    assert_eq!(shares(&snap, "lsn-0-3000000.only.db.internal.", A, &want), want);
    snap.cluster_mut(0).nodes[1].lag = Some(Duration::from_millis(10));
    snap.cluster_mut(0).nodes[1].replay_lsn = Some(Lsn(0x3000000));
    snap.cluster_mut(0).nodes[3].replay_lsn = Some(Lsn(0x2000000));
    snap.cluster_mut(0).nodes[4].replay_lsn = Some(Lsn(0x2000000));
    reevaluate(&mut snap);
    let want = pct(&[("pg2", 100)]);
    assert_eq!(shares(&snap, "lsn-0-3000000.read.db.internal.", B, &want), want);
}

#[test]
fn answers_all_orders_local_first_then_the_rest_by_weight() {
    let snap = snapshot();
    let mut rng = SmallRng::seed_from_u64(3);
    let mut second: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..3000 {
        let got = names(&snap, &ask(&snap, "every.db.internal.", Qtype::A, B, &mut rng));
        assert_eq!(got.len(), 4, "{got:?}");
        let mut local = got[..2].to_vec();
        local.sort();
        assert_eq!(local, ["pg3", "pg4"], "{got:?}");
        *second.entry(got[2].clone()).or_default() += 1;
    }
    // after the local ones, pg2 and pg5 (weight 100 each) share the third place
    let share = f64::from(second["pg2"]) / 3000.0;
    assert!((share - 0.5).abs() < 0.05, "{second:?}");
}

#[test]
fn srv_priorities_follow_the_clients_location() {
    let snap = snapshot();
    let mut rng = SmallRng::seed_from_u64(1);
    let srv = |qname: &str, from: &str, rng: &mut SmallRng| names(&snap, &ask(&snap, qname, Qtype::Srv, from, rng));
    let cases: &[(&str, &str, &[&str])] = &[
        ("_postgresql._tcp.read.db.internal.", A, &["pg2@10", "pg3@20", "pg4@20", "pg5@20", "pg1@30"]),
        ("_postgresql._tcp.read.db.internal.", B, &["pg3@10", "pg4@10", "pg2@20", "pg5@20", "pg1@30"]),
        ("_postgresql._tcp.read.db.internal.", NOWHERE, &["pg2@10", "pg3@10", "pg4@10", "pg5@10", "pg1@30"]),
        // c is known but has no replica: every one of them is elsewhere
        ("_postgresql._tcp.read.db.internal.", C, &["pg2@20", "pg3@20", "pg4@20", "pg5@20", "pg1@30"]),
        ("_postgresql._tcp.only.db.internal.", A, &["pg2@10", "pg1@30"]),
        ("_postgresql._tcp.only.db.internal.", C, &["pg1@30"]),
        ("_postgresql._tcp.ignore.db.internal.", A, &["pg2@10", "pg3@10", "pg4@10", "pg5@10", "pg1@30"]),
        ("_postgresql._tcp.write.db.internal.", B, &["pg1@0"]),
        ("_postgresql._tcp.lsn-0-3000000.read.db.internal.", B, &["pg4@10", "pg2@20", "pg5@20", "pg1@30"]),
    ];
    for (qname, from, want) in cases {
        assert_eq!(srv(qname, from, &mut rng), *want, "{qname} from {from}");
    }
}

#[test]
fn txt_says_where_the_client_was_placed_and_where_each_node_is() {
    let snap = snapshot();
    let a = ask(&snap, "read.db.internal.", Qtype::Txt, "127.0.2.9", &mut SmallRng::seed_from_u64(1));
    let Rr::Client(p) = &a.answers[0] else { panic!("{:?}", a.answers) };
    assert_eq!(txt::client_line(p, &snap.config.locations), "client 127.0.2.9 location=b via source");
    let far = client(&snap, NOWHERE);
    assert_eq!(txt::client_line(&far, &snap.config.locations), "client 192.0.2.1 location=unknown via default");
    let lines = txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations);
    assert!(lines[1].starts_with("pg2 10.0.0.12 location=a role=replica "), "{}", lines[1]);
    assert!(lines[4].starts_with("pg5 10.0.0.15 location=- role=replica "), "{}", lines[4]);
    assert!(txt::write_lines(&snap.clusters[0], snap.built, &snap.config.locations)[0].contains(" location=a "));
}

#[test]
fn answers_say_whether_they_depend_on_the_location() {
    let snap = snapshot();
    let mut rng = SmallRng::seed_from_u64(1);
    // (name, type, from, by_location, nearness)
    let cases: &[(&str, Qtype, &str, bool, Option<Nearness>)] = &[
        ("read.db.internal.", Qtype::A, A, true, Some(Nearness::Local)),
        ("read.db.internal.", Qtype::A, C, true, Some(Nearness::Remote)),
        ("read.db.internal.", Qtype::A, NOWHERE, true, Some(Nearness::Unknown)),
        ("only.db.internal.", Qtype::A, C, true, Some(Nearness::Remote)), // the primary, in `a`
        ("read.db.internal.", Qtype::Txt, A, true, None),
        ("read.db.internal.", Qtype::Other, A, false, None),
        ("_postgresql._tcp.read.db.internal.", Qtype::Srv, A, true, None),
        ("write.db.internal.", Qtype::A, A, false, None),
        ("pg2.main.db.internal.", Qtype::A, A, false, None),
        ("db.internal.", Qtype::Soa, A, false, None),
        ("nosuch.db.internal.", Qtype::A, A, false, None),
    ];
    for &(qname, qtype, from, by_location, nearness) in cases {
        let a = ask(&snap, qname, qtype, from, &mut rng);
        assert_eq!((a.by_location, a.nearness), (by_location, nearness), "{qname} {qtype:?} from {from}");
    }
    assert!(!ask(&snap, "ignore.db.internal.", Qtype::A, A, &mut rng).by_location);
    // without [locality], nothing depends on it and the TXT has no client line
    let target = Names::new(&snap.config).parse("read.db.internal.");
    let a = answer(&snap, &target, Qtype::Txt, None, &mut rng);
    assert!(!a.by_location && matches!(a.answers[..], [Rr::Txt(_)]), "{a:?}");
    let a = answer(&snap, &target, Qtype::A, None, &mut rng);
    assert_eq!((a.by_location, a.nearness), (false, Some(Nearness::Unknown)));
}
