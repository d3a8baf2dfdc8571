//! The counters of the network edge, bumped by the socket loops and rendered by
//! `metrics`: response-rate limiting, TCP connection caps and timeouts, accept errors,
//! HTTP and agent clients outside `[http] allow`, and the HAProxy agent's replies.
//! (Queries refused by `[dns] allow` are counted with the queries, as kind `denied`.)

use std::sync::atomic::{AtomicU64, Ordering};

use crate::check::AgentReply;

/// Why a TCP connection was refused or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    /// Refused at accept: `tcp_connections` open already.
    OverTotal,
    /// Refused at accept: `tcp_connections_per_client` open from this address already.
    OverPerClient,
    /// Closed at the total cap to make room: it had completed no query for a while.
    Evicted,
    /// Closed: no query completed within `tcp_idle`.
    Idle,
    /// Closed: open for `tcp_lifetime`.
    Lifetime,
    /// Closed by the client, or a read or write failed.
    Closed,
    /// Closed by shutdown.
    Shutdown,
    /// Closed: the client sent a length prefix of 0 or a message we cannot answer at all.
    Malformed,
}

impl TcpEvent {
    pub const ALL: [TcpEvent; 8] = [
        TcpEvent::OverTotal,
        TcpEvent::OverPerClient,
        TcpEvent::Evicted,
        TcpEvent::Idle,
        TcpEvent::Lifetime,
        TcpEvent::Closed,
        TcpEvent::Shutdown,
        TcpEvent::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TcpEvent::OverTotal => "over_total",
            TcpEvent::OverPerClient => "over_per_client",
            TcpEvent::Evicted => "evicted",
            TcpEvent::Idle => "idle",
            TcpEvent::Lifetime => "lifetime",
            TcpEvent::Closed => "closed",
            TcpEvent::Shutdown => "shutdown",
            TcpEvent::Malformed => "malformed",
        }
    }

    /// Refused at accept (the rest are closes of accepted connections).
    pub fn is_refusal(self) -> bool {
        matches!(self, TcpEvent::OverTotal | TcpEvent::OverPerClient)
    }
}

/// What response-rate limiting did to a response over the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Sent truncated (TC, no records).
    Slipped,
    /// Not sent.
    Dropped,
}

#[derive(Default)]
pub struct EdgeStats {
    rrl_slipped: AtomicU64,
    rrl_dropped: AtomicU64,
    tcp: [AtomicU64; TcpEvent::ALL.len()],
    tcp_accepted: AtomicU64,
    tcp_open: AtomicU64,
    accept_errors: AtomicU64,
    http_denied: AtomicU64,
    /// Agent connections by reply ([`AgentReply::KINDS`]), then those closed unanswered.
    agent: [AtomicU64; AgentReply::KINDS.len() + 1],
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl EdgeStats {
    pub fn limited(&self, what: Limited) {
        bump(match what {
            Limited::Slipped => &self.rrl_slipped,
            Limited::Dropped => &self.rrl_dropped,
        })
    }

    pub fn tcp(&self, event: TcpEvent) {
        let i = TcpEvent::ALL.iter().position(|e| *e == event).unwrap_or(0);
        bump(&self.tcp[i]);
    }

    pub fn tcp_opened(&self) {
        bump(&self.tcp_accepted);
        bump(&self.tcp_open);
    }

    pub fn tcp_gone(&self) {
        self.tcp_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn accept_error(&self) {
        bump(&self.accept_errors);
    }

    pub fn http_denied(&self) {
        bump(&self.http_denied);
    }

    /// (slipped, dropped) responses over the rate.
    pub fn rrl(&self) -> (u64, u64) {
        (self.rrl_slipped.load(Ordering::Relaxed), self.rrl_dropped.load(Ordering::Relaxed))
    }

    pub fn tcp_events(&self) -> impl Iterator<Item = (TcpEvent, u64)> + '_ {
        TcpEvent::ALL.iter().zip(&self.tcp).map(|(e, c)| (*e, c.load(Ordering::Relaxed)))
    }

    /// (accepted in all, open now, accept errors).
    pub fn tcp_totals(&self) -> (u64, u64, u64) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (load(&self.tcp_accepted), load(&self.tcp_open), load(&self.accept_errors))
    }

    pub fn http_denied_total(&self) -> u64 {
        self.http_denied.load(Ordering::Relaxed)
    }

    /// One agent connection answered `reply`, or (`None`) closed without a reply.
    pub fn agent(&self, reply: Option<AgentReply>) {
        let kind = reply.map(AgentReply::kind);
        let i = AgentReply::KINDS.iter().position(|k| Some(*k) == kind).unwrap_or(AgentReply::KINDS.len());
        bump(&self.agent[i]);
    }

    /// Agent connections by reply word, `none` for those closed unanswered.
    pub fn agent_replies(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let kinds = AgentReply::KINDS.into_iter().chain(["none"]);
        kinds.zip(&self.agent).map(|(k, c)| (k, c.load(Ordering::Relaxed)))
    }
}
