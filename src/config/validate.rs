//! Raw TOML → typed [`Config`](super::Config), with file:line:key errors.
//!
//! Defaults live here (and are documented in `config/lagdns.toml`). Every error names
//! the key as a path with the names of clusters, nodes and endpoints where known:
//! `cluster[main].node[pg1].address`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use toml::Spanned;

use super::files::NamedFile;
use super::raw::{self, RawConfig, RawDns, RawHttp, RawProbe, Scalar, S};
use super::{
    Answers, Config, ConfigError, DnsConfig, Fallback, HttpConfig, LocalityPolicy, Nameserver, Policy, ProbeConfig,
};
use crate::locality::Locations;

const DEFAULT_ZONE: &str = "db.internal";
const DEFAULT_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(86_400);
const DEFAULT_PROBE: ProbeConfig =
    ProbeConfig { interval: Duration::from_millis(250), timeout: Duration::from_secs(1), fall: 2, rise: 2 };
const DEFAULT_POLICY: Policy = Policy {
    max_lag: Duration::from_secs(1),
    max_lag_bytes: None,
    answers: Answers::Count(1),
    fallback: Fallback::Primary,
    locality: LocalityPolicy::Prefer,
};
const DEFAULT_WEIGHT: u32 = 100;
const MAX_NSID: usize = 128;
/// The longest domain name, in characters without the trailing dot.
const MAX_NAME_LEN: usize = 253;
/// 253 characters in a name, less `hostmaster.`.
const MAX_ZONE_LEN: usize = MAX_NAME_LEN - "hostmaster.".len();
/// Prefixes that `dns::name` reads as query modifiers, so no label may start with them.
const RESERVED_PREFIXES: [&str; 2] = ["maxlag-", "lsn-"];

mod cluster;
mod edge;
mod locality;
mod patroni;
mod values;

pub(crate) use values::dns_label;

use cluster::{clusters, named_files};
use values::{dns_name, duration, ip, required, socket_addr, Cx};

type Result<T> = std::result::Result<T, ConfigError>;

pub fn parse(text: &str, file: &str) -> Result<Config> {
    parse_naming_files(text, file).map(|(config, _)| config)
}

/// [`parse`], and the files the config names (for `Config::load` to open).
pub fn parse_naming_files(text: &str, file: &str) -> Result<(Config, Vec<NamedFile>)> {
    let cx = Cx { text, file };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.serde_error(&e))?;
    let dns = dns(&cx, raw.dns)?;
    let raw_http = raw.http.unwrap_or(RawHttp { listen: None, allow: None, agent_listen: None });
    let listen = match &raw_http.listen {
        Some(v) => socket_addr(&cx, v, "http.listen")?,
        None => super::DEFAULT_HTTP_LISTEN.parse().expect("default http address"),
    };
    let http = HttpConfig {
        listen,
        allow: edge::allow(&cx, &raw_http.allow, "http.allow")?,
        agent_listen: edge::agent_listen(&cx, &raw_http.agent_listen, listen, &dns.listen)?,
    };
    let probe = probe(&cx, raw.probe)?;
    let mut locations = Locations::default();
    let clusters = clusters(&cx, &dns, &raw.cluster, &mut locations)?;
    let locality = locality::locality(&cx, &raw.locality, &mut locations)?;
    let files = named_files(&cx, &raw.cluster, &clusters);
    Ok((Config { dns, http, probe, clusters, locations, locality }, files))
}

/// The zone: a domain name short enough that the SOA's contact `hostmaster.<zone>` is
/// one too.
fn zone_name(text: &str) -> std::result::Result<String, String> {
    let zone = dns_name(text)?;
    if zone.len() > MAX_ZONE_LEN {
        return Err(format!("is longer than {MAX_ZONE_LEN} characters (hostmaster.<zone> must fit a DNS name)"));
    }
    Ok(zone)
}

fn dns(cx: &Cx, raw: Option<RawDns>) -> Result<DnsConfig> {
    let raw = raw.unwrap_or(RawDns {
        listen: None,
        zone: None,
        ttl: None,
        negative_ttl: None,
        nameservers: None,
        nsid: None,
        allow: None,
        limits: None,
    });
    let listen = match &raw.listen {
        Some(list) => listen_list(cx, list)?,
        None => vec![super::DEFAULT_DNS_LISTEN.parse().expect("default dns address")],
    };
    let zone = match &raw.zone {
        Some(z) => zone_name(z.get_ref()).map_err(|m| cx.err(z.span(), "dns.zone", m))?,
        None => DEFAULT_ZONE.to_owned(),
    };
    let ttl = whole_seconds(cx, &raw.ttl, "dns.ttl")?;
    let negative_ttl = whole_seconds(cx, &raw.negative_ttl, "dns.negative_ttl")?;
    let nameservers = match &raw.nameservers {
        Some(list) => nameservers(cx, list)?,
        None => vec![Nameserver { name: format!("ns1.{zone}"), address: default_ns_address(&listen) }],
    };
    let nsid = match &raw.nsid {
        Some(n) if n.get_ref().is_empty() => {
            return Err(cx.err(n.span(), "dns.nsid", "must not be empty (leave it out to use the host name)"))
        }
        Some(n) if n.get_ref().len() > MAX_NSID => {
            return Err(cx.err(n.span(), "dns.nsid", format!("is longer than {MAX_NSID} bytes")))
        }
        other => other.as_ref().map(|n| n.get_ref().clone()),
    };
    let allow = edge::allow(cx, &raw.allow, "dns.allow")?;
    let limits = edge::limits(cx, &raw.limits)?;
    Ok(DnsConfig { listen, zone, ttl, negative_ttl, nameservers, nsid, allow, limits })
}

fn listen_list(cx: &Cx, list: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<SocketAddr>> {
    if list.get_ref().is_empty() {
        return Err(cx.err(list.span(), "dns.listen", "needs at least one address"));
    }
    let mut out = Vec::new();
    for (i, item) in list.get_ref().iter().enumerate() {
        let addr = socket_addr(cx, item, &format!("dns.listen[{i}]"))?;
        if out.contains(&addr) {
            return Err(cx.err(item.span(), &format!("dns.listen[{i}]"), format!("{addr} is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

/// The first listen address, or loopback if that one listens on every address.
fn default_ns_address(listen: &[SocketAddr]) -> IpAddr {
    match listen.first().map(SocketAddr::ip) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

fn nameservers(cx: &Cx, list: &Spanned<Vec<Spanned<raw::RawNameserver>>>) -> Result<Vec<Nameserver>> {
    if list.get_ref().is_empty() {
        return Err(cx.err(list.span(), "dns.nameservers", "needs at least one nameserver"));
    }
    let mut out: Vec<Nameserver> = Vec::new();
    for (i, ns) in list.get_ref().iter().enumerate() {
        let key = match &ns.get_ref().name {
            Some(name) => format!("dns.nameservers[{}]", name.get_ref()),
            None => format!("dns.nameservers[{i}]"),
        };
        let name = required(cx, &ns.get_ref().name, ns.span(), &format!("{key}.name"))?;
        let name = dns_name(name.get_ref()).map_err(|m| cx.err(name.span(), &format!("{key}.name"), m))?;
        if out.iter().any(|n| n.name == name) {
            return Err(cx.err(ns.span(), &format!("{key}.name"), format!("{name:?} is listed twice")));
        }
        let address = required(cx, &ns.get_ref().address, ns.span(), &format!("{key}.address"))?;
        let address = ip(cx, address, &format!("{key}.address"))?;
        out.push(Nameserver { name, address });
    }
    Ok(out)
}

fn whole_seconds(cx: &Cx, value: &S<Scalar>, key: &str) -> Result<Duration> {
    let Some(v) = value else {
        return Ok(DEFAULT_TTL);
    };
    let d = duration(cx, v, key)?;
    if d.subsec_nanos() != 0 {
        return Err(cx.err(v.span(), key, "must be a whole number of seconds (DNS TTLs are in seconds)"));
    }
    if d > MAX_TTL {
        return Err(cx.err(v.span(), key, "must be at most 1 day (24h)"));
    }
    Ok(d)
}

fn probe(cx: &Cx, raw: Option<RawProbe>) -> Result<ProbeConfig> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PROBE);
    };
    let positive = |v: &S<Scalar>, key: &str, default: Duration| -> Result<Duration> {
        let Some(v) = v else { return Ok(default) };
        let d = duration(cx, v, key)?;
        if d.is_zero() {
            return Err(cx.err(v.span(), key, "must be more than 0"));
        }
        Ok(d)
    };
    let at_least_one = |v: &S<i64>, key: &str, default: u32| -> Result<u32> {
        let Some(v) = v else { return Ok(default) };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(cx.err(v.span(), key, format!("must be an integer of at least 1, not {}", v.get_ref()))),
        }
    };
    Ok(ProbeConfig {
        interval: positive(&raw.interval, "probe.interval", DEFAULT_PROBE.interval)?,
        timeout: positive(&raw.timeout, "probe.timeout", DEFAULT_PROBE.timeout)?,
        fall: at_least_one(&raw.fall, "probe.fall", DEFAULT_PROBE.fall)?,
        rise: at_least_one(&raw.rise, "probe.rise", DEFAULT_PROBE.rise)?,
    })
}

#[cfg(test)]
mod tests;
