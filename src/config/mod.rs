//! Configuration: the typed, validated settings the rest of the program sees.
//!
//! `raw` mirrors the TOML with serde (`deny_unknown_fields`, spans kept), `units` parses
//! `250ms`/`16MiB`, `dsn` parses each node's DSN, `validate` turns raw into these types,
//! `files` opens the files a config names when it is loaded, and every failure is a
//! [`ConfigError`] naming the file, line and key.

mod dsn;
mod error;
mod files;
mod raw;
mod units;
mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::locality::{Locality, LocationId, Locations};
use crate::net::Allow;

pub use dsn::{
    ClientCert, Dsn, DsnError, DsnTemplate, DsnTemplateError, RootCert, SslMode, TlsOptions, DEFAULT_NODE_DSN,
};
pub use error::ConfigError;
pub use units::{format_duration, format_size, parse_duration, parse_size};
pub(crate) use validate::dns_label;

/// `dns.listen` when the config names none (also `lagdns demo --dns`).
pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";
/// A node's `port` when the config names none: PostgreSQL's.
pub const DEFAULT_PG_PORT: u16 = 5432;
/// `http.listen` when the config names none (also `lagdns status --http`, `demo --http`).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8053";

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dns: DnsConfig,
    pub http: HttpConfig,
    pub probe: ProbeConfig,
    pub clusters: Vec<ClusterConfig>,
    /// Every location label named (nodes, networks, `default`).
    pub locations: Locations,
    /// `[locality]`: where clients are; `None` when the table is absent (SPEC §8).
    pub locality: Option<Locality>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// Every address is served over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Lower case, no trailing dot, e.g. `db.internal`.
    pub zone: String,
    pub ttl: Duration,
    /// SOA minimum and SOA TTL: how long resolvers cache NXDOMAIN/NODATA.
    pub negative_ttl: Duration,
    pub nameservers: Vec<Nameserver>,
    /// EDNS NSID answered to clients that ask; `None` = the host name.
    pub nsid: Option<String>,
    /// Who may query; others get REFUSED.
    pub allow: Allow,
    pub limits: DnsLimits,
}

/// `[dns.limits]`: what one client, or all of them, may take of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsLimits {
    /// Open DNS TCP connections in all; further ones are closed at once.
    pub tcp_connections: u32,
    /// Open DNS TCP connections per client address.
    pub tcp_connections_per_client: u32,
    /// A TCP connection that completes no query for this long is closed.
    pub tcp_idle: Duration,
    /// No TCP connection lives longer than this.
    pub tcp_lifetime: Duration,
    /// Response-rate limit over UDP: responses per second per client prefix; 0 = off.
    pub rate: u32,
    /// Client prefix lengths the rate is counted over.
    pub rate_prefix_v4: u8,
    pub rate_prefix_v6: u8,
    /// Every `slip`th rate-limited response is sent truncated (TC); 0 = drop them all.
    pub slip: u32,
}

impl Default for DnsLimits {
    fn default() -> Self {
        DnsLimits {
            tcp_connections: 1024,
            tcp_connections_per_client: 16,
            tcp_idle: Duration::from_secs(10),
            tcp_lifetime: Duration::from_secs(120),
            rate: 0,
            rate_prefix_v4: 24,
            rate_prefix_v6: 56,
            slip: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Nameserver {
    /// Fully qualified, lower case, no trailing dot, e.g. `ns1.db.internal`.
    pub name: String,
    pub address: IpAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Who may use the HTTP listener (and the agent listener); others are disconnected
    /// at once.
    pub allow: Allow,
    /// Where HAProxy agent checks are answered (SPEC §10); `None`: not served.
    pub agent_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before a node is down.
    pub fall: u32,
    /// Consecutive successes before a down node is up (and before a replica is
    /// eligible again).
    pub rise: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// A DNS label (the node names are `<node>.<cluster>.<zone>`), as written.
    pub name: String,
    /// Label of the write name (`write` → `write.<zone>`), lower case.
    pub write: String,
    /// Read endpoints; `endpoints[0]` is always the cluster's `read` name, the rest are
    /// the `[[cluster.endpoint]]` tables in file order.
    pub endpoints: Vec<EndpointConfig>,
    /// The static `[[cluster.node]]` tables, then (in a config built by `discovery`)
    /// the nodes discovered from Patroni.
    pub nodes: Vec<NodeConfig>,
    /// `patroni`: where the cluster's nodes are discovered from (SPEC §11).
    pub patroni: Option<PatroniSource>,
}

/// A cluster's Patroni REST API and how its members become nodes (SPEC §11).
#[derive(Debug, Clone, PartialEq)]
pub struct PatroniSource {
    /// Base URLs of the members' REST APIs (`http://10.0.0.11:8008`), tried in turn.
    pub members: Vec<String>,
    /// The DSN a discovered member is probed with.
    pub node_dsn: DsnTemplate,
    /// How often `GET /cluster` is asked.
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Label, lower case (`read`, `analytics`).
    pub label: String,
    /// Names of the nodes this endpoint may answer (every node when not configured).
    pub nodes: Vec<String>,
    /// Whether `nodes` was listed in the config (else discovered nodes join it too).
    pub listed: bool,
    pub policy: Policy,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub max_lag: Duration,
    pub max_lag_bytes: Option<u64>,
    pub answers: Answers,
    pub fallback: Fallback,
    pub locality: LocalityPolicy,
}

/// How a read name uses the client's location (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalityPolicy {
    /// Replicas in the client's location first, then the others.
    Prefer,
    /// Only replicas in the client's location; the fallback when none is eligible there.
    Only,
    /// Locations are not used.
    Ignore,
}

impl LocalityPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalityPolicy::Prefer => "prefer",
            LocalityPolicy::Only => "only",
            LocalityPolicy::Ignore => "ignore",
        }
    }
}

/// How many records a read answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// At most this many (≥ 1), picked by weight.
    Count(u32),
    /// Every eligible node, in weighted random order.
    All,
}

/// What a read endpoint answers when no replica is eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The primary.
    Primary,
    /// NODATA.
    None,
    /// Every up replica, least lag first.
    Open,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// A DNS label (`<node>.<cluster>.<zone>`), as written.
    pub name: String,
    /// What DNS answers (A for IPv4, AAAA for IPv6): the configured address, or the
    /// addresses `host` resolved to (none before it first resolves).
    pub addresses: Vec<IpAddr>,
    /// The host name `address` was written as (SPEC §11), resolved by `discovery`.
    pub host: Option<String>,
    /// The port applications use at `address` (what SRV records carry); the probe uses
    /// the DSN's.
    pub port: u16,
    /// What the probe connects to (written in libpq key=value or URL form).
    pub dsn: Dsn,
    /// Relative share of read answers; 0 = drained.
    pub weight: u32,
    /// Read at connect time, unless the DSN has a password; without either, `PGPASSWORD`.
    pub password_file: Option<PathBuf>,
    /// Where the node is (SPEC §8).
    pub location: Option<LocationId>,
}

impl NodeConfig {
    /// The address as TXT, `/status` and `lagdns check` show it: `10.0.0.11`, or for a
    /// host name `db-1.internal=10.0.0.11` (`=?` before it resolves; several addresses
    /// joined by commas).
    pub fn address_text(&self) -> String {
        address_text(self.host.as_deref(), &self.addresses)
    }
}

/// See [`NodeConfig::address_text`].
pub fn address_text(host: Option<&str>, addresses: &[IpAddr]) -> String {
    let ips = addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
    match host {
        None => ips,
        Some(h) if ips.is_empty() => format!("{h}=?"),
        Some(h) => format!("{h}={ips}"),
    }
}

impl Config {
    /// Reads and validates a config file, and opens every file it names
    /// (`password_file`, `sslrootcert`, `sslcert`, `sslkey`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        let (config, named) = validate::parse_naming_files(&text, &path.display().to_string())?;
        files::open_all(&named)?;
        Ok(config)
    }

    /// Validates config text; `file` is only used in error messages. Opens no file.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        validate::parse(text, file)
    }
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Primary => "primary",
            Fallback::None => "none",
            Fallback::Open => "open",
        }
    }
}
