//! The store: the published generation, one immutable value swapped in atomically. A
//! generation is a snapshot together with what the front ends derive from it (DNS's
//! wire form), built in one step by the publisher, so DNS and HTTP always read the same
//! generation. Readers load it once and never wait.
//!
//! The store is generic over the derived part and is handed the function that builds it
//! (from `cmd::serve`), so neither it nor the publisher names `dns`.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::snapshot::Snapshot;

/// One published generation.
pub struct Generation<D> {
    pub snapshot: Arc<Snapshot>,
    /// Derived from `snapshot` when it was published.
    pub derived: D,
}

/// Builds the derived part of a generation from its snapshot and the previous derived
/// part (to reuse what did not change).
pub type Derive<D> = Box<dyn Fn(&Snapshot, Option<&D>) -> D + Send + Sync>;

/// The current generation, shared by the publisher (the one writer) and every reader.
pub struct Store<D> {
    current: ArcSwap<Generation<D>>,
    derive: Derive<D>,
}

impl<D: Send + Sync + 'static> Store<D> {
    pub fn new(
        initial: Snapshot,
        derive: impl Fn(&Snapshot, Option<&D>) -> D + Send + Sync + 'static,
    ) -> Arc<Store<D>> {
        let derived = derive(&initial, None);
        let first = Generation { snapshot: Arc::new(initial), derived };
        Arc::new(Store { current: ArcSwap::from_pointee(first), derive: Box::new(derive) })
    }

    /// The current generation (one atomic load; never blocks).
    pub fn load(&self) -> Arc<Generation<D>> {
        self.current.load_full()
    }

    /// The current generation for the moment of one query: no reference count is
    /// taken (arc-swap's per-thread debt slots), so the UDP workers do not contend on
    /// one counter; not to be kept.
    pub fn peek(&self) -> arc_swap::Guard<Arc<Generation<D>>> {
        self.current.load()
    }

    /// Derives what the front ends need of `snapshot` and swaps both in as one value.
    /// Only the publisher calls this.
    pub fn publish(&self, snapshot: Snapshot) {
        let derived = (self.derive)(&snapshot, Some(&self.current.load().derived));
        self.current.store(Arc::new(Generation { snapshot: Arc::new(snapshot), derived }));
    }
}

/// The snapshot side of a store, for readers that need nothing derived (HTTP).
pub trait Snapshots: Send + Sync {
    /// The current snapshot (one atomic load; never blocks).
    fn snapshot(&self) -> Arc<Snapshot>;
}

impl<D: Send + Sync + 'static> Snapshots for Store<D> {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load().snapshot.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fixture;

    #[test]
    fn a_generation_is_derived_from_its_own_snapshot_with_the_previous_derived_part() {
        // derived = (serial, serial of the previous derived part)
        let store = Store::new(fixture::snapshot(), |s: &Snapshot, prev: Option<&(u32, Option<u32>)>| {
            (s.serial, prev.map(|p| p.0))
        });
        assert_eq!(store.load().derived, (7, None));
        let mut next = fixture::snapshot();
        next.serial = 8;
        store.publish(next);
        let g = store.load();
        assert_eq!((g.snapshot.serial, g.derived), (8, (8, Some(7))));
        assert_eq!(store.snapshot().serial, 8);
    }
}
