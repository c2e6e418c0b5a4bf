//! The host's invariants, checked on every decision a policy returns.
//!
//! Pure functions over the snapshot the decision was made from, so a decision
//! is judged against exactly what the policy saw.

use wicket_state::{Phase, ScaleDecision, SnapPod, Snapshot};

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
///
/// Violations are reported for the first offending id in the order the
/// policy named them. Beyond a few deletions the ids are looked up in one
/// pass over the pods rather than one search each, which was quadratic
/// (≈ 70 µs per call at 1,000 pods with many deletions).
pub fn check_scale(snap: &Snapshot, d: &ScaleDecision) -> Result<(), Violation> {
    if !d.delete.is_empty() {
        check_deletes(snap, &d.delete)?;
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

/// Up to this many deletions, a search per id is quickest (the usual case:
/// a policy deletes a pod or two).
const FEW_DELETES: usize = 8;

fn check_deletes(snap: &Snapshot, delete: &[u32]) -> Result<(), Violation> {
    if delete.len() <= FEW_DELETES {
        for (i, &id) in delete.iter().enumerate() {
            check_delete(id, snap.pod(id), delete[..i].contains(&id))?;
        }
        return Ok(());
    }
    let mut ids = delete.to_vec();
    ids.sort_unstable();
    ids.dedup();
    // For each distinct id: the pod it names (the first with that id, as
    // `Snapshot::pod` finds it), and whether the policy named it already.
    let mut slots: Vec<(Option<&SnapPod>, bool)> = vec![(None, false); ids.len()];
    // A 64-bit summary of the ids: many pods are passed over without a
    // search.
    let filter = ids.iter().fold(0u64, |f, &id| f | 1 << (id % 64));
    for pod in &snap.pods {
        if filter & 1 << (pod.id % 64) == 0 {
            continue;
        }
        if let Ok(k) = ids.binary_search(&pod.id) {
            slots[k].0.get_or_insert(pod);
        }
    }
    for &id in delete {
        // Every id of `delete` is in `ids`.
        let k = ids
            .binary_search(&id)
            .map_err(|_| Violation::DeleteUnknown(id))?;
        let (pod, named) = &mut slots[k];
        check_delete(id, *pod, std::mem::replace(named, true))?;
    }
    Ok(())
}

/// The rules for one deleted id: `pod` is what it names, `named_before`
/// whether the policy named it earlier in the same decision.
fn check_delete(id: u32, pod: Option<&SnapPod>, named_before: bool) -> Result<(), Violation> {
    let pod = pod.ok_or(Violation::DeleteUnknown(id))?;
    if !pod.autoscaled {
        return Err(Violation::DeleteNotAutoscaled(id));
    }
    if pod.tickets > 0 {
        return Err(Violation::DeleteBusy(id, pod.tickets));
    }
    if pod.phase == Phase::Starting {
        return Err(Violation::DeleteStarting(id));
    }
    if named_before {
        return Err(Violation::DeleteTwice(id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let pod = |id, tickets, phase, autoscaled| SnapPod {
            id,
            capacity: 2,
            tickets,
            phase,
            autoscaled,
            idle_seconds: 60,
            age_seconds: 60,
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
            ..Snapshot::default()
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

    #[test]
    fn scale_reports_the_first_offending_id_in_the_policys_order() {
        let s = snap();
        let d = |delete: &[u32]| ScaleDecision {
            create: 0,
            delete: delete.to_vec(),
        };
        // A later unknown id does not hide an earlier busy one, and the
        // other way round.
        assert_eq!(
            check_scale(&s, &d(&[4, 2, 42])),
            Err(Violation::DeleteBusy(2, 2))
        );
        assert_eq!(
            check_scale(&s, &d(&[42, 2])),
            Err(Violation::DeleteUnknown(42))
        );
        // A repeat is reported where it happens, not before an earlier fault.
        assert_eq!(
            check_scale(&s, &d(&[4, 3, 4])),
            Err(Violation::DeleteStarting(3))
        );
        assert_eq!(
            check_scale(&s, &d(&[4, 4, 3])),
            Err(Violation::DeleteTwice(4))
        );
        // Delete faults come before pods.max.
        assert_eq!(
            check_scale(
                &s,
                &ScaleDecision {
                    create: 1,
                    delete: vec![1]
                }
            ),
            Err(Violation::DeleteNotAutoscaled(1))
        );
    }

    /// The check as it was first written (a search per id): the reference
    /// the indexed one must agree with.
    fn check_scale_reference(snap: &Snapshot, d: &ScaleDecision) -> Result<(), Violation> {
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

    #[test]
    fn scale_agrees_with_the_reference_on_generated_decisions() {
        // xorshift: deterministic, no extra dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % u64::from(below)) as u32
        };
        let (mut ok, mut ok_many, mut faults) = (0, 0, 0);
        for round in 0..2_000 {
            let n = [0, 1, 5, 40, 300][round % 5];
            let phases = [Phase::Starting, Phase::Ready, Phase::Draining];
            let pods: Vec<SnapPod> = (0..n)
                .map(|i| SnapPod {
                    // Ids unordered (pods are sorted by name), now and then
                    // repeated, so the first match must win.
                    id: if next(50) == 0 {
                        next(n + 1)
                    } else {
                        (i * 7919) % 100_003
                    },
                    capacity: 2,
                    tickets: if next(4) == 0 { 1 } else { 0 },
                    phase: phases[next(3) as usize],
                    autoscaled: next(5) != 0,
                    idle_seconds: next(100),
                    age_seconds: 100,
                })
                .collect();
            let mut snap = Snapshot {
                pods_max: next(n + 3),
                pods,
                ..Snapshot::default()
            };
            // Mostly ids that exist and qualify, so decisions get far.
            let good: Vec<u32> = snap
                .pods
                .iter()
                .filter(|p| p.autoscaled && p.tickets == 0 && p.phase != Phase::Starting)
                .map(|p| p.id)
                .collect();
            // Both a few deletions and many (the two ways of looking ids
            // up); now and then every qualifying pod once, backwards.
            let delete: Vec<u32> = if next(3) == 0 {
                good.iter()
                    .rev()
                    .copied()
                    .filter(|_| next(4) != 0)
                    .collect()
            } else {
                (0..next(40))
                    .map(|_| match next(20) {
                        0 => next(200_000),
                        1 if !snap.pods.is_empty() => snap.pods[next(n) as usize].id,
                        _ if !good.is_empty() => good[next(good.len() as u32) as usize],
                        _ => next(200_000),
                    })
                    .collect()
            };
            let d = ScaleDecision {
                create: next(3),
                delete,
            };
            if round % 7 == 0 {
                snap.pods.clear();
            }
            let want = check_scale_reference(&snap, &d);
            assert_eq!(check_scale(&snap, &d), want, "{snap:?} {d:?}");
            match want {
                Ok(()) if d.delete.len() > FEW_DELETES => ok_many += 1,
                Ok(()) => ok += 1,
                Err(_) => faults += 1,
            }
        }
        // Every outcome was exercised.
        assert!(
            ok > 100 && ok_many > 100 && faults > 100,
            "ok {ok} (with many deletions {ok_many}), faults {faults}"
        );
    }

    #[test]
    fn scale_with_many_pods_and_deletions() {
        let pods: Vec<SnapPod> = (0..1_000)
            .map(|i| SnapPod {
                // Not sorted by id, as in a real snapshot.
                id: (i * 613) % 1_000,
                capacity: 1,
                tickets: 0,
                phase: Phase::Ready,
                autoscaled: true,
                idle_seconds: 60,
                age_seconds: 60,
            })
            .collect();
        let snap = Snapshot {
            pods_max: 1_000,
            pods,
            ..Snapshot::default()
        };
        let all: Vec<u32> = (0..1_000).rev().collect();
        let d = ScaleDecision {
            create: 0,
            delete: all.clone(),
        };
        assert_eq!(check_scale(&snap, &d), Ok(()));
        let mut twice = all;
        twice.push(500);
        let d = ScaleDecision {
            create: 0,
            delete: twice,
        };
        assert_eq!(check_scale(&snap, &d), Err(Violation::DeleteTwice(500)));
    }
}
