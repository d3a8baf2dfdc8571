//! DNS: query-name parsing (`name`), the SPEC §5 answer table (`answer`), wire records
//! derived from a snapshot (`records`), and the hickory-server adapter (`server`).

pub mod answer;
pub mod name;
pub mod query;
pub mod records;
pub mod server;
pub mod txt;

pub use server::DnsServer;

#[cfg(test)]
mod testdata;
