//! The DNS wire form of a snapshot: a [`Zone`] (SOA, NS, glue, TXT data and the name
//! table) built once per published snapshot, kept in an `ArcSwap` that the query
//! handler loads once per query, plus the encoding of an [`Answer`] into records.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};
use tokio_util::sync::CancellationToken;

use crate::dns::answer::{ttl_secs, Answer, Rr, Soa, TxtOf};
use crate::dns::name::Names;
use crate::publisher::Published;
use crate::snapshot::Snapshot;

/// A name in the config that is not a valid DNS name.
#[derive(Debug, thiserror::Error)]
#[error("invalid DNS name {name:?}: {reason}")]
pub struct ZoneError {
    pub name: String,
    pub reason: String,
}

/// Everything the handler needs for one snapshot, precomputed.
pub struct Zone {
    pub snapshot: Arc<Snapshot>,
    pub names: Arc<Names>,
    /// The zone SOA record (owner: the apex), for the authority section.
    soa: Record,
    /// NS target per nameserver index.
    ns: Vec<RData>,
    /// Address record per nameserver index (owner: the nameserver).
    glue: Vec<Record>,
    /// Per cluster, one TXT per node.
    write_txt: Vec<Vec<RData>>,
    /// Per cluster, per endpoint, one TXT per node.
    endpoint_txt: Vec<Vec<Vec<RData>>>,
}

/// The sections of one response; authority and additional borrow from the zone.
pub struct Sections<'z> {
    pub answers: Vec<Record>,
    pub soa: Option<&'z Record>,
    pub additional: Vec<&'z Record>,
}

impl Zone {
    /// Derives the wire form of `snap`; reuses `prev`'s name table when the config is
    /// the same.
    pub fn build(snap: Arc<Snapshot>, prev: Option<&Zone>) -> Result<Zone, ZoneError> {
        let names = match prev {
            Some(p) if Arc::ptr_eq(&p.snapshot.config, &snap.config) => p.names.clone(),
            _ => Arc::new(Names::new(&snap.config)),
        };
        let dns = &snap.config.dns;
        let ttl = ttl_secs(dns.ttl);
        let soa = soa_record(&Soa::of(&snap))?;
        let mut ns = Vec::new();
        let mut glue = Vec::new();
        for server in &dns.nameservers {
            let name = fqdn(&server.name)?;
            ns.push(RData::NS(NS(name.clone())));
            glue.push(Record::from_rdata(name, ttl, addr(server.address)));
        }
        let write_txt = snap.clusters.iter().map(|c| txt(c.write_lines(snap.built))).collect();
        let endpoint_txt =
            snap.clusters.iter().map(|c| (0..c.endpoints.len()).map(|e| txt(c.endpoint_lines(e))).collect()).collect();
        Ok(Zone { snapshot: snap, names, soa, ns, glue, write_txt, endpoint_txt })
    }

    /// The SOA record (owner: the apex).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The records for `answer`, owned by `owner` (the question name as sent, so its
    /// case is echoed).
    pub fn sections(&self, answer: &Answer, owner: &Name) -> Sections<'_> {
        let mut answers = Vec::with_capacity(answer.answers.len());
        for rr in &answer.answers {
            let mut push = |ttl, data: RData| answers.push(Record::from_rdata(owner.clone(), ttl, data));
            match rr {
                Rr::Addr(ip) => push(answer.ttl, addr(*ip)),
                Rr::Soa => push(self.soa.ttl, self.soa.data.clone()),
                Rr::Ns(i) => {
                    if let Some(ns) = self.ns.get(*i) {
                        push(answer.ttl, ns.clone());
                    }
                }
                Rr::Txt(of) => {
                    for data in self.txt(*of) {
                        push(answer.ttl, data.clone());
                    }
                }
            }
        }
        Sections {
            answers,
            soa: answer.authority_soa.then_some(&self.soa),
            additional: answer.glue.iter().filter_map(|&i| self.glue.get(i)).collect(),
        }
    }

    fn txt(&self, of: TxtOf) -> &[RData] {
        let found = match of {
            TxtOf::Write { cluster } => self.write_txt.get(cluster),
            TxtOf::Endpoint { cluster, endpoint } => self.endpoint_txt.get(cluster).and_then(|c| c.get(endpoint)),
        };
        found.map_or(&[], |v| v.as_slice())
    }
}

fn soa_record(soa: &Soa) -> Result<Record, ZoneError> {
    let data =
        SOA::new(fqdn(&soa.mname)?, fqdn(&soa.rname)?, soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum);
    Ok(Record::from_rdata(fqdn(&soa.zone)?, soa.minimum, RData::SOA(data)))
}

/// A fully qualified, lower-case name from config text.
pub fn fqdn(text: &str) -> Result<Name, ZoneError> {
    let err = |e: &dyn std::fmt::Display| ZoneError { name: text.to_string(), reason: e.to_string() };
    let mut name = Name::from_ascii(text.to_ascii_lowercase()).map_err(|e| err(&e))?;
    name.set_fqdn(true);
    Ok(name)
}

fn addr(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// One TXT per line; a line longer than 255 bytes is split into several strings.
fn txt(lines: Vec<String>) -> Vec<RData> {
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

/// The current [`Zone`], swapped whenever a snapshot is published.
pub struct ZoneCell {
    current: ArcSwap<Zone>,
}

impl ZoneCell {
    /// The zone of the currently published snapshot.
    pub fn new(published: &Published) -> Result<Arc<ZoneCell>, ZoneError> {
        let zone = Zone::build(published.load(), None)?;
        Ok(Arc::new(ZoneCell { current: ArcSwap::from_pointee(zone) }))
    }

    /// The current zone (one atomic load).
    pub fn load(&self) -> Arc<Zone> {
        self.current.load_full()
    }

    /// Rebuilds the zone from `snap`; on an invalid name the old zone stays.
    pub fn update(&self, snap: Arc<Snapshot>) -> Result<(), ZoneError> {
        let zone = Zone::build(snap, Some(&self.current.load()))?;
        self.current.store(Arc::new(zone));
        Ok(())
    }

    /// Follows `published` until `cancel` fires or the publisher goes away.
    pub async fn follow(self: Arc<Self>, published: Arc<Published>, cancel: CancellationToken) {
        let mut changes = published.subscribe();
        drop(published);
        // A snapshot may have been stored between `new` and `subscribe`.
        changes.mark_changed();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let snap = changes.borrow_and_update().clone();
                    if let Err(error) = self.update(snap) {
                        tracing::warn!(%error, "snapshot not served: invalid DNS name");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::answer::{answer, Qtype};
    use crate::dns::testdata::snapshot;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn text(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn encodes_answers_with_the_question_case() {
        let zone = Zone::build(Arc::new(snapshot()), None).unwrap();
        let owner = Name::from_ascii("WrItE.Db.InTeRnAl.").unwrap();
        let target = zone.names.parse("write.db.internal.");
        let a = answer(&zone.snapshot, &target, Qtype::A, &mut SmallRng::seed_from_u64(1));
        let s = zone.sections(&a, &owner);
        assert_eq!(text(&s.answers), ["WrItE.Db.InTeRnAl. 1 IN A 10.0.0.11"]);
        assert!(s.soa.is_none() && s.additional.is_empty());
    }

    #[test]
    fn soa_ns_glue_and_negative_answers() {
        let zone = Zone::build(Arc::new(snapshot()), None).unwrap();
        let apex = Name::from_ascii("db.internal.").unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let ns = answer(&zone.snapshot, &zone.names.parse("db.internal."), Qtype::Ns, &mut rng);
        let s = zone.sections(&ns, &apex);
        assert_eq!(
            text(&s.answers),
            [
                "db.internal. 1 IN NS ns1.db.internal.",
                "db.internal. 1 IN NS ns2.other.net.",
                "db.internal. 1 IN NS ns3.sub.db.internal."
            ]
        );
        let glue: Vec<String> = s.additional.iter().map(|r| r.to_string()).collect();
        assert_eq!(glue, ["ns1.db.internal. 1 IN A 192.0.2.1", "ns3.sub.db.internal. 1 IN AAAA 2001:db8::53"]);
        let nx = answer(&zone.snapshot, &zone.names.parse("nosuch.db.internal."), Qtype::A, &mut rng);
        let s = zone.sections(&nx, &apex);
        assert!(s.answers.is_empty());
        assert_eq!(
            s.soa.unwrap().to_string(),
            "db.internal. 5 IN SOA ns1.db.internal. hostmaster.db.internal. 7 3600 600 86400 5"
        );
    }

    #[test]
    fn txt_lines_are_one_record_per_node_and_split_at_255_bytes() {
        let zone = Zone::build(Arc::new(snapshot()), None).unwrap();
        let owner = Name::from_ascii("read.db.internal.").unwrap();
        let a =
            answer(&zone.snapshot, &zone.names.parse("read.db.internal."), Qtype::Txt, &mut SmallRng::seed_from_u64(1));
        let s = zone.sections(&a, &owner);
        let lines = zone.snapshot.clusters[0].endpoint_lines(0);
        assert_eq!(s.answers.len(), lines.len());
        for (record, line) in s.answers.iter().zip(&lines) {
            let RData::TXT(t) = &record.data else { panic!("not TXT: {record}") };
            assert_eq!(t.txt_data.concat(), line.as_bytes());
        }
        let long = "é".repeat(200);
        let parts = chunks(&long, 255);
        assert!(parts.iter().all(|p| p.len() <= 255), "{parts:?}");
        assert_eq!(parts.concat(), long);
        assert_eq!(chunks("short", 255), ["short"]);
    }

    #[test]
    fn cell_reuses_names_for_the_same_config() {
        let snap = snapshot();
        let published = Published::new(snap.clone());
        let cell = ZoneCell::new(&published).unwrap();
        let before = cell.load();
        let mut next = snap;
        next.serial = 8;
        cell.update(Arc::new(next)).unwrap();
        let after = cell.load();
        assert_eq!(after.snapshot.serial, 8);
        assert!(Arc::ptr_eq(&before.names, &after.names));
    }
}
