//! The DNS listeners: binds UDP and TCP on every address, runs the UDP workers
//! (`udp`) and the TCP accept loops (`tcp`) over one shared [`Responder`], and on
//! shutdown lets what is being answered finish.
//!
//! Each UDP worker has a socket of its own, all bound to the address with
//! `SO_REUSEPORT` (the kernel spreads clients over them by address and port), as gdnsd,
//! Knot and NSD do: workers sharing one socket contend for its queue and are woken for
//! each other's datagrams.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::net::UdpSocket;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dns::hold::Hold;
use crate::dns::query::QueryStats;
use crate::dns::records::Zone;
use crate::dns::respond::Responder;
use crate::dns::tcp::{self, Conns, TcpShared};
use crate::dns::udp;
use crate::store::Store;

/// Receive buffer asked for on every UDP socket (bursts overflow the default).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// Pending TCP connections the kernel queues for accept.
const TCP_BACKLOG: i32 = 1024;
/// How long shutdown waits for TCP connections answering a query.
const DRAIN: Duration = Duration::from_secs(1);
/// Most UDP workers (each with its socket) per address.
const MAX_UDP_WORKERS: usize = 4;

/// A bound, not yet running DNS server.
pub struct DnsServer {
    /// Per address, one UDP socket per worker, and the TCP listener.
    sockets: Vec<(Vec<Arc<UdpSocket>>, TcpListener)>,
    responder: Arc<Responder>,
    shared: Arc<TcpShared>,
    addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds UDP and TCP on every address (port 0: one ephemeral port shared by both).
    /// `fd_budget` is how many file descriptors DNS TCP connections may take.
    pub fn bind(
        listen: &[SocketAddr],
        store: Arc<Store<Zone>>,
        stats: Arc<QueryStats>,
        nsid: Vec<u8>,
        fd_budget: u32,
    ) -> io::Result<DnsServer> {
        let responder = Arc::new(Responder::new(store, stats.clone(), nsid));
        let conns = Arc::new(Conns::default());
        let hold = Arc::new(Hold::new());
        let shared = Arc::new(TcpShared { responder: responder.clone(), hold, stats, conns, fd_budget });
        let mut sockets = Vec::with_capacity(listen.len());
        let mut addrs = Vec::with_capacity(listen.len());
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_UDP_WORKERS);
        for addr in listen {
            let (udp, tcp) = bind_pair(*addr)?;
            let bound = udp.local_addr()?;
            let mut udp = vec![Arc::new(udp)];
            for _ in 1..workers {
                udp.push(Arc::new(bind_udp(bound)?));
            }
            addrs.push(bound);
            sockets.push((udp, tcp));
        }
        Ok(DnsServer { sockets, responder, shared, addrs })
    }

    /// The bound addresses (each served over UDP and TCP).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Serves until `cancel` fires, then lets queries being answered finish and returns.
    pub async fn run(self, cancel: CancellationToken) -> io::Result<()> {
        let epoch = tokio::time::Instant::now();
        let tasks = TaskTracker::new();
        let connections = TaskTracker::new();
        // The UDP threads stop when `cancel` fires, and also when this future is
        // dropped unfinished (a runtime shutting down waits for them).
        let cancel = cancel.child_token();
        let _stop_threads = cancel.clone().drop_guard();
        for (udp, tcp) in self.sockets {
            for udp in udp {
                let (responder, hold) = (self.responder.clone(), self.shared.hold.clone());
                let cancel = cancel.clone();
                tasks.spawn_blocking(move || udp::serve(udp, responder, hold, epoch, cancel));
            }
            tasks.spawn(tcp::serve(tcp, self.shared.clone(), connections.clone(), cancel.clone()));
        }
        tasks.close();
        tasks.wait().await;
        connections.close();
        let _ = tokio::time::timeout(DRAIN, connections.wait()).await;
        Ok(())
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
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_read_timeout(Some(udp::WAKE))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    TcpListener::from_std(socket.into())
}
