//! What the host has seen of an app's turnover — how long users hold their
//! slots and how long new pods take to start — and the wait estimates drawn
//! from it. Pure: callers pass durations, nothing reads the clock.

use std::collections::VecDeque;
use std::time::Duration;

/// Completed slot occupancies kept (the newest win).
const SESSIONS_KEPT: usize = 64;
/// Pod start durations kept.
const STARTS_KEPT: usize = 16;

/// What a slot occupancy is assumed to last before anything was observed,
/// weighted like one observed session: early estimates are rough, and the
/// observations take over as they come in.
pub const PRIOR_SESSION: Duration = Duration::from_secs(300);

/// Recent observations of one app.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    sessions: VecDeque<Duration>,
    starts: VecDeque<Duration>,
    /// Median and p90 of `sessions`, kept up to date on each record (records
    /// are rare, snapshots are taken for every decision).
    session_stats: Option<Percentiles>,
    /// Median and p90 of `starts`, likewise.
    start_stats: Option<Percentiles>,
}

/// The median and the 90th percentile of some durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// The median (the lower one of an even count).
    pub median: Duration,
    /// The 90th percentile.
    pub p90: Duration,
}

/// Nearest-rank percentiles (each one a value that was observed); None for
/// no values.
fn percentiles(q: &VecDeque<Duration>) -> Option<Percentiles> {
    if q.is_empty() {
        return None;
    }
    let mut sorted: Vec<Duration> = q.iter().copied().collect();
    sorted.sort_unstable();
    // Rank ⌈p·n⌉, 1-based.
    let at = |p: usize| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1];
    Some(Percentiles {
        median: at(50),
        p90: at(90),
    })
}

fn push_bounded(q: &mut VecDeque<Duration>, d: Duration, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(d);
}

fn sum(q: &VecDeque<Duration>) -> Duration {
    q.iter().fold(Duration::ZERO, |a, &d| a.saturating_add(d))
}

impl Observed {
    /// A ticket ended after holding its slot for `held`.
    pub fn record_session(&mut self, held: Duration) {
        push_bounded(&mut self.sessions, held, SESSIONS_KEPT);
        self.session_stats = percentiles(&self.sessions);
    }

    /// A pod became ready `took` after it was asked for (or first seen).
    pub fn record_start(&mut self, took: Duration) {
        push_bounded(&mut self.starts, took, STARTS_KEPT);
        self.start_stats = percentiles(&self.starts);
    }

    /// Median and p90 of the completed sessions kept; None before the first.
    pub fn session_percentiles(&self) -> Option<Percentiles> {
        self.session_stats
    }

    /// Median and p90 of the pod start times kept; None before the first.
    pub fn start_percentiles(&self) -> Option<Percentiles> {
        self.start_stats
    }

    /// Completed sessions observed (within the window).
    pub fn sessions_seen(&self) -> usize {
        self.sessions.len()
    }

    /// Mean pod start time, if any start was observed.
    pub fn mean_start(&self) -> Option<Duration> {
        let n = self.starts.len() as u32;
        (n > 0).then(|| sum(&self.starts) / n)
    }

    /// Mean slot occupancy: all time observed in slots (completed sessions
    /// plus `live`, the ages of the sessions still running) divided by the
    /// sessions that ended, with [`PRIOR_SESSION`] as one pseudo-session.
    /// Counting the running sessions' time makes the estimate grow while
    /// users stay long, before any of them has left.
    pub fn mean_session(&self, live: Duration) -> Duration {
        let events = self.sessions.len() as u32 + 1;
        sum(&self.sessions)
            .saturating_add(live)
            .saturating_add(PRIOR_SESSION)
            / events
    }
}

/// Why a waiting user waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// For users ahead (and this one) to be given slots that others free.
    Queue,
    /// For a new pod that will take this user to finish starting.
    Starting,
}

impl Basis {
    /// The name on the wire (`eta#<seconds>@<basis>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Queue => "queue",
            Basis::Starting => "starting",
        }
    }
}

/// About how long a waiting user still waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// None when nothing can be said (e.g. no capacity at all yet).
    pub wait: Option<Duration>,
    /// What the user waits for.
    pub basis: Basis,
}

/// The capacity a waiting user's estimate depends on.
#[derive(Debug, Clone, Copy)]
pub struct Capacity<'a> {
    /// Free slots on ready pods.
    pub free: u32,
    /// Slots per pod (tickets.max).
    pub per_pod: u32,
    /// How long each starting pod has been starting, longest first (the
    /// first one is expected to be ready first).
    pub starting: &'a [Duration],
    /// Tickets held on ready pods (slots that free up as users leave).
    pub busy: u32,
    /// Summed ages of those tickets.
    pub live: Duration,
}

/// The estimate for the user at 0-based `position` in the queue.
///
/// Users ahead take free slots first, then the slots of starting pods (in
/// the order the pods should become ready), then slots that users leave:
/// with `busy` slots each held for a mean `m`, the k-th slot frees after
/// about `k · m / busy`.
pub fn estimate(position: usize, cap: Capacity<'_>, seen: &Observed) -> Estimate {
    let position = position as u64;
    let free = u64::from(cap.free);
    if position < free {
        return Estimate {
            wait: Some(Duration::ZERO),
            basis: Basis::Queue,
        };
    }
    let after_free = position - free;
    let per_pod = u64::from(cap.per_pod.max(1));
    let starting_slots = cap.starting.len() as u64 * per_pod;
    if after_free < starting_slots {
        let elapsed = cap.starting[(after_free / per_pod) as usize];
        let wait = seen.mean_start().map(|m| m.saturating_sub(elapsed));
        return Estimate {
            wait,
            basis: Basis::Starting,
        };
    }
    if cap.busy == 0 {
        return Estimate {
            wait: None,
            basis: Basis::Queue,
        };
    }
    let departures = (after_free - starting_slots)
        .saturating_add(1)
        .min(u64::from(u32::MAX)) as u32;
    let mean = seen.mean_session(cap.live);
    let wait = mean.saturating_mul(departures) / cap.busy;
    Estimate {
        wait: Some(wait),
        basis: Basis::Queue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn cap(
        free: u32,
        per_pod: u32,
        starting: &[Duration],
        busy: u32,
        live: Duration,
    ) -> Capacity<'_> {
        Capacity {
            free,
            per_pod,
            starting,
            busy,
            live,
        }
    }

    #[test]
    fn free_slot_means_no_wait() {
        let e = estimate(0, cap(1, 1, &[], 3, S(0)), &Observed::default());
        assert_eq!(
            e,
            Estimate {
                wait: Some(Duration::ZERO),
                basis: Basis::Queue
            }
        );
    }

    #[test]
    fn prior_dominates_until_sessions_are_seen() {
        let seen = Observed::default();
        // One slot held for 10 s, nothing ended yet: (10 + 300) / 1.
        let e = estimate(0, cap(0, 1, &[], 1, S(10)), &seen);
        assert_eq!(e.wait, Some(S(310)));
        let mut seen = Observed::default();
        for _ in 0..9 {
            seen.record_session(S(20));
        }
        // (9·20 + 0 + 300) / 10 = 48 s per session, two slots, first in line.
        assert_eq!(
            estimate(0, cap(0, 1, &[], 2, S(0)), &seen).wait,
            Some(S(24))
        );
        // Third in line: three departures.
        assert_eq!(
            estimate(2, cap(0, 1, &[], 2, S(0)), &seen).wait,
            Some(S(72))
        );
    }

    #[test]
    fn old_sessions_leave_the_window() {
        let mut seen = Observed::default();
        for _ in 0..SESSIONS_KEPT {
            seen.record_session(S(1000));
        }
        for _ in 0..SESSIONS_KEPT {
            seen.record_session(S(10));
        }
        assert_eq!(seen.sessions_seen(), SESSIONS_KEPT);
        let m = seen.mean_session(Duration::ZERO);
        assert!(m < S(20), "{m:?}");
    }

    #[test]
    fn starting_pod_serves_the_first_waiters() {
        let mut seen = Observed::default();
        seen.record_start(S(30));
        seen.record_start(S(50));
        let starting = [S(25), S(5)];
        // Two slots per starting pod: positions 0,1 → first pod; 2,3 → second.
        let e = estimate(1, cap(0, 2, &starting, 4, S(0)), &seen);
        assert_eq!(
            e,
            Estimate {
                wait: Some(S(15)),
                basis: Basis::Starting
            }
        );
        let e = estimate(3, cap(0, 2, &starting, 4, S(0)), &seen);
        assert_eq!(
            e,
            Estimate {
                wait: Some(S(35)),
                basis: Basis::Starting
            }
        );
        // Late pods say zero, not negative.
        assert_eq!(
            estimate(0, cap(0, 2, &[S(90)], 4, S(0)), &seen).wait,
            Some(Duration::ZERO)
        );
        // Past the starting slots: turnover again.
        assert_eq!(
            estimate(4, cap(0, 2, &starting, 4, S(0)), &seen).basis,
            Basis::Queue
        );
    }

    #[test]
    fn unknown_when_nothing_can_free_a_slot() {
        let e = estimate(0, cap(0, 1, &[], 0, S(0)), &Observed::default());
        assert_eq!(
            e,
            Estimate {
                wait: None,
                basis: Basis::Queue
            }
        );
        let e = estimate(0, cap(0, 1, &[S(1)], 0, S(0)), &Observed::default());
        assert_eq!(
            e,
            Estimate {
                wait: None,
                basis: Basis::Starting
            },
            "starting, no start time seen yet"
        );
    }

    #[test]
    fn medians_and_p90s_are_observed_values_of_the_window() {
        let mut seen = Observed::default();
        assert_eq!(seen.session_percentiles(), None);
        assert_eq!(seen.start_percentiles(), None);
        seen.record_start(S(30));
        assert_eq!(
            seen.start_percentiles(),
            Some(Percentiles {
                median: S(30),
                p90: S(30)
            })
        );
        // 1..=10 s in any order: median 5 (the lower one), p90 9.
        for s in [7, 3, 10, 1, 5, 9, 2, 8, 4, 6] {
            seen.record_session(S(s));
        }
        assert_eq!(
            seen.session_percentiles(),
            Some(Percentiles {
                median: S(5),
                p90: S(9)
            })
        );
        // Only the newest STARTS_KEPT starts count.
        for _ in 0..STARTS_KEPT {
            seen.record_start(S(2));
        }
        assert_eq!(seen.start_percentiles().map(|p| p.p90), Some(S(2)));
    }

    #[test]
    fn huge_positions_do_not_overflow() {
        let e = estimate(
            usize::MAX,
            cap(0, 1, &[], 1, Duration::MAX / 4),
            &Observed::default(),
        );
        assert!(e.wait.is_some());
    }
}
