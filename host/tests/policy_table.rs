//! Replays the default policy's decision table
//! (`policies/spare-tickets/tests/cases.toml`, also checked natively) through
//! compiled components, as the host runs them, with the parser and runner of
//! `wicket policy test`: the embedded default, a 0.1 component built as the
//! default was before contract 0.2 (it must load and decide identically,
//! through the adapter), and a 0.2 component that decides like the default
//! and checks that the new parts of the snapshot arrive.

mod common;

use std::sync::Arc;

use wicket::policy::bindings::Contract;
use wicket::policy::cases::{self, Case};
use wicket::policy::{self, Limits, LoadedPolicy, PolicyEngine};
use wicket::policy_test::{Summary, run_cases};
use wicket::state::{Clock, ObservedTimes, Phase, SnapPod, Snapshot};

fn table() -> Vec<Case> {
    let text = include_str!("../../policies/spare-tickets/tests/cases.toml");
    let cases = cases::parse(text).expect("the table parses");
    assert!(cases.len() >= 20, "the table should cover the behaviour");
    cases
}

fn engine() -> Arc<PolicyEngine> {
    // Debug builds, tests in parallel: no deadline trouble.
    PolicyEngine::new(Limits {
        timeout: std::time::Duration::from_secs(2),
        ..Limits::default()
    })
    .expect("engine")
}

fn load(engine: &PolicyEngine, which: &str) -> Arc<LoadedPolicy> {
    let bytes =
        std::fs::read(common::policy_path(which)).expect("built by crates/policy-runtime/build.rs");
    LoadedPolicy::load(engine, &bytes, which).expect("loads")
}

/// Runs `cases` and fails with the report if any case fails.
fn all_pass(engine: &PolicyEngine, policy: &LoadedPolicy, cases: &[Case]) {
    let mut report = Vec::new();
    let summary = run_cases(engine, policy, cases, &mut report).expect("runs");
    let report = String::from_utf8_lossy(&report);
    assert_eq!(
        summary,
        Summary {
            passed: cases.len(),
            failed: 0
        },
        "{}:\n{report}",
        policy.source
    );
    assert!(report.ends_with(&format!("{} passed, 0 failed\n", cases.len())));
}

#[test]
fn compiled_default_policy_matches_the_table() {
    let engine = engine();
    let default = policy::load_default(&engine).expect("the embedded default loads");
    all_pass(&engine, &default, &table());
}

#[test]
fn the_documented_example_cases_pass_on_the_default() {
    let engine = engine();
    let default = policy::load_default(&engine).expect("default");
    let cases = cases::parse(wicket::policy_test::CASES_EXAMPLE).expect("the example parses");
    all_pass(&engine, &default, &cases);
}

/// Someone with only the binary gets the annotated format from it: `--help`
/// names `--example`, and `--example` prints examples/policy-cases.toml.
#[test]
fn the_binary_prints_the_documented_example() {
    let wicket = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wicket"))
            .args(args)
            .output()
            .expect("runs wicket");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let example = wicket(&["policy", "test", "--example"]);
    assert_eq!(example, include_str!("../../examples/policy-cases.toml"));
    let help = wicket(&["policy", "test", "--help"]);
    assert!(help.contains("--example"), "{help}");
    assert!(!help.contains("policy-cases.toml"), "{help}");
}

#[test]
fn a_0_1_component_loads_and_decides_identically() {
    let engine = engine();
    let old = load(&engine, "contract-0.1");
    assert_eq!(old.contract, Contract::V0_1);
    assert_eq!(old.version, "0.1.0");
    all_pass(&engine, &old, &table());
    // And on the samples every policy is dry-run on, it decides exactly as
    // the embedded default does.
    let default = policy::load_default(&engine).expect("default");
    let (mut a, mut b) = (
        old.instantiate(&engine).expect("instance"),
        default.instantiate(&engine).expect("instance"),
    );
    for (name, snap) in policy::samples::samples() {
        assert_eq!(a.assign(&snap), b.assign(&snap), "{name}");
        assert_eq!(a.scale(&snap), b.scale(&snap), "{name}");
    }
}

#[test]
fn a_0_2_component_decides_like_the_default_and_gets_a_complete_snapshot() {
    let engine = engine();
    let new = load(&engine, "contract-0.2");
    assert_eq!(new.contract, Contract::V0_2);
    assert_eq!(new.version, "0.2.0");
    all_pass(&engine, &new, &table());
    // `strict` traps unless the clock, the arrival lists and the totals are
    // there and agree with the pods.
    let strict: Vec<Case> = table()
        .into_iter()
        .map(|mut c| {
            c.snapshot.config = "strict".into();
            c
        })
        .collect();
    all_pass(&engine, &new, &strict);
    let mut live = new.instantiate(&engine).expect("instance");
    let mut broken = policy::samples::mixed(10);
    broken.config = "strict".into();
    broken.arrivals_per_hour.pop();
    assert!(live.scale(&broken).is_err(), "strict must notice");
}

#[test]
fn what_the_host_sends_is_what_a_0_2_guest_reads() {
    let engine = engine();
    let new = load(&engine, "contract-0.2");
    let mut live = new.instantiate(&engine).expect("instance");
    let pod = |id, tickets, phase, autoscaled, age_seconds| SnapPod {
        id,
        capacity: 3,
        tickets,
        phase,
        autoscaled,
        idle_seconds: 5,
        age_seconds,
    };
    let mut per_minute = vec![0; 60];
    per_minute[59] = 4;
    per_minute[10] = 2;
    let mut per_hour = vec![1; 168];
    per_hour[167] = 9;
    let snap = Snapshot {
        tickets_max: 3,
        tickets_spare: 1,
        pods_max: 5,
        cooldown_seconds: 10,
        config: "echo".into(),
        pods: vec![
            pod(7, 1, Phase::Ready, false, 3600),
            pod(3, 0, Phase::Starting, true, 12),
            pod(9, 2, Phase::Draining, true, 86_400 * 50),
        ],
        waiting: 6,
        // 2106-02-07: past 2^32 seconds, so both words of the u64 count.
        clock: Clock {
            unix_seconds: (1 << 32) + 77,
            utc_offset_seconds: -9000,
        },
        arrivals_per_minute: per_minute,
        arrivals_per_hour: per_hour,
        observed: ObservedTimes {
            startup_median_ms: Some(4200),
            startup_p90_ms: None,
            session_median_seconds: Some(600),
            session_p90_seconds: Some(1800),
            longest_wait_ms: 31_000,
        },
    };
    let got = live.scale(&snap).expect("echo answers").delete;
    let expected: Vec<u32> = vec![
        77,
        1,
        (-9000i32) as u32,
        7,
        60,
        168,
        6,
        167 + 9,
        4,
        9,
        4200,
        u32::MAX,
        600,
        1800,
        31_000,
        // totals: ready, starting, draining, autoscaled, in use, free, starting tickets
        1,
        1,
        1,
        2,
        3,
        2,
        3,
        6,
        // ages
        3600,
        12,
        86_400 * 50,
    ];
    assert_eq!(got, expected);
}

/// `wicket policy test POLICY CASES`, the binary.
fn policy_test(policy: &str, cases: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(common::exe())
        .args(["policy", "test"])
        .arg(common::policy_path(policy))
        .arg(cases)
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn wicket_policy_test_passes_the_table_and_shows_a_wrong_case_by_pod_names() {
    let table = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies/spare-tickets/tests/cases.toml");
    let n = table_len();
    let (ok, out) = policy_test("spare-tickets", &table);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{n} passed, 0 failed")), "{out}");
    // The 0.1 component through the adapter, on the same file.
    let (ok, out) = policy_test("contract-0.1", &table);
    assert!(
        ok && out.contains(&format!("{n} passed, 0 failed")),
        "{out}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        r#"
[[case]]
name = "right"
settings = { tickets_max = 2, tickets_spare = 0, pods_max = 2 }
pods = [
  { name = "shiny-a", phase = "ready", tickets = 1 },
  { name = "shiny-b", phase = "ready", tickets = 0 },
]
expect_assign = "shiny-a"

[[case]]
name = "wrong on purpose"
settings = { tickets_max = 2, tickets_spare = 0, pods_max = 2, cooldown_seconds = 10 }
clock = { time = "2026-12-07T08:50:00", timezone = "Europe/Berlin" }
arrival_rate_per_minute = 2
pods = [
  { name = "shiny-a", phase = "ready", tickets = 1 },
  { name = "shiny-b", phase = "ready", tickets = 0, autoscaled = true, idle = "5m" },
]
expect_assign = "shiny-b"
expect_create = 1
expect_delete = []
"#,
    )
    .expect("write");
    let (ok, out) = policy_test("spare-tickets", &wrong);
    assert!(!ok, "a failing case must fail the command:\n{out}");
    for line in [
        "ok    right",
        "FAIL  wrong on purpose",
        "assign   expected shiny-b",
        "got shiny-a",
        "create   expected 1",
        "delete   expected []",
        "got [shiny-b]",
        "1 passed, 1 failed",
    ] {
        assert!(out.contains(line), "{line:?} missing in:\n{out}");
    }

    // A mistake in the file names the case and the key.
    std::fs::write(
        &wrong,
        "[[case]]\nname = \"typo\"\npods = [{ name = \"a\", phase = \"ready\" }]\nexpect_assign = \"b\"\n",
    )
    .expect("write");
    let (ok, out) = policy_test("spare-tickets", &wrong);
    assert!(!ok);
    assert!(
        out.contains("typo") && out.contains("expect_assign") && out.contains("\"b\""),
        "{out}"
    );
}

fn table_len() -> usize {
    table().len()
}
