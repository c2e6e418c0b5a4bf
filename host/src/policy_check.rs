//! `wicket policy check FILE.wasm`: validate a component against the
//! contract, show what it decides on the sample snapshots, and measure what
//! it costs — compile and instantiation time, per-call cost at 10, 100 and
//! 1,000 pods, peak memory — against the host's default limits, so that an
//! author learns the limits to deploy it with.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::policy::bindings::{CONTRACT_VERSION, DECIDE_INTERFACE, LEGACY_CONTRACT_VERSION};
use crate::policy::{self, CallError, LimitOverrides, Limits, Live, LoadedPolicy, PolicyEngine};
use crate::state::Snapshot;

/// Most calls measured per size and function.
const ROUNDS: usize = 2000;
/// Fewest calls measured per size and function (slow components).
const MIN_ROUNDS: usize = 20;
/// Time spent measuring one size and function, at most (after MIN_ROUNDS).
const MEASURE_BUDGET: Duration = Duration::from_millis(1500);
/// Fresh instances timed.
const INSTANTIATIONS: usize = 5;
/// Pod counts the call cost is measured at.
const SIZES: [u32; 3] = [10, 100, 1000];

/// The limits a check runs under where the author sets none: generous, so
/// that it measures what the component needs instead of failing on the
/// host's defaults. The deadline is wall-clock: under the host's 10 ms, one
/// descheduled call on a busy machine would poison the instance.
fn measuring_limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(1),
        memory_bytes: 1024 << 20,
        instantiate_timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

/// Median and p99 of some timings.
fn percentiles(mut t: Vec<Duration>) -> (Duration, Duration) {
    if t.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    t.sort_unstable();
    let p99 = t[(t.len() * 99 / 100).min(t.len() - 1)];
    (t[t.len() / 2], p99)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What measuring one function on one snapshot found.
struct Cost {
    median: Duration,
    p99: Duration,
    calls: usize,
    faults: Vec<CallError>,
}

/// Times `assign` or `scale` on `snap`; a faulted instance is replaced.
fn cost(
    engine: &PolicyEngine,
    policy: &LoadedPolicy,
    live: &mut Live,
    peak: &mut usize,
    snap: &Snapshot,
    assign: bool,
) -> anyhow::Result<Cost> {
    let started = Instant::now();
    let mut times = Vec::with_capacity(ROUNDS);
    let mut faults = Vec::new();
    while times.len() < ROUNDS
        && (times.len() < MIN_ROUNDS || started.elapsed() < MEASURE_BUDGET)
        && faults.len() < 3
    {
        let t = Instant::now();
        let r = if assign {
            live.assign(snap).map(drop)
        } else {
            live.scale(snap).map(drop)
        };
        let took = t.elapsed();
        match r {
            Ok(()) => times.push(took),
            Err(e) => {
                faults.push(e);
                *peak = (*peak).max(live.peak_memory());
                *live = policy.instantiate(engine).context("instantiating again")?;
            }
        }
    }
    *peak = (*peak).max(live.peak_memory());
    let calls = times.len();
    let (median, p99) = percentiles(times);
    Ok(Cost {
        median,
        p99,
        calls,
        faults,
    })
}

fn describe(snap: &Snapshot) -> String {
    let t = snap.totals();
    format!(
        "{} pods ({} ready), {} waiting",
        snap.pods.len(),
        t.ready_pods,
        snap.waiting
    )
}

/// The memory cap (bytes) a component needs by what a check saw of it
/// (`start` bytes after instantiation, `peak` at most): `None` if `cap`
/// does. The host replaces an instance whose memory grew past
/// [`policy::renewal_point`] with a fresh one, so the cap must leave the
/// check's peak below that point, or a busy app's instance would be replaced
/// every few calls (each time an instantiation: 7–35 ms for Python).
fn memory_needed(start: usize, peak: usize, cap: usize) -> Option<usize> {
    (peak > cap || peak > policy::renewal_point(start, cap))
        .then(|| (2 * peak).saturating_sub(start).max(peak))
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Rounds up to a value worth writing into a config.
fn round_up(v: f64, step: u64) -> u64 {
    ((v / step as f64).ceil() as u64).max(1) * step
}

/// Runs the check and prints a report; Err if the component is refused.
/// `config` is the policy-config string for the samples, `overrides` the
/// limits to check under (unset ones: generous measuring limits).
pub fn run(file: &Path, config: &str, overrides: LimitOverrides) -> anyhow::Result<()> {
    let host = Limits::default();
    let limits = overrides.apply(measuring_limits());
    let engine = PolicyEngine::new(limits)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if let Some(note) =
        policy::large_component_notice("compiling", &file.display().to_string(), bytes.len() as u64)
    {
        eprintln!("{note}");
    }
    let loaded = LoadedPolicy::load_with(&engine, &bytes, &file.display().to_string(), limits)
        .with_context(|| {
            format!(
                "{} is not a usable policy for this host ({DECIDE_INTERFACE}@{CONTRACT_VERSION}, \
                 or @{LEGACY_CONTRACT_VERSION} through the adapter)",
                file.display()
            )
        })?;
    println!("{}", file.display());
    println!(
        "  contract      {DECIDE_INTERFACE}@{} ({})",
        loaded.version,
        match loaded.contract {
            policy::bindings::Contract::V0_2 => "the host's own version".to_owned(),
            policy::bindings::Contract::V0_1 => format!(
                "an older version: the host adapts its snapshots; rebuild against @{CONTRACT_VERSION} for the clock, arrivals and observed times"
            ),
        }
    );
    println!("  sha256        {}", loaded.digest);
    println!(
        "  size          {} bytes ({:.1} MB)",
        bytes.len(),
        bytes.len() as f64 / 1e6
    );
    println!("  compile       {:.1} ms", ms(loaded.compile_time));
    println!(
        "  validated     in {:.1} ms (compile, link, dry run on every sample)",
        ms(loaded.load_time)
    );
    let mut instantiations = Vec::with_capacity(INSTANTIATIONS);
    let mut peak = 0usize;
    for _ in 0..INSTANTIATIONS {
        let t = Instant::now();
        let live = loaded.instantiate(&engine).context("instantiating")?;
        instantiations.push(t.elapsed());
        peak = peak.max(live.peak_memory());
    }
    let slowest_instantiation = instantiations.iter().copied().max().unwrap_or_default();
    let (instantiate_median, _) = percentiles(instantiations);
    println!(
        "  instantiate   {:.2} ms median, {:.2} ms slowest of {INSTANTIATIONS} (memory at start {:.1} MiB)",
        ms(instantiate_median),
        ms(slowest_instantiation),
        peak as f64 / f64::from(1 << 20)
    );
    println!(
        "  checked under timeout {} ms, memory {} MiB, instantiation {} ms",
        limits.timeout.as_millis(),
        limits.memory_bytes >> 20,
        limits.instantiate_timeout.as_millis()
    );

    let start_memory = peak;
    let default = policy::load_default(&engine).context("loading the embedded default")?;
    let mut live = loaded.instantiate(&engine).context("instantiating")?;
    let mut calls = 0;
    let mut reference = default
        .instantiate(&engine)
        .context("instantiating the default")?;
    println!();
    for (name, mut snap) in policy::samples::samples() {
        snap.config = config.to_owned();
        let assign = live.assign(&snap).context("assign")?;
        let scale = live.scale(&snap).context("scale")?;
        calls += 2;
        let same = reference.assign(&snap).ok() == Some(assign)
            && reference.scale(&snap).ok().as_ref() == Some(&scale);
        println!("sample {name:?}: {}", describe(&snap));
        println!(
            "  assign → {:<10} scale → create {}, delete {:?}{}",
            assign.map_or("none".to_owned(), |id| format!("pod {id}")),
            scale.create,
            scale.delete,
            if same {
                ""
            } else {
                "   (differs from the default policy)"
            }
        );
    }
    peak = peak.max(live.peak_memory());

    println!();
    println!(
        "cost per call (median / p99, µs; the host's default deadline is {} ms)",
        host.timeout.as_millis()
    );
    if cfg!(debug_assertions) {
        println!(
            "  (a debug build of wicket: calls cost many times what they cost in a release build)"
        );
    }
    let mut worst_p99 = Duration::ZERO;
    let mut faults = Vec::new();
    for n in SIZES {
        let mut snap = policy::samples::mixed(n);
        snap.config = config.to_owned();
        let a = cost(&engine, &loaded, &mut live, &mut peak, &snap, true)?;
        let s = cost(&engine, &loaded, &mut live, &mut peak, &snap, false)?;
        println!(
            "  {n:>5} pods   assign {:>9.2} / {:>9.2}   scale {:>9.2} / {:>9.2}   ({} and {} calls)",
            us(a.median),
            us(a.p99),
            us(s.median),
            us(s.p99),
            a.calls,
            s.calls
        );
        worst_p99 = worst_p99.max(a.p99).max(s.p99);
        calls += a.calls + s.calls;
        faults.extend(a.faults.into_iter().chain(s.faults).map(|e| (n, e)));
    }
    for (n, e) in &faults {
        println!("  FAULT at {n} pods: {e}");
    }
    // Linear memory never shrinks: what a guest keeps from call to call
    // shows as growth over the calls above.
    println!(
        "peak memory     {:.1} MiB of linear memory ({:.1} MiB at start; it grew {} KiB in {calls} calls)",
        mib(peak),
        mib(start_memory),
        peak.saturating_sub(start_memory) >> 10
    );

    println!();
    let mut needs = Vec::new();
    let renew_at = policy::renewal_point(start_memory, host.memory_bytes);
    if let Some(needed) = memory_needed(start_memory, peak, host.memory_bytes) {
        let deploy = round_up(mib(needed) * 1.25, 8);
        let why = if peak > host.memory_bytes {
            format!(
                "it used {:.1} MiB, more than the host's default {} MiB",
                mib(peak),
                host.memory_bytes >> 20
            )
        } else {
            format!(
                "it grew to {:.1} MiB in this check alone, past the {:.1} MiB at which the host replaces \
                 an instance with a fresh one under its default {} MiB",
                mib(peak),
                mib(renew_at),
                host.memory_bytes >> 20
            )
        };
        needs.push(format!(
            "memory: {why} — deploy with {deploy} MiB \
             (ConfigMap annotation wicket.dev/policy-memory-mib: \"{deploy}\", or [policy.file_limits] memory_mib = {deploy})"
        ));
    }
    if slowest_instantiation > host.instantiate_timeout {
        let budget = round_up(ms(slowest_instantiation) * 3.0, 100);
        needs.push(format!(
            "instantiation: it took up to {:.1} ms, more than the host's default {} ms — deploy with {budget} ms \
             (wicket.dev/policy-instantiate-timeout-ms: \"{budget}\", or instantiate_timeout_ms = {budget})",
            ms(slowest_instantiation),
            host.instantiate_timeout.as_millis()
        ));
    }
    if worst_p99 > host.timeout {
        let deadline = round_up(ms(worst_p99) * 3.0, 5);
        needs.push(format!(
            "deadline: calls took up to {:.2} ms (p99), more than the host's default {} ms — deploy with {deadline} ms \
             (wicket.dev/policy-timeout-ms: \"{deadline}\", or timeout_ms = {deadline}), or make it faster",
            ms(worst_p99),
            host.timeout.as_millis()
        ));
    }
    if needs.is_empty() {
        println!(
            "limits: fits the host's defaults (deadline {} ms, memory {} MiB, instantiation {} ms)",
            host.timeout.as_millis(),
            host.memory_bytes >> 20,
            host.instantiate_timeout.as_millis()
        );
    } else {
        println!("limits: this component needs more than the host's defaults:");
        for n in &needs {
            println!("  - {n}");
        }
    }
    if peak <= renew_at {
        println!(
            "memory: {:.1} MiB at start of the host's {} MiB; the host replaces an instance that grows \
             past {:.1} MiB with a fresh one (one instantiation), so memory a guest keeps from call to call \
             does not fault it",
            mib(start_memory),
            host.memory_bytes >> 20,
            mib(renew_at)
        );
    }
    if !faults.is_empty() {
        anyhow::bail!(
            "{} call(s) faulted under the limits checked (see FAULT above)",
            faults.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::memory_needed;

    const MIB: usize = 1 << 20;

    #[test]
    fn memory_is_judged_against_the_point_where_the_host_renews_an_instance() {
        // A componentize-py component: 12.4 MiB at start and after a check;
        // renewed past 14.2 MiB under 16.
        let start = 12 * MIB + 400 * 1024;
        assert_eq!(memory_needed(start, start, 16 * MIB), None);
        assert_eq!(memory_needed(start, start + MIB, 16 * MIB), None);
        // Grown past the renewal point, though under the cap: it needs the
        // cap that puts its peak back under that point.
        let peak = start + 2 * MIB;
        assert_eq!(memory_needed(start, peak, 16 * MIB), Some(2 * peak - start));
        assert_eq!(memory_needed(start, peak, 2 * peak - start), None);
        // Over the cap from the start: at least its peak.
        assert_eq!(memory_needed(20 * MIB, 20 * MIB, 16 * MIB), Some(20 * MIB));
    }
}
