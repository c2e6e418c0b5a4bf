//! A component built on the Rust SDK (`sdk/rust`), called in wasmtime the way
//! a `wicket:policy@0.2.0` host calls it: the SDK's `export!` glue, its view
//! of the packed snapshot, and the `scale-to-zero` example
//! (`examples/policies/scale-to-zero`, built by crates/policy-runtime/build.rs), end to end.
//!
//! The host itself still speaks 0.1 until its 0.2 support lands, so this test
//! binds `wit/policy.wit` on its own; the decisions are the ones the
//! example's native tests expect.

mod v02 {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({ path: "../wit/policy.wit", world: "policy" });
}

use v02::wicket::policy::types::{
    Arrivals, Clock, LogLevel, Observed, ScaleDecision, Settings, Snapshot, Totals,
};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-store data: WASI with nothing granted, and the log lines received.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    logged: Vec<String>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl v02::wicket::policy::types::Host for State {}

impl v02::wicket::policy::host::Host for State {
    fn log(&mut self, _level: LogLevel, message: String) {
        self.logged.push(message);
    }
}

/// The scale-to-zero component, instantiated.
fn scale_to_zero() -> (Store<State>, v02::Policy) {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).expect("engine");
    let component = Component::from_file(&engine, wicket::policy::built::SCALE_TO_ZERO)
        .expect("the scale-to-zero component compiles");
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links");
    v02::Policy::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).expect("host links");
    let mut store = Store::new(
        &engine,
        State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            logged: Vec::new(),
        },
    );
    let policy = v02::Policy::instantiate(&mut store, &component, &linker)
        .expect("a 0.2 component built on the SDK instantiates against the 0.2 world");
    (store, policy)
}

/// A pod as the test writes it: (id, tickets, phase word, idle seconds); one
/// ticket per pod, autoscaled.
type TestPod = (u32, u32, u32, u32);

/// A snapshot as a 0.2 host sends it, with `extra_words` unknown words after
/// each pod's seven (as a later host may send).
fn snapshot(pods: &[TestPod], waiting: u32, config: &str, extra_words: u32) -> Snapshot {
    let pod_words = 7 + extra_words;
    let mut bytes = Vec::new();
    let mut totals = Totals {
        ready_pods: 0,
        starting_pods: 0,
        draining_pods: 0,
        autoscaled_pods: 0,
        tickets_in_use: 0,
        free_tickets: 0,
        starting_tickets: 0,
    };
    for &(id, tickets, phase, idle) in pods {
        let words = [id, 1, tickets, phase, 1, idle, 1000]
            .into_iter()
            .chain((0..extra_words).map(|_| 0xDEAD_BEEF));
        for word in words {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        totals.autoscaled_pods += 1;
        totals.tickets_in_use += tickets;
        match phase {
            0 => {
                totals.starting_pods += 1;
                totals.starting_tickets += 1;
            }
            1 => {
                totals.ready_pods += 1;
                totals.free_tickets += 1_u32.saturating_sub(tickets);
            }
            _ => totals.draining_pods += 1,
        }
    }
    Snapshot {
        settings: Settings {
            tickets_max: 1,
            tickets_spare: 2,
            pods_max: 3,
            cooldown_seconds: 60,
            config: config.into(),
        },
        clock: Clock {
            unix_seconds: 1_764_806_400,
            utc_offset_seconds: 3600,
        },
        pod_words,
        pods: bytes,
        totals,
        waiting,
        arrivals: Arrivals {
            per_minute: vec![0; 60],
            per_hour: vec![0; 168],
        },
        observed: Observed {
            startup_median_ms: Some(4000),
            startup_p90_ms: Some(9000),
            session_median_seconds: None,
            session_p90_seconds: None,
            longest_wait_ms: 0,
        },
    }
}

fn decide(
    store: &mut Store<State>,
    policy: &v02::Policy,
    s: &Snapshot,
) -> (Option<u32>, ScaleDecision) {
    let decide = policy.wicket_policy_decide();
    let assign = decide.call_assign(&mut *store, s).expect("assign answers");
    let scale = decide.call_scale(&mut *store, s).expect("scale answers");
    (assign, scale)
}

const STARTING: u32 = 0;
const READY: u32 = 1;

#[test]
fn the_scale_to_zero_story_through_the_component() {
    let (mut store, policy) = scale_to_zero();
    let mut check = |pods: &[TestPod],
                     waiting: u32,
                     config: &str,
                     assign: Option<u32>,
                     create: u32,
                     delete: &[u32]| {
        for extra_words in [0, 3] {
            let s = snapshot(pods, waiting, config, extra_words);
            let (got_assign, got_scale) = decide(&mut store, &policy, &s);
            assert_eq!(
                (got_assign, got_scale.create, got_scale.delete.as_slice()),
                (assign, create, delete),
                "pods {pods:?}, waiting {waiting}, config {config:?}, {extra_words} extra words"
            );
        }
    };
    // No pods, nobody waiting: nothing.
    check(&[], 0, "", None, 0, &[]);
    // The first user waits: one pod.
    check(&[], 1, "", None, 1, &[]);
    // It starts: no second pod.
    check(&[(7, 0, STARTING, 0)], 1, "", None, 0, &[]);
    // It is ready: the user is admitted.
    check(&[(7, 0, READY, 0)], 1, "", Some(7), 0, &[]);
    // In use: it stays.
    check(&[(7, 1, READY, 0)], 0, "", None, 0, &[]);
    // Idle for the cooldown: back to zero.
    check(&[(7, 0, READY, 59)], 0, "", Some(7), 0, &[]);
    check(&[(7, 0, READY, 60)], 0, "", Some(7), 0, &[7]);
    // The config string reaches the policy.
    check(
        &[(7, 0, READY, 299), (9, 0, READY, 300)],
        0,
        "idle_seconds=300",
        Some(7),
        0,
        &[9],
    );
    // An unknown phase reads as draining: neither assigned nor deleted.
    check(&[(7, 0, 5, 999)], 0, "", None, 0, &[]);
    assert!(store.data().logged.is_empty(), "the example does not log");
}

/// The example's cases file, run through the host as `wicket policy test`
/// runs it (the host speaks 0.2 itself).
#[test]
fn the_scale_to_zero_cases_pass_in_the_host() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let summary = wicket::policy_test::run(
        std::path::Path::new(wicket::policy::built::SCALE_TO_ZERO),
        &root.join("examples/policies/scale-to-zero/cases.toml"),
    )
    .expect("the cases run");
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert!(summary.passed >= 14, "{summary:?}");
}
