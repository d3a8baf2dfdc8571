//! Local PostgreSQL clusters made from the installed binaries: a primary and streaming
//! replicas, each on its own loopback address, torn down on drop. Used by `lagdns demo`,
//! the integration tests and the benchmarks.
