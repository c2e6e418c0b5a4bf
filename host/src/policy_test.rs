//! `wicket policy test POLICY.wasm CASES.toml`: runs a component on cases
//! written for people (see `policy::cases`; `wicket policy test --example`
//! prints `examples/policy-cases.toml`) and shows, for each case that
//! fails, what was expected and what came back, by pod name. A decision
//! the host would refuse (it breaks an invariant) fails its case too.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::policy::cases::{self, Case};
use crate::policy::{CallError, Limits, Live, LoadedPolicy, PolicyEngine, invariants};
use crate::state::ScaleDecision;

/// The annotated example of the cases format, for `wicket policy test
/// --example`: a user with only the binary has no copy of the repository.
pub const CASES_EXAMPLE: &str = include_str!("../../examples/policy-cases.toml");

/// The first bytes of every WebAssembly module and component.
const WASM_MAGIC: &[u8] = b"\0asm";

/// How the cases went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Cases whose decisions were as expected.
    pub passed: usize,
    /// Cases with a difference, a refused decision or a fault.
    pub failed: usize,
}

/// What one case got.
struct Got {
    assign: Result<Option<u32>, CallError>,
    scale: Result<ScaleDecision, CallError>,
}

fn show_assign(case: &Case, a: Option<u32>) -> String {
    a.map_or_else(|| cases::NONE.to_owned(), |id| case.pod_name(id))
}

fn show_list(names: &[String]) -> String {
    format!("[{}]", names.join(", "))
}

/// The lines that say how `got` differs from what `case` expects (empty: it
/// passed).
fn differences(case: &Case, got: &Got) -> Vec<String> {
    let mut lines = Vec::new();
    let e = &case.expect;
    match &got.assign {
        Err(err) => lines.push(format!("assign   faulted: {err}")),
        Ok(a) => {
            if let Some(want) = &e.assign {
                let want_id = want.as_ref().map(|name| {
                    case.names
                        .iter()
                        .find(|(_, n)| *n == name)
                        .map(|(id, _)| *id)
                });
                let same = match (want_id, a) {
                    (None, None) => true,
                    (Some(Some(w)), Some(g)) => w == *g,
                    _ => false,
                };
                if !same {
                    lines.push(format!(
                        "assign   expected {:<16} got {}",
                        want.as_deref().unwrap_or(cases::NONE),
                        show_assign(case, *a)
                    ));
                }
            }
            if let Err(v) = invariants::check_assign(&case.snapshot, *a) {
                lines.push(format!(
                    "assign   {} would be refused by the host: {v}",
                    show_assign(case, *a)
                ));
            }
        }
    }
    match &got.scale {
        Err(err) => lines.push(format!("scale    faulted: {err}")),
        Ok(s) => {
            if let Some(want) = e.create
                && want != s.create
            {
                lines.push(format!("create   expected {want:<16} got {}", s.create));
            }
            let got_names: Vec<String> = s.delete.iter().map(|&id| case.pod_name(id)).collect();
            if let Some(want) = &e.delete {
                let (mut w, mut g) = (want.clone(), got_names.clone());
                w.sort();
                g.sort();
                if w != g {
                    lines.push(format!(
                        "delete   expected {:<16} got {}",
                        show_list(want),
                        show_list(&got_names)
                    ));
                }
            }
            if let Err(v) = invariants::check_scale(&case.snapshot, s) {
                lines.push(format!(
                    "scale    create {}, delete {} would be refused by the host: {v}",
                    s.create,
                    show_list(&got_names)
                ));
            }
        }
    }
    lines
}

/// Runs every case on `live` (a fresh instance after a fault) and prints a
/// line per case, the differences of failed ones, and the summary line.
pub fn run_cases(
    engine: &PolicyEngine,
    policy: &LoadedPolicy,
    cases: &[Case],
    out: &mut impl std::io::Write,
) -> anyhow::Result<Summary> {
    let mut summary = Summary {
        passed: 0,
        failed: 0,
    };
    let mut live: Option<Live> = None;
    for case in cases {
        if live.is_none() {
            live = Some(
                policy
                    .instantiate(engine)
                    .context("instantiating the policy")?,
            );
        }
        let Some(l) = live.as_mut() else { continue };
        let assign = l.assign(&case.snapshot);
        if assign.is_err() {
            live = Some(
                policy
                    .instantiate(engine)
                    .context("instantiating the policy")?,
            );
        }
        let Some(l) = live.as_mut() else { continue };
        let scale = l.scale(&case.snapshot);
        if scale.is_err() {
            live = None;
        }
        let diff = differences(case, &Got { assign, scale });
        if diff.is_empty() {
            summary.passed += 1;
            writeln!(out, "ok    {}", case.name)?;
        } else {
            summary.failed += 1;
            writeln!(out, "FAIL  {}", case.name)?;
            for line in diff {
                writeln!(out, "      {line}")?;
            }
        }
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}

/// `wicket policy test FILE CASES`: loads both, runs the cases, prints the
/// report to stdout. Err only when the component or the file is unusable.
pub fn run(file: &Path, cases_file: &Path) -> anyhow::Result<Summary> {
    let raw =
        std::fs::read(cases_file).with_context(|| format!("reading {}", cases_file.display()))?;
    if raw.starts_with(WASM_MAGIC) {
        anyhow::bail!(
            "{} is a WebAssembly file, not a cases file: the component comes first \
             (wicket policy test POLICY.wasm CASES.toml)",
            cases_file.display()
        );
    }
    let text = String::from_utf8(raw)
        .with_context(|| format!("reading {}: not UTF-8 text", cases_file.display()))?;
    let cases = cases::parse(&text).with_context(|| format!("{}", cases_file.display()))?;
    // Generous limits: a test is about decisions, and a descheduled call
    // on a busy machine must not fail a case (`wicket policy check` is the
    // place to learn about limits).
    let limits = Limits {
        timeout: Duration::from_secs(2),
        memory_bytes: 1024 << 20,
        instantiate_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let engine = PolicyEngine::new(limits)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if let Some(note) = crate::policy::large_component_notice(
        "compiling",
        &file.display().to_string(),
        bytes.len() as u64,
    ) {
        eprintln!("{note}");
    }
    let policy = LoadedPolicy::load(&engine, &bytes, &file.display().to_string())
        .with_context(|| format!("{} is not a usable policy", file.display()))?;
    let mut stdout = std::io::stdout().lock();
    run_cases(&engine, &policy, &cases, &mut stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_given_as_the_cases_file_names_the_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("my-policy.wasm");
        // A component's preamble (magic, then version 0x0d, layer 1).
        std::fs::write(&wasm, b"\0asm\x0d\0\x01\0").expect("write");
        let cases = dir.path().join("cases.toml");
        std::fs::write(&cases, "[[case]]\nname = \"x\"\nexpect_create = 0\n").expect("write");
        let err = run(&cases, &wasm).expect_err("swapped").to_string();
        assert!(
            err.contains("my-policy.wasm is a WebAssembly file"),
            "{err}"
        );
        assert!(
            err.contains("wicket policy test POLICY.wasm CASES.toml"),
            "{err}"
        );
    }
}
