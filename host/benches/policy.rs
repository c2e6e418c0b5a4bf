//! Policy call cost: the default policy, compiled and run as the host runs
//! it, on compact snapshots of 10, 100 and 1,000 pods.
//! `cargo bench -p wicket --bench policy`
//!
//! Three tables:
//! 1. `call`: `Live::assign`/`Live::scale` on one reused instance — the
//!    guest call (filling the instance's guest-snapshot buffer of its
//!    contract version, lowering it, guest code, result lifting).
//! 2. `runner inline`: `PolicyRunner::assign`/`scale` outside tokio — what
//!    the host adds around the call (snapshot conversion, invariant checks,
//!    metrics), no thread hop.
//! 3. `runner thread`: the same awaited inside a tokio runtime, where the
//!    call hops to the engine's policy thread and its answer comes back
//!    through a oneshot — the decision as the running host makes it.
//!
//! A call that faults (e.g. its 10 ms deadline passes because this shared
//! machine descheduled the thread) poisons its instance: it is counted in
//! `faults`, left out of the timings, and the instance is replaced. Timings
//! of failed calls would otherwise look fast and flatter the figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use wicket::metrics::Metrics;
use wicket::policy::{
    self, CallError, Limits, Live, LoadedPolicy, PolicyEngine, PolicyRunner, PolicySource,
};

const CALLS: usize = 20_000;
const WARMUP: usize = 1_000;
const SIZES: [u32; 3] = [10, 100, 1000];

/// (p50, p99) in µs.
fn stats(mut t: Vec<Duration>) -> (f64, f64) {
    if t.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    t.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (
        us(t[t.len() / 2]),
        us(t[(t.len() * 99 / 100).min(t.len() - 1)]),
    )
}

/// Times `f` `n` times; failed calls are kept apart (with how long they
/// took) and left out of the timings.
fn time<E>(
    n: usize,
    faults: &mut Vec<(E, Duration)>,
    mut f: impl FnMut() -> Result<(), E>,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = f();
        let d = t.elapsed();
        match r {
            Ok(()) => out.push(d),
            Err(e) => faults.push((e, d)),
        }
    }
    out
}

fn header(title: &str) {
    println!("{title}");
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>14} {:>8}",
        "pods", "assign p50 µs", "assign p99 µs", "scale p50 µs", "scale p99 µs", "faults"
    );
}

/// One table row; `faults` is None where faults are not visible (the runner
/// answers a fault with its fallback).
fn row(label: &str, a: (f64, f64), s: (f64, f64), faults: Option<usize>) {
    let faults = faults.map_or_else(|| "-".to_owned(), |f| f.to_string());
    println!(
        "{label:<10} {:>14.2} {:>14.2} {:>14.2} {:>14.2} {faults:>8}",
        a.0, a.1, s.0, s.1
    );
}

/// Table 1: the guest call alone, on one reused instance (replaced after a fault).
fn bench_calls(engine: &PolicyEngine, default: &LoadedPolicy, what: &str) -> anyhow::Result<()> {
    header(&format!(
        "call: {what} (contract {}), {CALLS} calls each, one reused instance",
        default.version
    ));
    let mut first_fault: Option<(CallError, Duration)> = None;
    for n in SIZES {
        let snap = policy::samples::mixed(n);
        let mut live: Live = default.instantiate(engine)?;
        let mut faults: Vec<(CallError, Duration)> = Vec::new();
        let run = |live: &mut Live,
                   faults: &mut Vec<(CallError, Duration)>,
                   scale: bool,
                   calls: usize|
         -> anyhow::Result<Vec<Duration>> {
            let mut out = Vec::with_capacity(calls);
            while out.len() < calls {
                let before = faults.len();
                out.extend(time(calls - out.len(), faults, || {
                    if scale {
                        live.scale(&snap).map(drop)
                    } else {
                        live.assign(&snap).map(drop)
                    }
                }));
                if faults.len() > before {
                    // The instance is poisoned after a fault: every later
                    // call would fail at once. Start over on a fresh one.
                    *live = default.instantiate(engine)?;
                    if faults.len() > 100 {
                        // A machine this busy gives no useful figure; say so
                        // in the row (fault count) rather than loop on.
                        return Ok(out);
                    }
                }
            }
            Ok(out)
        };
        run(&mut live, &mut faults, false, WARMUP)?;
        run(&mut live, &mut faults, true, WARMUP)?;
        let a = stats(run(&mut live, &mut faults, false, CALLS)?);
        let s = stats(run(&mut live, &mut faults, true, CALLS)?);
        row(&n.to_string(), a, s, Some(faults.len()));
        if first_fault.is_none() {
            first_fault = faults.into_iter().next();
        }
    }
    if let Some((e, d)) = first_fault {
        println!("(first fault: {e}, after {:.0} µs)", d.as_secs_f64() * 1e6);
    }
    Ok(())
}

/// Tables 2 and 3: the host's `PolicyRunner`, inline or via the policy thread.
fn bench_runner(
    engine: &Arc<PolicyEngine>,
    default: &Arc<LoadedPolicy>,
    on_thread: bool,
) -> anyhow::Result<()> {
    let (title, label) = if on_thread {
        (
            "runner thread: PolicyRunner awaited in tokio (hop to the policy thread, answer by oneshot)",
            "thread",
        )
    } else {
        (
            "runner inline: PolicyRunner outside tokio (conversion + call + invariant checks)",
            "inline",
        )
    };
    header(&format!("{title}, {} calls each", CALLS / 4));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    for n in SIZES {
        let source = PolicySource::new("embedded:spare-tickets", Arc::clone(default));
        let runner = PolicyRunner::new(
            "bench",
            Arc::clone(engine),
            source,
            Arc::clone(default),
            Metrics::new()?.policy,
        );
        let mut snap = policy::samples::mixed(n);
        let mut measure = |scale: bool, calls: usize| -> Vec<Duration> {
            let timed = time_calls(&runner, &mut snap, scale, calls);
            if on_thread {
                rt.block_on(timed)
            } else {
                // Outside tokio the runner answers inline: ready at once.
                timed
                    .now_or_never()
                    .expect("outside tokio the runner answers inline")
            }
        };
        measure(false, WARMUP);
        measure(true, WARMUP);
        let a = stats(measure(false, CALLS / 4));
        let s = stats(measure(true, CALLS / 4));
        row(&format!("{label} {n}"), a, s, None);
    }
    Ok(())
}

/// Times `calls` decisions of the runner on `snap` (the buffer is reused).
async fn time_calls(
    runner: &PolicyRunner,
    snap: &mut wicket::state::Snapshot,
    scale: bool,
    calls: usize,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(calls);
    for _ in 0..calls {
        let s = std::mem::take(snap);
        let t = Instant::now();
        *snap = if scale {
            runner.scale(s).await.1
        } else {
            runner.assign(s).await.1
        };
        out.push(t.elapsed());
    }
    out
}

fn main() -> anyhow::Result<()> {
    let engine = PolicyEngine::new(Limits::default())?;
    let default = policy::load_default(&engine)?;
    bench_calls(&engine, &default, "default policy (spare-tickets)")?;
    println!();
    // The same decisions in a component that speaks contract 0.2 (the
    // host's own version: 7 words per pod as bytes, clock, arrivals,
    // observed times, totals), until the default itself moves to 0.2.
    let v02 = LoadedPolicy::load(
        &engine,
        &std::fs::read(wicket::policy::built::CONTRACT_0_2)?,
        "contract-0.2",
    )?;
    bench_calls(
        &engine,
        &v02,
        "test policy contract-0.2, the default's decisions",
    )?;
    println!();
    bench_runner(&engine, &default, false)?;
    println!();
    bench_runner(&engine, &default, true)?;
    Ok(())
}
