//! The hickory-server adapter, and the only file that names `hickory_server`: binds
//! UDP and TCP, checks the message (opcode, question count, EDNS version), asks
//! `answer` for the decision and encodes it (AA, OPT echo, NSID, case echo, UDP size).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, RData, Record};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dns::answer::{answer, Answer};
use crate::dns::query::{Qtype, QueryKind, QueryStats, Rcode};
use crate::dns::records::{Sections, Zone};
use crate::store::{Generation, Store};

/// Receive buffer asked for on every UDP socket (bursts overflow the default).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Idle time after which a TCP connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Largest UDP payload offered to EDNS clients (DNS flag day 2020).
const MAX_UDP_PAYLOAD: u16 = 1232;
/// How long shutdown waits for queries being answered.
const DRAIN: Duration = Duration::from_secs(1);

/// A bound, not yet running DNS server.
pub struct DnsServer {
    server: Server<Handler>,
    in_flight: Arc<InFlight>,
    addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds UDP and TCP on every address (port 0: one ephemeral port shared by both).
    pub async fn bind(
        listen: &[SocketAddr],
        store: Arc<Store<Zone>>,
        stats: Arc<QueryStats>,
        nsid: Vec<u8>,
    ) -> io::Result<DnsServer> {
        let invalid = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let nsid = match nsid.is_empty() {
            true => None,
            false => Some(EdnsOption::NSID(NSIDPayload::new(nsid).map_err(|e| invalid(&e))?)),
        };
        let in_flight = Arc::new(InFlight::default());
        let handler = Handler { store, stats, nsid, in_flight: in_flight.clone() };
        let mut server = Server::new(handler);
        let mut addrs = Vec::with_capacity(listen.len());
        for addr in listen {
            let (udp, tcp) = bind_pair(*addr)?;
            addrs.push(udp.local_addr()?);
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE, 32);
        }
        Ok(DnsServer { server, in_flight, addrs })
    }

    /// The bound addresses (each served over UDP and TCP).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Serves until `cancel` fires, then lets queries being answered finish and returns.
    pub async fn run(mut self, cancel: CancellationToken) -> io::Result<()> {
        let stop = self.server.shutdown_token().clone();
        let in_flight = self.in_flight.clone();
        let stopper = tokio::spawn(async move {
            cancel.cancelled().await;
            in_flight.drained(DRAIN).await;
            stop.cancel();
        });
        let result = self.server.block_until_done().await;
        stopper.abort();
        result.map_err(|e| io::Error::other(e.to_string()))
    }
}

fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((bind_udp(addr)?, bind_tcp(addr)?));
    }
    let mut last = None;
    for _ in 0..32 {
        let udp = bind_udp(addr)?;
        match bind_tcp(udp.local_addr()?) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Counts queries being answered, so shutdown can wait for them.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Waits (at most `limit`) until no query is being answered, then a moment more
    /// so the socket loops flush the responses they were handed.
    async fn drained(&self, limit: Duration) {
        let idle = async {
            loop {
                let notified = self.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, idle).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

struct Handler {
    store: Arc<Store<Zone>>,
    stats: Arc<QueryStats>,
    nsid: Option<EdnsOption>,
    in_flight: Arc<InFlight>,
}

/// What the message checks decided before any name lookup, or the answer.
enum Decision {
    /// An error without AA (FORMERR, NOTIMP, BADVERS, REFUSED).
    Reject(QueryKind, Rcode),
    Answer(Arc<Generation<Zone>>, Answer),
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut rh: R) -> ResponseInfo {
        let _guard = self.in_flight.enter();
        let edns = self.response_edns(request);
        let qtype =
            request.queries.queries().first().map_or(Qtype::Other, |q| Qtype::from_code(u16::from(q.query_type())));
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let (kind, rcode, sent) = match self.decide(request, qtype) {
            Decision::Reject(kind, rcode) => {
                let response = builder.error_msg(&request.metadata, response_code(rcode));
                (kind, rcode, rh.send_response(response).await)
            }
            Decision::Answer(generation, answer) => {
                let owner = request.queries.queries()[0].original().name();
                let sections = generation.derived.sections(&answer, owner);
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.authoritative = answer.authoritative;
                meta.response_code = response_code(answer.rcode);
                let (meta, answers, soa, glue) = fit(request, edns.as_ref(), meta, &sections);
                let response = builder.build(meta, answers.iter(), [], soa, glue.iter().copied());
                (answer.kind, answer.rcode, rh.send_response(response).await)
            }
        };
        self.stats.record(kind, qtype, rcode);
        sent.unwrap_or_else(|_| {
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header { metadata: meta, counts: Default::default() }.into()
        })
    }
}

impl Handler {
    fn decide(&self, request: &Request, qtype: Qtype) -> Decision {
        use Decision::Reject;
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Reject(QueryKind::Malformed, Rcode::BadVers);
        }
        if request.metadata.op_code != OpCode::Query {
            return Reject(QueryKind::Malformed, Rcode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Reject(QueryKind::Malformed, Rcode::FormErr);
        };
        if info.query.query_class() != DNSClass::IN {
            return Reject(QueryKind::OutOfZone, Rcode::Refused);
        }
        let generation = self.store.load();
        let mut qname = info.query.original().name().to_ascii();
        qname.make_ascii_lowercase();
        let target = generation.derived.names.table.parse(&qname);
        let answer = answer(&generation.snapshot, &target, qtype, &mut rand::rng());
        Decision::Answer(generation, answer)
    }

    /// The OPT to echo (RFC 6891): version 0, our UDP size, NSID when asked for.
    fn response_edns(&self, request: &Request) -> Option<Edns> {
        let req = request.edns.as_ref()?;
        let mut edns = Edns::new();
        edns.set_version(0);
        edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
        if let (Some(nsid), Some(_)) = (&self.nsid, req.option(EdnsCode::NSID)) {
            edns.options_mut().insert(nsid.clone());
        }
        Some(edns)
    }
}

fn response_code(rcode: Rcode) -> ResponseCode {
    match rcode {
        Rcode::NoError => ResponseCode::NoError,
        Rcode::NxDomain => ResponseCode::NXDomain,
        Rcode::ServFail | Rcode::Other => ResponseCode::ServFail,
        Rcode::Refused => ResponseCode::Refused,
        Rcode::FormErr => ResponseCode::FormErr,
        Rcode::NotImp => ResponseCode::NotImp,
        Rcode::BadVers => ResponseCode::BADVERS,
    }
}

/// Trims a UDP response to the client's size ourselves, so hickory never has to roll
/// back a record that did not fit (0.26.3 leaves its bytes in the datagram): the answers
/// that fit with TC set and nothing after them, or everything but the glue.
fn fit<'s, 'z>(
    request: &Request,
    edns: Option<&Edns>,
    mut meta: Metadata,
    sections: &'s Sections<'z>,
) -> (Metadata, &'s [Record], Option<&'z Record>, &'s [&'z Record]) {
    let all = (meta, &sections.answers[..], sections.soa, &sections.additional[..]);
    if request.protocol() != Protocol::Udp {
        return all;
    }
    let opt_len =
        edns.map_or(0, |e| 11 + e.options().as_ref().iter().map(|(_, o)| 4 + usize::from(o.len())).sum::<usize>());
    let limit = usize::from(edns.map_or(512, |e| e.max_payload()));
    let budget = limit.saturating_sub(opt_len);
    let records = sections.answers.iter().chain(sections.soa).chain(sections.additional.iter().copied());
    let upper = 12 + request.queries.as_bytes().len() + records.map(record_len).sum::<usize>();
    if upper <= budget {
        return all;
    }
    let (fits, all_answers) = answers_that_fit(request, meta, sections, budget);
    if all_answers {
        return (meta, &sections.answers[..], sections.soa, &[]);
    }
    meta.truncation = true;
    (meta, &sections.answers[..fits], None, &[])
}

/// Encodes the response into a scratch buffer of `budget` bytes: how many answers fit,
/// and whether the answers, authority and additional all fit.
fn answers_that_fit(request: &Request, meta: Metadata, sections: &Sections<'_>, budget: usize) -> (usize, bool) {
    let mut scratch = Vec::with_capacity(budget);
    let mut encoder = BinEncoder::new(&mut scratch);
    encoder.set_max_size(u16::try_from(budget).unwrap_or(u16::MAX));
    let trial = MessageResponseBuilder::new(&request.queries, None).build(
        meta,
        sections.answers.iter(),
        [],
        sections.soa,
        sections.additional.iter().copied(),
    );
    match trial.destructive_emit(&mut encoder) {
        Ok(info) => {
            let fits = usize::from(info.counts().answers);
            (fits, fits == sections.answers.len())
        }
        Err(_) => (0, false),
    }
}

/// An upper bound of a record's wire size (no name compression).
fn record_len(record: &Record) -> usize {
    let name = |n: &hickory_proto::rr::Name| n.len() + 1;
    let rdata = match &record.data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::NS(ns) => name(&ns.0),
        RData::SOA(soa) => name(&soa.mname) + name(&soa.rname) + 20,
        RData::TXT(txt) => txt.txt_data.iter().map(|s| s.len() + 1).sum(),
        _ => usize::from(u16::MAX),
    };
    name(&record.name) + 10 + rdata
}
