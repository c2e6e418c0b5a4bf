//! The Python and JavaScript example policies (`examples/policies/schedule`,
//! `examples/policies/predictive`), built from source with their own build
//! scripts (which install componentize-py / jco through
//! `scripts/policy-tools.sh`), loaded by the host as 0.2 components and run
//! on their `cases.toml` exactly as `wicket policy test` runs them: clock
//! and time zone, arrival history, observed start-up times, decisions by
//! pod name, and the host's invariant checks on every answer.
//!
//! Their native tests (pytest, `node --test`) and the `wicket policy new`
//! templates are run by `scripts/test-policy-sdks.sh`; what they cost is
//! measured with `wicket policy check` (see `sdk/README.md`).

mod common;

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository holds host/")
        .to_path_buf()
}

/// Builds `example`, runs its cases through the host and checks that all
/// `expected` of them pass.
fn passes_its_cases(example: &str, expected: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let wasm = common::build_example(example, dir.path());
    let cases = repo()
        .join("examples/policies")
        .join(example)
        .join("cases.toml");
    let summary = wicket::policy_test::run(&wasm, &cases)
        .unwrap_or_else(|e| panic!("{example}: the host could not run it: {e:?}"));
    assert_eq!(
        (summary.passed, summary.failed),
        (expected, 0),
        "{example}: cases passed and failed (the report is on stdout)"
    );
}

#[test]
fn schedule_python_component_passes_its_cases_in_the_host() {
    passes_its_cases("schedule", 13);
}

#[test]
fn predictive_javascript_component_passes_its_cases_in_the_host() {
    passes_its_cases("predictive", 11);
}
