//! Load-balancer checks (SPEC §10), decided over one snapshot: which node a check names
//! (`<cluster>/<name>/<node>`), whether that node is answered for that name right now
//! (HTTP `/check`: 200 or 503), and what an HAProxy agent hears (`up ready N%`, `drain`,
//! `down`). Also the per-request `max_lag` bound, one evaluation shared by `maxlag-`
//! names (`dns::answer`) and `?max_lag=` checks.
//!
//! Plain functions over plain data; `http` (the `/check` handler) and `http::agent` (the
//! agent's socket loop) only parse their input and encode what these return.

use std::fmt;
use std::time::Duration;

use crate::config::{parse_duration, Config, Policy};
use crate::health::NodeState;
use crate::snapshot::{ClusterView, EndpointView, Snapshot, WriteTarget};
use crate::topology::{evaluate, Eligibility, Reason};

/// The name of a cluster a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckName {
    /// The write name.
    Write,
    /// A read name: `endpoints[i]` of the cluster (`0` is `read`).
    Read(usize),
}

/// What a check asks about: one node of one cluster, for one of the cluster's names.
/// Indices into the snapshot's (and its config's) clusters and nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub cluster: usize,
    pub name: CheckName,
    pub node: usize,
}

/// A check that names something the config does not have (HTTP 404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    #[error("no cluster {0:?}")]
    Cluster(String),
    #[error("cluster {cluster} has no name {name:?} (its write name, its read name or an endpoint)")]
    Name { cluster: String, name: String },
    #[error("cluster {cluster} has no node {node:?}")]
    Node { cluster: String, node: String },
}

impl Subject {
    /// Finds what a check names; like DNS names, case-insensitively.
    pub fn find(config: &Config, cluster: &str, name: &str, node: &str) -> Result<Subject, Unknown> {
        let (ci, c) = (config.clusters.iter().enumerate())
            .find(|(_, c)| c.name.eq_ignore_ascii_case(cluster))
            .ok_or_else(|| Unknown::Cluster(cluster.into()))?;
        let which = if c.write.eq_ignore_ascii_case(name) {
            CheckName::Write
        } else {
            let ep = (c.endpoints.iter().position(|e| e.label.eq_ignore_ascii_case(name)))
                .ok_or_else(|| Unknown::Name { cluster: c.name.clone(), name: name.into() })?;
            CheckName::Read(ep)
        };
        let ni = (c.nodes.iter().position(|n| n.name.eq_ignore_ascii_case(node)))
            .ok_or_else(|| Unknown::Node { cluster: c.name.clone(), node: node.into() })?;
        Ok(Subject { cluster: ci, name: which, node: ni })
    }
}

// ---------------------------------------------------------------------------------
// The per-request bound, shared with `maxlag-` names.

/// A read policy with `max_lag` set for one request (`maxlag-<N>` names, `?max_lag=`),
/// capped at `measurable` (`lag::measurable`: beyond it lag is not measured faithfully).
pub fn bounded(policy: Policy, max_lag: Duration, measurable: Duration) -> Policy {
    Policy { max_lag: max_lag.min(measurable), ..policy }
}

/// Whether node `node` belongs to the endpoint (its `nodes`, or `read_nodes` for `read`).
pub fn is_member(ep: &EndpointView, node: usize) -> bool {
    ep.verdicts.get(node) != Some(&Eligibility::Ineligible(Reason::NotMember))
}

/// A node's eligibility for endpoint `ep` under a per-request `policy`, judged on its
/// latest facts as they are (without `rise` debouncing: a request has no history).
pub fn eligibility_under(view: &ClusterView, ep: usize, node: usize, policy: &Policy) -> Eligibility {
    let member = is_member(&view.endpoints[ep], node);
    evaluate(&view.nodes[node].facts(), member, policy, view.primary_timeline())
}

// ---------------------------------------------------------------------------------
// HTTP `/check/<cluster>/<name>/<node>[?max_lag=<duration>]`.

/// A `/check` query string that cannot be used (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadQuery {
    #[error("max_lag: {0}")]
    MaxLag(String),
    #[error("max_lag is given twice")]
    Twice,
    #[error("max_lag applies to read names, not to the write name")]
    OnWrite,
    #[error("unknown parameter {0:?} (the only one is max_lag)")]
    Unknown(String),
}

/// The query string of a `/check` of `name`: nothing, or `max_lag=<duration>` (as in
/// the config: `500ms`, `2s`) for a read name.
pub fn parse_query(query: Option<&str>, name: CheckName) -> Result<Option<Duration>, BadQuery> {
    let mut max_lag = None;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "max_lag" {
            return Err(BadQuery::Unknown(key.into()));
        }
        if max_lag.replace(parse_duration(value).map_err(BadQuery::MaxLag)?).is_some() {
            return Err(BadQuery::Twice);
        }
    }
    match (max_lag, name) {
        (Some(_), CheckName::Write) => Err(BadQuery::OnWrite),
        _ => Ok(max_lag),
    }
}

/// What a check found about its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The write name: whether it answers the node as the current primary, not stale.
    Write { answered: bool },
    /// A read name: the node's eligibility (the endpoint's own, or under the check's
    /// `max_lag`).
    Read(Eligibility),
}

impl Verdict {
    /// HTTP 200 (true) or 503.
    pub fn answered(self) -> bool {
        match self {
            Verdict::Write { answered } => answered,
            Verdict::Read(e) => e.is_eligible(),
        }
    }
}

/// `/check`: whether the node is answered for the name right now. For `write`: it is
/// the current primary and not stale. For a read name: it is in the endpoint's eligible
/// set, or with `max_lag` eligible under that bound, as a `maxlag-` name would judge
/// it. `None` until the first probe round has finished (nothing is known yet).
pub fn judge(snap: &Snapshot, s: Subject, max_lag: Option<Duration>) -> Option<Verdict> {
    let view = snap.clusters.get(s.cluster).filter(|_| snap.ready)?;
    Some(match s.name {
        CheckName::Write => Verdict::Write { answered: view.write == WriteTarget::Primary(s.node) },
        CheckName::Read(ep) => Verdict::Read(match max_lag {
            None => view.endpoints[ep].verdicts[s.node],
            Some(max_lag) => {
                let policy = bounded(view.endpoints[ep].policy, max_lag, crate::lag::measurable(&snap.config));
                eligibility_under(view, ep, s.node, &policy)
            }
        }),
    })
}

// ---------------------------------------------------------------------------------
// HAProxy agent checks: a line `<cluster>/<name>/<node>` in, a line out.

/// The longest request line an agent connection may send (`agent-send`), its end
/// included; a longer one is not read.
pub const MAX_AGENT_LINE: usize = 512;

/// `<cluster>/<name>/<node>`, as HAProxy's `agent-send "main/read/pg2\n"` sends it.
/// Whitespace around it (the `\n` or `\r\n` that ends it) is ignored; anything else —
/// not UTF-8, not three non-empty parts, whitespace inside — is `None`.
pub fn parse_agent_line(line: &[u8]) -> Option<(&str, &str, &str)> {
    let text = std::str::from_utf8(line).ok()?.trim();
    let mut parts = text.split('/');
    let (cluster, name, node) = (parts.next()?, parts.next()?, parts.next()?);
    let bad = |p: &str| p.is_empty() || p.contains(char::is_whitespace);
    if parts.next().is_some() || [cluster, name, node].into_iter().any(bad) {
        return None;
    }
    Some((cluster, name, node))
}

/// What the agent answers, one line. HAProxy reads the words: `up` (if its own health
/// check agrees) and `down` set the server's state, `ready` and `drain` its
/// administrative mode, `N%` its weight relative to the `weight` on its server line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentReply {
    /// `up ready N%`: the node is answered for the name; N is its weight as a
    /// percentage of the highest weight among the name's nodes (1 to 100).
    Up { percent: u32 },
    /// `drain`: up, but not answered (lagging, weight 0, the primary, not a member).
    Drain,
    /// `down`: down or not probed yet; for `write` every node but the primary; also the
    /// answer to a line that does not parse or names nothing known.
    Down,
}

impl AgentReply {
    pub const KINDS: [&'static str; 3] = ["up", "drain", "down"];

    /// The first word (a metric label).
    pub fn kind(self) -> &'static str {
        match self {
            AgentReply::Up { .. } => "up",
            AgentReply::Drain => "drain",
            AgentReply::Down => "down",
        }
    }
}

impl fmt::Display for AgentReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentReply::Up { percent } => write!(f, "up ready {percent}%"),
            AgentReply::Drain => f.write_str("drain"),
            AgentReply::Down => f.write_str("down"),
        }
    }
}

/// The agent's answer about `s`. For `write`: `up ready 100%` for the node `write`
/// answers, also while stale (fail open, as DNS does); `down` for every other node and
/// during a split brain that election could not settle. `None` until the first probe
/// round has finished: then nothing is known, and no answer leaves HAProxy's state as
/// it was, where `down` would take every server out at a lagdns restart.
pub fn agent_reply(snap: &Snapshot, s: Subject) -> Option<AgentReply> {
    let view = snap.clusters.get(s.cluster).filter(|_| snap.ready)?;
    let ep = match s.name {
        CheckName::Write if view.write.node() == Some(s.node) => return Some(AgentReply::Up { percent: 100 }),
        CheckName::Write => return Some(AgentReply::Down),
        CheckName::Read(ep) => ep,
    };
    Some(match view.nodes[s.node].state {
        NodeState::Down | NodeState::Unknown => AgentReply::Down,
        NodeState::Up if view.endpoints[ep].verdicts[s.node].is_eligible() => {
            AgentReply::Up { percent: weight_percent(view, ep, s.node) }
        }
        NodeState::Up => AgentReply::Drain,
    })
}

/// A node's weight as a percentage of the highest weight among the endpoint's member
/// nodes, rounded, at least 1 (an answered node has a weight above 0).
fn weight_percent(view: &ClusterView, ep: usize, node: usize) -> u32 {
    let members = (0..view.nodes.len()).filter(|&i| is_member(&view.endpoints[ep], i));
    let highest = members.map(|i| u64::from(view.nodes[i].weight)).max().unwrap_or(0);
    let weight = u64::from(view.nodes[node].weight);
    match highest {
        0 => 1,
        h => ((weight * 100 + h / 2) / h).clamp(1, 100) as u32,
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
