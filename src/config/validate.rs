//! Raw TOML → typed [`Config`](super::Config), with file:line:key errors.
//!
//! Defaults live here (and are documented in `config/lagdns.toml`). Every error names
//! the key as a path with the names of clusters, nodes and endpoints where known:
//! `cluster[main].node[pg1].address`.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{
    self, RawCluster, RawConfig, RawDns, RawEndpoint, RawNode, RawPolicy, RawProbe, Scalar, S,
};
use super::units::{parse_duration, parse_size};
use super::{
    Answers, ClusterConfig, Config, ConfigError, DnsConfig, EndpointConfig, Fallback, HttpConfig,
    Nameserver, NodeConfig, Policy, ProbeConfig,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:5353";
const DEFAULT_ZONE: &str = "db.internal";
const DEFAULT_HTTP: &str = "127.0.0.1:8053";
const DEFAULT_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(86_400);
const DEFAULT_PROBE: ProbeConfig = ProbeConfig {
    interval: Duration::from_millis(250),
    timeout: Duration::from_secs(1),
    fall: 2,
    rise: 2,
};
const DEFAULT_POLICY: Policy = Policy {
    max_lag: Duration::from_secs(1),
    max_lag_bytes: None,
    answers: Answers::Count(1),
    fallback: Fallback::Primary,
};
const DEFAULT_WEIGHT: u32 = 100;
const MAX_NSID: usize = 128;
/// Prefixes that `dns::name` reads as query modifiers, so no label may start with them.
const RESERVED_PREFIXES: [&str; 2] = ["maxlag-", "lsn-"];

type Result<T> = std::result::Result<T, ConfigError>;

pub fn parse(text: &str, file: &str) -> Result<Config> {
    let cx = Cx { text, file };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.serde_error(&e))?;
    let dns = dns(&cx, raw.dns)?;
    let http = HttpConfig {
        listen: match raw.http.and_then(|h| h.listen) {
            Some(v) => socket_addr(&cx, &v, "http.listen")?,
            None => DEFAULT_HTTP.parse().expect("default http address"),
        },
    };
    let probe = probe(&cx, raw.probe)?;
    let clusters = clusters(&cx, &dns, &raw.cluster)?;
    Ok(Config {
        dns,
        http,
        probe,
        clusters,
    })
}

/// The text being parsed, to turn byte offsets into lines.
struct Cx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Cx<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        let end = span.start.min(self.text.len());
        let line = 1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A syntax, type or unknown-key error from the TOML parser, with the key it is at.
    fn serde_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let key = toml::from_str::<raw::Tree>(self.text)
            .ok()
            .and_then(|tree| raw::path_at(&tree, span.start))
            .unwrap_or_else(|| syntax_key(self.text, span.start));
        let message = e
            .message()
            .trim()
            .replace('\n', "; ")
            .replace("expected i64", "expected an integer");
        self.err(span, &key, message)
    }
}

/// Best-effort key for text that does not parse as TOML: the last table header before
/// `offset` and the key on the offending line.
fn syntax_key(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let header = text[..line_end]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .last()
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let line = text[line_start..line_end].trim();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned());
    match (header, key) {
        (Some(h), Some(k)) => format!("{h}.{k}"),
        (Some(h), None) => h,
        (None, Some(k)) => k,
        (None, None) => "toml".to_owned(),
    }
}

fn dns(cx: &Cx, raw: Option<RawDns>) -> Result<DnsConfig> {
    let raw = raw.unwrap_or(RawDns {
        listen: None,
        zone: None,
        ttl: None,
        negative_ttl: None,
        nameservers: None,
        nsid: None,
    });
    let listen = match &raw.listen {
        Some(list) => listen_list(cx, list)?,
        None => vec![DEFAULT_LISTEN.parse().expect("default dns address")],
    };
    let zone = match &raw.zone {
        Some(z) => dns_name(z.get_ref()).map_err(|m| cx.err(z.span(), "dns.zone", m))?,
        None => DEFAULT_ZONE.to_owned(),
    };
    let ttl = whole_seconds(cx, &raw.ttl, "dns.ttl")?;
    let negative_ttl = whole_seconds(cx, &raw.negative_ttl, "dns.negative_ttl")?;
    let nameservers = match &raw.nameservers {
        Some(list) => nameservers(cx, list)?,
        None => vec![Nameserver {
            name: format!("ns1.{zone}"),
            address: default_ns_address(&listen),
        }],
    };
    let nsid = match &raw.nsid {
        Some(n) if n.get_ref().is_empty() => {
            return Err(cx.err(
                n.span(),
                "dns.nsid",
                "must not be empty (leave it out to use the host name)",
            ))
        }
        Some(n) if n.get_ref().len() > MAX_NSID => {
            return Err(cx.err(
                n.span(),
                "dns.nsid",
                format!("is longer than {MAX_NSID} bytes"),
            ))
        }
        other => other.as_ref().map(|n| n.get_ref().clone()),
    };
    Ok(DnsConfig {
        listen,
        zone,
        ttl,
        negative_ttl,
        nameservers,
        nsid,
    })
}

fn listen_list(cx: &Cx, list: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<SocketAddr>> {
    if list.get_ref().is_empty() {
        return Err(cx.err(list.span(), "dns.listen", "needs at least one address"));
    }
    let mut out = Vec::new();
    for (i, item) in list.get_ref().iter().enumerate() {
        let addr = socket_addr(cx, item, &format!("dns.listen[{i}]"))?;
        if out.contains(&addr) {
            return Err(cx.err(
                item.span(),
                &format!("dns.listen[{i}]"),
                format!("{addr} is listed twice"),
            ));
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

fn nameservers(
    cx: &Cx,
    list: &Spanned<Vec<Spanned<raw::RawNameserver>>>,
) -> Result<Vec<Nameserver>> {
    if list.get_ref().is_empty() {
        return Err(cx.err(
            list.span(),
            "dns.nameservers",
            "needs at least one nameserver",
        ));
    }
    let mut out: Vec<Nameserver> = Vec::new();
    for (i, ns) in list.get_ref().iter().enumerate() {
        let key = match &ns.get_ref().name {
            Some(name) => format!("dns.nameservers[{}]", name.get_ref()),
            None => format!("dns.nameservers[{i}]"),
        };
        let name = required(cx, &ns.get_ref().name, ns.span(), &format!("{key}.name"))?;
        let name =
            dns_name(name.get_ref()).map_err(|m| cx.err(name.span(), &format!("{key}.name"), m))?;
        if out.iter().any(|n| n.name == name) {
            return Err(cx.err(
                ns.span(),
                &format!("{key}.name"),
                format!("{name:?} is listed twice"),
            ));
        }
        let address = required(
            cx,
            &ns.get_ref().address,
            ns.span(),
            &format!("{key}.address"),
        )?;
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
        return Err(cx.err(
            v.span(),
            key,
            "must be a whole number of seconds (DNS TTLs are in seconds)",
        ));
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
            _ => Err(cx.err(
                v.span(),
                key,
                format!("must be an integer of at least 1, not {}", v.get_ref()),
            )),
        }
    };
    Ok(ProbeConfig {
        interval: positive(&raw.interval, "probe.interval", DEFAULT_PROBE.interval)?,
        timeout: positive(&raw.timeout, "probe.timeout", DEFAULT_PROBE.timeout)?,
        fall: at_least_one(&raw.fall, "probe.fall", DEFAULT_PROBE.fall)?,
        rise: at_least_one(&raw.rise, "probe.rise", DEFAULT_PROBE.rise)?,
    })
}

/// A DNS label already taken in the zone, and the key that took it.
struct LabelSite {
    label: String,
    key: String,
}

fn clusters(cx: &Cx, dns: &DnsConfig, raw: &[Spanned<RawCluster>]) -> Result<Vec<ClusterConfig>> {
    if raw.is_empty() {
        return Err(cx.err(0..0, "cluster", "at least one [[cluster]] is required"));
    }
    let zone_suffix = format!(".{}", dns.zone);
    let mut labels: Vec<LabelSite> = dns
        .nameservers
        .iter()
        .filter_map(|ns| ns.name.strip_suffix(&zone_suffix))
        .filter(|rel| !rel.contains('.'))
        .map(|rel| LabelSite {
            label: rel.to_owned(),
            key: "dns.nameservers".to_owned(),
        })
        .collect();
    let mut out: Vec<ClusterConfig> = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let name = required(
            cx,
            &c.get_ref().name,
            c.span(),
            &format!("cluster[{i}].name"),
        )?;
        let name_text = plain_name(cx, name, &format!("cluster[{i}].name"))?;
        if out.iter().any(|o| o.name == name_text) {
            let key = format!("cluster[{name_text}].name");
            return Err(cx.err(
                name.span(),
                &key,
                format!("cluster {name_text:?} is defined twice"),
            ));
        }
        out.push(cluster(cx, name_text, name.span(), c, &mut labels)?);
    }
    Ok(out)
}

fn cluster(
    cx: &Cx,
    name: String,
    name_span: Range<usize>,
    raw: &Spanned<RawCluster>,
    labels: &mut Vec<LabelSite>,
) -> Result<ClusterConfig> {
    let c = raw.get_ref();
    let key = format!("cluster[{name}]");
    if c.node.is_empty() {
        return Err(cx.err(
            raw.span(),
            &format!("{key}.node"),
            "a cluster needs at least one [[cluster.node]]",
        ));
    }
    let nodes = nodes(cx, &key, &c.node)?;
    let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let write = label(
        cx,
        &c.write,
        ("write", &name_span),
        &format!("{key}.write"),
        labels,
    )?;
    let read = label(
        cx,
        &c.read,
        ("read", &name_span),
        &format!("{key}.read"),
        labels,
    )?;
    let policy = policy(cx, c.policy(), DEFAULT_POLICY, &key)?;
    let read_nodes = node_list(cx, &c.read_nodes, &node_names, &format!("{key}.read_nodes"))?;
    let mut endpoints = vec![EndpointConfig {
        label: read,
        nodes: read_nodes,
        policy,
    }];
    for (j, e) in c.endpoint.iter().enumerate() {
        endpoints.push(endpoint(cx, &key, j, e, &node_names, policy, labels)?);
    }
    Ok(ClusterConfig {
        name,
        write,
        endpoints,
        nodes,
    })
}

fn endpoint(
    cx: &Cx,
    cluster_key: &str,
    j: usize,
    raw: &Spanned<RawEndpoint>,
    node_names: &[String],
    base: Policy,
    labels: &mut Vec<LabelSite>,
) -> Result<EndpointConfig> {
    let e = raw.get_ref();
    let name = required(
        cx,
        &e.name,
        raw.span(),
        &format!("{cluster_key}.endpoint[{j}].name"),
    )?;
    let key = format!(
        "{cluster_key}.endpoint[{}]",
        name.get_ref().to_ascii_lowercase()
    );
    let label = label(
        cx,
        &e.name,
        ("", &raw.span()),
        &format!("{key}.name"),
        labels,
    )?;
    let policy = policy(cx, e.policy(), base, &key)?;
    let nodes = node_list(cx, &e.nodes, node_names, &format!("{key}.nodes"))?;
    Ok(EndpointConfig {
        label,
        nodes,
        policy,
    })
}

/// A label (`read`, `write`, endpoint name), or its default (reported at the given
/// span), that no earlier name in the zone has taken; recorded in `labels`.
fn label(
    cx: &Cx,
    value: &S<String>,
    (default, default_span): (&str, &Range<usize>),
    key: &str,
    labels: &mut Vec<LabelSite>,
) -> Result<String> {
    let (text, span) = match value {
        Some(v) => (v.get_ref().as_str(), v.span()),
        None => (default, default_span.clone()),
    };
    let label = dns_label(text).map_err(|m| cx.err(span.clone(), key, m))?;
    if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| label.starts_with(*p)) {
        return Err(cx.err(
            span,
            key,
            format!("must not start with {prefix:?} (reserved for queries)"),
        ));
    }
    if let Some(prev) = labels.iter().find(|s| s.label == label) {
        return Err(cx.err(
            span,
            key,
            format!("{label:?} is already used by {}", prev.key),
        ));
    }
    labels.push(LabelSite {
        label: label.clone(),
        key: key.to_owned(),
    });
    Ok(label)
}

fn policy(cx: &Cx, raw: RawPolicy, base: Policy, key: &str) -> Result<Policy> {
    let max_lag = match raw.max_lag {
        Some(v) => duration(cx, v, &format!("{key}.max_lag"))?,
        None => base.max_lag,
    };
    let max_lag_bytes = match raw.max_lag_bytes {
        Some(v) => Some(size(cx, v, &format!("{key}.max_lag_bytes"))?),
        None => base.max_lag_bytes,
    };
    let answers = match raw.answers {
        Some(v) => answers(cx, v, &format!("{key}.answers"))?,
        None => base.answers,
    };
    let fallback = match raw.fallback {
        Some(v) => fallback(cx, v, &format!("{key}.fallback"))?,
        None => base.fallback,
    };
    Ok(Policy {
        max_lag,
        max_lag_bytes,
        answers,
        fallback,
    })
}

fn nodes(cx: &Cx, cluster_key: &str, raw: &[Spanned<RawNode>]) -> Result<Vec<NodeConfig>> {
    let mut out: Vec<NodeConfig> = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        let node = node(cx, cluster_key, i, n)?;
        if out.iter().any(|o| o.name == node.name) {
            let span = n.get_ref().name.as_ref().map_or(n.span(), Spanned::span);
            let key = format!("{cluster_key}.node[{}].name", node.name);
            return Err(cx.err(span, &key, format!("node {:?} is defined twice", node.name)));
        }
        out.push(node);
    }
    Ok(out)
}

fn node(cx: &Cx, cluster_key: &str, i: usize, raw: &Spanned<RawNode>) -> Result<NodeConfig> {
    let n = raw.get_ref();
    let name = required(
        cx,
        &n.name,
        raw.span(),
        &format!("{cluster_key}.node[{i}].name"),
    )?;
    let name = plain_name(cx, name, &format!("{cluster_key}.node[{i}].name"))?;
    let key = format!("{cluster_key}.node[{name}]");
    let address = ip(
        cx,
        required(cx, &n.address, raw.span(), &format!("{key}.address"))?,
        &format!("{key}.address"),
    )?;
    if address.is_unspecified() || address.is_multicast() {
        let span = n.address.as_ref().map_or(raw.span(), Spanned::span);
        return Err(cx.err(
            span,
            &format!("{key}.address"),
            format!("{address} cannot be answered to clients"),
        ));
    }
    let dsn = required(cx, &n.dsn, raw.span(), &format!("{key}.dsn"))?;
    if dsn.get_ref().trim().is_empty() {
        return Err(cx.err(dsn.span(), &format!("{key}.dsn"), "must not be empty"));
    }
    let weight = match &n.weight {
        Some(w) => u32::try_from(*w.get_ref()).map_err(|_| {
            cx.err(
                w.span(),
                &format!("{key}.weight"),
                format!("must be an integer of at least 0, not {}", w.get_ref()),
            )
        })?,
        None => DEFAULT_WEIGHT,
    };
    let password_file = match &n.password_file {
        Some(p) if p.get_ref().trim().is_empty() => {
            return Err(cx.err(
                p.span(),
                &format!("{key}.password_file"),
                "must not be empty",
            ))
        }
        other => other.as_ref().map(|p| PathBuf::from(p.get_ref())),
    };
    Ok(NodeConfig {
        name,
        address,
        dsn: dsn.get_ref().clone(),
        weight,
        password_file,
    })
}

/// `read_nodes` / endpoint `nodes`: existing node names, each once; all nodes if absent.
fn node_list(
    cx: &Cx,
    raw: &S<Vec<Spanned<String>>>,
    known: &[String],
    key: &str,
) -> Result<Vec<String>> {
    let Some(list) = raw else {
        return Ok(known.to_vec());
    };
    if list.get_ref().is_empty() {
        return Err(cx.err(
            list.span(),
            key,
            "must name at least one node (leave it out for all nodes)",
        ));
    }
    let mut seen = HashSet::new();
    for item in list.get_ref() {
        let name = item.get_ref();
        if !known.contains(name) {
            return Err(cx.err(
                item.span(),
                key,
                format!("no node named {name:?} in this cluster"),
            ));
        }
        if !seen.insert(name) {
            return Err(cx.err(item.span(), key, format!("node {name:?} is listed twice")));
        }
    }
    Ok(list.get_ref().iter().map(|s| s.get_ref().clone()).collect())
}

fn required<'a, T>(
    cx: &Cx,
    value: &'a S<T>,
    table: Range<usize>,
    key: &str,
) -> Result<&'a Spanned<T>> {
    value
        .as_ref()
        .ok_or_else(|| cx.err(table, key, "is required"))
}

/// A cluster or node name: non-empty, no spaces (it is printed in TXT and status lines).
fn plain_name(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<String> {
    let s = v.get_ref();
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(cx.err(
            v.span(),
            key,
            format!("{s:?} must be non-empty and without spaces"),
        ));
    }
    Ok(s.clone())
}

fn duration(cx: &Cx, v: &Spanned<Scalar>, key: &str) -> Result<Duration> {
    match v.get_ref() {
        Scalar::Str(s) => parse_duration(s).map_err(|m| cx.err(v.span(), key, m)),
        Scalar::Int(n) => Err(cx.err(
            v.span(),
            key,
            format!("a duration needs a unit: write \"{n}ms\" or \"{n}s\""),
        )),
    }
}

fn size(cx: &Cx, v: &Spanned<Scalar>, key: &str) -> Result<u64> {
    match v.get_ref() {
        Scalar::Str(s) => parse_size(s).map_err(|m| cx.err(v.span(), key, m)),
        Scalar::Int(n) => {
            u64::try_from(*n).map_err(|_| cx.err(v.span(), key, "must not be negative"))
        }
    }
}

fn answers(cx: &Cx, v: &Spanned<Scalar>, key: &str) -> Result<Answers> {
    match v.get_ref() {
        Scalar::Str(s) if s == "all" => Ok(Answers::All),
        Scalar::Int(n) if *n >= 1 => u32::try_from(*n)
            .map(Answers::Count)
            .map_err(|_| cx.err(v.span(), key, "is too large")),
        Scalar::Int(n) => Err(cx.err(
            v.span(),
            key,
            format!("must be an integer of at least 1 or \"all\", not {n}"),
        )),
        Scalar::Str(s) => Err(cx.err(
            v.span(),
            key,
            format!("must be an integer of at least 1 or \"all\", not {s:?}"),
        )),
    }
}

fn fallback(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<Fallback> {
    match v.get_ref().as_str() {
        "primary" => Ok(Fallback::Primary),
        "none" => Ok(Fallback::None),
        "open" => Ok(Fallback::Open),
        other => Err(cx.err(
            v.span(),
            key,
            format!("must be \"primary\", \"none\" or \"open\", not {other:?}"),
        )),
    }
}

fn ip(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<IpAddr> {
    v.get_ref().parse().map_err(|_| {
        cx.err(
            v.span(),
            key,
            format!("{:?} is not an IPv4 or IPv6 address", v.get_ref()),
        )
    })
}

fn socket_addr(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<SocketAddr> {
    v.get_ref().parse().map_err(|_| {
        let msg = format!(
            "{:?} is not an address with a port, like \"127.0.0.1:5353\" or \"[::1]:5353\"",
            v.get_ref()
        );
        cx.err(v.span(), key, msg)
    })
}

/// A single DNS label, lower-cased: letters, digits and inner hyphens, at most 63.
fn dns_label(text: &str) -> std::result::Result<String, String> {
    let label = text.to_ascii_lowercase();
    let ok_chars = label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if label.is_empty()
        || label.len() > 63
        || !ok_chars
        || label.starts_with('-')
        || label.ends_with('-')
    {
        return Err(format!(
            "{text:?} is not a DNS label (letters, digits and inner hyphens, at most 63 characters)"
        ));
    }
    Ok(label)
}

/// A domain name, lower-cased, without the trailing dot.
fn dns_name(text: &str) -> std::result::Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 || name.split('.').any(|l| dns_label(l).is_err()) {
        return Err(format!(
            "{text:?} is not a domain name like \"db.internal\""
        ));
    }
    Ok(name)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
