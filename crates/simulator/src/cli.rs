//! The `wicket simulate` command line: reads or generates the traffic,
//! runs every policy on it, prints the table (or JSON) and writes the report.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::dist::{DurationDist, parse_duration};
use super::generator::{self, RateSchedule};
use super::{
    Scenario, ScenarioInfo, SimSettings, distinct_labels, load_policy, report, run_policy, summary,
    trace,
};
use wicket_policy_runtime::{Limits, PolicyEngine, load_default};
use wicket_state::AppSettings;

/// Monday 2026-01-05 00:00 in the app's time zone: generated traffic
/// starts on a Monday.
const DEFAULT_START: jiff::civil::DateTime = jiff::civil::date(2026, 1, 5).at(0, 0, 0, 0);

/// Longest simulated time: a year of traffic is plenty, and keeps the
/// generated arrivals in memory.
const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// Arguments of `wicket simulate` (see docs/simulate.md).
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Arrival trace (CSV: arrival_seconds,session_seconds); replaces the generator.
    #[arg(long, conflicts_with_all = ["rate", "preset"])]
    pub trace: Option<PathBuf>,
    /// Traffic preset: class-week or day-10k (sets --rate, --sessions, --duration unless given).
    #[arg(long)]
    pub preset: Option<String>,
    /// Arrival rate by hour of the week, e.g. "Mon-Fri 09:00-10:00 300/h; * 5/h".
    #[arg(long)]
    pub rate: Option<String>,
    /// Session length: 30m, exp:20m (mean) or lognormal:20m,45m (median, p90).
    #[arg(long)]
    pub sessions: Option<String>,
    /// Simulated time (e.g. 7d, 12h); for a trace, default: until its last user leaves.
    #[arg(long)]
    pub duration: Option<String>,
    /// Simulated start (RFC 3339, e.g. 2026-01-05T08:00:00+01:00); default: Monday
    /// 2026-01-05 00:00 in --timezone; a trace with RFC 3339 times starts at its first arrival.
    #[arg(long)]
    pub start: Option<String>,
    /// The app's IANA time zone (as `wicket.dev/timezone`): policies see its
    /// UTC offset, --rate windows and the report are in its local time.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Seed of the generator and of the start-up times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Pod start-up time: 20s, exp:30s or lognormal:20s,45s.
    #[arg(long, default_value = "20s")]
    pub startup: String,
    /// tickets.max: users per pod.
    #[arg(long, default_value_t = AppSettings::default().tickets_max)]
    pub tickets_max: u32,
    /// tickets.spare: free slots to keep ready.
    #[arg(long, default_value_t = AppSettings::default().tickets_spare)]
    pub tickets_spare: u32,
    /// pods.max: most autoscaled pods.
    #[arg(long, default_value_t = AppSettings::default().pods_max)]
    pub pods_max: u32,
    /// pods.cooldown: idle time before a pod may be deleted.
    #[arg(long, default_value = "10s")]
    pub cooldown: String,
    /// Deployment replicas: pods that always exist.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// The app's policy config string.
    #[arg(long, default_value = "")]
    pub policy_config: String,
    /// Ticket expiry after the user left (the host's proxy.ticket_expiry_ms).
    #[arg(long, default_value = "3s")]
    pub expiry: String,
    /// Timer round: expiry sweep, queue and scale (the host: 250 ms).
    #[arg(long, default_value = "1s")]
    pub tick: String,
    /// Policy to run: `default` or a .wasm file, optionally `#CONFIG`; repeat to compare.
    #[arg(long = "policy", default_values_t = ["default".to_string()])]
    pub policies: Vec<String>,
    /// Wall-clock deadline of one policy call. The host's is 10 ms; the
    /// simulator's default is generous, so that a call descheduled on a busy
    /// machine does not fault and make two runs differ (a policy that loops
    /// still faults, once, and is retired).
    #[arg(long, default_value = "1s")]
    pub deadline: String,
    /// Memory cap of one policy instance, in MiB: the host's default, which
    /// a Python component fits (give the cap it has in the cluster).
    #[arg(long, default_value_t = 16)]
    pub memory_mib: u64,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write an HTML report with plots here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the arrivals used (generated or read) as a trace CSV here.
    #[arg(long)]
    pub save_trace: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

fn duration(key: &str, s: &str) -> anyhow::Result<Duration> {
    parse_duration(s).with_context(|| format!("--{key}"))
}

fn dist(key: &str, s: &str) -> anyhow::Result<DurationDist> {
    DurationDist::parse(s).with_context(|| format!("--{key}"))
}

/// The scenario the arguments describe, and a line saying where its
/// traffic came from.
pub fn scenario(args: &SimulateArgs) -> anyhow::Result<(Scenario, String)> {
    let timezone = wicket_state::zone(&args.timezone).context("--timezone")?;
    let settings = SimSettings {
        app: AppSettings {
            tickets_max: args.tickets_max,
            tickets_spare: args.tickets_spare,
            pods_max: args.pods_max,
            cooldown: duration("cooldown", &args.cooldown)?,
            policy_config: args.policy_config.clone(),
        },
        replicas: args.replicas,
        startup: dist("startup", &args.startup)?,
        create_latency: Duration::ZERO,
        expiry: duration("expiry", &args.expiry)?,
        tick: duration("tick", &args.tick)?,
        timezone: timezone.clone(),
    };
    let start = || -> anyhow::Result<i64> {
        let Some(s) = args.start.as_deref() else {
            let monday = DEFAULT_START
                .to_zoned(timezone.clone())
                .context("--timezone: the default start")?;
            return Ok(monday.timestamp().as_millisecond());
        };
        let t: jiff::Timestamp = s
            .parse()
            .with_context(|| format!("--start: `{s}` is not an RFC 3339 time"))?;
        Ok(t.as_millisecond())
    };
    let given_duration = args
        .duration
        .as_deref()
        .map(|d| duration("duration", d))
        .transpose()?;
    if given_duration.is_some_and(|d| d > MAX_DURATION) {
        bail!("--duration: at most 366 days");
    }
    let (arrivals, start_unix_ms, end, traffic) = if let Some(path) = &args.trace {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the trace {}", path.display()))?;
        let t = trace::parse(&text).with_context(|| format!("trace {}", path.display()))?;
        let start = match t.start_unix_ms {
            Some(s) if args.start.is_none() => s,
            _ => start()?,
        };
        // Until the last user has left and the ticket expired.
        let last = t
            .arrivals
            .iter()
            .map(|a| a.at_ms + a.session_ms)
            .max()
            .unwrap_or(0)
            + settings.expiry.as_millis() as u64
            + 2 * settings.tick.as_millis() as u64;
        let end = given_duration.map_or(last, |d| d.as_millis() as u64);
        (t.arrivals, start, end, format!("trace {}", path.display()))
    } else {
        let preset = match args.preset.as_deref() {
            Some(name) => Some(generator::preset(name).with_context(|| {
                let known: Vec<&str> = generator::PRESETS.iter().map(|p| p.0).collect();
                format!(
                    "--preset: unknown preset `{name}` (known: {})",
                    known.join(", ")
                )
            })?),
            None => None,
        };
        let Some(rate) = args.rate.as_deref().or(preset.map(|p| p.0)) else {
            bail!("give the traffic: --trace FILE, --rate SCHEDULE or --preset NAME");
        };
        let schedule = RateSchedule::parse(rate)?;
        let sessions = dist(
            "sessions",
            args.sessions
                .as_deref()
                .or(preset.map(|p| p.1))
                .unwrap_or("lognormal:20m,45m"),
        )?;
        let end = match given_duration {
            Some(d) => d,
            None => duration("duration", preset.map_or("7d", |p| p.2))?,
        };
        let start = start()?;
        let end = end.as_millis() as u64;
        let arrivals = generator::generate(&schedule, &sessions, start, end, args.seed, &timezone);
        let traffic = format!(
            "generated: rate \"{}\", sessions {sessions}, seed {}{}",
            schedule.text(),
            args.seed,
            args.preset
                .as_deref()
                .map(|p| format!(" (preset {p})"))
                .unwrap_or_default()
        );
        (arrivals, start, end, traffic)
    };
    let scenario = Scenario {
        arrivals,
        start_unix_ms,
        end_ms: end,
        settings,
        seed: args.seed,
    };
    scenario.validate()?;
    Ok((scenario, traffic))
}

/// Runs `wicket simulate`.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let (scenario, traffic) = scenario(args)?;
    if let Some(path) = &args.save_trace {
        std::fs::write(path, trace::write_relative(&scenario.arrivals))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // The host's limits (log lines), with the deadline and memory above.
    if !(1..=4096).contains(&args.memory_mib) {
        anyhow::bail!("--memory-mib must be between 1 and 4096");
    }
    let engine = PolicyEngine::new(Limits {
        timeout: duration("deadline", &args.deadline)?,
        memory_bytes: (args.memory_mib as usize) << 20,
        ..Limits::default()
    })?;
    let default = load_default(&engine).context("loading the embedded default policy")?;
    let mut policies = args
        .policies
        .iter()
        .map(|spec| {
            let file = spec.split_once('#').map_or(spec.as_str(), |(f, _)| f);
            let size = std::fs::metadata(file).map_or(0, |m| m.len());
            if let Some(note) =
                wicket_policy_runtime::large_component_notice("compiling", file, size)
                && !args.quiet
            {
                eprintln!("{note}");
            }
            load_policy(&engine, &default, spec)
        })
        .collect::<Result<Vec<_>, _>>()?;
    distinct_labels(&mut policies);
    let info = ScenarioInfo::new(&scenario, traffic);
    let mut outcomes = Vec::new();
    for policy in &policies {
        let started = Instant::now();
        let mut last = started;
        let mut progress = |sim_ms: u64, events: u64| {
            if args.quiet || last.elapsed() < Duration::from_secs(1) {
                return;
            }
            last = Instant::now();
            eprintln!(
                "simulate {}: {} of {} simulated, {events} events, {:.1} s",
                policy.label,
                summary::human(sim_ms as f64 / 1000.0),
                summary::human(scenario.end_ms as f64 / 1000.0),
                started.elapsed().as_secs_f64()
            );
        };
        let outcome = run_policy(&engine, &default, &scenario, policy, &mut progress)?;
        if !args.quiet {
            eprintln!(
                "simulate {}: {} users over {} simulated in {:.2} s",
                policy.label,
                outcome.summary.users,
                summary::human(scenario.end_ms as f64 / 1000.0),
                started.elapsed().as_secs_f64()
            );
        }
        outcomes.push(outcome);
    }
    let summaries: Vec<_> = outcomes.iter().map(|o| o.summary.clone()).collect();
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({ "scenario": info, "policies": summaries });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        writeln!(stdout, "{}", info.traffic)?;
        write!(stdout, "{}", summary::table(&summaries))?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, report::html(&info, &outcomes))
            .with_context(|| format!("writing the report {}", path.display()))?;
        if !args.json {
            writeln!(stdout, "report: {}", path.display())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn scenario_of(args: &[&str]) -> anyhow::Result<Scenario> {
        let cli = Cli::try_parse_from(std::iter::once("simulate").chain(args.iter().copied()))
            .expect("arguments parse");
        scenario(&cli.args).map(|(s, _)| s)
    }

    #[test]
    fn the_timezone_sets_the_default_start_and_the_policies_zone() {
        let utc = scenario_of(&["--preset", "day-10k"]).expect("utc");
        assert_eq!(utc.start_unix_ms, 1_767_571_200_000, "Monday 00:00 UTC");
        assert_eq!(utc.settings.timezone, jiff::tz::TimeZone::UTC);
        let paris =
            scenario_of(&["--preset", "day-10k", "--timezone", "Europe/Paris"]).expect("paris");
        assert_eq!(
            paris.start_unix_ms, 1_767_567_600_000,
            "Monday 00:00 in Paris is Sunday 23:00 UTC"
        );
        assert_eq!(
            paris.settings.timezone.iana_name(),
            Some("Europe/Paris"),
            "what the policies see"
        );
    }

    #[test]
    fn an_unknown_timezone_is_a_clear_error() {
        let e = scenario_of(&["--preset", "day-10k", "--timezone", "Europe/Pariss"])
            .expect_err("unknown zone");
        let text = format!("{e:#}");
        assert!(
            text.contains("--timezone") && text.contains("Europe/Pariss") && text.contains("IANA"),
            "{text}"
        );
    }
}
