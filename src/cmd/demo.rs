//! `lagdns demo`: a real local primary and two streaming replicas from the installed
//! PostgreSQL binaries, a config for them, served until Ctrl-C; everything it created
//! is removed on the way out, also when it fails half-way.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cmd::serve::Server;
use crate::config::Config;
use localpg::LocalCluster;

pub async fn run(dns: SocketAddr, http: SocketAddr) -> anyhow::Result<()> {
    let stop = stop_on_signal()?;
    eprintln!("lagdns demo: starting a local PostgreSQL primary and two streaming replicas…");
    let cluster = tokio::task::spawn_blocking(|| LocalCluster::start_reporting(2, |line| eprintln!("  {line}")))
        .await?
        .context("cannot start the demo PostgreSQL cluster")?;
    let result = serve(&cluster, dns, http, &stop).await;
    eprintln!("lagdns demo: stopping PostgreSQL and removing {}", cluster.dir().display());
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    result
}

async fn serve(
    cluster: &LocalCluster,
    dns: SocketAddr,
    http: SocketAddr,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    if stop.is_cancelled() {
        return Ok(());
    }
    let text = config_text(cluster, dns, http);
    let path = cluster.dir().join("lagdns.toml");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let config = Config::parse(&text, &path.display().to_string())?;
    let writer = cluster.node("pg1").start_writer(Duration::from_millis(200));
    let server = Server::start(config).await?;
    println!("{}", instructions(cluster, &server, &path));
    stop.cancelled().await;
    server.shutdown().await;
    drop(writer);
    Ok(())
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn stop_on_signal() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        t.cancel();
    });
    Ok(token)
}

/// The demo's config: one cluster, `read` over both replicas, and an `analytics`
/// endpoint on pg3 that never falls back to the primary.
pub fn config_text(cluster: &LocalCluster, dns: SocketAddr, http: SocketAddr) -> String {
    let mut t = format!(
        r#"# Written by `lagdns demo`.
[dns]
listen = ["{dns}"]
zone = "db.internal"
ttl = "1s"
negative_ttl = "1s"
nameservers = [{{ name = "ns1.db.internal", address = "{ns}" }}]

[http]
listen = "{http}"

[probe]
interval = "250ms"
timeout = "1s"
fall = 2
rise = 2

[[cluster]]
name = "main"
read = "read"
write = "write"
max_lag = "500ms"
answers = 1
fallback = "primary"

[[cluster.endpoint]]
name = "analytics"
nodes = ["pg3"]
max_lag = "30s"
fallback = "none"
"#,
        ns = dns.ip()
    );
    for node in cluster.nodes() {
        t.push_str(&node.config_table(100));
    }
    t
}

fn instructions(cluster: &LocalCluster, server: &Server, config: &std::path::Path) -> String {
    let dns = server.dns_addrs[0];
    let dig = format!("dig @{} -p {}", dns.ip(), dns.port());
    let mut s =
        format!("\nlagdns demo is serving db.internal on {dns} (UDP and TCP), HTTP on http://{}\n", server.http_addr);
    let _ = writeln!(s, "config: {}\n\nnodes:", config.display());
    for n in cluster.nodes() {
        let _ = writeln!(s, "  {}  {}:{}", n.name, n.address, n.port);
    }
    let _ = writeln!(s, "\ntry:");
    for q in [
        "write.db.internal +short",
        "read.db.internal +short",
        "TXT read.db.internal +short",
        "analytics.db.internal +short",
        "maxlag-50ms.read.db.internal +short",
        "SRV _postgresql._tcp.read.db.internal +short",
        "pg2.main.db.internal +short",
        "db.internal SOA +short",
    ] {
        let _ = writeln!(s, "  {dig} {q}");
    }
    let _ = writeln!(s, "  curl -s http://{}/status", server.http_addr);
    let _ = writeln!(s, "  lagdns status --http {}", server.http_addr);
    let pg2 = cluster.node("pg2");
    let _ = writeln!(
        s,
        "\nwatch pg2 leave `read` while its replay is paused (and come back on resume):\n  psql \"host={} port={} user=postgres dbname=postgres\" -c 'select pg_wal_replay_pause()'\n  psql \"host={} port={} user=postgres dbname=postgres\" -c 'select pg_wal_replay_resume()'",
        pg2.address, pg2.port, pg2.address, pg2.port
    );
    let _ = writeln!(s, "\nCtrl-C stops lagdns and PostgreSQL and removes everything the demo created.");
    s
}
