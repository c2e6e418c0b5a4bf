//! `wicket simulate`: one app in simulated time, under one or more
//! policies, on an arrival trace or generated traffic — with the host's own
//! serverlist, policy runner and invariant checks (see [`engine`]).
//!
//! The core is pure and synchronous: [`trace`] and [`generator`] make the
//! arrivals, [`run_policy`] simulates, [`summary`] and [`report`] present
//! the outcome. [`cli`] is the command line around it.

pub mod cli;
pub mod dist;
mod engine;
pub mod generator;
pub mod report;
pub mod summary;
pub mod trace;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use dist::{DistError, DurationDist};
pub use generator::{RateError, RateSchedule};
pub use summary::{Outcome, Summary};
pub use trace::{Arrival, Trace, TraceError};

use wicket_policy_runtime::{
    LoadedPolicy, PolicyEngine, PolicyMetrics, PolicyRunner, PolicySource,
};
use wicket_state::AppSettings;

/// The app and the world around it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    /// tickets.max, tickets.spare, pods.max, cooldown, policy config.
    pub app: AppSettings,
    /// Deployment pods that always exist (ready from the start, never
    /// deleted by the policy).
    pub replicas: u32,
    /// How long a created pod takes to become ready.
    pub startup: DurationDist,
    /// How long the pod provider takes to answer a creation.
    pub create_latency: Duration,
    /// A ticket unused this long is freed (the host's `proxy.ticket_expiry_ms`).
    pub expiry: Duration,
    /// How often the timer round runs (expiry sweep, queue, scale).
    pub tick: Duration,
    /// The app's time zone (`--timezone`, as `wicket.dev/timezone` in the
    /// host): policies see its UTC offset, the generator's rate windows and
    /// the report's clock are in its local time.
    pub timezone: jiff::tz::TimeZone,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            app: AppSettings::default(),
            replicas: 1,
            startup: DurationDist::Fixed(Duration::from_secs(20)),
            create_latency: Duration::ZERO,
            expiry: Duration::from_secs(3),
            tick: Duration::from_secs(1),
            timezone: jiff::tz::TimeZone::UTC,
        }
    }
}

/// Everything a run depends on besides the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Users, earliest first.
    pub arrivals: Vec<Arrival>,
    /// The simulated clock's start (unix ms).
    pub start_unix_ms: i64,
    /// Simulated time to run, in ms; arrivals later than this are left out.
    pub end_ms: u64,
    /// The app.
    pub settings: SimSettings,
    /// Seed of the start-up times (the generator has its own).
    pub seed: u64,
}

/// Why a simulation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting no app can run with.
    #[error("{key}: {reason}")]
    Setting {
        /// The option or key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A policy that is neither `default` nor a file.
    #[error("unknown policy `{0}`: give `default` or the path of a .wasm component")]
    UnknownPolicy(String),
    /// A policy file that cannot be used.
    #[error("policy `{spec}`: {reason}")]
    Policy {
        /// The policy as given.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Called inside an async runtime, where policy calls do not answer inline.
    #[error("the simulator runs policies inline and must not be called inside an async runtime")]
    InsideRuntime,
    /// The policy metrics could not be built.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Scenario {
    /// Checks for settings no simulation can run with.
    pub fn validate(&self) -> Result<(), SimError> {
        self.settings
            .app
            .validate()
            .map_err(|e| SimError::Setting {
                key: match e {
                    wicket_state::SettingsError::ZeroTicketsMax => "--tickets-max",
                    wicket_state::SettingsError::ZeroCooldown => "--cooldown",
                },
                reason: e.to_string(),
            })?;
        if self.settings.tick.is_zero() {
            return Err(SimError::Setting {
                key: "--tick",
                reason: "must be above 0".into(),
            });
        }
        if self.settings.replicas == 0 && self.settings.app.pods_max == 0 {
            return Err(SimError::Setting {
                key: "--pods-max",
                reason: "with no replicas and pods.max 0 no pod can ever exist".into(),
            });
        }
        Ok(())
    }
}

/// A policy to simulate.
#[derive(Debug, Clone)]
pub struct PolicyUnderTest {
    /// Its name in the table and the report: `default` or the file's name,
    /// with `#config` (see [`distinct_labels`]).
    pub label: String,
    /// How it was given (`default`, a path, with `#config`).
    pub spec: String,
    /// The loaded component.
    pub policy: Arc<LoadedPolicy>,
    /// Its own policy config, replacing the app's.
    pub config: Option<String>,
}

/// Loads `default` (the embedded default policy) or a `.wasm` file, each
/// optionally followed by `#CONFIG` (the policy config for this policy).
pub fn load_policy(
    engine: &PolicyEngine,
    default: &Arc<LoadedPolicy>,
    spec: &str,
) -> Result<PolicyUnderTest, SimError> {
    let (source, config) = match spec.split_once('#') {
        Some((s, c)) => (s, Some(c.to_owned())),
        None => (spec, None),
    };
    let policy = if source == "default" {
        Arc::clone(default)
    } else {
        let path = Path::new(source);
        if !path.is_file() {
            return Err(SimError::UnknownPolicy(spec.to_owned()));
        }
        wicket_policy_runtime::load_file(engine, path, engine.limits()).map_err(|e| {
            SimError::Policy {
                spec: spec.to_owned(),
                reason: format!("{:#}", anyhow::Error::from(e)),
            }
        })?
    };
    Ok(PolicyUnderTest {
        label: short_label(spec),
        spec: spec.to_owned(),
        policy,
        config,
    })
}

/// `spec` with its path cut to the file's name: a table whose first column
/// is `/home/me/policies/build/schedule.wasm#…` wraps on any terminal.
fn short_label(spec: &str) -> String {
    let (source, config) = spec
        .split_once('#')
        .map_or((spec, None), |(s, c)| (s, Some(c)));
    let name = Path::new(source)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(source);
    match config {
        Some(c) => format!("{name}#{c}"),
        None => name.to_owned(),
    }
}

/// Gives every policy whose short label another one shares (two files of
/// one name in different folders) its full spec as its label instead, so
/// that the rows can be told apart.
pub fn distinct_labels(policies: &mut [PolicyUnderTest]) {
    let shared: Vec<bool> = policies
        .iter()
        .map(|p| {
            policies
                .iter()
                .filter(|q| q.label == p.label && q.spec != p.spec)
                .count()
                > 0
        })
        .collect();
    for (p, shared) in policies.iter_mut().zip(shared) {
        if shared {
            p.label.clone_from(&p.spec);
        }
    }
}

/// Runs `scenario` under one policy with a fresh runner (the host's, with
/// `default` as the last resort). `progress` hears (simulated ms, events).
pub fn run_policy(
    engine: &Arc<PolicyEngine>,
    default: &Arc<LoadedPolicy>,
    scenario: &Scenario,
    policy: &PolicyUnderTest,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Outcome, SimError> {
    scenario.validate()?;
    let mut app = scenario.settings.app.clone();
    if let Some(config) = &policy.config {
        app.policy_config.clone_from(config);
    }
    let runner = PolicyRunner::new(
        "simulate",
        Arc::clone(engine),
        PolicySource::new(policy.spec.clone(), Arc::clone(&policy.policy)),
        Arc::clone(default),
        PolicyMetrics::new()?,
    );
    let mut outcome = engine::Simulation::new(scenario, app, &runner).run(progress)?;
    outcome.summary.policy.clone_from(&policy.label);
    outcome.summary.source.clone_from(&policy.spec);
    Ok(outcome)
}

/// What the output says about the scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioInfo {
    /// Where the arrivals came from.
    pub traffic: String,
    /// Simulated start (RFC 3339).
    pub start: String,
    /// Simulated start (unix ms).
    pub start_unix_ms: i64,
    /// Simulated duration, seconds.
    pub duration_s: f64,
    /// Users arriving within the duration.
    pub users: usize,
    /// Seed.
    pub seed: u64,
    /// tickets.max
    pub tickets_max: u32,
    /// tickets.spare
    pub tickets_spare: u32,
    /// pods.max
    pub pods_max: u32,
    /// pods.cooldown, seconds.
    pub cooldown_s: u64,
    /// Replicas.
    pub replicas: u32,
    /// Pod start-up time.
    pub startup: String,
    /// Ticket expiry, seconds.
    pub expiry_s: f64,
    /// Timer round, seconds.
    pub tick_s: f64,
    /// The app's policy config.
    pub policy_config: String,
    /// The app's time zone (IANA name).
    pub timezone: String,
}

impl ScenarioInfo {
    /// Describes `scenario`, whose arrivals came from `traffic`.
    pub fn new(scenario: &Scenario, traffic: String) -> Self {
        let s = &scenario.settings;
        Self {
            traffic,
            start: jiff::Timestamp::from_millisecond(scenario.start_unix_ms)
                .map(|t| t.to_zoned(s.timezone.clone()).to_string())
                .unwrap_or_default(),
            start_unix_ms: scenario.start_unix_ms,
            duration_s: scenario.end_ms as f64 / 1000.0,
            users: scenario
                .arrivals
                .iter()
                .filter(|a| a.at_ms <= scenario.end_ms)
                .count(),
            seed: scenario.seed,
            tickets_max: s.app.tickets_max,
            tickets_spare: s.app.tickets_spare,
            pods_max: s.app.pods_max,
            cooldown_s: s.app.cooldown.as_secs(),
            replicas: s.replicas,
            startup: s.startup.to_string(),
            expiry_s: s.expiry.as_secs_f64(),
            tick_s: s.tick.as_secs_f64(),
            policy_config: s.app.policy_config.clone(),
            timezone: s.timezone.iana_name().unwrap_or("UTC").to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
