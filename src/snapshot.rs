//! The immutable picture of every cluster that DNS and HTTP read: built by the
//! publisher after each observation, swapped in atomically, never mutated.
//!
//! It is plain domain data and knows nothing of DNS or HTTP. Every node's eligibility
//! and reason is computed once here; TXT, `/status`, `/metrics` and `lagdns status`
//! all render these same values.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Config, Policy};
use crate::health::NodeState;
use crate::locality::LocationId;
use crate::patroni::PatroniView;
use crate::topology::{Conflict, Eligibility, NodeFacts, Role};
use crate::wal::{Lsn, SystemId, Timeline};

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// SOA serial: increases whenever any endpoint's answer set changes.
    pub serial: u32,
    /// False until every node has been probed at least once: endpoint names answer
    /// SERVFAIL until then (lagdns never guesses).
    pub ready: bool,
    /// When this snapshot was built.
    pub built: SystemTime,
    /// How many times an answer set changed since start (the serial bumps).
    pub answer_changes: u64,
    pub config: Arc<Config>,
    /// Index-aligned with `config.clusters`. Shared: a cluster nothing happened to since
    /// the last snapshot is the same value in both (`Arc::ptr_eq`), so publishing and
    /// deriving skip it without comparing.
    pub clusters: Vec<Arc<ClusterView>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub name: String,
    pub write: WriteTarget,
    /// The newest WAL position seen on the primary (kept while the primary is down).
    pub primary_lsn: Option<Lsn>,
    /// Nodes that also claim to be primary but lost the election to a strictly newer
    /// timeline (an old primary back unfenced). Empty when there is no split brain.
    pub rivals: Vec<usize>,
    /// How many times this cluster entered split brain (two or more nodes out of
    /// recovery, settled or not) since start.
    pub split_brain_events: u64,
    /// Index-aligned with the cluster's config `nodes`.
    pub nodes: Vec<NodeView>,
    /// Index-aligned with the cluster's config `endpoints` (`[0]` is `read`).
    pub endpoints: Vec<EndpointView>,
    /// How Patroni discovery goes, for a cluster with `patroni` (SPEC §11).
    pub discovery: Option<DiscoveryView>,
}

/// The state of a cluster's Patroni discovery and host-name resolution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiscoveryView {
    /// Consecutive rounds in which no member answered (the last list is kept).
    pub failed_rounds: u32,
    /// Such rounds since start.
    pub failures: u64,
    pub last_error: Option<String>,
    /// When a member last answered.
    pub last_listed: Option<SystemTime>,
    /// Listed members that are not nodes: (name, why).
    pub left_out: Vec<(String, String)>,
    /// Host names of nodes whose last resolution failed (their last addresses are
    /// kept): (host, why).
    pub unresolved: Vec<(String, String)>,
}

/// What `write.<zone>` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteTarget {
    /// No primary has ever been seen: SERVFAIL.
    Unknown,
    /// `nodes[i]` is up and the only (or the elected) primary.
    Primary(usize),
    /// No primary is reachable: `nodes[node]` was the last one seen (fail open).
    Stale { node: usize, since: SystemTime },
    /// Several nodes claim to be primary and election could not settle it: SERVFAIL.
    Conflict(Conflict),
}

impl ClusterView {
    /// The timeline of the node `write` answers (fresh or stale), when known.
    pub fn primary_timeline(&self) -> Option<Timeline> {
        self.write.node().and_then(|i| self.nodes.get(i)).and_then(|n| n.timeline)
    }
}

impl WriteTarget {
    /// The node `write` answers, if any (fresh or stale).
    pub fn node(&self) -> Option<usize> {
        match self {
            WriteTarget::Primary(i) | WriteTarget::Stale { node: i, .. } => Some(*i),
            WriteTarget::Unknown | WriteTarget::Conflict(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    /// What DNS answers for the node: its address, or what its host name resolved to.
    pub addresses: Vec<IpAddr>,
    /// The host name its address was written as (SPEC §11).
    pub host: Option<String>,
    /// The port applications use at its addresses (SRV).
    pub port: u16,
    pub weight: u32,
    /// Where the node is (SPEC §8).
    pub location: Option<LocationId>,
    /// What Patroni says of it, for a discovered node (shown, never decided on).
    pub patroni: Option<PatroniView>,
    pub role: Role,
    pub state: NodeState,
    /// Time lag (SPEC §4); `None` on a primary or when it cannot be measured.
    pub lag: Option<Duration>,
    /// Byte lag (SPEC §4); `None` on a primary or when it cannot be measured.
    pub lag_bytes: Option<u64>,
    pub replay_lsn: Option<Lsn>,
    pub current_lsn: Option<Lsn>,
    pub timeline: Option<Timeline>,
    pub system_id: Option<SystemId>,
    pub replay_paused: bool,
    pub last_probe: Option<SystemTime>,
    pub last_probe_duration: Option<Duration>,
    /// The last probe failure, if the last probe failed (never contains a password).
    pub last_error: Option<String>,
    /// Counters since start, for `/metrics`.
    pub probes: u64,
    pub probe_errors: u64,
    pub probe_seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointView {
    pub label: String,
    pub policy: Policy,
    /// Index-aligned with `ClusterView::nodes`, non-members included (`NotMember`).
    pub verdicts: Vec<Eligibility>,
    /// Indices of eligible nodes.
    pub eligible: Vec<usize>,
    /// Per location (indexed by `LocationId`), the eligible nodes in it, in `eligible`'s
    /// order: what a client there is answered first (SPEC §8).
    pub local: Vec<Vec<usize>>,
}

impl EndpointView {
    /// The view of an endpoint whose `verdicts` are decided: its eligible nodes, all and
    /// per location.
    pub fn new(label: String, policy: Policy, verdicts: Vec<Eligibility>, nodes: &[NodeView]) -> Self {
        let eligible: Vec<usize> = (0..verdicts.len()).filter(|&i| verdicts[i].is_eligible()).collect();
        let locations = nodes.iter().filter_map(|n| n.location).map(|l| l.index() + 1).max().unwrap_or(0);
        let mut local = vec![Vec::new(); locations];
        for &i in &eligible {
            if let Some(at) = nodes.get(i).and_then(|n| n.location).and_then(|l| local.get_mut(l.index())) {
                at.push(i);
            }
        }
        EndpointView { label, policy, verdicts, eligible, local }
    }

    /// The eligible nodes in `location`.
    pub fn local(&self, location: LocationId) -> &[usize] {
        self.local.get(location.index()).map_or(&[], Vec::as_slice)
    }
}

impl Snapshot {
    /// The snapshot before any configuration is loaded or any probe has run.
    pub fn initial(config: Arc<Config>, serial: u32, built: SystemTime) -> Snapshot {
        Snapshot {
            serial,
            ready: false,
            built,
            answer_changes: 0,
            clusters: config.clusters.iter().map(|c| Arc::new(ClusterView::unprobed(c))).collect(),
            config,
        }
    }
}

impl Snapshot {
    /// Cluster `i`'s view to change (tests build snapshots this way; copied first if
    /// it is shared).
    pub fn cluster_mut(&mut self, i: usize) -> &mut ClusterView {
        Arc::make_mut(&mut self.clusters[i])
    }
}

impl ClusterView {
    pub fn unprobed(cfg: &crate::config::ClusterConfig) -> ClusterView {
        let nodes: Vec<NodeView> = cfg.nodes.iter().map(NodeView::unprobed).collect();
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| {
                let verdicts = cfg
                    .nodes
                    .iter()
                    .map(|n| {
                        let member = e.nodes.contains(&n.name);
                        let reason = if member {
                            crate::topology::Reason::NotProbed
                        } else {
                            crate::topology::Reason::NotMember
                        };
                        Eligibility::Ineligible(reason)
                    })
                    .collect();
                EndpointView::new(e.label.clone(), e.policy, verdicts, &nodes)
            })
            .collect();
        ClusterView {
            name: cfg.name.clone(),
            write: WriteTarget::Unknown,
            primary_lsn: None,
            rivals: Vec::new(),
            split_brain_events: 0,
            nodes,
            endpoints,
            discovery: None,
        }
    }
}

impl ClusterView {
    /// Whether `self` and `other` differ in nothing but the nodes' probe bookkeeping
    /// (when each was last probed, how long it took, the counters): what no answer,
    /// TXT line or verdict shows. The publisher publishes such a change less eagerly.
    pub fn same_but_bookkeeping(&self, other: &ClusterView) -> bool {
        let ClusterView { name, write, primary_lsn, rivals, split_brain_events, nodes, endpoints, discovery } = self;
        *name == other.name
            && *write == other.write
            && *primary_lsn == other.primary_lsn
            && *rivals == other.rivals
            && *split_brain_events == other.split_brain_events
            && *endpoints == other.endpoints
            && *discovery == other.discovery
            && nodes.len() == other.nodes.len()
            && nodes.iter().zip(&other.nodes).all(|(a, b)| a.same_but_bookkeeping(b))
    }
}

impl NodeView {
    /// Whether `self` and `other` differ in nothing but probe bookkeeping (see
    /// [`ClusterView::same_but_bookkeeping`]). Every field is named, so a new one
    /// is decided on here.
    fn same_but_bookkeeping(&self, other: &NodeView) -> bool {
        let NodeView {
            name,
            addresses,
            host,
            port,
            weight,
            location,
            patroni,
            role,
            state,
            lag,
            lag_bytes,
            replay_lsn,
            current_lsn,
            timeline,
            system_id,
            replay_paused,
            last_error,
            last_probe: _,
            last_probe_duration: _,
            probes: _,
            probe_errors: _,
            probe_seconds: _,
        } = self;
        (name, addresses, host, port, weight, location, patroni, role, state)
            == (
                &other.name,
                &other.addresses,
                &other.host,
                &other.port,
                &other.weight,
                &other.location,
                &other.patroni,
                &other.role,
                &other.state,
            )
            && (lag, lag_bytes, replay_lsn, current_lsn, timeline, system_id, replay_paused, last_error)
                == (
                    &other.lag,
                    &other.lag_bytes,
                    &other.replay_lsn,
                    &other.current_lsn,
                    &other.timeline,
                    &other.system_id,
                    &other.replay_paused,
                    &other.last_error,
                )
    }
}

impl NodeView {
    /// The address as TXT and `/status` show it (see `NodeConfig::address_text`).
    pub fn address_text(&self) -> String {
        crate::config::address_text(self.host.as_deref(), &self.addresses)
    }

    /// What eligibility is judged on.
    pub fn facts(&self) -> NodeFacts {
        let NodeView { state, role, weight, timeline, lag, lag_bytes, .. } = *self;
        NodeFacts { state, role, weight, timeline, lag, lag_bytes }
    }

    pub fn unprobed(cfg: &crate::config::NodeConfig) -> NodeView {
        NodeView {
            name: cfg.name.clone(),
            addresses: cfg.addresses.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            weight: cfg.weight,
            location: cfg.location,
            patroni: None,
            role: Role::Unknown,
            state: NodeState::Unknown,
            lag: None,
            lag_bytes: None,
            replay_lsn: None,
            current_lsn: None,
            timeline: None,
            system_id: None,
            replay_paused: false,
            last_probe: None,
            last_probe_duration: None,
            last_error: None,
            probes: 0,
            probe_errors: 0,
            probe_seconds: 0.0,
        }
    }
}

/// What the answers of one cluster are made of: when it differs between two snapshots,
/// some answer set changed and the SOA serial goes up.
#[derive(Debug, PartialEq)]
struct AnswerKey {
    write: (Option<usize>, bool, bool),
    eligible: Vec<Vec<usize>>,
    /// Up replicas, for `fallback = "open"`.
    up_replicas: Vec<usize>,
    /// Addresses, ports, weights and locations (a reload can change them; SRV carries
    /// the first three, and locality orders by the last).
    nodes: Vec<(Vec<IpAddr>, u16, u32, Option<LocationId>)>,
}

impl ClusterView {
    fn answer_key(&self) -> AnswerKey {
        let w = &self.write;
        AnswerKey {
            write: (w.node(), matches!(w, WriteTarget::Stale { .. }), matches!(w, WriteTarget::Conflict(_))),
            eligible: self.endpoints.iter().map(|e| e.eligible.clone()).collect(),
            up_replicas: (0..self.nodes.len())
                .filter(|i| self.nodes[*i].state == NodeState::Up && self.nodes[*i].role == Role::Replica)
                .collect(),
            nodes: self.nodes.iter().map(|n| (n.addresses.clone(), n.port, n.weight, n.location)).collect(),
        }
    }
}

impl Snapshot {
    /// The snapshot after `prev`: same serial unless an answer set changed (or
    /// readiness did), then serial + 1.
    pub fn next(
        prev: &Snapshot,
        config: Arc<Config>,
        clusters: Vec<Arc<ClusterView>>,
        ready: bool,
        built: SystemTime,
    ) -> Snapshot {
        let same = |(a, b): (&Arc<ClusterView>, &Arc<ClusterView>)| {
            Arc::ptr_eq(a, b) || (a.name == b.name && a.answer_key() == b.answer_key())
        };
        let changed = ready != prev.ready
            || clusters.len() != prev.clusters.len()
            || !clusters.iter().zip(&prev.clusters).all(same);
        Snapshot {
            serial: if changed { prev.serial.wrapping_add(1).max(1) } else { prev.serial },
            ready,
            built,
            answer_changes: prev.answer_changes + u64::from(changed),
            config,
            clusters,
        }
    }
}
