//! Scenario tables for the cluster-state fold: observations in, views out.

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::{Answers, EndpointConfig, Fallback, NodeConfig, Policy};
use crate::probe::{NodeId, ProbeFailure};
use crate::topology::{Conflict, ConflictKind};
use crate::wal::{Lsn, Timeline};

const SYS: SystemId = SystemId(42);

fn cluster() -> ClusterConfig {
    let node = |name: &str, last: u8| NodeConfig {
        name: name.into(),
        addresses: vec![format!("10.0.0.{last}").parse().unwrap()],
        host: None,
        port: 5432,
        dsn: format!("host=10.0.0.{last}").parse().unwrap(),
        weight: 100,
        password_file: None,
        location: None,
    };
    let policy = Policy {
        max_lag: Duration::from_millis(100),
        max_lag_bytes: None,
        answers: Answers::Count(1),
        fallback: Fallback::Primary,
        locality: crate::config::LocalityPolicy::Prefer,
    };
    let all = vec!["pg1".to_string(), "pg2".to_string(), "pg3".to_string()];
    ClusterConfig {
        name: "main".into(),
        write: "write".into(),
        endpoints: vec![
            EndpointConfig { label: "read".into(), nodes: all, listed: false, policy },
            EndpointConfig {
                label: "analytics".into(),
                nodes: vec!["pg3".into()],
                listed: true,
                policy: Policy { max_lag: Duration::from_secs(60), ..policy },
            },
        ],
        nodes: vec![node("pg1", 1), node("pg2", 2), node("pg3", 3)],
        patroni: None,
    }
}

fn probe() -> ProbeConfig {
    ProbeConfig { interval: Duration::from_millis(250), timeout: Duration::from_secs(1), fall: 2, rise: 2 }
}

/// Drives a ClusterState with observations at explicit times.
struct Sim {
    state: ClusterState,
    t0: Instant,
}

fn primary(lsn: u64, tl: u32) -> Sample {
    Sample {
        in_recovery: false,
        system_id: SYS,
        timeline: Some(Timeline(tl)),
        current_lsn: Some(Lsn(lsn)),
        receive_lsn: None,
        replay_lsn: None,
        replay_paused: false,
    }
}

fn replica(receive: u64, replay: u64) -> Sample {
    Sample {
        in_recovery: true,
        system_id: SYS,
        timeline: Some(Timeline(1)),
        current_lsn: None,
        receive_lsn: Some(Lsn(receive)),
        replay_lsn: Some(Lsn(replay)),
        replay_paused: false,
    }
}

impl Sim {
    #[allow(clippy::disallowed_methods)] // a base instant: the code under test takes time as an argument
    fn new() -> Sim {
        Sim { state: ClusterState::new(&cluster(), &probe(), Duration::from_secs(300)), t0: Instant::now() }
    }

    fn at(&mut self, ms: u64, node: &str, result: Result<Sample, ProbeFailure>) -> Vec<Event> {
        self.fold(ms, node, result).events
    }

    fn fold(&mut self, ms: u64, node: &str, result: Result<Sample, ProbeFailure>) -> Folded {
        let obs = Observation {
            node: NodeId::new("main", node),
            at: self.t0 + Duration::from_millis(ms),
            wall: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            duration: Duration::from_millis(1),
            result,
        };
        let i = self.state.node_index(node).unwrap();
        self.state.observe(i, &obs)
    }

    /// One round at `ms`: every node observed in order.
    fn round(
        &mut self,
        ms: u64,
        p: Result<Sample, ProbeFailure>,
        r2: Result<Sample, ProbeFailure>,
        r3: Result<Sample, ProbeFailure>,
    ) {
        self.at(ms, "pg1", p);
        self.at(ms + 1, "pg2", r2);
        self.at(ms + 2, "pg3", r3);
    }

    fn read(&self) -> Vec<String> {
        let v = self.state.view();
        v.endpoints[0].eligible.iter().map(|i| v.nodes[*i].name.clone()).collect()
    }

    fn verdict(&self, endpoint: usize, node: usize) -> String {
        self.state.view().endpoints[endpoint].verdicts[node].to_string()
    }
}

fn timeout() -> Result<Sample, ProbeFailure> {
    Err(ProbeFailure::Timeout(Duration::from_secs(1)))
}

#[test]
fn not_ready_until_every_node_probed() {
    let mut s = Sim::new();
    s.at(0, "pg1", Ok(primary(100, 1)));
    s.at(1, "pg2", Ok(replica(100, 100)));
    assert!(!s.state.probed_all());
    s.at(2, "pg3", timeout());
    assert!(s.state.probed_all(), "a failed probe also completes the round");
    assert_eq!(s.state.view().nodes[2].state, NodeState::Down);
}

#[test]
fn caught_up_replicas_are_eligible_at_once_and_stay_on_an_idle_primary() {
    let mut s = Sim::new();
    for round in 0..40 {
        let t = round * 250;
        s.round(t, Ok(primary(5000, 1)), Ok(replica(5000, 5000)), Ok(replica(5000, 5000)));
        assert_eq!(s.read(), ["pg2", "pg3"], "round {round}: idle primary means zero lag");
    }
    assert_eq!(s.state.view().nodes[1].lag, Some(Duration::ZERO));
    assert_eq!(s.state.view().write, WriteTarget::Primary(0));
}

#[test]
fn paused_replay_is_removed_at_once_and_readmitted_after_rise() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    // pg2 stops replaying at 1000 while the primary writes 100 bytes per round
    s.round(250, Ok(primary(1100, 1)), Ok(replica(1100, 1000)), Ok(replica(1100, 1100)));
    assert_eq!(s.read(), ["pg2", "pg3"], "1 ms behind the proof is within 100ms");
    s.round(500, Ok(primary(1200, 1)), Ok(replica(1200, 1000)), Ok(replica(1200, 1200)));
    assert_eq!(s.read(), ["pg3"], "250ms behind: removed on the first probe that shows it");
    assert_eq!(s.verdict(0, 1), "ineligible: lag 251ms > max_lag 100ms");
    assert_eq!(s.state.view().nodes[1].lag_bytes, Some(200));
    assert_eq!(s.verdict(1, 1), "ineligible: not in endpoint");
    // replay resumes and catches up
    s.round(750, Ok(primary(1300, 1)), Ok(replica(1300, 1300)), Ok(replica(1300, 1300)));
    assert_eq!(s.read(), ["pg3"], "one good probe is not enough");
    assert_eq!(s.verdict(0, 1), "ineligible: rising (1/2 good probes)");
    s.round(1000, Ok(primary(1400, 1)), Ok(replica(1400, 1400)), Ok(replica(1400, 1400)));
    assert_eq!(s.read(), ["pg2", "pg3"], "back after rise good probes");
}

#[test]
fn cut_off_replica_lag_grows_with_real_time() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    // pg3 receives nothing more: receive = replay, yet it is behind
    for (i, t) in [250u64, 500, 750].iter().enumerate() {
        let lsn = 1000 + 100 * (i as u64 + 1);
        s.round(*t, Ok(primary(lsn, 1)), Ok(replica(lsn, lsn)), Ok(replica(1000, 1000)));
    }
    let lag = s.state.view().nodes[2].lag.unwrap();
    assert_eq!(lag, Duration::from_millis(502), "behind since the primary passed 1000 at 250ms");
    assert_eq!(s.read(), ["pg2"]);
}

#[test]
fn frozen_replica_goes_down_after_fall_and_back_after_rise() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    s.round(250, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), timeout());
    assert_eq!(s.state.view().nodes[2].state, NodeState::Up, "one failure is not fall=2");
    s.round(1250, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), timeout());
    assert_eq!(s.state.view().nodes[2].state, NodeState::Down);
    assert_eq!(s.read(), ["pg2"]);
    assert_eq!(s.verdict(0, 2), "ineligible: down");
    s.round(2250, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    assert_eq!(s.read(), ["pg2"], "rise=2: still down after one success");
    s.round(2500, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    assert_eq!(s.read(), ["pg2", "pg3"], "up and eligible together after rise successes");
}

#[test]
fn primary_outage_keeps_write_stale_and_caught_up_replicas_readable() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 900)));
    let refused = || Err(ProbeFailure::Connect("connection refused".into()));
    for t in [250u64, 500, 750, 5000] {
        s.round(t, refused(), Ok(replica(1000, 1000)), Ok(replica(1000, 900)));
    }
    let v = s.state.view();
    assert!(matches!(v.write, WriteTarget::Stale { node: 0, .. }), "{:?}", v.write);
    assert_eq!(v.nodes[0].state, NodeState::Down);
    assert_eq!(s.read(), ["pg2"], "pg2 had replayed the last primary position; pg3 had not");
    assert!(
        crate::dns::txt::write_lines(&v, SystemTime::UNIX_EPOCH, &Default::default())[0]
            .contains("write: answered, stale"),
        "{}",
        crate::dns::txt::write_lines(&v, SystemTime::UNIX_EPOCH, &Default::default())[0]
    );
}

#[test]
fn failover_follows_the_promoted_replica_and_never_returns_to_the_old_primary() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    let refused = || Err(ProbeFailure::Connect("refused".into()));
    s.round(250, refused(), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    assert!(matches!(s.state.view().write, WriteTarget::Stale { node: 0, .. }));
    // pg2 promoted: timeline 2
    s.round(500, refused(), Ok(primary(1200, 2)), Ok(replica(1000, 1000)));
    assert_eq!(s.state.view().write, WriteTarget::Primary(1));
    s.round(750, refused(), Ok(primary(1300, 2)), Ok(replica(1000, 1000)));
    assert_eq!(s.state.view().write, WriteTarget::Primary(1));
    // the old primary comes back unfenced on timeline 1: the newer timeline wins
    let events = s.at(1000, "pg1", Ok(primary(1100, 1)));
    let v = s.state.view();
    assert_eq!(v.write, WriteTarget::Primary(1), "{events:?}");
    assert_eq!(v.rivals, vec![0], "the old primary is reported as a rival");
    assert_eq!(v.split_brain_events, 1);
    assert!(events.iter().any(|e| matches!(e, Event::SplitBrain { .. })), "{events:?}");
    assert!(crate::dns::txt::write_lines(&v, SystemTime::UNIX_EPOCH, &Default::default())[0]
        .ends_with("write: not answered, split brain (older timeline)"));
    assert!(
        crate::dns::txt::write_lines(&v, SystemTime::UNIX_EPOCH, &Default::default())[1].ends_with("write: answered")
    );
}

#[test]
fn unrelated_primaries_fail_closed_and_count_one_event() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    let other = Sample { system_id: SystemId(7), ..primary(50, 2) };
    let events = s.at(250, "pg3", Ok(other.clone()));
    let v = s.state.view();
    assert_eq!(v.write, WriteTarget::Conflict(Conflict { nodes: vec![0, 2], why: ConflictKind::SystemIdMismatch }));
    assert!(events.iter().any(|e| matches!(e, Event::SplitBrain { .. })), "{events:?}");
    s.at(500, "pg3", Ok(other));
    s.at(501, "pg1", Ok(primary(1000, 1)));
    assert_eq!(s.state.view().split_brain_events, 1, "one conflict, one event");
    assert!(crate::dns::txt::write_lines(&v, SystemTime::UNIX_EPOCH, &Default::default())[2]
        .ends_with("write: SERVFAIL, split brain (system identifiers differ)"));
}

#[test]
#[allow(clippy::disallowed_methods)] // a base instant, as in Sim::new
fn drained_replica_is_never_eligible() {
    let mut cfg = cluster();
    cfg.nodes[1].weight = 0;
    let mut s = Sim { state: ClusterState::new(&cfg, &probe(), Duration::from_secs(300)), t0: Instant::now() };
    s.round(0, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    assert_eq!(s.read(), ["pg3"]);
    assert_eq!(s.verdict(0, 1), "ineligible: drained (weight 0)");
}

#[test]
fn reconfigure_keeps_what_is_known_by_name() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(1000, 1)), Ok(replica(1000, 1000)), Ok(replica(1000, 1000)));
    let mut cfg = cluster();
    cfg.nodes.remove(1); // drop pg2
    cfg.nodes[1].weight = 5; // re-weight pg3
    for ep in &mut cfg.endpoints {
        ep.nodes.retain(|n| n != "pg2");
    }
    let next = s.state.reconfigure(&cfg, &probe(), Duration::from_secs(300), SystemTime::UNIX_EPOCH);
    let v = next.view();
    assert_eq!(v.nodes.len(), 2);
    assert_eq!(v.write, WriteTarget::Primary(0));
    assert_eq!(v.nodes[1].weight, 5);
    assert_eq!(v.endpoints[0].eligible, vec![1]);
    assert!(next.probed_all());
}

#[test]
fn a_replica_left_on_the_old_timeline_is_not_answered_even_if_ahead() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(1000, 1)), Ok(replica(900, 900)), Ok(replica(1000, 1000)));
    let refused = || Err(ProbeFailure::Connect("refused".into()));
    // pg2 (behind) is promoted; pg3 holds WAL up to 1000 that the new primary never had
    s.round(250, refused(), Ok(primary(950, 2)), Ok(replica(1000, 1000)));
    s.round(500, refused(), Ok(primary(960, 2)), Ok(replica(1000, 1000)));
    let v = s.state.view();
    assert_eq!(v.write, WriteTarget::Primary(1));
    assert_eq!(v.nodes[2].lag, Some(Duration::ZERO), "by position alone pg3 looks caught up");
    assert_eq!(s.verdict(0, 2), "ineligible: timeline 1 behind the primary's 2");
    assert!(s.read().is_empty());
}

#[test]
fn an_observation_that_changes_only_probe_bookkeeping_is_not_shown() {
    let mut s = Sim::new();
    s.round(0, Ok(primary(100, 1)), Ok(replica(100, 100)), Ok(replica(100, 100)));
    // (the test's evidence: the primary's LSN does not move, so neither does lag)
    type Case = (u64, &'static str, Result<Sample, ProbeFailure>, bool, &'static str);
    let cases: [Case; 8] = [
        (250, "pg1", Ok(primary(100, 1)), false, "the primary as it was: counters and times only"),
        (251, "pg2", Ok(replica(100, 100)), false, "a replica as it was"),
        (252, "pg3", timeout(), true, "a failure: last_error changes"),
        (500, "pg3", timeout(), true, "the second (fall = 2): down"),
        (502, "pg3", timeout(), false, "down, the same failure again"),
        (750, "pg1", Ok(primary(200, 1)), true, "the primary's WAL moved"),
        (751, "pg2", Ok(replica(200, 200)), true, "a replica's replay position moved"),
        (752, "pg2", Ok(replica(200, 200)), false, "and stayed, caught up (a replica behind shows its lag grow)"),
    ];
    for (ms, node, result, shown, why) in cases {
        assert_eq!(s.fold(ms, node, result).shown, shown, "{why}");
    }
}
