//! The summary of an app that a policy decides on, and the decisions.
//!
//! These mirror the WIT types (`wicket:policy/types`) without depending on
//! wasmtime, so the state and the invariant checks stay pure.

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
