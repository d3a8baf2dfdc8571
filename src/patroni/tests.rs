//! Table tests of Patroni discovery: the documents a real Patroni 3.0 served
//! (`tests/fixtures/patroni/`, captured by `tests/it/patroni.rs`), the lenient reading of
//! fields other versions send, members that cannot be nodes, and the membership fold.

use super::*;

const ALL_RUNNING: &str = include_str!("../../tests/fixtures/patroni/all_running.json");
const TAGS: &str = include_str!("../../tests/fixtures/patroni/tags_noloadbalance.json");
const LAGGING: &str = include_str!("../../tests/fixtures/patroni/replica_lagging.json");
const PAUSED: &str = include_str!("../../tests/fixtures/patroni/paused.json");
const SWITCHED: &str = include_str!("../../tests/fixtures/patroni/after_switchover.json");
const STOPPED: &str = include_str!("../../tests/fixtures/patroni/member_stopped.json");
const GONE: &str = include_str!("../../tests/fixtures/patroni/member_gone.json");

fn doc(text: &str) -> ClusterDoc {
    parse_cluster(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn nodes(text: &str) -> Vec<DiscoveredNode> {
    let found = discover(&doc(text), &DsnTemplate::default());
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    found.nodes
}

/// `name role state lag` per member, as Patroni spells them (`-` for no lag).
fn rows(d: &ClusterDoc) -> Vec<String> {
    d.members
        .iter()
        .map(|m| {
            let lag = m.lag.map_or("-".to_string(), |l| l.to_string());
            format!("{} {} {} {lag}", m.name, m.role, m.state)
        })
        .collect()
}

#[test]
fn fixtures_read_as_patroni_served_them() {
    let cases: [(&str, &str, &[&str], bool); 7] = [
        (
            "all_running",
            ALL_RUNNING,
            &["pg1 leader running -", "pg2 replica running 0", "pg3 replica running 0"],
            false,
        ),
        ("tags", TAGS, &["pg1 leader running -", "pg2 replica running 0", "pg3 replica running 0"], false),
        ("paused", PAUSED, &["pg1 leader running -", "pg2 replica running 0", "pg3 replica running 0"], true),
        ("switched", SWITCHED, &["pg1 replica running 0", "pg2 leader running -", "pg3 replica running 0"], false),
        ("stopped", STOPPED, &["pg1 replica running 0", "pg2 leader running -", "pg3 replica stopped unknown"], false),
        ("gone", GONE, &["pg1 replica running 0", "pg2 leader running -"], false),
        ("lagging", LAGGING, &["pg1 leader running -", "pg2 replica running 0", "pg3 replica running LAG"], false),
    ];
    for (name, text, want, paused) in cases {
        let d = doc(text);
        let mut got = rows(&d);
        if name == "lagging" {
            let lag = d.members[2].lag;
            assert!(matches!(lag, Some(PatroniLag::Bytes(n)) if n > 1 << 20), "{name}: pg3 is MBs behind: {lag:?}");
            got[2] = "pg3 replica running LAG".into();
        }
        assert_eq!(got, want, "{name}");
        assert_eq!(d.pause, paused, "{name}");
        for m in &d.members {
            let host = m.host.as_deref().expect("every member has a host");
            assert!(host.starts_with("127.78."), "{name}: a localpg Patroni address: {host}");
            assert_eq!(m.port, Some(54321), "{name}");
            assert_eq!(m.api_url.as_deref(), Some(format!("http://{host}:8008/patroni").as_str()), "{name}");
        }
    }
}

#[test]
fn timelines_and_tags_from_the_fixtures() {
    let timelines = |text| doc(text).members.iter().map(|m| m.timeline).collect::<Vec<_>>();
    assert_eq!(timelines(ALL_RUNNING), [Some(1), Some(1), Some(1)]);
    assert_eq!(timelines(SWITCHED), [Some(2), Some(2), Some(2)], "the switchover made timeline 2");
    assert_eq!(timelines(STOPPED), [Some(2), Some(2), None], "a stopped member reports none");

    let tags = doc(TAGS);
    let pg3 = &tags.members[2].tags;
    assert!(pg3.is_true("noloadbalance") && pg3.is_true("nofailover") && !pg3.is_true("nosync"));
    assert!(tags.members[..2].iter().all(|m| m.tags == Tags::default()), "no tags key without a true tag");
}

#[test]
fn members_become_nodes_with_dsn_and_weight() {
    let d = doc(ALL_RUNNING);
    let found = nodes(ALL_RUNNING);
    assert_eq!(found.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["pg1", "pg2", "pg3"]);
    for (node, member) in found.iter().zip(&d.members) {
        let host = member.host.clone().unwrap();
        assert_eq!((&node.host, node.port, node.weight), (&host, 54321, 100));
        assert_eq!(node.dsn.to_string(), format!("host={host} port=54321 user=lagdns dbname=postgres"));
        assert_eq!(node.patroni.timeline, Some(1));
    }
    assert_eq!(found[0].patroni.role, PatroniRole::Leader);
    assert!(found[0].patroni.role.is_leader() && found[0].patroni.lag.is_none());
    assert_eq!(found[1].patroni.lag, Some(PatroniLag::Bytes(0)));

    let weights = |text| nodes(text).iter().map(|n| (n.name.clone(), n.weight)).collect::<Vec<_>>();
    let w = |a: u32, b: u32, c: u32| vec![("pg1".into(), a), ("pg2".into(), b), ("pg3".into(), c)];
    assert_eq!(weights(TAGS), w(100, 100, 0), "noloadbalance drains pg3");
    assert_eq!(weights(STOPPED), w(100, 100, 100), "a stopped member is still a node: its probes find it down");

    let custom: DsnTemplate = "postgres://monitor@{host}:{port}/postgres?sslmode=require".parse().unwrap();
    let found = discover(&d, &custom);
    let host = d.members[1].host.as_deref().unwrap();
    assert_eq!(
        found.nodes[1].dsn.to_string(),
        format!("host={host} port=54321 user=monitor dbname=postgres sslmode=require")
    );
}

#[test]
fn unknown_values_are_kept_not_refused() {
    let text = r#"{"members": [
        {"name": "a", "role": "quorum_standby", "state": "streaming", "host": "10.0.0.1", "port": 5432, "lag": 7, "receive_lag": 1, "lsn": "0/1"},
        {"name": "b", "role": "replica", "state": "creating replica", "host": "10.0.0.2", "lag": "unknown"},
        {"name": "c", "role": "witness", "state": "in archive recovery", "host": "10.0.0.3", "lag": -1},
        {"name": "d", "host": "10.0.0.4", "lag": 1.5, "tags": {"noloadbalance": "yes", "zone": "eu"}},
        {"name": "e", "role": "standby_leader", "state": "running", "host": "10.0.0.5", "lag": null}
    ], "scheduled_switchover": {"at": "2030-01-01T00:00:00+00:00"}, "failsafe": {}}"#;
    let d = doc(text);
    let got: Vec<(String, String, Option<PatroniLag>)> =
        d.members.iter().map(|m| (m.role.to_string(), m.state.to_string(), m.lag)).collect();
    let want = [
        ("quorum_standby", "streaming", Some(PatroniLag::Bytes(7))),
        ("replica", "creating replica", Some(PatroniLag::Unknown)),
        ("witness", "in archive recovery", Some(PatroniLag::Unknown)),
        ("", "", Some(PatroniLag::Unknown)),
        ("standby_leader", "running", None),
    ];
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str(), g.2), w);
    }
    assert_eq!(d.members[2].role, PatroniRole::Other("witness".into()));
    assert_eq!(d.members[1].state, PatroniState::Other("creating replica".into()));
    assert!(d.members[0].state.is_running() && d.members[2].state.is_running() && !d.members[1].state.is_running());
    assert!(d.members[4].role.is_leader());
    assert_eq!(d.members[0].port, Some(5432));
    assert_eq!(d.members[1].port, None);
    let found = discover(&d, &DsnTemplate::default());
    assert_eq!(found.nodes[1].port, 5432, "no port listed: PostgreSQL's");
    assert_eq!(found.nodes[3].weight, 0, "\"yes\" is true, as Patroni reads it");
}

#[test]
fn tag_truth_table() {
    let cases = [
        (r#"true"#, true),
        (r#"false"#, false),
        (r#""true""#, true),
        (r#""On""#, true),
        (r#""yes""#, true),
        (r#""1""#, true),
        (r#""false""#, false),
        (r#""off""#, false),
        (r#""""#, false),
        (r#"1"#, true),
        (r#"0"#, false),
        (r#"null"#, false),
        (r#"{}"#, false),
    ];
    for (value, want) in cases {
        let tags: Tags = serde_json::from_str(&format!(r#"{{"noloadbalance": {value}}}"#)).unwrap();
        assert_eq!(tags.is_true("noloadbalance"), want, "noloadbalance: {value}");
        assert!(!tags.is_true("nofailover"), "an absent tag is false");
    }
}

#[test]
fn members_that_cannot_be_nodes_are_skipped_with_the_reason() {
    let text = r#"{"members": [
        {"name": "pg1", "role": "leader", "state": "running", "host": "10.0.0.1", "port": 5432},
        {"name": "pg_2", "role": "replica", "state": "running", "host": "10.0.0.2", "port": 5432},
        {"name": "pg3", "role": "replica", "state": "stopped"},
        {"name": "pg4", "role": "replica", "state": "running", "host": "", "port": 5432},
        {"name": "pg5", "role": "replica", "state": "running", "host": "10.0.0.5 sslmode=disable", "port": 5432},
        {"name": "PG1", "role": "replica", "state": "running", "host": "10.0.0.6", "port": 5432},
        {"name": "pg7", "role": "replica", "state": "running", "host": "pg7.db.internal", "port": 5433}
    ]}"#;
    let found = discover(&doc(text), &DsnTemplate::default());
    assert_eq!(found.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["pg1", "pg7"]);
    assert_eq!(found.nodes[1].dsn.to_string(), "host=pg7.db.internal port=5433 user=lagdns dbname=postgres");
    let skipped: Vec<(&str, String)> = found.skipped.iter().map(|s| (s.name.as_str(), s.reason.to_string())).collect();
    let want = [
        ("pg_2", "its name is not a DNS label (letters, digits and inner hyphens, at most 63 characters)"),
        ("pg3", "Patroni lists no host for it"),
        ("pg4", "Patroni lists no host for it"),
        ("pg5", "node_dsn: member host \"10.0.0.5 sslmode=disable\" is not an IP address or a host name"),
        ("PG1", "another member has the same name (names are compared case-insensitively)"),
    ];
    assert_eq!(skipped, want.map(|(n, r)| (n, r.to_string())));
}

#[test]
fn documents_that_are_not_listings_are_refused() {
    let cases = [
        ("", "EOF while parsing a value at line 1 column 0"),
        ("<html>502 Bad Gateway</html>", "expected value at line 1 column 1"),
        (r#"{"state": "running", "role": "replica"}"#, "missing field `members` at line 1 column 39"),
        (r#"{"members": [{"role": "leader"}]}"#, "missing field `name` at line 1 column 31"),
        (r#"{"members": {}}"#, "invalid type: map, expected a sequence at line 1 column 12"),
    ];
    for (body, want) in cases {
        let err = parse_cluster(body.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), format!("not a Patroni /cluster document: {want}"), "{body:?}");
    }
}

// --- the membership fold ---

/// `name:missed` per member, then the failure count.
fn state(m: &Membership) -> (Vec<String>, u32) {
    (m.members.iter().map(|t| format!("{}:{}", t.node.name, t.missed)).collect(), m.failed_rounds)
}

fn listed(text: &str) -> Round {
    Round::Listed(nodes(text))
}

fn failed() -> Round {
    Round::Failed("no Patroni member answered".into())
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn membership_fold_over_the_fixtures() {
    // (round, members with their misses, failed rounds, added, removed, changed)
    type Step = (
        Round,
        &'static [&'static str],
        u32,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );
    let steps: Vec<Step> = vec![
        (listed(ALL_RUNNING), &["pg1:0", "pg2:0", "pg3:0"], 0, &["pg1", "pg2", "pg3"], &[], &[]),
        (listed(SWITCHED), &["pg1:0", "pg2:0", "pg3:0"], 0, &[], &[], &[]),
        (listed(TAGS), &["pg1:0", "pg2:0", "pg3:0"], 0, &[], &[], &["pg3"]),
        (listed(STOPPED), &["pg1:0", "pg2:0", "pg3:0"], 0, &[], &[], &["pg3"]),
        (listed(GONE), &["pg1:0", "pg2:0", "pg3:1"], 0, &[], &[], &[]),
        (failed(), &["pg1:0", "pg2:0", "pg3:1"], 1, &[], &[], &[]),
        (failed(), &["pg1:0", "pg2:0", "pg3:1"], 2, &[], &[], &[]),
        (listed(GONE), &["pg1:0", "pg2:0", "pg3:2"], 0, &[], &[], &[]),
        (listed(GONE), &["pg1:0", "pg2:0"], 0, &[], &["pg3"], &[]),
        (listed(GONE), &["pg1:0", "pg2:0"], 0, &[], &[], &[]),
        (listed(ALL_RUNNING), &["pg1:0", "pg2:0", "pg3:0"], 0, &["pg3"], &[], &[]),
    ];
    let mut m = Membership::default();
    for (i, (round, members, failures, added, removed, changed)) in steps.into_iter().enumerate() {
        let (next, changes) = m.next(round);
        assert_eq!(state(&next), (names(members), failures), "step {i}");
        assert_eq!(
            changes,
            Changes { added: names(added), removed: names(removed), changed: names(changed) },
            "step {i}"
        );
        assert_eq!(next.last_error.is_some(), failures > 0, "step {i}");
        m = next;
    }
}

#[test]
fn a_failed_round_keeps_the_list_as_it_was() {
    let (m, _) = Membership::default().next(listed(GONE));
    let (m, _) = m.next(listed(GONE));
    let (after, changes) = m.next(Round::Failed("GET http://10.0.0.11:8008/cluster: connection refused".into()));
    assert_eq!(after.members, m.members, "same nodes, same data");
    assert!(changes.is_empty());
    assert_eq!(after.failed_rounds, 1);
    assert_eq!(after.last_error.as_deref(), Some("GET http://10.0.0.11:8008/cluster: connection refused"));
    let (after, _) = after.next(listed(GONE));
    assert_eq!((after.failed_rounds, after.last_error), (0, None), "a listing clears the failure");
}

#[test]
fn a_missing_member_keeps_its_last_known_node_until_removed() {
    let (m, _) = Membership::default().next(listed(TAGS));
    let (m, _) = m.next(listed(GONE));
    let pg3 = m.members.iter().find(|t| t.node.name == "pg3").unwrap();
    assert_eq!((pg3.missed, pg3.node.weight), (1, 0), "as last listed: drained");
    assert_eq!(m.nodes().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["pg1", "pg2", "pg3"]);
}

#[test]
fn rounds_to_removal_follow_the_constant() {
    let (mut m, _) = Membership::default().next(listed(ALL_RUNNING));
    for round in 1..=MISSES_BEFORE_REMOVAL {
        let (next, changes) = m.next(listed(GONE));
        let removed = round == MISSES_BEFORE_REMOVAL;
        assert_eq!(changes.removed == ["pg3"], removed, "round {round}");
        assert_eq!(next.members.len(), if removed { 2 } else { 3 }, "round {round}");
        m = next;
    }
}
