//! Table tests of the load-balancer checks: every node state, for `write`, `read` and an
//! endpoint, over HTTP's verdict and the agent's reply.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::snapshot::Snapshot;
use crate::testkit::SnapshotBuilder;
use crate::topology::{Conflict, ConflictKind, Role};

const CONFIG: &str = r#"
[[cluster]]
name = "main"
max_lag = "100ms"

node = [
    { name = "pg1", address = "10.0.0.1", dsn = "host=a" },
    { name = "pg2", address = "10.0.0.2", dsn = "host=a" },
    { name = "pg3", address = "10.0.0.3", dsn = "host=a" },
    { name = "pg4", address = "10.0.0.4", dsn = "host=a", weight = 0 },
    { name = "pg5", address = "10.0.0.5", dsn = "host=a" },
    { name = "pg6", address = "10.0.0.6", dsn = "host=a" },
    { name = "pg7", address = "10.0.0.7", dsn = "host=a", weight = 30 },
]

[[cluster.endpoint]]
name = "analytics"
nodes = ["pg3", "pg7"]
max_lag = "5m"

[[cluster]]
name = "billing"
read = "billing-read"
write = "billing-write"
node = [{ name = "b1", address = "10.1.0.1", dsn = "host=a" }]
"#;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// pg1 the up primary; pg2 an eligible replica; pg3 lagging 2.5 s (eligible for
/// analytics); pg4 caught up with weight 0; pg5 down; pg6 not probed yet; pg7 an
/// eligible replica 50 ms behind with weight 30. billing: b1 never probed.
fn snapshot() -> Snapshot {
    SnapshotBuilder::new(CONFIG)
        .built(UNIX_EPOCH + Duration::from_secs(1000))
        .write("main", WriteTarget::Primary(0))
        .each_node("main", |_, n| {
            (n.state, n.role, n.lag, n.lag_bytes) = (NodeState::Up, Role::Replica, Some(ms(0)), Some(0))
        })
        .node("main", "pg1", |n| (n.role, n.lag, n.lag_bytes) = (Role::Primary, None, None))
        .node("main", "pg3", |n| (n.lag, n.lag_bytes) = (Some(ms(2500)), Some(4096)))
        .node("main", "pg5", |n| n.state = NodeState::Down)
        .node("main", "pg6", |n| {
            (n.state, n.role, n.lag, n.lag_bytes) = (NodeState::Unknown, Role::Unknown, None, None)
        })
        .node("main", "pg7", |n| n.lag = Some(ms(50)))
        .build()
}

fn subject(snap: &Snapshot, path: &str) -> Subject {
    let mut p = path.split('/');
    let (c, n, node) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
    Subject::find(&snap.config, c, n, node).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// HTTP's answer (200 = true) and the agent's, for one check.
fn both(snap: &Snapshot, path: &str) -> (bool, String) {
    let s = subject(snap, path);
    let http = judge(snap, s, None).expect("ready").answered();
    (http, agent_reply(snap, s).expect("ready").to_string())
}

#[test]
fn every_node_state_for_write_read_and_an_endpoint() {
    let snap = snapshot();
    let (up, no) = (true, false);
    let cases: &[(&str, &str, (bool, &str))] = &[
        ("up primary, write", "main/write/pg1", (up, "up ready 100%")),
        ("up primary, read", "main/read/pg1", (no, "drain")),
        ("eligible replica, write", "main/write/pg2", (no, "down")),
        ("eligible replica, read", "main/read/pg2", (up, "up ready 100%")),
        ("lagging replica, read", "main/read/pg3", (no, "drain")),
        ("lagging replica, endpoint with a looser bound", "main/analytics/pg3", (up, "up ready 100%")),
        ("weight 0", "main/read/pg4", (no, "drain")),
        ("down", "main/read/pg5", (no, "down")),
        ("down, write", "main/write/pg5", (no, "down")),
        ("not probed yet", "main/read/pg6", (no, "down")),
        ("not a member of the endpoint", "main/analytics/pg2", (no, "drain")),
        ("weight 30 of the read name's highest 100", "main/read/pg7", (up, "up ready 30%")),
        ("weight 30 of the endpoint's highest 100", "main/analytics/pg7", (up, "up ready 30%")),
        ("names match case-insensitively", "MAIN/Read/PG2", (up, "up ready 100%")),
        ("another cluster, never probed", "billing/billing-write/b1", (no, "down")),
        ("another cluster's read name", "billing/billing-read/b1", (no, "down")),
    ];
    for (what, path, want) in cases {
        let (http, agent) = both(&snap, path);
        assert_eq!((http, agent.as_str()), *want, "{what} ({path})");
    }
}

#[test]
fn write_when_stale_in_split_brain_or_unknown() {
    let mut snap = snapshot();
    // no primary reachable: write answers pg1, stale. HTTP says no (not current), the
    // agent keeps it up (fail open, as DNS does).
    snap.cluster_mut(0).write = WriteTarget::Stale { node: 0, since: UNIX_EPOCH };
    snap.cluster_mut(0).nodes[0].state = NodeState::Down;
    assert_eq!(both(&snap, "main/write/pg1"), (false, "up ready 100%".into()), "stale primary");
    assert_eq!(both(&snap, "main/write/pg2"), (false, "down".into()));
    // an unsettled split brain: write fails closed, for both claimants
    let conflict = Conflict { nodes: vec![0, 1], why: ConflictKind::SameTimeline };
    snap.cluster_mut(0).write = WriteTarget::Conflict(conflict);
    for path in ["main/write/pg1", "main/write/pg2"] {
        assert_eq!(both(&snap, path), (false, "down".into()), "split brain: {path}");
    }
    snap.cluster_mut(0).write = WriteTarget::Unknown;
    assert_eq!(both(&snap, "main/write/pg1"), (false, "down".into()), "no primary ever seen");
    // a rival that lost the election to a newer timeline: not the primary
    snap.cluster_mut(0).write = WriteTarget::Primary(1);
    snap.cluster_mut(0).rivals = vec![0];
    assert_eq!(both(&snap, "main/write/pg1"), (false, "down".into()), "rival");
    assert_eq!(both(&snap, "main/write/pg2"), (true, "up ready 100%".into()), "the winner");
}

#[test]
fn max_lag_overrides_the_bound_both_ways_and_is_capped() {
    let snap = snapshot();
    let http = |path: &str, max_lag: Option<u64>| judge(&snap, subject(&snap, path), max_lag.map(ms)).unwrap();
    let lag = |lag, max| Verdict::Read(Eligibility::Ineligible(Reason::Lag { lag: ms(lag), max: ms(max) }));
    // looser: pg3 (2.5 s behind) qualifies under 5 s
    assert_eq!(http("main/read/pg3", None), lag(2500, 100));
    assert_eq!(http("main/read/pg3", Some(5000)), Verdict::Read(Eligibility::Eligible));
    // tighter: pg7 (50 ms behind) does not under 10 ms, and the reason names the bound
    assert_eq!(http("main/read/pg7", None), Verdict::Read(Eligibility::Eligible));
    assert_eq!(http("main/read/pg7", Some(10)), lag(50, 10));
    // the other reasons are not lag's to override
    for path in ["main/read/pg1", "main/read/pg4", "main/read/pg5", "main/read/pg6", "main/analytics/pg2"] {
        assert!(!http(path, Some(3_600_000)).answered(), "{path}");
    }
    // capped at what lag is measured up to: the longest max_lag (5m) plus a minute
    let mut far = snapshot();
    far.cluster_mut(0).nodes[2].lag = Some(Duration::from_secs(400));
    let s = subject(&far, "main/read/pg3");
    assert_eq!(judge(&far, s, Some(Duration::from_secs(3600))), Some(lag(400_000, 360_000)));
    assert_eq!(judge(&far, s, Some(Duration::from_secs(300))), Some(lag(400_000, 300_000)));
}

#[test]
fn a_rising_replica_waits_for_rise_unless_the_check_brings_its_own_bound() {
    let mut snap = snapshot();
    // within bounds again, but `rise` good probes are not in yet
    snap.cluster_mut(0).endpoints[0].verdicts[1] = Eligibility::Ineligible(Reason::Rising { seen: 1, need: 2 });
    snap.cluster_mut(0).endpoints[0].eligible.retain(|&i| i != 1);
    assert_eq!(both(&snap, "main/read/pg2"), (false, "drain".into()));
    // a per-request bound has no history, as maxlag- names do not
    let s = subject(&snap, "main/read/pg2");
    assert_eq!(judge(&snap, s, Some(ms(100))), Some(Verdict::Read(Eligibility::Eligible)));
}

#[test]
fn nothing_is_decided_before_the_first_probe_round() {
    let mut snap = snapshot();
    snap.ready = false;
    for path in ["main/write/pg1", "main/read/pg2", "main/analytics/pg3"] {
        let s = subject(&snap, path);
        assert_eq!((judge(&snap, s, None), agent_reply(&snap, s)), (None, None), "{path}");
    }
}

#[test]
fn unknown_names_say_what_is_missing() {
    let snap = snapshot();
    let find = |c, n, node| Subject::find(&snap.config, c, n, node).map_err(|e| e.to_string());
    assert_eq!(find("main", "write", "pg1"), Ok(Subject { cluster: 0, name: CheckName::Write, node: 0 }));
    assert_eq!(find("main", "analytics", "pg7"), Ok(Subject { cluster: 0, name: CheckName::Read(1), node: 6 }));
    assert_eq!(find("billing", "billing-read", "b1"), Ok(Subject { cluster: 1, name: CheckName::Read(0), node: 0 }));
    assert_eq!(find("other", "read", "pg1"), Err("no cluster \"other\"".into()));
    let no_name = "cluster main has no name \"billing-read\" (its write name, its read name or an endpoint)";
    assert_eq!(find("main", "billing-read", "pg1"), Err(no_name.into()));
    assert!(find("main", "maxlag-5s.read", "pg1").is_err(), "a DNS name is not a check name");
    assert_eq!(find("main", "read", "b1"), Err("cluster main has no node \"b1\"".into()));
}

/// (query string, the name it is for, the bound or the start of the error).
type QueryCase<'a> = (Option<&'a str>, CheckName, Result<Option<Duration>, &'a str>);

#[test]
fn query_strings() {
    use CheckName::{Read, Write};
    let cases: &[QueryCase] = &[
        (None, Read(0), Ok(None)),
        (Some(""), Read(0), Ok(None)),
        (Some("max_lag=500ms"), Read(0), Ok(Some(ms(500)))),
        (Some("max_lag=2s"), Read(1), Ok(Some(ms(2000)))),
        (Some("max_lag=0ms"), Read(0), Ok(Some(ms(0)))),
        (Some("max_lag=1.5s&"), Read(0), Ok(Some(ms(1500)))),
        (Some("max_lag=500"), Read(0), Err("max_lag: \"500\" has no unit: use ms, s, m or h, like \"250ms\"")),
        (Some("max_lag="), Read(0), Err("max_lag: ")),
        (Some("max_lag"), Read(0), Err("max_lag: ")),
        (Some("max_lag=1s&max_lag=2s"), Read(0), Err("max_lag is given twice")),
        (Some("maxlag=1s"), Read(0), Err("unknown parameter \"maxlag\" (the only one is max_lag)")),
        (Some("max_lag=1s"), Write, Err("max_lag applies to read names, not to the write name")),
        (None, Write, Ok(None)),
    ];
    for (query, name, want) in cases {
        let got = parse_query(*query, *name).map_err(|e| e.to_string());
        match (want, &got) {
            (Err(prefix), Err(msg)) => assert!(msg.starts_with(prefix), "{query:?}: {msg}"),
            _ => assert_eq!(got, want.map_err(String::from), "{query:?}"),
        }
    }
}

type Parts<'a> = Option<(&'a str, &'a str, &'a str)>;

#[test]
fn agent_lines() {
    let cases: &[(&[u8], Parts)] = &[
        (b"main/read/pg2\n", Some(("main", "read", "pg2"))),
        (b"main/read/pg2\r\n", Some(("main", "read", "pg2"))),
        (b"  main/write/pg1 \t\r\n", Some(("main", "write", "pg1"))),
        (b"main/analytics/pg3", Some(("main", "analytics", "pg3"))),
        (b"", None),
        (b"\n", None),
        (b"main/read\n", None),
        (b"main/read/pg2/x\n", None),
        (b"main//pg2\n", None),
        (b"/read/pg2\n", None),
        (b"main/read/\n", None),
        (b"main/read/pg 2\n", None),
        (b"main/read/pg2\nmain/read/pg3\n", None),
        (b"main/read/\xffpg2\n", None),
        (b"GET / HTTP/1.1\r\n", None),
    ];
    for (line, want) in cases {
        assert_eq!(parse_agent_line(line), *want, "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn weight_percentages_round_and_stay_between_1_and_100() {
    let mut snap = snapshot();
    let w = |snap: &Snapshot, node: usize| weight_percent(&snap.clusters[0], 0, node);
    assert_eq!((w(&snap, 1), w(&snap, 6)), (100, 30));
    // the highest weight counts whatever that node's state (pg5 is down)
    snap.cluster_mut(0).nodes[4].weight = 300;
    assert_eq!((w(&snap, 1), w(&snap, 6)), (33, 10));
    snap.cluster_mut(0).nodes[4].weight = u32::MAX;
    assert_eq!((w(&snap, 1), w(&snap, 6)), (1, 1), "at least 1");
    // only the endpoint's members count: analytics is pg3 and pg7
    assert_eq!(weight_percent(&snap.clusters[0], 1, 6), 30);
    snap.cluster_mut(0).nodes[2].weight = 200;
    assert_eq!(weight_percent(&snap.clusters[0], 1, 6), 15);
    assert_eq!(weight_percent(&snap.clusters[0], 1, 2), 100);
}

#[test]
fn agent_replies_are_haproxy_words() {
    assert_eq!(AgentReply::Up { percent: 7 }.to_string(), "up ready 7%");
    assert_eq!(AgentReply::Drain.to_string(), "drain");
    assert_eq!(AgentReply::Down.to_string(), "down");
    let kinds = [AgentReply::Up { percent: 1 }, AgentReply::Drain, AgentReply::Down].map(AgentReply::kind);
    assert_eq!(kinds, AgentReply::KINDS);
}
