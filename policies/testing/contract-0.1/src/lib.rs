//! A frozen copy of wicket's default policy (`policies/spare-tickets`) as it
//! was built against contract `wicket:policy@0.1.0` (`wit/v0.1`), kept so
//! that a test proves a 0.1 component still loads and decides identically
//! after the default moved on. Only the WIT path differs from the original.
//!
//! The original's documentation follows.
//!
//! It keeps `tickets.spare` free tickets, plus one per waiting user, on ready
//! or starting pods; gives each new ticket to the fullest ready pod, so the
//! others go idle; and deletes autoscaled pods idle for the cooldown while
//! the spare stays covered. The decisions are in [`logic`]; this file only
//! maps the component's types onto them.
//!
//! Only WebAssembly builds have the component's exports (native linkers
//! reject their names); natively, for the tests, the crate is [`logic`].

pub mod logic;

#[cfg(target_family = "wasm")]
mod component {
    use crate::logic::{self, POD_WORDS};
    use bindings::exports::wicket::policy::decide::Guest;
    use bindings::wicket::policy::types::{ScaleDecision, Snapshot};

    #[allow(unsafe_code, reason = "wit-bindgen's generated ABI glue")]
    mod bindings {
        wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "policy" });
        use super::SpareTickets;
        export!(SpareTickets);
    }

    struct SpareTickets;

    impl Guest for SpareTickets {
        fn assign(snapshot: Snapshot) -> Option<u32> {
            logic::assign(&view(&snapshot))
        }

        fn scale(snapshot: Snapshot) -> ScaleDecision {
            let logic::ScaleDecision { create, delete } = logic::scale(&view(&snapshot));
            ScaleDecision { create, delete }
        }
    }

    /// The snapshot as [`logic`] takes it, reading the packed pod words in
    /// place (`settings.config` is not used: this policy has no parameters).
    fn view(snapshot: &Snapshot) -> logic::Snapshot<'_, [u32; POD_WORDS]> {
        let settings = &snapshot.settings;
        logic::Snapshot {
            settings: logic::Settings {
                tickets_max: settings.tickets_max,
                tickets_spare: settings.tickets_spare,
                pods_max: settings.pods_max,
                cooldown_seconds: settings.cooldown_seconds,
            },
            pods: snapshot.pods.as_chunks::<POD_WORDS>().0,
            waiting: snapshot.waiting,
        }
    }
}
