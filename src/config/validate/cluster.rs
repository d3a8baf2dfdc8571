//! The `[[cluster]]` tables: nodes, endpoints, policies, and labels unique in the zone
//! (cluster names among them: they are the parents of the node names).

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::values::{answers, dns_label, dns_name, duration, fallback, int_in, name_label, required, size, Cx};
use super::{locality, patroni, Result, DEFAULT_POLICY, DEFAULT_WEIGHT, MAX_NAME_LEN, RESERVED_PREFIXES};
use crate::config::dsn::Dsn;
use crate::config::files::NamedFile;
use crate::config::raw::{RawCluster, RawEndpoint, RawNode, RawPolicy, S};
use crate::config::DEFAULT_PG_PORT;
use crate::config::{ClusterConfig, DnsConfig, EndpointConfig, NodeConfig, Policy};
use crate::locality::{LocationId, Locations};

/// A DNS label already taken in the zone, and the key that took it.
struct LabelSite {
    label: String,
    key: String,
}

pub(super) fn clusters(
    cx: &Cx,
    dns: &DnsConfig,
    raw: &[Spanned<RawCluster>],
    locations: &mut Locations,
) -> Result<Vec<ClusterConfig>> {
    if raw.is_empty() {
        return Err(cx.err(0..0, "cluster", "at least one [[cluster]] is required"));
    }
    let mut zone = ZoneLabels::new(dns);
    let mut out: Vec<ClusterConfig> = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let name = required(cx, &c.get_ref().name, c.span(), &format!("cluster[{i}].name"))?;
        let name_text = name_label(cx, name, &format!("cluster[{i}].name"))?;
        let key = format!("cluster[{name_text}].name");
        if out.iter().any(|o| o.name.eq_ignore_ascii_case(&name_text)) {
            return Err(cx.err(name.span(), &key, format!("cluster {name_text:?} is defined twice")));
        }
        zone.cluster(cx, &c.get_ref().name, name, &key)?;
        out.push(cluster(cx, name_text, name.span(), c, &mut zone, locations)?);
    }
    Ok(out)
}

/// The labels directly under the zone, and who took each.
struct ZoneLabels {
    zone: String,
    /// Taken for every kind of label: in-zone nameservers one label under the zone
    /// (`ns1`), then cluster names, write, read and endpoint labels as they come.
    labels: Vec<LabelSite>,
    /// Taken for cluster names only: the top label of deeper in-zone nameservers (`sub`
    /// of `ns3.sub.db.internal`), which a node name `ns3.sub.db.internal` would shadow.
    nameserver_parents: Vec<String>,
}

impl ZoneLabels {
    fn new(dns: &DnsConfig) -> ZoneLabels {
        let zone_suffix = format!(".{}", dns.zone);
        let relative: Vec<&str> = dns.nameservers.iter().filter_map(|ns| ns.name.strip_suffix(&zone_suffix)).collect();
        let labels = relative
            .iter()
            .filter(|rel| !rel.contains('.'))
            .map(|rel| LabelSite { label: (*rel).to_owned(), key: "dns.nameservers".to_owned() })
            .collect();
        let nameserver_parents =
            relative.iter().filter_map(|rel| rel.rsplit_once('.').map(|(_, top)| top.to_owned())).collect();
        ZoneLabels { zone: dns.zone.clone(), labels, nameserver_parents }
    }

    /// A cluster name (already a valid label) takes its label under the zone.
    fn cluster(&mut self, cx: &Cx, raw: &S<String>, name: &Spanned<String>, key: &str) -> Result<()> {
        let lower = name.get_ref().to_ascii_lowercase();
        if self.nameserver_parents.contains(&lower) {
            let why = format!("{lower:?} is already used by dns.nameservers (a name under {lower}.<zone>)");
            return Err(cx.err(name.span(), key, why));
        }
        label(cx, raw, ("", &name.span()), key, &mut self.labels).map(|_| ())
    }
}

fn cluster(
    cx: &Cx,
    name: String,
    name_span: Range<usize>,
    raw: &Spanned<RawCluster>,
    zone: &mut ZoneLabels,
    locations: &mut Locations,
) -> Result<ClusterConfig> {
    let c = raw.get_ref();
    let key = format!("cluster[{name}]");
    let patroni = patroni::source(cx, c, &key)?;
    if c.node.is_empty() && patroni.is_none() {
        let why = "a cluster needs at least one [[cluster.node]], or `patroni` to discover them";
        return Err(cx.err(raw.span(), &format!("{key}.node"), why));
    }
    // With Patroni, node lists may name members not discovered yet.
    let open = patroni.is_some();
    let parent = format!("{}.{}", name.to_ascii_lowercase(), zone.zone);
    let nodes = nodes(cx, &key, &parent, &c.node, locations)?;
    let labels = &mut zone.labels;
    let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let write = label(cx, &c.write, ("write", &name_span), &format!("{key}.write"), labels)?;
    let read = label(cx, &c.read, ("read", &name_span), &format!("{key}.read"), labels)?;
    let policy = policy(cx, c.policy(), DEFAULT_POLICY, &key)?;
    let read_nodes = node_list(cx, &c.read_nodes, &node_names, &format!("{key}.read_nodes"), open)?;
    let listed = c.read_nodes.is_some();
    let mut endpoints = vec![EndpointConfig { label: read, nodes: read_nodes, listed, policy }];
    for (j, e) in c.endpoint.iter().enumerate() {
        endpoints.push(endpoint(cx, &key, j, e, (&node_names, open), policy, labels)?);
    }
    Ok(ClusterConfig { name, write, endpoints, nodes, patroni })
}

fn endpoint(
    cx: &Cx,
    cluster_key: &str,
    j: usize,
    raw: &Spanned<RawEndpoint>,
    (node_names, open): (&[String], bool),
    base: Policy,
    labels: &mut Vec<LabelSite>,
) -> Result<EndpointConfig> {
    let e = raw.get_ref();
    let name = required(cx, &e.name, raw.span(), &format!("{cluster_key}.endpoint[{j}].name"))?;
    let key = format!("{cluster_key}.endpoint[{}]", name.get_ref().to_ascii_lowercase());
    let label = label(cx, &e.name, ("", &raw.span()), &format!("{key}.name"), labels)?;
    let policy = policy(cx, e.policy(), base, &key)?;
    let nodes = node_list(cx, &e.nodes, node_names, &format!("{key}.nodes"), open)?;
    Ok(EndpointConfig { label, nodes, listed: e.nodes.is_some(), policy })
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
        return Err(cx.err(span, key, format!("must not start with {prefix:?} (reserved for queries)")));
    }
    if let Some(prev) = labels.iter().find(|s| s.label == label) {
        return Err(cx.err(span, key, format!("{label:?} is already used by {}", prev.key)));
    }
    labels.push(LabelSite { label: label.clone(), key: key.to_owned() });
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
    let locality = match raw.locality {
        Some(v) => locality::policy(cx, v, &format!("{key}.locality"))?,
        None => base.locality,
    };
    Ok(Policy { max_lag, max_lag_bytes, answers, fallback, locality })
}

/// A node whose DSN is still text.
struct Node<'a> {
    name: String,
    addresses: Vec<IpAddr>,
    host: Option<String>,
    port: u16,
    dsn: &'a Spanned<String>,
    weight: u32,
    password_file: Option<PathBuf>,
    location: Option<LocationId>,
}

/// The nodes of a cluster, whose names are `<node>.<parent>`. Every node's own keys and
/// name are checked before any DSN is parsed, so an error in a table's structure is
/// reported before one inside a DSN.
fn nodes(
    cx: &Cx,
    cluster_key: &str,
    parent: &str,
    raw: &[Spanned<RawNode>],
    locations: &mut Locations,
) -> Result<Vec<NodeConfig>> {
    let mut out: Vec<Node> = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        let node = node(cx, cluster_key, parent, i, n, locations)?;
        if out.iter().any(|o| o.name.eq_ignore_ascii_case(&node.name)) {
            let span = n.get_ref().name.as_ref().map_or(n.span(), Spanned::span);
            let key = format!("{cluster_key}.node[{}].name", node.name);
            return Err(cx.err(span, &key, format!("node {:?} is defined twice", node.name)));
        }
        out.push(node);
    }
    out.into_iter()
        .map(|Node { name, addresses, host, port, dsn, weight, password_file, location }| {
            let key = format!("{cluster_key}.node[{name}].dsn");
            let dsn = dsn.get_ref().parse::<Dsn>().map_err(|e| cx.err(dsn.span(), &key, e.to_string()))?;
            Ok(NodeConfig { name, addresses, host, port, dsn, weight, password_file, location })
        })
        .collect()
}

fn node<'a>(
    cx: &Cx,
    cluster_key: &str,
    parent: &str,
    i: usize,
    raw: &'a Spanned<RawNode>,
    locations: &mut Locations,
) -> Result<Node<'a>> {
    let n = raw.get_ref();
    let name_value = required(cx, &n.name, raw.span(), &format!("{cluster_key}.node[{i}].name"))?;
    let name = name_label(cx, name_value, &format!("{cluster_key}.node[{i}].name"))?;
    let full = format!("{}.{parent}", name.to_ascii_lowercase());
    if full.len() > MAX_NAME_LEN {
        let why = format!("makes the node name {full:?} longer than {MAX_NAME_LEN} characters");
        return Err(cx.err(name_value.span(), &format!("{cluster_key}.node[{name}].name"), why));
    }
    let key = format!("{cluster_key}.node[{name}]");
    let written = required(cx, &n.address, raw.span(), &format!("{key}.address"))?;
    let (addresses, host) = match written.get_ref().parse::<IpAddr>() {
        Ok(address) if address.is_unspecified() || address.is_multicast() => {
            let why = format!("{address} cannot be answered to clients");
            return Err(cx.err(written.span(), &format!("{key}.address"), why));
        }
        Ok(address) => (vec![address], None),
        // a host name, resolved at most every discovery_interval (SPEC §11)
        // (a name whose last label is all digits is a mistyped address: RFC 3696 §2)
        Err(_) => match dns_name(written.get_ref()) {
            Ok(host) if !host.rsplit('.').next().is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit())) => {
                (Vec::new(), Some(host))
            }
            _ => {
                let why = format!("{:?} is not an IPv4 or IPv6 address or a host name", written.get_ref());
                return Err(cx.err(written.span(), &format!("{key}.address"), why));
            }
        },
    };
    let port = match &n.port {
        Some(p) => int_in(cx, p, &format!("{key}.port"), 1..=i64::from(u16::MAX))? as u16,
        None => DEFAULT_PG_PORT,
    };
    let dsn = required(cx, &n.dsn, raw.span(), &format!("{key}.dsn"))?;
    if dsn.get_ref().trim().is_empty() {
        return Err(cx.err(dsn.span(), &format!("{key}.dsn"), "must not be empty"));
    }
    let weight = match &n.weight {
        Some(w) => u32::try_from(*w.get_ref()).map_err(|_| {
            cx.err(w.span(), &format!("{key}.weight"), format!("must be an integer of at least 0, not {}", w.get_ref()))
        })?,
        None => DEFAULT_WEIGHT,
    };
    let password_file = match &n.password_file {
        Some(p) if p.get_ref().trim().is_empty() => {
            return Err(cx.err(p.span(), &format!("{key}.password_file"), "must not be empty"))
        }
        other => other.as_ref().map(|p| PathBuf::from(p.get_ref())),
    };
    let location = match &n.location {
        Some(v) => Some(locality::location(cx, v, &format!("{key}.location"), locations)?),
        None => None,
    };
    Ok(Node { name, addresses, host, port, dsn, weight, password_file, location })
}

/// The files the validated `clusters` name (each node's DSN files, then its
/// `password_file`), with the place to blame if one cannot be read; `raw` is what they
/// were validated from, node for node.
pub(super) fn named_files(cx: &Cx, raw: &[Spanned<RawCluster>], clusters: &[ClusterConfig]) -> Vec<NamedFile> {
    let mut files = Vec::new();
    for (raw_cluster, cluster) in raw.iter().zip(clusters) {
        for (raw_node, node) in raw_cluster.get_ref().node.iter().zip(&cluster.nodes) {
            let key = format!("cluster[{}].node[{}]", cluster.name, node.name);
            let raw_node = raw_node.get_ref();
            let span = |value: &S<String>| value.as_ref().map_or(0..0, Spanned::span);
            for (dsn_key, path) in node.dsn.tls().files() {
                let site = cx.site(span(&raw_node.dsn), &format!("{key}.dsn"));
                files.push(NamedFile { path: path.to_path_buf(), dsn_key: Some(dsn_key), site });
            }
            if let Some(path) = &node.password_file {
                let site = cx.site(span(&raw_node.password_file), &format!("{key}.password_file"));
                files.push(NamedFile { path: path.clone(), dsn_key: None, site });
            }
        }
    }
    files
}

/// `read_nodes` / endpoint `nodes`: existing node names (any name when `open`: members
/// to be discovered), each once; all nodes if absent.
fn node_list(cx: &Cx, raw: &S<Vec<Spanned<String>>>, known: &[String], key: &str, open: bool) -> Result<Vec<String>> {
    let Some(list) = raw else {
        return Ok(known.to_vec());
    };
    if list.get_ref().is_empty() {
        return Err(cx.err(list.span(), key, "must name at least one node (leave it out for all nodes)"));
    }
    let mut seen = HashSet::new();
    for item in list.get_ref() {
        let name = item.get_ref();
        if !open && !known.contains(name) {
            return Err(cx.err(item.span(), key, format!("no node named {name:?} in this cluster")));
        }
        if !seen.insert(name) {
            return Err(cx.err(item.span(), key, format!("node {name:?} is listed twice")));
        }
    }
    Ok(list.get_ref().iter().map(|s| s.get_ref().clone()).collect())
}
