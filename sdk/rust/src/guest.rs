//! The component glue: wit-bindgen's bindings for `wit/policy.wit`
//! (`wicket:policy@0.2.0`) and the adapter between them and [`Policy`].
//! Authors never see this module: `export!` uses it.

use std::marker::PhantomData;

use crate::{Arrivals, Clock, Observed, Policy, Settings, Snapshot, Totals};

/// wit-bindgen's output for the contract. Its export macro is public so
/// that [`export!`](crate::export!) can expand it in the policy's crate,
/// where the component's exports must be defined.
#[allow(unsafe_code, reason = "wit-bindgen's generated ABI glue")]
#[allow(missing_docs, reason = "generated from the documented WIT")]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_wicket_policy_0_2",
    });
}

use bindings::exports::wicket::policy::decide::Guest;
use bindings::wicket::policy::types as wit;

/// Implements the contract's `decide` interface for any [`Policy`].
/// (A generic type here, not in the author's crate, because the author's
/// crate may not implement the SDK's trait for the SDK's type.)
pub struct Adapter<P>(PhantomData<P>);

impl<P: Policy> Guest for Adapter<P> {
    fn assign(snapshot: wit::Snapshot) -> Option<u32> {
        P::assign(&snapshot.into())
    }

    fn scale(snapshot: wit::Snapshot) -> wit::ScaleDecision {
        let crate::ScaleDecision { create, delete } = P::scale(&snapshot.into());
        wit::ScaleDecision { create, delete }
    }
}

/// Moves the lifted buffers (pods, arrivals, config) into the SDK's
/// snapshot: no copy.
impl From<wit::Snapshot> for Snapshot {
    fn from(s: wit::Snapshot) -> Self {
        Self {
            settings: Settings {
                tickets_max: s.settings.tickets_max,
                tickets_spare: s.settings.tickets_spare,
                pods_max: s.settings.pods_max,
                cooldown_seconds: s.settings.cooldown_seconds,
                config: s.settings.config,
            },
            clock: Clock {
                unix_seconds: s.clock.unix_seconds,
                utc_offset_seconds: s.clock.utc_offset_seconds,
            },
            pod_words: s.pod_words,
            pods: s.pods,
            totals: Totals {
                ready_pods: s.totals.ready_pods,
                starting_pods: s.totals.starting_pods,
                draining_pods: s.totals.draining_pods,
                autoscaled_pods: s.totals.autoscaled_pods,
                tickets_in_use: s.totals.tickets_in_use,
                free_tickets: s.totals.free_tickets,
                starting_tickets: s.totals.starting_tickets,
            },
            waiting: s.waiting,
            arrivals: Arrivals {
                per_minute: s.arrivals.per_minute,
                per_hour: s.arrivals.per_hour,
            },
            observed: Observed {
                startup_median_ms: s.observed.startup_median_ms,
                startup_p90_ms: s.observed.startup_p90_ms,
                session_median_seconds: s.observed.session_median_seconds,
                session_p90_seconds: s.observed.session_p90_seconds,
                longest_wait_ms: s.observed.longest_wait_ms,
            },
        }
    }
}

/// Writes a line to the host's log (the contract's `host.log`).
#[cfg(target_family = "wasm")]
pub(crate) fn log(level: crate::log::Level, message: &str) {
    let level = match level {
        crate::log::Level::Debug => wit::LogLevel::Debug,
        crate::log::Level::Info => wit::LogLevel::Info,
        crate::log::Level::Warn => wit::LogLevel::Warn,
    };
    bindings::wicket::policy::host::log(level, message);
}
