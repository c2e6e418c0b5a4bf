//! The host's invariants, checked on every decision a policy returns.
//!
//! Pure functions over the snapshot the decision was made from, so a decision
//! is judged against exactly what the policy saw.

use crate::state::{Phase, ScaleDecision, Snapshot};

/// A decision that breaks an invariant.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Violation {
    /// Assigned to a pod id not in the snapshot.
    #[error("assign: pod {0} does not exist")]
    AssignUnknown(u32),
    /// Assigned to a starting or draining pod.
    #[error("assign: pod {0} is not ready")]
    AssignNotReady(u32),
    /// Assigned to a pod with no free slot.
    #[error("assign: pod {0} is full")]
    AssignFull(u32),
    /// Asked to delete a pod id not in the snapshot.
    #[error("scale: pod {0} does not exist")]
    DeleteUnknown(u32),
    /// Asked to delete a Deployment replica.
    #[error("scale: pod {0} was not created by wicket")]
    DeleteNotAutoscaled(u32),
    /// Asked to delete a pod that holds tickets.
    #[error("scale: pod {0} holds {1} tickets")]
    DeleteBusy(u32, u32),
    /// Asked to delete a pod that is still starting.
    #[error("scale: pod {0} is still starting")]
    DeleteStarting(u32),
    /// Named the same pod twice.
    #[error("scale: pod {0} named twice")]
    DeleteTwice(u32),
    /// Would take the autoscaled pods above pods.max.
    #[error(
        "scale: creating {create} pods on top of {existing} autoscaled would exceed pods.max {max}"
    )]
    ExceedsPodsMax {
        /// Pods the policy asked for.
        create: u32,
        /// Autoscaled pods already there (starting ones included).
        existing: u32,
        /// pods.max
        max: u32,
    },
}

/// Checks an `assign` answer: none, or a ready pod with a free slot.
pub fn check_assign(snap: &Snapshot, answer: Option<u32>) -> Result<(), Violation> {
    let Some(id) = answer else { return Ok(()) };
    let pod = snap.pod(id).ok_or(Violation::AssignUnknown(id))?;
    if pod.phase != Phase::Ready {
        return Err(Violation::AssignNotReady(id));
    }
    if pod.tickets >= pod.capacity {
        return Err(Violation::AssignFull(id));
    }
    Ok(())
}

/// Checks a `scale` answer: deletes only idle autoscaled pods that are not
/// starting, each once; never more autoscaled pods than pods.max.
pub fn check_scale(snap: &Snapshot, d: &ScaleDecision) -> Result<(), Violation> {
    for (i, &id) in d.delete.iter().enumerate() {
        let pod = snap.pod(id).ok_or(Violation::DeleteUnknown(id))?;
        if !pod.autoscaled {
            return Err(Violation::DeleteNotAutoscaled(id));
        }
        if pod.tickets > 0 {
            return Err(Violation::DeleteBusy(id, pod.tickets));
        }
        if pod.phase == Phase::Starting {
            return Err(Violation::DeleteStarting(id));
        }
        if d.delete[..i].contains(&id) {
            return Err(Violation::DeleteTwice(id));
        }
    }
    let existing = snap.autoscaled_count();
    if d.create > 0 && existing.saturating_add(d.create) > snap.pods_max {
        return Err(Violation::ExceedsPodsMax {
            create: d.create,
            existing,
            max: snap.pods_max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SnapPod;

    fn snap() -> Snapshot {
        let pod = |id, tickets, phase, autoscaled| SnapPod {
            id,
            capacity: 2,
            tickets,
            phase,
            autoscaled,
            idle_seconds: 60,
        };
        Snapshot {
            tickets_max: 2,
            tickets_spare: 2,
            pods_max: 3,
            cooldown_seconds: 10,
            config: String::new(),
            pods: vec![
                pod(1, 0, Phase::Ready, false),
                pod(2, 2, Phase::Ready, true),
                pod(3, 0, Phase::Starting, true),
                pod(4, 0, Phase::Ready, true),
                pod(5, 1, Phase::Draining, true),
            ],
            waiting: 0,
        }
    }

    #[test]
    fn assign_rules() {
        let s = snap();
        assert_eq!(check_assign(&s, None), Ok(()));
        assert_eq!(check_assign(&s, Some(1)), Ok(()));
        assert_eq!(check_assign(&s, Some(9)), Err(Violation::AssignUnknown(9)));
        assert_eq!(check_assign(&s, Some(2)), Err(Violation::AssignFull(2)));
        assert_eq!(check_assign(&s, Some(3)), Err(Violation::AssignNotReady(3)));
        assert_eq!(check_assign(&s, Some(5)), Err(Violation::AssignNotReady(5)));
    }

    #[test]
    fn scale_rules() {
        let s = snap();
        let d = |create, delete: &[u32]| ScaleDecision {
            create,
            delete: delete.to_vec(),
        };
        assert_eq!(check_scale(&s, &d(0, &[4])), Ok(()));
        assert_eq!(
            check_scale(&s, &d(0, &[1])),
            Err(Violation::DeleteNotAutoscaled(1))
        );
        assert_eq!(
            check_scale(&s, &d(0, &[2])),
            Err(Violation::DeleteBusy(2, 2))
        );
        assert_eq!(
            check_scale(&s, &d(0, &[3])),
            Err(Violation::DeleteStarting(3))
        );
        assert_eq!(
            check_scale(&s, &d(0, &[4, 4])),
            Err(Violation::DeleteTwice(4))
        );
        assert_eq!(
            check_scale(&s, &d(0, &[42])),
            Err(Violation::DeleteUnknown(42))
        );
        // 4 autoscaled pods exist, pods.max is 3: nothing more may be created,
        // but an over-the-limit app may still shrink.
        assert_eq!(
            check_scale(&s, &d(1, &[])),
            Err(Violation::ExceedsPodsMax {
                create: 1,
                existing: 4,
                max: 3
            })
        );
        assert_eq!(check_scale(&s, &d(0, &[])), Ok(()));
        assert!(check_scale(&s, &d(u32::MAX, &[])).is_err());
    }
}
