//! The default policy's decisions as they were before the SDK (commit
//! 291b536, contract 0.1: pods as `[u32; 6]` words), kept verbatim as the
//! baseline that `benches/decide.rs` measures the SDK path against.
//!
//! The decisions of wicket's default policy, in plain Rust.
//!
//! Nothing here knows about WebAssembly: the component glue in `lib.rs` feeds
//! these functions the host's snapshot, and the native tests feed them plain
//! [`Pod`]s. Both make one pass over the pods; `scale` also sorts the idle
//! pods it may delete. `assign` never allocates and `scale` allocates only
//! the list of pods it deletes. No input can make them panic.

use std::cmp::Reverse;

/// Where a pod is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Being created or booting: incoming capacity, no tickets, never deleted.
    Starting,
    /// Running and ready: may receive tickets up to its capacity.
    Ready,
    /// Leaving: no new tickets; the host removes it once it is empty.
    Draining,
}

/// One pod of the app, as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Stable id that decisions name the pod by (not its position).
    pub id: u32,
    /// Tickets this pod can hold.
    pub capacity: u32,
    /// Tickets currently held on this pod.
    pub tickets: u32,
    /// Starting, ready or draining.
    pub phase: Phase,
    /// Created by wicket (deletable), as opposed to a Deployment replica.
    pub autoscaled: bool,
    /// Whole seconds since the pod last held a ticket.
    pub idle_seconds: u32,
}

/// Reads one pod of a snapshot as a [`Pod`].
///
/// The decisions are generic over this so that the component can run them
/// directly over the pod list the host sent, without copying it first.
pub trait ToPod {
    /// This pod's fields.
    fn to_pod(&self) -> Pod;
}

impl ToPod for Pod {
    fn to_pod(&self) -> Pod {
        *self
    }
}

/// Words per pod in the contract's packed pod list (`snapshot.pods`).
pub const POD_WORDS: usize = 6;

/// A pod as the contract packs it: id, capacity, tickets, phase (0 starting,
/// 1 ready, 2 draining), autoscaled (0 or 1), idle seconds. An unknown phase
/// reads as draining, the phase that allows nothing.
impl ToPod for [u32; POD_WORDS] {
    fn to_pod(&self) -> Pod {
        let [id, capacity, tickets, phase, autoscaled, idle_seconds] = *self;
        Pod {
            id,
            capacity,
            tickets,
            phase: match phase {
                0 => Phase::Starting,
                1 => Phase::Ready,
                _ => Phase::Draining,
            },
            autoscaled: autoscaled != 0,
            idle_seconds,
        }
    }
}

/// The app's settings that this policy uses (it has no parameters of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Tickets per new pod (T).
    pub tickets_max: u32,
    /// Free tickets to keep available in advance (S).
    pub tickets_spare: u32,
    /// Most autoscaled pods that may exist at once, in any phase (M).
    pub pods_max: u32,
    /// Seconds an autoscaled pod must be idle before it may be deleted (C).
    pub cooldown_seconds: u32,
}

/// Everything a decision may use.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a, P = Pod> {
    /// The app's settings.
    pub settings: Settings,
    /// The app's pods, sorted by name: earlier pods win ties.
    pub pods: &'a [P],
    /// Users waiting in the queue for a ticket (W).
    pub waiting: u32,
}

/// Which pods to create and delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScaleDecision {
    /// Pods to create from the app's template.
    pub create: u32,
    /// Ids of the pods to delete, most idle first.
    pub delete: Vec<u32>,
}

/// The pod that gets the next ticket, or `None` if the user must wait.
///
/// Picks the fullest ready pod with a free slot: packing users together keeps
/// the other pods idle, so they can be removed. Ties go to the earlier pod.
pub fn assign<P: ToPod>(snapshot: &Snapshot<'_, P>) -> Option<u32> {
    snapshot
        .pods
        .iter()
        .map(ToPod::to_pod)
        .filter(|pod| pod.phase == Phase::Ready && pod.tickets < pod.capacity)
        // `min_by_key` keeps the first of equal elements, `max_by_key` the last.
        .min_by_key(|pod| Reverse(pod.tickets))
        .map(|pod| pod.id)
}

/// The pods to create or delete so that the spare tickets and the waiting
/// users are covered (S + W) by the free tickets on ready pods plus the
/// capacity of autoscaled pods still starting.
pub fn scale<P: ToPod>(snapshot: &Snapshot<'_, P>) -> ScaleDecision {
    // Each pod adds less than 2^32 to these sums and a snapshot holds far
    // fewer than 2^32 pods, so they cannot overflow a u64.
    let mut free = 0_u64;
    let mut incoming = 0_u64;
    let mut autoscaled = 0_u32;
    for pod in snapshot.pods.iter().map(ToPod::to_pod) {
        match pod.phase {
            Phase::Ready => free += u64::from(pod.capacity.saturating_sub(pod.tickets)),
            Phase::Starting if pod.autoscaled => incoming += u64::from(pod.capacity),
            Phase::Starting | Phase::Draining => {}
        }
        autoscaled = autoscaled.saturating_add(u32::from(pod.autoscaled));
    }

    let settings = &snapshot.settings;
    let needed = u64::from(settings.tickets_spare) + u64::from(snapshot.waiting);
    let available = free + incoming;
    if needed > available {
        ScaleDecision {
            create: pods_to_create(needed - available, settings, autoscaled),
            delete: Vec::new(),
        }
    } else if needed < available {
        ScaleDecision {
            create: 0,
            delete: idle_pods_to_delete(snapshot.pods, settings, free, needed),
        }
    } else {
        ScaleDecision::default()
    }
}

/// How many new pods of `tickets_max` tickets cover `shortfall` tickets,
/// within the room `pods_max` leaves beside the `autoscaled` pods.
fn pods_to_create(shortfall: u64, settings: &Settings, autoscaled: u32) -> u32 {
    // A new pod would hold no tickets: creating pods cannot help.
    if settings.tickets_max == 0 {
        return 0;
    }
    let wanted = shortfall.div_ceil(u64::from(settings.tickets_max));
    let room = settings.pods_max.saturating_sub(autoscaled);
    u32::try_from(wanted).map_or(room, |wanted| wanted.min(room))
}

/// The ids of the autoscaled, ready, empty pods idle for at least the
/// cooldown to delete, most idle first (ties in list order). Each goes if the
/// `free` tickets on ready pods still cover `needed` without it; one that
/// cannot go (a large pod) does not keep the next, smaller one.
fn idle_pods_to_delete<P: ToPod>(
    pods: &[P],
    settings: &Settings,
    mut free: u64,
    needed: u64,
) -> Vec<u32> {
    let pod_at = |position: u32| pods.get(position as usize).map(ToPod::to_pod);

    // The positions of the candidates, in the list that is returned: it is
    // rewritten in place into the ids of the pods deleted, so it is the only
    // allocation (and there is none when nothing is idle).
    let mut chosen: Vec<u32> = (0..)
        .zip(pods)
        .filter(|(_, pod)| {
            let pod = pod.to_pod();
            pod.autoscaled
                && pod.phase == Phase::Ready
                && pod.tickets == 0
                && pod.idle_seconds >= settings.cooldown_seconds
        })
        .map(|(position, _)| position)
        .collect();

    // Every key is distinct (it ends in the position), so the unstable sort,
    // which needs no scratch memory, still gives one answer.
    chosen.sort_unstable_by_key(|&position| {
        let idle = pod_at(position).map_or(0, |pod| pod.idle_seconds);
        (Reverse(idle), position)
    });

    chosen.retain_mut(|slot| {
        let Some(pod) = pod_at(*slot) else {
            return false;
        };
        // Only an empty pod is a candidate, so deleting it loses its capacity.
        match free.checked_sub(u64::from(pod.capacity)) {
            Some(left) if left >= needed => {
                free = left;
                *slot = pod.id;
                true
            }
            _ => false,
        }
    });
    chosen
}
