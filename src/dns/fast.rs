//! The fast answer path: the queries that dominate (one question, class IN, A, AAAA,
//! SRV, TXT, SOA, NS or ANY on a name of the zone, with or without EDNS, NSID and ECS)
//! answered from bytes precomputed per snapshot. A query is read without allocating
//! ([`Query::read`]); its response is the header with the ID and RD/CD copied, the
//! question echoed byte for byte (so its case), the precomputed records, and the OPT.
//!
//! The [`Table`] is built when the publisher derives a snapshot's zone, from the same
//! functions the full path answers with ([`answer::plan`], [`Zone::sections`],
//! [`wire::encode`]): per exact name (`Names::exact`), per query type and, with
//! `[locality]`, per location the asker may be placed in, the records after the
//! question. A weighted `answers = 1` name keeps one set of records per candidate and
//! draws among them as `select::pick` would ([`select::draw`]). So the fast path gives
//! byte for byte what the full path gives; `dns::fast_tests` compares them.
//!
//! A table is built on the previous one: the names are indexed once per config, and a
//! cluster's entries are kept while its view is unchanged, so a snapshot costs what its
//! changed clusters cost (a probe changes one), whatever the number of clusters. The
//! SOA serial, which any cluster's change moves, is written into each response.
//!
//! A name of the zone that is none of its names gets the NXDOMAIN the full path gives,
//! precomputed once per config after the apex as question (see [`Unknown`]), when
//! neither it nor a name it is below is in the table (which leaves the `maxlag-` and
//! `lsn-` names, below their endpoint's, to the full path).
//!
//! Everything else goes to the full path (`respond`) unchanged: another opcode or class,
//! a name with a compression pointer or not in the table (`maxlag-`, `lsn-`, a name
//! below a node's or of other than letters, digits, `-` and `_`), an EDNS version
//! above 0, a malformed ECS option, an OPT that is not alone, a
//! response larger than the client takes, a snapshot before the first probe round, and
//! a TXT naming the asker's address.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use rand::Rng;
use rustc_hash::FxHashMap;

use crate::config::Config;
use crate::dns::answer::{self, Answer, Plan, Rr};
use crate::dns::ecs::ClientSubnet;
use crate::dns::name::{Service, Target};
use crate::dns::query::{Nearness, Qtype, QueryKind, Rcode};
use crate::dns::records::Zone;
use crate::dns::respond::{Transport, MAX_UDP_PAYLOAD, PLAIN_UDP};
use crate::dns::wire::{self, Head, Question, MAX_MESSAGE};
use crate::locality::{place, ClientAddr, Locality, LocationId, Placement, Via};
use crate::select;

/// The running weight sums of a slot's `first` and `then` candidates.
type Sums = (Box<[u64]>, Box<[u64]>);

/// An answer of addresses alone: its TTL and addresses.
type AddressKey = (u32, Vec<IpAddr>);

/// The picks of one query, and the draw's keys (`select::pick_into`).
type Picks = (Vec<usize>, Vec<(f64, usize)>);

thread_local! {
    /// Kept per thread: a query allocates nothing once they have grown.
    static PICKS: RefCell<Picks> = const { RefCell::new((Vec::new(), Vec::new())) };
}
use crate::snapshot::Snapshot;

/// The query types the table holds, in slot order.
const TYPES: [u16; 7] = [1, 2, 6, 16, 28, 33, 255];
/// Longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
const OPT_TYPE: u16 = 41;
const SOA_TYPE: u16 = 6;
const NSID: u16 = 3;
const ECS: u16 = 8;

/// One snapshot's precomputed responses. Most of it is the previous table's: a
/// cluster's entries are built again only when its view changed (see [`Table::build`]).
#[derive(Default)]
pub struct Table {
    index: Arc<Index>,
    /// The SOA serial, written into the SOA records of the responses: the entries'
    /// bytes may be an earlier table's, of an earlier serial.
    serial: u32,
    /// The entries of the names of no cluster (apex, nameservers, empty non-terminals).
    shared: Arc<Group>,
    /// Per cluster, the entries of its names.
    clusters: Vec<Arc<Group>>,
    /// The NXDOMAIN of a name of the zone that is none of its names.
    unknown: Option<Arc<Unknown>>,
}

/// The config's exact names, built once per config: where each one's entry is, and
/// each group's names in entry order.
#[derive(Default)]
struct Index {
    config: Option<Arc<Config>>,
    /// Lower-case wire name → (group: 0 for no cluster, `1 + c` for cluster `c`, entry).
    /// (FxHash: the keys are the config's, fixed while the index lives; a query only
    /// looks up, so it cannot lengthen a probe sequence.)
    names: FxHashMap<Box<[u8]>, (usize, usize)>,
    /// Per group, its names as wire labels and what they are.
    groups: Vec<Vec<(Box<[u8]>, Target)>>,
    /// The apex, lower-case wire labels.
    apex: Box<[u8]>,
    /// The SOA's MNAME and RNAME, lower-case wire labels: an NXDOMAIN name at or below
    /// one of them has an SOA compressed against it, unlike [`Unknown`]'s.
    soa_names: Vec<Box<[u8]>>,
}

/// The NXDOMAIN of a name of the zone that is none of its names, per query type (slot
/// order), as the full path encodes it after the apex as question. Its records (the
/// SOA) point into the question only at the apex (or the SOA's own names, which it
/// is not below), and every pointer moves by as many bytes as the question name is
/// longer than the apex. Each slot: the records, and where their pointers are.
struct Unknown {
    slots: Box<[(Records, Box<[usize]>)]>,
}

/// The entries of one group of names.
#[derive(Default)]
struct Group {
    entries: Box<[Entry]>,
}

/// The responses of one name: `slots[type * width + location]`, where `width` is 1, or
/// one more than the number of locations when the answer depends on where the asker is
/// (location 0: unknown).
struct Entry {
    width: usize,
    slots: Box<[Slot]>,
}

enum Slot {
    /// Answered by the full path.
    Full,
    Fixed(Records),
    /// Weighted picks among candidates (`(index into parts, weight)`, `first` then
    /// `then`, as `answer::Plan::Pick`): the answer is the picked parts' records one
    /// after another, or `none`.
    Pick {
        first: Box<[(usize, u32)]>,
        then: Box<[(usize, u32)]>,
        count: Option<usize>,
        parts: Box<[Records]>,
        none: Records,
        /// With `answers = 1`: `first` and `then` as running weight sums, so the draw is
        /// a binary search whatever the number of candidates.
        sums: Option<Sums>,
        /// The longest the records can be (`count` of the largest parts, or all): a
        /// response that could be too
        /// long for the client is left to the full path before anything is drawn, so
        /// that it draws what it would have drawn.
        most: usize,
    },
}

/// What follows a response's question, and what the header and counters say of it.
struct Records {
    /// Shared between the candidates' parts that carry the same addresses.
    bytes: Arc<[u8]>,
    /// Where in `bytes` the serial of an SOA record is: the table's serial is written
    /// there.
    serial_at: Option<usize>,
    /// ANCOUNT, NSCOUNT, ARCOUNT (without our OPT).
    counts: [u16; 3],
    aa: bool,
    rcode: Rcode,
    kind: QueryKind,
    nearness: Option<Nearness>,
    /// Whether the records depend on the asker's location (the ECS SCOPE is then not 0).
    by_location: bool,
}

impl Table {
    /// The table of `snap`, whose wire form is `zone`; empty before the first probe
    /// round (a query may then be held, which only the full path does).
    ///
    /// `prev`'s entries are kept where nothing they were built from changed: the names
    /// of no cluster while the config is the same (their only changing part, the SOA
    /// serial, is written per response), a cluster's names while `zone` kept that
    /// cluster's records from `prev`'s zone (`Zone::kept`: its view differs in probe
    /// bookkeeping alone and its write target is not stale, whose TXT dates a stale
    /// primary by the snapshot's time). With many clusters a snapshot then costs what
    /// the clusters whose nodes were probed since the last one cost, not what all of
    /// them do.
    pub fn build(snap: &Snapshot, zone: &Zone, prev: Option<&Zone>) -> Table {
        let kept = |c: usize| prev.is_some_and(|p| zone.kept(p, c));
        let prev = prev.map(|z| &z.fast);
        if !snap.ready {
            return Table::default();
        }
        let prev = prev.filter(|t| t.index.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, &snap.config)));
        let index = prev.map_or_else(|| Arc::new(Index::new(snap, zone)), |t| t.index.clone());
        let mut builder = Builder { snap, zone, addresses: HashMap::new() };
        let shared = match prev {
            Some(t) => t.shared.clone(),
            None => Arc::new(Group { entries: builder.entries(&index.groups[0]) }),
        };
        let clusters = index.groups[1..]
            .iter()
            .enumerate()
            .map(|(c, names)| match prev.and_then(|t| t.clusters.get(c)).filter(|_| kept(c)) {
                Some(group) => group.clone(),
                None => Arc::new(Group { entries: builder.entries(names) }),
            })
            .collect();
        let unknown = match prev {
            Some(t) => t.unknown.clone(),
            None => builder.unknown(&index.apex).map(Arc::new),
        };
        Table { index, serial: snap.serial, shared, clusters, unknown }
    }

    /// The entry of a lower-case wire name.
    fn entry(&self, name: &[u8]) -> Option<&Entry> {
        let &(group, entry) = self.index.names.get(name)?;
        let group = match group.checked_sub(1) {
            None => &self.shared,
            Some(c) => self.clusters.get(c)?,
        };
        group.entries.get(entry)
    }

    /// Writes the NXDOMAIN of a name of the zone that is none of its names
    /// ([`Index::unknown`]), or `None`.
    fn unknown(&self, query: &Query<'_>, cx: &Context<'_>, out: &mut Vec<u8>) -> Option<Answered> {
        let unknown = self.unknown.as_deref()?;
        let kind = TYPES.iter().position(|&t| t == query.qtype)?;
        let (records, pointers) = unknown.slots.get(kind).filter(|_| self.index.unknown(query.name()))?;
        let done = write(query, cx, None, std::slice::from_ref(records), &[0], self.serial, out)?;
        let moved = u16::try_from(query.name_len - self.index.apex.len()).ok()?;
        for &p in pointers {
            let at = query.question_end + p;
            let pointer = u16::from_be_bytes([out[at], out[at + 1]]) + moved;
            out[at..at + 2].copy_from_slice(&pointer.to_be_bytes());
        }
        Some(done)
    }
}

impl Index {
    fn new(snap: &Snapshot, zone: &Zone) -> Index {
        let mut names = FxHashMap::default();
        let mut groups = vec![Vec::new(); 1 + snap.config.clusters.len()];
        for name in zone.names.table.exact() {
            let Some(wire_name) = to_wire(&name) else { continue };
            let target = zone.names.table.parse(&name);
            let group = target.cluster().map_or(0, |c| 1 + c);
            let Some(list) = groups.get_mut(group) else { continue };
            names.insert(wire_name.clone().into_boxed_slice(), (group, list.len()));
            list.push((wire_name.into_boxed_slice(), target));
        }
        let wire = |name: &hickory_proto::rr::Name| to_wire(&name.to_lowercase().to_ascii());
        let apex = to_wire(zone.names.table.zone()).unwrap_or_default().into_boxed_slice();
        let soa_names = zone.names.soa_names().into_iter().filter_map(wire).map(Vec::into_boxed_slice).collect();
        Index { config: Some(snap.config.clone()), names, groups, apex, soa_names }
    }

    /// Whether the full path answers the lower-case wire name `name` with [`Unknown`]'s
    /// NXDOMAIN, as far as can be told without parsing it: it is below the apex, of
    /// letters, digits, `-` and `_` (as the full path reads them, without escapes), and
    /// neither it nor a name it is below (short of the apex) is a name of the zone or
    /// of the SOA. A `maxlag-` or `lsn-` name is below its endpoint's: it is not one.
    fn unknown(&self, name: &[u8]) -> bool {
        let Some(apex_at) = name.len().checked_sub(self.apex.len()).filter(|&at| at > 0) else { return false };
        if name[apex_at..] != *self.apex {
            return false;
        }
        let mut at = 0;
        while at < apex_at {
            let len = usize::from(name[at]);
            let Some(label) = name.get(at + 1..at + 1 + len).filter(|l| !l.is_empty()) else { return false };
            let plain = |&b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
            let below = &name[at..];
            if !label.iter().all(plain)
                || self.names.contains_key(below)
                || self.soa_names.iter().any(|n| **n == *below)
            {
                return false;
            }
            at += 1 + len;
        }
        at == apex_at
    }
}

/// Encodes a table's slots; an answer of addresses alone (each weighted candidate's)
/// is encoded once per build, whatever name, type and location it serves: its bytes do
/// not depend on the question (the owner is a pointer to it).
struct Builder<'z> {
    snap: &'z Snapshot,
    zone: &'z Zone,
    /// (TTL, addresses) → records and ANCOUNT.
    addresses: HashMap<AddressKey, (Arc<[u8]>, u16)>,
}

/// A placement in location `index` (0: unknown) as the table is built for it: only the
/// location matters to the answers it holds.
fn placement(index: usize) -> Placement {
    let location = index.checked_sub(1).map(|i| LocationId(i as u16));
    let client = ClientAddr { ip: std::net::Ipv4Addr::UNSPECIFIED.into(), prefix: None };
    Placement { client, location, via: Via::Source, scope: 0 }
}

impl Builder<'_> {
    /// The entries of `names`.
    fn entries(&mut self, names: &[(Box<[u8]>, Target)]) -> Box<[Entry]> {
        let locations = self.snap.config.locality.as_ref().map(|_| self.snap.config.locations.len());
        names.iter().map(|(wire_name, target)| self.entry(wire_name, target, locations)).collect()
    }

    fn entry(&mut self, wire_name: &[u8], target: &Target, locations: Option<usize>) -> Entry {
        let by_location =
            matches!((target, locations), (Target::Endpoint { .. } | Target::Srv(Service::Endpoint { .. }), Some(_)));
        let width = if by_location { 1 + locations.unwrap_or(0) } else { 1 };
        let mut slots = Vec::with_capacity(TYPES.len() * width);
        for code in TYPES {
            let question = [wire_name, &code.to_be_bytes(), &1u16.to_be_bytes()].concat();
            // node names (a thousand of them in a large config) are asked for their
            // addresses and TXT; the rest of their types go to the full path
            let asked = !matches!(target, Target::Node { .. }) || matches!(code, 1 | 16 | 28);
            for location in 0..width {
                let placed = by_location.then(|| placement(location));
                let slot = match asked {
                    true => {
                        self.slot(&question, answer::plan(self.snap, target, Qtype::from_code(code), placed.as_ref()))
                    }
                    false => Slot::Full,
                };
                slots.push(slot);
            }
        }
        Entry { width, slots: slots.into_boxed_slice() }
    }

    fn slot(&mut self, question: &[u8], plan: Plan) -> Slot {
        match plan {
            Plan::PerQuery => Slot::Full,
            Plan::Fixed(answer) => self.records(question, &answer).map_or(Slot::Full, Slot::Fixed),
            Plan::Pick { first, then, count, none } => {
                let parts: Option<Box<[Records]>> =
                    first.iter().chain(&then).map(|(_, a)| self.records(question, a)).collect();
                let (Some(none), Some(parts)) = (self.records(question, &none), parts) else {
                    return Slot::Full;
                };
                let indexed = |list: &[(u32, Answer)], from: usize| -> Box<[(usize, u32)]> {
                    list.iter().enumerate().map(|(i, &(w, _))| (from + i, w)).collect()
                };
                // at most `count` parts (each at most the largest), at most all of them
                let all = parts.iter().map(|p| p.bytes.len()).sum::<usize>();
                let largest = parts.iter().map(|p| p.bytes.len()).max().unwrap_or(0);
                let most = count.map_or(all, |n| all.min(largest.saturating_mul(n))).max(none.bytes.len());
                let (first, then) = (indexed(&first, 0), indexed(&then, first.len()));
                let sums = (count == Some(1)).then(|| (select::cumulative(&first), select::cumulative(&then)));
                Slot::Pick { first, then, count, parts, none, sums, most }
            }
        }
    }

    /// [`Unknown`]: the NXDOMAIN per query type after the apex as question, and where
    /// its pointers are; `None` when its records are not only an SOA (or addresses).
    fn unknown(&mut self, apex: &[u8]) -> Option<Unknown> {
        let slots = TYPES.iter().map(|code| {
            let question = [apex, &code.to_be_bytes(), &1u16.to_be_bytes()].concat();
            let Plan::Fixed(answer) = answer::plan(self.snap, &Target::Unknown, Qtype::from_code(*code), None) else {
                return None;
            };
            let records = self.records(&question, &answer)?;
            let pointers = pointers(&records.bytes, records.counts.iter().map(|&c| usize::from(c)).sum())?;
            Some((records, pointers))
        });
        Some(Unknown { slots: slots.collect::<Option<_>>()? })
    }

    /// The records of `answer` as the full path encodes them after `question`; `None`
    /// when they do not fit a message (the full path truncates them).
    fn records(&mut self, question: &[u8], answer: &Answer) -> Option<Records> {
        let addresses: Option<Vec<IpAddr>> = match answer.authority_soa || !answer.additional.is_empty() {
            true => None,
            false => answer.answers.iter().map(|rr| if let Rr::Addr(ip) = rr { Some(*ip) } else { None }).collect(),
        };
        let key = addresses.filter(|a| !a.is_empty()).map(|a| (answer.ttl, a));
        let (bytes, counts, serial_at) = match key.as_ref().and_then(|k| self.addresses.get(k)) {
            Some((bytes, an)) => (bytes.clone(), [*an, 0, 0], None),
            None => {
                let (bytes, counts) = encode(self.zone, question, answer)?;
                let serial_at = serial_at(&bytes, counts.iter().map(|&c| usize::from(c)).sum())?;
                if let Some(key) = key {
                    self.addresses.insert(key, (bytes.clone(), counts[0]));
                }
                (bytes, counts, serial_at)
            }
        };
        Some(Records {
            counts,
            bytes,
            serial_at,
            aa: answer.authoritative,
            rcode: answer.rcode,
            kind: answer.kind,
            nearness: answer.nearness,
            by_location: answer.by_location,
        })
    }
}

/// `answer`'s records as the full path encodes them after `question`, and their
/// counts; `None` when the response would be longer than the largest UDP size we
/// offer: the full path answers those (truncated over UDP, whole over TCP), so that
/// building a table costs the same for a thousand nodes as for three.
fn encode(zone: &Zone, question: &[u8], answer: &Answer) -> Option<(Arc<[u8]>, [u16; 3])> {
    let mut out = Vec::new();
    let head = Head { aa: answer.authoritative, rcode: answer.rcode.code(), ..Head::default() };
    let body = zone.sections(answer);
    let records = body.answers.len() + usize::from(body.soa.is_some()) + body.additional.len();
    let limit = usize::from(MAX_UDP_PAYLOAD);
    wire::encode(&mut out, head, Question { bytes: question, count: 1 }, &body, None, limit);
    let count = |at: usize| u16::from_be_bytes([out[at], out[at + 1]]);
    let counts = [count(6), count(8), count(10)];
    let whole = out[2] & 0x02 == 0 && counts.iter().map(|&c| usize::from(c)).sum::<usize>() == records;
    whole.then(|| (out[12 + question.len()..].into(), counts))
}

/// Where the serial of the one SOA record among the `records` records of `bytes` is
/// (`Some(None)` when there is none); `None` when there are several or the records
/// cannot be read.
fn serial_at(bytes: &[u8], records: usize) -> Option<Option<usize>> {
    let (mut at, mut found) = (0, None);
    for _ in 0..records {
        at = name_end(bytes, at)?.0;
        let fixed = bytes.get(at..at + 10)?;
        let rdlength = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        at += 10 + rdlength;
        if u16::from_be_bytes([fixed[0], fixed[1]]) == SOA_TYPE {
            // SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM end the RDATA
            if found.is_some() || rdlength < 20 {
                return None;
            }
            found = Some(at - 20);
        }
    }
    (at == bytes.len()).then_some(found)
}

/// Where the compression pointers of the `records` records of `bytes` are: of the
/// owners, and of the names in an SOA's RDATA; `None` when a record is of another type
/// with names in its RDATA (not A or AAAA), or the records cannot be read.
fn pointers(bytes: &[u8], records: usize) -> Option<Box<[usize]>> {
    let (mut at, mut found) = (0, Vec::new());
    for _ in 0..records {
        let (end, pointer) = name_end(bytes, at)?;
        found.extend(pointer);
        let fixed = bytes.get(end..end + 10)?;
        let (rtype, rdlength) = (u16::from_be_bytes([fixed[0], fixed[1]]), u16::from_be_bytes([fixed[8], fixed[9]]));
        at = end + 10 + usize::from(rdlength);
        match rtype {
            1 | 28 => {}
            SOA_TYPE => {
                let (mname_end, mname) = name_end(bytes, end + 10)?;
                let (rname_end, rname) = name_end(bytes, mname_end)?;
                found.extend(mname.into_iter().chain(rname));
                if rname_end + 20 != at {
                    return None;
                }
            }
            _ => return None,
        }
    }
    (at == bytes.len()).then(|| found.into_boxed_slice())
}

/// Where the wire name at `at` of `bytes` ends, and where its pointer is if it ends in
/// one; `None` when it runs past `bytes`.
fn name_end(bytes: &[u8], mut at: usize) -> Option<(usize, Option<usize>)> {
    loop {
        let len = usize::from(*bytes.get(at)?);
        match len {
            0 => return Some((at + 1, None)),
            _ if len & 0xC0 == 0xC0 => return bytes.get(at + 1).map(|_| (at + 2, Some(at))),
            _ => at += 1 + len,
        }
    }
}

/// `a.b.c` as wire labels (`1a1b1c0`); `None` for a name the wire cannot hold.
fn to_wire(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).ok().filter(|&n| n <= 63)?);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    (out.len() <= MAX_NAME).then_some(out)
}

/// The parts of a query the fast path answers from, read without allocating.
pub struct Query<'p> {
    packet: &'p [u8],
    /// The question name lower-cased, as wire labels.
    name: [u8; MAX_NAME],
    name_len: usize,
    /// Where the question section ends.
    question_end: usize,
    qtype: u16,
    edns: Option<Edns>,
}

/// The OPT of a query, as far as the response needs it.
#[derive(Clone, Copy)]
struct Edns {
    payload: u16,
    nsid: bool,
    ecs: Option<ClientSubnet>,
}

impl<'p> Query<'p> {
    /// Reads a query the fast path can answer: QUERY, flags as any, one question of
    /// class IN without compression, no answer or authority records, at most one
    /// additional record, which is an OPT of version 0 whose options are well formed
    /// and that ends the message. `None` for anything else.
    pub fn read(packet: &'p [u8]) -> Option<Query<'p>> {
        let header = packet.get(..12)?;
        let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
        if header[2] & 0xF8 != 0 || count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
            return None;
        }
        let mut name = [0u8; MAX_NAME];
        let mut at = 12;
        loop {
            let len = usize::from(*packet.get(at)?);
            let end = at - 12 + 1 + len;
            if len & 0xC0 != 0 || end > MAX_NAME {
                return None;
            }
            let label = packet.get(at..at + 1 + len)?;
            name[at - 12..end].copy_from_slice(label);
            name[at - 12 + 1..end].make_ascii_lowercase();
            at += 1 + len;
            if len == 0 {
                break;
            }
        }
        let name_len = at - 12;
        let fixed = packet.get(at..at + 4)?;
        let (qtype, class) = (u16::from_be_bytes([fixed[0], fixed[1]]), u16::from_be_bytes([fixed[2], fixed[3]]));
        if class != 1 {
            return None;
        }
        let question_end = at + 4;
        let edns = match count(10) {
            0 if packet.len() == question_end => None,
            1 => Some(read_opt(&packet[question_end..])?),
            _ => return None,
        };
        Some(Query { packet, name, name_len, question_end, qtype, edns })
    }

    fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

/// An OPT record that is all of `rest`.
fn read_opt(rest: &[u8]) -> Option<Edns> {
    let [0, t0, t1, p0, p1, _ext_rcode, 0, _flags0, _flags1, l0, l1, options @ ..] = rest else { return None };
    if u16::from_be_bytes([*t0, *t1]) != OPT_TYPE || usize::from(u16::from_be_bytes([*l0, *l1])) != options.len() {
        return None;
    }
    let mut edns = Edns { payload: u16::from_be_bytes([*p0, *p1]), nsid: false, ecs: None };
    let mut options = options;
    while !options.is_empty() {
        let [c0, c1, l0, l1, data @ ..] = options else { return None };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let data = data.get(..len)?;
        match u16::from_be_bytes([*c0, *c1]) {
            NSID if data.is_empty() => edns.nsid = true,
            NSID => return None,
            ECS if edns.ecs.is_some() => return None,
            ECS => edns.ecs = Some(ClientSubnet::parse(data).ok()?),
            _ => {}
        }
        options = &options[4 + len..];
    }
    Some(edns)
}

/// What the fast path decided, for the responder's counters.
pub struct Answered {
    pub kind: QueryKind,
    pub qtype: Qtype,
    pub rcode: Rcode,
    pub nearness: Option<Nearness>,
}

/// The responder's part of a fast answer: the client's address, its placement (for
/// names that need it), our NSID, the transport's size limit.
pub struct Context<'a> {
    pub client: std::net::IpAddr,
    pub locality: Option<&'a Locality>,
    pub nsid: &'a [u8],
    pub transport: Transport,
}

impl Table {
    /// Writes the response to `query` into `out` and says what it was, or `None` (with
    /// `out` left in any state) when the full path must answer.
    pub fn answer<R: Rng + ?Sized>(
        &self,
        query: &Query<'_>,
        cx: &Context<'_>,
        out: &mut Vec<u8>,
        rng: &mut R,
    ) -> Option<Answered> {
        let Some(entry) = self.entry(query.name()) else { return self.unknown(query, cx, out) };
        let kind = TYPES.iter().position(|&t| t == query.qtype)?;
        let ecs = query.edns.and_then(|e| e.ecs);
        let placement = cx.locality.filter(|_| entry.width > 1).map(|l| place(l, cx.client, ecs.map(|e| e.subnet())));
        let location = placement.and_then(|p| p.location).map_or(0, |l| 1 + l.index());
        let slot = entry.slots.get(kind * entry.width + location.min(entry.width - 1))?;
        PICKS.with_borrow_mut(|(picked, keys)| {
            let (parts, chosen): (&[Records], &[usize]) = match slot {
                Slot::Full => return None,
                Slot::Fixed(records) => (std::slice::from_ref(records), &[0]),
                Slot::Pick { first, then, count, parts, none, sums, most } => {
                    if !fits(query, cx, *most) {
                        return None;
                    }
                    picked.clear();
                    if let Some((first_sums, then_sums)) = sums {
                        // `answers = 1`: as `select::pick` draws it, in O(log n)
                        let one = select::pick_one_cumulative(first_sums, rng)
                            .map(|i| first[i].0)
                            .or_else(|| select::pick_one_cumulative(then_sums, rng).map(|i| then[i].0));
                        picked.extend(one);
                    } else {
                        select::pick_into(first, *count, rng, keys, picked);
                        let rest = count.map(|c| c.saturating_sub(picked.len()));
                        if !then.is_empty() && rest != Some(0) {
                            select::pick_into(then, rest, rng, keys, picked);
                        }
                    }
                    match picked.is_empty() {
                        true => (std::slice::from_ref(none), &[0]),
                        false => (parts, picked),
                    }
                }
            };
            write(query, cx, placement, parts, chosen, self.serial, out)
        })
    }
}

/// Whether a response with `body` bytes of records fits what the client takes (with
/// our OPT, the same size whatever the answer).
fn fits(query: &Query<'_>, cx: &Context<'_>, body: usize) -> bool {
    let opt = opt(query, cx, 0);
    let limit = match (cx.transport, opt) {
        (Transport::Tcp, _) => MAX_MESSAGE,
        (Transport::Udp, Some(o)) => usize::from(o.payload),
        (Transport::Udp, None) => PLAIN_UDP,
    };
    query.question_end + body + opt.map_or(0, |o| o.wire_len()) <= limit
}

/// Our OPT for an EDNS query (as the full path's `Responder::opt`), ECS echoed with
/// `scope`.
fn opt<'a>(query: &Query<'_>, cx: &Context<'a>, scope: u8) -> Option<wire::Opt<'a>> {
    query.edns.map(|e| wire::Opt {
        payload: udp_payload(e.payload),
        nsid: (e.nsid && !cx.nsid.is_empty()).then_some(cx.nsid),
        ecs: e.ecs.map(|ecs| (ecs, scope)),
    })
}

/// The UDP size we answer an EDNS client with (as the full path does).
fn udp_payload(asked: u16) -> u16 {
    asked.clamp(PLAIN_UDP as u16, MAX_UDP_PAYLOAD)
}

/// Writes the response made of `parts[i]` for each `i` of `chosen` (at least one; the
/// first decides the header and the counters).
fn write(
    query: &Query<'_>,
    cx: &Context<'_>,
    placement: Option<Placement>,
    parts: &[Records],
    chosen: &[usize],
    serial: u32,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    let records = &parts[*chosen.first()?];
    let scope = match placement {
        Some(p) if records.by_location && p.client.prefix.is_some() => p.scope,
        _ => 0,
    };
    let opt = opt(query, cx, scope);
    let packet = query.packet;
    if !fits(query, cx, chosen.iter().map(|&i| parts[i].bytes.len()).sum()) {
        return None;
    }
    let mut counts = [1u16, 0, 0, u16::from(opt.is_some())];
    for &i in chosen {
        for (count, add) in counts[1..].iter_mut().zip(parts[i].counts) {
            *count = count.checked_add(add)?;
        }
    }
    let rcode = records.rcode.code();
    out.clear();
    out.extend_from_slice(&packet[..2]);
    out.push(0x80 | u8::from(records.aa) << 2 | packet[2] & 0x01);
    out.push(packet[3] & 0x10 | (rcode & 0x0F) as u8);
    for count in counts {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(&packet[12..query.question_end]);
    for &i in chosen {
        let start = out.len();
        out.extend_from_slice(&parts[i].bytes);
        if let Some(at) = parts[i].serial_at {
            out[start + at..start + at + 4].copy_from_slice(&serial.to_be_bytes());
        }
    }
    if let Some(opt) = opt {
        opt.write(out, rcode);
    }
    let qtype = Qtype::from_code(query.qtype);
    Some(Answered { kind: records.kind, qtype, rcode: records.rcode, nearness: records.nearness })
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
