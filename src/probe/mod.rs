//! Probing: one task per node observes it and reports an [`Observation`] per tick.
//!
//! The types here are plain data read by the decision modules; the IO lives in `task`
//! (one node) and `supervisor` (a task per node, across reloads), the SQL in `sql`,
//! password handling in `secret`, the TLS connector in `tls`.

pub mod secret;
pub mod sql;
pub mod supervisor;
pub mod task;
pub mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::wal::{Lsn, SystemId, Timeline};

/// Identifies a node across config reloads: cluster name and node name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub cluster: Arc<str>,
    pub node: Arc<str>,
}

impl NodeId {
    pub fn new(cluster: &str, node: &str) -> NodeId {
        NodeId { cluster: cluster.into(), node: node.into() }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.node)
    }
}

/// One probe of one node.
#[derive(Debug, Clone)]
pub struct Observation {
    pub node: NodeId,
    /// Monotonic time at which the node's values were read (send time + RTT/2).
    pub at: Instant,
    /// Wall-clock twin of `at`, for `/status`.
    pub wall: SystemTime,
    /// How long the probe took (connect included when it had to connect).
    pub duration: Duration,
    pub result: Result<Sample, ProbeFailure>,
}

/// What a successful probe read from the node, in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// `pg_control_system().system_identifier`.
    pub system_id: SystemId,
    /// On a primary, the timeline of `pg_current_wal_lsn()`; on a replica, the timeline
    /// it receives (`pg_stat_wal_receiver.received_tli`), if known (see `sql`).
    pub timeline: Option<Timeline>,
    /// On a primary: `pg_current_wal_lsn()`.
    pub current_lsn: Option<Lsn>,
    /// On a replica: `pg_last_wal_receive_lsn()`.
    pub receive_lsn: Option<Lsn>,
    /// On a replica: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// On a replica: `pg_is_wal_replay_paused()`. Informational only.
    pub replay_paused: bool,
}

/// Why a probe failed. `Display` is what `/status` and TXT show; it never contains a
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Connect(String),
    #[error("query: {0}")]
    Query(String),
}
