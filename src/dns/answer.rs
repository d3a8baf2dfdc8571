//! The SPEC §5 table, and the only place it lives: a snapshot, a parsed query name and
//! a query type → an [`Answer`] (rcode, sections as plain data, TTL). The server only
//! encodes it.

use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;

use crate::config::{Answers, Config, Fallback, Policy};
use crate::dns::name::{Target, Variant};
use crate::dns::query::{Qtype, QueryKind, Rcode};
use crate::health::NodeState;
use crate::select;
use crate::snapshot::{ClusterView, EndpointView, Snapshot};
use crate::topology::{evaluate, Eligibility, Reason, Role};
use crate::wal::Lsn;

impl Qtype {
    /// Which address families an address query wants; `None` for non-address types.
    fn family(self) -> Option<Family> {
        match self {
            Qtype::A => Some(Family::V4),
            Qtype::Aaaa => Some(Family::V6),
            Qtype::Any => Some(Family::Both),
            Qtype::Txt | Qtype::Soa | Qtype::Ns | Qtype::Other => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    Both,
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
            Family::Both => true,
        }
    }
}

/// One answer-section record, owned by the query name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rr {
    /// A or AAAA by the address family.
    Addr(IpAddr),
    /// The TXT lines of a name (one TXT record per node).
    Txt(TxtOf),
    /// The zone's SOA.
    Soa,
    /// `config.dns.nameservers[i]`.
    Ns(usize),
}

/// Whose TXT lines to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxtOf {
    Write { cluster: usize },
    Endpoint { cluster: usize, endpoint: usize },
}

/// A decided response, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub kind: QueryKind,
    pub rcode: Rcode,
    /// AA: every in-zone answer.
    pub authoritative: bool,
    pub answers: Vec<Rr>,
    /// TTL of the answer records (the SOA always carries the negative TTL).
    pub ttl: u32,
    /// The zone SOA in the authority section (NXDOMAIN, NODATA).
    pub authority_soa: bool,
    /// Nameserver indices whose address goes in the additional section (glue).
    pub glue: Vec<usize>,
}

impl Answer {
    fn new(kind: QueryKind, rcode: Rcode) -> Answer {
        Answer { kind, rcode, authoritative: true, answers: Vec::new(), ttl: 0, authority_soa: false, glue: Vec::new() }
    }

    /// NOERROR with records; NODATA (SOA in authority) when `answers` is empty.
    fn records(kind: QueryKind, answers: Vec<Rr>, ttl: u32) -> Answer {
        let authority_soa = answers.is_empty();
        Answer { answers, ttl, authority_soa, ..Answer::new(kind, Rcode::NoError) }
    }

    fn nodata(kind: QueryKind) -> Answer {
        Answer::records(kind, Vec::new(), 0)
    }
}

/// SOA timers that are not in the config (no secondaries transfer this zone).
pub const SOA_REFRESH: i32 = 3600;
pub const SOA_RETRY: i32 = 600;
pub const SOA_EXPIRE: i32 = 86400;

/// The zone's SOA as plain data (names lower case, without the trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    pub zone: String,
    /// The first nameserver (the apex when none is configured).
    pub mname: String,
    /// `hostmaster.<zone>`.
    pub rname: String,
    pub serial: u32,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    /// The negative TTL, which is also the SOA record's own TTL.
    pub minimum: u32,
}

impl Soa {
    /// The SOA of `snap`'s zone with its serial.
    pub fn of(snap: &Snapshot) -> Soa {
        Soa::new(&snap.config, snap.serial)
    }

    pub fn new(config: &Config, serial: u32) -> Soa {
        let dns = &config.dns;
        let zone = dns.zone.trim_end_matches('.').to_ascii_lowercase();
        let mname =
            dns.nameservers.first().map_or(zone.clone(), |ns| ns.name.trim_end_matches('.').to_ascii_lowercase());
        Soa {
            rname: format!("hostmaster.{zone}"),
            zone,
            mname,
            serial,
            refresh: SOA_REFRESH,
            retry: SOA_RETRY,
            expire: SOA_EXPIRE,
            minimum: ttl_secs(dns.negative_ttl),
        }
    }
}

/// Whole seconds of a TTL (sub-second TTLs round down).
pub fn ttl_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Answers one query: the SPEC §5 table.
pub fn answer<R: Rng + ?Sized>(snap: &Snapshot, target: &Target, qtype: Qtype, rng: &mut R) -> Answer {
    let ttl = ttl_secs(snap.config.dns.ttl);
    match *target {
        Target::OutOfZone => Answer { authoritative: false, ..Answer::new(QueryKind::OutOfZone, Rcode::Refused) },
        Target::Unknown => Answer { authority_soa: true, ..Answer::new(QueryKind::Unknown, Rcode::NxDomain) },
        Target::Apex => apex(snap, qtype),
        Target::Nameserver(i) => match (snap.config.dns.nameservers.get(i), qtype.family()) {
            (Some(ns), Some(fam)) if fam.admits(ns.address) => {
                Answer::records(QueryKind::Nameserver, vec![Rr::Addr(ns.address)], ttl)
            }
            _ => Answer::nodata(QueryKind::Nameserver),
        },
        Target::Write { cluster } => match snap.clusters.get(cluster) {
            Some(view) if snap.ready => write(view, cluster, qtype, ttl),
            _ => Answer::new(QueryKind::Write, Rcode::ServFail),
        },
        Target::Endpoint { cluster, endpoint, variant } => {
            let kind = match variant {
                Variant::Plain => QueryKind::Read,
                Variant::MaxLag(_) => QueryKind::MaxLag,
                Variant::Lsn(_) => QueryKind::Lsn,
            };
            let view = snap.clusters.get(cluster).filter(|c| endpoint < c.endpoints.len());
            match view {
                Some(view) if snap.ready => {
                    let ttl = if matches!(variant, Variant::Lsn(_)) { 0 } else { ttl };
                    let q = EndpointQuery {
                        measurable: crate::lag::measurable(&snap.config),
                        view,
                        cluster,
                        endpoint,
                        variant,
                        kind,
                        ttl,
                    };
                    q.answer(qtype, rng)
                }
                _ => Answer::new(kind, Rcode::ServFail),
            }
        }
    }
}

fn apex(snap: &Snapshot, qtype: Qtype) -> Answer {
    let dns = &snap.config.dns;
    let ns: Vec<Rr> = (0..dns.nameservers.len()).map(Rr::Ns).collect();
    let answers = match qtype {
        Qtype::Soa => vec![Rr::Soa],
        Qtype::Ns => ns,
        Qtype::Any => std::iter::once(Rr::Soa).chain(ns).collect(),
        _ => Vec::new(),
    };
    let mut out = Answer::records(QueryKind::Apex, answers, ttl_secs(dns.ttl));
    if out.answers.iter().any(|r| matches!(r, Rr::Ns(_))) {
        let zone = dns.zone.trim_end_matches('.').to_ascii_lowercase();
        out.glue = (0..dns.nameservers.len()).filter(|&i| in_zone(&dns.nameservers[i].name, &zone)).collect();
    }
    out
}

fn in_zone(name: &str, zone: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.strip_suffix(zone).is_some_and(|p| p.is_empty() || p.ends_with('.'))
}

fn write(view: &ClusterView, cluster: usize, qtype: Qtype, ttl: u32) -> Answer {
    if qtype == Qtype::Txt {
        return Answer::records(QueryKind::Write, vec![Rr::Txt(TxtOf::Write { cluster })], ttl);
    }
    let Some(fam) = qtype.family() else {
        return Answer::nodata(QueryKind::Write);
    };
    match view.write.node().and_then(|i| view.nodes.get(i)) {
        None => Answer::new(QueryKind::Write, Rcode::ServFail),
        Some(node) => {
            let answers = Some(Rr::Addr(node.address)).filter(|_| fam.admits(node.address));
            Answer::records(QueryKind::Write, answers.into_iter().collect(), ttl)
        }
    }
}

/// Which nodes an endpoint query answers, before the address-family filter.
enum Choice {
    /// Picked at random by weight, up to the policy's `answers`.
    Weighted(Vec<usize>),
    /// All of them, in this order (fallback `open`).
    Ordered(Vec<usize>),
    /// The write target (fresh or stale); SERVFAIL without one.
    Primary,
    /// NODATA.
    Nothing,
}

struct EndpointQuery<'a> {
    /// `maxlag-N` is capped at this: beyond it lag is not measured faithfully.
    measurable: Duration,
    view: &'a ClusterView,
    cluster: usize,
    endpoint: usize,
    variant: Variant,
    kind: QueryKind,
    ttl: u32,
}

impl EndpointQuery<'_> {
    fn ep(&self) -> &EndpointView {
        &self.view.endpoints[self.endpoint]
    }

    fn answer<R: Rng + ?Sized>(&self, qtype: Qtype, rng: &mut R) -> Answer {
        if qtype == Qtype::Txt {
            let txt = TxtOf::Endpoint { cluster: self.cluster, endpoint: self.endpoint };
            return Answer::records(self.kind, vec![Rr::Txt(txt)], self.ttl);
        }
        let Some(fam) = qtype.family() else {
            return Answer::nodata(self.kind);
        };
        let nodes = match self.choice() {
            Choice::Weighted(nodes) => self.pick(&nodes, fam, rng),
            Choice::Ordered(nodes) => nodes,
            Choice::Primary => match self.view.write.node() {
                Some(i) => vec![i],
                None => return Answer::new(self.kind, Rcode::ServFail),
            },
            Choice::Nothing => Vec::new(),
        };
        let answers = nodes
            .into_iter()
            .filter_map(|i| self.view.nodes.get(i).map(|n| n.address))
            .filter(|ip| fam.admits(*ip))
            .map(Rr::Addr)
            .collect();
        Answer::records(self.kind, answers, self.ttl)
    }

    fn choice(&self) -> Choice {
        let ep = self.ep();
        match self.variant {
            Variant::Plain => self.or_fallback(ep.eligible.clone(), &ep.policy),
            Variant::MaxLag(max_lag) => {
                let policy = Policy { max_lag: max_lag.min(self.measurable), ..ep.policy };
                let timeline = self.view.primary_timeline();
                let eligible = self
                    .members()
                    .filter(|&i| evaluate(&self.view.nodes[i].facts(), true, &policy, timeline).is_eligible())
                    .collect();
                self.or_fallback(eligible, &policy)
            }
            Variant::Lsn(lsn) => {
                let caught_up: Vec<usize> = self.members().filter(|&i| self.has_replayed(i, lsn)).collect();
                if caught_up.is_empty() {
                    Choice::Primary
                } else {
                    Choice::Weighted(caught_up)
                }
            }
        }
    }

    fn or_fallback(&self, eligible: Vec<usize>, policy: &Policy) -> Choice {
        if !eligible.is_empty() {
            return Choice::Weighted(eligible);
        }
        match policy.fallback {
            Fallback::Primary => Choice::Primary,
            Fallback::None => Choice::Nothing,
            Fallback::Open => Choice::Ordered(self.open()),
        }
    }

    /// Node indices that belong to this endpoint.
    fn members(&self) -> impl Iterator<Item = usize> + '_ {
        let verdicts = &self.ep().verdicts;
        (0..self.view.nodes.len())
            .filter(move |&i| verdicts.get(i) != Some(&Eligibility::Ineligible(Reason::NotMember)))
    }

    fn is_up_replica(&self, i: usize) -> bool {
        let n = &self.view.nodes[i];
        n.state == NodeState::Up && n.role == Role::Replica
    }

    fn has_replayed(&self, i: usize, lsn: Lsn) -> bool {
        let n = &self.view.nodes[i];
        self.is_up_replica(i) && n.weight > 0 && n.replay_lsn.is_some_and(|r| r >= lsn)
    }

    /// Fallback `open`: every up replica of the endpoint, least lag first, unknown last.
    fn open(&self) -> Vec<usize> {
        let mut nodes: Vec<usize> = self.members().filter(|&i| self.is_up_replica(i)).collect();
        nodes.sort_by_key(|&i| self.view.nodes[i].lag.map_or((1, Duration::ZERO), |l| (0, l)));
        nodes
    }

    fn pick<R: Rng + ?Sized>(&self, nodes: &[usize], fam: Family, rng: &mut R) -> Vec<usize> {
        let candidates: Vec<(usize, u32)> = nodes
            .iter()
            .map(|&i| (i, &self.view.nodes[i]))
            .filter(|(_, n)| fam.admits(n.address))
            .map(|(i, n)| (i, n.weight))
            .collect();
        let count = match self.ep().policy.answers {
            Answers::Count(n) => Some(n as usize),
            Answers::All => None,
        };
        select::pick(&candidates, count, rng)
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
