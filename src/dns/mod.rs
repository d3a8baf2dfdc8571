//! DNS: the vocabulary of a query and its counters (`query`), query-name parsing
//! (`name`), the SPEC §5 and §9 answer tables (`answer`), the TXT text (`txt`), the wire form
//! derived from each published snapshot (`records`, with `fast` the precomputed
//! responses of the fast path), the answer path from message to response (`respond`,
//! with `wire` the encoder and `rrl` the rate limiter), the
//! edge's counters (`edge`), holding queries until the first probe round (`hold`),
//! and the sockets (`udp` with `mmsg` its batched IO, `tcp`, bound by `server`).

pub mod answer;
pub mod ecs;
pub mod edge;
pub mod fast;
pub mod hold;
#[cfg(target_os = "linux")]
pub mod mmsg;
pub mod name;
pub mod query;
pub mod records;
pub mod respond;
pub mod rrl;
pub mod server;
pub mod tcp;
pub mod txt;
pub mod udp;
pub mod wire;

pub use server::DnsServer;

#[cfg(test)]
mod testdata;
