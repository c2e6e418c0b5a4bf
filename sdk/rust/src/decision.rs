//! [`ScaleDecision`]: what a policy's `scale` answers.

/// Which pods to create and delete now.
///
/// The host checks it against its invariants before acting: it never creates
/// beyond `pods_max` autoscaled pods and never deletes a pod that is unknown,
/// starting, holds tickets or is one of the Deployment's replicas; a decision
/// that asks for either is a fault.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScaleDecision {
    /// Pods to create from the app's template.
    pub create: u32,
    /// Ids of pods to delete.
    pub delete: Vec<u32>,
}

impl ScaleDecision {
    /// Change nothing.
    pub const fn none() -> Self {
        Self {
            create: 0,
            delete: Vec::new(),
        }
    }

    /// Create `pods` pods.
    pub const fn create(pods: u32) -> Self {
        Self {
            create: pods,
            delete: Vec::new(),
        }
    }

    /// Delete the pods with these ids.
    pub fn delete(ids: impl IntoIterator<Item = u32>) -> Self {
        Self {
            create: 0,
            delete: ids.into_iter().collect(),
        }
    }

    /// Changes nothing.
    pub fn is_none(&self) -> bool {
        self.create == 0 && self.delete.is_empty()
    }
}
