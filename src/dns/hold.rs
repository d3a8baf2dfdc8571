//! Holding queries until the first probe round has finished (SPEC §3): until then an
//! endpoint name has no answer, and a SERVFAIL would be cached by resolvers for
//! seconds, so such a query is kept until the round completes, at most `probe.timeout`
//! from the server's start, and then answered (SERVFAIL only if the round is still
//! unfinished). At most [`MAX_HELD`] queries are held at once; past that they are
//! answered at once. Once the round has finished (readiness is sticky) or the time is
//! up, nothing is held again and the check costs one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::Config;
use crate::dns::records::Zone;
use crate::store::Store;

/// Queries held at most at once.
pub const MAX_HELD: usize = 4096;
/// How often a held query looks whether the round has finished.
const POLL: Duration = Duration::from_millis(5);

pub struct Hold {
    started: Instant,
    over: AtomicBool,
    slots: Arc<Semaphore>,
}

impl Hold {
    /// Holding starts now (the server's start).
    pub fn new() -> Hold {
        Hold { started: Instant::now(), over: AtomicBool::new(false), slots: Arc::new(Semaphore::new(MAX_HELD)) }
    }

    /// Whether a query arriving now may still be held.
    pub fn may_hold(&self, store: &Store<Zone>) -> bool {
        if self.over.load(Ordering::Relaxed) {
            return false;
        }
        let generation = store.load();
        let open = !generation.snapshot.ready && Instant::now() < self.deadline(&generation.snapshot.config);
        if !open {
            self.over.store(true, Ordering::Relaxed);
        }
        open
    }

    /// A place for one more held query, if there is one.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Waits until the first round has finished or the time is up.
    pub async fn wait(&self, store: &Store<Zone>) {
        let deadline = self.deadline(&store.load().snapshot.config);
        while !store.load().snapshot.ready && Instant::now() < deadline {
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    fn deadline(&self, config: &Config) -> Instant {
        self.started + config.probe.timeout
    }
}

impl Default for Hold {
    fn default() -> Self {
        Hold::new()
    }
}
