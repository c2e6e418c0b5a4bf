//! The built-in traffic generator: arrivals from a weekly rate schedule (a
//! Poisson process whose rate changes by the minute of the week), session
//! lengths from a distribution, all from one seed.
//!
//! Rate schedule syntax (`--rate`): rules separated by `;`, the first rule
//! that matches a minute gives its rate, minutes no rule matches get none.
//!
//! ```text
//! Mon-Fri 09:00-10:00 300/h; Sat,Sun 0/h; * 5/h
//! ```
//!
//! A rule is `[DAYS] [HH:MM-HH:MM][:] RATE`: DAYS is `*`, a day (`Mon`), a
//! range (`Mon-Fri`) or a list (`Mon,Wed,Fri`); days and times are the
//! app's local time (`--timezone`, default UTC), the time range may end at
//! `24:00`; RATE is users per hour
//! (`300/h`), per minute (`5/min`) or per day (`1000/d`).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use super::dist::DurationDist;
use super::trace::Arrival;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u32 = 1440;
/// Minutes in a week: the rate table's length.
pub const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;

/// A bad rate schedule, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--rate, rule {rule} (`{text}`): {reason}")]
pub struct RateError {
    /// 1-based rule number.
    pub rule: usize,
    /// The rule as written.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    /// Bit d set: day d (Monday 0) matches.
    days: u8,
    /// Minutes of the day, [from, to).
    from: u32,
    to: u32,
    per_second: f64,
}

/// Users per second for every minute of the week (Monday 00:00 local first).
#[derive(Debug, Clone, PartialEq)]
pub struct RateSchedule {
    per_minute: Vec<f64>,
    text: String,
}

fn day(name: &str) -> Result<u32, String> {
    let lower = name.to_ascii_lowercase();
    // `Mon`, `mon`, `Monday`: the first three letters decide.
    DAYS.iter()
        .position(|d| lower.len() <= 9 && lower.starts_with(d))
        .map(|i| i as u32)
        .ok_or_else(|| format!("unknown day `{name}` (Mon … Sun, or *)"))
}

fn days(spec: &str) -> Result<u8, String> {
    if spec == "*" {
        return Ok(0x7f);
    }
    let mut mask = 0u8;
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                // Wraps past Sunday (e.g. Sat-Mon).
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(part)?,
        }
    }
    Ok(mask)
}

fn clock(s: &str) -> Result<u32, String> {
    let bad = || format!("`{s}` is not a time of day (HH:MM)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn rate(s: &str) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a rate (e.g. 300/h, 5/min, 1000/d)");
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let n: f64 = n.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    let per = match unit {
        "h" => 3600.0,
        "min" | "m" => 60.0,
        "d" => 86_400.0,
        _ => return Err(bad()),
    };
    Ok(n / per)
}

fn rule(text: &str) -> Result<Rule, String> {
    let tokens: Vec<&str> = text
        .split_whitespace()
        .map(|t| t.trim_end_matches(':'))
        .filter(|t| !t.is_empty())
        .collect();
    let Some((last, selectors)) = tokens.split_last() else {
        return Err("empty rule".into());
    };
    let per_second = rate(last)?;
    let (mut mask, mut from, mut to) = (None, 0, MINUTES_PER_DAY);
    for sel in selectors {
        let is_time = sel.chars().next().is_some_and(|c| c.is_ascii_digit());
        if is_time {
            let (a, b) = sel
                .split_once('-')
                .ok_or_else(|| format!("`{sel}` is not a time range (HH:MM-HH:MM)"))?;
            (from, to) = (clock(a)?, clock(b)?);
            if from >= to {
                return Err(format!("`{sel}` ends before it starts"));
            }
        } else if mask.is_none() {
            mask = Some(days(sel)?);
        } else {
            return Err(format!("`{sel}`: one day list per rule"));
        }
    }
    Ok(Rule {
        days: mask.unwrap_or(0x7f),
        from,
        to,
        per_second,
    })
}

impl RateSchedule {
    /// Parses a schedule (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, RateError> {
        let mut rules = Vec::new();
        for (i, part) in text.split(';').enumerate() {
            if part.trim().is_empty() {
                continue;
            }
            rules.push(rule(part).map_err(|reason| RateError {
                rule: i + 1,
                text: part.trim().to_owned(),
                reason,
            })?);
        }
        let per_minute = (0..MINUTES_PER_WEEK)
            .map(|m| {
                let (d, t) = (m / MINUTES_PER_DAY, m % MINUTES_PER_DAY);
                rules
                    .iter()
                    .find(|r| r.days & (1 << d) != 0 && r.from <= t && t < r.to)
                    .map_or(0.0, |r| r.per_second)
            })
            .collect();
        Ok(Self {
            per_minute,
            text: text.trim().to_owned(),
        })
    }

    /// The schedule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Users per second in minute `m` of the week (Monday 00:00 local is 0).
    pub fn per_second(&self, minute_of_week: u32) -> f64 {
        self.per_minute[(minute_of_week % MINUTES_PER_WEEK) as usize]
    }
}

/// The minute of the week (Monday 00:00 UTC = 0) of a unix time in ms.
pub fn minute_of_week(unix_ms: i64) -> u32 {
    // 1970-01-01 was a Thursday, three days after a Monday.
    let minutes = unix_ms.div_euclid(60_000) + 3 * i64::from(MINUTES_PER_DAY);
    minutes.rem_euclid(i64::from(MINUTES_PER_WEEK)) as u32
}

/// The local minute of the week (Monday 00:00 = 0) in `zone` of a unix
/// time in ms, with the zone's offset at that moment (daylight saving time
/// included).
pub fn local_minute_of_week(unix_ms: i64, zone: &jiff::tz::TimeZone) -> u32 {
    let offset_ms = jiff::Timestamp::from_millisecond(unix_ms)
        .map(|t| i64::from(zone.to_offset(t).seconds()) * 1000)
        .unwrap_or(0);
    minute_of_week(unix_ms + offset_ms)
}

/// Traffic presets (`--preset`).
pub const PRESETS: &[(&str, &str)] = &[
    (
        "class-week",
        "a week of classes: 300 students arrive within 20 minutes at 09:00 on Mon/Wed/Fri \
         and at 14:00 on Tue/Thu, sessions lognormal (median 45 min, p90 80 min), 5 users/h otherwise",
    ),
    (
        "day-10k",
        "one day, 10,000 users at an even rate, sessions lognormal (median 20 min, p90 45 min)",
    ),
];

/// A preset's traffic: rate schedule, sessions and duration.
pub fn preset(name: &str) -> Option<(&'static str, &'static str, &'static str)> {
    match name {
        "class-week" => Some((
            "Mon,Wed,Fri 08:50-09:10 900/h; Tue,Thu 13:50-14:10 900/h; * 5/h",
            "lognormal:45m,80m",
            "7d",
        )),
        "day-10k" => Some(("* 10000/d", "lognormal:20m,45m", "1d")),
        _ => None,
    }
}

/// Draws the arrivals of `duration_ms` from `start_unix_ms` on, the
/// schedule read in `zone`'s local time.
pub fn generate(
    schedule: &RateSchedule,
    sessions: &DurationDist,
    start_unix_ms: i64,
    duration_ms: u64,
    seed: u64,
    zone: &jiff::tz::TimeZone,
) -> Vec<Arrival> {
    // Separate streams: changing the session distribution leaves the
    // arrival times as they were.
    let mut arrivals_rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sessions_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5e55_1055);
    let sampler = sessions.sampler();
    let mut out = Vec::new();
    // Minute by minute: the rate is constant within a minute, and a Poisson
    // process forgets its past, so each minute starts a fresh draw.
    let first_minute = start_unix_ms.div_euclid(60_000);
    let mut minute_start = first_minute * 60_000 - start_unix_ms;
    while minute_start < duration_ms as i64 {
        let rate = schedule.per_second(local_minute_of_week(
            (start_unix_ms + minute_start).max(0),
            zone,
        ));
        let minute_end = (minute_start + 60_000).min(duration_ms as i64);
        if rate > 0.0
            && let Ok(exp) = Exp::new(rate)
        {
            let mut t = minute_start.max(0) as f64;
            loop {
                t += exp.sample(&mut arrivals_rng) * 1000.0;
                if t >= minute_end as f64 {
                    break;
                }
                out.push(Arrival {
                    at_ms: t as u64,
                    session_ms: sampler.sample_ms(&mut sessions_rng),
                });
            }
        }
        minute_start += 60_000;
    }
    out
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;

    const UTC: TimeZone = TimeZone::UTC;

    /// Monday 2026-01-05 00:00 UTC.
    const MONDAY: i64 = 1_767_571_200_000;

    #[test]
    fn the_first_matching_rule_wins() {
        let s =
            RateSchedule::parse("Mon-Fri 09:00-10:00 300/h; Sat,Sun 0/h; *: 6/min").expect("valid");
        assert_eq!(s.per_second(9 * 60), 300.0 / 3600.0, "Monday 09:00");
        assert_eq!(s.per_second(10 * 60), 0.1, "Monday 10:00");
        assert_eq!(s.per_second(5 * 1440 + 9 * 60), 0.0, "Saturday 09:00");
        assert_eq!(minute_of_week(MONDAY + 61_000), 1);
    }

    #[test]
    fn windows_are_in_the_apps_local_time() {
        let paris = wicket_state::zone("Europe/Paris").expect("zone");
        // Monday 00:00 UTC is 01:00 in Paris in January, 02:00 in July.
        assert_eq!(local_minute_of_week(MONDAY, &paris), 60);
        let july_monday = 1_783_296_000_000; // 2026-07-06 00:00 UTC
        assert_eq!(local_minute_of_week(july_monday, &paris), 120);
        assert_eq!(local_minute_of_week(MONDAY, &UTC), 0);
        // A class at 09:00 Paris time arrives at 08:00 UTC in January.
        let s = RateSchedule::parse("Mon 09:00-10:00 600/h").expect("valid");
        let sessions = DurationDist::parse("30m").expect("sessions");
        let a = generate(&s, &sessions, MONDAY, 86_400_000, 3, &paris);
        assert!(a.len() > 400, "{} users", a.len());
        let hour = 3_600_000;
        assert!(
            a.iter().all(|u| (8 * hour..9 * hour).contains(&u.at_ms)),
            "all between 08:00 and 09:00 UTC"
        );
    }

    #[test]
    fn rule_errors_name_the_rule() {
        for (spec, want) in [
            (
                "* 5/h; Mno 09:00-10:00 3/h",
                "rule 2 (`Mno 09:00-10:00 3/h`): unknown day `Mno`",
            ),
            (
                "Mon 09:00-25:00 3/h",
                "rule 1 (`Mon 09:00-25:00 3/h`): `25:00` is not a time",
            ),
            ("Mon 10:00-09:00 3/h", "ends before it starts"),
            ("Mon 3 per hour", "is not a rate"),
        ] {
            let e = RateSchedule::parse(spec).expect_err(spec).to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn arrivals_follow_the_schedule_and_the_seed() {
        let s = RateSchedule::parse("Mon 09:00-10:00 600/h").expect("valid");
        let sessions = DurationDist::parse("exp:10m").expect("valid");
        let a = generate(&s, &sessions, MONDAY, 86_400_000, 7, &UTC);
        assert_eq!(a, generate(&s, &sessions, MONDAY, 86_400_000, 7, &UTC));
        assert_ne!(a, generate(&s, &sessions, MONDAY, 86_400_000, 8, &UTC));
        assert!((500..700).contains(&a.len()), "{} arrivals", a.len());
        assert!(
            a.iter()
                .all(|x| (9 * 3_600_000..10 * 3_600_000).contains(&x.at_ms))
        );
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn presets_parse() {
        for (name, _) in PRESETS {
            let (rate, sessions, _) = preset(name).expect("preset");
            RateSchedule::parse(rate).expect(name);
            DurationDist::parse(sessions).expect(name);
        }
    }
}
