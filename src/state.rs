//! Cluster state: what the publisher knows of one cluster, folded from observations,
//! and the [`ClusterView`] it renders into a snapshot. Pure: no IO, no clock (times
//! come from the observations).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{ClusterConfig, ProbeConfig};
use crate::health::{Hysteresis, NodeState};
use crate::lag::WalEvidence;
use crate::probe::{Observation, Sample};
use crate::snapshot::{ClusterView, EndpointView, NodeView, WriteTarget};
use crate::topology::{elect, evaluate_both, Claim, Election, Eligibility, Reason, Role};
use crate::wal::SystemId;

/// Everything the publisher remembers about one cluster.
#[derive(Debug, Clone)]
pub struct ClusterState {
    cfg: ClusterConfig,
    probe: ProbeConfig,
    /// How much WAL evidence to keep.
    horizon: Duration,
    nodes: Vec<NodeTrack>,
    evidence: WalEvidence,
    /// The primary (node name, system) the evidence belongs to.
    evidence_owner: Option<(String, SystemId)>,
    write: WriteTarget,
    /// Claimants that lost the election to a newer timeline.
    rivals: Vec<usize>,
    last_primary: Option<usize>,
    split_brain_events: u64,
    /// `[endpoint][node]` re-admission hysteresis: leaving is immediate, coming back
    /// takes `rise` consecutive own probes that were good (judged as if the node were up).
    gates: Vec<Vec<Hysteresis>>,
    /// The view as of the last fold (what the snapshot shows).
    current: Arc<ClusterView>,
}

#[derive(Debug, Clone, Default)]
struct NodeTrack {
    health: Hysteresis,
    /// The last successful sample and when it was read.
    sample: Option<(Instant, Sample)>,
    /// Whether the last probe succeeded.
    reachable: bool,
    last_probe: Option<SystemTime>,
    last_duration: Option<Duration>,
    last_error: Option<String>,
    probes: u64,
    errors: u64,
    seconds: f64,
}

/// Whether rendering moves the re-admission gates.
#[derive(Debug, Clone, Copy)]
enum Gates {
    /// Render with the gates as they are (start, reload).
    Keep,
    /// After an observation; `own` is the node whose successful probe it was.
    Refresh { own: Option<usize> },
}

/// What folding one observation changed.
#[derive(Debug)]
pub struct Folded {
    /// For the log.
    pub events: Vec<Event>,
    /// Whether the cluster's view changed in more than probe bookkeeping: something an
    /// answer, a TXT line or a verdict shows
    /// ([`ClusterView::same_but_bookkeeping`]).
    pub shown: bool,
}

/// Something worth one log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    NodeState { node: String, from: NodeState, to: NodeState },
    Write { from: String, to: String },
    SplitBrain { nodes: Vec<String>, why: String },
    Eligibility { endpoint: String, node: String, verdict: String },
}

impl ClusterState {
    pub fn new(cfg: &ClusterConfig, probe: &ProbeConfig, horizon: Duration) -> ClusterState {
        let mut state = ClusterState {
            nodes: vec![NodeTrack::default(); cfg.nodes.len()],
            gates: vec![vec![Hysteresis::default(); cfg.nodes.len()]; cfg.endpoints.len()],
            cfg: cfg.clone(),
            probe: probe.clone(),
            horizon,
            evidence: WalEvidence::default(),
            evidence_owner: None,
            write: WriteTarget::Unknown,
            rivals: Vec::new(),
            last_primary: None,
            split_brain_events: 0,
            current: Arc::new(ClusterView::unprobed(cfg)),
        };
        state.current = Arc::new(state.render(Gates::Keep));
        state
    }

    /// The same cluster under a new config: what is known of nodes and endpoints that
    /// keep their names carries over.
    pub fn reconfigure(
        &self,
        cfg: &ClusterConfig,
        probe: &ProbeConfig,
        horizon: Duration,
        now: SystemTime,
    ) -> ClusterState {
        let mut next = ClusterState::new(cfg, probe, horizon);
        let old_index = |name: &str| self.cfg.nodes.iter().position(|n| n.name == name);
        let map: Vec<Option<usize>> = cfg.nodes.iter().map(|n| old_index(&n.name)).collect();
        for (new, old) in map.iter().enumerate() {
            if let Some(old) = old {
                next.nodes[new] = self.nodes[*old].clone();
            }
        }
        for (e, ep) in cfg.endpoints.iter().enumerate() {
            let Some(old_e) = self.cfg.endpoints.iter().position(|o| o.label == ep.label) else { continue };
            for (new, old) in map.iter().enumerate() {
                if let Some(old) = old {
                    next.gates[e][new] = self.gates[old_e][*old];
                }
            }
        }
        let remap = |old: usize| map.iter().position(|m| *m == Some(old));
        next.last_primary = self.last_primary.and_then(remap);
        next.evidence = self.evidence.clone();
        next.evidence_owner = self.evidence_owner.clone();
        next.split_brain_events = self.split_brain_events;
        next.elect_write(now);
        next.current = Arc::new(next.render(Gates::Keep));
        next
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Index of a node by name.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.cfg.nodes.iter().position(|n| n.name == name)
    }

    /// True once every node has been probed at least once.
    pub fn probed_all(&self) -> bool {
        self.nodes.iter().all(|n| n.probes > 0)
    }

    /// Folds one observation of `nodes[node]`; returns what changed, for the log, and
    /// whether anything but probe bookkeeping did.
    pub fn observe(&mut self, node: usize, obs: &Observation) -> Folded {
        self.track(node, obs);
        self.elect_write(obs.wall);
        self.gather_evidence(node, obs);
        let rendered = Arc::new(self.render(Gates::Refresh { own: obs.result.is_ok().then_some(node) }));
        let before = std::mem::replace(&mut self.current, rendered);
        Folded { events: self.events_since(&before), shown: !self.current.same_but_bookkeeping(&before) }
    }

    fn track(&mut self, node: usize, obs: &Observation) {
        let t = &mut self.nodes[node];
        t.health = t.health.observe(obs.result.is_ok(), self.probe.fall, self.probe.rise);
        t.reachable = obs.result.is_ok();
        t.last_probe = Some(obs.wall);
        t.last_duration = Some(obs.duration);
        t.probes += 1;
        t.seconds += obs.duration.as_secs_f64();
        match &obs.result {
            Ok(sample) => {
                t.sample = Some((obs.at, sample.clone()));
                t.last_error = None;
            }
            Err(e) => {
                t.errors += 1;
                t.last_error = Some(e.to_string());
            }
        }
    }

    fn claims(&self) -> Vec<Claim> {
        let claim = |(i, t): (usize, &NodeTrack)| {
            let (_, s) = t.sample.as_ref().filter(|_| t.reachable)?;
            (!s.in_recovery).then_some(Claim { node: i, system_id: s.system_id, timeline: s.timeline })
        };
        self.nodes.iter().enumerate().filter_map(claim).collect()
    }

    fn elect_write(&mut self, now: SystemTime) {
        let claims = self.claims();
        let was_split = self.rivals.len() + matches!(self.write, WriteTarget::Conflict(_)) as usize > 0;
        self.rivals.clear();
        self.write = match elect(&claims) {
            Election::Elected(i) => {
                self.rivals = claims.iter().map(|c| c.node).filter(|n| *n != i).collect();
                self.last_primary = Some(i);
                WriteTarget::Primary(i)
            }
            Election::NoPrimary => match (self.last_primary, &self.write) {
                (Some(i), WriteTarget::Stale { node, since }) if *node == i => {
                    WriteTarget::Stale { node: i, since: *since }
                }
                (Some(i), _) => WriteTarget::Stale { node: i, since: now },
                (None, _) => WriteTarget::Unknown,
            },
            Election::Conflict(c) => WriteTarget::Conflict(c),
        };
        if claims.len() > 1 && !was_split {
            self.split_brain_events += 1;
        }
    }

    /// Records where this observation proves the primary's WAL had been.
    fn gather_evidence(&mut self, node: usize, obs: &Observation) {
        let WriteTarget::Primary(p) = self.write else { return };
        let Some((_, primary)) = &self.nodes[p].sample else { return };
        let owner = (self.cfg.nodes[p].name.clone(), primary.system_id);
        if self.evidence_owner.as_ref() != Some(&owner) {
            self.evidence.clear();
            self.evidence_owner = Some(owner);
        }
        let Ok(sample) = &obs.result else { return };
        let proof = if node == p {
            sample.current_lsn
        } else if sample.in_recovery && sample.system_id == primary.system_id {
            sample.receive_lsn
        } else {
            None
        };
        if let Some(lsn) = proof {
            self.evidence.record(obs.at, lsn);
            self.evidence.prune(obs.at.checked_sub(self.horizon).unwrap_or(obs.at));
        }
    }

    /// The timeline of the node `write` answers, from its last sample.
    fn primary_timeline(&self) -> Option<crate::wal::Timeline> {
        let node = self.write.node()?;
        self.nodes[node].sample.as_ref().and_then(|(_, s)| s.timeline)
    }

    fn node_view(&self, i: usize) -> NodeView {
        let t = &self.nodes[i];
        let mut v = NodeView::unprobed(&self.cfg.nodes[i]);
        v.state = t.health.state();
        v.last_probe = t.last_probe;
        v.last_probe_duration = t.last_duration;
        v.last_error = t.last_error.clone();
        v.probes = t.probes;
        v.probe_errors = t.errors;
        v.probe_seconds = t.seconds;
        let Some((at, s)) = &t.sample else { return v };
        v.role = if s.in_recovery { Role::Replica } else { Role::Primary };
        v.system_id = Some(s.system_id);
        v.timeline = s.timeline;
        v.current_lsn = s.current_lsn;
        v.replay_lsn = s.replay_lsn;
        v.replay_paused = s.replay_paused;
        if let (true, Some(replay)) = (s.in_recovery, s.replay_lsn) {
            v.lag = self.evidence.time_lag(replay, *at);
            v.lag_bytes = self.evidence.byte_lag(replay);
        }
        v
    }

    /// The cluster as the snapshot shows it.
    pub fn view(&self) -> Arc<ClusterView> {
        self.current.clone()
    }

    /// The view of the cluster now: every node's view built once, and one evaluation per
    /// node per endpoint, which also moves the re-admission gates when asked to.
    fn render(&mut self, gates: Gates) -> ClusterView {
        let nodes: Vec<NodeView> = (0..self.nodes.len()).map(|i| self.node_view(i)).collect();
        let primary_timeline = self.primary_timeline();
        let mut endpoints = Vec::with_capacity(self.cfg.endpoints.len());
        for (e, ep) in self.cfg.endpoints.iter().enumerate() {
            let mut verdicts = Vec::with_capacity(nodes.len());
            for (n, view) in nodes.iter().enumerate() {
                let member = ep.nodes.contains(&self.cfg.nodes[n].name);
                let (actual, as_up) = evaluate_both(&view.facts(), member, &ep.policy, primary_timeline);
                let gate = &mut self.gates[e][n];
                if let Gates::Refresh { own } = gates {
                    if own == Some(n) {
                        gate.count(as_up.is_eligible());
                    }
                    let undecidable = matches!(actual, Eligibility::Ineligible(Reason::NotProbed | Reason::LagUnknown));
                    if !(undecidable && gate.on().is_none()) {
                        gate.decide(actual.is_eligible(), 0, self.probe.rise);
                    }
                }
                verdicts.push(match (actual, gate.on()) {
                    (Eligibility::Eligible, Some(true)) => Eligibility::Eligible,
                    (Eligibility::Eligible, _) => {
                        Eligibility::Ineligible(Reason::Rising { seen: gate.good_run(), need: self.probe.rise })
                    }
                    (ineligible, _) => ineligible,
                });
            }
            endpoints.push(EndpointView::new(ep.label.clone(), ep.policy, verdicts, &nodes));
        }
        ClusterView {
            name: self.cfg.name.clone(),
            write: self.write.clone(),
            primary_lsn: self.evidence.latest(),
            rivals: self.rivals.clone(),
            split_brain_events: self.split_brain_events,
            nodes,
            endpoints,
            discovery: None,
        }
    }

    /// What changed between the view `before` and the current one.
    fn events_since(&self, before: &ClusterView) -> Vec<Event> {
        let (now, mut events) = (&self.current, Vec::new());
        let name = |i: usize| now.nodes[i].name.clone();
        for (i, (n, was)) in now.nodes.iter().zip(&before.nodes).enumerate() {
            if n.state != was.state {
                events.push(Event::NodeState { node: name(i), from: was.state, to: n.state });
            }
        }
        if now.split_brain_events != before.split_brain_events {
            let (nodes, why) = match &now.write {
                WriteTarget::Conflict(c) => (c.nodes.clone(), format!("unresolved: {}; write fails closed", c.why)),
                w => {
                    let winner = w.node().map(name).unwrap_or_default();
                    (now.rivals.clone(), format!("{winner} is on a newer timeline and keeps write"))
                }
            };
            let nodes = nodes.into_iter().map(name).collect();
            events.push(Event::SplitBrain { nodes, why });
        }
        if now.write != before.write {
            events.push(Event::Write { from: describe_write(before), to: describe_write(now) });
        }
        for (e, ep) in now.endpoints.iter().enumerate() {
            for (n, v) in ep.verdicts.iter().enumerate() {
                if v.is_eligible() != before.endpoints[e].verdicts[n].is_eligible() {
                    let verdict = v.to_string();
                    events.push(Event::Eligibility { endpoint: ep.label.clone(), node: name(n), verdict });
                }
            }
        }
        events
    }
}

fn describe_write(view: &ClusterView) -> String {
    let name = |i: &usize| view.nodes[*i].name.as_str();
    match &view.write {
        WriteTarget::Unknown => "unknown".into(),
        WriteTarget::Primary(i) => name(i).into(),
        WriteTarget::Stale { node, .. } => format!("{} (stale)", name(node)),
        WriteTarget::Conflict(c) => format!("split brain ({})", c.why),
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
