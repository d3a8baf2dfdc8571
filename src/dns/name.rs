//! Query-name parsing: a lower-cased query name → the [`Target`] it asks for in the
//! zone (apex, a nameserver, a write name, a read endpoint and its `maxlag-`/`lsn-`
//! variants), against a label table built once from the config.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::Config;
use crate::wal::Lsn;

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
    /// In the zone, but no such name: NXDOMAIN.
    Unknown,
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
}

/// The zone's names, derived from the config once per config.
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    zone: String,
    /// Single labels directly under the zone: write and endpoint names.
    labels: HashMap<String, Label>,
    /// Fully qualified nameserver names inside the zone, with their config index.
    nameservers: Vec<(String, usize)>,
}

impl Names {
    pub fn new(config: &Config) -> Names {
        let zone = trim_dot(&config.dns.zone).to_ascii_lowercase();
        let mut labels = HashMap::new();
        for (c, cluster) in config.clusters.iter().enumerate() {
            labels.insert(cluster.write.to_ascii_lowercase(), Label::Write(c));
            for (e, ep) in cluster.endpoints.iter().enumerate() {
                labels.insert(ep.label.to_ascii_lowercase(), Label::Endpoint(c, e));
            }
        }
        let nameservers = config
            .dns
            .nameservers
            .iter()
            .enumerate()
            .map(|(i, ns)| (trim_dot(&ns.name).to_ascii_lowercase(), i))
            .filter(|(name, _)| relative(name, &zone).is_some())
            .collect();
        Names { zone, labels, nameservers }
    }

    /// The zone, lower case, without the trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
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
        match rel.split_once('.') {
            None => match self.labels.get(rel) {
                Some(Label::Write(c)) => Target::Write { cluster: *c },
                Some(Label::Endpoint(c, e)) => Target::Endpoint { cluster: *c, endpoint: *e, variant: Variant::Plain },
                None => Target::Unknown,
            },
            Some((first, rest)) => match (self.labels.get(rest), parse_variant(first)) {
                (Some(Label::Endpoint(c, e)), Some(variant)) => Target::Endpoint { cluster: *c, endpoint: *e, variant },
                _ => Target::Unknown,
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
        let names = Names::new(&cfg);
        assert_eq!(names.zone(), "db.internal");
        assert_eq!(names.parse("write.db.internal."), Target::Write { cluster: 0 });
    }
}
