//! The answer path without sockets: a table of messages and what comes back, and
//! properties over generated queries (every well-formed query gets a well-formed
//! response that hickory-proto parses back, with the question echoed byte for byte).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use proptest::prelude::*;

use super::*;
use crate::dns::testdata::snapshot;
use crate::testkit::SnapshotBuilder;

fn responder() -> Responder {
    Responder::new(Store::new(snapshot(), Zone::derive), Arc::new(QueryStats::default()), b"ns-a".to_vec())
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn ask(r: &Responder, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    (r.respond(&Ask::new(packet, localhost(), transport, 0), &mut out) == Reply::Send).then_some(out)
}

#[test]
fn messages_and_what_comes_back() {
    let r = responder();
    let valid = query("write.db.internal.", RecordType::A).to_vec().unwrap();
    let mut response = valid.clone();
    response[2] |= 0x80;
    let mut notify = query("write.db.internal.", RecordType::A);
    notify.metadata.op_code = OpCode::Notify;
    notify.metadata.checking_disabled = true;
    let mut edns1 = query("write.db.internal.", RecordType::A);
    let mut e = Edns::new();
    e.set_version(1);
    edns1.edns = Some(e);
    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let mut two = query("write.db.internal.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("read.db.internal.").unwrap(), RecordType::A));
    let none = Message::new(9, MessageType::Query, OpCode::Query);
    // (what, packet, rcode or None for no response, AA, RD, CD, questions echoed)
    type Row = (&'static str, Vec<u8>, Option<u16>, bool, bool, bool, u16);
    let rows: Vec<Row> = vec![
        ("too short", valid[..11].to_vec(), None, false, false, false, 0),
        ("a response", response, None, false, false, false, 0),
        ("answer", valid.clone(), Some(0), true, true, false, 1),
        ("garbage body", [&valid[..12], &[0xff, 0xfe, 1][..]].concat(), Some(1), false, false, false, 0),
        ("notify", notify.to_vec().unwrap(), Some(4), false, false, false, 1),
        ("edns version 1", edns1.to_vec().unwrap(), Some(16), false, true, false, 1),
        ("class CH", chaos.to_vec().unwrap(), Some(5), false, true, false, 1),
        ("two questions", two.to_vec().unwrap(), Some(1), false, true, false, 2),
        ("no question", none.to_vec().unwrap(), Some(1), false, false, false, 0),
        ("out of zone", query("example.com.", RecordType::A).to_vec().unwrap(), Some(5), false, true, false, 1),
        ("nxdomain", query("nosuch.db.internal.", RecordType::A).to_vec().unwrap(), Some(3), true, true, false, 1),
    ];
    for (what, packet, want, aa, rd, cd, qd) in rows {
        let got = ask(&r, &packet, Transport::Udp);
        let Some(want) = want else {
            assert!(got.is_none(), "{what}: {got:?}");
            continue;
        };
        let m = Message::from_vec(&got.unwrap_or_else(|| panic!("{what}: no response"))).unwrap();
        assert_eq!(u16::from(m.metadata.response_code), want, "{what}");
        assert_eq!((m.metadata.authoritative, m.metadata.recursion_desired), (aa, rd), "{what}: AA, RD");
        assert_eq!(m.metadata.checking_disabled, cd, "{what}: CD");
        assert!(!m.metadata.recursion_available && !m.metadata.authentic_data, "{what}");
        assert_eq!(
            (m.metadata.message_type, m.metadata.id),
            (MessageType::Response, u16::from_be_bytes([packet[0], packet[1]]))
        );
        assert_eq!(m.queries.len(), usize::from(qd), "{what}");
    }
}

#[test]
fn allow_refuses_before_any_lookup_and_counts_it() {
    let text = "[dns]\nallow = [\"10.0.0.0/8\"]\n[[cluster]]\nname = \"main\"\n[[cluster.node]]\nname = \"pg1\"\naddress = \"10.0.0.1\"\ndsn = \"host=h\"\n";
    let stats = Arc::new(QueryStats::default());
    let r = Responder::new(Store::new(SnapshotBuilder::new(text).build(), Zone::derive), stats.clone(), Vec::new());
    let q = query("db.internal.", RecordType::SOA).to_vec().unwrap();
    let mut out = Vec::new();
    for (client, want) in [("10.1.2.3", 0), ("192.0.2.1", 5), ("::ffff:10.0.0.9", 0), ("2001:db8::1", 5)] {
        assert_eq!(r.respond(&Ask::new(&q, client.parse().unwrap(), Transport::Tcp, 0), &mut out), Reply::Send);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(u16::from(m.metadata.response_code), want, "{client}");
        assert_eq!(m.answers.len(), usize::from(want == 0), "{client}");
    }
    let denied: u64 = stats.nonzero().iter().filter(|c| c.0 == QueryKind::Denied).map(|c| c.3).sum();
    assert_eq!(denied, 2);
}

#[test]
fn over_the_rate_responses_are_slipped_empty_or_dropped() {
    let text = "[dns.limits]\nrate = 2\nslip = 2\n[[cluster]]\nname = \"main\"\n[[cluster.node]]\nname = \"pg1\"\naddress = \"10.0.0.1\"\ndsn = \"host=h\"\n";
    let stats = Arc::new(QueryStats::default());
    let r = Responder::new(Store::new(SnapshotBuilder::new(text).build(), Zone::derive), stats.clone(), Vec::new());
    let mut q = query("db.internal.", RecordType::SOA);
    q.edns = Some(Edns::new());
    let q = q.to_vec().unwrap();
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(match r.respond(&Ask::new(&q, localhost(), Transport::Udp, 100), &mut out) {
            Reply::Nothing => "dropped",
            Reply::Hold => unreachable!("not asked to hold"),
            Reply::Send => {
                let m = Message::from_vec(&out).unwrap();
                assert!(m.edns.is_some(), "the OPT is echoed");
                if m.metadata.truncation {
                    assert!(m.answers.is_empty() && m.authorities.is_empty() && m.queries.len() == 1);
                    "slipped"
                } else {
                    "answered"
                }
            }
        });
    }
    assert_eq!(seen, ["answered", "answered", "dropped", "slipped", "dropped", "slipped"]);
    assert_eq!(stats.edge.rrl(), (2, 2));
    // TCP is never limited
    assert_eq!(r.respond(&Ask::new(&q, localhost(), Transport::Tcp, 100), &mut out), Reply::Send);
    assert!(!Message::from_vec(&out).unwrap().metadata.truncation);
}

#[test]
fn before_the_first_round_endpoint_queries_are_held_when_allowed() {
    let text =
        "[[cluster]]\nname = \"main\"\n[[cluster.node]]\nname = \"pg1\"\naddress = \"10.0.0.1\"\ndsn = \"host=h\"\n";
    let store = Store::new(SnapshotBuilder::new(text).ready(false).build(), Zone::derive);
    let r = Responder::new(store.clone(), Arc::new(QueryStats::default()), Vec::new());
    let mut out = Vec::new();
    let write = query("write.db.internal.", RecordType::A).to_vec().unwrap();
    let soa = query("db.internal.", RecordType::SOA).to_vec().unwrap();
    let hold = |p| Ask { may_hold: true, ..Ask::new(p, localhost(), Transport::Udp, 0) };
    assert_eq!(r.respond(&hold(&write), &mut out), Reply::Hold);
    assert!(out.is_empty());
    assert_eq!(r.respond(&hold(&soa), &mut out), Reply::Send, "the apex needs no probe round");
    // not allowed to hold (the time is up): SERVFAIL
    let released = Ask { released: true, ..Ask::new(&write, localhost(), Transport::Udp, 0) };
    assert_eq!(r.respond(&released, &mut out), Reply::Send);
    assert_eq!(Message::from_vec(&out).unwrap().metadata.response_code, hickory_proto::op::ResponseCode::ServFail);
    // once ready, nothing is held
    store.publish(SnapshotBuilder::new(text).ready(true).build());
    assert_eq!(r.respond(&hold(&write), &mut out), Reply::Send);
}

/// A query name: a zone name, a made-up one in the zone, or one outside, in random case.
fn names() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "write.db.internal.",
        "read.db.internal.",
        "analytics.db.internal.",
        "maxlag-50ms.read.db.internal.",
        "lsn-0-3000000.read.db.internal.",
        "db.internal.",
        "ns1.db.internal.",
        "billing-write.db.internal.",
    ]);
    let made_up = "[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}\\.(db\\.internal|example)\\.";
    prop_oneof![known.prop_map(String::from), made_up].prop_flat_map(|name| {
        let len = name.len();
        (Just(name), prop::collection::vec(any::<bool>(), len))
            .prop_map(|(n, up)| n.chars().zip(up).map(|(c, u)| if u { c.to_ascii_uppercase() } else { c }).collect())
    })
}

fn qtypes() -> impl Strategy<Value = RecordType> {
    prop::sample::select(vec![
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::SOA,
        RecordType::NS,
        RecordType::ANY,
        RecordType::MX,
        RecordType::SRV,
        RecordType::Unknown(999),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn well_formed_queries_get_well_formed_answers_with_the_question_echoed(
        name in names(),
        qtype in qtypes(),
        id in any::<u16>(),
        (rd, cd) in (any::<bool>(), any::<bool>()),
        edns in prop::option::of((0u16..5000, any::<bool>())),
        ecs in prop::option::of((any::<bool>(), 0u8..=128, any::<[u8; 16]>())),
        local in any::<bool>(),
        tcp in any::<bool>(),
    ) {
        let r = if local { local_responder() } else { responder() };
        // a well-formed ECS option: family, source prefix, scope 0, the address cut to it
        let ecs = ecs.map(|(v6, prefix, mut addr)| {
            let prefix = if v6 { prefix } else { prefix % 33 };
            let len = usize::from(prefix.div_ceil(8));
            if prefix % 8 != 0 {
                addr[len - 1] &= 0xFF << (8 - prefix % 8);
            }
            let mut data = vec![0, if v6 { 2 } else { 1 }, prefix, 0];
            data.extend_from_slice(&addr[..len]);
            (prefix, data)
        });
        let mut m = query(&name, qtype);
        m.metadata.id = id;
        (m.metadata.recursion_desired, m.metadata.checking_disabled) = (rd, cd);
        if let Some((payload, nsid)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            if nsid {
                e.options_mut().insert(EdnsOption::Unknown(u16::from(EdnsCode::NSID), Vec::new()));
            }
            if let Some((_, data)) = &ecs {
                e.options_mut().insert(EdnsOption::Unknown(8, data.clone()));
            }
            m.edns = Some(e);
        }
        let packet = m.to_vec().unwrap();
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let out = ask(&r, &packet, transport).expect("a query always gets a response");
        let parsed = Message::from_vec(&out).expect("hickory-proto parses the response");
        prop_assert_eq!(parsed.metadata.id, id);
        prop_assert_eq!(parsed.metadata.message_type, MessageType::Response);
        prop_assert_eq!((parsed.metadata.recursion_desired, parsed.metadata.checking_disabled), (rd, cd));
        prop_assert_eq!(parsed.queries.len(), 1);
        let echoed = Message::from_vec(&packet).unwrap().queries[0].to_string();
        prop_assert_eq!(parsed.queries[0].to_string(), echoed);
        let qlen = question_bytes(&packet);
        prop_assert_eq!(&out[12..12 + qlen], &packet[12..12 + qlen], "the question is echoed byte for byte");
        prop_assert_eq!(parsed.edns.is_some(), edns.is_some());
        // ECS comes back with its source prefix, and a scope only where locality decided
        let echoed_ecs = parsed.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)).map(|o| match o {
            EdnsOption::Subnet(s) => (s.source_prefix(), s.scope_prefix()),
            _ => (255, 255),
        });
        match (edns.is_some(), &ecs, echoed_ecs) {
            (true, Some((prefix, _)), Some((source, scope))) => {
                prop_assert_eq!(source, *prefix);
                prop_assert!(local || scope == 0, "scope {} without [locality]", scope);
                prop_assert!(scope <= 128);
            }
            (true, Some(_), None) => prop_assert!(false, "ECS not echoed"),
            (_, _, got) => prop_assert!(got.is_none() || edns.is_none() || ecs.is_some()),
        }
        let limit = match (tcp, edns) {
            (true, _) => 65_535,
            (false, None) => 512,
            (false, Some((p, _))) => usize::from(p.clamp(512, 1232)),
        };
        prop_assert!(out.len() <= limit, "{} bytes over a limit of {}", out.len(), limit);
        let in_zone = name.to_ascii_lowercase().ends_with("db.internal.");
        prop_assert_eq!(parsed.metadata.authoritative, in_zone && parsed.metadata.response_code != hickory_proto::op::ResponseCode::Refused);
        for answer in &parsed.answers {
            prop_assert_eq!(answer.name.to_string(), name.clone(), "answers are owned by the name as asked");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_any_response_parses(packet in prop::collection::vec(any::<u8>(), 0..600), tcp in any::<bool>()) {
        let r = responder();
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        if let Some(out) = ask(&r, &packet, transport) {
            prop_assert!(out.len() >= 12);
            prop_assert_eq!(&out[..2], &packet[..2], "the ID is echoed");
            prop_assert!(Message::from_vec(&out).is_ok());
        }
    }
}

/// Length of the (single) question section of a message we built.
fn question_bytes(packet: &[u8]) -> usize {
    let mut i = 12;
    while packet[i] != 0 {
        i += 1 + usize::from(packet[i]);
    }
    i + 1 + 4 - 12
}

/// Every input the fuzz target ever crashed on (fuzz/regressions/dns/, byte 0 the
/// target's mode byte): each now gets a response that parses and fits the UDP size.
#[test]
fn fuzz_regressions_get_responses_that_parse_and_fit() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/dns");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let packet = &data[1..];
        for transport in [Transport::Udp, Transport::Tcp] {
            if let Some(out) = ask(&responder(), packet, transport) {
                let m = Message::from_vec(&out).expect("parses");
                let limit = if transport == Transport::Udp { 512.max(m.max_payload().into()) } else { 65_535 };
                assert!(out.len() <= limit, "{} bytes", out.len());
            }
        }
        seen += 1;
    }
    assert!(seen >= 2);
}

#[test]
fn questions_are_echoed_byte_for_byte_unless_a_pointer_leaves_their_section() {
    let name = |labels: &[&str]| {
        let mut b: Vec<u8> = labels.iter().flat_map(|l| [&[l.len() as u8][..], l.as_bytes()].concat()).collect();
        b.push(0);
        b
    };
    let tail = [0u8, 1, 0, 1];
    let plain = [name(&["write", "db", "internal"]), tail.to_vec()].concat();
    // a second question "read" + pointer to "db.internal" at offset 12 + 6
    let inner = [plain.clone(), vec![4], b"read".to_vec(), vec![0xC0, 18], tail.to_vec()].concat();
    // a pointer into the header (offset 2)
    let outer = [vec![4], b"read".to_vec(), vec![0xC0, 2], tail.to_vec()].concat();
    assert!(!has_pointer(&plain, 1));
    assert!(!has_pointer(&inner, 2));
    assert!(has_pointer(&outer, 1));
    assert!(has_pointer(&[plain.clone(), outer.clone()].concat(), 2));
}

/// A cluster across two locations, with networks nested so that the scope matters:
/// 10.1.0.0/16 is `a`, 10.1.2.0/24 inside it `b`; 127.0.2.0/24 (a source) is `b`.
const LOCAL: &str = r#"
[dns]
zone = "db.internal"
[[cluster]]
name = "main"
node = [
    { name = "pg1", address = "10.0.0.11", dsn = "host=a", location = "a" },
    { name = "pg2", address = "10.0.0.12", dsn = "host=b", location = "a" },
    { name = "pg3", address = "10.0.0.13", dsn = "host=c", location = "b" },
]
[locality]
[[locality.network]]
prefix = "10.1.0.0/16"
location = "a"
[[locality.network]]
prefix = "10.1.2.0/24"
location = "b"
[[locality.network]]
prefix = "127.0.2.0/24"
location = "b"
"#;

fn local_responder() -> Responder {
    let snap = SnapshotBuilder::new(LOCAL)
        .write("main", crate::snapshot::WriteTarget::Primary(0))
        .each_node("main", |i, n| {
            n.state = crate::health::NodeState::Up;
            n.role = if i == 0 { crate::topology::Role::Primary } else { crate::topology::Role::Replica };
            n.lag = (i > 0).then_some(std::time::Duration::ZERO);
            n.lag_bytes = (i > 0).then_some(0);
            n.timeline = Some(crate::wal::Timeline(1));
        })
        .build();
    Responder::new(Store::new(snap, Zone::derive), Arc::new(QueryStats::default()), Vec::new())
}

/// `name qtype` with an OPT carrying one ECS option made of `ecs` (family, source
/// prefix, scope, address bytes), raw so that malformed ones can be sent.
fn with_ecs(name: &str, qtype: RecordType, ecs: &[u8]) -> Vec<u8> {
    let mut m = query(name, qtype);
    m.edns = Some(Edns::new());
    let mut p = m.to_vec().unwrap();
    let n = p.len();
    p[n - 2..].copy_from_slice(&(4 + ecs.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 8]);
    p.extend_from_slice(&(ecs.len() as u16).to_be_bytes());
    p.extend_from_slice(ecs);
    p
}

/// The response's rcode, answer addresses and echoed ECS (source prefix, scope).
fn ecs_outcome(r: &Responder, packet: &[u8], from: &str) -> (u16, Vec<String>, Option<(u8, u8)>) {
    let mut out = Vec::new();
    assert_eq!(r.respond(&Ask::new(packet, from.parse().unwrap(), Transport::Udp, 0), &mut out), Reply::Send);
    let m = Message::from_vec(&out).unwrap();
    let addrs = m.answers.iter().map(|rr| rr.data.to_string()).collect();
    let ecs = m.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)).map(|o| match o {
        EdnsOption::Subnet(s) => (s.source_prefix(), s.scope_prefix()),
        other => panic!("{other:?}"),
    });
    (u16::from(m.metadata.response_code), addrs, ecs)
}

#[test]
fn ecs_places_the_client_and_comes_back_with_its_scope() {
    let r = local_responder();
    let read = |ecs: &[u8]| with_ecs("read.db.internal.", RecordType::A, ecs);
    let s = |list: &[&str]| list.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    type Row = (&'static str, Vec<u8>, &'static str, (u16, Vec<String>, Option<(u8, u8)>));
    let rows: Vec<Row> = vec![
        // 10.1.5.0/24 is in `a`; 10.1.2.0/24 (b) differs from it in the 22nd bit
        ("ecs in a", read(&[0, 1, 24, 0, 10, 1, 5]), "127.0.0.1", (0, s(&["10.0.0.12"]), Some((24, 22)))),
        ("ecs in b", read(&[0, 1, 24, 0, 10, 1, 2]), "127.0.0.1", (0, s(&["10.0.0.13"]), Some((24, 24)))),
        // the ECS subnet wins over the source address
        ("ecs over source", read(&[0, 1, 24, 0, 10, 1, 5]), "127.0.2.1", (0, s(&["10.0.0.12"]), Some((24, 22)))),
        // a /0 subnet: the source places the client, the scope is 0
        ("ecs /0", read(&[0, 1, 0, 0]), "127.0.2.1", (0, s(&["10.0.0.13"]), Some((0, 0)))),
        // names that do not depend on the location: scope 0
        (
            "write",
            with_ecs("write.db.internal.", RecordType::A, &[0, 1, 24, 0, 10, 1, 2]),
            "127.0.0.1",
            (0, s(&["10.0.0.11"]), Some((24, 0))),
        ),
        (
            "node name",
            with_ecs("pg3.main.db.internal.", RecordType::A, &[0, 1, 24, 0, 10, 1, 5]),
            "127.0.0.1",
            (0, s(&["10.0.0.13"]), Some((24, 0))),
        ),
        (
            "nxdomain",
            with_ecs("nosuch.db.internal.", RecordType::A, &[0, 1, 24, 0, 10, 1, 5]),
            "127.0.0.1",
            (3, s(&[]), Some((24, 0))),
        ),
        (
            "soa",
            with_ecs("db.internal.", RecordType::SOA, &[0, 1, 24, 0, 10, 1, 5]),
            "127.0.0.1",
            (0, s(&["SOA"]), Some((24, 0))),
        ),
        // malformed (RFC 7871 §7.1.2): FORMERR, and no ECS back
        ("bad family", read(&[0, 3, 24, 0, 10, 1, 5]), "127.0.0.1", (1, s(&[]), None)),
        ("prefix too long", read(&[0, 1, 33, 0, 10, 1, 5, 0, 0]), "127.0.0.1", (1, s(&[]), None)),
        ("bits past the prefix", read(&[0, 1, 20, 0, 10, 1, 5]), "127.0.0.1", (1, s(&[]), None)),
        ("address too long", read(&[0, 1, 16, 0, 10, 1, 5]), "127.0.0.1", (1, s(&[]), None)),
    ];
    for (what, packet, from, want) in rows {
        let mut got = ecs_outcome(&r, &packet, from);
        if what == "soa" {
            got.1 = got.1.iter().map(|_| "SOA".to_string()).collect(); // its serial is the clock's
        }
        assert_eq!(got, want, "{what}");
    }
    // no network matched: unknown, every replica by weight; the scope is the subnet's
    let got = ecs_outcome(&r, &read(&[0, 1, 16, 0, 10, 9]), "127.0.0.1");
    assert_eq!((got.0, got.2), (0, Some((16, 16))));
    assert!(["10.0.0.12", "10.0.0.13"].contains(&got.1[0].as_str()), "{got:?}");
    // without [locality] the option is echoed with scope 0
    let plain = ecs_outcome(&responder(), &read(&[0, 1, 24, 0, 10, 1, 5]), "127.0.0.1");
    assert_eq!(plain.2, Some((24, 0)));
}

#[test]
fn malformed_ecs_gets_formerr_with_the_question_and_an_opt() {
    // hickory-proto's decoder refuses the first four itself, lagdns's checks the others:
    // every one is answered alike, FORMERR with the question and an OPT (RFC 6891
    // §6.1.1: a bare FORMERR tells a resolver that the server has no EDNS), no ECS
    let rows: [(&str, &[u8]); 6] = [
        ("bad family", &[0, 3, 24, 0, 10, 1, 5]),
        ("prefix too long", &[0, 1, 33, 0, 10, 1, 5, 0, 0]),
        ("address too short", &[0, 1, 24, 0, 10, 1]),
        ("option too short", &[0, 1, 24]),
        ("bits past the prefix", &[0, 1, 20, 0, 10, 1, 5]),
        ("address too long", &[0, 1, 16, 0, 10, 1, 5]),
    ];
    let r = local_responder();
    for (what, ecs) in rows {
        for version in [0u8, 1] {
            let mut packet = with_ecs("Read.db.internal.", RecordType::A, ecs);
            let opt_ttl = packet.len() - ecs.len() - 4 - 2 - 4; // ext rcode, version, flags
            packet[opt_ttl + 1] = version;
            let mut out = Vec::new();
            assert_eq!(
                r.respond(&Ask::new(&packet, "127.0.0.1".parse().unwrap(), Transport::Udp, 0), &mut out),
                Reply::Send
            );
            let m = Message::from_vec(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
            // a version above 0 is answered first, as for a well-formed option
            let want = if version == 0 { 1 } else { 16 }; // FORMERR, BADVERS
            assert_eq!(u16::from(m.metadata.response_code), want, "{what} (version {version})");
            let question: Vec<String> = m.queries.iter().map(|q| q.name().to_ascii()).collect();
            assert_eq!(question, ["Read.db.internal."], "{what}: the question echoed");
            let edns = m.edns.as_ref().unwrap_or_else(|| panic!("{what}: no OPT in the response"));
            assert_eq!((edns.version(), edns.max_payload()), (0, 512), "{what}");
            assert!(edns.option(EdnsCode::Subnet).is_none(), "{what}: a malformed option is not echoed");
        }
    }
}
