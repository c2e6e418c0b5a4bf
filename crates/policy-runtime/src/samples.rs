//! Sample snapshots: the dry run every policy must pass before it serves,
//! and the cases `wicket policy check` prints.

use wicket_state::arrivals::{HOURS, MINUTES};
use wicket_state::{Clock, ObservedTimes, Phase, SnapPod, Snapshot};

/// The samples' time: Friday 2026-12-04 10:00:00 UTC, 11:00 in Berlin.
pub const SAMPLE_CLOCK: Clock = Clock {
    unix_seconds: 1_796_378_400,
    utc_offset_seconds: 3600,
};

fn pod(id: u32, tickets: u32, phase: Phase, autoscaled: bool, idle_seconds: u32) -> SnapPod {
    SnapPod {
        id,
        capacity: 2,
        tickets,
        phase,
        autoscaled,
        idle_seconds,
        age_seconds: idle_seconds + 60 * id,
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
        clock: SAMPLE_CLOCK,
        // A few users a minute, busier in the working hours of each day.
        arrivals_per_minute: (0..MINUTES as u32).map(|m| m % 4).collect(),
        arrivals_per_hour: (0..HOURS as u32)
            .map(|h| {
                if (8..18).contains(&((h + 11) % 24)) {
                    90
                } else {
                    4
                }
            })
            .collect(),
        observed: ObservedTimes {
            startup_median_ms: Some(4_500),
            startup_p90_ms: Some(9_000),
            session_median_seconds: Some(900),
            session_p90_seconds: Some(2_700),
            longest_wait_ms: if waiting > 0 { 12_000 } else { 0 },
        },
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
                age_seconds: 600 + (i * 13) % 3600,
            }
        })
        .collect();
    Snapshot {
        pods_max: n.saturating_add(4),
        ..base(pods, 3)
    }
}

/// The named samples, in order. Each is a snapshot as the live host sends
/// it (clock, arrivals, observed times filled in), plus one with nothing
/// observed yet.
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
        (
            "nothing observed yet",
            Snapshot {
                observed: ObservedTimes::default(),
                arrivals_per_minute: vec![0; MINUTES],
                arrivals_per_hour: vec![0; HOURS],
                ..base(vec![pod(0, 0, Phase::Ready, false, 0)], 0)
            },
        ),
        ("100 pods", mixed(100)),
    ]
}
