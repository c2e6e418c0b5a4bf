//! Native decision cost of the default policy: the SDK path (pods packed as
//! 0.2's little-endian bytes, decoded by `wicket_policy_sdk::Pods` as the
//! decision walks them) against the baseline, the logic as it was on 0.1's
//! `[u32; 6]` words (`policies/testing/contract-0.1/src/logic.rs`), on the host's `samples::mixed`
//! snapshot of 100 and 1,000 pods.
//!
//! `cargo bench -p wicket-policy-spare-tickets --bench decide`
//!
//! The workspace builds this package and the SDK in one codegen unit for
//! benches, as the `policy` profile builds the component: with the default
//! 16, the iterator code of the SDK path lands in another unit than the
//! decision and is not inlined (5-12x slower, and not what runs in Wasm).
//!
//! Prints ns per decision: the median over 2,001 runs of the mean of one
//! run (each run about 50 µs). The guest in wasmtime adds the call's lowering and
//! lifting; `cargo bench -p wicket --bench policy` measures that.

// The frozen 0.1 logic: the one copy, which the 0.1 test component builds.
#[path = "../../testing/contract-0.1/src/logic.rs"]
#[allow(dead_code, reason = "the baseline is kept verbatim")]
mod baseline;

#[path = "../tests/against_0_1/mod.rs"]
mod against_0_1;

use std::hint::black_box;
use std::time::{Duration, Instant};

use against_0_1::{Pair, Settings};
use wicket_policy_sdk::{Phase, Pod};
use wicket_policy_spare_tickets::logic;

// Many short runs: on a shared machine most of them finish within one time
// slice, so their median is the cost, not the neighbours' load.
const RUNS: usize = 2001;
const RUN_TIME: Duration = Duration::from_micros(50);

/// The host's `policy::samples::mixed(n)`: every 10th pod starting, every
/// 10th + 1 draining, a quarter replicas, tickets 0–2 of 2, idle 0–39 s.
fn mixed(n: u32) -> Vec<Pod> {
    (0..n)
        .map(|i| {
            let phase = match i % 10 {
                0 => Phase::Starting,
                1 => Phase::Draining,
                _ => Phase::Ready,
            };
            let tickets = if phase == Phase::Starting { 0 } else { i % 3 };
            Pod {
                id: i,
                capacity: 2,
                tickets: tickets.min(2),
                phase,
                autoscaled: i % 4 != 0,
                idle_seconds: (i * 7) % 40,
                age_seconds: 0,
            }
        })
        .collect()
}

/// ns per call of `f`: median over the runs of each run's mean.
fn ns_per_call<R>(mut f: impl FnMut() -> R) -> f64 {
    // Calibrate: how many calls fill one run.
    let start = Instant::now();
    let mut calls = 0_u32;
    while start.elapsed() < RUN_TIME {
        black_box(f());
        calls += 1;
    }
    let mut means: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                black_box(f());
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(calls)
        })
        .collect();
    means.sort_by(f64::total_cmp);
    means[RUNS / 2]
}

fn main() {
    println!(
        "{:<7} {:>16} {:>16} {:>16} {:>16}",
        "pods", "assign sdk ns", "assign 0.1 ns", "scale sdk ns", "scale 0.1 ns"
    );
    for n in [100, 1000] {
        let pods = mixed(n);
        let settings = Settings {
            tickets_max: 2,
            tickets_spare: 2,
            pods_max: n + 4,
            cooldown_seconds: 10,
            waiting: 3,
        };
        let pair = Pair::new(settings, &pods);
        // The two paths must agree before their speed means anything.
        pair.assert_same_decisions(&format!("{n} pods"));
        let (sdk, old) = (&pair.sdk, pair.old());

        let assign_sdk = ns_per_call(|| logic::assign(black_box(sdk)));
        let assign_old = ns_per_call(|| baseline::assign(black_box(&old)));
        let scale_sdk = ns_per_call(|| logic::scale(black_box(sdk)));
        let scale_old = ns_per_call(|| baseline::scale(black_box(&old)));
        println!(
            "{n:<7} {assign_sdk:>16.0} {assign_old:>16.0} {scale_sdk:>16.0} {scale_old:>16.0}"
        );
    }
}
