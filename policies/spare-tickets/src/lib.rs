//! wicket's default policy, as a WebAssembly component.
//!
//! It keeps `tickets.spare` free tickets, plus one per waiting user, on ready
//! or starting pods; gives each new ticket to the fullest ready pod, so the
//! others go idle; and deletes autoscaled pods idle for the cooldown while
//! the spare stays covered. The decisions are in [`logic`]; this file only
//! exports them, through the Rust SDK, as a `wicket:policy@0.2.0` component.
//!
//! Feature `contract-0-1` builds the same decisions as a 0.1.0 component
//! instead (see `contract_0_1.rs`), for hosts that do not speak 0.2 yet.

pub mod logic;

#[cfg(all(feature = "contract-0-1", target_family = "wasm"))]
mod contract_0_1;

use wicket_policy_sdk::{Policy, ScaleDecision, Snapshot};

/// The default policy.
pub struct SpareTickets;

impl Policy for SpareTickets {
    fn assign(snapshot: &Snapshot) -> Option<u32> {
        logic::assign(snapshot)
    }

    fn scale(snapshot: &Snapshot) -> ScaleDecision {
        logic::scale(snapshot)
    }
}

#[cfg(not(feature = "contract-0-1"))]
wicket_policy_sdk::export!(SpareTickets);
