//! wicket's default policy, as a WebAssembly component.
//!
//! It keeps `tickets.spare` free tickets, plus one per waiting user, on ready
//! or starting pods; gives each new ticket to the fullest ready pod, so the
//! others go idle; and deletes autoscaled pods idle for the cooldown while
//! the spare stays covered. The decisions are in [`logic`]; this file only
//! exports them, through the Rust SDK, as a `wicket:policy@0.2.0` component.

pub mod logic;

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

wicket_policy_sdk::export!(SpareTickets);
