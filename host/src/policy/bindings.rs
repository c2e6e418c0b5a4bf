//! Host bindings generated from `wit/policy.wit`, and conversions from the
//! host's pure snapshot types.

use crate::state;

mod generated {
    // Generated code documents itself from the WIT file's comments only
    // partially.
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/v0.1",
        world: "policy",
    });
}

pub use generated::wicket::policy::types::{LogLevel, PodPhase, ScaleDecision, Settings, Snapshot};
pub use generated::{Policy, PolicyPre, wicket};

/// Words per pod in the packed `snapshot.pods` list.
pub const POD_WORDS: usize = 6;

/// The contract version this host was built with.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The package the contract lives in.
pub const CONTRACT_PACKAGE: &str = "wicket:policy";
/// The exported interface a policy must provide.
pub const DECIDE_INTERFACE: &str = "wicket:policy/decide";

impl Snapshot {
    /// An empty snapshot whose buffers can be refilled call after call.
    pub fn empty() -> Self {
        Snapshot {
            settings: Settings {
                tickets_max: 0,
                tickets_spare: 0,
                pods_max: 0,
                cooldown_seconds: 0,
                config: String::new(),
            },
            pods: Vec::new(),
            waiting: 0,
        }
    }

    /// Refills `self` from the host's snapshot, reusing allocations.
    pub fn fill_from(&mut self, s: &state::Snapshot) {
        let set = &mut self.settings;
        set.tickets_max = s.tickets_max;
        set.tickets_spare = s.tickets_spare;
        set.pods_max = s.pods_max;
        set.cooldown_seconds = s.cooldown_seconds;
        if set.config != s.config {
            set.config.clone_from(&s.config);
        }
        self.waiting = s.waiting;
        // Packed as the contract says: 6 words per pod, copied into the
        // guest in one go.
        self.pods.clear();
        self.pods.reserve(s.pods.len() * POD_WORDS);
        for p in &s.pods {
            // The numbers of `pod-phase` in the WIT file.
            let phase: u32 = match p.phase {
                state::Phase::Starting => 0,
                state::Phase::Ready => 1,
                state::Phase::Draining => 2,
            };
            self.pods.extend_from_slice(&[
                p.id,
                p.capacity,
                p.tickets,
                phase,
                u32::from(p.autoscaled),
                p.idle_seconds,
            ]);
        }
    }
}

impl From<ScaleDecision> for state::ScaleDecision {
    fn from(d: ScaleDecision) -> Self {
        state::ScaleDecision {
            create: d.create,
            delete: d.delete,
        }
    }
}
