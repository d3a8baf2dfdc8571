//! Resolve `write.<zone>` and `read.<zone>` through lagdns, connect to each answer with
//! tokio-postgres and print what the server says it is (`pg_is_in_recovery()`).
//!
//! Against `./dev demo` (in another terminal):
//!
//! ```text
//! cargo run --example connect
//! LAGDNS_SERVER=127.0.0.1:5353 PGUSER=postgres PGDATABASE=postgres cargo run --example connect
//! ```
//!
//! Settings (arguments win over the environment):
//!   1st argument or `LAGDNS_SERVER`   lagdns DNS address            (127.0.0.1:5353)
//!   `LAGDNS_ZONE`                      the delegated zone            (db.internal)
//!   `PGUSER`, `PGDATABASE`, `PGPORT`   how to log in to each answer  (postgres, postgres, 5432)
//!   `PGPASSWORD`                       password, if one is needed
//!
//! The resolver here has its cache turned off so every run sees lagdns' current answer.
//! A real application keeps its resolver's cache but must not hold answers longer than
//! their TTL (see "Client-side caching" in the README).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

/// Everything the program needs, read once at start.
struct Settings {
    server: SocketAddr,
    zone: String,
    user: String,
    dbname: String,
    port: u16,
    password: Option<String>,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
        let server = std::env::args().nth(1).unwrap_or_else(|| env("LAGDNS_SERVER", "127.0.0.1:5353"));
        Ok(Settings {
            server: server.parse().with_context(|| format!("LAGDNS_SERVER {server:?}: want IP:PORT"))?,
            zone: env("LAGDNS_ZONE", "db.internal").trim_end_matches('.').to_string(),
            user: env("PGUSER", "postgres"),
            dbname: env("PGDATABASE", "postgres"),
            port: env("PGPORT", "5432").parse().context("PGPORT")?,
            password: std::env::var("PGPASSWORD").ok(),
        })
    }
}

/// A resolver that asks only lagdns, over UDP (TCP when truncated), with no cache.
fn resolver(server: SocketAddr) -> Result<TokioResolver> {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let mut ns = NameServerConfig::udp_and_tcp(server.ip());
    ns.connections = vec![udp, tcp];

    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    opts.attempts = 2;
    opts.timeout = Duration::from_secs(2);

    let config = ResolverConfig::from_name_servers(vec![ns]);
    Ok(Resolver::builder_with_config(config, TokioRuntimeProvider::default()).with_options(opts).build()?)
}

/// The first address lagdns answers for `name`, and the answer's TTL.
async fn resolve(resolver: &TokioResolver, name: &str) -> Result<(IpAddr, u32)> {
    let answer = resolver.lookup_ip(name).await.with_context(|| format!("resolve {name}"))?;
    let ttl = answer.as_lookup().answers().iter().map(|r| r.ttl).min().unwrap_or(0);
    let ip = answer.iter().next().ok_or_else(|| anyhow!("{name}: no address"))?;
    Ok((ip, ttl))
}

/// Connects to `ip` and asks whether it is a replica.
async fn in_recovery(settings: &Settings, ip: IpAddr) -> Result<bool> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(ip.to_string())
        .port(settings.port)
        .user(&settings.user)
        .dbname(&settings.dbname)
        .application_name("lagdns-connect-example")
        .connect_timeout(Duration::from_secs(3));
    if let Some(password) = &settings.password {
        config.password(password);
    }
    // connect_timeout covers only the TCP connect; bound the whole handshake.
    let (client, connection) = tokio::time::timeout(Duration::from_secs(5), config.connect(tokio_postgres::NoTls))
        .await
        .map_err(|_| anyhow!("{ip}: connect timed out"))?
        .with_context(|| format!("connect to {ip}:{}", settings.port))?;
    let driver = tokio::spawn(connection);
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
    drop(client);
    let _ = driver.await;
    Ok(row.get(0))
}

#[tokio::main]
async fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let resolver = resolver(settings.server)?;
    println!("asking lagdns at {} about zone {}", settings.server, settings.zone);

    let mut failed = false;
    for label in ["write", "read"] {
        let name = format!("{label}.{}.", settings.zone);
        let result = async {
            let (ip, ttl) = resolve(&resolver, &name).await?;
            let replica = in_recovery(&settings, ip).await?;
            anyhow::Ok((ip, ttl, replica))
        }
        .await;
        match result {
            Ok((ip, ttl, replica)) => {
                let role = if replica { "replica" } else { "primary" };
                println!("{name:<24} -> {ip} (ttl {ttl}s): pg_is_in_recovery() = {replica} ({role})");
            }
            Err(e) => {
                failed = true;
                println!("{name:<24} -> error: {e:#}");
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
