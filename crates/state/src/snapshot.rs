//! The summary of an app that a policy decides on, and the decisions.
//!
//! These mirror the WIT types (`wicket:policy/types`, contract 0.2) without
//! depending on wasmtime, so the state and the invariant checks stay pure.
//! The host turns them into either contract version (`policy::bindings`).

pub use super::clock::Clock;

/// A pod's phase as a policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Being created or booting; incoming capacity.
    Starting,
    /// Running and ready; may receive tickets.
    Ready,
    /// No new tickets; removed when its last ticket ends.
    Draining,
}

/// One pod in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapPod {
    /// Stable id of the pod within its app.
    pub id: u32,
    /// Tickets the pod can hold.
    pub capacity: u32,
    /// Tickets held now.
    pub tickets: u32,
    /// Lifecycle phase.
    pub phase: Phase,
    /// Created by wicket (and so deletable by it).
    pub autoscaled: bool,
    /// Whole seconds since the pod last held a ticket.
    pub idle_seconds: u32,
    /// Whole seconds since the host first saw the pod (or asked for it).
    pub age_seconds: u32,
}

/// What the host observed of the app recently (contract 0.2 `observed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObservedTimes {
    /// Median pod start-up time, in milliseconds.
    pub startup_median_ms: Option<u32>,
    /// 90th percentile of the pod start-up time, in milliseconds.
    pub startup_p90_ms: Option<u32>,
    /// Median session (ticket held), in seconds.
    pub session_median_seconds: Option<u32>,
    /// 90th percentile of the session, in seconds.
    pub session_p90_seconds: Option<u32>,
    /// How long the first user in the queue has waited, in milliseconds.
    pub longest_wait_ms: u32,
}

/// Sums over a snapshot's pods (contract 0.2 `totals`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Pods in phase ready.
    pub ready_pods: u32,
    /// Pods in phase starting (including pods being created).
    pub starting_pods: u32,
    /// Pods in phase draining.
    pub draining_pods: u32,
    /// Autoscaled pods in any phase.
    pub autoscaled_pods: u32,
    /// Tickets held, on all pods.
    pub tickets_in_use: u32,
    /// Free tickets on ready pods.
    pub free_tickets: u32,
    /// Capacity of the pods still starting.
    pub starting_tickets: u32,
}

impl Totals {
    /// Adds one pod to the sums (saturating: no input can overflow them).
    #[inline]
    pub fn add(&mut self, p: &SnapPod) {
        let one = |n: &mut u32| *n = n.saturating_add(1);
        match p.phase {
            Phase::Ready => {
                one(&mut self.ready_pods);
                self.free_tickets = self
                    .free_tickets
                    .saturating_add(p.capacity.saturating_sub(p.tickets));
            }
            Phase::Starting => {
                one(&mut self.starting_pods);
                self.starting_tickets = self.starting_tickets.saturating_add(p.capacity);
            }
            Phase::Draining => one(&mut self.draining_pods),
        }
        if p.autoscaled {
            one(&mut self.autoscaled_pods);
        }
        self.tickets_in_use = self.tickets_in_use.saturating_add(p.tickets);
    }
}

/// Everything a policy decision may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// tickets.max
    pub tickets_max: u32,
    /// tickets.spare
    pub tickets_spare: u32,
    /// pods.max
    pub pods_max: u32,
    /// pods.cooldown in seconds
    pub cooldown_seconds: u32,
    /// The app's opaque policy configuration.
    pub config: String,
    /// Pods sorted by name; pods still being created (no name yet) last.
    pub pods: Vec<SnapPod>,
    /// Users in the waiting queue.
    pub waiting: u32,
    /// When the decision is taken.
    pub clock: Clock,
    /// Users arriving per minute over the last 60 minutes, oldest first
    /// (60 counts once filled by the host; see `state::arrivals`).
    pub arrivals_per_minute: Vec<u32>,
    /// Users arriving per hour over the last 7 days, oldest first (168).
    pub arrivals_per_hour: Vec<u32>,
    /// Start-up and session times observed, and the longest current wait.
    pub observed: ObservedTimes,
}

impl Snapshot {
    /// The pod with this id, if the snapshot has it.
    pub fn pod(&self, id: u32) -> Option<&SnapPod> {
        self.pods.iter().find(|p| p.id == id)
    }

    /// Autoscaled pods in any phase (what pods.max limits).
    pub fn autoscaled_count(&self) -> u32 {
        self.pods.iter().filter(|p| p.autoscaled).count() as u32
    }

    /// Sums over the pods, as contract 0.2 sends them.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for p in &self.pods {
            t.add(p);
        }
        t
    }
}

/// A scaling decision: pods to create and pods to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleDecision {
    /// Pods to create from the app's template.
    pub create: u32,
    /// Ids of pods to delete.
    pub delete: Vec<u32>,
}

impl ScaleDecision {
    /// True when the decision changes nothing.
    pub fn is_noop(&self) -> bool {
        self.create == 0 && self.delete.is_empty()
    }
}
