//! The same decisions exported as a `wicket:policy@0.1.0` component, for a
//! host that does not speak 0.2 yet (feature `contract-0-1`; host/build.rs
//! embeds this build until the host's 0.2 support lands, then drops the
//! feature). Transitional: each call re-packs the 0.1 snapshot's six words
//! per pod into the SDK's 0.2 snapshot (`Snapshot::from_0_1`: one copy of
//! the pods) and leaves the fields 0.1 lacks (clock, arrivals, observed,
//! ages) at zero, which these decisions do not read.

use bindings::exports::wicket::policy::decide::Guest;
use bindings::wicket::policy::types::{ScaleDecision, Snapshot};
use wicket_policy_sdk::{Policy, Settings};

use crate::SpareTickets;

#[allow(unsafe_code, reason = "wit-bindgen's generated ABI glue")]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit/v0.1", world: "policy" });
    use super::Contract01;
    export!(Contract01);
}

/// Implements the 0.1 `decide` interface.
struct Contract01;

impl Guest for Contract01 {
    fn assign(snapshot: Snapshot) -> Option<u32> {
        SpareTickets::assign(&to_0_2(snapshot))
    }

    fn scale(snapshot: Snapshot) -> ScaleDecision {
        let wicket_policy_sdk::ScaleDecision { create, delete } =
            SpareTickets::scale(&to_0_2(snapshot));
        ScaleDecision { create, delete }
    }
}

/// The 0.1 snapshot as the SDK's.
fn to_0_2(snapshot: Snapshot) -> wicket_policy_sdk::Snapshot {
    let settings = snapshot.settings;
    wicket_policy_sdk::Snapshot::from_0_1(
        Settings {
            tickets_max: settings.tickets_max,
            tickets_spare: settings.tickets_spare,
            pods_max: settings.pods_max,
            cooldown_seconds: settings.cooldown_seconds,
            config: settings.config,
        },
        &snapshot.pods,
        snapshot.waiting,
    )
}
