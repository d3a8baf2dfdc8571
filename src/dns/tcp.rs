//! DNS over TCP, with our own accept loop so that connections are bounded (SPEC §12):
//!
//! - over `tcp_connections_per_client` from one address, or over `tcp_connections` in
//!   all, a new connection is closed at once: no task, no buffer; except that at the
//!   total cap a connection that has completed no query for a second (or `tcp_idle`)
//!   is closed instead to make room, so clients that hold every slot idle or dripping
//!   bytes cannot keep a real client out;
//! - a connection that completes no query for `tcp_idle` is closed (bytes trickling in
//!   do not count), and none lives longer than `tcp_lifetime`;
//! - `accept` failing for lack of file descriptors or memory (EMFILE, ENFILE, ENOBUFS,
//!   ENOMEM) pauses accepting briefly (no spin) and goes on; the listener never stops.
//!
//! Queries on one connection are answered in order (`respond`, as over UDP). The
//! limits are read from the current config at each accept, so a reload applies to new
//! connections.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout_at, Instant};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DnsLimits;
use crate::dns::edge::TcpEvent;
use crate::dns::hold::Hold;
use crate::dns::query::QueryStats;
use crate::dns::respond::{Ask, Reply, Responder, Transport};

/// How long accepting pauses after running out of file descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At the total cap, a connection that has completed no query for this long (or
/// `tcp_idle` if shorter) is closed to make room for a new one, so idle and slow-drip
/// clients holding every slot cannot keep others out.
const EVICT_AFTER: Duration = Duration::from_secs(1);
/// At most one log line about failing accepts per this long.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The open connections, in all and per client address. Entries exist only for
/// connections open now, so the maps are bounded by the total cap.
#[derive(Default)]
pub struct Conns {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    per_client: HashMap<IpAddr, u32>,
    slots: HashMap<u64, Quiet>,
    next_id: u64,
}

/// An open connection's client, since when it has completed no query, and how to
/// tell it to go.
struct Quiet {
    client: IpAddr,
    since: Instant,
    evict: CancellationToken,
}

/// One admitted connection; dropping it frees the slot.
pub struct Slot {
    conns: Arc<Conns>,
    id: u64,
    evict: CancellationToken,
}

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `client` at `now` under the caps (`total_cap`:
    /// `tcp_connections` as fitted to the file-descriptor limit), or says which cap it
    /// is over. At the total cap, the connection quiet the longest makes room if it has
    /// completed no query for `evict_after` (it is told to go, and counted as evicted).
    pub fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        caps: (u32, u32),
        now: Instant,
        evict_after: Duration,
    ) -> Result<(Slot, bool), TcpEvent> {
        let (total_cap, per_client_cap) = caps;
        let mut open = self.lock();
        if open.per_client.get(&client).copied().unwrap_or(0) >= per_client_cap {
            return Err(TcpEvent::OverPerClient);
        }
        let mut evicted = false;
        if open.slots.len() >= total_cap as usize {
            let oldest = open.slots.iter().min_by_key(|(_, q)| q.since).map(|(id, q)| (*id, q.since));
            match oldest {
                Some((id, since)) if now.duration_since(since) >= evict_after => {
                    let gone = open.remove(id).expect("the slot just found");
                    gone.evict.cancel();
                    evicted = true;
                }
                _ => return Err(TcpEvent::OverTotal),
            }
        }
        *open.per_client.entry(client).or_insert(0) += 1;
        let id = open.next_id;
        open.next_id += 1;
        let evict = CancellationToken::new();
        open.slots.insert(id, Quiet { client, since: now, evict: evict.clone() });
        Ok((Slot { conns: self.clone(), id, evict }, evicted))
    }

    /// Connections open now.
    pub fn total(&self) -> u32 {
        self.lock().slots.len() as u32
    }
}

impl Open {
    fn remove(&mut self, id: u64) -> Option<Quiet> {
        let gone = self.slots.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&gone.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&gone.client);
            }
        }
        Some(gone)
    }
}

impl Slot {
    /// The connection completed a query at `now`.
    fn busy(&self, now: Instant) {
        if let Some(q) = self.conns.lock().slots.get_mut(&self.id) {
            q.since = now;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.lock().remove(self.id);
    }
}

/// `tcp_connections` fitted to the file descriptors left for connections.
pub fn fitted_cap(limits: &DnsLimits, fd_budget: u32) -> u32 {
    limits.tcp_connections.min(fd_budget).max(1)
}

/// What the accept loop shares with its connections.
pub struct TcpShared {
    pub responder: Arc<Responder>,
    pub hold: Arc<Hold>,
    pub stats: Arc<QueryStats>,
    pub conns: Arc<Conns>,
    /// File descriptors available for DNS TCP connections.
    pub fd_budget: u32,
}

/// Accepts on `listener` until `cancel` fires; connections run on `tasks`.
pub async fn serve(listener: TcpListener, shared: Arc<TcpShared>, tasks: TaskTracker, cancel: CancellationToken) {
    let mut last_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let limits = shared.responder.limits();
                let caps = (fitted_cap(&limits, shared.fd_budget), limits.tcp_connections_per_client);
                let evict_after = limits.tcp_idle.min(EVICT_AFTER);
                match shared.conns.admit(peer.ip().to_canonical(), caps, Instant::now(), evict_after) {
                    Ok((slot, evicted)) => {
                        if evicted {
                            shared.stats.edge.tcp(TcpEvent::Evicted);
                        }
                        let (shared, cancel) = (shared.clone(), cancel.clone());
                        tasks.spawn(connection(stream, peer, slot, limits, shared, cancel));
                    }
                    Err(event) => {
                        shared.stats.edge.tcp(event);
                        drop(stream);
                    }
                }
            }
            Err(e) => {
                shared.stats.edge.accept_error();
                let now = Instant::now();
                if last_logged.is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY) {
                    last_logged = Some(now);
                    tracing::warn!(error = %e, "DNS TCP accept failed; pausing accepts briefly");
                }
                if out_of_resources(&e) {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
    }
}

/// Errors after which accepting at once would fail again (and spin).
fn out_of_resources(e: &io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM)) || e.raw_os_error().is_none()
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    limits: DnsLimits,
    shared: Arc<TcpShared>,
    cancel: CancellationToken,
) {
    let edge = &shared.stats.edge;
    edge.tcp_opened();
    let event = tokio::select! {
        biased;
        _ = cancel.cancelled() => Some(TcpEvent::Shutdown),
        _ = slot.evict.cancelled() => None,
        e = answer_queries(&mut stream, peer, &limits, &shared, &slot) => Some(e),
    };
    // (an eviction is counted where it is decided)
    if let Some(event) = event {
        edge.tcp(event);
    }
    edge.tcp_gone();
    drop(slot);
}

/// Answers queries until the client goes, a limit is reached or a message cannot be
/// answered; says why it stopped.
async fn answer_queries(
    stream: &mut TcpStream,
    peer: SocketAddr,
    limits: &DnsLimits,
    shared: &TcpShared,
    slot: &Slot,
) -> TcpEvent {
    let r = &shared.responder;
    let _ = stream.set_nodelay(true);
    let start = Instant::now();
    let end_of_life = start + limits.tcp_lifetime;
    let mut idle_until = start + limits.tcp_idle;
    let (mut codec, mut inbox) = (message_codec(), BytesMut::with_capacity(512));
    let (mut response, mut frame) = (Vec::new(), Vec::new());
    loop {
        let (deadline, reason) = match idle_until <= end_of_life {
            true => (idle_until, TcpEvent::Idle),
            false => (end_of_life, TcpEvent::Lifetime),
        };
        let query = match timeout_at(deadline, read_message(stream, &mut codec, &mut inbox)).await {
            Err(_) => return reason,
            Ok(Err(_)) => return TcpEvent::Closed,
            Ok(Ok(query)) => query,
        };
        let may_hold = shared.hold.may_hold(r.store());
        let ask = Ask { may_hold, ..Ask::new(&query, peer.ip(), Transport::Tcp, 0) };
        let mut reply = r.respond(&ask, &mut response);
        if reply == Reply::Hold {
            shared.hold.wait(r.store()).await;
            reply = r.respond(&Ask { released: true, ..Ask::new(&query, peer.ip(), Transport::Tcp, 0) }, &mut response);
        }
        if reply != Reply::Send {
            return TcpEvent::Malformed;
        }
        frame.clear();
        frame.extend_from_slice(&(response.len() as u16).to_be_bytes());
        frame.extend_from_slice(&response);
        let write_by = (Instant::now() + limits.tcp_idle).min(end_of_life);
        match timeout_at(write_by, stream.write_all(&frame)).await {
            Err(_) => return if write_by == end_of_life { TcpEvent::Lifetime } else { TcpEvent::Idle },
            Ok(Err(_)) => return TcpEvent::Closed,
            Ok(Ok(())) => {}
        }
        let now = Instant::now();
        slot.busy(now);
        idle_until = now + limits.tcp_idle;
    }
}

/// DNS over TCP's framing (RFC 1035 §4.2.2): each message after its 2-byte length.
/// The fuzz target splits streams with the same codec.
pub fn message_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(2).max_frame_length(usize::from(u16::MAX)).new_codec()
}

/// Reads until `inbox` holds one whole message and takes it out.
async fn read_message(
    stream: &mut TcpStream,
    codec: &mut LengthDelimitedCodec,
    inbox: &mut BytesMut,
) -> io::Result<BytesMut> {
    loop {
        if let Some(message) = codec.decode(inbox)? {
            return Ok(message);
        }
        if stream.read_buf(inbox).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_in_all_and_per_client_and_free_on_drop() {
        let conns = Arc::new(Conns::default());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        let never = Duration::from_secs(3600);
        let admit = |ip, at| conns.admit(ip, (3, 2), at, never).map(|(s, evicted)| (s, assert!(!evicted)).0);
        let a1 = admit(a, t0).unwrap();
        let a2 = admit(a, t0).unwrap();
        assert_eq!(admit(a, t0).err(), Some(TcpEvent::OverPerClient));
        let b1 = admit(b, t0).unwrap();
        assert_eq!(admit(b, t0).err(), Some(TcpEvent::OverTotal));
        assert_eq!(conns.total(), 3);
        drop(a1);
        let a3 = admit(a, t0).unwrap();
        drop((a2, a3, b1));
        assert_eq!(conns.total(), 0);
        let open = conns.lock();
        assert!(open.per_client.is_empty() && open.slots.is_empty(), "no entry outlives its connections");
    }

    #[test]
    fn at_the_total_cap_the_longest_quiet_connection_makes_room() {
        let conns = Arc::new(Conns::default());
        let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let (quiet, _) = conns.admit(ip(1), (2, 2), t0, s(1)).unwrap();
        let (busy, _) = conns.admit(ip(2), (2, 2), t0, s(1)).unwrap();
        busy.busy(t0 + s(5));
        // not quiet for long enough yet: the newcomer is refused
        assert_eq!(conns.admit(ip(3), (2, 2), t0 + s(1) / 2, s(1)).err(), Some(TcpEvent::OverTotal));
        // the quiet one goes, not the one that just answered
        let (new, evicted) = conns.admit(ip(3), (2, 2), t0 + s(6), s(1)).unwrap();
        assert!(evicted && quiet.evict.is_cancelled() && !busy.evict.is_cancelled());
        assert_eq!(conns.total(), 2);
        drop(quiet); // its task ends; its slot was already handed over
        assert_eq!(conns.total(), 2);
        drop((busy, new));
        assert_eq!(conns.total(), 0);
    }

    #[test]
    fn the_total_cap_fits_the_descriptors() {
        let limits = DnsLimits::default();
        assert_eq!(fitted_cap(&limits, 100_000), 1024);
        assert_eq!(fitted_cap(&limits, 200), 200);
        assert_eq!(fitted_cap(&limits, 0), 1);
    }

    #[test]
    fn out_of_descriptors_pauses_and_aborted_handshakes_do_not() {
        assert!(out_of_resources(&io::Error::from_raw_os_error(24)));
        assert!(out_of_resources(&io::Error::from_raw_os_error(23)));
        assert!(!out_of_resources(&io::Error::from_raw_os_error(103))); // ECONNABORTED
        assert!(!out_of_resources(&io::Error::from_raw_os_error(104)));
    }
}
