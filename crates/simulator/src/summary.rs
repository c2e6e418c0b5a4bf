//! What a run produced: the per-policy summary (users, waits, cost, faults)
//! and the timeline the report plots.

use std::fmt::Write as _;

use serde::Serialize;

use wicket_policy_runtime::FaultCounts;

/// Most points a timeline keeps: enough for a plot, small for a long run.
const TIMELINE_POINTS: u64 = 1200;

/// The state at one point of the timeline: the highest value of each count
/// within the point's interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Pods starting (creation asked for, not ready yet).
    pub starting: u32,
    /// Pods ready.
    pub ready: u32,
    /// Pods draining.
    pub draining: u32,
    /// Tickets in use.
    pub tickets: u32,
    /// Users waiting.
    pub waiting: u32,
}

impl Point {
    fn max(self, o: Point) -> Point {
        Point {
            starting: self.starting.max(o.starting),
            ready: self.ready.max(o.ready),
            draining: self.draining.max(o.draining),
            tickets: self.tickets.max(o.tickets),
            waiting: self.waiting.max(o.waiting),
        }
    }
}

/// Counts over time in fixed intervals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// Interval of one point, in ms.
    pub step_ms: u64,
    /// One point per interval from the start.
    pub points: Vec<Point>,
    #[serde(skip)]
    last: Point,
}

impl Timeline {
    /// An empty timeline for a run of `end_ms`, no finer than `tick_ms`.
    pub fn new(end_ms: u64, tick_ms: u64) -> Self {
        let step = (end_ms / TIMELINE_POINTS).max(tick_ms).max(1);
        // Whole seconds read better on the axis.
        let step_ms = step.div_ceil(1000) * 1000;
        Self {
            step_ms,
            points: Vec::new(),
            last: Point::default(),
        }
    }

    /// The counts became `p` at `now_ms`.
    pub fn observe(&mut self, now_ms: u64, p: Point) {
        let i = (now_ms / self.step_ms) as usize;
        // Quiet intervals keep the last state.
        while self.points.len() <= i {
            self.points.push(self.last);
        }
        self.points[i] = self.points[i].max(p);
        self.last = p;
    }
}

/// The summary of one policy's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The policy's name (`default` or the file's name, with its config).
    pub policy: String,
    /// The policy as given (`default` or the file's path, with its config).
    pub source: String,
    /// Users who arrived.
    pub users: u64,
    /// Users still without a slot at the end (their wait counts up to the end).
    pub unserved: u64,
    /// Share of users who did not get a slot at once (0–1).
    pub waited_share: f64,
    /// Median wait, seconds.
    pub wait_p50_s: f64,
    /// 95th percentile wait, seconds.
    pub wait_p95_s: f64,
    /// 99th percentile wait, seconds.
    pub wait_p99_s: f64,
    /// Longest wait, seconds.
    pub wait_max_s: f64,
    /// Pod-hours: every pod (replicas included) from its creation request
    /// until its deletion, the cost.
    pub pod_hours: f64,
    /// Most pods at once (any phase).
    pub peak_pods: u32,
    /// Pods the policy created.
    pub pods_created: u64,
    /// Pods the policy deleted.
    pub pods_deleted: u64,
    /// Policy calls that trapped, timed out, ran out of memory or failed to
    /// instantiate.
    pub policy_faults: u64,
    /// Decisions refused because they broke an invariant.
    pub rejected_decisions: u64,
    /// Decisions answered by the fallback policy after a fault.
    pub fallbacks: u64,
    /// The first fault, if any.
    pub first_fault: Option<String>,
    /// Approved decisions the serverlist refused (always 0 unless the
    /// invariant checks and the serverlist disagree: a host bug).
    pub issue_errors: u64,
}

/// A run's summary with what the report plots.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The numbers.
    pub summary: Summary,
    /// Counts over time.
    pub timeline: Timeline,
    /// Every user's wait in ms, sorted.
    pub waits_ms: Vec<u64>,
}

/// The `q`-quantile (nearest rank) of sorted values, in seconds.
fn quantile_s(sorted_ms: &[u64], q: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms[rank.clamp(1, sorted_ms.len()) - 1] as f64 / 1000.0
}

impl Outcome {
    /// Builds the summary (the policy's name and source are filled in by
    /// the caller).
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, the engine's finish"
    )]
    pub(super) fn new(
        mut waits_ms: Vec<u64>,
        unserved: u64,
        pod_ms: u128,
        peak_pods: u32,
        pods_created: u64,
        pods_deleted: u64,
        issue_errors: u64,
        faults: FaultCounts,
        timeline: Timeline,
    ) -> Self {
        waits_ms.sort_unstable();
        let users = waits_ms.len() as u64;
        let waited = waits_ms.iter().filter(|&&w| w > 0).count();
        let summary = Summary {
            policy: String::new(),
            source: String::new(),
            users,
            unserved,
            waited_share: if users == 0 {
                0.0
            } else {
                waited as f64 / users as f64
            },
            wait_p50_s: quantile_s(&waits_ms, 0.50),
            wait_p95_s: quantile_s(&waits_ms, 0.95),
            wait_p99_s: quantile_s(&waits_ms, 0.99),
            wait_max_s: waits_ms.last().map_or(0.0, |&w| w as f64 / 1000.0),
            pod_hours: pod_ms as f64 / 3_600_000.0,
            peak_pods,
            pods_created,
            pods_deleted,
            policy_faults: faults.failed_calls,
            rejected_decisions: faults.rejected,
            fallbacks: faults.fallbacks,
            first_fault: faults.first,
            issue_errors,
        };
        Self {
            summary,
            timeline,
            waits_ms,
        }
    }
}

/// A duration in seconds, short: `0s`, `12.3s`, `4m05s`, `1h02m`.
pub fn human(secs: f64) -> String {
    if secs < 60.0 {
        if secs == secs.trunc() {
            format!("{secs:.0}s")
        } else {
            format!("{secs:.1}s")
        }
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// The summaries as a text table, one row per policy.
pub fn table(summaries: &[Summary]) -> String {
    let headers = [
        "policy",
        "users",
        "waited",
        "p50",
        "p95",
        "p99",
        "max",
        "unserved",
        "pod-h",
        "peak pods",
        "faults",
        "rejected",
    ];
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.policy.clone(),
                s.users.to_string(),
                format!("{:.1}%", s.waited_share * 100.0),
                human(s.wait_p50_s),
                human(s.wait_p95_s),
                human(s.wait_p99_s),
                human(s.wait_max_s),
                s.unserved.to_string(),
                format!("{:.1}", s.pod_hours),
                s.peak_pods.to_string(),
                s.policy_faults.to_string(),
                s.rejected_decisions.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([headers[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        for (c, cell) in cells.iter().enumerate() {
            if c == 0 {
                let _ = write!(out, "{cell:<w$}", w = widths[c]);
            } else {
                let _ = write!(out, "  {cell:>w$}", w = widths[c]);
            }
        }
        out.push('\n');
    };
    line(
        &mut out,
        &headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    for r in &rows {
        line(&mut out, r);
    }
    for note in summaries.iter().filter_map(fault_note) {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// What a policy's first fault means for its figures, and for a memory
/// fault the option that lifts the cap; None without a fault.
pub fn fault_note(s: &Summary) -> Option<String> {
    let f = s.first_fault.as_deref()?;
    // As in the host, a policy that faults is retired: the default decided
    // the rest of the run, which a bare fault count does not tell.
    let hint = if f.contains("memory limit") {
        " Give it more with --memory-mib."
    } else {
        ""
    };
    Some(format!(
        "{}: first fault: {f}. It was retired then, as the host would retire it, and the default \
         policy took every later decision: its figures are partly the default's.{hint}",
        s.policy
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|s| s * 1000).collect();
        assert_eq!(quantile_s(&v, 0.5), 50.0);
        assert_eq!(quantile_s(&v, 0.99), 99.0);
        assert_eq!(quantile_s(&[], 0.5), 0.0);
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(human(0.0), "0s");
        assert_eq!(human(12.34), "12.3s");
        assert_eq!(human(245.0), "4m05s");
        assert_eq!(human(3720.0), "1h02m");
    }

    #[test]
    fn quiet_intervals_keep_the_last_state() {
        let mut t = Timeline::new(10_000, 1000);
        let p = |w| Point {
            waiting: w,
            ..Point::default()
        };
        t.observe(0, p(3));
        t.observe(500, p(1));
        t.observe(3500, p(0));
        let w: Vec<u32> = t.points.iter().map(|p| p.waiting).collect();
        assert_eq!(w, vec![3, 1, 1, 1]);
    }
}
