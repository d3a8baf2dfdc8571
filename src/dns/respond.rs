//! The answer path, one message in, one response out, the same for UDP and TCP (and the
//! fuzz targets): header checks, `[dns] allow`, response-rate limiting (UDP), the
//! message checks (EDNS version, opcode, question count, class), the SPEC §5 answer
//! from the current generation, and the encoding (`wire`). No await, no lock, no log.
//!
//! | input | response |
//! |---|---|
//! | under 12 bytes, or QR set (a response: reflection guard) | none |
//! | client outside `[dns] allow` | REFUSED |
//! | over the rate (UDP) | truncated (every `slip`th) or none |
//! | the rest does not parse | FORMERR, no question |
//! | EDNS version above 0 | BADVERS |
//! | opcode other than QUERY | NOTIMP, without AA, RD, CD (defined for QUERY only) |
//! | not exactly one question | FORMERR |
//! | a malformed ECS option (RFC 7871 §7.1.2) | FORMERR |
//! | class other than IN | REFUSED |
//! | otherwise | the answer (AA when in the zone) |
//!
//! The queries that dominate take the fast path first (`fast`: responses precomputed
//! per snapshot, the same bytes); what it does not answer goes through the table above.
//!
//! With `[locality]`, the asker is placed (`locality::place`: ECS subnet, source
//! address, `default`) before the answer is decided; a query with ECS gets it back with
//! SCOPE 0, or the placement's scope when the answer depended on a location the ECS
//! subnet decided (SPEC §8).
//!
//! Before the first probe round has finished (SPEC §3), a query that would get SERVFAIL
//! for that reason is held when the caller allows it ([`Reply::Hold`]): the socket
//! loop keeps it until the round completes or `probe.timeout` from the start has
//! passed (`hold`), then asks again with holding off.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, Message, Query};
use hickory_proto::rr::rdata::opt::EdnsCode;
use hickory_proto::rr::DNSClass;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use rand::Rng;

use crate::config::DnsLimits;
use crate::dns::answer::{answer, Answer};
use crate::dns::ecs::{self, ClientSubnet, EcsError};
use crate::dns::edge::Limited;
use crate::dns::fast;
use crate::dns::name::{Service, Target};
use crate::dns::query::{Qtype, QueryKind, QueryStats, Rcode};
use crate::dns::records::Zone;
use crate::dns::rrl::{RateLimiter, Verdict};
use crate::dns::wire::{self, Body, Head, Opt, Question, MAX_MESSAGE};
use crate::locality::{place, Placement};
use crate::store::Store;

/// Largest UDP payload offered to EDNS clients (DNS flag day 2020).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// UDP size of a client without EDNS (RFC 1035).
pub const PLAIN_UDP: usize = 512;
const OPCODE_QUERY: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One message to answer.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'p> {
    pub packet: &'p [u8],
    pub client: IpAddr,
    pub transport: Transport,
    /// The rate-limit window (seconds, any epoch).
    pub now: u64,
    /// Whether a query the first probe round is needed for may be held.
    pub may_hold: bool,
    /// Asked again after being held: already counted against the rate.
    pub released: bool,
}

impl<'p> Ask<'p> {
    /// A first ask that may not be held.
    pub fn new(packet: &'p [u8], client: IpAddr, transport: Transport, now: u64) -> Ask<'p> {
        Ask { packet, client, transport, now, may_hold: false, released: false }
    }
}

/// What to do after [`Responder::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Send what was written.
    Send,
    /// Send nothing.
    Nothing,
    /// Hold the query until the first probe round has finished, then ask again.
    Hold,
}

/// Everything the answer path reads; shared by every socket loop.
pub struct Responder {
    store: Arc<Store<Zone>>,
    stats: Arc<QueryStats>,
    /// The NSID answered to clients that ask (empty: none).
    nsid: Vec<u8>,
    rrl: RateLimiter,
    /// Whether queries the fast path knows take it (`dns::fast`).
    fast: bool,
}

/// The part of a request the response is built from.
struct Request<'p> {
    id: u16,
    opcode: u8,
    rd: bool,
    cd: bool,
    /// The question section to echo: the client's bytes, or re-encoded when they hold
    /// a compression pointer (it would point elsewhere in our response).
    question_bytes: Cow<'p, [u8]>,
    question_count: u16,
    query: Option<Query>,
    edns: Option<Edns>,
    /// The ECS option, if any, or why it is malformed.
    ecs: Result<Option<ClientSubnet>, EcsError>,
}

impl Responder {
    pub fn new(store: Arc<Store<Zone>>, stats: Arc<QueryStats>, nsid: Vec<u8>) -> Responder {
        Responder { store, stats, nsid, rrl: RateLimiter::new(), fast: true }
    }

    /// The limits of the current config.
    pub fn limits(&self) -> DnsLimits {
        self.store.load().snapshot.config.dns.limits
    }

    /// The current generation's store (for the hold's wait).
    pub fn store(&self) -> &Store<Zone> {
        &self.store
    }

    /// The same responder without the fast path: every query takes the full path (to
    /// compare both, in tests and benchmarks).
    pub fn full_path_only(self) -> Responder {
        Responder { fast: false, ..self }
    }

    /// The same responder with its rate-limit table keyed by `seed` instead of a random
    /// key, so that two responders asked the same queries (the fuzz target, comparing
    /// the fast path with [`Responder::full_path_only`]) count them alike.
    pub fn rate_seed(self, seed: u64) -> Responder {
        Responder { rrl: RateLimiter::with_seed(seed), ..self }
    }

    /// Answers `ask`, writing the response into `out`.
    pub fn respond(&self, ask: &Ask<'_>, out: &mut Vec<u8>) -> Reply {
        self.respond_with(ask, out, &mut rand::rng())
    }

    /// [`Responder::respond`] drawing weighted answers from `rng`.
    pub fn respond_with<R: Rng + ?Sized>(&self, ask: &Ask<'_>, out: &mut Vec<u8>, rng: &mut R) -> Reply {
        let Ask { packet, client, transport, now, may_hold, released } = *ask;
        out.clear();
        if packet.len() < 12 || packet[2] & 0x80 != 0 {
            return Reply::Nothing;
        }
        let generation = self.store.peek();
        let dns = &generation.snapshot.config.dns;
        // Rate first: a dropped response needs nothing parsed.
        let verdict = match transport == Transport::Udp && !released {
            true => self.rrl.check(client, now, &dns.limits),
            false => Verdict::Send,
        };
        if verdict == Verdict::Drop {
            self.stats.edge.limited(Limited::Dropped);
            return Reply::Nothing;
        }
        if verdict == Verdict::Send && self.fast && dns.allow.admits(client) {
            if let Some(query) = fast::Query::read(packet) {
                let locality = generation.snapshot.config.locality.as_ref();
                let cx = fast::Context { client, locality, nsid: &self.nsid, transport };
                if let Some(done) = generation.derived.fast.answer(&query, &cx, out, rng) {
                    self.stats.record(done.kind, done.qtype, done.rcode);
                    if let Some(nearness) = done.nearness {
                        self.stats.nearness(nearness);
                    }
                    return Reply::Send;
                }
            }
        }
        let request = parse(packet);
        let limit = match (&request, transport) {
            (_, Transport::Tcp) => MAX_MESSAGE,
            (Ok(r), Transport::Udp) => r.edns.as_ref().map_or(PLAIN_UDP, |e| usize::from(udp_payload(e))),
            (Err(_), Transport::Udp) => PLAIN_UDP,
        };
        if verdict == Verdict::Slip {
            self.stats.edge.limited(Limited::Slipped);
            let (head, question, opt) = match &request {
                Ok(r) => (r.head(), r.question(), self.opt(r)),
                Err(id) => (Head { id: *id, ..Head::default() }, Question::NONE, None),
            };
            wire::encode(out, Head { tc: true, ..head }, question, &Body::default(), opt, limit);
            return Reply::Send;
        }
        let request = match request {
            Ok(r) => r,
            Err(id) => {
                let head = Head { id, opcode: packet[2] >> 3 & 0x0F, rcode: Rcode::FormErr.code(), ..Head::default() };
                wire::encode(out, head, Question::NONE, &Body::default(), None, limit);
                self.stats.record(QueryKind::Malformed, Qtype::Other, Rcode::FormErr);
                return Reply::Send;
            }
        };
        let qtype = request.query.as_ref().map_or(Qtype::Other, |q| Qtype::from_code(u16::from(q.query_type())));
        let opt = self.opt(&request);
        let reject = |out: &mut Vec<u8>, kind, rcode: Rcode| {
            let mut head = Head { rcode: rcode.code(), ..request.head() };
            if request.opcode != OPCODE_QUERY {
                (head.rd, head.cd) = (false, false);
            }
            wire::encode(out, head, request.question(), &Body::default(), opt, limit);
            self.stats.record(kind, qtype, rcode);
            Reply::Send
        };
        if !dns.allow.admits(client) {
            return reject(out, QueryKind::Denied, Rcode::Refused);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return reject(out, QueryKind::Malformed, Rcode::BadVers);
        }
        if request.opcode != OPCODE_QUERY {
            return reject(out, QueryKind::Malformed, Rcode::NotImp);
        }
        let Some(query) = request.query.as_ref().filter(|_| request.question_count == 1) else {
            return reject(out, QueryKind::Malformed, Rcode::FormErr);
        };
        let Ok(ecs) = request.ecs else {
            return reject(out, QueryKind::Malformed, Rcode::FormErr);
        };
        if query.query_class() != DNSClass::IN {
            return reject(out, QueryKind::OutOfZone, Rcode::Refused);
        }
        let mut qname = query.name().to_ascii();
        qname.make_ascii_lowercase();
        let target = generation.derived.names.table.parse(&qname);
        let config = &generation.snapshot.config;
        // Only read names (and their SRV names) depend on where the asker is.
        let by_location = matches!(target, Target::Endpoint { .. } | Target::Srv(Service::Endpoint { .. }));
        let placement =
            config.locality.as_ref().filter(|_| by_location).map(|l| place(l, client, ecs.map(|e| e.subnet())));
        let decided = answer(&generation.snapshot, &target, qtype, placement.as_ref(), rng);
        if may_hold && !generation.snapshot.ready && decided.rcode == Rcode::ServFail {
            return Reply::Hold;
        }
        let body = generation.derived.sections(&decided);
        let head = Head { aa: decided.authoritative, rcode: decided.rcode.code(), ..request.head() };
        let opt = opt.map(|o| Opt { ecs: o.ecs.map(|(e, _)| (e, scope(&decided, placement.as_ref()))), ..o });
        wire::encode(out, head, request.question(), &body, opt, limit);
        self.stats.record(decided.kind, qtype, decided.rcode);
        if let Some(nearness) = decided.nearness {
            self.stats.nearness(nearness);
        }
        Reply::Send
    }

    /// The OPT to echo (RFC 6891): version 0, our UDP size, NSID when asked for, the
    /// client's ECS option (scope 0 until an answer says otherwise).
    fn opt<'a>(&'a self, request: &Request<'_>) -> Option<Opt<'a>> {
        let edns = request.edns.as_ref()?;
        let nsid = (!self.nsid.is_empty() && edns.option(EdnsCode::NSID).is_some()).then_some(&self.nsid[..]);
        let ecs = request.ecs.ok().flatten().map(|e| (e, 0));
        Some(Opt { payload: udp_payload(edns), nsid, ecs })
    }
}

/// The ECS SCOPE PREFIX-LENGTH of an answer (RFC 7871 §7.2.1): what the ECS subnet's
/// placement decided when the answer depends on the location; 0 when it does not, or
/// when the ECS subnet did not place the client (`ecs = false`, a /0 subnet).
fn scope(answer: &Answer, placement: Option<&Placement>) -> u8 {
    match placement {
        Some(p) if answer.by_location && p.client.prefix.is_some() => p.scope,
        _ => 0,
    }
}

impl Request<'_> {
    fn question(&self) -> Question<'_> {
        Question { bytes: &self.question_bytes, count: self.question_count }
    }

    /// The response header: ID and opcode echoed, RD and CD copied.
    fn head(&self) -> Head {
        Head { id: self.id, opcode: self.opcode, rd: self.rd, cd: self.cd, ..Head::default() }
    }
}

/// The UDP size we answer an EDNS client with.
fn udp_payload(edns: &Edns) -> u16 {
    edns.max_payload().clamp(PLAIN_UDP as u16, MAX_UDP_PAYLOAD)
}

/// Parses a message of at least 12 bytes; on failure, the ID to answer FORMERR with.
fn parse(packet: &[u8]) -> Result<Request<'_>, u16> {
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let mut decoder = BinDecoder::new(packet);
    let header = Header::read(&mut decoder).map_err(|_| id)?;
    let counts = header.counts;
    let mut first = None;
    for i in 0..counts.queries {
        let query = Query::read(&mut decoder).map_err(|_| id)?;
        if i == 0 {
            first = Some(query);
        }
    }
    let raw = &packet[12..decoder.index()];
    let (question_bytes, question_count) = match (has_pointer(raw, counts.queries), &first) {
        (false, _) => (Cow::Borrowed(raw), counts.queries),
        (true, Some(query)) if counts.queries == 1 => (Cow::Owned(encode_query(query).ok_or(id)?), 1),
        // several questions pointing outside their section: answered (FORMERR) without them
        (true, _) => (Cow::Borrowed(&[][..]), 0),
    };
    let records = decoder.index();
    let op = header.metadata.op_code;
    Message::read_records(&mut decoder, usize::from(counts.answers), false, op).map_err(|_| id)?;
    Message::read_records(&mut decoder, usize::from(counts.authorities), false, op).map_err(|_| id)?;
    let count = usize::from(counts.answers) + usize::from(counts.authorities) + usize::from(counts.additionals);
    let (edns, ecs) = match Message::read_records(&mut decoder, usize::from(counts.additionals), true, op) {
        Ok((_, Some(edns), _)) => (Some(edns), ecs::find(packet, records, count)),
        Ok((_, None, _)) => (None, Ok(None)),
        // hickory-proto decodes the ECS option itself and refuses some malformed ones (a
        // bad family or source prefix, too few address bytes): they get the answer of
        // the others, FORMERR with the question and an OPT (RFC 6891 §6.1.1), not the
        // bare FORMERR of a message that does not parse (which says "no EDNS here")
        Err(_) => match (ecs::find(packet, records, count), ecs::opt_header(packet, records, count)) {
            (Err(e), Some((payload, version))) => {
                let mut edns = Edns::new();
                edns.set_max_payload(payload);
                edns.set_version(version);
                (Some(edns), Err(e))
            }
            _ => return Err(id),
        },
    };
    Ok(Request {
        id,
        opcode: packet[2] >> 3 & 0x0F,
        rd: packet[2] & 0x01 != 0,
        cd: packet[3] & 0x10 != 0,
        question_bytes,
        question_count,
        query: first,
        edns,
        ecs,
    })
}

/// Whether the (already parsed, so well-formed) question section holds a name
/// compression pointer to outside itself: echoed at the same offset, a pointer into
/// the section still finds the same bytes, one into the header or beyond does not.
fn has_pointer(section: &[u8], count: u16) -> bool {
    let inside = 12..12 + section.len();
    let mut raw = section;
    for _ in 0..count {
        loop {
            match raw {
                [] => return false,
                [0, ..] => break,
                [hi, lo, ..] if hi & 0xC0 == 0xC0 => {
                    let target = usize::from(u16::from_be_bytes([hi & 0x3F, *lo]));
                    if !inside.contains(&target) {
                        return true;
                    }
                    raw = &raw[1..]; // a pointer ends the name: step to its last byte
                    break;
                }
                [len, ..] => raw = raw.get(1 + usize::from(*len)..).unwrap_or_default(),
            }
        }
        raw = raw.get(5..).unwrap_or_default(); // the name's last byte, type and class
    }
    false
}

/// One question, encoded without compression.
fn encode_query(query: &Query) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut buf);
    query.emit(&mut encoder).ok()?;
    Some(buf)
}

#[cfg(test)]
#[path = "respond_tests.rs"]
mod tests;
