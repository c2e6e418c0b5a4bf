//! `wicket policy check FILE.wasm`: validate a component against the
//! contract and show what it decides on the sample snapshots, with costs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::policy::bindings::{self, CONTRACT_VERSION, DECIDE_INTERFACE};
use crate::policy::{self, Limits, Live, LoadedPolicy, PolicyEngine};
use crate::state::Snapshot;

/// Calls measured per sample and function.
const ROUNDS: usize = 2000;

fn median_cost(live: &mut Live, snap: &bindings::Snapshot, assign: bool) -> Duration {
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let _ = if assign {
                live.assign(snap).map(|_| ())
            } else {
                live.scale(snap).map(|_| ())
            };
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn describe(snap: &Snapshot) -> String {
    let ready = snap
        .pods
        .iter()
        .filter(|p| p.phase == crate::state::Phase::Ready)
        .count();
    format!(
        "{} pods ({ready} ready), {} waiting",
        snap.pods.len(),
        snap.waiting
    )
}

/// Runs the check and prints a report; Err if the component is refused.
pub fn run(file: &Path, config: &str) -> anyhow::Result<()> {
    // The deadline is wall-clock: measured under the host's 10 ms, one
    // descheduled call on a busy machine would poison the instance and fail
    // the check. Measure under a generous one and report slow samples
    // against the host's default instead.
    let host_deadline = Limits::default().timeout;
    let engine = PolicyEngine::new(Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    })?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let started = Instant::now();
    let loaded =
        LoadedPolicy::load(&engine, &bytes, &file.display().to_string()).with_context(|| {
            format!(
                "{} is not a usable policy for this host ({DECIDE_INTERFACE}@{CONTRACT_VERSION})",
                file.display()
            )
        })?;
    println!("{}", file.display());
    println!(
        "  contract   {DECIDE_INTERFACE}@{} (host speaks @{CONTRACT_VERSION})",
        loaded.version
    );
    println!("  sha256     {}", loaded.digest);
    println!("  size       {} bytes", bytes.len());
    println!(
        "  validated  in {:.1} ms (compile, link, dry run on every sample)",
        started.elapsed().as_secs_f64() * 1e3
    );
    let default = policy::load_default(&engine).context("loading the embedded default")?;
    let mut live = loaded.instantiate(&engine).context("instantiating")?;
    let mut reference = default
        .instantiate(&engine)
        .context("instantiating the default")?;
    let mut buf = bindings::Snapshot::empty();
    println!();
    for (name, mut snap) in policy::samples::samples()
        .into_iter()
        .chain([("1000 pods", policy::samples::mixed(1000))])
    {
        snap.config = config.to_owned();
        buf.fill_from(&snap);
        let assign = live.assign(&buf).context("assign")?;
        let scale = live.scale(&buf).context("scale")?;
        let same = reference.assign(&buf).ok() == Some(assign)
            && reference.scale(&buf).ok().as_ref() == Some(&scale);
        let a_cost = median_cost(&mut live, &buf, true);
        let s_cost = median_cost(&mut live, &buf, false);
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
        println!(
            "  cost     assign {:.2} µs, scale {:.2} µs (median of {ROUNDS})",
            a_cost.as_secs_f64() * 1e6,
            s_cost.as_secs_f64() * 1e6
        );
        if a_cost.max(s_cost) > host_deadline {
            println!(
                "  WARNING  slower than the host's default deadline ({host_deadline:?}): calls would fault"
            );
        }
    }
    Ok(())
}
