//! lagdns: authoritative DNS for PostgreSQL primaries and lag-aware read replicas.
//!
//! Data flows one way:
//!
//! ```text
//!  Config ──(SIGHUP: parse + validate; on error keep the old one)─────────────┐
//!    │                                                                         ▼
//!  probe task per node (IO) ──Observation{node, at, Ok(Sample)|Err}──► publisher (the one writer)
//!                                    mpsc                               │ fold into ClusterState (pure:
//!                                                                       │ health, lag, topology)
//!                                                                       │ build Snapshot (pure)
//!                                                                       ▼
//!                                                  ArcSwap<Snapshot> + watch (SOA serial +1 iff an
//!                                                                       │ answer set changed)
//!                          ┌────────────────────────────────────────────┼─────────────────────┐
//!                          ▼                                            ▼                     ▼
//!            dns: Zone derived once per snapshot,           http: /status, /metrics   `lagdns status`
//!            handler loads it and answers (never waits)     render the same snapshot   reads /status
//! ```
//!
//! Decision modules (`config` validation, `wal`, `health`, `lag`, `topology`, `select`,
//! `snapshot`, `dns::name`, `dns::answer`) are plain functions over plain data. IO lives
//! in `probe::task`, `probe::supervisor`, `publisher`, `dns::server`, `http` and `cmd`.
//!
//! The throwaway local PostgreSQL cluster of `lagdns demo`, the integration tests and the
//! benchmarks is not part of this library: it is the `localpg` crate of the workspace,
//! used only as a dev-dependency and by `cmd::demo` (cargo feature `demo`, on by default;
//! `--no-default-features` builds lagdns without either).

pub mod cli;
pub mod cmd;
pub mod config;
pub mod dns;
pub mod health;
pub mod http;
pub mod lag;
pub mod metrics;
pub mod probe;
pub mod publisher;
pub mod select;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod testkit;
pub mod topology;
pub mod wal;
