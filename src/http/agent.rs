//! The HAProxy agent-check listener (`[http] agent_listen`, SPEC §10): per connection one
//! line in (`<cluster>/<name>/<node>`, what `agent-send` sends), one line out (`up ready
//! N%`, `drain` or `down`), then close. What to answer is decided by `check`; this file
//! only reads, waits and writes, within bounds: `[http] allow` and at most
//! [`MAX_CONNECTIONS`] at once (through `edge::Guarded`, as the HTTP listener), the line
//! within [`LINE_TIMEOUT`] and [`MAX_AGENT_LINE`] bytes, or the connection is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::edge::{Bounded, Guarded};
use crate::check::{self, AgentReply, Subject, MAX_AGENT_LINE};
use crate::dns::query::QueryStats;
use crate::snapshot::Snapshot;
use crate::store::Snapshots;

/// Agent connections open at once; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// A client that has not sent its line (up to a newline) this long after connecting is
/// dropped.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(1);
/// Before the first probe round has finished, a request waits at most this long for it
/// (as DNS queries are held), then is closed without a reply: HAProxy keeps a server's
/// state when its agent does not answer.
pub const HOLD: Duration = Duration::from_secs(1);
/// No agent connection lives longer (a backstop over the two above).
const LIFETIME: Duration = Duration::from_secs(3);
/// How often a held request looks whether the first round has finished.
const POLL: Duration = Duration::from_millis(10);

/// Serves agent checks on `listener` until `cancel` fires, then lets the connections in
/// flight finish (each is over within a few seconds).
pub async fn serve(
    listener: TcpListener,
    snapshots: Arc<dyn Snapshots>,
    stats: Arc<QueryStats>,
    cancel: CancellationToken,
) {
    let mut guarded = Guarded::with_limits(listener, snapshots.clone(), stats.clone(), MAX_CONNECTIONS, LIFETIME);
    let tasks = TaskTracker::new();
    loop {
        let (conn, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            admitted = guarded.admit() => admitted,
        };
        tasks.spawn(answer(conn, peer, snapshots.clone(), stats.clone()));
    }
    tasks.close();
    tasks.wait().await;
}

/// One connection: read the line, answer it (or not), close.
async fn answer(mut conn: Bounded, peer: SocketAddr, snapshots: Arc<dyn Snapshots>, stats: Arc<QueryStats>) {
    let line = match tokio::time::timeout(LINE_TIMEOUT, read_line(&mut conn)).await {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return unanswered(&stats, peer, &e.to_string()),
        Err(_) => return unanswered(&stats, peer, "no line within 1s"),
    };
    let reply = match check::parse_agent_line(&line) {
        Some((cluster, name, node)) => match ready(snapshots.as_ref()).await {
            Some(snap) => reply_for(&snap, cluster, name, node, peer),
            None => return unanswered(&stats, peer, "the first probe round has not finished"),
        },
        None => {
            let line = String::from_utf8_lossy(&line);
            tracing::debug!(%peer, line = ?line.trim(), "agent: not a <cluster>/<name>/<node> line; answering down");
            AgentReply::Down
        }
    };
    stats.edge.agent(Some(reply));
    let _ = conn.write_all(format!("{reply}\n").as_bytes()).await;
    let _ = conn.shutdown().await;
}

fn reply_for(snap: &Snapshot, cluster: &str, name: &str, node: &str, peer: SocketAddr) -> AgentReply {
    match Subject::find(&snap.config, cluster, name, node) {
        Ok(subject) => check::agent_reply(snap, subject).unwrap_or(AgentReply::Down),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "agent: unknown check; answering down");
            AgentReply::Down
        }
    }
}

fn unanswered(stats: &QueryStats, peer: SocketAddr, why: &str) {
    tracing::debug!(%peer, why, "agent: connection closed without a reply");
    stats.edge.agent(None);
}

/// Why a request line could not be read.
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("no newline within {MAX_AGENT_LINE} bytes")]
    TooLong,
    #[error("closed without a line")]
    Empty,
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
}

/// The bytes up to the first newline (or to the end, if the client half-closes after
/// its line), at most [`MAX_AGENT_LINE`]; what follows the newline is ignored.
async fn read_line(conn: &mut Bounded) -> Result<Vec<u8>, LineError> {
    let mut buf = vec![0u8; MAX_AGENT_LINE];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(LineError::TooLong);
        }
        let n = conn.read(&mut buf[len..]).await?;
        if n == 0 {
            return if buf[..len].iter().all(u8::is_ascii_whitespace) {
                Err(LineError::Empty)
            } else {
                Ok(buf[..len].to_vec())
            };
        }
        if let Some(end) = buf[len..len + n].iter().position(|&b| b == b'\n') {
            buf.truncate(len + end + 1);
            return Ok(buf);
        }
        len += n;
    }
}

/// The current snapshot once the first probe round has finished, waiting for that at
/// most [`HOLD`]; `None` if it has not by then.
async fn ready(snapshots: &dyn Snapshots) -> Option<Arc<Snapshot>> {
    let deadline = Instant::now() + HOLD;
    loop {
        let snap = snapshots.snapshot();
        if snap.ready {
            return Some(snap);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
