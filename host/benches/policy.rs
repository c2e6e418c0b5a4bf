//! Policy call cost: the default policy, compiled and run as the host runs
//! it, on compact snapshots of 100 and 1,000 pods.
//! `cargo bench -p wicket --bench policy`

use std::time::{Duration, Instant};

use wicket::policy::bindings::Snapshot;
use wicket::policy::{self, Limits, PolicyEngine};

const CALLS: usize = 20_000;

fn stats(mut t: Vec<Duration>) -> (f64, f64) {
    t.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(t[t.len() / 2]), us(t[t.len() * 99 / 100]))
}

fn main() -> anyhow::Result<()> {
    let engine = PolicyEngine::new(Limits::default())?;
    let default = policy::load_default(&engine)?;
    let mut live = default.instantiate(&engine)?;
    println!("default policy (spare-tickets), {CALLS} calls each, one reused instance");
    println!("{:<10} {:>14} {:>14} {:>14} {:>14}", "pods", "assign p50 µs", "assign p99 µs", "scale p50 µs", "scale p99 µs");
    for n in [10, 100, 1000] {
        let snap = policy::samples::mixed(n);
        let mut buf = Snapshot::empty();
        buf.fill_from(&snap);
        for _ in 0..1000 {
            live.assign(&buf)?;
            live.scale(&buf)?;
        }
        let time = |f: &mut dyn FnMut()| -> Vec<Duration> {
            (0..CALLS)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed()
                })
                .collect()
        };
        let a = stats(time(&mut || {
            let _ = live.assign(&buf);
        }));
        let s = stats(time(&mut || {
            let _ = live.scale(&buf);
        }));
        println!("{n:<10} {:>14.2} {:>14.2} {:>14.2} {:>14.2}", a.0, a.1, s.0, s.1);
    }
    Ok(())
}
