//! Hand-built snapshots for the tests of what renders a snapshot (DNS answers, TXT,
//! `/status`, `/metrics`), unit and integration tests alike. The server never uses it.
//!
//! The config is parsed from TOML as operators write it; each node's facts are set by
//! the test; every endpoint's verdicts are then computed by `topology::evaluate`, as the
//! publisher does (without `rise` debouncing), so a fixture cannot claim a verdict the
//! decision code would not reach.
//!
//! ```
//! use lagdns::health::NodeState;
//! use lagdns::snapshot::WriteTarget;
//! use lagdns::testkit::SnapshotBuilder;
//! use lagdns::topology::Role;
//! use std::time::Duration;
//!
//! let snap = SnapshotBuilder::new(
//!     r#"
//!     [[cluster]]
//!     name = "main"
//!     [[cluster.node]]
//!     name = "pg1"
//!     address = "10.0.0.1"
//!     dsn = "host=10.0.0.1"
//!     [[cluster.node]]
//!     name = "pg2"
//!     address = "10.0.0.2"
//!     dsn = "host=10.0.0.2"
//!     "#,
//! )
//! .write("main", WriteTarget::Primary(0))
//! .each_node("main", |_, n| n.state = NodeState::Up)
//! .node("main", "pg1", |n| n.role = Role::Primary)
//! .node("main", "pg2", |n| {
//!     n.role = Role::Replica;
//!     (n.lag, n.lag_bytes) = (Some(Duration::ZERO), Some(0));
//! })
//! .build();
//! assert_eq!(snap.clusters[0].endpoints[0].eligible, [1]);
//! ```

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::snapshot::{ClusterView, EndpointView, NodeView, Snapshot, WriteTarget};
use crate::topology::evaluate;

/// Builds a [`Snapshot`]: ready, serial 1, built at the Unix epoch, every node unprobed
/// until the test says otherwise.
pub struct SnapshotBuilder {
    snap: Snapshot,
}

impl SnapshotBuilder {
    /// From config text; panics with the config error if it does not validate.
    pub fn new(toml: &str) -> SnapshotBuilder {
        let config = Config::parse(toml, "testkit.toml").unwrap_or_else(|e| panic!("fixture config: {e}"));
        SnapshotBuilder::from_config(config)
    }

    pub fn from_config(config: Config) -> SnapshotBuilder {
        let mut snap = Snapshot::initial(Arc::new(config), 1, SystemTime::UNIX_EPOCH);
        snap.ready = true;
        SnapshotBuilder { snap }
    }

    pub fn serial(mut self, serial: u32) -> Self {
        self.snap.serial = serial;
        self
    }

    pub fn ready(mut self, ready: bool) -> Self {
        self.snap.ready = ready;
        self
    }

    pub fn built(mut self, at: SystemTime) -> Self {
        self.snap.built = at;
        self
    }

    pub fn answer_changes(mut self, n: u64) -> Self {
        self.snap.answer_changes = n;
        self
    }

    /// Sets what `write` answers in `cluster`.
    pub fn write(self, cluster: &str, target: WriteTarget) -> Self {
        self.cluster(cluster, |c| c.write = target)
    }

    /// Changes anything else of `cluster`'s view (primary LSN, rivals, counters).
    pub fn cluster(mut self, cluster: &str, f: impl FnOnce(&mut ClusterView)) -> Self {
        f(self.view(cluster));
        self
    }

    /// Sets the facts of one node.
    pub fn node(mut self, cluster: &str, node: &str, f: impl FnOnce(&mut NodeView)) -> Self {
        let view = self.view(cluster);
        let n = view.nodes.iter_mut().find(|n| n.name == node);
        f(n.unwrap_or_else(|| panic!("no node {node} in cluster {cluster}")));
        self
    }

    /// Sets the facts of every node of `cluster`, with its index.
    pub fn each_node(mut self, cluster: &str, mut f: impl FnMut(usize, &mut NodeView)) -> Self {
        for (i, n) in self.view(cluster).nodes.iter_mut().enumerate() {
            f(i, n);
        }
        self
    }

    /// The snapshot, with every endpoint's verdicts and eligible set computed.
    pub fn build(mut self) -> Snapshot {
        reevaluate(&mut self.snap);
        self.snap
    }

    fn view(&mut self, cluster: &str) -> &mut ClusterView {
        let c = self.snap.clusters.iter_mut().find(|c| c.name == cluster);
        Arc::make_mut(c.unwrap_or_else(|| panic!("no cluster {cluster}")))
    }
}

/// Recomputes every endpoint's verdicts and eligible set from the node facts, the
/// endpoint policies and the primary's timeline (for a test that changed node facts
/// after building).
pub fn reevaluate(snap: &mut Snapshot) {
    let config = snap.config.clone();
    for (view, cfg) in snap.clusters.iter_mut().zip(&config.clusters) {
        let view = Arc::make_mut(view);
        let timeline = view.primary_timeline();
        for (ep, ep_cfg) in view.endpoints.iter_mut().zip(&cfg.endpoints) {
            let member = |n: &NodeView| ep_cfg.nodes.contains(&n.name);
            let verdicts = view.nodes.iter().map(|n| evaluate(&n.facts(), member(n), &ep.policy, timeline)).collect();
            *ep = EndpointView::new(ep.label.clone(), ep.policy, verdicts, &view.nodes);
        }
    }
}
