//! Whether this replica is the one that scales. Several replicas serve the
//! same apps; exactly one of them, the leader, asks the policy to scale and
//! creates and deletes pods (elected in Kubernetes by
//! [`crate::kube::leader`]). A host alone (demo mode, `leader_election =
//! false`) is its own leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shared flag, cheap to clone and to read (once per scaling round).
#[derive(Debug, Clone)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    /// A host that always scales: it runs alone.
    pub fn alone() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    /// A replica that does not scale until it is elected.
    pub fn follower() -> Self {
        Self(Arc::new(AtomicBool::new(false)))
    }

    /// Does this replica scale now.
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Sets the flag; returns whether it changed.
    pub fn set(&self, leader: bool) -> bool {
        self.0.swap(leader, Ordering::AcqRel) != leader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_changes_are_reported_once() {
        let a = Leadership::follower();
        let b = a.clone();
        assert!(!b.is_leader());
        assert!(a.set(true), "a change");
        assert!(b.is_leader());
        assert!(!a.set(true), "no change");
        assert!(b.set(false));
        assert!(!a.is_leader());
        assert!(Leadership::alone().is_leader());
    }
}
