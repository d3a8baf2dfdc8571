//! The one writer: folds observations into cluster state, builds a new snapshot and
//! swaps it in atomically. Readers load the current snapshot and never wait.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::snapshot::Snapshot;

/// The current snapshot, shared by the publisher (writer) and every reader.
pub struct Published {
    current: ArcSwap<Snapshot>,
    changes: watch::Sender<Arc<Snapshot>>,
}

impl Published {
    pub fn new(initial: Snapshot) -> Arc<Published> {
        let initial = Arc::new(initial);
        let (changes, _) = watch::channel(initial.clone());
        Arc::new(Published { current: ArcSwap::new(initial), changes })
    }

    /// The current snapshot (one atomic load; never blocks).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes a new snapshot to readers and subscribers.
    pub fn store(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        self.changes.send_replace(snapshot);
    }

    /// A receiver woken on each new snapshot (for state derived from it, e.g. DNS zones).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }
}

use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::probe::Observation;
use crate::state::{ClusterState, Event};

/// The single writer of cluster state.
pub struct Publisher {
    config: Arc<Config>,
    clusters: Vec<ClusterState>,
    published: Arc<Published>,
    /// Sticky: once every node has been probed, a reload adding nodes does not make
    /// the endpoints SERVFAIL again.
    ready: bool,
}

impl Publisher {
    pub fn new(config: Arc<Config>, published: Arc<Published>) -> Publisher {
        let h = crate::lag::evidence_window(&config);
        let clusters = config.clusters.iter().map(|c| ClusterState::new(c, &config.probe, h)).collect();
        Publisher { config, clusters, published, ready: false }
    }

    /// Folds one observation and publishes the result. Observations of nodes no longer
    /// configured (in flight across a reload) are ignored.
    pub fn observe(&mut self, obs: &Observation) {
        let Some(c) = self.clusters.iter().position(|c| c.config().name == *obs.node.cluster) else { return };
        let Some(n) = self.clusters[c].node_index(&obs.node.node) else { return };
        let events = self.clusters[c].observe(n, obs);
        log_events(&self.clusters[c].config().name, &events);
        self.publish(obs.wall);
    }

    /// Switches to a new config, keeping what is known of clusters and nodes that keep
    /// their names, and publishes.
    pub fn reload(&mut self, config: Arc<Config>) {
        let (h, now) = (crate::lag::evidence_window(&config), SystemTime::now());
        let old = std::mem::take(&mut self.clusters);
        self.clusters = config
            .clusters
            .iter()
            .map(|c| match old.iter().find(|o| o.config().name == c.name) {
                Some(o) => o.reconfigure(c, &config.probe, h, now),
                None => ClusterState::new(c, &config.probe, h),
            })
            .collect();
        self.config = config;
        self.publish(now);
    }

    fn publish(&mut self, now: SystemTime) {
        self.ready = self.ready || self.clusters.iter().all(ClusterState::probed_all);
        let views = self.clusters.iter().map(ClusterState::view).collect();
        let prev = self.published.load();
        let next = crate::snapshot::Snapshot::next(&prev, self.config.clone(), views, self.ready, now);
        if next.serial != prev.serial {
            tracing::debug!(serial = next.serial, "answer set changed");
        }
        self.published.store(next);
    }

    /// Folds observations and config reloads until `cancel`. Each reload is applied
    /// here first and then passed on to `forward` (the probe supervisor), so a new
    /// node's state exists before its first observation arrives.
    pub async fn run(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        mut reloads: mpsc::Receiver<Arc<Config>>,
        forward: Option<mpsc::Sender<Arc<Config>>>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some(obs) = observations.recv() => self.observe(&obs),
                Some(config) = reloads.recv() => {
                    self.reload(config.clone());
                    if let Some(forward) = &forward {
                        let _ = forward.send(config).await;
                    }
                }
                else => return,
            }
        }
    }
}

fn log_events(cluster: &str, events: &[Event]) {
    for e in events {
        match e {
            Event::NodeState { node, from, to } => {
                tracing::warn!(cluster, node = %node, %from, %to, "node state changed")
            }
            Event::Write { from, to } => tracing::warn!(cluster, %from, %to, "write target changed"),
            Event::SplitBrain { nodes, why } => {
                tracing::error!(cluster, nodes = ?nodes, why = %why, "split brain: several nodes out of recovery (see why)")
            }
            Event::Eligibility { endpoint, node, verdict } => {
                tracing::info!(cluster, endpoint = %endpoint, node = %node, verdict = %verdict, "eligibility changed")
            }
        }
    }
}
