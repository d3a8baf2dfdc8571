//! A fabricated snapshot for unit tests of the HTTP and metrics renderings: one
//! cluster with a primary, an eligible replica, a lagging one and a down one, plus a
//! second read endpoint.

use std::time::{Duration, UNIX_EPOCH};

use crate::health::NodeState;
use crate::snapshot::{Snapshot, WriteTarget};
use crate::testkit::SnapshotBuilder;
use crate::topology::Role;
use crate::wal::{Lsn, Timeline};

pub const BUILT_SECS: u64 = 1_714_564_800;

const CONFIG: &str = r#"
[dns]
listen = ["127.0.0.1:0"]
zone = "db.internal"
ttl = "1s"
negative_ttl = "1s"

[http]
listen = "127.0.0.1:0"

[[cluster]]
name = "main"
max_lag = "100ms"
max_lag_bytes = "16MiB"
answers = 1
fallback = "primary"

node = [
    { name = "pg1", address = "10.0.0.11", dsn = "host=10.0.0.11 user=lagdns password=hunter2" },
    { name = "pg2", address = "10.0.0.12", dsn = "host=10.0.0.12 user=lagdns password=hunter2" },
    { name = "pg3", address = "10.0.0.13", dsn = "host=10.0.0.13 user=lagdns password=hunter2" },
    { name = "pg4", address = "10.0.0.14", dsn = "host=10.0.0.14 user=lagdns password=hunter2" },
]

[[cluster.endpoint]]
name = "analytics"
nodes = ["pg3"]
max_lag = "5m"
fallback = "none"
"#;

/// pg1 primary, pg2 eligible replica, pg3 lagging 2.5s (eligible for analytics), pg4
/// down.
pub fn snapshot() -> Snapshot {
    let built = UNIX_EPOCH + Duration::from_secs(BUILT_SECS);
    SnapshotBuilder::new(CONFIG)
        .serial(7)
        .built(built)
        .answer_changes(3)
        .cluster("main", |c| {
            (c.write, c.primary_lsn, c.split_brain_events) = (WriteTarget::Primary(0), Some(Lsn(0x3000)), 1)
        })
        .each_node("main", |i, n| {
            n.state = NodeState::Up;
            n.role = Role::Replica;
            n.last_probe = Some(built - Duration::from_millis(100));
            n.last_probe_duration = Some(Duration::from_micros(1500));
            n.probes = 40 + i as u64;
            n.probe_seconds = 0.25;
            n.timeline = Some(Timeline(1));
        })
        .node("main", "pg1", |n| (n.role, n.current_lsn) = (Role::Primary, Some(Lsn(0x3000))))
        .node("main", "pg2", |n| {
            (n.lag, n.lag_bytes, n.replay_lsn) = (Some(Duration::ZERO), Some(0), Some(Lsn(0x3000)))
        })
        .node("main", "pg3", |n| {
            (n.lag, n.lag_bytes, n.replay_lsn) = (Some(Duration::from_millis(2500)), Some(4096), Some(Lsn(0x2000)));
            n.replay_paused = true;
        })
        .node("main", "pg4", |n| {
            n.state = NodeState::Down;
            n.last_error = Some("connect: connection refused".into());
            n.probe_errors = 5;
        })
        .build()
}

#[test]
fn verdicts_are_the_ones_the_renderings_expect() {
    use crate::topology::{Eligibility, Reason};
    let snap = snapshot();
    let c = &snap.clusters[0];
    let lag = Reason::Lag { lag: Duration::from_millis(2500), max: Duration::from_millis(100) };
    let ineligible = Eligibility::Ineligible;
    assert_eq!(
        c.endpoints[0].verdicts,
        [ineligible(Reason::Primary), Eligibility::Eligible, ineligible(lag), ineligible(Reason::Down)]
    );
    assert_eq!(c.endpoints[0].eligible, [1]);
    let not_member = ineligible(Reason::NotMember);
    assert_eq!(c.endpoints[1].verdicts, [not_member, not_member, Eligibility::Eligible, not_member]);
    assert_eq!(c.endpoints[1].eligible, [2]);
}
