//! Policy test cases written for people (`wicket policy test POLICY CASES`):
//! pods by name, durations with units, the clock as a date and a time zone,
//! and the expected decisions by pod name. Parsed here into the host's
//! snapshots; `policy_test` runs them through a component.
//!
//! The format is documented with an example in `examples/policy-cases.toml`;
//! the default policy's table (`policies/spare-tickets/tests/cases.toml`) is
//! written in it. Pure: no I/O, no clock.

use std::collections::HashMap;

use serde::Deserialize;

use wicket_state::arrivals::{HOURS, MINUTES};
use wicket_state::{Clock, ObservedTimes, Phase, SnapPod, Snapshot};

/// The clock of a case that gives none: 2026-12-04T10:00:00Z, a Friday.
pub const DEFAULT_TIME: &str = "2026-12-04T10:00:00Z";

/// The name that means "no pod" in `expect_assign`.
pub const NONE: &str = "none";

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    case: Vec<CaseDef>,
}

/// Values every case starts from (`[defaults]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    #[serde(default)]
    settings: SettingsDef,
    clock: Option<ClockDef>,
}

/// `settings = { … }`: each key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsDef {
    tickets_max: Option<u32>,
    tickets_spare: Option<u32>,
    pods_max: Option<u32>,
    cooldown_seconds: Option<u32>,
    config: Option<String>,
}

/// `clock = { time = "…", timezone = "…" }` or `utc_offset = "+01:00"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockDef {
    time: Option<String>,
    timezone: Option<String>,
    utc_offset: Option<String>,
}

/// A duration: whole seconds, or text with units (`"90s"`, `"1h30m"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Span {
    Seconds(u64),
    Text(String),
}

impl Span {
    fn millis(&self, case: &str, key: &str) -> Result<u64, CaseError> {
        match self {
            Span::Seconds(s) => s.checked_mul(1000).ok_or_else(|| {
                CaseError::new(case, key, format!("{s} seconds is too long"))
            }),
            Span::Text(t) => wicket_state::duration::parse(t)
                .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
                .ok_or_else(|| {
                    CaseError::new(
                        case,
                        key,
                        format!("{t:?} is not a duration: whole seconds, or a number with a unit ms, s, m or h, e.g. \"90s\" or \"1h30m\""),
                    )
                }),
        }
    }
}

fn to_u32(v: u64) -> u32 {
    v.min(u64::from(u32::MAX)) as u32
}

/// `observed = { … }`: durations, each optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObservedDef {
    startup_median: Option<Span>,
    startup_p90: Option<Span>,
    session_median: Option<Span>,
    session_p90: Option<Span>,
    longest_wait: Option<Span>,
}

/// A pod's phase.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PhaseDef {
    Starting,
    Ready,
    Draining,
}

/// One pod of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PodDef {
    name: String,
    phase: PhaseDef,
    #[serde(default)]
    tickets: u32,
    capacity: Option<u32>,
    #[serde(default)]
    autoscaled: bool,
    idle: Option<Span>,
    age: Option<Span>,
}

/// One case as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDef {
    name: String,
    #[serde(default)]
    settings: SettingsDef,
    #[serde(default)]
    waiting: u32,
    clock: Option<ClockDef>,
    arrivals_per_minute: Option<Vec<u32>>,
    arrivals_per_hour: Option<Vec<u32>>,
    arrival_rate_per_minute: Option<u32>,
    #[serde(default)]
    observed: ObservedDef,
    #[serde(default)]
    pods: Vec<PodDef>,
    expect_assign: Option<String>,
    expect_create: Option<u32>,
    expect_delete: Option<Vec<String>>,
}

/// What a case expects; unset parts are not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The pod that gets the next ticket (`Some(None)`: nobody, the user waits).
    pub assign: Option<Option<String>>,
    /// Pods to create.
    pub create: Option<u32>,
    /// Pods to delete, by name, in any order.
    pub delete: Option<Vec<String>>,
}

/// One case, ready to run.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the case shows.
    pub name: String,
    /// The snapshot the policy decides on.
    pub snapshot: Snapshot,
    /// Pod names by id (the ids are the host's business, not the case's).
    pub names: HashMap<u32, String>,
    /// The expected decisions.
    pub expect: Expect,
}

impl Case {
    /// The name of pod `id`, or how to say there is none.
    pub fn pod_name(&self, id: u32) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("id {id} (no such pod)"))
    }
}

/// A case file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CasesError {
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A value of the right type that does not make sense.
    #[error(transparent)]
    Case(#[from] CaseError),
}

/// A value in one case that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("case {case:?}: `{key}`: {problem}")]
pub struct CaseError {
    /// The case's name.
    pub case: String,
    /// The key.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl CaseError {
    fn new(case: &str, key: &str, problem: String) -> Self {
        Self {
            case: case.into(),
            key: key.into(),
            problem,
        }
    }
}

/// Parses a case file.
pub fn parse(text: &str) -> Result<Vec<Case>, CasesError> {
    let file: File = toml::from_str(text).map_err(|e| CasesError::Syntax(e.to_string()))?;
    if file.case.is_empty() {
        return Err(CasesError::Syntax("the file has no [[case]]".into()));
    }
    let mut seen = std::collections::HashSet::new();
    let mut cases = Vec::with_capacity(file.case.len());
    for def in file.case {
        if !seen.insert(def.name.clone()) {
            return Err(
                CaseError::new(&def.name, "name", "another case has this name".into()).into(),
            );
        }
        cases.push(case(def, &file.defaults)?);
    }
    Ok(cases)
}

fn case(def: CaseDef, defaults: &Defaults) -> Result<Case, CaseError> {
    let name = def.name.clone();
    let err = |key: &str, problem: String| CaseError::new(&name, key, problem);
    let k8s = wicket_state::AppSettings::default();
    let pick = |v: &Option<u32>, d: &Option<u32>, fallback: u32| v.or(*d).unwrap_or(fallback);
    let (s, d) = (&def.settings, &defaults.settings);
    let tickets_max = pick(&s.tickets_max, &d.tickets_max, k8s.tickets_max);
    let mut snapshot = Snapshot {
        tickets_max,
        tickets_spare: pick(&s.tickets_spare, &d.tickets_spare, k8s.tickets_spare),
        pods_max: pick(&s.pods_max, &d.pods_max, k8s.pods_max),
        cooldown_seconds: pick(
            &s.cooldown_seconds,
            &d.cooldown_seconds,
            k8s.cooldown.as_secs() as u32,
        ),
        config: s
            .config
            .clone()
            .or_else(|| d.config.clone())
            .unwrap_or_default(),
        waiting: def.waiting,
        ..Snapshot::default()
    };
    snapshot.clock = clock(def.clock.as_ref().or(defaults.clock.as_ref()), &name)?;

    // Arrivals: explicit lists (newest last, padded with zeros in front), or
    // the shorthand rate, or none.
    let rate = def.arrival_rate_per_minute;
    snapshot.arrivals_per_minute = arrivals(
        def.arrivals_per_minute,
        rate,
        MINUTES,
        "arrivals_per_minute",
        &name,
    )?;
    snapshot.arrivals_per_hour = arrivals(
        def.arrivals_per_hour,
        rate.map(|r| r.saturating_mul(60)),
        HOURS,
        "arrivals_per_hour",
        &name,
    )?;

    let o = &def.observed;
    let ms = |v: &Option<Span>, key: &str| -> Result<Option<u32>, CaseError> {
        v.as_ref()
            .map(|s| s.millis(&name, key).map(to_u32))
            .transpose()
    };
    let secs = |v: &Option<Span>, key: &str| -> Result<Option<u32>, CaseError> {
        v.as_ref()
            .map(|s| s.millis(&name, key).map(|m| to_u32(m / 1000)))
            .transpose()
    };
    snapshot.observed = ObservedTimes {
        startup_median_ms: ms(&o.startup_median, "observed.startup_median")?,
        startup_p90_ms: ms(&o.startup_p90, "observed.startup_p90")?,
        session_median_seconds: secs(&o.session_median, "observed.session_median")?,
        session_p90_seconds: secs(&o.session_p90, "observed.session_p90")?,
        longest_wait_ms: ms(&o.longest_wait, "observed.longest_wait")?.unwrap_or(0),
    };

    // Ids are deliberately neither positions nor in name order: a policy
    // must name pods by the id the host gives.
    let n = def.pods.len() as u32;
    let mut names = HashMap::with_capacity(def.pods.len());
    let mut ids = HashMap::with_capacity(def.pods.len());
    for (i, p) in def.pods.iter().enumerate() {
        let id = 100 + 10 * (n - 1 - i as u32);
        if p.name.trim().is_empty() || p.name == NONE {
            return Err(err(
                "pods.name",
                format!(
                    "{:?} cannot name a pod (empty, or the word for no pod)",
                    p.name
                ),
            ));
        }
        if ids.insert(p.name.clone(), id).is_some() {
            return Err(err("pods.name", format!("two pods are named {:?}", p.name)));
        }
        names.insert(id, p.name.clone());
        let idle = p
            .idle
            .as_ref()
            .map(|s| s.millis(&name, "pods.idle"))
            .transpose()?
            .unwrap_or(0);
        let age = p
            .age
            .as_ref()
            .map(|s| s.millis(&name, "pods.age"))
            .transpose()?
            .unwrap_or(idle);
        snapshot.pods.push(SnapPod {
            id,
            capacity: p.capacity.unwrap_or(tickets_max),
            tickets: p.tickets,
            phase: match p.phase {
                PhaseDef::Starting => Phase::Starting,
                PhaseDef::Ready => Phase::Ready,
                PhaseDef::Draining => Phase::Draining,
            },
            autoscaled: p.autoscaled,
            idle_seconds: to_u32(idle / 1000),
            age_seconds: to_u32(age / 1000),
        });
    }
    let known = |key: &str, pod: &str| {
        if ids.contains_key(pod) {
            Ok(())
        } else {
            Err(err(key, format!("no pod of the case is named {pod:?}")))
        }
    };
    let assign = match def.expect_assign {
        None => None,
        Some(p) if p == NONE => Some(None),
        Some(p) => {
            known("expect_assign", &p)?;
            Some(Some(p))
        }
    };
    if let Some(delete) = &def.expect_delete {
        for p in delete {
            known("expect_delete", p)?;
        }
    }
    let expect = Expect {
        assign,
        create: def.expect_create,
        delete: def.expect_delete,
    };
    if expect.assign.is_none() && expect.create.is_none() && expect.delete.is_none() {
        return Err(err(
            "expect_assign",
            "the case expects nothing: give expect_assign, expect_create or expect_delete".into(),
        ));
    }
    Ok(Case {
        name: def.name,
        snapshot,
        names,
        expect,
    })
}

/// 60 or 168 counts, oldest first: `given` padded with zeros in front, or
/// `rate` in every bucket, or zeros.
fn arrivals(
    given: Option<Vec<u32>>,
    rate: Option<u32>,
    len: usize,
    key: &str,
    case: &str,
) -> Result<Vec<u32>, CaseError> {
    match given {
        Some(v) if v.len() > len => Err(CaseError::new(
            case,
            key,
            format!(
                "{} counts, but it holds at most {len} (newest last)",
                v.len()
            ),
        )),
        Some(v) => {
            let mut out = vec![0; len - v.len()];
            out.extend(v);
            Ok(out)
        }
        None => Ok(vec![rate.unwrap_or(0); len]),
    }
}

/// `+HH:MM`, `-HH:MM` or `+HH` (jiff parses offsets only inside a full
/// timestamp, so this small form is read by hand).
fn parse_offset(text: &str) -> Option<jiff::tz::Offset> {
    let t = text.trim();
    let sign = match t.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = t[1..].split_once(':').unwrap_or((&t[1..], "00"));
    let all_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(h) || !all_digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 25 || m > 59 {
        return None;
    }
    jiff::tz::Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

/// The clock a case gives: `time` (RFC 3339; without an offset it is local
/// time in `timezone` or `utc_offset`, else UTC), and the UTC offset from
/// `timezone` (at that time) or `utc_offset`.
fn clock(def: Option<&ClockDef>, case: &str) -> Result<Clock, CaseError> {
    use jiff::civil::DateTime;
    use jiff::tz::TimeZone;
    use jiff::{Timestamp, Zoned};

    let err = |key: &str, problem: String| CaseError::new(case, key, problem);
    let def = def.cloned().unwrap_or(ClockDef {
        time: None,
        timezone: None,
        utc_offset: None,
    });
    let zone = match (&def.timezone, &def.utc_offset) {
        (Some(_), Some(_)) => {
            return Err(err(
                "clock.utc_offset",
                "give either timezone or utc_offset, not both".into(),
            ));
        }
        (Some(name), None) => {
            wicket_state::zone(name).map_err(|e| err("clock.timezone", e.to_string()))?
        }
        (None, Some(offset)) => {
            let off = parse_offset(offset).ok_or_else(|| {
                err(
                    "clock.utc_offset",
                    format!("{offset:?} is not a UTC offset such as \"+01:00\" or \"-05:00\""),
                )
            })?;
            TimeZone::fixed(off)
        }
        (None, None) => TimeZone::UTC,
    };
    let text = def.time.as_deref().unwrap_or(DEFAULT_TIME).trim();
    let instant = match text.parse::<Timestamp>() {
        Ok(t) => t,
        Err(_) => {
            let civil: DateTime = text.parse().map_err(|_| {
                err(
                    "clock.time",
                    format!("{text:?} is not a time such as \"2026-12-07T08:50:00+01:00\" (or, with a timezone, \"2026-12-07T08:50:00\")"),
                )
            })?;
            let zoned: Zoned = civil
                .to_zoned(zone.clone())
                .map_err(|e| err("clock.time", format!("{text:?}: {e}")))?;
            zoned.timestamp()
        }
    };
    let unix = u64::try_from(instant.as_second())
        .map_err(|_| err("clock.time", format!("{text:?} is before 1970")))?;
    Ok(Clock::at(unix, &zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Case, CasesError> {
        parse(text).map(|mut c| c.remove(0))
    }

    #[test]
    fn a_full_case_becomes_a_snapshot() {
        let c = one(r#"
[defaults]
settings = { tickets_max = 2, pods_max = 4 }

[[case]]
name = "monday morning"
settings = { tickets_spare = 3, config = "x" }
waiting = 2
clock = { time = "2026-12-07T08:50:00", timezone = "Europe/Berlin" }
arrivals_per_minute = [1, 2, 3]
arrival_rate_per_minute = 5
observed = { startup_median = "45s", session_p90 = "1h", longest_wait = 3 }
pods = [
  { name = "b", phase = "ready", tickets = 1, autoscaled = true, idle = "2m", age = "1h" },
  { name = "a", phase = "starting", capacity = 5 },
]
expect_assign = "b"
expect_create = 1
expect_delete = []
"#)
        .expect("parses");
        let s = &c.snapshot;
        assert_eq!(
            (
                s.tickets_max,
                s.tickets_spare,
                s.pods_max,
                s.cooldown_seconds
            ),
            (2, 3, 4, 10)
        );
        assert_eq!((s.config.as_str(), s.waiting), ("x", 2));
        // 08:50 in Berlin (winter, +01:00) is 07:50 UTC.
        assert_eq!(s.clock.unix_seconds, 1_796_629_800);
        assert_eq!(s.clock.utc_offset_seconds, 3600);
        assert_eq!(s.arrivals_per_minute.len(), 60);
        assert_eq!(&s.arrivals_per_minute[57..], &[1, 2, 3]);
        assert_eq!(s.arrivals_per_minute[0], 0, "padded in front");
        assert_eq!(s.arrivals_per_hour, vec![300; 168], "from the rate");
        assert_eq!(s.observed.startup_median_ms, Some(45_000));
        assert_eq!(s.observed.session_p90_seconds, Some(3600));
        assert_eq!(s.observed.session_median_seconds, None);
        assert_eq!(s.observed.longest_wait_ms, 3000);
        let b = s.pods[0];
        assert_eq!(c.pod_name(b.id), "b");
        assert_eq!(
            (
                b.capacity,
                b.tickets,
                b.phase,
                b.autoscaled,
                b.idle_seconds,
                b.age_seconds
            ),
            (2, 1, Phase::Ready, true, 120, 3600)
        );
        let a = s.pods[1];
        assert_eq!(
            (a.capacity, a.phase, a.autoscaled),
            (5, Phase::Starting, false)
        );
        assert_ne!(a.id, 1, "ids are not positions");
        assert_eq!(c.expect.assign, Some(Some("b".into())));
        assert_eq!(c.expect.create, Some(1));
        assert_eq!(c.expect.delete, Some(vec![]));
    }

    #[test]
    fn the_documented_example_parses() {
        let cases = parse(include_str!("../../../examples/policy-cases.toml")).expect("parses");
        assert_eq!(cases.len(), 2);
        // [defaults] apply where a case says nothing.
        assert_eq!(cases[1].snapshot.tickets_max, 2);
        assert_eq!(cases[1].snapshot.clock.utc_offset_seconds, 3600);
        assert_eq!(cases[1].snapshot.arrivals_per_hour[166..], [40, 120]);
    }

    #[test]
    fn clocks_by_offset_and_by_instant() {
        let c = one(
            "[[case]]\nname = \"x\"\nclock = { time = \"2026-07-01T12:00:00Z\", timezone = \"America/New_York\" }\nexpect_create = 0",
        )
        .expect("parses");
        assert_eq!(c.snapshot.clock.utc_offset_seconds, -4 * 3600);
        assert_eq!(c.snapshot.clock.unix_seconds, 1_782_907_200);
        let c = one(
            "[[case]]\nname = \"x\"\nclock = { time = \"2026-07-01T12:00:00\", utc_offset = \"+05:30\" }\nexpect_create = 0",
        )
        .expect("parses");
        assert_eq!(c.snapshot.clock.utc_offset_seconds, 19_800);
        assert_eq!(c.snapshot.clock.unix_seconds, 1_782_907_200 - 19_800);
        // No clock: the documented default, UTC.
        let c = one("[[case]]\nname = \"x\"\nexpect_assign = \"none\"").expect("parses");
        assert_eq!(c.snapshot.clock.unix_seconds, 1_796_378_400);
        assert_eq!(c.expect.assign, Some(None));
    }

    #[test]
    fn mistakes_name_the_case_and_the_key() {
        let cases = [
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\nbogus = 1",
                "bogus",
            ),
            ("[[case]]\nname = \"c\"", "expects nothing"),
            (
                "[[case]]\nname = \"c\"\nexpect_assign = \"ghost\"",
                "expect_assign",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_delete = [\"ghost\"]",
                "expect_delete",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\npods = [{ name = \"a\", phase = \"ready\" }, { name = \"a\", phase = \"ready\" }]",
                "two pods",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\npods = [{ name = \"a\", phase = \"gone\" }]",
                "gone",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\npods = [{ name = \"a\", phase = \"ready\", idle = \"soon\" }]",
                "pods.idle",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\nclock = { timezone = \"Mars/Base\" }",
                "clock.timezone",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\nclock = { time = \"monday\" }",
                "clock.time",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\nclock = { utc_offset = \"CET\" }",
                "clock.utc_offset",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\narrivals_per_minute = [\n1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,\n1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]",
                "arrivals_per_minute",
            ),
            (
                "[[case]]\nname = \"c\"\nexpect_create = 0\n[[case]]\nname = \"c\"\nexpect_create = 0",
                "another case",
            ),
            ("", "no [[case]]"),
        ];
        for (text, key) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(key), "{text:?}: {e:?} should mention {key:?}");
        }
    }
}
