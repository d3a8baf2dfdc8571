//! Topology decisions: each node's role, primary election (split brain included), and
//! each node's eligibility for a read endpoint with the reason when it is not.

use std::fmt;
use std::time::Duration;

use crate::config::format_duration;
use crate::config::Policy;
use crate::health::NodeState;
use crate::wal::{SystemId, Timeline};

/// What the node said about itself on its last successful probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    /// Never probed successfully.
    Unknown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a read endpoint may answer a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligibility {
    Eligible,
    Ineligible(Reason),
}

impl Eligibility {
    pub fn is_eligible(self) -> bool {
        matches!(self, Eligibility::Eligible)
    }
}

/// Why a node is not eligible. `Display` is exactly the TXT and `/status` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The endpoint's `nodes` / the cluster's `read_nodes` do not include it.
    NotMember,
    /// No probe has finished yet.
    NotProbed,
    Down,
    Primary,
    /// Weight 0.
    Drained,
    /// No primary WAL position has ever been seen, so lag cannot be measured.
    LagUnknown,
    Lag {
        lag: Duration,
        max: Duration,
    },
    LagBytes {
        bytes: u64,
        max: u64,
    },
    /// Within bounds, waiting for `need` consecutive good probes (has `seen`).
    Rising {
        seen: u32,
        need: u32,
    },
    /// On an older timeline than the primary: following a dead old primary, or holding
    /// WAL the primary never had.
    Timeline {
        replica: Timeline,
        primary: Timeline,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotMember => f.write_str("not in endpoint"),
            Reason::NotProbed => f.write_str("not probed yet"),
            Reason::Down => f.write_str("down"),
            Reason::Primary => f.write_str("primary"),
            Reason::Drained => f.write_str("drained (weight 0)"),
            Reason::LagUnknown => f.write_str("lag unknown (primary never seen)"),
            Reason::Lag { lag, max } => {
                write!(f, "lag {} > max_lag {}", format_duration(*lag), format_duration(*max))
            }
            Reason::LagBytes { bytes, max } => write!(f, "lag_bytes {bytes} > max_lag_bytes {max}"),
            Reason::Rising { seen, need } => write!(f, "rising ({seen}/{need} good probes)"),
            Reason::Timeline { replica, primary } => {
                write!(f, "timeline {replica} behind the primary's {primary}")
            }
        }
    }
}

impl fmt::Display for Eligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Eligibility::Eligible => f.write_str("eligible"),
            Eligibility::Ineligible(r) => write!(f, "ineligible: {r}"),
        }
    }
}

/// What eligibility is judged on: one node's facts as its last probes left them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeFacts {
    pub state: NodeState,
    pub role: Role,
    /// 0 = drained.
    pub weight: u32,
    pub timeline: Option<Timeline>,
    /// Time lag (SPEC §4); `None` on a primary or when it cannot be measured.
    pub lag: Option<Duration>,
    /// Byte lag (SPEC §4); `None` on a primary or when it cannot be measured.
    pub lag_bytes: Option<u64>,
}

/// Eligibility of one node under `policy`, without hysteresis: what a single probe
/// says. Used by the publisher (which adds `rise` debouncing) and by per-query
/// policies (`maxlag-N`), which are evaluated as they come. `primary_timeline` is the
/// timeline of the node `write` answers, when known.
pub fn evaluate(node: &NodeFacts, member: bool, policy: &Policy, primary_timeline: Option<Timeline>) -> Eligibility {
    use Eligibility::Ineligible;
    if !member {
        return Ineligible(Reason::NotMember);
    }
    match node.state {
        NodeState::Unknown => return Ineligible(Reason::NotProbed),
        NodeState::Down => return Ineligible(Reason::Down),
        NodeState::Up => {}
    }
    if node.role == Role::Primary {
        return Ineligible(Reason::Primary);
    }
    if node.weight == 0 {
        return Ineligible(Reason::Drained);
    }
    if let (Some(replica), Some(primary)) = (node.timeline, primary_timeline) {
        if replica < primary {
            return Ineligible(Reason::Timeline { replica, primary });
        }
    }
    let (Some(lag), Some(bytes)) = (node.lag, node.lag_bytes) else {
        return Ineligible(Reason::LagUnknown);
    };
    if lag > policy.max_lag {
        return Ineligible(Reason::Lag { lag, max: policy.max_lag });
    }
    if let Some(max) = policy.max_lag_bytes {
        if bytes > max {
            return Ineligible(Reason::LagBytes { bytes, max });
        }
    }
    Eligibility::Eligible
}

/// [`evaluate`] twice over: the actual eligibility, and the eligibility as if the node
/// were up (what re-admission counts, so that a node's health rise and its eligibility
/// rise overlap instead of adding up). One full evaluation: a node that is not up is
/// turned away by its state at once.
pub fn evaluate_both(
    node: &NodeFacts,
    member: bool,
    policy: &Policy,
    primary_timeline: Option<Timeline>,
) -> (Eligibility, Eligibility) {
    let as_up = evaluate(&NodeFacts { state: NodeState::Up, ..*node }, member, policy, primary_timeline);
    let actual = match node.state {
        NodeState::Up => as_up,
        NodeState::Unknown | NodeState::Down => evaluate(node, member, policy, primary_timeline),
    };
    (actual, as_up)
}

/// A node that answered its last probe out of recovery: it claims to be primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub node: usize,
    pub system_id: SystemId,
    pub timeline: Option<Timeline>,
}

/// Two or more nodes out of recovery at once that election could not settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The node indices claiming to be primary.
    pub nodes: Vec<usize>,
    pub why: ConflictKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// Their system identifiers differ: unrelated clusters.
    SystemIdMismatch,
    /// Same system, but no single node is on a strictly newer timeline.
    SameTimeline,
    /// A claimant's timeline is unknown.
    TimelineUnknown,
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictKind::SystemIdMismatch => "system identifiers differ",
            ConflictKind::SameTimeline => "no strictly newer timeline",
            ConflictKind::TimelineUnknown => "timeline unknown",
        })
    }
}

/// The outcome of primary election over the current claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Election {
    /// Nobody reachable claims to be primary.
    NoPrimary,
    Elected(usize),
    /// Several claims that cannot be settled: `write` fails closed.
    Conflict(Conflict),
}

/// Elects the primary: a single claim wins; of several, the one on a strictly newer
/// timeline wins, but only if all share one system identifier (else they are unrelated
/// clusters). Anything else is a conflict.
pub fn elect(claims: &[Claim]) -> Election {
    match claims {
        [] => return Election::NoPrimary,
        [only] => return Election::Elected(only.node),
        _ => {}
    }
    let conflict = |why| Election::Conflict(Conflict { nodes: claims.iter().map(|c| c.node).collect(), why });
    if claims.iter().any(|c| c.system_id != claims[0].system_id) {
        return conflict(ConflictKind::SystemIdMismatch);
    }
    let Some(timelines) = claims.iter().map(|c| c.timeline).collect::<Option<Vec<_>>>() else {
        return conflict(ConflictKind::TimelineUnknown);
    };
    let newest = *timelines.iter().max().expect("two or more claims");
    let mut on_newest = claims.iter().zip(&timelines).filter(|(_, t)| **t == newest);
    match (on_newest.next(), on_newest.next()) {
        (Some((winner, _)), None) => Election::Elected(winner.node),
        _ => conflict(ConflictKind::SameTimeline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Answers, Fallback};

    fn split(nodes: Vec<usize>, why: ConflictKind) -> Election {
        Election::Conflict(super::Conflict { nodes, why })
    }

    fn claim(node: usize, sys: u64, tl: Option<u32>) -> Claim {
        Claim { node, system_id: SystemId(sys), timeline: tl.map(Timeline) }
    }

    #[test]
    fn election_table() {
        use Election::*;
        let cases: Vec<(&str, Vec<Claim>, Election)> = vec![
            ("nobody", vec![], NoPrimary),
            ("one", vec![claim(2, 7, Some(1))], Elected(2)),
            ("one without timeline", vec![claim(2, 7, None)], Elected(2)),
            ("newer timeline wins", vec![claim(0, 7, Some(1)), claim(1, 7, Some(2))], Elected(1)),
            ("newer timeline wins, any order", vec![claim(1, 7, Some(3)), claim(0, 7, Some(2))], Elected(1)),
            (
                "same timeline",
                vec![claim(0, 7, Some(2)), claim(1, 7, Some(2))],
                split(vec![0, 1], ConflictKind::SameTimeline),
            ),
            (
                "different systems, even with newer timeline",
                vec![claim(0, 7, Some(1)), claim(1, 8, Some(5))],
                split(vec![0, 1], ConflictKind::SystemIdMismatch),
            ),
            (
                "unknown timeline",
                vec![claim(0, 7, Some(1)), claim(1, 7, None)],
                split(vec![0, 1], ConflictKind::TimelineUnknown),
            ),
            (
                "three, two tied on newest",
                vec![claim(0, 7, Some(1)), claim(1, 7, Some(3)), claim(2, 7, Some(3))],
                split(vec![0, 1, 2], ConflictKind::SameTimeline),
            ),
        ];
        for (name, claims, want) in cases {
            assert_eq!(elect(&claims), want, "{name}");
        }
    }

    fn replica(state: NodeState, weight: u32, lag_ms: Option<u64>, bytes: Option<u64>) -> NodeFacts {
        NodeFacts {
            state,
            role: Role::Replica,
            weight,
            timeline: None,
            lag: lag_ms.map(Duration::from_millis),
            lag_bytes: bytes,
        }
    }

    #[test]
    fn eligibility_table() {
        use Eligibility::*;
        use NodeState::*;
        let policy = Policy {
            max_lag: Duration::from_millis(100),
            max_lag_bytes: Some(1000),
            answers: Answers::Count(1),
            fallback: Fallback::Primary,
            locality: crate::config::LocalityPolicy::Prefer,
        };
        let mut primary = replica(Up, 100, None, None);
        primary.role = Role::Primary;
        let cases: Vec<(&str, NodeFacts, bool, Eligibility)> = vec![
            ("healthy", replica(Up, 100, Some(5), Some(10)), true, Eligible),
            ("at the bound", replica(Up, 100, Some(100), Some(1000)), true, Eligible),
            ("not a member", replica(Up, 100, Some(5), Some(10)), false, Ineligible(Reason::NotMember)),
            ("never probed", replica(Unknown, 100, None, None), true, Ineligible(Reason::NotProbed)),
            ("down", replica(Down, 100, Some(0), Some(0)), true, Ineligible(Reason::Down)),
            ("primary", primary, true, Ineligible(Reason::Primary)),
            ("drained", replica(Up, 0, Some(0), Some(0)), true, Ineligible(Reason::Drained)),
            ("lag unknown", replica(Up, 100, None, None), true, Ineligible(Reason::LagUnknown)),
            (
                "time lag over",
                replica(Up, 100, Some(101), Some(0)),
                true,
                Ineligible(Reason::Lag { lag: Duration::from_millis(101), max: Duration::from_millis(100) }),
            ),
            (
                "byte lag over",
                replica(Up, 100, Some(0), Some(1001)),
                true,
                Ineligible(Reason::LagBytes { bytes: 1001, max: 1000 }),
            ),
        ];
        for (name, node, member, want) in cases {
            assert_eq!(evaluate(&node, member, &policy, None), want, "{name}");
        }
        let no_byte_bound = Policy { max_lag_bytes: None, ..policy };
        assert_eq!(evaluate(&replica(Up, 1, Some(0), Some(u64::MAX)), true, &no_byte_bound, None), Eligible);
        // a replica on an older timeline than the primary: following a dead old primary
        let mut old = replica(Up, 100, Some(0), Some(0));
        old.timeline = Some(Timeline(1));
        let want = Ineligible(Reason::Timeline { replica: Timeline(1), primary: Timeline(2) });
        assert_eq!(evaluate(&old, true, &policy, Some(Timeline(2))), want);
        assert_eq!(want.to_string(), "ineligible: timeline 1 behind the primary's 2");
        assert_eq!(evaluate(&old, true, &policy, Some(Timeline(1))), Eligible, "same timeline");
        old.timeline = None;
        assert_eq!(evaluate(&old, true, &policy, Some(Timeline(2))), Eligible, "unknown: lag decides");
    }
}
