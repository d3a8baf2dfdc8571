//! Test fixtures for the DNS unit tests: one config and a snapshot of it with every
//! kind of node (primary, lagging, drained, IPv6, down) and a cluster in split brain,
//! and one with locations ([`locality_snapshot`]).

use std::time::Duration;

use crate::config::Config;
use crate::health::NodeState;
use crate::snapshot::{Snapshot, WriteTarget};
pub use crate::testkit::reevaluate;
use crate::testkit::SnapshotBuilder;
use crate::topology::{Conflict, ConflictKind, Role};
use crate::wal::Lsn;

/// Zone `db.internal`, ttl 1s, negative_ttl 5s.
/// Cluster 0 `main`: write `write`; endpoints `read` (all nodes, 100ms, 1 answer,
/// fallback primary) and `analytics` (pg3, pg5, pg7: 5 min, all answers, fallback none).
/// pg3 has `port = 6432` (a pooler), every other node the default 5432.
/// Cluster 1 `billing`: `billing-write`, `billing-read` (fallback primary).
const CONFIG: &str = r#"
[dns]
listen = ["127.0.0.1:0"]
zone = "db.internal"
ttl = "1s"
negative_ttl = "5s"
nameservers = [
    { name = "ns1.db.internal", address = "192.0.2.1" },
    { name = "ns2.other.net", address = "192.0.2.2" },
    { name = "ns3.sub.db.internal", address = "2001:db8::53" },
]

[http]
listen = "127.0.0.1:0"

[[cluster]]
name = "main"
write = "write"
read = "read"
max_lag = "100ms"
answers = 1
fallback = "primary"

node = [
    { name = "pg1", address = "10.0.0.11", dsn = "host=10.0.0.11" },
    { name = "pg2", address = "10.0.0.12", dsn = "host=10.0.0.12" },
    { name = "pg3", address = "10.0.0.13", port = 6432, dsn = "host=10.0.0.13", weight = 300 },
    { name = "pg4", address = "10.0.0.14", dsn = "host=10.0.0.14", weight = 0 },
    { name = "pg5", address = "2001:db8::15", dsn = "host=2001:db8::15" },
    { name = "pg6", address = "10.0.0.16", dsn = "host=10.0.0.16" },
    { name = "pg7", address = "10.0.0.17", dsn = "host=10.0.0.17" },
]

[[cluster.endpoint]]
name = "analytics"
nodes = ["pg3", "pg5", "pg7"]
max_lag = "5m"
answers = "all"
fallback = "none"

[[cluster]]
name = "billing"
write = "billing-write"
read = "billing-read"
max_lag = "100ms"
answers = 1
fallback = "primary"

node = [
    { name = "b1", address = "10.1.0.1", dsn = "host=10.1.0.1" },
    { name = "b2", address = "10.1.0.2", dsn = "host=10.1.0.2" },
]
"#;

pub fn config() -> Config {
    Config::parse(CONFIG, "testdata.toml").expect("valid test config")
}

/// (role, state, lag ms, replay LSN) per node of cluster 0.
const MAIN: [(Role, NodeState, Option<u64>, u64); 7] = [
    (Role::Primary, NodeState::Up, None, 0),               // pg1 primary
    (Role::Replica, NodeState::Up, Some(10), 0x3000000),   // pg2
    (Role::Replica, NodeState::Up, Some(50), 0x2ffff00),   // pg3 weight 300
    (Role::Replica, NodeState::Up, Some(0), 0x3000000),    // pg4 weight 0
    (Role::Replica, NodeState::Up, Some(20), 0x3000000),   // pg5 IPv6
    (Role::Replica, NodeState::Down, Some(0), 0x3000000),  // pg6 down
    (Role::Replica, NodeState::Up, Some(2000), 0x1000000), // pg7 lags 2 s
];

/// A ready snapshot of [`config`] with serial 7: `write` → pg1, `billing-write` in
/// split brain.
pub fn snapshot() -> Snapshot {
    let conflict = Conflict { nodes: vec![0, 1], why: ConflictKind::SystemIdMismatch };
    SnapshotBuilder::new(CONFIG)
        .serial(7)
        .answer_changes(3)
        .cluster("main", |c| (c.write, c.primary_lsn) = (WriteTarget::Primary(0), Some(Lsn(0x3000000))))
        .each_node("main", |i, view| {
            let (role, state, lag, lsn) = MAIN[i];
            view.role = role;
            view.state = state;
            view.lag = lag.map(Duration::from_millis);
            view.lag_bytes = lag.map(|_| 0x3000000 - lsn);
            view.replay_lsn = lag.map(|_| Lsn(lsn));
            view.current_lsn = Some(Lsn(0x3000000)).filter(|_| role == Role::Primary);
        })
        .cluster("billing", |c| (c.write, c.primary_lsn) = (WriteTarget::Conflict(conflict), Some(Lsn(0x3000000))))
        .each_node("billing", |_, view| (view.role, view.state) = (Role::Primary, NodeState::Up))
        .build()
}

/// pg1 primary in `a`; replicas pg2 (`a`), pg3 and pg4 (`b`, weight 300), pg5 (no
/// location). Clients: 127.0.1.x in `a`, 127.0.2.x in `b`, 127.0.3.x in `c` (no nodes),
/// anything else unknown.
const LOCALITY_CONFIG: &str = r#"
[dns]
zone = "db.internal"
[[cluster]]
name = "main"
max_lag = "100ms"
node = [
    { name = "pg1", address = "10.0.0.11", dsn = "host=a", location = "a" },
    { name = "pg2", address = "10.0.0.12", dsn = "host=b", location = "a" },
    { name = "pg3", address = "10.0.0.13", dsn = "host=c", location = "b" },
    { name = "pg4", address = "10.0.0.14", dsn = "host=d", location = "b", weight = 300 },
    { name = "pg5", address = "10.0.0.15", dsn = "host=e" },
]
[[cluster.endpoint]]
name = "every"
answers = "all"
[[cluster.endpoint]]
name = "only"
locality = "only"
[[cluster.endpoint]]
name = "ignore"
locality = "ignore"
[[cluster.endpoint]]
name = "two"
answers = 2
locality = "only"
fallback = "none"
[locality]
[[locality.network]]
prefix = "127.0.1.0/24"
location = "a"
[[locality.network]]
prefix = "127.0.2.0/24"
location = "b"
[[locality.network]]
prefix = "127.0.3.0/24"
location = "c"
"#;

/// Every replica 10 ms behind, replayed up to 0/3000000 (pg3 only to 0/2000000).
pub fn locality_snapshot() -> Snapshot {
    SnapshotBuilder::new(LOCALITY_CONFIG)
        .cluster("main", |c| (c.write, c.primary_lsn) = (WriteTarget::Primary(0), Some(Lsn(0x3000000))))
        .each_node("main", |i, n| {
            n.state = NodeState::Up;
            n.timeline = Some(crate::wal::Timeline(1));
            if i == 0 {
                n.role = Role::Primary;
            } else {
                n.role = Role::Replica;
                n.lag = Some(Duration::from_millis(10));
                n.lag_bytes = Some(0);
                n.replay_lsn = Some(Lsn(if i == 2 { 0x2000000 } else { 0x3000000 }));
            }
        })
        .build()
}
