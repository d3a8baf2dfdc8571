//! Query-name parsing: a lower-cased query name → the [`Target`] it asks for in the
//! zone (apex, a nameserver, a write name, a read endpoint and its `maxlag-`/`lsn-`
//! variants, a node name, the SRV name of a write or read name, an empty
//! non-terminal), against tables built once from the config.
//!
//! | name (relative to the zone) | target |
//! |---|---|
//! | (the apex) | `Apex` |
//! | an in-zone nameserver | `Nameserver` |
//! | `<write>` | `Write` |
//! | `<ep>`, `maxlag-<N>ms.<ep>`, `maxlag-<N>s.<ep>`, `lsn-<X>-<Y>.<ep>` | `Endpoint` |
//! | `<node>.<cluster>` | `Node` |
//! | `_postgresql._tcp.` + a write or endpoint name above | `Srv` |
//! | `<cluster>`, `_tcp.` + a write or endpoint name, a parent of an in-zone nameserver | `Empty` |
//! | anything else | `Unknown` |

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::config::Config;
use crate::wal::Lsn;

/// The service labels of the SRV names (SPEC §9).
pub const SRV_PREFIX: &str = "_postgresql._tcp.";
/// What is left of [`SRV_PREFIX`] one label up: an empty non-terminal.
const TCP_PREFIX: &str = "_tcp.";

/// What a query name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Not in the zone: REFUSED.
    OutOfZone,
    /// The zone apex (SOA, NS).
    Apex,
    /// `config.dns.nameservers[i]`, a name inside the zone: its address.
    Nameserver(usize),
    /// The write name of `config.clusters[cluster]`.
    Write { cluster: usize },
    /// Read endpoint `endpoint` of `config.clusters[cluster]` (`0` is `read`).
    Endpoint { cluster: usize, endpoint: usize, variant: Variant },
    /// `<node>.<cluster>.<zone>`: `config.clusters[cluster].nodes[node]`.
    Node { cluster: usize, node: usize },
    /// `_postgresql._tcp.<name>.<zone>`: the SRV records of a write or read name.
    Srv(Service),
    /// A name with nothing of its own that exists because names below it do (RFC 8020):
    /// NODATA, never NXDOMAIN.
    Empty,
    /// In the zone, but no such name: NXDOMAIN.
    Unknown,
}

impl Target {
    /// The cluster whose state the name's answers come from, if any.
    pub fn cluster(&self) -> Option<usize> {
        match *self {
            Target::Write { cluster }
            | Target::Endpoint { cluster, .. }
            | Target::Node { cluster, .. }
            | Target::Srv(Service::Write { cluster } | Service::Endpoint { cluster, .. }) => Some(cluster),
            Target::OutOfZone | Target::Apex | Target::Nameserver(_) | Target::Empty | Target::Unknown => None,
        }
    }
}

/// The name an SRV name (`_postgresql._tcp.<name>`) is the service of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Write { cluster: usize },
    Endpoint { cluster: usize, endpoint: usize, variant: Variant },
}

/// How a read endpoint name was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `<ep>.<zone>`: the endpoint's own policy.
    Plain,
    /// `maxlag-<N>ms.<ep>.<zone>` / `maxlag-<N>s.<ep>.<zone>`: `max_lag = N` for this query.
    MaxLag(Duration),
    /// `lsn-<X>-<Y>.<ep>.<zone>`: replicas that replayed WAL position `X/Y`.
    Lsn(Lsn),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Write(usize),
    Endpoint(usize, usize),
    /// A cluster name: the parent of its node names.
    Cluster,
}

/// The zone's names, derived from the config once per config.
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    zone: String,
    /// Single labels directly under the zone: write, endpoint and cluster names.
    labels: HashMap<String, Label>,
    /// `<node>.<cluster>` (relative to the zone) → (cluster, node) indices.
    nodes: HashMap<String, (usize, usize)>,
    /// Fully qualified nameserver names inside the zone, with their config index.
    nameservers: Vec<(String, usize)>,
    /// The ancestors of in-zone nameserver names below the apex (relative to the zone).
    nameserver_parents: HashSet<String>,
}

impl Names {
    pub fn new(config: &Config) -> Names {
        let zone = trim_dot(&config.dns.zone).to_ascii_lowercase();
        let mut labels = HashMap::new();
        let mut nodes = HashMap::new();
        for (c, cluster) in config.clusters.iter().enumerate() {
            let cluster_label = cluster.name.to_ascii_lowercase();
            for (n, node) in cluster.nodes.iter().enumerate() {
                nodes.insert(format!("{}.{cluster_label}", node.name.to_ascii_lowercase()), (c, n));
            }
            labels.insert(cluster_label, Label::Cluster);
            labels.insert(cluster.write.to_ascii_lowercase(), Label::Write(c));
            for (e, ep) in cluster.endpoints.iter().enumerate() {
                labels.insert(ep.label.to_ascii_lowercase(), Label::Endpoint(c, e));
            }
        }
        let nameservers: Vec<(String, usize)> = config
            .dns
            .nameservers
            .iter()
            .enumerate()
            .map(|(i, ns)| (trim_dot(&ns.name).to_ascii_lowercase(), i))
            .filter(|(name, _)| relative(name, &zone).is_some())
            .collect();
        let nameserver_parents = nameservers
            .iter()
            .filter_map(|(name, _)| relative(name, &zone))
            .flat_map(|rel| rel.match_indices('.').map(|(dot, _)| rel[dot + 1..].to_owned()))
            .collect();
        Names { zone, labels, nodes, nameservers, nameserver_parents }
    }

    /// The zone, lower case, without the trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Every name of the zone that exists by itself (not a `maxlag-`/`lsn-` variant),
    /// fully qualified without the trailing dot, for the fast path's table; what each
    /// one is stays [`Names::parse`]'s to say.
    pub fn exact(&self) -> Vec<String> {
        let mut names = vec![self.zone.clone()];
        names.extend(self.nameservers.iter().map(|(name, _)| name.clone()));
        let relative = self.labels.keys().chain(self.nodes.keys()).chain(&self.nameserver_parents);
        names.extend(relative.map(|rel| format!("{rel}.{}", self.zone)));
        for (label, kind) in &self.labels {
            if !matches!(kind, Label::Cluster) {
                names.push(format!("{SRV_PREFIX}{label}.{}", self.zone));
                names.push(format!("{TCP_PREFIX}{label}.{}", self.zone));
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Parses a lower-cased query name (with or without the trailing dot).
    pub fn parse(&self, qname: &str) -> Target {
        let qname = trim_dot(qname);
        let Some(rel) = relative(qname, &self.zone) else {
            return Target::OutOfZone;
        };
        if rel.is_empty() {
            return Target::Apex;
        }
        if let Some(&(_, i)) = self.nameservers.iter().find(|(n, _)| n == qname) {
            return Target::Nameserver(i);
        }
        let target = if let Some(name) = rel.strip_prefix(SRV_PREFIX) {
            match self.service(name) {
                Some(service) => Target::Srv(service),
                None => Target::Unknown,
            }
        } else if let Some(name) = rel.strip_prefix(TCP_PREFIX) {
            match self.service(name) {
                Some(_) => Target::Empty,
                None => Target::Unknown,
            }
        } else {
            match self.service(rel) {
                Some(Service::Write { cluster }) => Target::Write { cluster },
                Some(Service::Endpoint { cluster, endpoint, variant }) => {
                    Target::Endpoint { cluster, endpoint, variant }
                }
                None => match (self.labels.get(rel), self.nodes.get(rel)) {
                    (Some(Label::Cluster), _) => Target::Empty,
                    (_, Some(&(cluster, node))) => Target::Node { cluster, node },
                    _ => Target::Unknown,
                },
            }
        };
        match target {
            Target::Unknown if self.nameserver_parents.contains(rel) => Target::Empty,
            other => other,
        }
    }

    /// A write name, or an endpoint name in any variant, relative to the zone.
    fn service(&self, rel: &str) -> Option<Service> {
        match rel.split_once('.') {
            None => match self.labels.get(rel)? {
                Label::Write(c) => Some(Service::Write { cluster: *c }),
                Label::Endpoint(c, e) => Some(Service::Endpoint { cluster: *c, endpoint: *e, variant: Variant::Plain }),
                Label::Cluster => None,
            },
            Some((first, rest)) => match self.labels.get(rest)? {
                Label::Endpoint(c, e) => {
                    Some(Service::Endpoint { cluster: *c, endpoint: *e, variant: parse_variant(first)? })
                }
                Label::Write(_) | Label::Cluster => None,
            },
        }
    }
}

/// `maxlag-<N>ms`, `maxlag-<N>s` or `lsn-<X>-<Y>`.
fn parse_variant(label: &str) -> Option<Variant> {
    if let Some(spec) = label.strip_prefix("maxlag-") {
        let (digits, unit_ms) = match spec.strip_suffix("ms") {
            Some(d) => (d, 1),
            None => (spec.strip_suffix('s')?, 1000),
        };
        if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        return Some(Variant::MaxLag(Duration::from_millis(n.checked_mul(unit_ms)?)));
    }
    let lsn = label.strip_prefix("lsn-")?;
    Lsn::parse_with(lsn, '-').ok().map(Variant::Lsn)
}

/// The part of `name` before `.zone`: `Some("")` at the apex, `None` outside the zone.
fn relative<'a>(name: &'a str, zone: &str) -> Option<&'a str> {
    if name == zone {
        return Some("");
    }
    let prefix = name.strip_suffix(zone)?;
    prefix.strip_suffix('.').filter(|p| !p.is_empty())
}

fn trim_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::testdata::config;

    #[test]
    fn parses_every_kind_of_name() {
        // config(): zone db.internal; cluster 0 "main" write/read/analytics; cluster 1
        // "billing" billing-write/billing-read; nameservers ns1.db.internal, ns2.other.net,
        // ns3.sub.db.internal.
        let names = Names::new(&config());
        let ep = |cluster, endpoint, variant| Target::Endpoint { cluster, endpoint, variant };
        let sep = |cluster, endpoint, variant| Service::Endpoint { cluster, endpoint, variant };
        let node = |cluster, node| Target::Node { cluster, node };
        let srv = Target::Srv;
        let ms = |n| Duration::from_millis(n);
        let cases = [
            ("db.internal", Target::Apex),
            ("db.internal.", Target::Apex),
            ("write.db.internal.", Target::Write { cluster: 0 }),
            ("write.db.internal", Target::Write { cluster: 0 }),
            ("read.db.internal.", ep(0, 0, Variant::Plain)),
            ("analytics.db.internal.", ep(0, 1, Variant::Plain)),
            ("billing-write.db.internal.", Target::Write { cluster: 1 }),
            ("billing-read.db.internal.", ep(1, 0, Variant::Plain)),
            ("maxlag-250ms.read.db.internal.", ep(0, 0, Variant::MaxLag(ms(250)))),
            ("maxlag-0ms.read.db.internal.", ep(0, 0, Variant::MaxLag(ms(0)))),
            ("maxlag-5s.analytics.db.internal.", ep(0, 1, Variant::MaxLag(ms(5000)))),
            ("lsn-0-3055128.read.db.internal.", ep(0, 0, Variant::Lsn(Lsn(0x3055128)))),
            ("lsn-16-b374d848.billing-read.db.internal.", ep(1, 0, Variant::Lsn(Lsn(0x16_b374_d848)))),
            ("ns1.db.internal.", Target::Nameserver(0)),
            ("ns3.sub.db.internal.", Target::Nameserver(2)),
            // node names
            ("pg1.main.db.internal.", node(0, 0)),
            ("pg7.main.db.internal", node(0, 6)),
            ("b2.billing.db.internal.", node(1, 1)),
            // SRV names of every write and read name, in every variant
            ("_postgresql._tcp.write.db.internal.", srv(Service::Write { cluster: 0 })),
            ("_postgresql._tcp.billing-write.db.internal.", srv(Service::Write { cluster: 1 })),
            ("_postgresql._tcp.read.db.internal.", srv(sep(0, 0, Variant::Plain))),
            ("_postgresql._tcp.analytics.db.internal.", srv(sep(0, 1, Variant::Plain))),
            ("_postgresql._tcp.maxlag-5s.analytics.db.internal.", srv(sep(0, 1, Variant::MaxLag(ms(5000))))),
            ("_postgresql._tcp.lsn-0-1.billing-read.db.internal.", srv(sep(1, 0, Variant::Lsn(Lsn(1))))),
            // empty non-terminals (RFC 8020): cluster names, `_tcp.` + a write or read
            // name, parents of in-zone nameservers
            ("main.db.internal.", Target::Empty),
            ("billing.db.internal.", Target::Empty),
            ("_tcp.read.db.internal.", Target::Empty),
            ("_tcp.write.db.internal.", Target::Empty),
            ("_tcp.maxlag-5s.read.db.internal.", Target::Empty),
            ("_tcp.lsn-0-1.analytics.db.internal.", Target::Empty),
            ("sub.db.internal.", Target::Empty),
            // Unknown: in the zone, no such name.
            ("nosuch.db.internal.", Target::Unknown),
            ("x.write.db.internal.", Target::Unknown),
            ("maxlag-5s.write.db.internal.", Target::Unknown),
            ("lsn-0-1.write.db.internal.", Target::Unknown),
            ("maxlag-.read.db.internal.", Target::Unknown),
            ("maxlag-5.read.db.internal.", Target::Unknown),
            ("maxlag-5m.read.db.internal.", Target::Unknown),
            ("maxlag-1.5s.read.db.internal.", Target::Unknown),
            ("maxlag--5s.read.db.internal.", Target::Unknown),
            ("maxlag-99999999999999999999ms.read.db.internal.", Target::Unknown),
            ("lsn-0.read.db.internal.", Target::Unknown),
            ("lsn-g-1.read.db.internal.", Target::Unknown),
            ("lsn-0-1-2.read.db.internal.", Target::Unknown),
            ("a.maxlag-5s.read.db.internal.", Target::Unknown),
            ("ns2.db.internal.", Target::Unknown),
            ("x.sub.db.internal.", Target::Unknown),
            ("pg1.billing.db.internal.", Target::Unknown),
            ("pg8.main.db.internal.", Target::Unknown),
            ("x.pg1.main.db.internal.", Target::Unknown),
            ("pg1.main.main.db.internal.", Target::Unknown),
            ("pg1.read.db.internal.", Target::Unknown),
            ("_tcp.db.internal.", Target::Unknown),
            ("_tcp.main.db.internal.", Target::Unknown),
            ("_tcp.nosuch.db.internal.", Target::Unknown),
            ("_tcp.maxlag-5s.write.db.internal.", Target::Unknown),
            ("_tcp.sub.db.internal.", Target::Unknown),
            ("_udp.read.db.internal.", Target::Unknown),
            ("_postgresql._tcp.db.internal.", Target::Unknown),
            ("_postgresql._udp.read.db.internal.", Target::Unknown),
            ("_postgresql.read.db.internal.", Target::Unknown),
            ("_mysql._tcp.read.db.internal.", Target::Unknown),
            ("x._postgresql._tcp.read.db.internal.", Target::Unknown),
            ("_postgresql._tcp.main.db.internal.", Target::Unknown),
            ("_postgresql._tcp.pg1.main.db.internal.", Target::Unknown),
            ("_postgresql._tcp.maxlag-5s.write.db.internal.", Target::Unknown),
            ("_postgresql._tcp.maxlag-x.read.db.internal.", Target::Unknown),
            ("_postgresql._tcp._tcp.read.db.internal.", Target::Unknown),
            ("_postgresql._tcp.ns1.db.internal.", Target::Unknown),
            // Outside the zone.
            ("internal.", Target::OutOfZone),
            ("xdb.internal.", Target::OutOfZone),
            ("ns2.other.net.", Target::OutOfZone),
            ("example.com.", Target::OutOfZone),
            ("write.db.internal.example.com.", Target::OutOfZone),
            (".", Target::OutOfZone),
            ("", Target::OutOfZone),
        ];
        for (qname, want) in cases {
            assert_eq!(names.parse(qname), want, "{qname}");
        }
    }

    #[test]
    fn config_labels_are_matched_case_insensitively() {
        let mut cfg = config();
        cfg.dns.zone = "DB.Internal".into();
        cfg.clusters[0].write = "Write".into();
        cfg.clusters[0].name = "Main".into();
        cfg.clusters[0].nodes[1].name = "PG2".into();
        let names = Names::new(&cfg);
        assert_eq!(names.zone(), "db.internal");
        assert_eq!(names.parse("write.db.internal."), Target::Write { cluster: 0 });
        assert_eq!(names.parse("pg2.main.db.internal."), Target::Node { cluster: 0, node: 1 });
        assert_eq!(names.parse("main.db.internal."), Target::Empty);
    }
}
