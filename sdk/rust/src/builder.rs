//! [`SnapshotBuilder`]: a [`Snapshot`] from plain values, so that a policy is
//! tested with `cargo test` and no host.

use crate::pod::{self, KNOWN_POD_WORDS, Pod};
use crate::snapshot::{Arrivals, Clock, Observed, Settings, Snapshot, Totals};

/// Minutes of arrivals the host keeps (the length of `arrivals.per-minute`).
pub const ARRIVAL_MINUTES: usize = 60;
/// Hours of arrivals the host keeps (the length of `arrivals.per-hour`).
pub const ARRIVAL_HOURS: usize = 168;

/// Builds a [`Snapshot`] the way the host would send it: pods packed in the
/// contract's layout, totals summed from them, arrival lists of the host's
/// lengths. Start with [`Snapshot::builder`].
///
/// ```
/// use wicket_policy_sdk::{Pod, Snapshot};
///
/// let snapshot = Snapshot::builder()
///     .tickets_max(2)
///     .tickets_spare(1)
///     .pods_max(4)
///     .pod(Pod::ready(1).capacity(2).tickets(1))
///     .pod(Pod::starting(2).capacity(2))
///     .waiting(3)
///     .unix_seconds(1_764_806_400) // 2025-12-04T00:00Z, a Thursday
///     .utc_offset_seconds(3600)
///     .build();
/// assert_eq!(snapshot.totals().free_tickets, 1);
/// assert_eq!(snapshot.clock().local_hour(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SnapshotBuilder {
    settings: Settings,
    clock: Clock,
    pods: Vec<Pod>,
    extra_pod_words: u32,
    totals: Option<Totals>,
    waiting: u32,
    per_minute: Vec<u32>,
    per_hour: Vec<u32>,
    observed: Observed,
}

impl SnapshotBuilder {
    /// All settings at once.
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// `tickets.max`: tickets per pod (it does not change the capacity of
    /// the pods given: set that on each [`Pod`]).
    #[must_use]
    pub fn tickets_max(mut self, tickets: u32) -> Self {
        self.settings.tickets_max = tickets;
        self
    }

    /// `tickets.spare`: free tickets to keep.
    #[must_use]
    pub fn tickets_spare(mut self, tickets: u32) -> Self {
        self.settings.tickets_spare = tickets;
        self
    }

    /// `pods.max`: most autoscaled pods.
    #[must_use]
    pub fn pods_max(mut self, pods: u32) -> Self {
        self.settings.pods_max = pods;
        self
    }

    /// `pods.cooldown` in seconds.
    #[must_use]
    pub fn cooldown_seconds(mut self, seconds: u32) -> Self {
        self.settings.cooldown_seconds = seconds;
        self
    }

    /// The policy's config string.
    #[must_use]
    pub fn config(mut self, config: impl Into<String>) -> Self {
        self.settings.config = config.into();
        self
    }

    /// The clock, in seconds since 1970-01-01T00:00Z.
    #[must_use]
    pub fn unix_seconds(mut self, seconds: u64) -> Self {
        self.clock.unix_seconds = seconds;
        self
    }

    /// The app's local time minus UTC, in seconds.
    #[must_use]
    pub fn utc_offset_seconds(mut self, seconds: i32) -> Self {
        self.clock.utc_offset_seconds = seconds;
        self
    }

    /// The clock at a local date and time (proleptic Gregorian) in a zone
    /// `utc_offset_seconds` ahead of UTC, as the Python and JavaScript
    /// builders' `at("2026-12-07 09:00", 3600)`: sets both the unix
    /// seconds and the offset. A time before 1970 UTC reads as 1970.
    ///
    /// ```
    /// use wicket_policy_sdk::{Snapshot, Weekday};
    ///
    /// let s = Snapshot::builder().at_local(2026, 12, 7, 9, 30, 3600).build();
    /// assert_eq!(s.clock().unix_seconds, 1_796_632_200); // 08:30 UTC
    /// assert_eq!(s.clock().local_weekday(), Weekday::Monday);
    /// assert_eq!(s.clock().local_minute_of_day(), 9 * 60 + 30);
    /// ```
    #[must_use]
    pub fn at_local(
        mut self,
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        utc_offset_seconds: i32,
    ) -> Self {
        let local = days_from_civil(year, month, day) * 86_400
            + i64::from(hour) * 3600
            + i64::from(minute) * 60;
        self.clock = Clock {
            unix_seconds: u64::try_from(local - i64::from(utc_offset_seconds)).unwrap_or(0),
            utc_offset_seconds,
        };
        self
    }

    /// Appends a pod (pods are sent in the order given).
    #[must_use]
    pub fn pod(mut self, pod: Pod) -> Self {
        self.pods.push(pod);
        self
    }

    /// Appends pods.
    #[must_use]
    pub fn pods(mut self, pods: impl IntoIterator<Item = Pod>) -> Self {
        self.pods.extend(pods);
        self
    }

    /// Sends each pod with `words` more words than this contract version
    /// knows, as a later host may: a policy must still read them right.
    #[must_use]
    pub fn extra_pod_words(mut self, words: u32) -> Self {
        self.extra_pod_words = words;
        self
    }

    /// Users waiting in the queue.
    #[must_use]
    pub fn waiting(mut self, users: u32) -> Self {
        self.waiting = users;
        self
    }

    /// Arrivals per minute, oldest first, the current minute last. Fewer
    /// than 60 are padded with zeros in front (older minutes); of more, the
    /// last 60 are kept.
    #[must_use]
    pub fn arrivals_per_minute(mut self, counts: &[u32]) -> Self {
        self.per_minute = counts.to_vec();
        self
    }

    /// Arrivals per hour, oldest first, the current hour last; padded or cut
    /// to 168 like [`SnapshotBuilder::arrivals_per_minute`].
    #[must_use]
    pub fn arrivals_per_hour(mut self, counts: &[u32]) -> Self {
        self.per_hour = counts.to_vec();
        self
    }

    /// What the host observed.
    #[must_use]
    pub fn observed(mut self, observed: Observed) -> Self {
        self.observed = observed;
        self
    }

    /// Observed pod start-up time, median and 90th percentile in ms.
    #[must_use]
    pub fn startup_ms(mut self, median: u32, p90: u32) -> Self {
        self.observed.startup_median_ms = Some(median);
        self.observed.startup_p90_ms = Some(p90);
        self
    }

    /// Observed session length, median and 90th percentile in seconds.
    #[must_use]
    pub fn session_seconds(mut self, median: u32, p90: u32) -> Self {
        self.observed.session_median_seconds = Some(median);
        self.observed.session_p90_seconds = Some(p90);
        self
    }

    /// How long the first user in the queue has waited, in ms.
    #[must_use]
    pub fn longest_wait_ms(mut self, ms: u32) -> Self {
        self.observed.longest_wait_ms = ms;
        self
    }

    /// Sends these totals instead of the sums over the pods (to test a
    /// policy that reads them against an inconsistent host, say).
    #[must_use]
    pub fn totals(mut self, totals: Totals) -> Self {
        self.totals = Some(totals);
        self
    }

    /// The snapshot, as the host would send it.
    pub fn build(self) -> Snapshot {
        let pod_words = KNOWN_POD_WORDS.saturating_add(self.extra_pod_words);
        let mut bytes = Vec::with_capacity(self.pods.len() * pod_words as usize * 4);
        for pod in &self.pods {
            pod::encode(&mut bytes, pod, self.extra_pod_words);
        }
        Snapshot {
            settings: self.settings,
            clock: self.clock,
            pod_words,
            pods: bytes,
            totals: self
                .totals
                .unwrap_or_else(|| Totals::of(self.pods.iter().copied())),
            waiting: self.waiting,
            arrivals: Arrivals {
                per_minute: fit(self.per_minute, ARRIVAL_MINUTES),
                per_hour: fit(self.per_hour, ARRIVAL_HOURS),
            },
            observed: self.observed,
        }
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`; a date crate for one function in a
/// guest SDK would not pay its way).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Snapshot {
    /// The snapshot a `wicket:policy@0.1.0` host sends, as this SDK's: 0.1
    /// packs six `u32` words per pod (id, capacity, tickets, phase,
    /// autoscaled, idle seconds: 0.2's first six) and has no clock,
    /// arrivals, observed times or pod ages: they read as zero (the arrival
    /// lists as empty). For a component that still exports 0.1: one pass
    /// that packs the pods as 0.2 bytes and sums the totals, one
    /// allocation. Words after the last whole pod are ignored.
    pub fn from_0_1(settings: Settings, pod_words: &[u32], waiting: u32) -> Self {
        let pods_0_1 = pod_words.as_chunks::<6>().0;
        let mut bytes = Vec::with_capacity(pods_0_1.len() * KNOWN_POD_WORDS as usize * 4);
        let mut totals = Totals::default();
        for &[id, capacity, tickets, phase, autoscaled, idle_seconds] in pods_0_1 {
            let pod = Pod {
                id,
                capacity,
                tickets,
                phase: crate::Phase::from_word(phase),
                autoscaled: autoscaled != 0,
                idle_seconds,
                age_seconds: 0,
            };
            totals.add(&pod);
            pod::encode(&mut bytes, &pod, 0);
        }
        Snapshot {
            settings,
            clock: Clock::default(),
            pod_words: KNOWN_POD_WORDS,
            pods: bytes,
            totals,
            waiting,
            arrivals: Arrivals::default(),
            observed: Observed::default(),
        }
    }
}

/// The last `len` counts, padded with zeros in front.
fn fit(counts: Vec<u32>, len: usize) -> Vec<u32> {
    let kept = &counts[counts.len().saturating_sub(len)..];
    let mut out = vec![0; len - kept.len()];
    out.extend_from_slice(kept);
    out
}
