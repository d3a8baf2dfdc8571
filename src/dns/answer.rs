//! The SPEC §5 and §9 tables, and the only place they live: a snapshot, a parsed query
//! name and a query type → an [`Answer`] (rcode, sections as plain data, TTL). The
//! server only encodes it.
//!
//! Locality (SPEC §8): a read name whose policy uses locations, asked by a client placed
//! in a location, answers the qualifying replicas there first (by weight), then, under
//! `prefer`, the others (by weight); under `only` never the others, and the fallback when
//! none is there. When none qualifies there under `prefer`, or the client's location is
//! unknown, it picks among all, as without locality. The eligible set per location is
//! precomputed in the snapshot ([`EndpointView::local`]).
//!
//! SRV (SPEC §9) answers the nodes a name would answer as one ordered failover list: for
//! `write` the primary ([`Priority::Primary`]); for a read name every replica that
//! qualifies ([`replica_priority`]: `Near`, `Far` for other locations), then what the
//! fallback would answer (`Fallback`), each node once, at its first priority.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;

use crate::check;
use crate::config::{Answers, Config, Fallback, LocalityPolicy};
use crate::dns::name::{Service, Target, Variant};
use crate::dns::query::{Nearness, Qtype, QueryKind, Rcode};
use crate::health::NodeState;
use crate::locality::{LocationId, Placement};
use crate::select;
use crate::snapshot::{ClusterView, EndpointView, NodeView, Snapshot};
use crate::topology::Role;
use crate::wal::Lsn;

impl Qtype {
    /// Which address families an address query wants; `None` for non-address types.
    fn family(self) -> Option<Family> {
        match self {
            Qtype::A => Some(Family::V4),
            Qtype::Aaaa => Some(Family::V6),
            Qtype::Any => Some(Family::Both),
            Qtype::Txt | Qtype::Soa | Qtype::Ns | Qtype::Srv | Qtype::Other => None,
        }
    }
}

impl Variant {
    /// How queries of this variant are counted.
    fn kind(self) -> QueryKind {
        match self {
            Variant::Plain => QueryKind::Read,
            Variant::MaxLag(_) => QueryKind::MaxLag,
            Variant::Lsn(_) => QueryKind::Lsn,
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

    /// A node's addresses of this family, as address records.
    fn records(self, node: &NodeView) -> impl Iterator<Item = Rr> + '_ {
        node.addresses.iter().copied().filter(move |ip| self.admits(*ip)).map(Rr::Addr)
    }

    /// Whether a node has an address of this family.
    fn has(self, node: &NodeView) -> bool {
        node.addresses.iter().any(|ip| self.admits(*ip))
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
    /// An SRV record pointing at a node's name and `port`, at this priority.
    Srv { cluster: usize, node: usize, priority: Priority },
    /// The TXT string saying where the asker was placed (SPEC §8), before the node lines.
    Client(Placement),
}

/// Whose TXT lines to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxtOf {
    Write {
        cluster: usize,
    },
    Endpoint {
        cluster: usize,
        endpoint: usize,
    },
    /// One node's line (with its `read` verdict), for its node name.
    Node {
        cluster: usize,
        node: usize,
    },
}

/// One additional-section record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Additional {
    /// The address of `config.dns.nameservers[i]` (glue).
    Nameserver(usize),
    /// The address record of a node's name (an SRV target).
    Node { cluster: usize, node: usize },
}

/// The priority of an SRV record (SPEC §9): RFC 2782 clients try lower values first,
/// and choose by weight within one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// `write`: the primary, alone.
    Primary,
    /// A qualifying replica in the client's location, or anywhere when the client's
    /// location is unknown or locality is not used.
    Near,
    /// A qualifying replica in another location (SPEC §8).
    Far,
    /// What the name's fallback would answer.
    Fallback,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::Primary, Priority::Near, Priority::Far, Priority::Fallback];

    /// The SRV priority field.
    pub fn value(self) -> u16 {
        match self {
            Priority::Primary => 0,
            Priority::Near => 10,
            Priority::Far => 20,
            Priority::Fallback => 30,
        }
    }

    /// The SRV weight field of a node of weight `weight` at this priority: its weight
    /// (capped at 65535, the field's largest value) among replicas; 0 for the primary's
    /// single `write` record, as RFC 2782 advises when there is nothing to choose between.
    pub fn weight(self, weight: u32) -> u16 {
        match self {
            Priority::Primary => 0,
            Priority::Near | Priority::Far | Priority::Fallback => u16::try_from(weight).unwrap_or(u16::MAX),
        }
    }
}

/// The priority of a replica that qualifies for a read name: `local` says whether it is
/// in the client's location, `None` when that is unknown or locality is not used (SPEC
/// §8).
pub fn replica_priority(local: Option<bool>) -> Priority {
    match local {
        Some(false) => Priority::Far,
        Some(true) | None => Priority::Near,
    }
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
    /// What goes in the additional section: nameserver glue, SRV targets' addresses.
    pub additional: Vec<Additional>,
    /// Whether the answer depends on the client's location (ECS SCOPE is then not 0).
    pub by_location: bool,
    /// For a read answer with addresses: whether its first record is in the client's
    /// location (for `/metrics`).
    pub nearness: Option<Nearness>,
}

impl Answer {
    fn new(kind: QueryKind, rcode: Rcode) -> Answer {
        Answer {
            kind,
            rcode,
            authoritative: true,
            answers: Vec::new(),
            ttl: 0,
            authority_soa: false,
            additional: Vec::new(),
            by_location: false,
            nearness: None,
        }
    }

    /// NOERROR with records; NODATA (SOA in authority) when `answers` is empty.
    fn records(kind: QueryKind, answers: Vec<Rr>, ttl: u32) -> Answer {
        let authority_soa = answers.is_empty();
        Answer { answers, ttl, authority_soa, ..Answer::new(kind, Rcode::NoError) }
    }

    fn nodata(kind: QueryKind) -> Answer {
        Answer::records(kind, Vec::new(), 0)
    }

    /// SRV records for `nodes` of `cluster` (in this order), their addresses in the
    /// additional section.
    fn srv(cluster: usize, nodes: &[(usize, Priority)], ttl: u32) -> Answer {
        let answers = nodes.iter().map(|&(node, priority)| Rr::Srv { cluster, node, priority }).collect();
        let additional = nodes.iter().map(|&(node, _)| Additional::Node { cluster, node }).collect();
        Answer { additional, ..Answer::records(QueryKind::Srv, answers, ttl) }
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

/// Answers one query: the SPEC §5, §8 and §9 tables. `client` is where the asker was
/// placed, when `[locality]` is configured.
pub fn answer<R: Rng + ?Sized>(
    snap: &Snapshot,
    target: &Target,
    qtype: Qtype,
    client: Option<&Placement>,
    rng: &mut R,
) -> Answer {
    let ttl = ttl_secs(snap.config.dns.ttl);
    match *target {
        Target::OutOfZone => Answer { authoritative: false, ..Answer::new(QueryKind::OutOfZone, Rcode::Refused) },
        Target::Unknown => Answer { authority_soa: true, ..Answer::new(QueryKind::Unknown, Rcode::NxDomain) },
        Target::Empty => Answer::nodata(QueryKind::Empty),
        Target::Apex => apex(snap, qtype),
        Target::Nameserver(i) => match (snap.config.dns.nameservers.get(i), qtype.family()) {
            (Some(ns), Some(fam)) if fam.admits(ns.address) => {
                Answer::records(QueryKind::Nameserver, vec![Rr::Addr(ns.address)], ttl)
            }
            _ => Answer::nodata(QueryKind::Nameserver),
        },
        Target::Node { cluster, node } => node_name(snap, cluster, node, qtype, ttl),
        Target::Write { cluster } => match snap.clusters.get(cluster) {
            Some(view) if snap.ready => write(view, cluster, qtype, ttl),
            _ => Answer::new(QueryKind::Write, Rcode::ServFail),
        },
        Target::Endpoint { cluster, endpoint, variant } => {
            let kind = variant.kind();
            match EndpointQuery::new(snap, cluster, endpoint, variant, kind, client) {
                Some(q) => q.answer(qtype, rng),
                None => Answer::new(kind, Rcode::ServFail),
            }
        }
        Target::Srv(_) if !matches!(qtype, Qtype::Srv | Qtype::Any) => Answer::nodata(QueryKind::Srv),
        Target::Srv(Service::Write { cluster }) => {
            match snap.clusters.get(cluster).filter(|_| snap.ready).and_then(|view| view.write.node()) {
                Some(primary) => Answer::srv(cluster, &[(primary, Priority::Primary)], ttl),
                None => Answer::new(QueryKind::Srv, Rcode::ServFail),
            }
        }
        Target::Srv(Service::Endpoint { cluster, endpoint, variant }) => {
            match EndpointQuery::new(snap, cluster, endpoint, variant, QueryKind::Srv, client) {
                Some(q) => q.srv(),
                None => Answer::new(QueryKind::Srv, Rcode::ServFail),
            }
        }
    }
}

/// What one query's answer depends on beyond the snapshot, the name, the type and the
/// asker's location: the fast path (`dns::fast`) precomputes the first two per snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// This answer, whatever is drawn.
    Fixed(Answer),
    /// Weighted picks, as `select::pick` draws them for [`answer`]: up to `count` of
    /// `first` (weight, the answer naming that candidate alone), then, when those were
    /// fewer, of `then`; the answer is the picked candidates' records in the order
    /// picked, or `none` when none is.
    Pick { first: Vec<(u32, Answer)>, then: Vec<(u32, Answer)>, count: Option<usize>, none: Answer },
    /// Decided per query: a TXT naming the asker's address.
    PerQuery,
}

/// [`answer`] as a [`Plan`]: with the same draws, `Fixed` and `Pick` give exactly what
/// `answer` gives.
pub fn plan(snap: &Snapshot, target: &Target, qtype: Qtype, client: Option<&Placement>) -> Plan {
    match *target {
        Target::Endpoint { cluster, endpoint, variant } => {
            let kind = variant.kind();
            match EndpointQuery::new(snap, cluster, endpoint, variant, kind, client) {
                Some(q) => q.plan(qtype),
                None => Plan::Fixed(Answer::new(kind, Rcode::ServFail)),
            }
        }
        // nothing else draws
        _ => Plan::Fixed(answer(snap, target, qtype, client, &mut NoDraw)),
    }
}

/// The random source of answers that draw nothing (a draw from it is a bug: it panics).
struct NoDraw;

impl rand::TryRng for NoDraw {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!("a fixed answer drew a random number")
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!("a fixed answer drew a random number")
    }

    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
        unreachable!("a fixed answer drew a random number")
    }
}

/// `<node>.<cluster>.<zone>`: the node's address whatever its state (also before the
/// first probe round: the name is fixed), and its TXT line.
fn node_name(snap: &Snapshot, cluster: usize, node: usize, qtype: Qtype, ttl: u32) -> Answer {
    let Some(view) = snap.clusters.get(cluster).and_then(|c| c.nodes.get(node)) else {
        return Answer::nodata(QueryKind::Node);
    };
    let answers = match qtype.family() {
        Some(fam) => fam.records(view).collect(),
        None if qtype == Qtype::Txt => vec![Rr::Txt(TxtOf::Node { cluster, node })],
        None => Vec::new(),
    };
    Answer::records(QueryKind::Node, answers, ttl)
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
        out.additional = (0..dns.nameservers.len())
            .filter(|&i| in_zone(&dns.nameservers[i].name, &zone))
            .map(Additional::Nameserver)
            .collect();
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
        Some(node) => Answer::records(QueryKind::Write, fam.records(node).collect(), ttl),
    }
}

/// Which nodes an endpoint query answers, before the address-family filter.
enum Choice<'a> {
    /// Picked at random by weight, up to the policy's `answers`: from the first set, then
    /// (when it has too few) from the second.
    Weighted(Cow<'a, [usize]>, Vec<usize>),
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
    /// Where the asker was placed (with `[locality]`).
    client: Option<&'a Placement>,
    /// Whether this name orders by location: `[locality]` exists and the policy is not
    /// `ignore`.
    by_location: bool,
}

impl<'a> EndpointQuery<'a> {
    /// The query of an endpoint name; `None` (SERVFAIL) before the first probe round.
    fn new(
        snap: &'a Snapshot,
        cluster: usize,
        endpoint: usize,
        variant: Variant,
        kind: QueryKind,
        client: Option<&'a Placement>,
    ) -> Option<Self> {
        let view = snap.clusters.get(cluster).filter(|c| endpoint < c.endpoints.len() && snap.ready)?;
        let ttl = if matches!(variant, Variant::Lsn(_)) { 0 } else { ttl_secs(snap.config.dns.ttl) };
        let measurable = crate::lag::measurable(&snap.config);
        let by_location = client.is_some() && view.endpoints[endpoint].policy.locality != LocalityPolicy::Ignore;
        Some(EndpointQuery { measurable, view, cluster, endpoint, variant, kind, ttl, client, by_location })
    }

    fn ep(&self) -> &'a EndpointView {
        &self.view.endpoints[self.endpoint]
    }

    /// The client's location, when this name orders by it and it is known.
    fn near(&self) -> Option<LocationId> {
        self.client.filter(|_| self.by_location).and_then(|c| c.location)
    }

    fn only(&self) -> bool {
        self.ep().policy.locality == LocalityPolicy::Only
    }

    fn answer<R: Rng + ?Sized>(&self, qtype: Qtype, rng: &mut R) -> Answer {
        if qtype == Qtype::Txt {
            let txt = Rr::Txt(TxtOf::Endpoint { cluster: self.cluster, endpoint: self.endpoint });
            let answers = match self.client {
                Some(placement) => vec![Rr::Client(*placement), txt],
                None => vec![txt],
            };
            let by_location = self.client.is_some();
            return Answer { by_location, ..Answer::records(self.kind, answers, self.ttl) };
        }
        let Some(fam) = qtype.family() else {
            return Answer::nodata(self.kind);
        };
        let nodes = match self.choice() {
            Choice::Weighted(first, then) => self.pick(&first, &then, fam, rng),
            Choice::Ordered(nodes) => nodes,
            Choice::Primary => match self.view.write.node() {
                Some(i) => vec![i],
                None => return Answer::new(self.kind, Rcode::ServFail),
            },
            Choice::Nothing => Vec::new(),
        };
        self.addresses(nodes, fam)
    }

    /// The address answer naming `nodes` (those without an address of the family left
    /// out).
    fn addresses(&self, nodes: Vec<usize>, fam: Family) -> Answer {
        let nodes: Vec<usize> = nodes.into_iter().filter(|&i| fam.has(&self.view.nodes[i])).collect();
        let nearness = nodes.first().map(|&i| self.nearness(i));
        let answers = nodes.iter().flat_map(|&i| fam.records(&self.view.nodes[i])).collect();
        Answer { by_location: self.by_location, nearness, ..Answer::records(self.kind, answers, self.ttl) }
    }

    /// [`plan`] of this endpoint query.
    fn plan(&self, qtype: Qtype) -> Plan {
        match (qtype.family(), self.choice()) {
            // the TXT names the asker's address: per query
            (None, _) if qtype == Qtype::Txt && self.client.is_some() => Plan::PerQuery,
            (Some(fam), Choice::Weighted(first, then)) => {
                let count = match self.ep().policy.answers {
                    Answers::Count(n) => Some(n as usize),
                    Answers::All => None,
                };
                // the candidates `pick` draws from, each with the answer naming it alone
                let weighted = |nodes: &[usize]| -> Vec<(u32, Answer)> {
                    let nodes = nodes.iter().filter(|&&i| fam.has(&self.view.nodes[i]));
                    nodes.map(|&i| (self.view.nodes[i].weight, self.addresses(vec![i], fam))).collect()
                };
                Plan::Pick {
                    first: weighted(&first),
                    then: weighted(&then),
                    count,
                    none: self.addresses(Vec::new(), fam),
                }
            }
            _ => Plan::Fixed(self.answer(qtype, &mut NoDraw)),
        }
    }

    /// Whether node `i` is in the client's location.
    fn nearness(&self, i: usize) -> Nearness {
        match (self.client.and_then(|c| c.location), self.view.nodes[i].location) {
            (None, _) => Nearness::Unknown,
            (Some(client), Some(node)) if client == node => Nearness::Local,
            (Some(_), _) => Nearness::Remote,
        }
    }

    /// The SRV answer: every qualifying replica (priority 10 in the client's location or
    /// when it does not count, 20 elsewhere, left out under `only`), then what the
    /// fallback would answer, each node once. SERVFAIL only where an address query would
    /// get it: nothing qualifies and the fallback is a primary nobody knows.
    fn srv(&self) -> Answer {
        let (qualified, fallback) = self.qualified();
        let near = self.near();
        let mut nodes: Vec<(usize, Priority)> = qualified
            .iter()
            .map(|&i| (i, replica_priority(near.map(|loc| self.view.nodes[i].location == Some(loc)))))
            .filter(|&(_, p)| !(p == Priority::Far && self.only()))
            .collect();
        let fallback_nodes = match fallback {
            Fallback::Primary => match self.view.write.node() {
                Some(primary) => vec![primary],
                None if nodes.is_empty() => return Answer::new(self.kind, Rcode::ServFail),
                None => Vec::new(),
            },
            Fallback::None => Vec::new(),
            Fallback::Open => self.open(),
        };
        for i in fallback_nodes {
            if !nodes.iter().any(|&(n, _)| n == i) {
                nodes.push((i, Priority::Fallback));
            }
        }
        nodes.sort_by_key(|&(_, priority)| priority);
        Answer { by_location: self.by_location, ..Answer::srv(self.cluster, &nodes, self.ttl) }
    }

    /// The replicas this name answers first (the endpoint's eligible ones; within the
    /// query's bound for `maxlag-`; those that replayed the position for `lsn-`), and
    /// the fallback when there are none (for `lsn-` always the primary, the one node
    /// sure to have the position).
    fn qualified(&self) -> (Cow<'a, [usize]>, Fallback) {
        let ep = self.ep();
        match self.variant {
            Variant::Plain => (Cow::Borrowed(&ep.eligible), ep.policy.fallback),
            Variant::MaxLag(max_lag) => {
                let policy = check::bounded(ep.policy, max_lag, self.measurable);
                let eligible = (self.members())
                    .filter(|&i| check::eligibility_under(self.view, self.endpoint, i, &policy).is_eligible())
                    .collect();
                (Cow::Owned(eligible), policy.fallback)
            }
            Variant::Lsn(lsn) => {
                (Cow::Owned(self.members().filter(|&i| self.has_replayed(i, lsn)).collect()), Fallback::Primary)
            }
        }
    }

    /// The qualifying replicas in the client's location and the others: from the
    /// snapshot's per-location sets for the plain name, partitioned here for `maxlag-`
    /// and `lsn-` (whose sets depend on the query).
    fn split(&self, qualified: Cow<'a, [usize]>, near: LocationId) -> (Cow<'a, [usize]>, Vec<usize>) {
        let nodes = &self.view.nodes;
        let (local, others): (Cow<'a, [usize]>, Vec<usize>) = match qualified {
            Cow::Borrowed(all) => {
                let local = self.ep().local(near);
                let others = match self.wants_more_than(local.len()) {
                    true => all.iter().copied().filter(|&i| nodes[i].location != Some(near)).collect(),
                    false => Vec::new(),
                };
                (Cow::Borrowed(local), others)
            }
            Cow::Owned(all) => {
                let (local, others) = all.into_iter().partition(|&i| nodes[i].location == Some(near));
                (Cow::Owned(local), others)
            }
        };
        (local, others)
    }

    /// Whether the policy's `answers` asks for more than `n` records.
    fn wants_more_than(&self, n: usize) -> bool {
        match self.ep().policy.answers {
            Answers::Count(c) => c as usize > n,
            Answers::All => true,
        }
    }

    fn choice(&self) -> Choice<'a> {
        let (qualified, fallback) = self.qualified();
        if let Some(near) = self.near() {
            let (local, others) = self.split(qualified.clone(), near);
            match (local.is_empty(), self.only()) {
                (false, true) => return Choice::Weighted(local, Vec::new()),
                (false, false) => return Choice::Weighted(local, others),
                (true, true) => return self.fallback(fallback),
                (true, false) => {}
            }
        }
        match qualified.is_empty() {
            false => Choice::Weighted(qualified, Vec::new()),
            true => self.fallback(fallback),
        }
    }

    fn fallback(&self, fallback: Fallback) -> Choice<'a> {
        match fallback {
            Fallback::Primary => Choice::Primary,
            Fallback::None => Choice::Nothing,
            Fallback::Open => Choice::Ordered(self.open()),
        }
    }

    /// Node indices that belong to this endpoint.
    fn members(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.view.nodes.len()).filter(move |&i| check::is_member(self.ep(), i))
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

    /// Up to `answers` nodes of the family by weight from `first`, then from `then`.
    fn pick<R: Rng + ?Sized>(&self, first: &[usize], then: &[usize], fam: Family, rng: &mut R) -> Vec<usize> {
        let candidates = |nodes: &[usize]| -> Vec<(usize, u32)> {
            nodes
                .iter()
                .map(|&i| (i, &self.view.nodes[i]))
                .filter(|(_, n)| fam.has(n))
                .map(|(i, n)| (i, n.weight))
                .collect()
        };
        let count = match self.ep().policy.answers {
            Answers::Count(n) => Some(n as usize),
            Answers::All => None,
        };
        let mut picked = select::pick(&candidates(first), count, rng);
        let rest = count.map(|c| c.saturating_sub(picked.len()));
        if !then.is_empty() && rest != Some(0) {
            picked.extend(select::pick(&candidates(then), rest, rng));
        }
        picked
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "locality_tests.rs"]
mod locality_tests;
