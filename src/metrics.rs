//! Metrics: every metric name (prefix `lagdns_`), the query counters the DNS handler
//! bumps, and the Prometheus text rendering of a snapshot plus those counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// What kind of name a query asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Write,
    Read,
    MaxLag,
    Lsn,
    Apex,
    Nameserver,
    /// In the zone, but no such name (NXDOMAIN).
    Unknown,
    /// Outside the zone (REFUSED).
    OutOfZone,
    /// No usable question (FORMERR, NOTIMP, BADVERS).
    Malformed,
}

impl QueryKind {
    pub const ALL: [QueryKind; 9] = [
        QueryKind::Write,
        QueryKind::Read,
        QueryKind::MaxLag,
        QueryKind::Lsn,
        QueryKind::Apex,
        QueryKind::Nameserver,
        QueryKind::Unknown,
        QueryKind::OutOfZone,
        QueryKind::Malformed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::Write => "write",
            QueryKind::Read => "read",
            QueryKind::MaxLag => "maxlag",
            QueryKind::Lsn => "lsn",
            QueryKind::Apex => "apex",
            QueryKind::Nameserver => "nameserver",
            QueryKind::Unknown => "unknown",
            QueryKind::OutOfZone => "out_of_zone",
            QueryKind::Malformed => "malformed",
        }
    }
}

/// Query types counted separately; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    A,
    Aaaa,
    Txt,
    Soa,
    Ns,
    Any,
    Other,
}

impl QueryType {
    pub const ALL: [QueryType; 7] =
        [QueryType::A, QueryType::Aaaa, QueryType::Txt, QueryType::Soa, QueryType::Ns, QueryType::Any, QueryType::Other];
    pub fn from_code(code: u16) -> QueryType {
        match code {
            1 => QueryType::A,
            28 => QueryType::Aaaa,
            16 => QueryType::Txt,
            6 => QueryType::Soa,
            2 => QueryType::Ns,
            255 => QueryType::Any,
            _ => QueryType::Other,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            QueryType::A => "A",
            QueryType::Aaaa => "AAAA",
            QueryType::Txt => "TXT",
            QueryType::Soa => "SOA",
            QueryType::Ns => "NS",
            QueryType::Any => "ANY",
            QueryType::Other => "other",
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
    /// From the 12-bit DNS rcode.
    pub fn from_code(code: u16) -> Rcode {
        match code {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            16 => Rcode::BadVers,
            _ => Rcode::Other,
        }
    }
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
}

const CELLS: usize = QueryKind::ALL.len() * QueryType::ALL.len() * Rcode::ALL.len();

/// Lock-free query counters by name kind, query type and rcode.
pub struct QueryStats {
    cells: Box<[AtomicU64]>,
}

impl Default for QueryStats {
    fn default() -> Self {
        QueryStats { cells: (0..CELLS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl QueryStats {
    fn index(kind: QueryKind, qtype: QueryType, rcode: Rcode) -> usize {
        let k = QueryKind::ALL.iter().position(|x| *x == kind).unwrap_or(0);
        let t = QueryType::ALL.iter().position(|x| *x == qtype).unwrap_or(0);
        let r = Rcode::ALL.iter().position(|x| *x == rcode).unwrap_or(0);
        (k * QueryType::ALL.len() + t) * Rcode::ALL.len() + r
    }

    /// Counts one answered query.
    pub fn record(&self, kind: QueryKind, qtype: QueryType, rcode: Rcode) {
        self.cells[Self::index(kind, qtype, rcode)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every non-zero counter.
    pub fn nonzero(&self) -> Vec<(QueryKind, QueryType, Rcode, u64)> {
        let mut out = Vec::new();
        for kind in QueryKind::ALL {
            for qtype in QueryType::ALL {
                for rcode in Rcode::ALL {
                    let n = self.cells[Self::index(kind, qtype, rcode)].load(Ordering::Relaxed);
                    if n > 0 {
                        out.push((kind, qtype, rcode, n));
                    }
                }
            }
        }
        out
    }
}
