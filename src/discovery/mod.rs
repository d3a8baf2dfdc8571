//! Patroni discovery (SPEC §11), the IO side: every `discovery_interval`, `GET /cluster`
//! from the first member that answers (each tried in turn, one request timeout each),
//! the listing folded into the cluster's [`Membership`] (`patroni`), and, when the
//! members to probe changed, the effective config (`merge`) sent on as a reload: the
//! publisher and the probe supervisor take it exactly as they take a SIGHUP. What
//! Patroni says of each member (its role, state and lag) and how the rounds go are sent
//! to the publisher as [`Report`]s every round; they never change the config.
//!
//! Host names (a node's `address`, a member's `host`) are resolved here too, with the
//! system resolver, at most every `discovery_interval` (1 s for clusters without
//! `patroni`); a failure keeps the last addresses and is reported.
//!
//! Configs loaded from the file (the first one and each SIGHUP) come in here first.

pub mod merge;

use std::collections::HashMap;
use std::net::IpAddr;
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
    /// Host names of the cluster's nodes whose last resolution failed, and why.
    pub unresolved: Vec<(String, String)>,
}

/// The discovery state of every cluster with `patroni`.
pub struct Discovery {
    base: Arc<Config>,
    clusters: HashMap<String, ClusterDiscovery>,
    /// What each host name last resolved to.
    resolved: HashMap<String, Vec<IpAddr>>,
    /// Host names whose last resolution failed, and why.
    unresolved: HashMap<String, String>,
    /// The effective config and the members it leaves out, rebuilt (`refresh`) only
    /// when the loaded config, a membership or a resolution changed.
    current: Arc<Config>,
    left: Vec<(String, String, merge::Left)>,
}

#[derive(Default)]
struct ClusterDiscovery {
    membership: Membership,
    failures: u64,
    last_listed: Option<SystemTime>,
}

impl Discovery {
    pub fn new(base: Arc<Config>) -> Discovery {
        let mut d = Discovery {
            current: base.clone(),
            base,
            clusters: HashMap::new(),
            resolved: HashMap::new(),
            unresolved: HashMap::new(),
            left: Vec::new(),
        };
        d.refresh();
        d
    }

    /// The loaded config with the members discovered so far.
    pub fn effective(&self) -> Arc<Config> {
        self.current.clone()
    }

    /// Rebuilds the effective config and the members it leaves out.
    fn refresh(&mut self) {
        let found = self
            .clusters
            .iter()
            .map(|(name, c)| (name.clone(), c.membership.nodes().cloned().collect::<Vec<_>>()))
            .collect();
        let (config, left) = merge::effective(&self.base, &found, &self.resolved);
        (self.current, self.left) = (Arc::new(config), left);
    }

    /// A config loaded from the file: clusters without `patroni` forget their members.
    fn rebase(&mut self, base: Arc<Config>) {
        self.clusters.retain(|name, _| base.clusters.iter().any(|c| c.name == *name && c.patroni.is_some()));
        self.base = base;
        self.refresh();
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
        let changed = !changes.is_empty();
        if changed {
            self.refresh();
        }
        changed
    }

    /// Resolves every host name of the effective config; true when an answer changed.
    async fn resolve_all(&mut self) -> bool {
        let mut changed = false;
        for host in merge::host_names(&self.current) {
            let lookup = tokio::net::lookup_host((host.as_str(), 0));
            let got = match tokio::time::timeout(REQUEST_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => {
                    let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                    ips.sort();
                    ips.dedup();
                    if ips.is_empty() {
                        Err("no addresses".to_string())
                    } else {
                        Ok(ips)
                    }
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
            };
            match got {
                Ok(ips) => {
                    self.unresolved.remove(&host);
                    if self.resolved.get(&host) != Some(&ips) {
                        tracing::info!(%host, addresses = ?ips, "host name resolved");
                        self.resolved.insert(host, ips);
                        changed = true;
                    }
                }
                Err(error) => {
                    if self.unresolved.get(&host) != Some(&error) {
                        tracing::warn!(%host, %error, "host name did not resolve; keeping its last addresses");
                    }
                    self.unresolved.insert(host, error);
                }
            }
        }
        if changed {
            self.refresh();
        }
        changed
    }

    fn report(&self, cluster: &str) -> Report {
        let hosts: Vec<&String> = self
            .base
            .clusters
            .iter()
            .filter(|c| c.name == cluster)
            .flat_map(|c| c.nodes.iter().filter_map(|n| n.host.as_ref()))
            .chain(self.clusters.get(cluster).into_iter().flat_map(|c| c.membership.nodes().map(|n| &n.host)))
            .collect();
        let unresolved =
            hosts.iter().filter_map(|h| self.unresolved.get(*h).map(|e| ((*h).clone(), e.clone()))).collect();
        let c = self.clusters.get(cluster);
        let m = c.map(|c| &c.membership);
        Report {
            cluster: cluster.to_owned(),
            members: m.map(|m| m.nodes().map(|n| (n.name.clone(), n.patroni.clone())).collect()).unwrap_or_default(),
            failed_rounds: m.map_or(0, |m| m.failed_rounds),
            failures: c.map_or(0, |c| c.failures),
            last_error: m.and_then(|m| m.last_error.clone()),
            last_listed: c.and_then(|c| c.last_listed),
            left_out: self
                .left
                .iter()
                .filter(|(c, ..)| c == cluster)
                .map(|(_, name, why)| (name.clone(), format!("{why:?}")))
                .collect(),
            unresolved,
        }
    }

    /// How often host names are resolved: the shortest `discovery_interval`, else 1 s.
    fn resolve_interval(&self) -> Duration {
        self.sources().iter().map(|(_, s)| s.interval).min().unwrap_or(Duration::from_secs(1))
    }

    /// One round for every cluster with `patroni`, and the host names resolved (at
    /// start, before anything is probed).
    pub async fn round_all(&mut self) {
        for (cluster, source) in self.sources() {
            let round = fetch(&source).await;
            self.fold(&cluster, round, SystemTime::now());
        }
        self.resolve_all().await;
    }

    /// The clusters reports are made for: those with `patroni` or a host name.
    fn reported(&self) -> Vec<String> {
        self.current
            .clusters
            .iter()
            .filter(|c| c.patroni.is_some() || c.nodes.iter().any(|n| n.host.is_some()))
            .map(|c| c.name.clone())
            .collect()
    }

    /// Every cluster's report as of now.
    pub fn reports(&self) -> Vec<Report> {
        self.reported().iter().map(|cluster| self.report(cluster)).collect()
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
    let mut resolve_due = tokio::time::Instant::now() + discovery.resolve_interval();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            base = loaded.recv() => {
                let Some(base) = base else { return };
                discovery.rebase(base);
                if out.send(discovery.effective()).await.is_err() {
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
                    if changed && out.send(discovery.effective()).await.is_err() {
                        return;
                    }
                    let _ = reports.send(discovery.report(&cluster)).await;
                }
                if now >= resolve_due {
                    resolve_due = now + discovery.resolve_interval();
                    let changed = discovery.resolve_all().await;
                    if changed && out.send(discovery.effective()).await.is_err() {
                        return;
                    }
                    for report in discovery.reports() {
                        let _ = reports.send(report).await;
                    }
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
