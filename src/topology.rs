//! Topology decisions: each node's role, primary election (split brain included), and
//! each node's eligibility for a read endpoint with the reason when it is not.

use std::fmt;
use std::time::Duration;

use crate::config::Policy;
use crate::config::format_duration;
use crate::health::NodeState;
use crate::snapshot::NodeView;

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
    Lag { lag: Duration, max: Duration },
    LagBytes { bytes: u64, max: u64 },
    /// Within bounds, waiting for `need` consecutive good probes (has `seen`).
    Rising { seen: u32, need: u32 },
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

/// Eligibility of one node under `policy`, without hysteresis: what a single probe
/// says. Used by the publisher (which adds `rise` debouncing) and by per-query
/// policies (`maxlag-N`), which are evaluated as they come.
pub fn evaluate(node: &NodeView, member: bool, policy: &Policy) -> Eligibility {
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
