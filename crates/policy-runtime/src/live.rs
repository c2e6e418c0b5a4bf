//! A running policy instance: one store, reused call after call, and the
//! guest-snapshot buffer of the contract version it speaks.

use std::sync::Arc;

use wasmtime::{Store, Trap};

use super::bindings::{Contract, v01, v02};
use super::engine::HostState;
use wicket_state::{ScaleDecision, Snapshot};

/// A policy call that did not return an answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// Ran past its deadline.
    #[error("ran past its deadline")]
    Timeout,
    /// Wanted more memory than allowed (the cap, in MiB).
    #[error("exceeded its memory limit of {0} MiB")]
    OutOfMemory(usize),
    /// Trapped (panic, unreachable, bad memory access, …).
    #[error("trapped: {0}")]
    Trap(String),
    /// Could not be instantiated.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl CallError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::OutOfMemory(_) => "memory",
            CallError::Trap(_) => "trap",
            CallError::Instantiate(_) => "instantiate",
        }
    }
}

/// The linear memory (bytes) past which an instance that started with
/// `start` bytes under a cap of `cap` bytes is replaced by a fresh one: half
/// its headroom, so that the other half is left for the call that crosses it.
pub fn renewal_point(start: usize, cap: usize) -> usize {
    start + cap.saturating_sub(start) / 2
}

/// The exports of an instance, by contract version, with the snapshot
/// buffer of that version (refilled for every call).
pub(super) enum Bindings {
    /// Speaks 0.1 (through the adapter).
    V0_1(v01::Policy, Box<v01::Snapshot>),
    /// Speaks 0.2.
    V0_2(v02::Policy, Box<v02::Snapshot>),
}

/// An instantiated policy. After any error it is poisoned and must be dropped.
pub struct Live {
    store: Store<HostState>,
    bindings: Bindings,
    /// Linear memory right after instantiation, in bytes.
    start_memory: usize,
}

impl Live {
    pub(super) fn new(store: Store<HostState>, bindings: Bindings) -> Self {
        let start_memory = store.data().peak_memory;
        Self {
            store,
            bindings,
            start_memory,
        }
    }

    /// Has the instance's linear memory grown past half the headroom it had
    /// under its cap when it started? Linear memory never shrinks, and some
    /// guests grow it a little on every call for good (a componentize-py
    /// component: ~25 bytes a call, measured, so 16 MiB are gone in days).
    /// A policy is a pure function of its snapshot, so the runner replaces
    /// such an instance with a fresh one before the cap turns it into a
    /// fault.
    pub fn worn_out(&self) -> bool {
        self.peak_memory() > renewal_point(self.start_memory, self.store.data().memory_cap())
    }

    /// Linear memory right after instantiation, in bytes.
    pub fn start_memory(&self) -> usize {
        self.start_memory
    }

    /// The contract version the instance speaks.
    pub fn contract(&self) -> Contract {
        match self.bindings {
            Bindings::V0_1(..) => Contract::V0_1,
            Bindings::V0_2(..) => Contract::V0_2,
        }
    }

    /// The most linear memory the instance has asked for so far, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.store.data().peak_memory
    }

    fn prepare(&mut self, ticks: u64) {
        self.store.set_epoch_deadline(ticks);
        let data = self.store.data_mut();
        data.memory_denied = false;
        data.log.reset();
    }

    fn classify(&self, e: wasmtime::Error) -> CallError {
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            CallError::Timeout
        } else if self.store.data().memory_denied {
            CallError::OutOfMemory(self.store.data().memory_cap() >> 20)
        } else {
            CallError::Trap(format!("{e:#}"))
        }
    }

    fn ticks(&self) -> u64 {
        // The deadline is relative to the current epoch when set.
        self.store.data().deadline_ticks
    }

    /// Calls `assign` on `snap`, given in the instance's contract version.
    pub fn assign(&mut self, snap: &Snapshot) -> Result<Option<u32>, CallError> {
        self.prepare(self.ticks());
        let ticker = Arc::clone(&self.store.data().ticker);
        let _running = ticker.running();
        let r = match &mut self.bindings {
            Bindings::V0_1(b, buf) => {
                buf.fill_from(snap);
                b.wicket_policy_decide().call_assign(&mut self.store, buf)
            }
            Bindings::V0_2(b, buf) => {
                buf.fill_from(snap);
                b.wicket_policy_decide().call_assign(&mut self.store, buf)
            }
        };
        r.map_err(|e| self.classify(e))
    }

    /// Calls `scale` on `snap`, given in the instance's contract version.
    pub fn scale(&mut self, snap: &Snapshot) -> Result<ScaleDecision, CallError> {
        self.prepare(self.ticks());
        let ticker = Arc::clone(&self.store.data().ticker);
        let _running = ticker.running();
        let r = match &mut self.bindings {
            Bindings::V0_1(b, buf) => {
                buf.fill_from(snap);
                b.wicket_policy_decide()
                    .call_scale(&mut self.store, buf)
                    .map(Into::into)
            }
            Bindings::V0_2(b, buf) => {
                buf.fill_from(snap);
                b.wicket_policy_decide()
                    .call_scale(&mut self.store, buf)
                    .map(Into::into)
            }
        };
        r.map_err(|e| self.classify(e))
    }
}

#[cfg(test)]
mod tests {
    use super::renewal_point;

    #[test]
    fn an_instance_is_renewed_halfway_through_its_headroom() {
        const MIB: usize = 1 << 20;
        // A componentize-py component: 12.4 MiB at start of 16.
        let start = 12 * MIB + 400 * 1024;
        assert_eq!(renewal_point(start, 16 * MIB), start + 2 * MIB - 200 * 1024);
        assert_eq!(renewal_point(start, 24 * MIB), start + 6 * MIB - 200 * 1024);
        // Started at or above its cap: no headroom, renewed after any growth.
        assert_eq!(renewal_point(20 * MIB, 16 * MIB), 20 * MIB);
    }
}
