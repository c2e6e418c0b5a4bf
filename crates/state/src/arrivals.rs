//! Users arriving at an app, counted per minute over the last hour and per
//! hour over the last week: what contract 0.2 sends a policy as `arrivals`.
//!
//! Pure and bounded: two fixed rings of counters (228 numbers, whatever the
//! traffic), and the time always comes in as an argument (unix seconds), so
//! the live host feeds it the wall clock and the simulator simulated time.
//! Buckets are aligned to whole UTC minutes and hours.

/// Minutes kept (the last hour).
pub const MINUTES: usize = 60;
/// Hours kept (the last 7 days).
pub const HOURS: usize = 168;

/// Arrival counters of one app.
#[derive(Debug, Clone)]
pub struct Arrivals {
    /// Ring: slot `m % MINUTES` counts minute `m` (unix minutes), for the
    /// `MINUTES` minutes up to and including `last_minute`.
    minutes: [u32; MINUTES],
    /// Ring: slot `h % HOURS` counts hour `h`, likewise up to `last_hour`.
    hours: [u32; HOURS],
    /// The newest minute the ring holds (unix seconds / 60).
    last_minute: u64,
    /// The newest hour the ring holds (unix seconds / 3600).
    last_hour: u64,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self {
            minutes: [0; MINUTES],
            hours: [0; HOURS],
            last_minute: 0,
            last_hour: 0,
        }
    }
}

/// Moves a ring forward to bucket `to`, clearing the buckets it passes (at
/// most all of them, however long the gap).
fn advance(ring: &mut [u32], last: &mut u64, to: u64) {
    if to <= *last {
        return;
    }
    let len = ring.len() as u64;
    if to - *last >= len {
        ring.fill(0);
    } else {
        for b in *last + 1..=to {
            ring[(b % len) as usize] = 0;
        }
    }
    *last = to;
}

/// Adds one to bucket `at` if the ring still holds it (an arrival older than
/// the window, after the clock went back, is not counted).
fn bump(ring: &mut [u32], last: u64, at: u64) {
    let len = ring.len() as u64;
    if at <= last && last - at < len {
        let slot = &mut ring[(at % len) as usize];
        *slot = slot.saturating_add(1);
    }
}

/// Writes the `ring.len()` buckets ending with bucket `now` into `out`,
/// oldest first; buckets the ring does not hold (not reached yet, or older
/// than its window) are 0.
fn fill(ring: &[u32], last: u64, now: u64, out: &mut Vec<u32>) {
    let len = ring.len() as u64;
    out.clear();
    out.extend((0..len).map(|i| {
        // Bucket `now - (len - 1) + i`, written so that it cannot underflow.
        let Some(b) = (now + i + 1).checked_sub(len) else {
            return 0;
        };
        if b <= last && last - b < len {
            ring[(b % len) as usize]
        } else {
            0
        }
    }));
}

impl Arrivals {
    /// Counts one user who asked for a ticket at `unix_seconds`.
    pub fn record(&mut self, unix_seconds: u64) {
        let (minute, hour) = (unix_seconds / 60, unix_seconds / 3600);
        advance(&mut self.minutes, &mut self.last_minute, minute);
        advance(&mut self.hours, &mut self.last_hour, hour);
        bump(&mut self.minutes, self.last_minute, minute);
        bump(&mut self.hours, self.last_hour, hour);
    }

    /// Fills the per-minute (60) and per-hour (168) counts as seen at
    /// `unix_seconds`, oldest first, the current (still filling) bucket
    /// last. Reuses the vectors' allocations.
    pub fn fill(&self, unix_seconds: u64, per_minute: &mut Vec<u32>, per_hour: &mut Vec<u32>) {
        fill(
            &self.minutes,
            self.last_minute,
            unix_seconds / 60,
            per_minute,
        );
        fill(&self.hours, self.last_hour, unix_seconds / 3600, per_hour);
    }

    /// The counts as two new vectors (see [`fill`](Self::fill)).
    pub fn at(&self, unix_seconds: u64) -> (Vec<u32>, Vec<u32>) {
        let (mut m, mut h) = (Vec::with_capacity(MINUTES), Vec::with_capacity(HOURS));
        self.fill(unix_seconds, &mut m, &mut h);
        (m, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T10:00:00Z, a whole hour.
    const T: u64 = 1_796_378_400;

    #[test]
    fn nothing_recorded_is_all_zeros_of_the_right_length() {
        let (m, h) = Arrivals::default().at(T);
        assert_eq!((m.len(), h.len()), (MINUTES, HOURS));
        assert!(m.iter().chain(&h).all(|&c| c == 0));
        // Even at the very start of time.
        let (m, h) = Arrivals::default().at(0);
        assert_eq!((m.len(), h.len()), (MINUTES, HOURS));
    }

    #[test]
    fn arrivals_land_in_their_minute_and_hour_newest_last() {
        let mut a = Arrivals::default();
        a.record(T + 5);
        a.record(T + 59);
        a.record(T + 61);
        a.record(T + 61);
        let (m, h) = a.at(T + 90);
        assert_eq!(m[MINUTES - 1], 2, "the current minute");
        assert_eq!(m[MINUTES - 2], 2, "the minute before");
        assert_eq!(m.iter().sum::<u32>(), 4);
        assert_eq!(h[HOURS - 1], 4);
        assert_eq!(h.iter().sum::<u32>(), 4);
    }

    #[test]
    fn buckets_roll_over_as_time_passes_without_arrivals() {
        let mut a = Arrivals::default();
        a.record(T);
        // 10 minutes later the arrival is 10 buckets back.
        let (m, h) = a.at(T + 600);
        assert_eq!(m[MINUTES - 11], 1);
        assert_eq!(m.iter().sum::<u32>(), 1);
        assert_eq!(h[HOURS - 1], 1, "still the same hour");
        // 59 minutes later: the oldest bucket; 60 minutes later: gone.
        assert_eq!(a.at(T + 59 * 60).0[0], 1);
        assert_eq!(a.at(T + 60 * 60).0.iter().sum::<u32>(), 0);
        let (_, h) = a.at(T + 3600);
        assert_eq!(h[HOURS - 2], 1, "the hour before");
        // A week later it has left the hours too.
        assert_eq!(a.at(T + 167 * 3600).1[0], 1);
        assert_eq!(a.at(T + 168 * 3600).1.iter().sum::<u32>(), 0);
    }

    #[test]
    fn recording_after_a_long_gap_clears_the_old_buckets() {
        let mut a = Arrivals::default();
        for i in 0..100 {
            a.record(T + i * 30);
        }
        // Two weeks of silence, then one arrival.
        let later = T + 14 * 24 * 3600;
        a.record(later);
        let (m, h) = a.at(later);
        assert_eq!(m.iter().sum::<u32>(), 1);
        assert_eq!(h.iter().sum::<u32>(), 1);
        // A gap shorter than the window keeps what is still inside it.
        let mut a = Arrivals::default();
        a.record(T);
        a.record(T + 30 * 60);
        let (m, _) = a.at(T + 30 * 60);
        assert_eq!(m[MINUTES - 31], 1);
        assert_eq!(m[MINUTES - 1], 1);
        assert_eq!(m.iter().sum::<u32>(), 2);
    }

    #[test]
    fn a_ring_reused_after_a_wrap_does_not_show_stale_counts() {
        let mut a = Arrivals::default();
        a.record(T);
        // 61 minutes later the same ring slot is reused for a new minute.
        a.record(T + 61 * 60);
        let (m, _) = a.at(T + 61 * 60);
        assert_eq!(m.iter().sum::<u32>(), 1);
        assert_eq!(m[MINUTES - 1], 1);
    }

    #[test]
    fn a_clock_that_goes_back_neither_panics_nor_miscounts() {
        let mut a = Arrivals::default();
        a.record(T + 600);
        // An arrival stamped 5 minutes earlier still counts in its minute.
        a.record(T + 300);
        let (m, _) = a.at(T + 600);
        assert_eq!(m[MINUTES - 1], 1);
        assert_eq!(m[MINUTES - 6], 1);
        // Far older than the window: not counted.
        a.record(T - 7200);
        assert_eq!(a.at(T + 600).0.iter().sum::<u32>(), 2);
        // Looking from an earlier time shows nothing newer than it.
        let (m, _) = a.at(T + 300);
        assert_eq!(m[MINUTES - 1], 1);
        assert_eq!(m.iter().sum::<u32>(), 1);
    }

    #[test]
    fn memory_is_bounded_and_counts_saturate() {
        let mut a = Arrivals::default();
        for _ in 0..10_000 {
            a.record(T);
        }
        assert_eq!(a.at(T).0[MINUTES - 1], 10_000);
        a.minutes[(T / 60 % 60) as usize] = u32::MAX;
        a.record(T);
        assert_eq!(a.at(T).0[MINUTES - 1], u32::MAX);
        assert!(std::mem::size_of::<Arrivals>() < 1024);
    }
}
