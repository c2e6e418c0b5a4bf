//! __NAME__: a wicket scaling policy (wicket:policy@0.2.0).
//!
//! It keeps `tickets.spare` free tickets plus one per waiting user, gives
//! each new ticket to the fullest ready pod (the SDK's default `assign`), and
//! deletes autoscaled pods idle for the cooldown that the spare does not
//! need. Change `scale` (and `assign`, if you like) to make it yours; the
//! SDK's documentation lists what a snapshot holds:
//! `cargo doc --open -p wicket-policy-sdk`.

use wicket_policy_sdk::{Policy, ScaleDecision, Snapshot};

/// The policy.
pub struct MyPolicy;

impl Policy for MyPolicy {
    fn scale(s: &Snapshot) -> ScaleDecision {
        let settings = s.settings();
        let needed = u64::from(settings.tickets_spare) + u64::from(s.waiting());
        let free = u64::from(s.free_slots());
        let coming = u64::from(s.totals().starting_tickets);
        if needed > free + coming {
            return ScaleDecision::create(s.pods_to_cover(needed - free - coming));
        }
        // Delete idle pods, most idle first, while the rest still cover what
        // is needed.
        let mut left = free;
        let mut delete = Vec::new();
        for pod in s.deletable_idle_pods(settings.cooldown_seconds) {
            if left >= needed + u64::from(pod.capacity) {
                left -= u64::from(pod.capacity);
                delete.push(pod.id);
            }
        }
        ScaleDecision::delete(delete)
    }
}

wicket_policy_sdk::export!(MyPolicy);

#[cfg(test)]
mod tests {
    use wicket_policy_sdk::{Pod, Policy, ScaleDecision, Snapshot};

    use super::MyPolicy;

    #[test]
    fn a_full_app_with_a_waiting_user_gets_pods_for_the_user_and_the_spare() {
        let s = Snapshot::builder()
            .tickets_max(1)
            .tickets_spare(1)
            .pods_max(5)
            .pod(Pod::ready(1).tickets(1))
            .waiting(1)
            .build();
        assert_eq!(MyPolicy::assign(&s), None, "no free slot: the user waits");
        assert_eq!(MyPolicy::scale(&s), ScaleDecision::create(2));
    }

    #[test]
    fn idle_pods_beyond_the_spare_go_after_the_cooldown() {
        let s = Snapshot::builder()
            .tickets_spare(1)
            .pods_max(5)
            .cooldown_seconds(60)
            .pod(Pod::ready(1).tickets(1))
            .pod(Pod::ready(2).idle(30))
            .pod(Pod::ready(3).idle(90))
            .pod(Pod::ready(4).idle(120))
            .build();
        assert_eq!(MyPolicy::assign(&s), Some(2), "ties go to the earlier pod");
        // Three free tickets, one needed: pods 4 and 3 go, most idle first.
        assert_eq!(MyPolicy::scale(&s), ScaleDecision::delete([4, 3]));
    }
}
