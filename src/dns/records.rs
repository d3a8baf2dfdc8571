//! The DNS wire form of a snapshot: a [`Zone`] (SOA, NS, glue, TXT data, each node's
//! SRV data and address record, and the name table), derived by [`Zone::derive`] when
//! the publisher publishes a snapshot and swapped in together with it, plus the
//! encoding of an [`Answer`] into records.
//!
//! What depends only on the config (the name table, the parsed names of the SOA, NS,
//! glue and nodes) is a [`ZoneNames`] built once per config and shared by every zone of
//! it. What a node's records carry that a snapshot could change (address, port, weight)
//! is built per snapshot, once per node: an SRV answer is then a lookup per record,
//! whatever priority the answer gives the node.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};

use crate::config::Config;
use crate::dns::answer::{ttl_secs, Additional, Answer, Priority, Rr, Soa, TxtOf};
use crate::dns::fast;
use crate::dns::name::Names;
use crate::dns::txt;
use crate::dns::wire::{AnswerRr, Body};
use crate::snapshot::{ClusterView, NodeView, Snapshot};

/// What the handler needs of one snapshot, precomputed.
pub struct Zone {
    /// The per-config part, shared with the zones of the previous snapshots.
    pub names: Arc<ZoneNames>,
    /// The zone SOA record with this snapshot's serial (owner: the apex).
    soa: Record,
    /// Per cluster: its TXT and node records, kept from the previous zone while they
    /// would come out the same (see [`Zone::derive`]).
    clusters: Vec<Arc<ClusterRecords>>,
    /// The snapshot's cluster views this zone was derived from: a view that is still
    /// the same value in the next snapshot keeps its records without a comparison.
    views: Vec<Arc<ClusterView>>,
    /// The fast path's precomputed responses.
    pub fast: fast::Table,
}

/// One cluster's records, and the view they were built from.
struct ClusterRecords {
    view: Arc<ClusterView>,
    /// One TXT per node.
    write_txt: Vec<RData>,
    /// Per endpoint, one TXT per node.
    endpoint_txt: Vec<Vec<RData>>,
    /// Per node.
    nodes: Vec<NodeRecords>,
}

/// A node's records as SRV answers and their additional section use them.
#[derive(PartialEq)]
struct NodeRecords {
    /// SRV data pointing at the node's name and port, one per [`Priority::ALL`], so
    /// indexed by `priority as usize`.
    srv: [RData; Priority::ALL.len()],
    /// The node name's address records (owner: the node name).
    addresses: Vec<Record>,
}

/// The part of a zone that only the config decides.
pub struct ZoneNames {
    /// The config these names were built from.
    config: Arc<Config>,
    /// Query name → target.
    pub table: Names,
    /// The apex, the SOA's MNAME and RNAME.
    apex: Name,
    mname: Name,
    rname: Name,
    /// NS target per nameserver index.
    ns: Vec<RData>,
    /// Address record per nameserver index (owner: the nameserver).
    glue: Vec<Record>,
    /// Per cluster, per node: `<node>.<cluster>.<zone>.`, the SRV target.
    node_names: Vec<Vec<Name>>,
}

impl ZoneNames {
    pub fn new(config: Arc<Config>) -> ZoneNames {
        let soa = Soa::new(&config, 0);
        let ttl = ttl_secs(config.dns.ttl);
        let mut ns = Vec::new();
        let mut glue = Vec::new();
        for server in &config.dns.nameservers {
            let name = fqdn(&server.name);
            ns.push(RData::NS(NS(name.clone())));
            glue.push(Record::from_rdata(name, ttl, addr(server.address)));
        }
        let node_names = config
            .clusters
            .iter()
            .map(|c| c.nodes.iter().map(|n| fqdn(&format!("{}.{}.{}", n.name, c.name, soa.zone))).collect())
            .collect();
        ZoneNames {
            table: Names::new(&config),
            apex: fqdn(&soa.zone),
            mname: fqdn(&soa.mname),
            rname: fqdn(&soa.rname),
            ns,
            glue,
            node_names,
            config,
        }
    }

    /// The SOA's MNAME and RNAME, the names besides the apex that a negative answer
    /// holds.
    pub fn soa_names(&self) -> [&Name; 2] {
        [&self.mname, &self.rname]
    }
}

impl Zone {
    /// Derives the wire form of `snap`; reuses `prev`'s names when the config is the
    /// same one, and a cluster's records while its view differs from the one they were
    /// built from in probe bookkeeping alone (`ClusterView::same_but_bookkeeping`) and
    /// its write target is not stale (whose TXT dates it by the snapshot's time). This
    /// is the publisher's builder: it cannot fail.
    pub fn derive(snap: &Snapshot, prev: Option<&Zone>) -> Zone {
        let prev = prev.filter(|zone| Arc::ptr_eq(&zone.names.config, &snap.config));
        let names = match prev {
            Some(zone) => zone.names.clone(),
            None => Arc::new(ZoneNames::new(snap.config.clone())),
        };
        let s = Soa::of(snap);
        let data =
            SOA::new(names.mname.clone(), names.rname.clone(), s.serial, s.refresh, s.retry, s.expire, s.minimum);
        let soa = Record::from_rdata(names.apex.clone(), s.minimum, RData::SOA(data));
        let ttl = ttl_secs(snap.config.dns.ttl);
        let clusters = snap
            .clusters
            .iter()
            .zip(&names.node_names)
            .enumerate()
            .map(|(i, (c, targets))| {
                let unchanged = prev.and_then(|z| z.views.get(i)).is_some_and(|v| Arc::ptr_eq(v, c));
                let kept = prev.and_then(|z| z.clusters.get(i)).filter(|r| {
                    (unchanged || r.view.same_but_bookkeeping(c))
                        && !matches!(c.write, crate::snapshot::WriteTarget::Stale { .. })
                });
                match kept {
                    Some(records) => records.clone(),
                    None => Arc::new(ClusterRecords::new(snap, c, targets, ttl)),
                }
            })
            .collect();
        let views = snap.clusters.clone();
        let mut zone = Zone { names, soa, clusters, views, fast: fast::Table::default() };
        zone.fast = fast::Table::build(snap, &zone, prev);
        zone
    }

    /// The records for `answer` (answers are owned by the question name, which the
    /// encoder points to).
    pub fn sections(&self, answer: &Answer) -> Body<'_> {
        let mut answers = Vec::with_capacity(answer.answers.len());
        for rr in &answer.answers {
            let mut push = |ttl, data| answers.push(AnswerRr { ttl, data });
            match rr {
                Rr::Addr(ip) => push(answer.ttl, Cow::Owned(addr(*ip))),
                Rr::Soa => push(self.soa.ttl, Cow::Borrowed(&self.soa.data)),
                Rr::Ns(i) => {
                    if let Some(ns) = self.names.ns.get(*i) {
                        push(answer.ttl, Cow::Borrowed(ns));
                    }
                }
                Rr::Txt(of) => {
                    for data in self.txt(*of) {
                        push(answer.ttl, Cow::Borrowed(data));
                    }
                }
                Rr::Srv { cluster, node, priority } => {
                    if let Some(n) = self.node(*cluster, *node) {
                        push(answer.ttl, Cow::Borrowed(&n.srv[*priority as usize]));
                    }
                }
                Rr::Client(placement) => {
                    let line = txt::client_line(placement, &self.names.config.locations);
                    push(answer.ttl, Cow::Owned(RData::TXT(TXT::new(vec![line]))));
                }
            }
        }
        let additional = answer
            .additional
            .iter()
            .flat_map(|extra| match *extra {
                Additional::Nameserver(i) => self.names.glue.get(i..=i).unwrap_or_default(),
                Additional::Node { cluster, node } => self.node(cluster, node).map_or(&[][..], |n| &n.addresses[..]),
            })
            .collect();
        Body { answers, soa: answer.authority_soa.then_some(&self.soa), additional }
    }

    /// Whether this zone kept cluster `c`'s records from `prev` (see [`Zone::derive`]).
    pub fn kept(&self, prev: &Zone, c: usize) -> bool {
        matches!((self.clusters.get(c), prev.clusters.get(c)), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    fn node(&self, cluster: usize, node: usize) -> Option<&NodeRecords> {
        self.clusters.get(cluster).and_then(|c| c.nodes.get(node))
    }

    fn txt(&self, of: TxtOf) -> &[RData] {
        let found = match of {
            TxtOf::Write { cluster } => self.clusters.get(cluster).map(|c| c.write_txt.as_slice()),
            TxtOf::Endpoint { cluster, endpoint } => {
                self.clusters.get(cluster).and_then(|c| c.endpoint_txt.get(endpoint)).map(Vec::as_slice)
            }
            // The node's line for `read` (endpoint 0), as `/status` shows its verdict.
            TxtOf::Node { cluster, node } => {
                self.clusters.get(cluster).and_then(|c| c.endpoint_txt.first()).and_then(|lines| lines.get(node..=node))
            }
        };
        found.unwrap_or(&[])
    }

    /// Whether `self` has the same records as `other` (names, SOA, every cluster's TXT
    /// and node records), however each was built: a zone built on the previous one
    /// against one derived from nothing.
    #[cfg(test)]
    pub fn same_records(&self, other: &Zone) -> bool {
        let same = |a: &ClusterRecords, b: &ClusterRecords| {
            (&a.write_txt, &a.endpoint_txt, &a.nodes) == (&b.write_txt, &b.endpoint_txt, &b.nodes)
        };
        self.soa == other.soa
            && self.clusters.len() == other.clusters.len()
            && self.clusters.iter().zip(&other.clusters).all(|(a, b)| same(a, b))
    }
}

impl ClusterRecords {
    fn new(snap: &Snapshot, c: &Arc<ClusterView>, targets: &[Name], ttl: u32) -> ClusterRecords {
        let locations = &snap.config.locations;
        ClusterRecords {
            view: c.clone(),
            write_txt: to_txt(txt::write_lines(c, snap.built, locations)),
            endpoint_txt: (0..c.endpoints.len()).map(|e| to_txt(txt::endpoint_lines(c, e, locations))).collect(),
            nodes: c.nodes.iter().zip(targets).map(|(n, target)| NodeRecords::new(n, target, ttl)).collect(),
        }
    }
}

impl NodeRecords {
    fn new(node: &NodeView, target: &Name, ttl: u32) -> NodeRecords {
        let srv =
            Priority::ALL.map(|p| RData::SRV(SRV::new(p.value(), p.weight(node.weight), node.port, target.clone())));
        let addresses = node.addresses.iter().map(|ip| Record::from_rdata(target.clone(), ttl, addr(*ip))).collect();
        NodeRecords { srv, addresses }
    }
}

/// A fully qualified, lower-case name from a validated config name. Config validation
/// admits only LDH labels of at most 63 characters in names that fit 253 characters
/// (`hostmaster.<zone>` and `<node>.<cluster>.<zone>` included), which hickory always
/// parses: see the test below.
fn fqdn(text: &str) -> Name {
    let mut name = Name::from_ascii(text.to_ascii_lowercase())
        .unwrap_or_else(|e| panic!("config validation admitted {text:?}, which is not a DNS name: {e}"));
    name.set_fqdn(true);
    name
}

fn addr(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// One TXT per line; a line longer than 255 bytes is split into several strings.
fn to_txt(lines: Vec<String>) -> Vec<RData> {
    lines.into_iter().map(|line| RData::TXT(TXT::new(chunks(&line, 255)))).collect()
}

fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    out.push(rest.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::answer::answer;
    use crate::dns::query::Qtype;
    use crate::dns::testdata::snapshot;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn text(records: &[AnswerRr<'_>]) -> Vec<String> {
        records.iter().map(|r| format!("{} {}", r.ttl, r.data)).collect()
    }

    #[test]
    fn encodes_answers() {
        let snap = snapshot();
        let zone = Zone::derive(&snap, None);
        let target = zone.names.table.parse("write.db.internal.");
        let a = answer(&snap, &target, Qtype::A, None, &mut SmallRng::seed_from_u64(1));
        let s = zone.sections(&a);
        assert_eq!(text(&s.answers), ["1 10.0.0.11"]);
        assert!(s.soa.is_none() && s.additional.is_empty());
    }

    #[test]
    fn soa_ns_glue_and_negative_answers() {
        let snap = snapshot();
        let zone = Zone::derive(&snap, None);
        let mut rng = SmallRng::seed_from_u64(1);
        let ns = answer(&snap, &zone.names.table.parse("db.internal."), Qtype::Ns, None, &mut rng);
        let s = zone.sections(&ns);
        assert_eq!(text(&s.answers), ["1 ns1.db.internal.", "1 ns2.other.net.", "1 ns3.sub.db.internal."]);
        let glue: Vec<String> = s.additional.iter().map(|r| r.to_string()).collect();
        assert_eq!(glue, ["ns1.db.internal. 1 IN A 192.0.2.1", "ns3.sub.db.internal. 1 IN AAAA 2001:db8::53"]);
        let nx = answer(&snap, &zone.names.table.parse("nosuch.db.internal."), Qtype::A, None, &mut rng);
        let s = zone.sections(&nx);
        assert!(s.answers.is_empty());
        assert_eq!(
            s.soa.unwrap().to_string(),
            "db.internal. 5 IN SOA ns1.db.internal. hostmaster.db.internal. 7 3600 600 86400 5"
        );
    }

    #[test]
    fn txt_lines_are_one_record_per_node_and_split_at_255_bytes() {
        let snap = snapshot();
        let zone = Zone::derive(&snap, None);
        let target = zone.names.table.parse("read.db.internal.");
        let a = answer(&snap, &target, Qtype::Txt, None, &mut SmallRng::seed_from_u64(1));
        let s = zone.sections(&a);
        let lines = txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations);
        assert_eq!(s.answers.len(), lines.len());
        for (record, line) in s.answers.iter().zip(&lines) {
            let RData::TXT(t) = &*record.data else { panic!("not TXT: {record:?}") };
            assert_eq!(t.txt_data.concat(), line.as_bytes());
        }
        let long = "é".repeat(200);
        let parts = chunks(&long, 255);
        assert!(parts.iter().all(|p| p.len() <= 255), "{parts:?}");
        assert_eq!(parts.concat(), long);
        assert_eq!(chunks("short", 255), ["short"]);
    }

    #[test]
    fn names_are_reused_for_the_same_config_and_the_soa_follows_the_serial() {
        let snap = snapshot();
        let before = Zone::derive(&snap, None);
        let mut next = snap.clone();
        next.serial = 8;
        let after = Zone::derive(&next, Some(&before));
        assert!(Arc::ptr_eq(&before.names, &after.names));
        assert!(after.soa.to_string().contains(" 8 3600 600 86400 "), "{}", after.soa);
        let mut other = next.clone();
        other.config = Arc::new((*snap.config).clone());
        assert!(!Arc::ptr_eq(&after.names, &Zone::derive(&other, Some(&after)).names));
    }

    #[test]
    fn srv_answers_point_at_node_names_with_their_addresses_additional() {
        let snap = snapshot();
        let zone = Zone::derive(&snap, None);
        let target = zone.names.table.parse("_postgresql._tcp.read.db.internal.");
        let a = answer(&snap, &target, Qtype::Srv, None, &mut SmallRng::seed_from_u64(1));
        let s = zone.sections(&a);
        assert_eq!(
            text(&s.answers),
            [
                "1 10 100 5432 pg2.main.db.internal.",
                "1 10 300 6432 pg3.main.db.internal.",
                "1 10 100 5432 pg5.main.db.internal.",
                "1 30 100 5432 pg1.main.db.internal.",
            ]
        );
        let additional: Vec<String> = s.additional.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            additional,
            [
                "pg2.main.db.internal. 1 IN A 10.0.0.12",
                "pg3.main.db.internal. 1 IN A 10.0.0.13",
                "pg5.main.db.internal. 1 IN AAAA 2001:db8::15",
                "pg1.main.db.internal. 1 IN A 10.0.0.11",
            ]
        );
        assert!(s.soa.is_none());
        // a node name's TXT is its `read` line
        let a = answer(
            &snap,
            &zone.names.table.parse("pg3.main.db.internal."),
            Qtype::Txt,
            None,
            &mut SmallRng::seed_from_u64(1),
        );
        let s = zone.sections(&a);
        let RData::TXT(t) = &*s.answers[0].data else { panic!("not TXT: {:?}", s.answers) };
        assert_eq!(
            (s.answers.len(), t.txt_data.concat()),
            (1, txt::endpoint_lines(&snap.clusters[0], 0, &snap.config.locations)[2].clone().into_bytes())
        );
    }

    #[test]
    fn node_records_follow_the_snapshot() {
        let snap = snapshot();
        let before = Zone::derive(&snap, None);
        let mut next = snap.clone();
        next.cluster_mut(0).nodes[1].weight = 7;
        let after = Zone::derive(&next, Some(&before));
        let target = after.names.table.parse("_postgresql._tcp.maxlag-15ms.read.db.internal.");
        let a = answer(&next, &target, Qtype::Srv, None, &mut SmallRng::seed_from_u64(1));
        assert_eq!(
            text(&after.sections(&a).answers),
            ["1 10 7 5432 pg2.main.db.internal.", "1 30 100 5432 pg1.main.db.internal."]
        );
    }

    #[test]
    fn every_name_validation_admits_is_a_hickory_name() {
        // The longest zone validation admits (hostmaster.<zone> still fits 253), one
        // character more, and ordinary ones.
        let long = |n: usize| {
            let mut zone = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".");
            zone.truncate(n);
            zone
        };
        let (longest, too_long) = (long(242), long(243));
        for zone in [longest.as_str(), too_long.as_str(), "db.internal", "0.9-x.y", "a"] {
            let text = format!(
                "[dns]\nzone = \"{zone}\"\nnameservers = [{{ name = \"ns-1.{zone}\", address = \"127.0.0.1\" }}]\n\
                 [[cluster]]\nname = \"main\"\n[[cluster.node]]\nname = \"pg1\"\naddress = \"127.0.0.1\"\ndsn = \"host=h\"\n"
            );
            let config = match Config::parse(&text, "t.toml") {
                Ok(c) => c,
                Err(e) if zone.len() == 243 => {
                    assert!(e.to_string().contains("dns.zone"), "{e}");
                    continue;
                }
                Err(e) => panic!("{zone}: {e}"),
            };
            let names = ZoneNames::new(Arc::new(config));
            assert_eq!(names.rname.to_string(), format!("hostmaster.{zone}."));
        }
        // The longest node name validation admits: 253 characters.
        let zone = long(180);
        let cluster = "m".repeat(63);
        let node = "n".repeat(253 - zone.len() - cluster.len() - 2);
        let text = format!(
            "[dns]\nzone = \"{zone}\"\n[[cluster]]\nname = \"{cluster}\"\n\
             [[cluster.node]]\nname = \"{node}\"\naddress = \"127.0.0.1\"\ndsn = \"host=h\"\n"
        );
        let names = ZoneNames::new(Arc::new(Config::parse(&text, "t.toml").unwrap()));
        assert_eq!(names.node_names[0][0].to_string(), format!("{node}.{cluster}.{zone}."));
        assert_eq!(names.node_names[0][0].to_string().len(), 254);
    }
}
