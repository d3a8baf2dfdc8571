//! DNS's vocabulary of a query, owned here and counted by `metrics`: the kind of name
//! asked for, the query type and the rcode answered; and the lock-free counters the
//! handler bumps once per query.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::dns::edge::EdgeStats;

/// What kind of name a query asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Write,
    Read,
    MaxLag,
    Lsn,
    Apex,
    Nameserver,
    /// `<node>.<cluster>.<zone>`.
    Node,
    /// `_postgresql._tcp.<name>.<zone>`, whatever the type asked.
    Srv,
    /// A name that exists only because names below it do (RFC 8020 empty
    /// non-terminal: NODATA).
    Empty,
    /// In the zone, but no such name (NXDOMAIN).
    Unknown,
    /// Outside the zone (REFUSED).
    OutOfZone,
    /// No usable question (FORMERR, NOTIMP, BADVERS).
    Malformed,
    /// From a client outside `[dns] allow` (REFUSED).
    Denied,
}

impl QueryKind {
    pub const ALL: [QueryKind; 13] = [
        QueryKind::Write,
        QueryKind::Read,
        QueryKind::MaxLag,
        QueryKind::Lsn,
        QueryKind::Apex,
        QueryKind::Nameserver,
        QueryKind::Node,
        QueryKind::Srv,
        QueryKind::Empty,
        QueryKind::Unknown,
        QueryKind::OutOfZone,
        QueryKind::Malformed,
        QueryKind::Denied,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::Write => "write",
            QueryKind::Read => "read",
            QueryKind::MaxLag => "maxlag",
            QueryKind::Lsn => "lsn",
            QueryKind::Apex => "apex",
            QueryKind::Nameserver => "nameserver",
            QueryKind::Node => "node",
            QueryKind::Srv => "srv",
            QueryKind::Empty => "empty",
            QueryKind::Unknown => "unknown",
            QueryKind::OutOfZone => "out_of_zone",
            QueryKind::Malformed => "malformed",
            QueryKind::Denied => "denied",
        }
    }
}

/// Query types counted separately; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qtype {
    A,
    Aaaa,
    Txt,
    Soa,
    Ns,
    Srv,
    Any,
    Other,
}

impl Qtype {
    pub const ALL: [Qtype; 8] =
        [Qtype::A, Qtype::Aaaa, Qtype::Txt, Qtype::Soa, Qtype::Ns, Qtype::Srv, Qtype::Any, Qtype::Other];
    pub fn from_code(code: u16) -> Qtype {
        match code {
            1 => Qtype::A,
            28 => Qtype::Aaaa,
            16 => Qtype::Txt,
            6 => Qtype::Soa,
            2 => Qtype::Ns,
            33 => Qtype::Srv,
            255 => Qtype::Any,
            _ => Qtype::Other,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Qtype::A => "A",
            Qtype::Aaaa => "AAAA",
            Qtype::Txt => "TXT",
            Qtype::Soa => "SOA",
            Qtype::Ns => "NS",
            Qtype::Srv => "SRV",
            Qtype::Any => "ANY",
            Qtype::Other => "other",
        }
    }
}

/// Response codes counted; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    ServFail,
    Refused,
    FormErr,
    NotImp,
    BadVers,
    Other,
}

impl Rcode {
    pub const ALL: [Rcode; 8] = [
        Rcode::NoError,
        Rcode::NxDomain,
        Rcode::ServFail,
        Rcode::Refused,
        Rcode::FormErr,
        Rcode::NotImp,
        Rcode::BadVers,
        Rcode::Other,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Rcode::NoError => "NOERROR",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::ServFail => "SERVFAIL",
            Rcode::Refused => "REFUSED",
            Rcode::FormErr => "FORMERR",
            Rcode::NotImp => "NOTIMP",
            Rcode::BadVers => "BADVERS",
            Rcode::Other => "other",
        }
    }

    /// The wire value (12 bits; BADVERS needs the OPT's extended rcode).
    pub fn code(self) -> u16 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail | Rcode::Other => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            Rcode::BadVers => 16,
        }
    }
}

/// Where a read answer's first record is, seen from the client (SPEC §8 metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nearness {
    Local,
    Remote,
    /// The client's location is unknown, or no `[locality]` is configured.
    Unknown,
}

impl Nearness {
    pub const ALL: [Nearness; 3] = [Nearness::Local, Nearness::Remote, Nearness::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Nearness::Local => "local",
            Nearness::Remote => "remote",
            Nearness::Unknown => "unknown",
        }
    }
}

const CELLS: usize = QueryKind::ALL.len() * Qtype::ALL.len() * Rcode::ALL.len();

/// Counter shards: each thread counts in the shard it was given first (round robin), so
/// UDP workers on different cores do not bounce one cache line per query between them.
const SHARDS: usize = 8;

/// One thread's share of the counters, on cache lines of its own.
#[repr(align(128))]
struct Shard {
    cells: [AtomicU64; CELLS],
    /// Read answers by [`Nearness`], in `Nearness::ALL` order.
    nearness: [AtomicU64; 3],
}

impl Default for Shard {
    fn default() -> Self {
        Shard { cells: std::array::from_fn(|_| AtomicU64::new(0)), nearness: Default::default() }
    }
}

/// Lock-free query counters by name kind, query type and rcode, and the edge's.
pub struct QueryStats {
    shards: Box<[Shard]>,
    pub edge: EdgeStats,
}

impl Default for QueryStats {
    fn default() -> Self {
        QueryStats { shards: (0..SHARDS).map(|_| Shard::default()).collect(), edge: EdgeStats::default() }
    }
}

impl QueryStats {
    fn index(kind: QueryKind, qtype: Qtype, rcode: Rcode) -> usize {
        let k = QueryKind::ALL.iter().position(|x| *x == kind).unwrap_or(0);
        let t = Qtype::ALL.iter().position(|x| *x == qtype).unwrap_or(0);
        let r = Rcode::ALL.iter().position(|x| *x == rcode).unwrap_or(0);
        (k * Qtype::ALL.len() + t) * Rcode::ALL.len() + r
    }

    /// The calling thread's shard.
    fn shard(&self) -> &Shard {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        &self.shards[MINE.with(|m| *m)]
    }

    /// Counts one answered query.
    pub fn record(&self, kind: QueryKind, qtype: Qtype, rcode: Rcode) {
        self.shard().cells[Self::index(kind, qtype, rcode)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one read answer with records by where its first record is.
    pub fn nearness(&self, n: Nearness) {
        self.shard().nearness[n as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Read answers so far, by nearness.
    pub fn by_nearness(&self) -> [(Nearness, u64); 3] {
        Nearness::ALL.map(|n| (n, self.shards.iter().map(|s| s.nearness[n as usize].load(Ordering::Relaxed)).sum()))
    }

    /// Every non-zero counter.
    pub fn nonzero(&self) -> Vec<(QueryKind, Qtype, Rcode, u64)> {
        let mut out = Vec::new();
        for kind in QueryKind::ALL {
            for qtype in Qtype::ALL {
                for rcode in Rcode::ALL {
                    let i = Self::index(kind, qtype, rcode);
                    let n: u64 = self.shards.iter().map(|s| s.cells[i].load(Ordering::Relaxed)).sum();
                    if n > 0 {
                        out.push((kind, qtype, rcode, n));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        // More threads than shards: some share one, every count is kept.
        let stats = QueryStats::default();
        std::thread::scope(|s| {
            for t in 0..SHARDS as u64 + 3 {
                let stats = &stats;
                s.spawn(move || {
                    for _ in 0..=t {
                        stats.record(QueryKind::Read, Qtype::A, Rcode::NoError);
                        stats.nearness(Nearness::Local);
                    }
                    stats.record(QueryKind::Write, Qtype::Soa, Rcode::NxDomain);
                });
            }
        });
        let n = SHARDS as u64 + 3;
        let read = n * (n + 1) / 2;
        let expected =
            vec![(QueryKind::Write, Qtype::Soa, Rcode::NxDomain, n), (QueryKind::Read, Qtype::A, Rcode::NoError, read)];
        assert_eq!(stats.nonzero(), expected);
        assert_eq!(stats.by_nearness(), [(Nearness::Local, read), (Nearness::Remote, 0), (Nearness::Unknown, 0)]);
    }
}
