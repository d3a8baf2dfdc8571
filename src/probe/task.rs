//! The probe task for one node: a persistent connection, one query per tick, an
//! [`Observation`](super::Observation) sent for every tick, reconnect with backoff.
