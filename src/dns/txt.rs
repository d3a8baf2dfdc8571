//! The TXT text of a name: one line per node (name, address, role, state, lag,
//! lag_bytes, weight and the verdict), rendered from the snapshot's node views and the
//! eligibility decided in `topology`. The wording is part of the contract (SPEC §5).

use std::fmt;
use std::time::SystemTime;

use crate::config::format_duration;
use crate::snapshot::{ClusterView, NodeView, WriteTarget};
use crate::topology::Eligibility;

/// One node's line in TXT answers: name, address, role, state,
/// lag, lag_bytes, weight and the verdict.
struct NodeLine<'a> {
    node: &'a NodeView,
    verdict: Verdict<'a>,
}

/// The last field of a [`NodeLine`]: for a read endpoint the node's eligibility, for
/// the write name whether `write` answers it.
enum Verdict<'a> {
    Read(Eligibility),
    Write { target: &'a WriteTarget, rivals: &'a [usize], me: usize, now: SystemTime },
}

impl fmt::Display for NodeLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.node;
        let lag = n.lag.map(format_duration).unwrap_or_else(|| "-".into());
        let bytes = n.lag_bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into());
        write!(
            f,
            "{} {} role={} state={} lag={} lag_bytes={} weight={} ",
            n.name, n.address, n.role, n.state, lag, bytes, n.weight
        )?;
        match &self.verdict {
            Verdict::Read(e) => write!(f, "{e}"),
            Verdict::Write { target, rivals, me, now } => write_verdict(f, target, rivals, *me, *now),
        }
    }
}

fn write_verdict(
    f: &mut fmt::Formatter<'_>,
    target: &WriteTarget,
    rivals: &[usize],
    me: usize,
    now: SystemTime,
) -> fmt::Result {
    match target {
        WriteTarget::Primary(i) if *i == me => f.write_str("write: answered"),
        WriteTarget::Stale { node, since } if *node == me => {
            let ago = now.duration_since(*since).unwrap_or_default();
            write!(f, "write: answered, stale (no primary reachable for {})", format_duration(ago))
        }
        WriteTarget::Conflict(c) if c.nodes.contains(&me) => {
            write!(f, "write: SERVFAIL, split brain ({})", c.why)
        }
        _ if rivals.contains(&me) => f.write_str("write: not answered, split brain (older timeline)"),
        _ => f.write_str("write: not answered"),
    }
}

/// TXT strings for the write name: one per node (`now` dates a stale primary).
pub fn write_lines(cluster: &ClusterView, now: SystemTime) -> Vec<String> {
    (0..cluster.nodes.len())
        .map(|i| {
            let verdict = Verdict::Write { target: &cluster.write, rivals: &cluster.rivals, me: i, now };
            NodeLine { node: &cluster.nodes[i], verdict }.to_string()
        })
        .collect()
}

/// TXT strings for read endpoint `ep`: one per node.
pub fn endpoint_lines(cluster: &ClusterView, ep: usize) -> Vec<String> {
    let view = &cluster.endpoints[ep];
    cluster
        .nodes
        .iter()
        .zip(&view.verdicts)
        .map(|(node, v)| NodeLine { node, verdict: Verdict::Read(*v) }.to_string())
        .collect()
}
