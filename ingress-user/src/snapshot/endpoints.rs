//! The endpoints of one Service port, shared by every HTTP Backend that names it.
//!
//! EndpointSlices change far more often than routes (rollouts, autoscaling, readiness
//! flaps). Backends hold this cell rather than the addresses, so the control plane applies
//! an endpoint change with one atomic store: no route table is rebuilt and the next request
//! already sees it. Everything else in a Snapshot stays immutable.

use std::{fmt, net::SocketAddr, sync::Arc};

use arc_swap::{ArcSwap, Guard};

/// A shared, atomically replaced set of endpoint addresses (sorted, deduplicated).
#[derive(Clone, Default)]
pub struct Endpoints(Arc<ArcSwap<Vec<SocketAddr>>>);

impl Endpoints {
    /// A cell holding `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(addrs)))
    }

    /// The addresses in force; cheap (no lock, no reference count in the common case).
    pub fn load(&self) -> Guard<Arc<Vec<SocketAddr>>> {
        self.0.load()
    }

    /// A copy of the addresses in force.
    pub fn to_vec(&self) -> Vec<SocketAddr> {
        self.0.load().to_vec()
    }

    /// Whether there are no addresses now.
    pub fn is_empty(&self) -> bool {
        self.0.load().is_empty()
    }

    /// Replaces the addresses; `false` (and no store) when they are the same.
    pub fn set(&self, addrs: Vec<SocketAddr>) -> bool {
        if **self.0.load() == addrs {
            return false;
        }
        self.0.store(Arc::new(addrs));
        true
    }

    /// An identity of the cell (not of its contents), stable while any Backend holds it:
    /// the key of per-backend state such as round-robin cursors.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Whether this handle is the only one left (no Backend holds the cell).
    pub fn is_unshared(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }

    /// Whether `other` is the same cell.
    pub fn same_cell(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Two cells are equal when they hold the same addresses now.
impl PartialEq for Endpoints {
    fn eq(&self, other: &Self) -> bool {
        self.same_cell(other) || **self.0.load() == **other.0.load()
    }
}

impl Eq for Endpoints {}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.load().iter()).finish()
    }
}

impl FromIterator<SocketAddr> for Endpoints {
    fn from_iter<I: IntoIterator<Item = SocketAddr>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

impl From<Vec<SocketAddr>> for Endpoints {
    fn from(addrs: Vec<SocketAddr>) -> Self {
        Self::new(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_seen_through_every_clone_and_an_equal_set_is_not_stored() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let cell = Endpoints::new(vec![a]);
        let held = cell.clone();
        let before = Arc::as_ptr(&held.load());
        assert!(!cell.set(vec![a]), "same addresses: no store");
        assert_eq!(Arc::as_ptr(&held.load()), before);
        assert!(cell.set(vec![a, b]));
        assert_eq!(held.to_vec(), vec![a, b]);
        assert_eq!(held.id(), cell.id());
        assert_eq!(Endpoints::new(vec![a, b]), held, "equal by contents");
        assert_ne!(Endpoints::new(vec![b]), held);
    }
}
