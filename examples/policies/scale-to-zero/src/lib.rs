//! Scale to zero: an app with no pods until someone asks for one.
//!
//! - While nobody waits and nobody holds a ticket, the app has no pods.
//! - A user who arrives waits in the queue (the waiting page says a new
//!   instance is starting); `scale` creates pods for the waiting users, and
//!   the host admits each one when a pod is ready.
//! - A pod that has held no ticket for `idle_seconds` is deleted, so the app
//!   returns to zero pods.
//!
//! Config (`wicket.dev/policy-config`, `key=value` items):
//! - `idle_seconds=N`: how long a pod must be idle before it goes (default:
//!   the app's `pods.cooldown`).
//! - `spare=N`: free tickets to keep while at least one user holds a ticket,
//!   so the next user of a busy app need not wait (default 0). The app's
//!   `tickets.spare` is not used: it would keep pods when nobody is there.
//!
//! Values that do not read as whole numbers are ignored (the default
//! applies): a policy must not fail on its config.
//!
//! The app's Deployment has `replicas: 0`; `pods.max` must be at least 1.

use wicket_policy_sdk::{Policy, ScaleDecision, Snapshot};

/// The policy. `assign` is the SDK's default: the fullest ready pod.
pub struct ScaleToZero;

/// The policy's parameters, read from `settings.config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Seconds a pod must hold no ticket before it is deleted.
    pub idle_seconds: u32,
    /// Free tickets to keep while the app is in use.
    pub spare: u32,
}

impl Config {
    /// The config of `snapshot`, defaults where a key is missing or unreadable.
    pub fn of(snapshot: &Snapshot) -> Self {
        let settings = snapshot.settings();
        let number = |key| {
            settings
                .config_value(key)
                .and_then(|value| value.parse::<u32>().ok())
        };
        Self {
            idle_seconds: number("idle_seconds").unwrap_or(settings.cooldown_seconds),
            spare: number("spare").unwrap_or(0),
        }
    }
}

impl Policy for ScaleToZero {
    fn scale(s: &Snapshot) -> ScaleDecision {
        let config = Config::of(s);
        let totals = s.totals();
        let spare = if totals.tickets_in_use > 0 {
            config.spare
        } else {
            0
        };
        let needed = u64::from(s.waiting()) + u64::from(spare);
        // Pods still starting will bring their tickets: no second pod for
        // the same waiting user.
        let available = u64::from(totals.free_tickets) + u64::from(totals.starting_tickets);
        if needed > available {
            return ScaleDecision::create(s.pods_to_cover(needed - available));
        }
        // Idle pods go while the free tickets left still cover what is
        // needed; with nobody there that is every idle pod.
        let mut free = u64::from(totals.free_tickets);
        let mut delete = Vec::new();
        for pod in s.deletable_idle_pods(config.idle_seconds) {
            if let Some(left) = free.checked_sub(u64::from(pod.capacity))
                && left >= needed
            {
                free = left;
                delete.push(pod.id);
            }
        }
        ScaleDecision::delete(delete)
    }
}

wicket_policy_sdk::export!(ScaleToZero);
