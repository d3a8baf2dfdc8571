//! `lagdns serve`: wires probes → publisher → snapshot → DNS and HTTP, reloads the
//! config on SIGHUP (an invalid one is logged and the old one kept) and drains on
//! SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dns::server::DnsServer;
use crate::metrics::QueryStats;
use crate::probe::Observation;
use crate::publisher::{Published, Publisher};
use crate::snapshot::Snapshot;

/// How long shutdown waits for in-flight work.
const GRACE: Duration = Duration::from_secs(5);

/// A running server: DNS, HTTP, the publisher and one probe task per node.
pub struct Server {
    pub dns_addrs: Vec<SocketAddr>,
    pub http_addr: SocketAddr,
    published: Arc<Published>,
    reload_tx: mpsc::Sender<Arc<Config>>,
    /// Stops DNS and HTTP.
    front: CancellationToken,
    /// Stops the probes and the publisher.
    back: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds every socket and starts every task; returns once the server answers.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let config = Arc::new(config);
        let serial = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let published = Published::new(Snapshot::initial(config.clone(), serial, SystemTime::now()));
        let stats = Arc::new(QueryStats::default());
        let (front, back) = (CancellationToken::new(), CancellationToken::new());
        let nsid = config.dns.nsid.clone().unwrap_or_else(host_name).into_bytes();

        let dns = DnsServer::bind(&config.dns.listen, published.clone(), stats.clone(), nsid)
            .await
            .with_context(|| format!("cannot bind DNS on {:?}", config.dns.listen))?;
        let dns_addrs = dns.local_addrs();
        let http_listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot bind HTTP on {}", config.http.listen))?;
        let http_addr = http_listener.local_addr()?;

        let (obs_tx, obs_rx) = mpsc::channel::<Observation>(1024);
        let (reload_tx, reload_rx) = mpsc::channel::<Arc<Config>>(4);
        let (probe_reload_tx, probe_reload_rx) = mpsc::channel::<Arc<Config>>(4);
        let publisher = Publisher::new(config.clone(), published.clone());

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(publisher.run(obs_rx, reload_rx, Some(probe_reload_tx), back.clone())));
        tasks.push(tokio::spawn(crate::probe::supervisor::run(config.clone(), probe_reload_rx, obs_tx, back.clone())));
        let front_dns = front.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = dns.run(front_dns).await {
                tracing::error!(error = %e, "DNS server stopped");
            }
        }));
        let (p, s, f) = (published.clone(), stats.clone(), front.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::http::serve(http_listener, p, s, f).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        tracing::info!(dns = ?dns_addrs, http = %http_addr, zone = %config.dns.zone, "serving");
        Ok(Server { dns_addrs, http_addr, published, reload_tx, front, back, tasks })
    }

    /// The current snapshot (for tests and the demo).
    pub fn published(&self) -> Arc<Published> {
        self.published.clone()
    }

    /// Switches to a new, already validated config.
    pub async fn reload(&self, config: Config) {
        let _ = self.reload_tx.send(Arc::new(config)).await;
    }

    /// Stops DNS and HTTP after answering what is in flight, then closes every probe
    /// connection; gives up waiting after a grace period.
    pub async fn shutdown(self) {
        self.front.cancel();
        self.back.cancel();
        let all = futures_join(self.tasks);
        if tokio::time::timeout(GRACE, all).await.is_err() {
            tracing::warn!("shutdown grace period over; exiting anyway");
        }
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
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
    let config = Config::load(&path)?;
    let server = Server::start(config).await?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload_from(&server, &path).await,
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn reload_from(server: &Server, path: &std::path::Path) {
    match Config::load(path) {
        Ok(config) => {
            let old = server.published.load();
            let (was, now) = (&old.config, &config);
            if was.dns.listen != now.dns.listen || was.http.listen != now.http.listen || was.dns.nsid != now.dns.nsid {
                tracing::warn!("dns.listen, http.listen and dns.nsid changes take effect on restart only");
            }
            tracing::info!(config = %path.display(), "reloading config");
            server.reload(config).await;
        }
        Err(e) => tracing::error!(error = %e, "config reload failed; keeping the old config"),
    }
}
