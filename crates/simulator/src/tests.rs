//! The simulator as a whole: determinism, the host's invariants under a
//! faulty policy, bad settings. (That it reaches the same outcome as the
//! live app is host/tests/simulator_same_path.rs.)

use std::sync::Arc;
use std::time::Duration;

use super::*;
use wicket_policy_runtime::{Limits, LoadedPolicy, PolicyEngine, load_default};

/// An engine with a deadline no debug build on a busy machine misses.
fn engine() -> (Arc<PolicyEngine>, Arc<LoadedPolicy>) {
    let engine = PolicyEngine::new(Limits {
        timeout: Duration::from_secs(2),
        ..Limits::default()
    })
    .expect("engine");
    let default = load_default(&engine).expect("default policy");
    (engine, default)
}

fn faulty(engine: &PolicyEngine, mode: &str) -> PolicyUnderTest {
    let bytes = std::fs::read(wicket_policy_runtime::built::FAULTY).expect("faulty policy built");
    PolicyUnderTest {
        label: format!("faulty#{mode}"),
        spec: format!("faulty#{mode}"),
        policy: LoadedPolicy::load(engine, &bytes, "faulty").expect("faulty policy loads"),
        config: Some(mode.to_owned()),
    }
}

fn settings(tickets_max: u32, spare: u32, pods_max: u32) -> SimSettings {
    SimSettings {
        app: AppSettings {
            tickets_max,
            tickets_spare: spare,
            pods_max,
            cooldown: Duration::from_secs(60),
            policy_config: String::new(),
        },
        ..SimSettings::default()
    }
}

/// Two hours of generated traffic with a burst: pods come and go.
fn busy_scenario(seed: u64) -> Scenario {
    let schedule = RateSchedule::parse("Mon 09:00-09:20 300/h; * 30/h").expect("rate");
    let sessions = DurationDist::parse("lognormal:10m,25m").expect("sessions");
    let start = 1_767_603_600_000; // Monday 2026-01-05 09:00 UTC
    let end = 2 * 3_600_000;
    Scenario {
        arrivals: generator::generate(
            &schedule,
            &sessions,
            start,
            end,
            seed,
            &jiff::tz::TimeZone::UTC,
        ),
        start_unix_ms: start,
        end_ms: end,
        settings: SimSettings {
            startup: DurationDist::parse("lognormal:20s,40s").expect("startup"),
            ..settings(4, 2, 20)
        },
        seed,
    }
}

fn run(
    engine: &Arc<PolicyEngine>,
    default: &Arc<LoadedPolicy>,
    scenario: &Scenario,
    policy: &PolicyUnderTest,
) -> Outcome {
    run_policy(engine, default, scenario, policy, &mut |_, _| {}).expect("simulation runs")
}

#[test]
fn the_same_seed_gives_the_same_outcome() {
    let (engine, default) = engine();
    let policy = load_policy(&engine, &default, "default").expect("default");
    let a = run(&engine, &default, &busy_scenario(3), &policy);
    let b = run(&engine, &default, &busy_scenario(3), &policy);
    assert_eq!(a, b, "summary, timeline and waits");
    assert!(a.summary.users > 100, "{:?}", a.summary);
    assert!(a.summary.pods_created > 0 && a.summary.pods_deleted > 0);
    assert!(a.summary.waited_share > 0.0, "the burst makes users wait");
    assert_eq!(a.summary.unserved, 0);
    assert_eq!(a.summary.issue_errors, 0);
    let c = run(&engine, &default, &busy_scenario(4), &policy);
    assert_ne!(a.summary, c.summary, "another seed, other traffic");
}

#[test]
fn a_faulty_policys_bad_decisions_are_rejected_and_counted() {
    let (engine, default) = engine();
    let scenario = busy_scenario(5);
    let reference = run(
        &engine,
        &default,
        &scenario,
        &load_policy(&engine, &default, "default").expect("default"),
    );
    assert_eq!(reference.summary.rejected_decisions, 0);
    for mode in ["assign-full", "assign-unknown", "overscale", "delete-busy"] {
        let out = run(&engine, &default, &scenario, &faulty(&engine, mode));
        let s = &out.summary;
        assert!(s.rejected_decisions >= 1, "{mode}: {s:?}");
        assert!(s.fallbacks >= 1, "{mode}: the fallback answered");
        assert!(
            s.first_fault
                .as_deref()
                .is_some_and(|f| f.contains("broke an invariant")),
            "{mode}: {s:?}"
        );
        // The fallback (the default) serves everyone, and pods.max holds.
        assert_eq!(s.unserved, 0, "{mode}");
        assert!(s.peak_pods <= 20 + 1, "{mode}: {s:?}");
        assert_eq!(s.issue_errors, 0, "{mode}");
    }
    let trap = run(&engine, &default, &scenario, &faulty(&engine, "trap"));
    assert!(trap.summary.policy_faults >= 1, "{:?}", trap.summary);
    assert_eq!(trap.summary.rejected_decisions, 0);
    let table = summary::table(std::slice::from_ref(&trap.summary));
    assert!(table.contains("It was retired then"), "{table}");
    assert!(!table.contains("--memory-mib"), "{table}");
}

#[test]
fn a_memory_fault_names_the_cap_and_the_option_that_lifts_it() {
    let (engine, default) = engine();
    let out = run(
        &engine,
        &default,
        &busy_scenario(5),
        &faulty(&engine, "alloc"),
    );
    let table = summary::table(std::slice::from_ref(&out.summary));
    assert!(
        table.contains("exceeded its memory limit of 16 MiB"),
        "{table}"
    );
    assert!(table.contains("Give it more with --memory-mib."), "{table}");
    assert!(
        table.contains("the default policy took every later decision"),
        "{table}"
    );
}

#[test]
fn a_policy_that_leaks_a_little_every_call_keeps_serving() {
    // 64 KiB a call: the 16 MiB cap is reached within ~250 calls of one
    // instance, and two hours of ticks make thousands.
    let (engine, default) = engine();
    let out = run(
        &engine,
        &default,
        &busy_scenario(5),
        &faulty(&engine, "leak"),
    );
    let s = &out.summary;
    assert_eq!(s.policy_faults, 0, "{s:?}");
    assert_eq!(s.fallbacks, 0, "{s:?}");
    assert!(s.first_fault.is_none(), "{s:?}");
    assert_eq!(s.unserved, 0);
}

#[test]
fn impossible_settings_and_unknown_policies_are_named() {
    let (engine, default) = engine();
    let mut s = busy_scenario(1);
    s.settings.app.tickets_max = 0;
    let policy = load_policy(&engine, &default, "default").expect("default");
    let e = run_policy(&engine, &default, &s, &policy, &mut |_, _| {}).expect_err("refused");
    assert_eq!(
        e.to_string(),
        "--tickets-max: tickets.max must be at least 1"
    );
    let e = load_policy(&engine, &default, "no/such.wasm").expect_err("unknown");
    assert!(
        e.to_string().starts_with("unknown policy `no/such.wasm`"),
        "{e}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").expect("write");
    let e = load_policy(&engine, &default, &junk.display().to_string()).expect_err("junk");
    assert!(e.to_string().contains("refused"), "{e}");
}

#[test]
fn inside_an_async_runtime_it_refuses_rather_than_blocks() {
    let (engine, default) = engine();
    let policy = load_policy(&engine, &default, "default").expect("default");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let scenario = busy_scenario(1);
    let r =
        rt.block_on(async { run_policy(&engine, &default, &scenario, &policy, &mut |_, _| {}) });
    assert!(matches!(r, Err(SimError::InsideRuntime)), "{r:?}");
}

#[test]
fn a_policy_is_named_by_its_file_and_its_path_stays_in_the_summary() {
    let (engine, default) = engine();
    // Two copies of one component: the same file name in two folders.
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(wicket_policy_runtime::built::FAULTY).expect("faulty policy built");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir(d).expect("dir");
        std::fs::write(d.join("mine.wasm"), &bytes).expect("write");
    }
    let spec = |d: &std::path::Path, c: &str| format!("{}{c}", d.join("mine.wasm").display());
    let load = |s: &str| load_policy(&engine, &default, s).expect("loads");
    let mut policies = vec![load("default"), load(&spec(&a, "#ok"))];
    distinct_labels(&mut policies);
    assert_eq!(policies[0].label, "default");
    assert_eq!(policies[1].label, "mine.wasm#ok");
    let out = run_policy(
        &engine,
        &default,
        &busy_scenario(1),
        &policies[1],
        &mut |_, _| {},
    )
    .expect("runs");
    assert_eq!(out.summary.policy, "mine.wasm#ok");
    assert_eq!(out.summary.source, spec(&a, "#ok"));
    assert!(summary::table(std::slice::from_ref(&out.summary)).contains("mine.wasm#ok "));
    assert!(!summary::table(&[out.summary]).contains(&a.display().to_string()));

    // Where file names collide, the rows keep their paths.
    let mut policies = vec![load(&spec(&a, "")), load(&spec(&b, "")), load("default")];
    distinct_labels(&mut policies);
    assert_eq!(policies[0].label, spec(&a, ""));
    assert_eq!(policies[1].label, spec(&b, ""));
    assert_eq!(policies[2].label, "default");
}
