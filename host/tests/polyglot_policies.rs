//! The Python and JavaScript example policies (`examples/policies/schedule`,
//! `examples/policies/predictive`), built from source with their own build
//! scripts (which install componentize-py / jco through
//! `scripts/policy-tools.sh`), loaded into wasmtime against
//! `wit/policy.wit` (wicket:policy@0.2.0) with the host's WASI stance (WASI
//! p2 linked, nothing granted) and asked for decisions on snapshots packed as
//! the contract says.
//!
//! This harness talks to the components directly, not through the host's
//! policy runner, so that the components can be checked and measured whether
//! or not the host already speaks 0.2. `measure_polyglot_policies` (ignored;
//! run it with `--release -- --ignored --nocapture`) prints component size,
//! compile time, instantiation time, peak linear memory and per-call cost at
//! 100 and 1,000 pods.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod generated {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({ path: "../wit", world: "policy" });
}

use generated::Policy;
use generated::wicket::policy::types::{
    Arrivals, Clock, LogLevel, Observed, ScaleDecision, Settings, Snapshot, Totals,
};

/// Words per pod in 0.2.0.
const POD_WORDS: u32 = 7;

/// What a store holds: an empty WASI context and the memory bookkeeping.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_cap: usize,
    peak_memory: usize,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl generated::wicket::policy::types::Host for State {}

impl generated::wicket::policy::host::Host for State {
    fn log(&mut self, level: LogLevel, message: String) {
        eprintln!("policy log {level:?}: {message}");
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).expect("engine")
    })
}

fn linker() -> Linker<State> {
    let mut linker = Linker::new(engine());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI p2");
    Policy::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).expect("host imports");
    linker
}

/// A policy instance with its store.
struct Loaded {
    store: Store<State>,
    policy: Policy,
}

impl Loaded {
    fn new(component: &Component, memory_cap: usize) -> wasmtime::Result<Self> {
        let state = State {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            memory_cap,
            peak_memory: 0,
        };
        let mut store = Store::new(engine(), state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        let policy = Policy::instantiate(&mut store, component, &linker())?;
        Ok(Self { store, policy })
    }

    fn assign(&mut self, snapshot: &Snapshot) -> Option<u32> {
        self.policy
            .wicket_policy_decide()
            .call_assign(&mut self.store, snapshot)
            .expect("assign")
    }

    fn scale(&mut self, snapshot: &Snapshot) -> (u32, Vec<u32>) {
        let ScaleDecision { create, delete } = self
            .policy
            .wicket_policy_decide()
            .call_scale(&mut self.store, snapshot)
            .expect("scale");
        (create, delete)
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository holds host/")
        .to_path_buf()
}

/// Builds an example with its own build script into the test's temp dir.
fn build(example: &str) -> PathBuf {
    let dir = repo().join("examples/policies").join(example);
    let out = std::env::temp_dir().join(format!(
        "wicket-polyglot-{}-{example}.wasm",
        std::process::id()
    ));
    let status = Command::new(dir.join("build.sh"))
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("running {example}/build.sh: {e}"));
    assert!(status.success(), "{example}/build.sh failed: {status}");
    out
}

/// One example, built and compiled once for all tests in this file.
fn component(example: &'static str) -> &'static (PathBuf, Component, Duration) {
    static SCHEDULE: OnceLock<(PathBuf, Component, Duration)> = OnceLock::new();
    static PREDICTIVE: OnceLock<(PathBuf, Component, Duration)> = OnceLock::new();
    let cell = match example {
        "schedule" => &SCHEDULE,
        "predictive" => &PREDICTIVE,
        other => panic!("unknown example {other}"),
    };
    cell.get_or_init(|| {
        let path = build(example);
        let start = Instant::now();
        let component = Component::from_file(engine(), &path)
            .unwrap_or_else(|e| panic!("compiling {}: {e:?}", path.display()));
        (path, component, start.elapsed())
    })
}

/// A pod as the contract packs it.
#[derive(Clone, Copy)]
struct Pod {
    id: u32,
    capacity: u32,
    tickets: u32,
    /// 0 starting, 1 ready, 2 draining.
    phase: u32,
    autoscaled: bool,
    idle_seconds: u32,
}

fn ready(id: u32, capacity: u32, tickets: u32, idle_seconds: u32) -> Pod {
    Pod {
        id,
        capacity,
        tickets,
        phase: 1,
        autoscaled: true,
        idle_seconds,
    }
}

/// What a snapshot is made of, with the host's defaults.
struct Input {
    tickets_max: u32,
    tickets_spare: u32,
    pods_max: u32,
    cooldown_seconds: u32,
    config: &'static str,
    unix_seconds: u64,
    utc_offset_seconds: i32,
    pods: Vec<Pod>,
    waiting: u32,
    per_minute: Vec<u32>,
    startup_median_ms: Option<u32>,
    startup_p90_ms: Option<u32>,
}

impl Default for Input {
    fn default() -> Self {
        Self {
            tickets_max: 1,
            tickets_spare: 2,
            pods_max: 1,
            cooldown_seconds: 10,
            config: "",
            unix_seconds: 0,
            utc_offset_seconds: 0,
            pods: Vec::new(),
            waiting: 0,
            per_minute: vec![0; 60],
            startup_median_ms: None,
            startup_p90_ms: None,
        }
    }
}

/// The snapshot the host would send: pods packed little-endian, totals summed.
fn snapshot(input: &Input) -> Snapshot {
    let mut pods = Vec::with_capacity(input.pods.len() * POD_WORDS as usize * 4);
    let mut totals = Totals {
        ready_pods: 0,
        starting_pods: 0,
        draining_pods: 0,
        autoscaled_pods: 0,
        tickets_in_use: 0,
        free_tickets: 0,
        starting_tickets: 0,
    };
    for p in &input.pods {
        for word in [
            p.id,
            p.capacity,
            p.tickets,
            p.phase,
            u32::from(p.autoscaled),
            p.idle_seconds,
            60,
        ] {
            pods.extend_from_slice(&word.to_le_bytes());
        }
        match p.phase {
            0 => {
                totals.starting_pods += 1;
                totals.starting_tickets += p.capacity;
            }
            1 => {
                totals.ready_pods += 1;
                totals.free_tickets += p.capacity.saturating_sub(p.tickets);
            }
            _ => totals.draining_pods += 1,
        }
        totals.autoscaled_pods += u32::from(p.autoscaled);
        totals.tickets_in_use += p.tickets;
    }
    let mut per_minute = vec![0; 60usize.saturating_sub(input.per_minute.len())];
    per_minute.extend_from_slice(&input.per_minute);
    Snapshot {
        settings: Settings {
            tickets_max: input.tickets_max,
            tickets_spare: input.tickets_spare,
            pods_max: input.pods_max,
            cooldown_seconds: input.cooldown_seconds,
            config: input.config.to_owned(),
        },
        clock: Clock {
            unix_seconds: input.unix_seconds,
            utc_offset_seconds: input.utc_offset_seconds,
        },
        pod_words: POD_WORDS,
        pods,
        totals,
        waiting: input.waiting,
        arrivals: Arrivals {
            per_minute,
            per_hour: vec![0; 168],
        },
        observed: Observed {
            startup_median_ms: input.startup_median_ms,
            startup_p90_ms: input.startup_p90_ms,
            session_median_seconds: None,
            session_p90_seconds: None,
            longest_wait_ms: 0,
        },
    }
}

/// Monday 2026-12-07 00:00 UTC.
const MONDAY: u64 = 1_796_601_600;
const HOUR: u64 = 3600;

#[test]
fn schedule_component_keeps_the_window_spare_in_local_time() {
    let (_, component, _) = component("schedule");
    let mut policy = Loaded::new(component, 64 << 20).expect("instantiate");
    let app = |unix_seconds, utc_offset_seconds| Input {
        tickets_max: 5,
        tickets_spare: 2,
        pods_max: 10,
        cooldown_seconds: 60,
        config: "Mon-Fri 08:45-10:30 spare=20",
        unix_seconds,
        utc_offset_seconds,
        ..Input::default()
    };
    // 08:30 UTC: 09:30 in Berlin (inside the window: 20 spare = 4 pods of
    // 5), 08:30 in London (outside: tickets.spare 2 = 1 pod).
    let at = MONDAY + 8 * HOUR + 30 * 60;
    assert_eq!(policy.scale(&snapshot(&app(at, 3600))), (4, vec![]));
    assert_eq!(policy.scale(&snapshot(&app(at, 0))), (1, vec![]));
    // Saturday: no window.
    assert_eq!(
        policy.scale(&snapshot(&app(at + 5 * 24 * HOUR, 3600))),
        (1, vec![])
    );
    // After the window, idle pods past the cooldown go, most idle first.
    let after = Input {
        pods: vec![
            ready(1, 5, 0, 30),
            ready(2, 5, 0, 300),
            ready(3, 5, 0, 120),
        ],
        ..app(MONDAY + 11 * HOUR, 3600)
    };
    assert_eq!(policy.scale(&snapshot(&after)), (0, vec![2, 3]));
    // Assign packs users on the fullest ready pod.
    let busy = Input {
        pods: vec![ready(1, 5, 1, 0), ready(2, 5, 4, 0), ready(3, 5, 5, 0)],
        ..app(at, 3600)
    };
    assert_eq!(policy.assign(&snapshot(&busy)), Some(2));
    assert_eq!(policy.assign(&snapshot(&app(at, 3600))), None);
}

#[test]
fn predictive_component_covers_the_arrivals_during_a_pod_start() {
    let (_, component, _) = component("predictive");
    let mut policy = Loaded::new(component, 64 << 20).expect("instantiate");
    let app = |per_minute: Vec<u32>, startup_p90_ms| Input {
        tickets_max: 2,
        tickets_spare: 1,
        pods_max: 20,
        cooldown_seconds: 60,
        unix_seconds: MONDAY + 9 * HOUR,
        per_minute,
        startup_p90_ms,
        ..Input::default()
    };
    // 6 users a minute over the last 10 minutes, pods take 2 minutes (p90):
    // 12 users are expected while a pod boots → 6 pods of 2.
    let mut busy = vec![6; 10];
    busy.push(0);
    assert_eq!(policy.scale(&snapshot(&app(busy.clone(), Some(120_000)))), (6, vec![]));
    // Without an observed start-up the config default (60 s) is used: 6 users, 3 pods.
    assert_eq!(policy.scale(&snapshot(&app(busy, None))), (3, vec![]));
    // No arrivals: the floor is tickets.spare (1 ticket = 1 pod).
    assert_eq!(policy.scale(&snapshot(&app(vec![0; 60], None))), (1, vec![]));
    // Within pods.max.
    let capped = Input {
        pods_max: 2,
        ..app(vec![30; 60], Some(120_000))
    };
    assert_eq!(policy.scale(&snapshot(&capped)), (2, vec![]));
    // Quiet again: idle pods past the cooldown go, while the floor stays covered.
    let quiet = Input {
        pods: vec![ready(1, 2, 0, 600), ready(2, 2, 0, 900), ready(3, 2, 1, 0)],
        ..app(vec![0; 60], Some(120_000))
    };
    assert_eq!(policy.scale(&snapshot(&quiet)), (0, vec![2, 1]));
    assert_eq!(policy.assign(&snapshot(&quiet)), Some(3));
    assert_eq!(policy.assign(&snapshot(&app(vec![0; 60], None))), None);
}

/// A snapshot of `n` pods, most of them ready with some tickets, a few
/// starting and idle, and a day of arrivals: the worst realistic case.
fn large(n: u32, config: &'static str) -> Input {
    let pods = (0..n)
        .map(|i| Pod {
            id: i + 1,
            capacity: 4,
            tickets: i % 5,
            phase: if i % 50 == 7 { 0 } else { 1 },
            autoscaled: i % 10 != 0,
            idle_seconds: if i % 5 == 0 { 30 + i } else { 0 },
        })
        .collect();
    Input {
        tickets_max: 4,
        tickets_spare: 8,
        pods_max: n + 50,
        cooldown_seconds: 60,
        config,
        unix_seconds: MONDAY + 9 * HOUR,
        utc_offset_seconds: 3600,
        pods,
        per_minute: (0..60).map(|i| i % 7).collect(),
        startup_p90_ms: Some(45_000),
        ..Input::default()
    }
}

fn median_and_p90(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.9))
}

/// Smallest memory cap, in MiB, under which the component instantiates and
/// answers 200 calls at 1,000 pods.
fn memory_needed_mib(component: &Component, snap: &Snapshot) -> usize {
    (1..=256)
        .find(|mib| {
            let Ok(mut loaded) = Loaded::new(component, mib << 20) else {
                return false;
            };
            let decide = loaded.policy.wicket_policy_decide();
            (0..100).all(|_| {
                decide.call_assign(&mut loaded.store, snap).is_ok()
                    && decide.call_scale(&mut loaded.store, snap).is_ok()
            })
        })
        .unwrap_or(usize::MAX)
}

#[test]
#[ignore = "measurement: run with --release -- --ignored --nocapture"]
fn measure_polyglot_policies() {
    for (example, config) in [
        ("schedule", "Mon-Fri 08:45-10:30 spare=20"),
        ("predictive", ""),
    ] {
        let (path, component, compile) = component(example);
        let size = std::fs::metadata(path).expect("component file").len();
        println!(
            "{example}: {:.2} MB, compile {:.2} s",
            size as f64 / 1e6,
            compile.as_secs_f64()
        );
        let start = Instant::now();
        let mut loaded = Loaded::new(component, 256 << 20).expect("instantiate");
        println!(
            "{example}: instantiate {:.2} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        for n in [100, 1000] {
            let snap = snapshot(&large(n, config));
            let decide = loaded.policy.wicket_policy_decide();
            let mut assign = Vec::new();
            let mut scale = Vec::new();
            for round in 0..1100 {
                let t = Instant::now();
                let a = decide.call_assign(&mut loaded.store, &snap).expect("assign");
                let ta = t.elapsed();
                let t = Instant::now();
                let s = decide.call_scale(&mut loaded.store, &snap).expect("scale");
                let ts = t.elapsed();
                std::hint::black_box((a, s));
                // The first 100 rounds warm caches and the guest's heap.
                if round >= 100 {
                    assign.push(ta);
                    scale.push(ts);
                }
            }
            let (a50, a90) = median_and_p90(assign);
            let (s50, s90) = median_and_p90(scale);
            println!(
                "{example} @ {n} pods: assign median {:.1} µs p90 {:.1} µs; scale median {:.1} µs p90 {:.1} µs",
                a50.as_secs_f64() * 1e6,
                a90.as_secs_f64() * 1e6,
                s50.as_secs_f64() * 1e6,
                s90.as_secs_f64() * 1e6,
            );
        }
        println!(
            "{example}: peak linear memory {:.1} MiB after 2,200 calls",
            loaded.store.data().peak_memory as f64 / (1 << 20) as f64
        );
        let needed = memory_needed_mib(component, &snapshot(&large(1000, config)));
        println!("{example}: smallest memory cap that works: {needed} MiB");
    }
}
