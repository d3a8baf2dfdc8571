//! Patroni discovery, the decisions (SPEC §11): Patroni's `GET /cluster` document as
//! plain data ([`parse_cluster`]), the nodes its members become ([`discover`]), and the
//! membership fold across discovery rounds ([`Membership::next`]). No IO: the discovery
//! task fetches the document from whichever member answers and feeds each round in.
//!
//! The document is read leniently: fields other Patroni versions add are ignored, and
//! `role`, `state` and `lag` keep values this code does not know (`Other`, `Unknown`), so
//! a new Patroni cannot fail discovery over a field that is only displayed. A member
//! that cannot become a node (no host, a name that is not a DNS label, a host that is not
//! an IP address or host name) is skipped with its reason; the others still are nodes.
//!
//! Lag: Patroni's `lag` is the leader's WAL position minus the larger of what the member
//! has received and replayed (so a replica whose replay is paused but which still
//! receives shows none), or `"unknown"` when the member reports no position (stopped,
//! starting). It is shown beside lagdns's own lag, never used for eligibility.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::config::{dns_label, Dsn, DsnTemplate, DsnTemplateError, DEFAULT_PG_PORT};

/// Consecutive rounds in which the listing (from a member that answered) leaves a
/// discovered member out before it is removed.
pub const MISSES_BEFORE_REMOVAL: u32 = 3;
/// The weight of a discovered member (0 when it carries `noloadbalance: true`).
pub const DISCOVERED_WEIGHT: u32 = 100;

/// Why a `/cluster` document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatroniError {
    #[error("not a Patroni /cluster document: {0}")]
    Parse(String),
}

/// Patroni's `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClusterDoc {
    pub members: Vec<Member>,
    /// Maintenance mode (`patronictl pause`): Patroni changes nothing.
    #[serde(default)]
    pub pause: bool,
}

/// One member of the listing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Member {
    pub name: String,
    #[serde(default)]
    pub role: PatroniRole,
    #[serde(default)]
    pub state: PatroniState,
    /// PostgreSQL's host (from the member's `connect_address`); absent when unknown.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// The member's REST API (`http://host:8008/patroni`).
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Absent for the leader.
    #[serde(default)]
    pub lag: Option<PatroniLag>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub pending_restart: bool,
}

/// The role Patroni gives a member, spelled as Patroni spells it (`Display`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PatroniRole {
    Leader,
    Replica,
    SyncStandby,
    /// Patroni 4's quorum-commit standby.
    QuorumStandby,
    /// The leader of a standby cluster (replicating from another cluster).
    StandbyLeader,
    /// A role this version does not know, as written (empty when absent).
    Other(String),
    #[default]
    Missing,
}

/// The state Patroni reports for a member's PostgreSQL, as Patroni spells it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PatroniState {
    Running,
    /// Patroni 3.0.4+: a replica whose WAL receiver is streaming.
    Streaming,
    /// Patroni 3.0.4+: a replica replaying from the archive.
    InArchiveRecovery,
    Starting,
    Stopping,
    Stopped,
    Restarting,
    Crashed,
    /// Anything else (`creating replica`, `start failed`, `initializing new cluster`...),
    /// as written.
    Other(String),
    #[default]
    Missing,
}

/// Patroni's `lag` of a replica: bytes, or `"unknown"` (or anything else that is not a
/// byte count) when the member reported no WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatroniLag {
    Bytes(u64),
    Unknown,
}

/// A member's Patroni tags (`noloadbalance`, `nofailover`, `nosync`, `clonefrom`,
/// `replicatefrom`, and any the operator adds), values as JSON.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(transparent)]
pub struct Tags(pub BTreeMap<String, serde_json::Value>);

impl Tags {
    /// True if tag `key` is set to a true value: JSON `true`, a non-zero number, or a
    /// string Patroni reads as true (`true`, `yes`, `on`, `1`, any case). Patroni 3.0
    /// filters false values of its own tags out of the listing.
    pub fn is_true(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Some(serde_json::Value::String(s)) => {
                matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1")
            }
            _ => false,
        }
    }
}

/// Parses a `GET /cluster` response body.
pub fn parse_cluster(body: &[u8]) -> Result<ClusterDoc, PatroniError> {
    serde_json::from_slice(body).map_err(|e| PatroniError::Parse(e.to_string()))
}

impl PatroniRole {
    fn from_text(text: &str) -> PatroniRole {
        match text {
            "leader" | "master" | "primary" => PatroniRole::Leader,
            "replica" => PatroniRole::Replica,
            "sync_standby" => PatroniRole::SyncStandby,
            "quorum_standby" => PatroniRole::QuorumStandby,
            "standby_leader" => PatroniRole::StandbyLeader,
            other => PatroniRole::Other(other.to_string()),
        }
    }

    /// The leader of the cluster (or of a standby cluster).
    pub fn is_leader(&self) -> bool {
        matches!(self, PatroniRole::Leader | PatroniRole::StandbyLeader)
    }
}

impl fmt::Display for PatroniRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatroniRole::Leader => "leader",
            PatroniRole::Replica => "replica",
            PatroniRole::SyncStandby => "sync_standby",
            PatroniRole::QuorumStandby => "quorum_standby",
            PatroniRole::StandbyLeader => "standby_leader",
            PatroniRole::Other(text) => text,
            PatroniRole::Missing => "",
        })
    }
}

impl<'de> Deserialize<'de> for PatroniRole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PatroniRole::from_text(&String::deserialize(d)?))
    }
}

impl PatroniState {
    fn from_text(text: &str) -> PatroniState {
        match text {
            "running" => PatroniState::Running,
            "streaming" => PatroniState::Streaming,
            "in archive recovery" => PatroniState::InArchiveRecovery,
            "starting" => PatroniState::Starting,
            "stopping" => PatroniState::Stopping,
            "stopped" => PatroniState::Stopped,
            "restarting" => PatroniState::Restarting,
            "crashed" => PatroniState::Crashed,
            other => PatroniState::Other(other.to_string()),
        }
    }

    /// PostgreSQL runs (`running`, `streaming`, `in archive recovery`).
    pub fn is_running(&self) -> bool {
        matches!(self, PatroniState::Running | PatroniState::Streaming | PatroniState::InArchiveRecovery)
    }
}

impl fmt::Display for PatroniState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatroniState::Running => "running",
            PatroniState::Streaming => "streaming",
            PatroniState::InArchiveRecovery => "in archive recovery",
            PatroniState::Starting => "starting",
            PatroniState::Stopping => "stopping",
            PatroniState::Stopped => "stopped",
            PatroniState::Restarting => "restarting",
            PatroniState::Crashed => "crashed",
            PatroniState::Other(text) => text,
            PatroniState::Missing => "",
        })
    }
}

impl<'de> Deserialize<'de> for PatroniState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(PatroniState::from_text(&String::deserialize(d)?))
    }
}

/// `12345` (bytes) or `unknown`.
impl fmt::Display for PatroniLag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatroniLag::Bytes(n) => write!(f, "{n}"),
            PatroniLag::Unknown => f.write_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for PatroniLag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n.as_u64().map_or(PatroniLag::Unknown, PatroniLag::Bytes),
            _ => PatroniLag::Unknown,
        })
    }
}

/// What Patroni says about a discovered node, shown beside lagdns's own view (TXT,
/// `/status`); never used for roles or eligibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatroniView {
    pub role: PatroniRole,
    pub state: PatroniState,
    pub lag: Option<PatroniLag>,
    pub timeline: Option<u64>,
}

/// A node made from a Patroni member (SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredNode {
    /// The member's name, as written (a DNS label).
    pub name: String,
    /// The member's host: what DNS answers for the node (an IP address, or a host name
    /// that is resolved).
    pub host: String,
    pub port: u16,
    /// `node_dsn` filled in with `host` and `port`.
    pub dsn: Dsn,
    /// [`DISCOVERED_WEIGHT`], or 0 with the tag `noloadbalance: true`.
    pub weight: u32,
    pub patroni: PatroniView,
}

/// Why a listed member is not a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("its name is not a DNS label (letters, digits and inner hyphens, at most 63 characters)")]
    NotALabel,
    #[error("another member has the same name (names are compared case-insensitively)")]
    DuplicateName,
    #[error("Patroni lists no host for it")]
    NoHost,
    #[error("node_dsn: {0}")]
    Dsn(DsnTemplateError),
}

/// A listed member that is not a node, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: SkipReason,
}

/// The nodes one listing gives, in the listing's order, and the members it skips.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovery {
    pub nodes: Vec<DiscoveredNode>,
    pub skipped: Vec<Skipped>,
}

/// The nodes `doc`'s members become, their DSNs from `node_dsn` (SPEC §11).
pub fn discover(doc: &ClusterDoc, node_dsn: &DsnTemplate) -> Discovery {
    let mut out = Discovery::default();
    for m in &doc.members {
        match node_of(m, node_dsn) {
            Ok(node) if out.nodes.iter().any(|n| n.name.eq_ignore_ascii_case(&node.name)) => {
                out.skipped.push(Skipped { name: m.name.clone(), reason: SkipReason::DuplicateName })
            }
            Ok(node) => out.nodes.push(node),
            Err(reason) => out.skipped.push(Skipped { name: m.name.clone(), reason }),
        }
    }
    out
}

fn node_of(m: &Member, node_dsn: &DsnTemplate) -> Result<DiscoveredNode, SkipReason> {
    dns_label(&m.name).map_err(|_| SkipReason::NotALabel)?;
    let host = m.host.as_deref().filter(|h| !h.is_empty()).ok_or(SkipReason::NoHost)?;
    let port = m.port.unwrap_or(DEFAULT_PG_PORT);
    let dsn = node_dsn.render(host, port).map_err(SkipReason::Dsn)?;
    let weight = if m.tags.is_true("noloadbalance") { 0 } else { DISCOVERED_WEIGHT };
    Ok(DiscoveredNode {
        name: m.name.clone(),
        host: host.to_string(),
        port,
        dsn,
        weight,
        patroni: PatroniView { role: m.role.clone(), state: m.state.clone(), lag: m.lag, timeline: m.timeline },
    })
}

/// One discovery round: the nodes of a listing from a member that answered, or why no
/// member answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    Listed(Vec<DiscoveredNode>),
    Failed(String),
}

/// A discovered node and how many rounds in a row the listing has left it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// As last listed.
    pub node: DiscoveredNode,
    /// Consecutive listings without it (failed rounds do not count); at
    /// [`MISSES_BEFORE_REMOVAL`] it is removed.
    pub missed: u32,
}

/// The discovered members of one cluster across rounds: the list the probes follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// By name.
    pub members: Vec<Tracked>,
    /// Consecutive rounds in which no Patroni member answered (0 after a listing).
    pub failed_rounds: u32,
    /// Why the latest round failed, while `failed_rounds > 0`.
    pub last_error: Option<String>,
}

/// What a round changed, for the log and for the probes: members that came and went,
/// and members whose host, port, DSN or weight changed (Patroni's own role, state and
/// lag change every round and are not counted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl Membership {
    /// The members to probe.
    pub fn nodes(&self) -> impl Iterator<Item = &DiscoveredNode> {
        self.members.iter().map(|t| &t.node)
    }

    /// The membership after `round` (SPEC §11): a listing adds its new members, updates
    /// the listed ones and counts a miss for each one it leaves out, removing a member at
    /// its [`MISSES_BEFORE_REMOVAL`]th consecutive miss; a failed round keeps the list as
    /// it is and counts a failure.
    pub fn next(&self, round: Round) -> (Membership, Changes) {
        let listed = match round {
            Round::Failed(error) => {
                let failed_rounds = self.failed_rounds.saturating_add(1);
                let next = Membership { members: self.members.clone(), failed_rounds, last_error: Some(error) };
                return (next, Changes::default());
            }
            Round::Listed(nodes) => nodes,
        };
        let mut changes = Changes::default();
        let mut members: Vec<Tracked> = Vec::new();
        for node in listed {
            if members.iter().any(|t| t.node.name == node.name) {
                continue; // `discover` never lists a name twice; first wins if a caller does
            }
            match self.members.iter().find(|t| t.node.name == node.name) {
                None => changes.added.push(node.name.clone()),
                Some(prev) if !same_endpoint(&prev.node, &node) => changes.changed.push(node.name.clone()),
                Some(_) => {}
            }
            members.push(Tracked { node, missed: 0 });
        }
        for prev in &self.members {
            if members.iter().any(|t| t.node.name == prev.node.name) {
                continue;
            }
            let missed = prev.missed + 1;
            if missed >= MISSES_BEFORE_REMOVAL {
                changes.removed.push(prev.node.name.clone());
            } else {
                members.push(Tracked { node: prev.node.clone(), missed });
            }
        }
        members.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        (Membership { members, failed_rounds: 0, last_error: None }, changes)
    }
}

/// Same address, port, DSN and weight: the node's probe and answers need not change.
fn same_endpoint(a: &DiscoveredNode, b: &DiscoveredNode) -> bool {
    a.host == b.host && a.port == b.port && a.dsn == b.dsn && a.weight == b.weight
}

#[cfg(test)]
mod tests;
