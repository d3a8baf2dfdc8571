//! The one writer: folds observations and config reloads into cluster state, builds
//! the next snapshot from it and publishes it to the [`Store`]. The store (`store`) is
//! the value readers load; this is the only code that writes it.
//!
//! Publishing is paced by its own cost: after a publish that took `d`, observations are
//! folded for `PACE × d` before the next one, so building snapshots takes at most
//! about a quarter of a core however large the config (with three nodes a publish takes
//! tens of microseconds, and the wait with it; with a thousand nodes in one cluster,
//! milliseconds). Observations that change only probe bookkeeping (a node probed again
//! and found as it was: its counters and probe times move, nothing an answer, TXT line
//! or verdict shows) wait `ROUTINE_PACE × d`, so that budget is a twentieth of a core:
//! a thousand nodes down, each failing the same way every interval, no longer keep the
//! publisher at its limit, and every other change is published as soon as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, Config};
use crate::discovery::Report;
use crate::probe::Observation;
use crate::snapshot::{ClusterView, DiscoveryView, Snapshot};
use crate::state::{ClusterState, Event};
use crate::store::Store;

/// The single writer of cluster state.
pub struct Publisher<D> {
    config: Arc<Config>,
    clusters: Vec<ClusterState>,
    /// Cluster name → index in `clusters`: an observation names its cluster, and with
    /// hundreds of clusters a search by name per observation showed in the profile.
    by_name: FxHashMap<Arc<str>, usize>,
    store: Arc<Store<D>>,
    /// Sticky: once every node has been probed, a reload adding nodes does not make
    /// the endpoints SERVFAIL again.
    ready: bool,
    /// The last Patroni discovery report of each cluster with `patroni`, by name.
    reports: HashMap<String, Report>,
    /// Not before this may the next publish start (see the module's header).
    next: Instant,
    /// Not before this may a publish of bookkeeping alone start.
    next_routine: Instant,
    /// The latest observation time folded but not published yet.
    unpublished: Option<SystemTime>,
    /// Whether what is folded and not published yet changes more than bookkeeping.
    shown: bool,
}

/// A publish that took `d` is followed by at least `PACE × d` of folding only.
const PACE: u32 = 3;
/// ... and, when only probe bookkeeping changed since, `ROUTINE_PACE × d`.
const ROUTINE_PACE: u32 = 19;

impl<D: Send + Sync + 'static> Publisher<D> {
    pub fn new(config: Arc<Config>, store: Arc<Store<D>>) -> Publisher<D> {
        let h = crate::lag::evidence_window(&config);
        let clusters = config.clusters.iter().map(|c| ClusterState::new(c, &config.probe, h)).collect();
        let by_name = index_by_name(&config);
        let next = Instant::now();
        let reports = HashMap::new();
        Publisher {
            config,
            clusters,
            by_name,
            store,
            ready: false,
            reports,
            next,
            next_routine: next,
            unpublished: None,
            shown: false,
        }
    }

    /// Folds one observation and publishes the result. Observations of nodes no longer
    /// configured (in flight across a reload) are ignored.
    pub fn observe(&mut self, obs: &Observation) {
        self.fold(obs);
        self.publish(obs.wall);
    }

    /// Folds observations into the clusters' state without publishing.
    fn fold(&mut self, obs: &Observation) {
        let Some(&c) = self.by_name.get(&obs.node.cluster) else { return };
        let Some(n) = self.clusters[c].node_index(&obs.node.node) else { return };
        let folded = self.clusters[c].observe(n, obs);
        self.shown |= folded.shown;
        log_events(&self.clusters[c].config().name, &folded.events);
    }

    /// When what is folded and not published yet may be published.
    fn due(&self) -> Instant {
        if self.shown {
            self.next
        } else {
            self.next_routine
        }
    }

    /// Folds `first` and every observation already waiting in `observations`, then
    /// publishes once if the pace allows (else `run` does when it does): with many
    /// nodes, observations arrive faster than snapshots (and their zones) can be built
    /// one each, and none waits for the ones before it to be published.
    fn observe_waiting(&mut self, first: &Observation, observations: &mut mpsc::Receiver<Observation>) {
        self.fold(first);
        let mut wall = self.unpublished.map_or(first.wall, |w| w.max(first.wall));
        while let Ok(obs) = observations.try_recv() {
            self.fold(&obs);
            wall = wall.max(obs.wall);
        }
        self.unpublished = Some(wall);
        if Instant::now() >= self.due() {
            self.publish(wall);
        }
    }

    /// Switches to a new config, keeping what is known of clusters and nodes that keep
    /// their names, and publishes.
    pub fn reload(&mut self, config: Arc<Config>, now: SystemTime) {
        let h = crate::lag::evidence_window(&config);
        let old = std::mem::take(&mut self.clusters);
        self.clusters = config
            .clusters
            .iter()
            .map(|c| match self.by_name.get(c.name.as_str()).and_then(|&i| old.get(i)) {
                Some(o) => o.reconfigure(c, &config.probe, h, now),
                None => ClusterState::new(c, &config.probe, h),
            })
            .collect();
        self.by_name = index_by_name(&config);
        self.config = config;
        self.publish(now);
    }

    /// Takes a Patroni discovery report (what Patroni says of each member, how the
    /// rounds go) and publishes it; it changes no decision.
    pub fn report(&mut self, report: Report, now: SystemTime) {
        self.reports.insert(report.cluster.clone(), report);
        self.publish(now);
    }

    /// A cluster's view with what the last discovery report says; the view itself
    /// (shared, not copied) when it has neither Patroni nor a report.
    fn with_report(&self, cfg: &ClusterConfig, view: Arc<ClusterView>) -> Arc<ClusterView> {
        let report = self.reports.get(&cfg.name);
        if report.is_none() && cfg.patroni.is_none() {
            return view;
        }
        let mut view = Arc::unwrap_or_clone(view);
        let Some(r) = report else {
            view.discovery = Some(DiscoveryView::default());
            return Arc::new(view);
        };
        for node in &mut view.nodes {
            node.patroni = r.members.iter().find(|(name, _)| *name == node.name).map(|(_, v)| v.clone());
        }
        view.discovery = Some(DiscoveryView {
            failed_rounds: r.failed_rounds,
            failures: r.failures,
            last_error: r.last_error.clone(),
            last_listed: r.last_listed,
            left_out: r.left_out.clone(),
            unresolved: r.unresolved.clone(),
        });
        Arc::new(view)
    }

    fn publish(&mut self, now: SystemTime) {
        let started = Instant::now();
        self.ready = self.ready || self.clusters.iter().all(ClusterState::probed_all);
        // index-aligned: `clusters` is built from `config.clusters` in order
        let views =
            self.clusters.iter().zip(&self.config.clusters).map(|(c, cfg)| self.with_report(cfg, c.view())).collect();
        let prev = self.store.load();
        let next = Snapshot::next(&prev.snapshot, self.config.clone(), views, self.ready, now);
        if next.serial != prev.snapshot.serial {
            tracing::debug!(serial = next.serial, "answer set changed");
        }
        self.store.publish(next);
        self.unpublished = None;
        self.shown = false;
        let (end, cost) = (Instant::now(), started.elapsed());
        self.next = end + cost * PACE;
        self.next_routine = end + cost * ROUTINE_PACE;
    }

    /// Folds observations, config reloads and discovery reports until `cancel`. Each reload is applied
    /// here first and then passed on to `forward` (the probe supervisor), so a new
    /// node's state exists before its first observation arrives.
    pub async fn run(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        mut reloads: mpsc::Receiver<Arc<Config>>,
        mut reports: mpsc::Receiver<Report>,
        forward: Option<mpsc::Sender<Arc<Config>>>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(self.due()), if self.unpublished.is_some() => {
                    self.publish(self.unpublished.unwrap_or_else(SystemTime::now));
                }
                Some(obs) = observations.recv() => self.observe_waiting(&obs, &mut observations),
                Some(report) = reports.recv() => self.report(report, SystemTime::now()),
                Some(config) = reloads.recv() => {
                    self.reload(config.clone(), SystemTime::now());
                    if let Some(forward) = &forward {
                        let _ = forward.send(config).await;
                    }
                }
                else => return,
            }
        }
    }
}

/// Each cluster's index by name.
fn index_by_name(config: &Config) -> FxHashMap<Arc<str>, usize> {
    config.clusters.iter().enumerate().map(|(i, c)| (Arc::from(c.name.as_str()), i)).collect()
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::probe::{NodeId, ProbeFailure, Sample};
    use crate::testkit::SnapshotBuilder;
    use crate::wal::{Lsn, SystemId, Timeline};

    const CONFIG: &str = "[dns]\nzone = \"db.internal\"\n[[cluster]]\nname = \"main\"\n\
        node = [{ name = \"pg1\", address = \"10.0.0.1\", dsn = \"host=a\" }, { name = \"pg2\", address = \"10.0.0.2\", dsn = \"host=b\" }]\n";

    fn failed(node: &str, ms: u64) -> Observation {
        #[allow(clippy::disallowed_methods)] // a base instant: the publisher takes time from the observation
        let at = Instant::now() + Duration::from_millis(ms);
        Observation {
            node: NodeId::new("main", node),
            at,
            wall: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            duration: Duration::from_millis(1),
            result: Err(ProbeFailure::Timeout(Duration::from_secs(1))),
        }
    }

    // paused time: a publish takes no time, so the pace never holds one back
    #[tokio::test(start_paused = true)]
    async fn observations_waiting_together_are_published_as_one_snapshot() {
        let snap = SnapshotBuilder::new(CONFIG).ready(false).build();
        let config = snap.config.clone();
        // the derived part counts the snapshots published
        let store = Store::new(snap, |_, prev: Option<&usize>| prev.map_or(0, |n| n + 1));
        let mut publisher = Publisher::new(config, store.clone());
        let (tx, mut rx) = mpsc::channel(16);
        for ms in 2..6 {
            tx.try_send(failed(if ms % 2 == 0 { "pg1" } else { "pg2" }, ms)).unwrap();
        }
        publisher.observe_waiting(&failed("pg2", 1), &mut rx);
        let generation = store.load();
        assert_eq!(generation.derived, 1, "five observations, one snapshot");
        assert!(generation.snapshot.ready, "every node's observation was folded");
        assert_eq!(generation.snapshot.built, SystemTime::UNIX_EPOCH + Duration::from_millis(5), "at the latest");
        publisher.observe_waiting(&failed("pg1", 9), &mut rx);
        assert_eq!(store.load().derived, 2, "alone, at once");
    }

    /// A cluster with no observation since the last publish is shared into the next
    /// snapshot (what lets `Snapshot::next` and the zone skip it); the observed one is
    /// new, and neither has a discovery view without Patroni.
    #[tokio::test(start_paused = true)]
    async fn a_cluster_nothing_happened_to_is_the_same_value_in_the_next_snapshot() {
        let two = format!(
            "{CONFIG}[[cluster]]\nname = \"other\"\nread = \"read-o\"\nwrite = \"write-o\"\n\
             node = [{{ name = \"pg1\", address = \"10.0.1.1\", dsn = \"host=c\" }}]\n"
        );
        let snap = SnapshotBuilder::new(&two).ready(false).build();
        let config = snap.config.clone();
        let store = Store::new(snap, |_, _: Option<&()>| ());
        let mut publisher = Publisher::new(config, store.clone());
        publisher.observe(&failed("pg1", 1));
        let before = store.load().snapshot.clone();
        publisher.observe(&failed("pg2", 2));
        let after = store.load().snapshot.clone();
        assert!(!Arc::ptr_eq(&before.clusters[0], &after.clusters[0]), "main was observed");
        assert!(Arc::ptr_eq(&before.clusters[1], &after.clusters[1]), "other was not");
        assert_eq!(after.clusters[1].name, "other");
        assert!(after.clusters[1].discovery.is_none(), "no Patroni, no discovery view");
    }

    /// A reload keeps what is known of each cluster by its name, wherever the new
    /// config puts it.
    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_each_clusters_state_by_name_in_any_order() {
        let other = "[[cluster]]\nname = \"other\"\nread = \"read-o\"\nwrite = \"write-o\"\n\
                     node = [{ name = \"pg1\", address = \"10.0.1.1\", dsn = \"host=c\" }]\n";
        let (head, main) = CONFIG.split_at(CONFIG.find("[[cluster]]").unwrap());
        let snap = SnapshotBuilder::new(&format!("{CONFIG}{other}")).ready(false).build();
        let swapped = SnapshotBuilder::new(&format!("{head}{other}{main}")).ready(false).build().config;
        let config = snap.config.clone();
        let store = Store::new(snap, |_, _: Option<&()>| ());
        let mut publisher = Publisher::new(config, store.clone());
        publisher.observe(&failed("pg1", 1));
        publisher.observe(&failed("pg1", 2));
        publisher.reload(swapped, SystemTime::UNIX_EPOCH + Duration::from_millis(3));
        let after = store.load().snapshot.clone();
        let names: Vec<&str> = after.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["other", "main"]);
        assert_eq!(after.clusters[1].nodes[0].probes, 2, "main's pg1 kept its two probes");
        assert_eq!(after.clusters[0].nodes[0].probes, 0, "other's pg1 was never probed");
    }

    fn probed(node: &str, ms: u64) -> Observation {
        let sample = Sample {
            in_recovery: false,
            system_id: SystemId(1),
            timeline: Some(Timeline(1)),
            current_lsn: Some(Lsn(ms)),
            receive_lsn: None,
            replay_lsn: None,
            replay_paused: false,
        };
        Observation { result: Ok(sample), ..failed(node, ms) }
    }

    /// Sends `count` observations (`make(ms)`), one per 2 ms, to a publisher whose
    /// publishes take `COST`; then waits for the last to be published. Returns how
    /// many publishes there were and how long sending took.
    async fn paced_run(count: u64, make: fn(u64) -> Observation, wait: Duration) -> (usize, Duration) {
        let snap = SnapshotBuilder::new(CONFIG).ready(false).build();
        let config = snap.config.clone();
        let store = Store::new(snap, |_, prev: Option<&usize>| {
            if prev.is_some() {
                std::thread::sleep(COST);
            }
            prev.map_or(0, |n| n + 1)
        });
        let (tx, rx) = mpsc::channel(1024);
        let ((_reload, reloads), (_report, reports)) = (mpsc::channel(1), mpsc::channel(1));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Publisher::new(config, store.clone()).run(rx, reloads, reports, None, cancel.clone()));
        #[allow(clippy::disallowed_methods)] // real time: the publishes take real time
        let start = Instant::now();
        for ms in 0..count {
            tx.send(make(ms)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let sent = start.elapsed();
        tokio::time::sleep(wait).await;
        let generation = store.load();
        let last = SystemTime::UNIX_EPOCH + Duration::from_millis(count - 1);
        assert_eq!(generation.snapshot.built, last, "the last observation is published");
        cancel.cancel();
        task.await.unwrap();
        (generation.derived, sent)
    }

    const COST: Duration = Duration::from_millis(20);

    /// A publish that takes 20 ms is followed by 60 ms of folding only: observations
    /// that each move the primary's WAL, arriving every 2 ms, are published about once
    /// per 80 ms instead of back to back, and the last one is published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishing_is_paced_by_its_cost_and_loses_nothing() {
        let (publishes, sent) = paced_run(150, |ms| probed("pg1", ms), COST * (1 + PACE) * 2).await;
        // one publish per 80 ms (PACE 3) and the last; back to back, one per 20 ms
        assert_eq!(PACE, 3);
        let most = (sent.as_millis() / (COST * 4).as_millis()) as usize + 3;
        assert!(publishes <= most, "{publishes} publishes in {sent:?}: at most {most}");
    }

    /// Observations that change only probe bookkeeping (the same failure again and
    /// again) wait 19 publish costs: one publish per 400 ms, and the last one is
    /// published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bookkeeping_alone_is_published_at_a_slower_pace_and_not_lost() {
        let make = |ms| failed(if ms % 2 == 0 { "pg1" } else { "pg2" }, ms);
        let (publishes, sent) = paced_run(300, make, COST * (1 + ROUTINE_PACE) * 2).await;
        assert_eq!(ROUTINE_PACE, 19);
        // the first failure of each node is shown (its error), later ones are not
        let most = (sent.as_millis() / (COST * 20).as_millis()) as usize + 4;
        assert!(publishes <= most, "{publishes} publishes in {sent:?}: at most {most}");
    }
}
