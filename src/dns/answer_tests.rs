//! Table tests for the SPEC §5 answers, written the way `dig` prints them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;
use crate::config::Answers;
use crate::dns::name::Names;
use crate::dns::testdata::{reevaluate, snapshot};
use crate::dns::txt;
use crate::snapshot::WriteTarget;

/// The answer as (rcode, aa, answer lines, authority lines, additional lines).
#[derive(Debug, PartialEq)]
struct Dig {
    rcode: Rcode,
    aa: bool,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

fn rr_lines(snap: &Snapshot, owner: &str, ttl: u32, rr: &Rr) -> Vec<String> {
    let soa = Soa::of(snap);
    match rr {
        Rr::Addr(ip) if ip.is_ipv4() => vec![format!("{owner} {ttl} IN A {ip}")],
        Rr::Addr(ip) => vec![format!("{owner} {ttl} IN AAAA {ip}")],
        Rr::Soa => vec![format!(
            "{owner} {} IN SOA {}. {}. {} {} {} {} {}",
            soa.minimum, soa.mname, soa.rname, soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum
        )],
        Rr::Ns(i) => vec![format!("{owner} {ttl} IN NS {}.", snap.config.dns.nameservers[*i].name)],
        Rr::Txt(of) => {
            let lines = match *of {
                TxtOf::Write { cluster } => {
                    txt::write_lines(&snap.clusters[cluster], snap.built, &snap.config.locations)
                }
                TxtOf::Endpoint { cluster, endpoint } => {
                    txt::endpoint_lines(&snap.clusters[cluster], endpoint, &snap.config.locations)
                }
                TxtOf::Node { cluster, node } => {
                    vec![txt::endpoint_lines(&snap.clusters[cluster], 0, &snap.config.locations).remove(node)]
                }
            };
            lines.iter().map(|l| format!("{owner} {ttl} IN TXT \"{l}\"")).collect()
        }
        Rr::Client(p) => vec![format!("{owner} {ttl} IN TXT \"{}\"", txt::client_line(p, &snap.config.locations))],
        Rr::Srv { cluster, node, priority } => {
            let n = &snap.clusters[*cluster].nodes[*node];
            let (p, w) = (priority.value(), priority.weight(n.weight));
            vec![format!("{owner} {ttl} IN SRV {p} {w} {} {}", n.port, node_name(snap, *cluster, *node))]
        }
    }
}

/// `pg2.main.db.internal.`
fn node_name(snap: &Snapshot, cluster: usize, node: usize) -> String {
    let c = &snap.config.clusters[cluster];
    format!("{}.{}.{}.", c.nodes[node].name, c.name, snap.config.dns.zone)
}

fn dig_with(snap: &Snapshot, qname: &str, qtype: Qtype, rng: &mut SmallRng) -> Dig {
    let target = Names::new(&snap.config).parse(qname);
    let a = answer(snap, &target, qtype, None, rng);
    let ttl = ttl_secs(snap.config.dns.ttl);
    let zone = format!("{}.", snap.config.dns.zone);
    Dig {
        rcode: a.rcode,
        aa: a.authoritative,
        answer: a.answers.iter().flat_map(|rr| rr_lines(snap, qname, a.ttl, rr)).collect(),
        authority: if a.authority_soa { rr_lines(snap, &zone, 0, &Rr::Soa) } else { vec![] },
        additional: a
            .additional
            .iter()
            .map(|extra| {
                let (owner, address) = match *extra {
                    Additional::Nameserver(i) => {
                        let ns = &snap.config.dns.nameservers[i];
                        (format!("{}.", ns.name), ns.address)
                    }
                    Additional::Node { cluster, node } => {
                        (node_name(snap, cluster, node), snap.clusters[cluster].nodes[node].addresses[0])
                    }
                };
                rr_lines(snap, &owner, ttl, &Rr::Addr(address)).remove(0)
            })
            .collect(),
    }
}

fn dig(snap: &Snapshot, qname: &str, qtype: Qtype) -> Dig {
    dig_with(snap, qname, qtype, &mut SmallRng::seed_from_u64(1))
}

const SOA: &str = "db.internal. 5 IN SOA ns1.db.internal. hostmaster.db.internal. 7 3600 600 86400 5";

fn ok(answer: &[&str]) -> Dig {
    Dig { rcode: Rcode::NoError, aa: true, answer: strings(answer), authority: vec![], additional: vec![] }
}

fn nodata() -> Dig {
    Dig { rcode: Rcode::NoError, aa: true, answer: vec![], authority: strings(&[SOA]), additional: vec![] }
}

fn fail(rcode: Rcode) -> Dig {
    Dig { rcode, aa: true, answer: vec![], authority: vec![], additional: vec![] }
}

fn strings(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

/// How often each answer set came back over many seeded queries.
fn tally(snap: &Snapshot, qname: &str, qtype: Qtype) -> BTreeMap<Vec<String>, usize> {
    let mut rng = SmallRng::seed_from_u64(99);
    let mut out = BTreeMap::new();
    for _ in 0..4000 {
        let d = dig_with(snap, qname, qtype, &mut rng);
        assert_eq!(d.rcode, Rcode::NoError, "{qname}");
        *out.entry(d.answer).or_insert(0) += 1;
    }
    out
}

fn set_read_policy(snap: &mut Snapshot, f: impl Fn(&mut crate::config::Policy)) {
    f(&mut snap.cluster_mut(0).endpoints[0].policy);
    reevaluate(snap);
}

#[test]
fn deterministic_rows() {
    let snap = snapshot();
    let txt = |lines: Vec<String>, owner: &str, ttl: u32| -> Vec<String> {
        lines.iter().map(|l| format!("{owner} {ttl} IN TXT \"{l}\"")).collect()
    };
    let cases: Vec<(&str, Qtype, Dig)> = vec![
        // write: the primary, by family.
        ("write.db.internal.", Qtype::A, ok(&["write.db.internal. 1 IN A 10.0.0.11"])),
        ("write.db.internal.", Qtype::Any, ok(&["write.db.internal. 1 IN A 10.0.0.11"])),
        ("write.db.internal.", Qtype::Aaaa, nodata()),
        ("write.db.internal.", Qtype::Other, nodata()),
        ("write.db.internal.", Qtype::Soa, nodata()),
        // split brain: SERVFAIL for addresses, TXT still explains.
        ("billing-write.db.internal.", Qtype::A, fail(Rcode::ServFail)),
        ("billing-write.db.internal.", Qtype::Aaaa, fail(Rcode::ServFail)),
        ("billing-read.db.internal.", Qtype::A, fail(Rcode::ServFail)),
        ("lsn-0-1.billing-read.db.internal.", Qtype::A, fail(Rcode::ServFail)),
        (
            "billing-write.db.internal.",
            Qtype::Txt,
            Dig {
                answer: txt(
                    txt::write_lines(&snap.clusters[1], snap.built, &snap.config.locations),
                    "billing-write.db.internal.",
                    1,
                ),
                ..ok(&[])
            },
        ),
        // read AAAA: only the IPv6 replica is eligible and of that family.
        ("read.db.internal.", Qtype::Aaaa, ok(&["read.db.internal. 1 IN AAAA 2001:db8::15"])),
        ("read.db.internal.", Qtype::Other, nodata()),
        ("analytics.db.internal.", Qtype::Aaaa, ok(&["analytics.db.internal. 1 IN AAAA 2001:db8::15"])),
        // maxlag: per-query bound, no hysteresis.
        ("maxlag-30ms.read.db.internal.", Qtype::A, ok(&["maxlag-30ms.read.db.internal. 1 IN A 10.0.0.12"])),
        ("maxlag-1ms.read.db.internal.", Qtype::A, ok(&["maxlag-1ms.read.db.internal. 1 IN A 10.0.0.11"])),
        ("maxlag-0s.read.db.internal.", Qtype::A, ok(&["maxlag-0s.read.db.internal. 1 IN A 10.0.0.11"])),
        ("maxlag-1ms.analytics.db.internal.", Qtype::A, nodata()),
        // lsn: replicas that replayed it (weight > 0, up), TTL 0; else the primary.
        ("lsn-0-3000000.read.db.internal.", Qtype::A, ok(&["lsn-0-3000000.read.db.internal. 0 IN A 10.0.0.12"])),
        (
            "lsn-0-3000000.read.db.internal.",
            Qtype::Aaaa,
            ok(&["lsn-0-3000000.read.db.internal. 0 IN AAAA 2001:db8::15"]),
        ),
        ("lsn-0-3000001.read.db.internal.", Qtype::A, ok(&["lsn-0-3000001.read.db.internal. 0 IN A 10.0.0.11"])),
        (
            "lsn-0-2ffff00.analytics.db.internal.",
            Qtype::A,
            ok(&["lsn-0-2ffff00.analytics.db.internal. 0 IN A 10.0.0.13"]),
        ),
        // analytics has fallback none, yet lsn- answers the primary.
        ("lsn-1-0.analytics.db.internal.", Qtype::A, ok(&["lsn-1-0.analytics.db.internal. 0 IN A 10.0.0.11"])),
        ("lsn-1-0.analytics.db.internal.", Qtype::Aaaa, nodata()),
        // TXT: the snapshot's own lines, on every endpoint name and variant.
        (
            "write.db.internal.",
            Qtype::Txt,
            Dig {
                answer: txt(
                    txt::write_lines(&snap.clusters[0], snap.built, &snap.config.locations),
                    "write.db.internal.",
                    1,
                ),
                ..ok(&[])
            },
        ),
        (
            "read.db.internal.",
            Qtype::Txt,
            Dig {
                answer: txt(txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations), "read.db.internal.", 1),
                ..ok(&[])
            },
        ),
        (
            "analytics.db.internal.",
            Qtype::Txt,
            Dig {
                answer: txt(
                    txt::endpoint_lines(&snap.clusters[0], 1, &snap.config.locations),
                    "analytics.db.internal.",
                    1,
                ),
                ..ok(&[])
            },
        ),
        (
            "maxlag-5s.read.db.internal.",
            Qtype::Txt,
            Dig {
                answer: txt(
                    txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations),
                    "maxlag-5s.read.db.internal.",
                    1,
                ),
                ..ok(&[])
            },
        ),
        (
            "lsn-0-1.read.db.internal.",
            Qtype::Txt,
            Dig {
                answer: txt(
                    txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations),
                    "lsn-0-1.read.db.internal.",
                    0,
                ),
                ..ok(&[])
            },
        ),
        // apex
        ("db.internal.", Qtype::Soa, ok(&[SOA])),
        (
            "db.internal.",
            Qtype::Ns,
            Dig {
                additional: strings(&[
                    "ns1.db.internal. 1 IN A 192.0.2.1",
                    "ns3.sub.db.internal. 1 IN AAAA 2001:db8::53",
                ]),
                ..ok(&[
                    "db.internal. 1 IN NS ns1.db.internal.",
                    "db.internal. 1 IN NS ns2.other.net.",
                    "db.internal. 1 IN NS ns3.sub.db.internal.",
                ])
            },
        ),
        ("db.internal.", Qtype::A, nodata()),
        ("db.internal.", Qtype::Txt, nodata()),
        // nameserver names in the zone
        ("ns1.db.internal.", Qtype::A, ok(&["ns1.db.internal. 1 IN A 192.0.2.1"])),
        ("ns1.db.internal.", Qtype::Aaaa, nodata()),
        ("ns3.sub.db.internal.", Qtype::Aaaa, ok(&["ns3.sub.db.internal. 1 IN AAAA 2001:db8::53"])),
        // other names
        ("nosuch.db.internal.", Qtype::A, Dig { authority: strings(&[SOA]), ..fail(Rcode::NxDomain) }),
        ("x.write.db.internal.", Qtype::Txt, Dig { authority: strings(&[SOA]), ..fail(Rcode::NxDomain) }),
        ("example.com.", Qtype::A, Dig { aa: false, ..fail(Rcode::Refused) }),
        ("ns2.other.net.", Qtype::A, Dig { aa: false, ..fail(Rcode::Refused) }),
    ];
    for (qname, qtype, want) in cases {
        assert_eq!(dig(&snap, qname, qtype), want, "{qname} {qtype:?}");
    }
}

#[test]
fn not_ready_fails_endpoint_names_but_serves_the_apex() {
    let mut snap = snapshot();
    snap.ready = false;
    for qname in [
        "write.db.internal.",
        "read.db.internal.",
        "analytics.db.internal.",
        "maxlag-5s.read.db.internal.",
        "lsn-0-1.read.db.internal.",
    ] {
        for qtype in [Qtype::A, Qtype::Aaaa, Qtype::Txt] {
            assert_eq!(dig(&snap, qname, qtype), fail(Rcode::ServFail), "{qname} {qtype:?}");
        }
    }
    assert_eq!(dig(&snap, "db.internal.", Qtype::Soa), ok(&[SOA]));
    assert_eq!(dig(&snap, "ns1.db.internal.", Qtype::A), ok(&["ns1.db.internal. 1 IN A 192.0.2.1"]));
    assert_eq!(dig(&snap, "nosuch.db.internal.", Qtype::A).rcode, Rcode::NxDomain);
}

#[test]
fn write_follows_the_target() {
    let mut snap = snapshot();
    snap.cluster_mut(0).write = WriteTarget::Stale { node: 1, since: SystemTime::UNIX_EPOCH };
    assert_eq!(dig(&snap, "write.db.internal.", Qtype::A), ok(&["write.db.internal. 1 IN A 10.0.0.12"]));
    snap.cluster_mut(0).write = WriteTarget::Primary(4);
    assert_eq!(dig(&snap, "write.db.internal.", Qtype::Aaaa), ok(&["write.db.internal. 1 IN AAAA 2001:db8::15"]));
    assert_eq!(dig(&snap, "write.db.internal.", Qtype::A), nodata());
    snap.cluster_mut(0).write = WriteTarget::Unknown;
    assert_eq!(dig(&snap, "write.db.internal.", Qtype::A), fail(Rcode::ServFail));
    // The read fallback follows the write target too.
    set_read_policy(&mut snap, |p| p.max_lag = Duration::from_millis(1));
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::A), fail(Rcode::ServFail));
    assert_eq!(dig(&snap, "lsn-9-0.read.db.internal.", Qtype::A), fail(Rcode::ServFail));
}

#[test]
fn read_picks_eligible_replicas_by_weight() {
    // Eligible IPv4: pg2 (weight 100) and pg3 (weight 300); pg4 drained, pg6 down,
    // pg7 lags 2 s, pg1 is the primary.
    let snap = snapshot();
    let got = tally(&snap, "read.db.internal.", Qtype::A);
    let pg2 = strings(&["read.db.internal. 1 IN A 10.0.0.12"]);
    let pg3 = strings(&["read.db.internal. 1 IN A 10.0.0.13"]);
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), vec![pg2.clone(), pg3.clone()]);
    let share = got[&pg3] as f64 / 4000.0;
    assert!((share - 0.75).abs() < 0.03, "pg3 share {share}");

    // maxlag-5s admits pg7 (2 s) too, by weight 100/300/100.
    let got = tally(&snap, "maxlag-5s.read.db.internal.", Qtype::A);
    let pg7 = strings(&["maxlag-5s.read.db.internal. 1 IN A 10.0.0.17"]);
    assert_eq!(got.len(), 3, "{got:?}");
    let share = got[&pg7] as f64 / 4000.0;
    assert!((share - 0.2).abs() < 0.03, "pg7 share {share}");
}

#[test]
fn answers_all_gives_every_eligible_in_weighted_order() {
    let mut snap = snapshot();
    set_read_policy(&mut snap, |p| p.answers = Answers::All);
    let got = tally(&snap, "read.db.internal.", Qtype::A);
    let a12 = "read.db.internal. 1 IN A 10.0.0.12".to_string();
    let a13 = "read.db.internal. 1 IN A 10.0.0.13".to_string();
    let first13 = got[&vec![a13.clone(), a12.clone()]] as f64 / 4000.0;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!((first13 - 0.75).abs() < 0.03, "pg3 first {first13}");
    // Analytics (answers all, 5 min): pg3 and pg7 over IPv4.
    let got = tally(&snap, "analytics.db.internal.", Qtype::A);
    assert!(got.keys().all(|k| k.len() == 2), "{got:?}");
    // lsn- picks per `answers` as well: pg2 and pg5 both replayed 0/3000000.
    let d = dig(&snap, "lsn-0-3000000.read.db.internal.", Qtype::Any);
    assert_eq!(d.answer.len(), 2, "{d:?}");
}

#[test]
fn fallbacks_when_nothing_is_eligible() {
    let mut snap = snapshot();
    set_read_policy(&mut snap, |p| p.max_lag = Duration::from_millis(5));
    assert!(snap.clusters[0].endpoints[0].eligible.is_empty());
    // primary
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::A), ok(&["read.db.internal. 1 IN A 10.0.0.11"]));
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::Aaaa), nodata());
    // none
    set_read_policy(&mut snap, |p| p.fallback = Fallback::None);
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::A), nodata());
    // open: every up replica, least lag first, weight 0 included, down excluded.
    set_read_policy(&mut snap, |p| p.fallback = Fallback::Open);
    let open = |ips: &[&str]| -> Dig {
        let lines: Vec<String> = ips.iter().map(|ip| format!("read.db.internal. 1 IN A {ip}")).collect();
        Dig { answer: lines, ..ok(&[]) }
    };
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::A), open(&["10.0.0.14", "10.0.0.12", "10.0.0.13", "10.0.0.17"]));
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::Aaaa), ok(&["read.db.internal. 1 IN AAAA 2001:db8::15"]));
    // unknown lag goes last
    snap.cluster_mut(0).nodes[1].lag = None;
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::A), open(&["10.0.0.14", "10.0.0.13", "10.0.0.17", "10.0.0.12"]));
    // no up replica at all → NODATA
    for n in &mut snap.cluster_mut(0).nodes[1..] {
        n.state = NodeState::Down;
    }
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::A), nodata());
}

#[test]
fn maxlag_uses_the_endpoint_fallback() {
    let mut snap = snapshot();
    set_read_policy(&mut snap, |p| p.fallback = Fallback::Open);
    let d = dig(&snap, "maxlag-1ms.read.db.internal.", Qtype::A);
    assert_eq!(d.answer.len(), 4, "{d:?}");
    assert!(d.answer[0].ends_with("10.0.0.14"), "{d:?}");
}

#[test]
fn soa_serial_and_ttls_come_from_the_snapshot() {
    let mut snap = snapshot();
    snap.serial = 4242;
    let mut cfg = (*snap.config).clone();
    cfg.dns.ttl = Duration::from_secs(3);
    cfg.dns.negative_ttl = Duration::from_secs(9);
    snap.config = std::sync::Arc::new(cfg);
    let soa = "db.internal. 9 IN SOA ns1.db.internal. hostmaster.db.internal. 4242 3600 600 86400 9";
    assert_eq!(dig(&snap, "db.internal.", Qtype::Soa), ok(&[soa]));
    assert_eq!(dig(&snap, "write.db.internal.", Qtype::A), ok(&["write.db.internal. 3 IN A 10.0.0.11"]));
    assert_eq!(dig(&snap, "nosuch.db.internal.", Qtype::A).authority, strings(&[soa]));
}

#[test]
fn query_kinds_are_reported_for_metrics() {
    let snap = snapshot();
    let mut rng = SmallRng::seed_from_u64(3);
    let names = Names::new(&snap.config);
    for (qname, kind) in [
        ("write.db.internal.", QueryKind::Write),
        ("read.db.internal.", QueryKind::Read),
        ("analytics.db.internal.", QueryKind::Read),
        ("maxlag-1s.read.db.internal.", QueryKind::MaxLag),
        ("lsn-0-1.read.db.internal.", QueryKind::Lsn),
        ("db.internal.", QueryKind::Apex),
        ("ns1.db.internal.", QueryKind::Nameserver),
        ("nosuch.db.internal.", QueryKind::Unknown),
        ("example.com.", QueryKind::OutOfZone),
    ] {
        assert_eq!(answer(&snap, &names.parse(qname), Qtype::A, None, &mut rng).kind, kind, "{qname}");
    }
}

#[test]
fn maxlag_is_capped_at_what_lag_measures_faithfully() {
    let mut snap = snapshot();
    set_read_policy(&mut snap, |p| p.fallback = Fallback::None);
    let measurable = crate::lag::measurable(&snap.config);
    for n in &mut snap.cluster_mut(0).nodes {
        if n.lag.is_some() {
            n.lag = Some(measurable + Duration::from_secs(1));
        }
    }
    // a bound beyond the evidence window cannot vouch for a replica lagging past it
    assert_eq!(dig(&snap, "maxlag-86400s.read.db.internal.", Qtype::A), nodata());
    let within = format!("maxlag-{}ms.read.db.internal.", (measurable + Duration::from_secs(2)).as_millis());
    assert_eq!(dig(&snap, &within, Qtype::A), nodata(), "capped, so still not answered");
}

// ------------------------------------------------------------ SPEC §9: node names, SRV, ENTs

fn srv_answer(answers: &[&str], additional: &[&str]) -> Dig {
    Dig { additional: strings(additional), ..ok(answers) }
}

#[test]
fn srv_rows() {
    let snap = snapshot();
    let a = |node: &str, ip: &str| format!("{node}.main.db.internal. 1 IN A {ip}");
    let (pg1, pg2, pg3) = (a("pg1", "10.0.0.11"), a("pg2", "10.0.0.12"), a("pg3", "10.0.0.13"));
    let (pg7, pg5) = (a("pg7", "10.0.0.17"), "pg5.main.db.internal. 1 IN AAAA 2001:db8::15".to_string());
    let cases: Vec<(&str, Qtype, Dig)> = vec![
        // write: the primary alone, priority 0, weight 0
        (
            "_postgresql._tcp.write.db.internal.",
            Qtype::Srv,
            srv_answer(&["_postgresql._tcp.write.db.internal. 1 IN SRV 0 0 5432 pg1.main.db.internal."], &[&pg1]),
        ),
        // read: every eligible replica at 10 (weight = its weight; pg3's pooler port),
        // then the fallback (primary) at 30
        (
            "_postgresql._tcp.read.db.internal.",
            Qtype::Srv,
            srv_answer(
                &[
                    "_postgresql._tcp.read.db.internal. 1 IN SRV 10 100 5432 pg2.main.db.internal.",
                    "_postgresql._tcp.read.db.internal. 1 IN SRV 10 300 6432 pg3.main.db.internal.",
                    "_postgresql._tcp.read.db.internal. 1 IN SRV 10 100 5432 pg5.main.db.internal.",
                    "_postgresql._tcp.read.db.internal. 1 IN SRV 30 100 5432 pg1.main.db.internal.",
                ],
                &[&pg2, &pg3, &pg5, &pg1],
            ),
        ),
        // ANY on an SRV name is its SRV records too
        (
            "_postgresql._tcp.write.db.internal.",
            Qtype::Any,
            srv_answer(&["_postgresql._tcp.write.db.internal. 1 IN SRV 0 0 5432 pg1.main.db.internal."], &[&pg1]),
        ),
        // analytics: fallback none, so nothing at 30
        (
            "_postgresql._tcp.analytics.db.internal.",
            Qtype::Srv,
            srv_answer(
                &[
                    "_postgresql._tcp.analytics.db.internal. 1 IN SRV 10 300 6432 pg3.main.db.internal.",
                    "_postgresql._tcp.analytics.db.internal. 1 IN SRV 10 100 5432 pg5.main.db.internal.",
                    "_postgresql._tcp.analytics.db.internal. 1 IN SRV 10 100 5432 pg7.main.db.internal.",
                ],
                &[&pg3, &pg5, &pg7],
            ),
        ),
        ("_postgresql._tcp.maxlag-1ms.analytics.db.internal.", Qtype::Srv, nodata()),
        // maxlag-: like read with that bound
        (
            "_postgresql._tcp.maxlag-30ms.read.db.internal.",
            Qtype::Srv,
            srv_answer(
                &[
                    "_postgresql._tcp.maxlag-30ms.read.db.internal. 1 IN SRV 10 100 5432 pg2.main.db.internal.",
                    "_postgresql._tcp.maxlag-30ms.read.db.internal. 1 IN SRV 10 100 5432 pg5.main.db.internal.",
                    "_postgresql._tcp.maxlag-30ms.read.db.internal. 1 IN SRV 30 100 5432 pg1.main.db.internal.",
                ],
                &[&pg2, &pg5, &pg1],
            ),
        ),
        (
            "_postgresql._tcp.maxlag-1ms.read.db.internal.",
            Qtype::Srv,
            srv_answer(
                &["_postgresql._tcp.maxlag-1ms.read.db.internal. 1 IN SRV 30 100 5432 pg1.main.db.internal."],
                &[&pg1],
            ),
        ),
        // lsn-: the replicas that replayed it (up, not drained) at 10, the primary at 30
        // whatever the fallback; TTL 0
        (
            "_postgresql._tcp.lsn-0-3000000.read.db.internal.",
            Qtype::Srv,
            srv_answer(
                &[
                    "_postgresql._tcp.lsn-0-3000000.read.db.internal. 0 IN SRV 10 100 5432 pg2.main.db.internal.",
                    "_postgresql._tcp.lsn-0-3000000.read.db.internal. 0 IN SRV 10 100 5432 pg5.main.db.internal.",
                    "_postgresql._tcp.lsn-0-3000000.read.db.internal. 0 IN SRV 30 100 5432 pg1.main.db.internal.",
                ],
                &[&pg2, &pg5, &pg1],
            ),
        ),
        (
            "_postgresql._tcp.lsn-1-0.analytics.db.internal.",
            Qtype::Srv,
            srv_answer(
                &["_postgresql._tcp.lsn-1-0.analytics.db.internal. 0 IN SRV 30 100 5432 pg1.main.db.internal."],
                &[&pg1],
            ),
        ),
        // split brain: SERVFAIL where the address query gets it
        ("_postgresql._tcp.billing-write.db.internal.", Qtype::Srv, fail(Rcode::ServFail)),
        ("_postgresql._tcp.billing-read.db.internal.", Qtype::Srv, fail(Rcode::ServFail)),
        ("_postgresql._tcp.lsn-0-1.billing-read.db.internal.", Qtype::Srv, fail(Rcode::ServFail)),
        // an SRV name has SRV records only
        ("_postgresql._tcp.read.db.internal.", Qtype::A, nodata()),
        ("_postgresql._tcp.read.db.internal.", Qtype::Txt, nodata()),
        ("_postgresql._tcp.billing-write.db.internal.", Qtype::Aaaa, nodata()),
        // and the other names have none
        ("read.db.internal.", Qtype::Srv, nodata()),
        ("write.db.internal.", Qtype::Srv, nodata()),
        ("pg1.main.db.internal.", Qtype::Srv, nodata()),
        ("db.internal.", Qtype::Srv, nodata()),
    ];
    for (qname, qtype, want) in cases {
        assert_eq!(dig(&snap, qname, qtype), want, "{qname} {qtype:?}");
    }
}

#[test]
fn srv_fallbacks_none_primary_open() {
    let mut snap = snapshot();
    let q = "_postgresql._tcp.read.db.internal.";
    let srv = |p: u16, w: u16, port: u16, node: &str| format!("{q} 1 IN SRV {p} {w} {port} {node}.main.db.internal.");
    let p10 = [srv(10, 100, 5432, "pg2"), srv(10, 300, 6432, "pg3"), srv(10, 100, 5432, "pg5")];
    let answers = |d: Dig| d.answer;
    // primary (the default): the primary at 30, after the eligible ones
    let mut want = p10.to_vec();
    want.push(srv(30, 100, 5432, "pg1"));
    assert_eq!(answers(dig(&snap, q, Qtype::Srv)), want);
    // none: the eligible ones only
    set_read_policy(&mut snap, |p| p.fallback = Fallback::None);
    assert_eq!(answers(dig(&snap, q, Qtype::Srv)), p10);
    // open: the up replicas not already listed, least lag first (pg4 drained: weight 0;
    // pg7 lagging), never the down pg6
    set_read_policy(&mut snap, |p| p.fallback = Fallback::Open);
    let mut want = p10.to_vec();
    want.extend([srv(30, 0, 5432, "pg4"), srv(30, 100, 5432, "pg7")]);
    assert_eq!(answers(dig(&snap, q, Qtype::Srv)), want);
    // nothing eligible: the whole answer is the fallback
    set_read_policy(&mut snap, |p| p.max_lag = Duration::from_millis(5));
    let open = ["pg4", "pg2", "pg5", "pg3", "pg7"];
    let weight = |n: &str| match n {
        "pg4" => 0,
        "pg3" => 300,
        _ => 100,
    };
    let port = |n: &str| if n == "pg3" { 6432 } else { 5432 };
    let want: Vec<String> = open.iter().map(|n| srv(30, weight(n), port(n), n)).collect();
    assert_eq!(answers(dig(&snap, q, Qtype::Srv)), want);
    set_read_policy(&mut snap, |p| p.fallback = Fallback::None);
    assert_eq!(dig(&snap, q, Qtype::Srv), nodata());
    set_read_policy(&mut snap, |p| p.fallback = Fallback::Primary);
    assert_eq!(answers(dig(&snap, q, Qtype::Srv)), [srv(30, 100, 5432, "pg1")]);
}

#[test]
fn srv_follows_the_write_target() {
    let mut snap = snapshot();
    let write = "_postgresql._tcp.write.db.internal.";
    let read = "_postgresql._tcp.read.db.internal.";
    // stale: still answered, like the A record
    snap.cluster_mut(0).write = WriteTarget::Stale { node: 1, since: SystemTime::UNIX_EPOCH };
    assert_eq!(dig(&snap, write, Qtype::Srv).answer, [format!("{write} 1 IN SRV 0 0 5432 pg2.main.db.internal.")]);
    // no primary known: write fails; read keeps its replicas and has no priority 30
    snap.cluster_mut(0).write = WriteTarget::Unknown;
    assert_eq!(dig(&snap, write, Qtype::Srv), fail(Rcode::ServFail));
    let d = dig(&snap, read, Qtype::Srv);
    assert_eq!(d.answer.len(), 3, "{d:?}");
    assert!(d.answer.iter().all(|l| l.contains(" SRV 10 ")), "{d:?}");
    // ... until nothing is eligible either: SERVFAIL, like `read A`
    set_read_policy(&mut snap, |p| p.max_lag = Duration::from_millis(1));
    assert_eq!(dig(&snap, read, Qtype::Srv), fail(Rcode::ServFail));
    assert_eq!(dig(&snap, "read.db.internal.", Qtype::A), fail(Rcode::ServFail));
}

#[test]
fn srv_weights_and_priorities() {
    assert_eq!(Priority::ALL.map(Priority::value), [0, 10, 20, 30]);
    // `records` indexes each node's SRV data by `priority as usize`, built in ALL's order
    assert!(Priority::ALL.iter().enumerate().all(|(i, p)| *p as usize == i));
    assert_eq!(Priority::Primary.weight(300), 0, "write's one record: nothing to choose by weight");
    assert_eq!(Priority::Near.weight(300), 300);
    assert_eq!(Priority::Fallback.weight(0), 0);
    assert_eq!(Priority::Far.weight(1_000_000), u16::MAX, "the SRV field is 16 bits");
    // the per-replica decision locality will feed (SPEC §8): unknown or unused → 10
    assert_eq!(replica_priority(None), Priority::Near);
    assert_eq!(replica_priority(Some(true)), Priority::Near);
    assert_eq!(replica_priority(Some(false)), Priority::Far);
}

#[test]
fn node_names_answer_the_address_whatever_the_state() {
    let mut snap = snapshot();
    let node_txt = |node: usize, owner: &str| {
        let line = &txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations)[node];
        Dig { answer: vec![format!("{owner} 1 IN TXT \"{line}\"")], ..ok(&[]) }
    };
    let cases: Vec<(&str, Qtype, Dig)> = vec![
        ("pg1.main.db.internal.", Qtype::A, ok(&["pg1.main.db.internal. 1 IN A 10.0.0.11"])),
        ("pg1.main.db.internal.", Qtype::Any, ok(&["pg1.main.db.internal. 1 IN A 10.0.0.11"])),
        ("pg1.main.db.internal.", Qtype::Aaaa, nodata()),
        ("pg5.main.db.internal.", Qtype::Aaaa, ok(&["pg5.main.db.internal. 1 IN AAAA 2001:db8::15"])),
        ("pg5.main.db.internal.", Qtype::A, nodata()),
        // down, drained, lagging: the name is fixed
        ("pg6.main.db.internal.", Qtype::A, ok(&["pg6.main.db.internal. 1 IN A 10.0.0.16"])),
        ("pg4.main.db.internal.", Qtype::A, ok(&["pg4.main.db.internal. 1 IN A 10.0.0.14"])),
        ("b2.billing.db.internal.", Qtype::A, ok(&["b2.billing.db.internal. 1 IN A 10.1.0.2"])),
        // TXT: that node's line, as `read` shows it
        ("pg3.main.db.internal.", Qtype::Txt, node_txt(2, "pg3.main.db.internal.")),
        ("pg6.main.db.internal.", Qtype::Txt, node_txt(5, "pg6.main.db.internal.")),
        // other types
        ("pg1.main.db.internal.", Qtype::Soa, nodata()),
        ("pg1.main.db.internal.", Qtype::Ns, nodata()),
        ("pg1.main.db.internal.", Qtype::Other, nodata()),
    ];
    for (qname, qtype, want) in &cases {
        assert_eq!(dig(&snap, qname, *qtype), *want, "{qname} {qtype:?}");
    }
    // before the first probe round too: nothing here waits on a probe
    snap.ready = false;
    assert_eq!(dig(&snap, "pg2.main.db.internal.", Qtype::A), ok(&["pg2.main.db.internal. 1 IN A 10.0.0.12"]));
    assert_eq!(dig(&snap, "pg2.main.db.internal.", Qtype::Txt).rcode, Rcode::NoError);
    // the SRV names wait like the names they serve; other types are NODATA at once
    assert_eq!(dig(&snap, "_postgresql._tcp.read.db.internal.", Qtype::Srv), fail(Rcode::ServFail));
    assert_eq!(dig(&snap, "_postgresql._tcp.write.db.internal.", Qtype::Srv), fail(Rcode::ServFail));
    assert_eq!(dig(&snap, "_postgresql._tcp.read.db.internal.", Qtype::A), nodata());
}

#[test]
fn empty_non_terminals_are_nodata_never_nxdomain() {
    let snap = snapshot();
    for qname in [
        "main.db.internal.",
        "billing.db.internal.",
        "_tcp.read.db.internal.",
        "_tcp.write.db.internal.",
        "_tcp.billing-read.db.internal.",
        "_tcp.maxlag-5s.analytics.db.internal.",
        "_tcp.lsn-0-1.read.db.internal.",
        "sub.db.internal.",
    ] {
        for qtype in [Qtype::A, Qtype::Aaaa, Qtype::Txt, Qtype::Srv, Qtype::Ns, Qtype::Any] {
            assert_eq!(dig(&snap, qname, qtype), nodata(), "{qname} {qtype:?}");
        }
    }
    let nx = Dig { authority: strings(&[SOA]), ..fail(Rcode::NxDomain) };
    for qname in ["_tcp.main.db.internal.", "x.main.db.internal.", "x.sub.db.internal.", "_udp.read.db.internal."] {
        assert_eq!(dig(&snap, qname, Qtype::A), nx, "{qname}");
    }
}

#[test]
fn node_srv_and_empty_kinds_are_reported_for_metrics() {
    let snap = snapshot();
    let names = Names::new(&snap.config);
    let mut rng = SmallRng::seed_from_u64(3);
    for (qname, qtype, kind) in [
        ("pg1.main.db.internal.", Qtype::A, QueryKind::Node),
        ("_postgresql._tcp.read.db.internal.", Qtype::Srv, QueryKind::Srv),
        ("_postgresql._tcp.write.db.internal.", Qtype::A, QueryKind::Srv),
        ("_postgresql._tcp.lsn-0-1.read.db.internal.", Qtype::Srv, QueryKind::Srv),
        ("main.db.internal.", Qtype::A, QueryKind::Empty),
        ("_tcp.read.db.internal.", Qtype::Srv, QueryKind::Empty),
    ] {
        assert_eq!(answer(&snap, &names.parse(qname), qtype, None, &mut rng).kind, kind, "{qname}");
    }
}
