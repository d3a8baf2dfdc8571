//! A fabricated snapshot for unit tests of the HTTP and metrics renderings: one
//! cluster with a primary, an eligible replica, a lagging one and a down one, plus a
//! second read endpoint.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::{
    Answers, ClusterConfig, Config, DnsConfig, EndpointConfig, Fallback, HttpConfig, NodeConfig, Policy, ProbeConfig,
};
use crate::health::NodeState;
use crate::snapshot::{Snapshot, WriteTarget};
use crate::topology::{Eligibility, Reason, Role};
use crate::wal::{Lsn, Timeline};

pub const BUILT_SECS: u64 = 1_714_564_800;

fn policy(max_lag_ms: u64, fallback: Fallback) -> Policy {
    Policy {
        max_lag: Duration::from_millis(max_lag_ms),
        max_lag_bytes: Some(16 << 20),
        answers: Answers::Count(1),
        fallback,
    }
}

fn node(name: &str, last: u8) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        address: IpAddr::from([10, 0, 0, last]),
        dsn: format!("host=10.0.0.{last} user=lagdns password=hunter2").parse().unwrap(),
        weight: 100,
        password_file: None,
    }
}

pub fn config() -> Config {
    let names = ["pg1", "pg2", "pg3", "pg4"];
    Config {
        dns: DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            zone: "db.internal".into(),
            ttl: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(1),
            nameservers: vec![],
            nsid: None,
        },
        http: HttpConfig { listen: "127.0.0.1:0".parse().unwrap() },
        probe: ProbeConfig { interval: Duration::from_millis(250), timeout: Duration::from_secs(1), fall: 2, rise: 2 },
        clusters: vec![ClusterConfig {
            name: "main".into(),
            write: "write".into(),
            endpoints: vec![
                EndpointConfig {
                    label: "read".into(),
                    nodes: names.iter().map(|s| s.to_string()).collect(),
                    policy: policy(100, Fallback::Primary),
                },
                EndpointConfig {
                    label: "analytics".into(),
                    nodes: vec!["pg3".into()],
                    policy: policy(300_000, Fallback::None),
                },
            ],
            nodes: names.iter().zip(11..).map(|(n, last)| node(n, last)).collect(),
        }],
    }
}

/// pg1 primary, pg2 eligible replica, pg3 lagging 2.5s, pg4 down.
pub fn snapshot() -> Snapshot {
    let built = UNIX_EPOCH + Duration::from_secs(BUILT_SECS);
    let mut snap = Snapshot::initial(Arc::new(config()), 7, std::time::SystemTime::now());
    snap.ready = true;
    snap.built = built;
    snap.answer_changes = 3;
    let c = &mut snap.clusters[0];
    c.write = WriteTarget::Primary(0);
    c.primary_lsn = Some(Lsn(0x3000));
    c.split_brain_events = 1;
    for (i, n) in c.nodes.iter_mut().enumerate() {
        n.state = NodeState::Up;
        n.role = Role::Replica;
        n.last_probe = Some(built - Duration::from_millis(100));
        n.last_probe_duration = Some(Duration::from_micros(1500));
        n.probes = 40 + i as u64;
        n.probe_seconds = 0.25;
        n.timeline = Some(Timeline(1));
    }
    c.nodes[0].role = Role::Primary;
    c.nodes[0].current_lsn = Some(Lsn(0x3000));
    c.nodes[1].lag = Some(Duration::ZERO);
    c.nodes[1].lag_bytes = Some(0);
    c.nodes[1].replay_lsn = Some(Lsn(0x3000));
    c.nodes[2].lag = Some(Duration::from_millis(2500));
    c.nodes[2].lag_bytes = Some(4096);
    c.nodes[2].replay_lsn = Some(Lsn(0x2000));
    c.nodes[2].replay_paused = true;
    c.nodes[3].state = NodeState::Down;
    c.nodes[3].last_error = Some("connect: connection refused".into());
    c.nodes[3].probe_errors = 5;
    let lag = Reason::Lag { lag: Duration::from_millis(2500), max: Duration::from_millis(100) };
    c.endpoints[0].verdicts = vec![
        Eligibility::Ineligible(Reason::Primary),
        Eligibility::Eligible,
        Eligibility::Ineligible(lag),
        Eligibility::Ineligible(Reason::Down),
    ];
    c.endpoints[0].eligible = vec![1];
    c.endpoints[1].verdicts = vec![
        Eligibility::Ineligible(Reason::NotMember),
        Eligibility::Ineligible(Reason::NotMember),
        Eligibility::Eligible,
        Eligibility::Ineligible(Reason::NotMember),
    ];
    c.endpoints[1].eligible = vec![2];
    snap
}
