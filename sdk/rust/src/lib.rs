//! Write [wicket](https://github.com/) ticket and scaling policies in Rust.
//!
//! A wicket policy is a WebAssembly component that the host calls with a
//! snapshot of one app — its settings, the time, its pods, the users waiting,
//! recent arrivals, observed start-up and session times — and that answers
//! two questions: which pod gets the next ticket (`assign`), and which pods
//! to create or delete now (`scale`). The contract is
//! `wicket:policy@0.2.0` (`wit/policy.wit`); this crate hides it:
//!
//! - [`Snapshot`] is a typed view of the host's snapshot. Pods are decoded
//!   from the host's packed bytes as you iterate ([`Snapshot::pods`],
//!   [`Snapshot::ready`], [`Snapshot::idle`]…), nothing is copied.
//! - [`Policy`] is the trait you implement; [`export!`] makes it the
//!   component's export. No wit-bindgen in your code.
//! - [`Snapshot::builder`] makes the same snapshot from plain values, so a
//!   policy is tested natively with `cargo test`, no host needed.
//!
//! # A worked example
//!
//! A policy that keeps one free ticket per waiting user plus the spare, packs
//! users onto the fullest pod, and deletes pods idle for twice the cooldown
//! (the `config` string can change the factor: `idle_factor=3`):
//!
//! ```
//! use wicket_policy_sdk::{Policy, ScaleDecision, Snapshot};
//!
//! pub struct Patient;
//!
//! impl Policy for Patient {
//!     // `assign` has a default: the fullest ready pod with a free slot.
//!
//!     fn scale(s: &Snapshot) -> ScaleDecision {
//!         let needed = u64::from(s.settings().tickets_spare) + u64::from(s.waiting());
//!         let have = u64::from(s.free_slots()) + u64::from(s.totals().starting_tickets);
//!         if needed > have {
//!             return ScaleDecision::create(s.pods_to_cover(needed - have));
//!         }
//!         let factor: u32 = s
//!             .settings()
//!             .config_value("idle_factor")
//!             .and_then(|v| v.parse().ok())
//!             .unwrap_or(2);
//!         let cooldown = s.settings().cooldown_seconds.saturating_mul(factor);
//!         let mut spare = have - needed;
//!         let mut delete = Vec::new();
//!         for pod in s.deletable_idle_pods(cooldown) {
//!             if let Some(left) = spare.checked_sub(u64::from(pod.capacity)) {
//!                 spare = left;
//!                 delete.push(pod.id);
//!             }
//!         }
//!         ScaleDecision::delete(delete)
//!     }
//! }
//!
//! // In the policy's crate (a `cdylib`), this one line makes the component:
//! // wicket_policy_sdk::export!(Patient);
//!
//! // And a native test:
//! use wicket_policy_sdk::Pod;
//! let s = Snapshot::builder()
//!     .tickets_max(2)
//!     .tickets_spare(1)
//!     .pods_max(4)
//!     .cooldown_seconds(10)
//!     .pod(Pod::ready(1).capacity(2).tickets(1))
//!     .pod(Pod::ready(2).capacity(2).idle(15))
//!     .pod(Pod::ready(3).capacity(2).idle(25))
//!     .build();
//! assert_eq!(Patient::assign(&s), Some(1));
//! // Three free tickets, one needed: pod 3 (idle 25 s ≥ 20 s) goes, pod 2 is
//! // not idle long enough.
//! assert_eq!(Patient::scale(&s), ScaleDecision::delete([3]));
//! ```
//!
//! The crate's `Cargo.toml` needs `crate-type = ["cdylib", "rlib"]` (the
//! `rlib` for native tests) and builds with
//! `cargo build --target wasm32-wasip2 --release`; the component is
//! `target/wasm32-wasip2/release/<crate>.wasm`. `wicket policy new NAME
//! --lang rust` writes such a project.
//!
//! # Rules a policy must keep
//!
//! The host checks every answer; an answer that breaks a rule is a *fault*
//! (the host answers from the last good policy instead and retires this one):
//!
//! - `assign` names a ready pod with a free slot ([`Pod::can_take_ticket`]),
//!   or `None` (the user waits).
//! - `scale` creates no more than `pods_max` autoscaled pods in all, and
//!   deletes only pods that [`Pod::is_deletable`].
//! - The same snapshot gives the same answer: read the time from
//!   [`Snapshot::clock`], keep no state between calls, draw no random
//!   numbers. That is what makes `wicket policy test` and `wicket simulate`
//!   meaningful.
//! - Never panic: a panic is a trap, and a trap is a fault. Read the config
//!   string leniently.
//! - Calls run under a deadline and a memory cap (10 ms and 16 MiB by
//!   default): one pass over the pods is cheap, sorting them all each call is
//!   still fine at 1,000 pods, anything quadratic is not.

mod builder;
mod decision;
#[cfg(feature = "export")]
#[doc(hidden)]
pub mod guest;
pub mod log;
mod pod;
mod snapshot;

pub use builder::{ARRIVAL_HOURS, ARRIVAL_MINUTES, SnapshotBuilder};
pub use decision::ScaleDecision;
pub use pod::{KNOWN_POD_WORDS, Phase, Pod, Pods};
pub use snapshot::{Arrivals, Clock, Observed, Settings, Snapshot, Totals, Weekday, pods_to_cover};

/// A ticket and scaling policy. Implement it on a unit struct and export it
/// with [`export!`].
///
/// Both functions are pure: the same snapshot must give the same answer.
pub trait Policy {
    /// Which pod gets the next ticket: the id of a ready pod with a free
    /// slot, or `None` (the user waits in the queue).
    ///
    /// The default gives it to the fullest ready pod with a free slot (ties:
    /// the earlier pod), as wicket's default policy does: packing users
    /// together lets the other pods go idle.
    fn assign(snapshot: &Snapshot) -> Option<u32> {
        snapshot.fullest_ready_pod().map(|pod| pod.id)
    }

    /// Which pods to create and delete now. Called after tickets are issued
    /// or freed, when pods change, and periodically (every 250 ms at most).
    fn scale(snapshot: &Snapshot) -> ScaleDecision;
}

/// Makes a [`Policy`] the component's export: `wicket_policy_sdk::export!(MyPolicy);`
/// once, at the top level of the policy's crate.
///
/// It expands to the contract's exports only when building for WebAssembly
/// (native linkers reject their names), so the same crate also builds
/// natively for `cargo test`.
#[cfg(feature = "export")]
#[macro_export]
macro_rules! export {
    ($policy:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            // wit-bindgen's export macro takes an identifier, not a path.
            type WicketPolicyAdapter = $crate::guest::Adapter<$policy>;
            $crate::guest::bindings::__export_wicket_policy_0_2!(
                WicketPolicyAdapter with_types_in $crate::guest::bindings
            );
        };
    };
}
