//! The snapshot: everything a decision may use, as the host sent it.
//!
//! [`Snapshot`] owns the buffers the host's call lifted into the guest (the
//! packed pods, the arrival counts, the config string) and reads them in
//! place: walking the pods decodes each one from the bytes as it goes, and
//! nothing is copied. The same type is built natively by
//! [`Snapshot::builder`] for tests.

use std::cmp::Reverse;

use crate::pod::{Phase, Pod, Pods};

/// The app's settings, from its Deployment annotations (or the demo config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Tickets (users) per pod: `tickets.max`.
    pub tickets_max: u32,
    /// Free tickets to keep available in advance: `tickets.spare`.
    pub tickets_spare: u32,
    /// Most autoscaled pods that may exist at once, in any phase: `pods.max`.
    pub pods_max: u32,
    /// Seconds an autoscaled pod must be idle before it may be deleted:
    /// `pods.cooldown`.
    pub cooldown_seconds: u32,
    /// The policy's own parameters (`wicket.dev/policy-config`); empty means
    /// "use your defaults". A policy must accept any string (see
    /// [`Settings::config_value`] for the `key=value` convention).
    pub config: String,
}

impl Default for Settings {
    /// The host's defaults: one ticket per pod, two spare, at most one
    /// autoscaled pod, a 10 s cooldown, no config.
    fn default() -> Self {
        Self {
            tickets_max: 1,
            tickets_spare: 2,
            pods_max: 1,
            cooldown_seconds: 10,
            config: String::new(),
        }
    }
}

impl Settings {
    /// The value of `key` in a config of `key=value` items separated by
    /// commas, semicolons or white space (`"idle_seconds=300, spare=4"`);
    /// the last occurrence wins, keys are case-sensitive. A convention, not
    /// part of the contract: a policy may read `config` any way it likes, but
    /// must not fail on a string it cannot read.
    ///
    /// ```
    /// let settings = wicket_policy_sdk::Settings {
    ///     config: "idle_seconds=300; spare = 4".into(),
    ///     ..Default::default()
    /// };
    /// let idle: u32 = settings
    ///     .config_value("idle_seconds")
    ///     .and_then(|v| v.parse().ok())
    ///     .unwrap_or(600);
    /// assert_eq!(idle, 300);
    /// assert_eq!(settings.config_value("spare"), None, "no blanks around `=`");
    /// ```
    pub fn config_value(&self, key: &str) -> Option<&str> {
        self.config
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter_map(|item| item.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, value)| value)
            .next_back()
    }
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    /// Day 0 of the week (weeks start on Monday, ISO 8601).
    Monday,
    /// Day 1.
    Tuesday,
    /// Day 2.
    Wednesday,
    /// Day 3.
    Thursday,
    /// Day 4.
    Friday,
    /// Day 5.
    Saturday,
    /// Day 6.
    Sunday,
}

impl Weekday {
    /// Monday to Sunday.
    pub const ALL: [Self; 7] = [
        Self::Monday,
        Self::Tuesday,
        Self::Wednesday,
        Self::Thursday,
        Self::Friday,
        Self::Saturday,
        Self::Sunday,
    ];

    /// Days since Monday (0 to 6).
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The day `index` days after Monday, modulo 7.
    pub const fn from_index(index: u32) -> Self {
        Self::ALL[(index % 7) as usize]
    }

    /// Reads `mon`, `Monday`, `TUE`… (English, any case, three letters or
    /// the whole name).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|day| {
            let full = format!("{day:?}").to_ascii_lowercase();
            name == full || (name.len() == 3 && full.starts_with(&name))
        })
    }
}

/// The time of the decision: the wall clock in the live host, simulated time
/// in `wicket simulate` and `wicket policy test`. Read the time here, never
/// from the system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Clock {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_seconds: u64,
    /// The app's local time minus UTC, in seconds (e.g. 3600 for
    /// Europe/Berlin in winter), from the time zone the app names.
    pub utc_offset_seconds: i32,
}

impl Clock {
    /// Seconds since 1970-01-01T00:00:00 local time (`unix + offset`).
    pub const fn local_seconds(&self) -> i64 {
        // A u64 of seconds beyond i64::MAX is 292 billion years away.
        (self.unix_seconds as i64).saturating_add(self.utc_offset_seconds as i64)
    }

    /// Local days since 1970-01-01 (a Thursday).
    pub const fn local_days(&self) -> i64 {
        self.local_seconds().div_euclid(86_400)
    }

    /// The local day of the week.
    pub const fn local_weekday(&self) -> Weekday {
        // 1970-01-01 was a Thursday: day 3 of a week starting on Monday.
        Weekday::from_index((self.local_days() + 3).rem_euclid(7) as u32)
    }

    /// Seconds since local midnight (0 to 86,399).
    pub const fn local_second_of_day(&self) -> u32 {
        self.local_seconds().rem_euclid(86_400) as u32
    }

    /// Minutes since local midnight (0 to 1,439).
    pub const fn local_minute_of_day(&self) -> u32 {
        self.local_second_of_day() / 60
    }

    /// The local hour (0 to 23).
    pub const fn local_hour(&self) -> u32 {
        self.local_second_of_day() / 3600
    }

    /// Minutes since Monday 00:00 local time (0 to 10,079): one number to
    /// compare against weekly windows.
    pub const fn local_minute_of_week(&self) -> u32 {
        self.local_weekday().index() * 1440 + self.local_minute_of_day()
    }
}

/// Users who asked for a ticket, counted once each when they first ask,
/// in buckets aligned to whole UTC minutes and hours. The last bucket is the
/// current, still filling one. One client (address) counts at most its
/// `places_per_client` a minute, so one that joins and leaves in a loop
/// cannot inflate the rate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arrivals {
    pub(crate) per_minute: Vec<u32>,
    pub(crate) per_hour: Vec<u32>,
}

impl Arrivals {
    /// Arrivals per minute over the last 60 minutes, oldest first, the
    /// current minute last.
    pub fn per_minute(&self) -> &[u32] {
        &self.per_minute
    }

    /// Arrivals per hour over the last 7 days (168 hours), oldest first, the
    /// current hour last.
    pub fn per_hour(&self) -> &[u32] {
        &self.per_hour
    }

    /// Arrivals so far in the current minute (0 without history).
    pub fn this_minute(&self) -> u32 {
        self.per_minute.last().copied().unwrap_or(0)
    }

    /// Arrivals `minutes` minutes ago (0 is the current minute so far).
    pub fn minutes_ago(&self, minutes: usize) -> Option<u32> {
        ago(&self.per_minute, minutes)
    }

    /// Arrivals `hours` hours ago (0 is the current hour so far; 167 is the
    /// oldest kept, the hour after this one a week ago).
    pub fn hours_ago(&self, hours: usize) -> Option<u32> {
        ago(&self.per_hour, hours)
    }

    /// Users per minute, averaged over the last `minutes` complete minutes
    /// (the current, still filling minute is left out; at most 59 minutes
    /// are available). 0 when there is nothing to average.
    pub fn per_minute_rate(&self, minutes: usize) -> f64 {
        complete_rate(&self.per_minute, minutes)
    }

    /// Users per hour, averaged over the last `hours` complete hours (the
    /// current hour is left out). 0 when there is nothing to average.
    pub fn per_hour_rate(&self, hours: usize) -> f64 {
        complete_rate(&self.per_hour, hours)
    }

    /// Users who arrived in the last `minutes` minutes, the current one
    /// included (`recent_minutes(1)` is this minute so far).
    pub fn recent_minutes(&self, minutes: usize) -> u64 {
        let start = self.per_minute.len().saturating_sub(minutes);
        self.per_minute[start..].iter().map(|&n| u64::from(n)).sum()
    }
}

fn ago(buckets: &[u32], back: usize) -> Option<u32> {
    buckets
        .len()
        .checked_sub(back + 1)
        .and_then(|i| buckets.get(i).copied())
}

/// The mean of the last `n` buckets before the current (last) one.
fn complete_rate(buckets: &[u32], n: usize) -> f64 {
    let complete = buckets.split_last().map_or(&[][..], |(_, rest)| rest);
    let window = &complete[complete.len().saturating_sub(n)..];
    if window.is_empty() {
        return 0.0;
    }
    let sum: u64 = window.iter().map(|&n| u64::from(n)).sum();
    sum as f64 / window.len() as f64
}

/// What the host observed of this app recently (its last 64 sessions and 16
/// pod starts); `None` until something was observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Observed {
    /// Median time from asking for a pod to its being ready, in ms.
    pub startup_median_ms: Option<u32>,
    /// 90th percentile of the same, in ms.
    pub startup_p90_ms: Option<u32>,
    /// Median time a user held a ticket, in seconds.
    pub session_median_seconds: Option<u32>,
    /// 90th percentile of the same, in seconds.
    pub session_p90_seconds: Option<u32>,
    /// How long the first user in the queue has waited, in ms (0 when
    /// nobody waits).
    pub longest_wait_ms: u32,
}

/// Sums over the pods, computed by the host (or by [`Totals::of`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Totals {
    /// Pods in phase ready.
    pub ready_pods: u32,
    /// Pods in phase starting (including pods being created).
    pub starting_pods: u32,
    /// Pods in phase draining.
    pub draining_pods: u32,
    /// Autoscaled pods in any phase (what `pods_max` limits).
    pub autoscaled_pods: u32,
    /// Tickets held by users, on all pods.
    pub tickets_in_use: u32,
    /// Free tickets on ready pods (`capacity - tickets`, summed).
    pub free_tickets: u32,
    /// Capacity of the pods still starting (tickets they will bring).
    pub starting_tickets: u32,
}

impl Totals {
    /// The sums over `pods`, as the contract defines them (saturating).
    pub fn of(pods: impl IntoIterator<Item = Pod>) -> Self {
        let mut totals = Self::default();
        for pod in pods {
            totals.add(&pod);
        }
        totals
    }

    /// Adds one pod to the sums.
    pub(crate) fn add(&mut self, pod: &Pod) {
        let count = match pod.phase {
            Phase::Ready => &mut self.ready_pods,
            Phase::Starting => &mut self.starting_pods,
            Phase::Draining => &mut self.draining_pods,
        };
        *count = count.saturating_add(1);
        if pod.autoscaled {
            self.autoscaled_pods = self.autoscaled_pods.saturating_add(1);
        }
        self.tickets_in_use = self.tickets_in_use.saturating_add(pod.tickets);
        self.free_tickets = self.free_tickets.saturating_add(pod.free_slots());
        if pod.is_starting() {
            self.starting_tickets = self.starting_tickets.saturating_add(pod.capacity);
        }
    }
}

/// Everything a decision may use (`wicket:policy@0.2.0`'s `snapshot`).
///
/// In a component, the SDK makes one from the host's call and hands your
/// [`Policy`](crate::Policy) a reference; in tests, make one with
/// [`Snapshot::builder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub(crate) settings: Settings,
    pub(crate) clock: Clock,
    pub(crate) pod_words: u32,
    pub(crate) pods: Vec<u8>,
    pub(crate) totals: Totals,
    pub(crate) waiting: u32,
    pub(crate) arrivals: Arrivals,
    pub(crate) observed: Observed,
}

impl Snapshot {
    /// A builder for tests, starting from the host's default settings, the
    /// clock at 1970-01-01T00:00Z, no pods, nobody waiting, no arrivals.
    pub fn builder() -> crate::SnapshotBuilder {
        crate::SnapshotBuilder::default()
    }

    /// The app's settings.
    #[inline]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// When the decision is taken.
    #[inline]
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Words per pod the host sent (7 or more; this SDK reads the first 7).
    pub fn pod_words(&self) -> u32 {
        self.pod_words
    }

    /// The packed pod bytes as the host sent them.
    pub fn pod_bytes(&self) -> &[u8] {
        &self.pods
    }

    /// The pods in the host's order (by name; earlier pods win ties),
    /// decoded as the iterator advances.
    #[inline]
    pub fn pods(&self) -> Pods<'_> {
        Pods::new(&self.pods, self.pod_words)
    }

    /// Ready pods (with or without free slots).
    #[inline]
    pub fn ready(&self) -> impl Iterator<Item = Pod> + '_ {
        self.pods().filter(Pod::is_ready)
    }

    /// Starting pods.
    #[inline]
    pub fn starting(&self) -> impl Iterator<Item = Pod> + '_ {
        self.pods().filter(Pod::is_starting)
    }

    /// Draining pods.
    #[inline]
    pub fn draining(&self) -> impl Iterator<Item = Pod> + '_ {
        self.pods().filter(Pod::is_draining)
    }

    /// Ready pods holding no tickets that have been idle for at least
    /// `min_seconds` (replicas included; see
    /// [`Snapshot::deletable_idle_pods`] for the ones a policy may delete).
    #[inline]
    pub fn idle(&self, min_seconds: u32) -> impl Iterator<Item = Pod> + '_ {
        self.pods()
            .filter(move |pod| pod.is_ready() && pod.is_empty() && pod.idle_seconds >= min_seconds)
    }

    /// Free tickets on ready pods (from the host's totals).
    #[inline]
    pub fn free_slots(&self) -> u32 {
        self.totals.free_tickets
    }

    /// Sums over the pods, as the host computed them.
    #[inline]
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Users waiting in the queue for a ticket.
    #[inline]
    pub fn waiting(&self) -> u32 {
        self.waiting
    }

    /// Users arriving, per minute and per hour.
    pub fn arrivals(&self) -> &Arrivals {
        &self.arrivals
    }

    /// Start-up and session times the host observed, and the longest wait.
    pub fn observed(&self) -> Observed {
        self.observed
    }

    /// The fullest ready pod with a free slot (ties: the earlier pod), or
    /// `None` if every ready pod is full. Packing users together leaves other
    /// pods idle, so they can be removed: the default policy's `assign`.
    #[inline]
    pub fn fullest_ready_pod(&self) -> Option<Pod> {
        // Carries (tickets, position) through the loop, not the whole pod:
        // a `Pod` as `min_by_key`'s accumulator went through memory on every
        // step and was 7x slower at 1,000 pods.
        let (_, position) = self
            .pods()
            .enumerate()
            .filter(|(_, pod)| pod.can_take_ticket())
            .map(|(position, pod)| (pod.tickets, position))
            // `min_by_key` keeps the first of equal elements, `max_by_key` the last.
            .min_by_key(|&(tickets, _)| Reverse(tickets))?;
        self.pods().get(position)
    }

    /// How many new pods (of `tickets_max` tickets each) cover `shortfall`
    /// tickets, within the room `pods_max` leaves beside the autoscaled pods
    /// that exist (from the totals). 0 when `tickets_max` is 0.
    #[inline]
    pub fn pods_to_cover(&self, shortfall: u64) -> u32 {
        pods_to_cover(
            shortfall,
            self.settings.tickets_max,
            self.settings.pods_max,
            self.totals.autoscaled_pods,
        )
    }

    /// The pods a policy may delete for being idle: autoscaled, ready, empty
    /// and idle for at least `cooldown_seconds`; most idle first, ties in the
    /// host's order.
    pub fn deletable_idle_pods(&self, cooldown_seconds: u32) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .idle(cooldown_seconds)
            .filter(|pod| pod.autoscaled)
            .collect();
        // Stable: equal idle times stay in the host's order.
        pods.sort_by_key(|pod| Reverse(pod.idle_seconds));
        pods
    }
}

/// How many new pods of `tickets_max` tickets cover `shortfall` tickets,
/// given `autoscaled` pods already exist and at most `pods_max` may.
#[inline]
pub fn pods_to_cover(shortfall: u64, tickets_max: u32, pods_max: u32, autoscaled: u32) -> u32 {
    // A new pod would hold no tickets: creating pods cannot help.
    if tickets_max == 0 {
        return 0;
    }
    let wanted = shortfall.div_ceil(u64::from(tickets_max));
    let room = pods_max.saturating_sub(autoscaled);
    u32::try_from(wanted).map_or(room, |wanted| wanted.min(room))
}
