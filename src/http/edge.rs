//! The HTTP listener's edge: a client outside `[http] allow` (read from the current
//! config at each accept) is disconnected at once, as is one over [`MAX_CONNECTIONS`];
//! and no connection lives longer than [`LIFETIME`], so idle or slow clients cannot hold
//! the slots (a Prometheus scraper simply reconnects). The agent listener
//! (`http::agent`) is guarded the same way, with its own cap and lifetime.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::dns::query::QueryStats;
use crate::store::Snapshots;

/// Open HTTP connections at most.
pub const MAX_CONNECTIONS: usize = 64;
/// No HTTP connection lives longer.
pub const LIFETIME: Duration = Duration::from_secs(30);

pub struct Guarded {
    inner: TcpListener,
    snapshots: Arc<dyn Snapshots>,
    stats: Arc<QueryStats>,
    slots: Arc<Semaphore>,
    lifetime: Duration,
}

impl Guarded {
    pub fn new(inner: TcpListener, snapshots: Arc<dyn Snapshots>, stats: Arc<QueryStats>) -> Guarded {
        Guarded::with_limits(inner, snapshots, stats, MAX_CONNECTIONS, LIFETIME)
    }

    /// At most `connections` open at once, none living longer than `lifetime`.
    pub fn with_limits(
        inner: TcpListener,
        snapshots: Arc<dyn Snapshots>,
        stats: Arc<QueryStats>,
        connections: usize,
        lifetime: Duration,
    ) -> Guarded {
        Guarded { inner, snapshots, stats, slots: Arc::new(Semaphore::new(connections)), lifetime }
    }

    /// The next connection from an allowed client with a slot free; the others are
    /// closed as they come. Cancel-safe: dropping it mid-way closes at most the one
    /// connection it held.
    pub async fn admit(&mut self) -> (Bounded, SocketAddr) {
        loop {
            let (stream, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            if !self.snapshots.snapshot().config.http.allow.admits(peer.ip()) {
                self.stats.edge.http_denied();
                continue;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else { continue };
            let deadline = Box::pin(tokio::time::sleep(self.lifetime));
            return (Bounded { stream, deadline, _permit: permit }, peer);
        }
    }
}

impl axum::serve::Listener for Guarded {
    type Io = Bounded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded, SocketAddr) {
        self.admit().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection holding its slot until dropped, failing once its time is up.
pub struct Bounded {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Bounded {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection lifetime over")
}

impl AsyncRead for Bounded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
