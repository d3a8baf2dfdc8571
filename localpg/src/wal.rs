//! The WAL positions and timelines a node reports. Its own small types: this crate cannot
//! use `lagdns::wal`, since lagdns depends on it. PostgreSQL hands them over as numbers
//! (`lsn - '0/0'`), so nothing here parses PostgreSQL's `X/Y` text.

use std::fmt;

/// A log sequence number (a byte position in the WAL), printed `X/Y` in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// A WAL timeline number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeline(pub u32);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
