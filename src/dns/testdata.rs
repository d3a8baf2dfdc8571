//! Test fixtures for the DNS unit tests: one config and a snapshot of it with every
//! kind of node (primary, lagging, drained, IPv6, down) and a cluster in split brain.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{
    Answers, ClusterConfig, Config, DnsConfig, EndpointConfig, Fallback, HttpConfig, Nameserver, NodeConfig, Policy,
    ProbeConfig,
};
use crate::health::NodeState;
use crate::snapshot::{ClusterView, Conflict, ConflictKind, Snapshot, WriteTarget};
use crate::topology::{evaluate, Role};
use crate::wal::Lsn;

pub fn policy(max_lag_ms: u64, answers: Answers, fallback: Fallback) -> Policy {
    Policy { max_lag: Duration::from_millis(max_lag_ms), max_lag_bytes: None, answers, fallback }
}

fn node(name: &str, address: &str, weight: u32) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        address: address.parse().unwrap(),
        dsn: format!("host={address}").parse().unwrap(),
        weight,
        password_file: None,
    }
}

fn endpoint(label: &str, nodes: &[&str], policy: Policy) -> EndpointConfig {
    EndpointConfig { label: label.into(), nodes: nodes.iter().map(|n| n.to_string()).collect(), policy }
}

/// Zone `db.internal`, ttl 1s, negative_ttl 5s.
/// Cluster 0 `main`: write `write`; endpoints `read` (all nodes, 100ms, 1 answer,
/// fallback primary) and `analytics` (pg3, pg5, pg7: 5 min, all answers, fallback none).
/// Cluster 1 `billing`: `billing-write`, `billing-read` (fallback primary).
pub fn config() -> Config {
    let main_nodes = ["pg1", "pg2", "pg3", "pg4", "pg5", "pg6", "pg7"];
    Config {
        dns: DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            zone: "db.internal".into(),
            ttl: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(5),
            nameservers: vec![
                Nameserver { name: "ns1.db.internal".into(), address: "192.0.2.1".parse().unwrap() },
                Nameserver { name: "ns2.other.net".into(), address: "192.0.2.2".parse().unwrap() },
                Nameserver { name: "ns3.sub.db.internal".into(), address: "2001:db8::53".parse().unwrap() },
            ],
            nsid: None,
        },
        http: HttpConfig { listen: "127.0.0.1:0".parse().unwrap() },
        probe: ProbeConfig { interval: Duration::from_millis(250), timeout: Duration::from_secs(1), fall: 2, rise: 2 },
        clusters: vec![
            ClusterConfig {
                name: "main".into(),
                write: "write".into(),
                endpoints: vec![
                    endpoint("read", &main_nodes, policy(100, Answers::Count(1), Fallback::Primary)),
                    endpoint("analytics", &["pg3", "pg5", "pg7"], policy(300_000, Answers::All, Fallback::None)),
                ],
                nodes: vec![
                    node("pg1", "10.0.0.11", 100),
                    node("pg2", "10.0.0.12", 100),
                    node("pg3", "10.0.0.13", 300),
                    node("pg4", "10.0.0.14", 0),
                    node("pg5", "2001:db8::15", 100),
                    node("pg6", "10.0.0.16", 100),
                    node("pg7", "10.0.0.17", 100),
                ],
            },
            ClusterConfig {
                name: "billing".into(),
                write: "billing-write".into(),
                endpoints: vec![endpoint(
                    "billing-read",
                    &["b1", "b2"],
                    policy(100, Answers::Count(1), Fallback::Primary),
                )],
                nodes: vec![node("b1", "10.1.0.1", 100), node("b2", "10.1.0.2", 100)],
            },
        ],
    }
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
    let config = Arc::new(config());
    let mut main = cluster_view(&config.clusters[0], WriteTarget::Primary(0));
    for (view, (role, state, lag, lsn)) in main.nodes.iter_mut().zip(MAIN) {
        view.role = role;
        view.state = state;
        view.lag = lag.map(Duration::from_millis);
        view.lag_bytes = lag.map(|_| 0x3000000 - lsn);
        view.replay_lsn = lag.map(|_| Lsn(lsn));
        view.current_lsn = Some(Lsn(0x3000000)).filter(|_| role == Role::Primary);
    }
    let conflict = Conflict { nodes: vec![0, 1], why: ConflictKind::SystemIdMismatch };
    let mut billing = cluster_view(&config.clusters[1], WriteTarget::Conflict(conflict));
    for view in &mut billing.nodes {
        view.role = Role::Primary;
        view.state = NodeState::Up;
    }
    let mut snap = Snapshot {
        serial: 7,
        ready: true,
        built: SystemTime::UNIX_EPOCH,
        answer_changes: 3,
        config: config.clone(),
        clusters: vec![main, billing],
    };
    reevaluate(&mut snap);
    snap
}

fn cluster_view(cfg: &ClusterConfig, write: WriteTarget) -> ClusterView {
    ClusterView { write, primary_lsn: Some(Lsn(0x3000000)), ..ClusterView::unprobed(cfg) }
}

/// Recomputes every endpoint's verdicts and eligible set from node state and policy.
pub fn reevaluate(snap: &mut Snapshot) {
    let config = snap.config.clone();
    for (view, cfg) in snap.clusters.iter_mut().zip(&config.clusters) {
        for (ep, ep_cfg) in view.endpoints.iter_mut().zip(&cfg.endpoints) {
            ep.verdicts =
                view.nodes.iter().map(|n| evaluate(n, ep_cfg.nodes.contains(&n.name), &ep.policy, None)).collect();
            ep.eligible = (0..ep.verdicts.len()).filter(|&i| ep.verdicts[i].is_eligible()).collect();
        }
    }
}
