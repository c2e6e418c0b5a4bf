//! Sample snapshots: the dry run every policy must pass before it serves,
//! and the cases `wicket policy check` prints.

use crate::state::{Phase, SnapPod, Snapshot};

fn pod(id: u32, tickets: u32, phase: Phase, autoscaled: bool, idle_seconds: u32) -> SnapPod {
    SnapPod {
        id,
        capacity: 2,
        tickets,
        phase,
        autoscaled,
        idle_seconds,
    }
}

fn base(pods: Vec<SnapPod>, waiting: u32) -> Snapshot {
    Snapshot {
        tickets_max: 2,
        tickets_spare: 2,
        pods_max: 4,
        cooldown_seconds: 10,
        config: String::new(),
        pods,
        waiting,
    }
}

/// A snapshot with `n` pods in a realistic mix (for cost measurements).
pub fn mixed(n: u32) -> Snapshot {
    let pods = (0..n)
        .map(|i| {
            let phase = match i % 10 {
                0 => Phase::Starting,
                1 => Phase::Draining,
                _ => Phase::Ready,
            };
            let tickets = if phase == Phase::Starting { 0 } else { i % 3 };
            SnapPod {
                id: i,
                capacity: 2,
                tickets: tickets.min(2),
                phase,
                autoscaled: i % 4 != 0,
                idle_seconds: (i * 7) % 40,
            }
        })
        .collect();
    Snapshot {
        pods_max: n.saturating_add(4),
        ..base(pods, 3)
    }
}

/// The named samples, in order.
pub fn samples() -> Vec<(&'static str, Snapshot)> {
    vec![
        ("no pods yet", base(vec![], 0)),
        (
            "one replica with free slots",
            base(vec![pod(0, 1, Phase::Ready, false, 0)], 0),
        ),
        (
            "all full, users waiting",
            base(
                vec![
                    pod(0, 2, Phase::Ready, false, 0),
                    pod(1, 2, Phase::Ready, true, 0),
                ],
                3,
            ),
        ),
        (
            "pods starting",
            base(
                vec![
                    pod(0, 2, Phase::Ready, false, 0),
                    pod(1, 0, Phase::Starting, true, 0),
                ],
                1,
            ),
        ),
        (
            "idle autoscaled pods above spare",
            base(
                vec![
                    pod(0, 0, Phase::Ready, false, 300),
                    pod(1, 0, Phase::Ready, true, 300),
                    pod(2, 0, Phase::Ready, true, 5),
                    pod(3, 0, Phase::Ready, true, 120),
                ],
                0,
            ),
        ),
        (
            "draining pods",
            base(
                vec![
                    pod(0, 1, Phase::Draining, false, 0),
                    pod(5, 1, Phase::Draining, true, 0),
                    pod(9, 0, Phase::Ready, true, 0),
                ],
                0,
            ),
        ),
        (
            "at pods.max",
            Snapshot {
                pods_max: 1,
                ..base(vec![pod(0, 2, Phase::Ready, true, 0)], 2)
            },
        ),
        ("100 pods", mixed(100)),
    ]
}
