//! The decisions of wicket's default policy, in plain Rust on the SDK's
//! [`Snapshot`].
//!
//! Nothing here knows about WebAssembly: in the component the SDK hands these
//! functions the host's snapshot, and the native tests build one with
//! [`Snapshot::builder`]. Both decisions make one pass over the pods, decoded
//! in place from the host's bytes; `scale` also sorts the idle pods it may
//! delete. `assign` never allocates and `scale` allocates only the list of
//! pods it deletes. No input can make them panic.
//!
//! The decisions depend on the pods, the settings and the waiting users only
//! (not on the host's totals, the clock or the arrivals), exactly as under
//! contract 0.1.

use wicket_policy_sdk::{Phase, Pods, ScaleDecision, Settings, Snapshot, pods_to_cover};

/// The pod that gets the next ticket, or `None` if the user must wait.
///
/// Picks the fullest ready pod with a free slot: packing users together keeps
/// the other pods idle, so they can be removed. Ties go to the earlier pod.
pub fn assign(snapshot: &Snapshot) -> Option<u32> {
    snapshot.fullest_ready_pod().map(|pod| pod.id)
}

/// The pods to create or delete so that the spare tickets and the waiting
/// users are covered (S + W) by the free tickets on ready pods plus the
/// capacity of autoscaled pods still starting.
pub fn scale(snapshot: &Snapshot) -> ScaleDecision {
    // Each pod adds less than 2^32 to these sums and a snapshot holds far
    // fewer than 2^32 pods, so they cannot overflow a u64. (The host's
    // totals would save this pass, but its `starting-tickets` also counts
    // starting replicas, which this policy has never counted as incoming.)
    let mut free = 0_u64;
    let mut incoming = 0_u64;
    let mut autoscaled = 0_u32;
    for pod in snapshot.pods() {
        match pod.phase {
            Phase::Ready => free += u64::from(pod.capacity.saturating_sub(pod.tickets)),
            Phase::Starting if pod.autoscaled => incoming += u64::from(pod.capacity),
            Phase::Starting | Phase::Draining => {}
        }
        autoscaled = autoscaled.saturating_add(u32::from(pod.autoscaled));
    }

    let settings = snapshot.settings();
    let needed = u64::from(settings.tickets_spare) + u64::from(snapshot.waiting());
    let available = free + incoming;
    if needed > available {
        ScaleDecision::create(pods_to_cover(
            needed - available,
            settings.tickets_max,
            settings.pods_max,
            autoscaled,
        ))
    } else if needed < available {
        ScaleDecision {
            create: 0,
            delete: idle_pods_to_delete(snapshot.pods(), settings, free, needed),
        }
    } else {
        ScaleDecision::none()
    }
}

/// The ids of the autoscaled, ready, empty pods idle for at least the
/// cooldown to delete, most idle first (ties in list order). Each goes if the
/// `free` tickets on ready pods still cover `needed` without it; one that
/// cannot go (a large pod) does not keep the next, smaller one.
///
/// (The SDK's `deletable_idle_pods` picks the same pods in the same order,
/// as whole pods. This sorts plain integer keys, and in the list it returns:
/// one allocation, none when no pod is idle. Sorting positions by a key read
/// from the pods, as under 0.1, costs 1.8x more at 1,000 pods here.)
fn idle_pods_to_delete(
    pods: Pods<'_>,
    settings: &Settings,
    mut free: u64,
    needed: u64,
) -> Vec<u32> {
    // Two words per candidate, compared as a pair: the idle time inverted
    // (most idle first), then the position (ties in list order). Every pair
    // is distinct, so the unstable sort, which needs no scratch memory,
    // still gives one answer.
    let mut list: Vec<u32> = Vec::new();
    for (position, pod) in (0_u32..).zip(pods.clone()) {
        if pod.autoscaled
            && pod.phase == Phase::Ready
            && pod.tickets == 0
            && pod.idle_seconds >= settings.cooldown_seconds
        {
            list.extend([!pod.idle_seconds, position]);
        }
    }
    // Compared as one u64, which sorts faster than a pair of words.
    list.as_chunks_mut::<2>()
        .0
        .sort_unstable_by_key(|&[idle, position]| u64::from(idle) << 32 | u64::from(position));

    // The ids of the pods deleted are written over the front of the list:
    // the `kept`-th id lands at or before the pair being read, so no pair is
    // overwritten before it is read.
    let mut kept = 0;
    for pair in 0..list.len() / 2 {
        let Some(pod) = list
            .get(pair * 2 + 1)
            .and_then(|&position| pods.get(position as usize))
        else {
            continue;
        };
        // Only an empty pod is a candidate, so deleting it loses its capacity.
        match free.checked_sub(u64::from(pod.capacity)) {
            Some(left) if left >= needed => {
                free = left;
                if let Some(slot) = list.get_mut(kept) {
                    *slot = pod.id;
                    kept += 1;
                }
            }
            _ => {}
        }
    }
    list.truncate(kept);
    list
}

#[cfg(test)]
mod tests {
    use wicket_policy_sdk::{Pod, SnapshotBuilder};

    use super::*;

    /// T = 2, S = 1, M = 4, C = 10.
    fn app() -> SnapshotBuilder {
        Snapshot::builder()
            .tickets_max(2)
            .tickets_spare(1)
            .pods_max(4)
            .cooldown_seconds(10)
    }

    fn pod(id: u32, tickets: u32, phase: Phase) -> Pod {
        Pod::new(id, phase)
            .capacity(2)
            .tickets(tickets)
            .idle(if tickets == 0 { 60 } else { 0 })
    }

    #[test]
    fn assign_does_not_allocate_and_scale_allocates_only_when_deleting() {
        let s = app()
            .pod(pod(1, 1, Phase::Ready))
            .pod(pod(2, 0, Phase::Starting))
            .build();
        assert_eq!(assign(&s), Some(1));
        // An empty `Vec` has no heap buffer: capacity 0.
        assert_eq!(scale(&s).delete.capacity(), 0);
    }

    #[test]
    fn pods_with_more_tickets_than_capacity_count_as_full() {
        let s = app().pod(pod(1, 5, Phase::Ready).capacity(1)).build();
        assert_eq!(assign(&s), None);
        assert_eq!(scale(&s).create, 1);
    }

    #[test]
    fn a_large_idle_pod_that_cannot_go_does_not_keep_a_smaller_one() {
        let big = pod(1, 0, Phase::Ready).capacity(10).idle(99);
        let pods = [big, pod(2, 0, Phase::Ready)];
        // Free 12, needed 1: removing the big pod would leave 2, enough.
        assert_eq!(scale(&app().pods(pods).build()).delete, [1]);
        // Needed 3: the big pod must stay, the small one can still go.
        assert_eq!(scale(&app().pods(pods).waiting(2).build()).delete, [2]);
    }

    #[test]
    fn decisions_ignore_words_a_later_contract_appends() {
        let pods = [
            pod(4, 1, Phase::Ready),
            pod(5, 0, Phase::Ready),
            pod(6, 0, Phase::Ready),
        ];
        let now = app().pods(pods).build();
        let later = app().pods(pods).extra_pod_words(3).build();
        assert_eq!(assign(&later), assign(&now));
        assert_eq!(scale(&later), scale(&now));
        assert_eq!(scale(&later).delete, [5, 6]);
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let replica = Pod::starting(u32::MAX)
            .capacity(u32::MAX)
            .tickets(u32::MAX)
            .replica();
        let s = Snapshot::builder()
            .tickets_max(u32::MAX)
            .tickets_spare(u32::MAX)
            .pods_max(u32::MAX)
            .cooldown_seconds(0)
            .pods([replica; 3])
            .waiting(u32::MAX)
            .build();
        assert_eq!(assign(&s), None);
        // S + W = 2 × (2^32 − 1) tickets, two pods of 2^32 − 1 each.
        assert_eq!(scale(&s).create, 2);
    }
}
