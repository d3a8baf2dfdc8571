//! `lagdns serve`: wires probes → publisher → snapshot → DNS and HTTP, reloads the
//! config on SIGHUP (an invalid one is logged and the old one kept) and drains on
//! SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, DnsConfig, HttpConfig};
use crate::discovery::Discovery;
use crate::dns::query::QueryStats;
use crate::dns::records::Zone;
use crate::dns::server::DnsServer;
use crate::http::Sources;
use crate::metrics::Reloads;
use crate::probe::Observation;
use crate::publisher::Publisher;
use crate::snapshot::Snapshot;
use crate::store::{Snapshots, Store};

/// How long shutdown waits for in-flight work.
const GRACE: Duration = Duration::from_secs(5);

/// A running server: DNS, HTTP, the publisher and one probe task per node.
pub struct Server {
    pub dns_addrs: Vec<SocketAddr>,
    pub http_addr: SocketAddr,
    /// Where HAProxy agent checks are answered (`http.agent_listen`), if anywhere.
    pub agent_addr: Option<SocketAddr>,
    store: Arc<Store<Zone>>,
    /// The outcome of the last reload, for `/metrics`.
    reloads: Arc<Reloads>,
    reload_tx: mpsc::Sender<Arc<Config>>,
    /// Stops DNS and HTTP.
    front: CancellationToken,
    /// Stops the probes and the publisher.
    back: CancellationToken,
    tasks: TaskTracker,
}

impl Server {
    /// Binds every socket and starts every task; returns once the server answers.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let loaded = Arc::new(config);
        // Clusters with `patroni` start from one discovery round (each member tried
        // once), so their nodes are probed in the first round like static ones.
        let mut discovery = Discovery::new(loaded.clone());
        discovery.round_all().await;
        let config = discovery.effective();
        // Every key is named: one that is not wired here, or consumed by the part named
        // beside it, fails to compile.
        let Config { dns, http, probe: _, clusters, locations: _, locality: _ } = &*config; // probe, clusters: supervisor and publisher; locations, locality: dns::respond per query
                                                                                            // allow and limits are read from the current config per query and connection
        let DnsConfig { listen, zone, nsid, ttl: _, negative_ttl: _, nameservers: _, allow: _, limits } = dns; // the rest: dns::records
        let HttpConfig { listen: http_listen, allow: _, agent_listen } = http; // allow: read per connection by http
        let serial = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let store = Store::new(Snapshot::initial(config.clone(), serial, SystemTime::now()), Zone::derive);
        let stats = Arc::new(QueryStats::default());
        let (front, back) = (CancellationToken::new(), CancellationToken::new());
        let nsid = nsid.clone().unwrap_or_else(host_name).into_bytes();

        let fd_budget = tcp_fd_budget(clusters.iter().map(|c| c.nodes.len()).sum());
        if limits.tcp_connections > fd_budget {
            tracing::warn!(
                tcp_connections = limits.tcp_connections,
                fitted = fd_budget,
                "dns.limits.tcp_connections does not fit the open-file limit; capping it"
            );
        }
        let dns = DnsServer::bind(listen, store.clone(), stats.clone(), nsid, fd_budget)
            .with_context(|| format!("cannot bind DNS on {listen:?}"))?;
        let dns_addrs = dns.local_addrs();
        let http_listener = tokio::net::TcpListener::bind(http_listen)
            .await
            .with_context(|| format!("cannot bind HTTP on {http_listen}"))?;
        let http_addr = http_listener.local_addr()?;
        let agent_listener = match agent_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind the agent listener on {addr}"))?,
            ),
            None => None,
        };
        let agent_addr = agent_listener.as_ref().map(|l| l.local_addr()).transpose()?;

        let (obs_tx, obs_rx) = mpsc::channel::<Observation>(1024);
        // loaded configs → discovery → effective configs → publisher → probe supervisor
        let (reload_tx, loaded_rx) = mpsc::channel::<Arc<Config>>(4);
        let (effective_tx, effective_rx) = mpsc::channel::<Arc<Config>>(4);
        let (report_tx, report_rx) = mpsc::channel(64);
        let (probe_reload_tx, probe_reload_rx) = mpsc::channel::<Arc<Config>>(4);
        let mut publisher = Publisher::new(config.clone(), store.clone());
        for report in discovery.reports() {
            publisher.report(report, SystemTime::now());
        }

        let tasks = TaskTracker::new();
        tasks.spawn(crate::discovery::run(discovery, loaded_rx, effective_tx, report_tx, back.clone()));
        tasks.spawn(publisher.run(obs_rx, effective_rx, report_rx, Some(probe_reload_tx), back.clone()));
        tasks.spawn(crate::probe::supervisor::run(config.clone(), probe_reload_rx, obs_tx, back.clone()));
        let front_dns = front.clone();
        tasks.spawn(async move {
            if let Err(e) = dns.run(front_dns).await {
                tracing::error!(error = %e, "DNS server stopped");
            }
        });
        if let Some(listener) = agent_listener {
            tasks.spawn(crate::http::agent::serve(listener, store.clone(), stats.clone(), front.clone()));
        }
        let reloads = Arc::new(Reloads::new(SystemTime::now()));
        let sources = Sources { snapshots: store.clone(), stats, reloads: reloads.clone() };
        let f = front.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::http::serve(http_listener, sources, f).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        tasks.close();
        tracing::info!(dns = ?dns_addrs, http = %http_addr, agent = ?agent_addr, %zone, "serving");
        Ok(Server { dns_addrs, http_addr, agent_addr, store, reloads, reload_tx, front, back, tasks })
    }

    /// The current snapshot (for tests and the demo).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.store.snapshot()
    }

    /// Switches to a new, already validated config.
    pub async fn reload(&self, config: Config) {
        let _ = self.reload_tx.send(Arc::new(config)).await;
        self.reloads.succeeded(SystemTime::now());
    }

    /// Records a reload whose config was invalid (the old one is kept).
    pub fn reload_failed(&self) {
        self.reloads.failed();
    }

    /// Stops DNS and HTTP after answering what is in flight, then closes every probe
    /// connection; gives up waiting after a grace period.
    pub async fn shutdown(self) {
        self.front.cancel();
        self.back.cancel();
        if tokio::time::timeout(GRACE, self.tasks.wait()).await.is_err() {
            tracing::warn!("shutdown grace period over; exiting anyway");
        }
    }
}

/// File descriptors kept for everything but DNS TCP connections: listeners, HTTP
/// clients, logs, and a few per probed node (its connection and a cancel request).
const FD_RESERVE: u64 = 64;
const FDS_PER_NODE: u64 = 3;

/// Raises the soft open-file limit to the hard one and says how many descriptors DNS
/// TCP connections may take (`dns.limits.tcp_connections` is capped to fit).
fn tcp_fd_budget(nodes: usize) -> u32 {
    let limit = raise_nofile_limit();
    let reserve = FD_RESERVE + FDS_PER_NODE * nodes as u64;
    u32::try_from(limit.saturating_sub(reserve)).unwrap_or(u32::MAX)
}

/// RLIMIT_NOFILE: soft raised to hard (best effort); returns the soft limit now.
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// The host name, for the EDNS NSID when the config sets none.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "lagdns".into())
}

/// `lagdns serve --config FILE`: runs until SIGTERM or Ctrl-C; SIGHUP reloads.
pub async fn run(path: PathBuf) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives while the server starts is handled once it
    // runs, instead of killing the process with the default action.
    use tokio::signal::unix::{signal, SignalKind};
    let (mut hup, mut term, mut int) =
        (signal(SignalKind::hangup())?, signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    let config = Config::load(&path)?;
    let server = Server::start(config).await?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload_from(&server, &path).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn reload_from(server: &Server, path: &std::path::Path) {
    match Config::load(path) {
        Ok(config) => {
            let restart_only = restart_only_changes(&server.snapshot().config, &config);
            if !restart_only.is_empty() {
                tracing::warn!(keys = ?restart_only, "changes to these keys take effect on restart only");
            }
            tracing::info!(config = %path.display(), "reloading config");
            server.reload(config).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload failed; keeping the old config");
            server.reload_failed();
        }
    }
}

/// The keys that differ between `old` and `new` but only take effect on restart (the
/// sockets and the NSID). Every key is named, so a new one has to be placed here.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let Config { dns, http, probe: _, clusters: _, locations: _, locality: _ } = old; // probes, clusters and locality reload
                                                                                      // the zone data, allow and limits reload
    let DnsConfig { listen, nsid, zone: _, ttl: _, negative_ttl: _, nameservers: _, allow: _, limits: _ } = dns;
    let HttpConfig { listen: http_listen, allow: _, agent_listen } = http;
    let mut keys = Vec::new();
    if *listen != new.dns.listen {
        keys.push("dns.listen");
    }
    if *nsid != new.dns.nsid {
        keys.push("dns.nsid");
    }
    if *http_listen != new.http.listen {
        keys.push("http.listen");
    }
    if *agent_listen != new.http.agent_listen {
        keys.push("http.agent_listen");
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_are_named() {
        let base = "[[cluster]]\nname = \"main\"\n[[cluster.node]]\nname = \"pg1\"\naddress = \"127.0.0.1\"\ndsn = \"host=h\"\n";
        let parse = |extra: &str| Config::parse(&format!("{extra}\n{base}"), "t.toml").unwrap();
        let old = parse("");
        let cases: [(&str, &[&str]); 7] = [
            ("", &[]),
            ("[dns]\nttl = \"5s\"\nzone = \"other.internal\"\n[probe]\ninterval = \"1s\"", &[]),
            ("[dns]\nlisten = [\"127.0.0.1:53\"]", &["dns.listen"]),
            ("[dns]\nnsid = \"a\"\n[http]\nlisten = \"127.0.0.1:1\"", &["dns.nsid", "http.listen"]),
            ("[http]\nlisten = \"127.0.0.1:8053\"", &[]),
            ("[http]\nagent_listen = \"127.0.0.1:8054\"", &["http.agent_listen"]),
            ("[http]\nallow = [\"127.0.0.0/8\"]", &[]),
        ];
        for (extra, want) in cases {
            assert_eq!(restart_only_changes(&old, &parse(extra)), want, "{extra}");
        }
    }
}
