//! The one writer: folds observations into cluster state, builds a new snapshot and
//! swaps it in atomically. Readers load the current snapshot and never wait.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::snapshot::Snapshot;

/// The current snapshot, shared by the publisher (writer) and every reader.
pub struct Published {
    current: ArcSwap<Snapshot>,
    changes: watch::Sender<Arc<Snapshot>>,
}

impl Published {
    pub fn new(initial: Snapshot) -> Arc<Published> {
        let initial = Arc::new(initial);
        let (changes, _) = watch::channel(initial.clone());
        Arc::new(Published { current: ArcSwap::new(initial), changes })
    }

    /// The current snapshot (one atomic load; never blocks).
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Publishes a new snapshot to readers and subscribers.
    pub fn store(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        self.changes.send_replace(snapshot);
    }

    /// A receiver woken on each new snapshot (for state derived from it, e.g. DNS zones).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.changes.subscribe()
    }
}
