//! A running policy instance: one store, reused call after call.

use std::sync::Arc;

use wasmtime::{Store, Trap};

use super::bindings::{self, Policy};
use super::engine::HostState;
use crate::state::ScaleDecision;

/// A policy call that did not return an answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// Ran past its deadline.
    #[error("ran past its deadline")]
    Timeout,
    /// Wanted more memory than allowed.
    #[error("exceeded its memory limit")]
    OutOfMemory,
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
            CallError::OutOfMemory => "memory",
            CallError::Trap(_) => "trap",
            CallError::Instantiate(_) => "instantiate",
        }
    }
}

/// An instantiated policy. After any error it is poisoned and must be dropped.
pub struct Live {
    store: Store<HostState>,
    bindings: Policy,
}

impl Live {
    pub(super) fn new(store: Store<HostState>, bindings: Policy) -> Self {
        Self { store, bindings }
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
            CallError::OutOfMemory
        } else {
            CallError::Trap(format!("{e:#}"))
        }
    }

    fn ticks(&self) -> u64 {
        // The deadline is relative to the current epoch when set.
        self.store.data().deadline_ticks
    }

    /// Calls `assign`.
    pub fn assign(&mut self, snap: &bindings::Snapshot) -> Result<Option<u32>, CallError> {
        self.prepare(self.ticks());
        let ticker = Arc::clone(&self.store.data().ticker);
        let _running = ticker.running();
        let r = self
            .bindings
            .wicket_policy_decide()
            .call_assign(&mut self.store, snap);
        r.map_err(|e| self.classify(e))
    }

    /// Calls `scale`.
    pub fn scale(&mut self, snap: &bindings::Snapshot) -> Result<ScaleDecision, CallError> {
        self.prepare(self.ticks());
        let ticker = Arc::clone(&self.store.data().ticker);
        let _running = ticker.running();
        let r = self
            .bindings
            .wicket_policy_decide()
            .call_scale(&mut self.store, snap);
        r.map(Into::into).map_err(|e| self.classify(e))
    }
}
