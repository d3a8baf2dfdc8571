//! Patroni discovery (SPEC §11), the IO side: every `discovery_interval`, `GET /cluster`
//! from the first member that answers (each tried in turn, one request timeout each),
//! the listing folded into the cluster's [`Membership`] (`patroni`), and, when the
//! members to probe changed, the effective config (`merge`) sent on as a reload: the
//! publisher and the probe supervisor take it exactly as they take a SIGHUP. What
//! Patroni says of each member (its role, state and lag) and how the rounds go are sent
//! to the publisher as [`Report`]s every round; they never change the config.
//!
//! Configs loaded from the file (the first one and each SIGHUP) come in here first.

pub mod merge;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PatroniSource};
use crate::patroni::{discover, parse_cluster, Membership, PatroniView, Round};

/// The longest a request to one member may take (less when the interval is shorter).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What one discovery round of a cluster found, for `/status`, `/metrics` and TXT.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub cluster: String,
    /// Patroni's view of each member in the current list.
    pub members: Vec<(String, PatroniView)>,
    /// Consecutive rounds in which no member answered.
    pub failed_rounds: u32,
    /// Rounds in which no member answered, since start.
    pub failures: u64,
    pub last_error: Option<String>,
    /// When a member last answered.
    pub last_listed: Option<SystemTime>,
    /// Listed members that are not nodes, and why.
    pub left_out: Vec<(String, String)>,
}

/// The discovery state of every cluster with `patroni`.
pub struct Discovery {
    base: Arc<Config>,
    clusters: HashMap<String, ClusterDiscovery>,
}

#[derive(Default)]
struct ClusterDiscovery {
    membership: Membership,
    failures: u64,
    last_listed: Option<SystemTime>,
}

impl Discovery {
    pub fn new(base: Arc<Config>) -> Discovery {
        Discovery { base, clusters: HashMap::new() }
    }

    /// The loaded config with the members discovered so far, and the members left out.
    pub fn effective(&self) -> (Arc<Config>, Vec<(String, String, merge::Left)>) {
        let found = self
            .clusters
            .iter()
            .map(|(name, c)| (name.clone(), c.membership.nodes().cloned().collect::<Vec<_>>()))
            .collect();
        let (config, left) = merge::effective(&self.base, &found);
        (Arc::new(config), left)
    }

    /// A config loaded from the file: clusters without `patroni` forget their members.
    fn rebase(&mut self, base: Arc<Config>) {
        self.clusters.retain(|name, _| base.clusters.iter().any(|c| c.name == *name && c.patroni.is_some()));
        self.base = base;
    }

    fn sources(&self) -> Vec<(String, PatroniSource)> {
        self.base.clusters.iter().filter_map(|c| c.patroni.clone().map(|p| (c.name.clone(), p))).collect()
    }

    /// Folds one round of `cluster`; true when the members to probe changed.
    fn fold(&mut self, cluster: &str, round: Round, now: SystemTime) -> bool {
        let c = self.clusters.entry(cluster.to_owned()).or_default();
        match &round {
            Round::Listed(_) => c.last_listed = Some(now),
            Round::Failed(error) => {
                c.failures += 1;
                tracing::warn!(cluster, %error, "Patroni discovery: no member answered; keeping the last list");
            }
        }
        let (next, changes) = c.membership.next(round);
        c.membership = next;
        for name in &changes.added {
            tracing::info!(cluster, node = %name, "Patroni discovery: member added");
        }
        for name in &changes.removed {
            tracing::info!(cluster, node = %name, "Patroni discovery: member removed (missing from 3 listings)");
        }
        !changes.is_empty()
    }

    fn report(&self, cluster: &str, left: &[(String, String, merge::Left)]) -> Report {
        let c = self.clusters.get(cluster);
        let m = c.map(|c| &c.membership);
        Report {
            cluster: cluster.to_owned(),
            members: m.map(|m| m.nodes().map(|n| (n.name.clone(), n.patroni.clone())).collect()).unwrap_or_default(),
            failed_rounds: m.map_or(0, |m| m.failed_rounds),
            failures: c.map_or(0, |c| c.failures),
            last_error: m.and_then(|m| m.last_error.clone()),
            last_listed: c.and_then(|c| c.last_listed),
            left_out: left
                .iter()
                .filter(|(c, ..)| c == cluster)
                .map(|(_, name, why)| (name.clone(), format!("{why:?}")))
                .collect(),
        }
    }

    /// One round for every cluster with `patroni` (at start, before anything is probed).
    pub async fn round_all(&mut self) {
        for (cluster, source) in self.sources() {
            let round = fetch(&source).await;
            self.fold(&cluster, round, SystemTime::now());
        }
    }

    /// Every cluster's report as of now.
    pub fn reports(&self) -> Vec<Report> {
        let (_, left) = self.effective();
        self.sources().iter().map(|(cluster, _)| self.report(cluster, &left)).collect()
    }
}

/// Runs discovery until `cancel`: configs loaded from the file come in on `loaded`; the
/// effective configs go out on `out`, the reports on `reports`.
pub async fn run(
    mut discovery: Discovery,
    mut loaded: mpsc::Receiver<Arc<Config>>,
    out: mpsc::Sender<Arc<Config>>,
    reports: mpsc::Sender<Report>,
    cancel: CancellationToken,
) {
    let mut due: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            base = loaded.recv() => {
                let Some(base) = base else { return };
                discovery.rebase(base);
                let (config, _) = discovery.effective();
                if out.send(config).await.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                for (cluster, source) in discovery.sources() {
                    let next = due.entry(cluster.clone()).or_insert(now);
                    if *next > now {
                        continue;
                    }
                    *next = now + source.interval;
                    let round = fetch(&source).await;
                    let changed = discovery.fold(&cluster, round, SystemTime::now());
                    let (config, left) = discovery.effective();
                    if changed && out.send(config).await.is_err() {
                        return;
                    }
                    let _ = reports.send(discovery.report(&cluster, &left)).await;
                }
            }
        }
    }
}

/// `GET /cluster` from the first member that answers with a document.
async fn fetch(source: &PatroniSource) -> Round {
    let timeout = REQUEST_TIMEOUT.min(source.interval.max(Duration::from_millis(200)));
    let mut errors = Vec::new();
    for member in &source.members {
        let url = format!("{member}/cluster");
        let got = tokio::task::spawn_blocking({
            let url = url.clone();
            move || get(&url, timeout)
        })
        .await
        .unwrap_or_else(|e| Err(format!("request task failed: {e}")));
        match got.and_then(|body| parse_cluster(&body).map_err(|e| e.to_string())) {
            Ok(doc) => return Round::Listed(discover(&doc, &source.node_dsn).nodes),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Round::Failed(errors.join("; "))
}

fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeout))
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    // Patroni answers /cluster with 200 (503 only from very old versions' leaderless
    // clusters, whose body is the same document)
    let status = response.status();
    let body = response.body_mut().with_config().limit(1 << 20).read_to_vec().map_err(|e| e.to_string())?;
    if !(status.is_success() || status.as_u16() == 503) {
        return Err(format!("HTTP {status}"));
    }
    Ok(body)
}
