//! The HTML report: one self-contained page (inline SVG and CSS, no
//! external assets) comparing policies side by side on the same traffic.
//!
//! The SVG is written by hand: the plots are step lines, stacked areas and
//! bars on linear axes, a few dozen lines here, where a plotting crate would
//! bring a font stack and a larger dependency tree into the host binary.

use std::fmt::Write as _;

use super::ScenarioInfo;
use super::summary::{Outcome, Point, human};

const W: f64 = 520.0;
const H: f64 = 210.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 26.0;

/// A plotted quantity: its colour and how to read it from a point.
type Series = (&'static str, fn(&Point) -> u32);

/// Wait buckets of the distribution plot: (upper bound in s, label).
const WAIT_BUCKETS: &[(f64, &str)] = &[
    (0.0, "0"),
    (10.0, "≤10s"),
    (30.0, "≤30s"),
    (60.0, "≤1m"),
    (120.0, "≤2m"),
    (300.0, "≤5m"),
    (600.0, "≤10m"),
    (1800.0, "≤30m"),
    (f64::INFINITY, ">30m"),
];

const READY: &str = "#2e7d32";
const STARTING: &str = "#f9a825";
const DRAINING: &str = "#9e9e9e";
const TICKETS: &str = "#1565c0";
const WAITING: &str = "#c62828";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// 1, 2 or 5 times a power of ten, at least `v` (and at least 1).
fn nice(v: f64) -> f64 {
    let v = v.max(1.0);
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

/// The plotting area of one chart.
struct Frame {
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.x_max.max(1e-9) * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - v / self.y_max.max(1e-9) * (H - TOP - BOTTOM)
    }

    /// Grid, y labels, and the x labels given as (x value, label).
    fn axes(&self, out: &mut String, x_ticks: &[(f64, String)], y_unit: &str) {
        // 1, 5 and 10 ·10^k divide into fifths, 2 ·10^k into quarters.
        let lead = self.y_max / 10f64.powf(self.y_max.log10().floor());
        let parts = if (lead - 2.0).abs() < 1e-9 { 4 } else { 5 };
        for i in 0..=parts {
            let v = self.y_max * f64::from(i) / f64::from(parts);
            let y = self.y(v);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}{y_unit}</text>"##,
                W - RIGHT,
                LEFT - 4.0,
                y + 4.0,
                if self.y_max >= 5.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            );
        }
        for (v, label) in x_ticks {
            let x = self.x(*v);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="#eeeeee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                H - BOTTOM,
                H - BOTTOM + 15.0,
                esc(label)
            );
        }
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{:.1}" stroke="#555"/><line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#555"/>"##,
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM,
            H - BOTTOM
        );
    }
}

fn svg_open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img"><title>{}</title>"#,
        esc(title)
    );
}

/// Time ticks: hours for short runs, days (by weekday) for long ones.
fn time_ticks(
    duration_s: f64,
    start_unix_ms: i64,
    zone: &jiff::tz::TimeZone,
) -> Vec<(f64, String)> {
    let hour = 3600.0;
    let (step, by_day) = match duration_s {
        d if d <= 3.0 * hour => (15.0 * 60.0, false),
        d if d <= 12.0 * hour => (hour, false),
        d if d <= 2.0 * 86_400.0 => (4.0 * hour, false),
        _ => (86_400.0, true),
    };
    let start_s = start_unix_ms as f64 / 1000.0;
    // The first tick on a whole step of the local clock (the offset at the
    // start: a daylight saving change shifts later ticks by an hour).
    let offset_s = jiff::Timestamp::from_millisecond(start_unix_ms)
        .map(|t| f64::from(zone.to_offset(t).seconds()))
        .unwrap_or(0.0);
    let local_start = start_s + offset_s;
    let first = (local_start / step).ceil() * step - local_start;
    let mut ticks = Vec::new();
    let mut t = first;
    while t <= duration_s && ticks.len() < 16 {
        let clock = jiff::Timestamp::from_second((start_s + t) as i64)
            .map(|ts| ts.to_zoned(zone.clone()))
            .ok();
        let label = match clock {
            Some(z) if by_day => z.strftime("%a").to_string(),
            Some(z) => z.strftime("%H:%M").to_string(),
            None => human(t),
        };
        ticks.push((t, label));
        t += step;
    }
    ticks
}

/// A step line or the top of a stacked band, as SVG points.
fn steps(frame: &Frame, step_s: f64, values: impl Iterator<Item = f64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for (i, v) in values.enumerate() {
        let (x0, x1) = (i as f64 * step_s, (i + 1) as f64 * step_s);
        pts.push((frame.x(x0.min(frame.x_max)), frame.y(v)));
        pts.push((frame.x(x1.min(frame.x_max)), frame.y(v)));
    }
    pts
}

fn points_attr(pts: &[(f64, f64)]) -> String {
    let mut s = String::with_capacity(pts.len() * 12);
    for (x, y) in pts {
        let _ = write!(s, "{x:.1},{y:.1} ");
    }
    s
}

/// Stacked bands of pods by phase.
fn pods_chart(o: &Outcome, frame: &Frame, ticks: &[(f64, String)]) -> String {
    let mut out = String::new();
    svg_open(&mut out, &format!("{}: pods by phase", o.summary.policy));
    frame.axes(&mut out, ticks, "");
    let step_s = o.timeline.step_ms as f64 / 1000.0;
    let layers: [Series; 3] = [
        (READY, |p| p.ready),
        (STARTING, |p| p.ready + p.starting),
        (DRAINING, |p| p.ready + p.starting + p.draining),
    ];
    let mut below = steps(frame, step_s, o.timeline.points.iter().map(|_| 0.0));
    for (colour, top) in layers {
        let upper = steps(
            frame,
            step_s,
            o.timeline.points.iter().map(|p| f64::from(top(p))),
        );
        let mut poly = upper.clone();
        poly.extend(below.iter().rev());
        let _ = write!(
            out,
            r#"<polygon points="{}" fill="{colour}" fill-opacity="0.8" stroke="none"/>"#,
            points_attr(&poly)
        );
        below = upper;
    }
    out.push_str("</svg>");
    out
}

/// Tickets in use and users waiting.
fn load_chart(o: &Outcome, frame: &Frame, ticks: &[(f64, String)]) -> String {
    let mut out = String::new();
    svg_open(
        &mut out,
        &format!("{}: tickets and waiting users", o.summary.policy),
    );
    frame.axes(&mut out, ticks, "");
    let step_s = o.timeline.step_ms as f64 / 1000.0;
    let series: [Series; 2] = [(TICKETS, |p| p.tickets), (WAITING, |p| p.waiting)];
    for (colour, value) in series {
        let pts = steps(
            frame,
            step_s,
            o.timeline.points.iter().map(|p| f64::from(value(p))),
        );
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.4"/>"#,
            points_attr(&pts)
        );
    }
    out.push_str("</svg>");
    out
}

/// Shares of users per wait bucket.
fn wait_shares(o: &Outcome) -> Vec<f64> {
    let n = o.waits_ms.len().max(1) as f64;
    let mut counts = vec![0usize; WAIT_BUCKETS.len()];
    for &w in &o.waits_ms {
        let s = w as f64 / 1000.0;
        let i = WAIT_BUCKETS
            .iter()
            .position(|(bound, _)| s <= *bound)
            .unwrap_or(WAIT_BUCKETS.len() - 1);
        counts[i] += 1;
    }
    counts.iter().map(|&c| c as f64 / n * 100.0).collect()
}

fn wait_chart(o: &Outcome, y_max: f64) -> String {
    let mut out = String::new();
    svg_open(
        &mut out,
        &format!("{}: wait distribution", o.summary.policy),
    );
    let frame = Frame {
        x_max: WAIT_BUCKETS.len() as f64,
        y_max,
    };
    let ticks: Vec<(f64, String)> = WAIT_BUCKETS
        .iter()
        .enumerate()
        .map(|(i, (_, label))| (i as f64 + 0.5, (*label).to_owned()))
        .collect();
    frame.axes(&mut out, &ticks, "%");
    for (i, share) in wait_shares(o).iter().enumerate() {
        let (x0, x1) = (frame.x(i as f64 + 0.15), frame.x(i as f64 + 0.85));
        let (y, base) = (frame.y(*share), frame.y(0.0));
        let _ = write!(
            out,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{share:.1}%</title></rect>"#,
            x1 - x0,
            base - y,
            if i == 0 { READY } else { WAITING }
        );
    }
    out.push_str("</svg>");
    out
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}\
td:first-child,th:first-child{text-align:left}\
.grid{display:grid;gap:16px}.grid figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}\
svg{width:100%;height:auto;font-size:10px;fill:#444}\
.key span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\
.muted{color:#666}";

fn key(items: &[(&str, &str)]) -> String {
    let mut s = String::from(r#"<p class="key">"#);
    for (colour, label) in items {
        let _ = write!(s, r#"<span style="background:{colour}"></span>{label}"#);
    }
    s.push_str("</p>");
    s
}

fn row(out: &mut String, outcomes: &[Outcome], chart: impl Fn(&Outcome) -> String) {
    let _ = write!(
        out,
        r#"<div class="grid" style="grid-template-columns:repeat({},minmax(0,1fr))">"#,
        outcomes.len().max(1)
    );
    for o in outcomes {
        let _ = write!(
            out,
            "<figure><figcaption>{}</figcaption>{}</figure>",
            esc(&o.summary.policy),
            chart(o)
        );
    }
    out.push_str("</div>");
}

/// The report comparing `outcomes` (same scenario, one per policy).
pub fn html(info: &ScenarioInfo, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>wicket simulate</title><style>{STYLE}</style></head><body><h1>wicket simulate</h1>"
    );
    let _ = write!(
        out,
        "<p>{}<br><span class=\"muted\">{} users from {} over {}; tickets.max {}, tickets.spare {}, pods.max {}, cooldown {} s, {} replicas, start-up {}, ticket expiry {} s, timer round {} s{}</span></p>",
        esc(&info.traffic),
        info.users,
        esc(&info.start),
        human(info.duration_s),
        info.tickets_max,
        info.tickets_spare,
        info.pods_max,
        info.cooldown_s,
        info.replicas,
        esc(&info.startup),
        info.expiry_s,
        info.tick_s,
        if info.policy_config.is_empty() {
            String::new()
        } else {
            format!(", policy config \"{}\"", esc(&info.policy_config))
        }
    );
    out.push_str("<h2>Summary</h2><table><tr><th>policy</th><th>users</th><th>waited</th><th>wait p50</th><th>p95</th><th>p99</th><th>max</th><th>unserved</th><th>pod-hours</th><th>peak pods</th><th>created</th><th>deleted</th><th>faults</th><th>rejected</th></tr>");
    for o in outcomes {
        let s = &o.summary;
        let _ = write!(
            out,
            "<tr><td title=\"{}\">{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.source),
            esc(&s.policy),
            s.users,
            s.waited_share * 100.0,
            human(s.wait_p50_s),
            human(s.wait_p95_s),
            human(s.wait_p99_s),
            human(s.wait_max_s),
            s.unserved,
            s.pod_hours,
            s.peak_pods,
            s.pods_created,
            s.pods_deleted,
            s.policy_faults,
            s.rejected_decisions
        );
    }
    out.push_str("</table>");
    for note in outcomes
        .iter()
        .filter_map(|o| crate::summary::fault_note(&o.summary))
    {
        let _ = write!(out, "<p>{}</p>", esc(&note));
    }
    // One scale per plot across policies, so the pictures compare.
    let peak = |f: fn(&Point) -> u32| {
        outcomes
            .iter()
            .flat_map(|o| o.timeline.points.iter().map(f))
            .max()
            .unwrap_or(0)
    };
    // The name came from `--timezone`, checked then.
    let zone = wicket_state::zone(&info.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let ticks = time_ticks(info.duration_s, info.start_unix_ms, &zone);
    let pods = Frame {
        x_max: info.duration_s,
        y_max: nice(f64::from(peak(|p| p.ready + p.starting + p.draining))),
    };
    let load = Frame {
        x_max: info.duration_s,
        y_max: nice(f64::from(peak(|p| p.tickets.max(p.waiting)))),
    };
    out.push_str("<h2>Pods by phase</h2>");
    out.push_str(&key(&[
        (READY, "ready"),
        (STARTING, "starting"),
        (DRAINING, "draining"),
    ]));
    row(&mut out, outcomes, |o| pods_chart(o, &pods, &ticks));
    out.push_str("<h2>Tickets in use and users waiting</h2>");
    out.push_str(&key(&[
        (TICKETS, "tickets in use"),
        (WAITING, "users waiting"),
    ]));
    row(&mut out, outcomes, |o| load_chart(o, &load, &ticks));
    out.push_str("<h2>Wait before a slot (share of users)</h2>");
    let wait_max = nice(outcomes.iter().flat_map(wait_shares).fold(0.0, f64::max)).min(100.0);
    row(&mut out, outcomes, |o| wait_chart(o, wait_max));
    let _ = write!(
        out,
        "<p class=\"muted\">Each point of the time plots is the highest value within {} of simulated time ({} clock). Generated by <code>wicket simulate</code>.</p></body></html>",
        outcomes.first().map_or("0s".to_owned(), |o| human(
            o.timeline.step_ms as f64 / 1000.0
        )),
        esc(&info.timezone)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_scales_round_up() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(37.0), 50.0);
        assert_eq!(nice(100.0), 100.0);
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
