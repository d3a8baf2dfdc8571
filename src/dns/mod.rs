//! DNS: the vocabulary of a query and its counters (`query`), query-name parsing
//! (`name`), the SPEC §5 answer table (`answer`), the TXT text (`txt`), the wire form
//! derived from each published snapshot (`records`), and the hickory-server adapter
//! (`server`).

pub mod answer;
pub mod name;
pub mod query;
pub mod records;
pub mod server;
pub mod txt;

pub use server::DnsServer;

#[cfg(test)]
mod testdata;
