//! Builds the workspace's policy components for `wasm32-wasip2`, so that a
//! plain `cargo build` embeds the default policy and the tests find the
//! deliberately faulty ones (their paths: `src/built.rs`). A nested
//! cargo with its own target directory (beside the outer one) avoids waiting
//! on the outer build's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (cargo package, env var naming the built component)
const POLICIES: &[(&str, &str)] = &[
    ("wicket-policy-spare-tickets", "WICKET_POLICY_SPARE_TICKETS"),
    ("wicket-policy-faulty", "WICKET_POLICY_FAULTY"),
    ("wicket-policy-other-major", "WICKET_POLICY_OTHER_MAJOR"),
    ("wicket-policy-contract-0-1", "WICKET_POLICY_CONTRACT_0_1"),
    ("wicket-policy-contract-0-2", "WICKET_POLICY_CONTRACT_0_2"),
    // The Rust example (examples/policies/scale-to-zero), built here so that
    // CI builds it and tests can load it.
    ("wicket-policy-scale-to-zero", "WICKET_POLICY_SCALE_TO_ZERO"),
];

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest
        .ancestors()
        .nth(2)
        .ok_or("crates/policy-runtime/ has no workspace above it")?;
    for dir in ["wit", "policies", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    // OUT_DIR is <target>/<profile>/build/<pkg>/out: share one policy build
    // between debug, test and release builds.
    // Keyed by the workspace path: two checkouts sharing one target
    // directory must not embed each other's policies.
    let tree = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut h);
        h.finish()
    };
    let target_dir = out
        .ancestors()
        .nth(4)
        .unwrap_or(&out)
        .join(format!("policy-build-{tree:016x}"));

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            "policy",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for (pkg, _) in POLICIES {
        cmd.args(["-p", pkg]);
    }
    // Flags meant for the host (e.g. target-cpu=native) must not reach wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo for the policies: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the policy components failed ({status}). Is the target installed? \
             Run `rustup target add {WASM_TARGET}` (the README's commands do it for you)."
        ));
    }
    for (pkg, var) in POLICIES {
        let file = format!("{}.wasm", pkg.replace('-', "_"));
        let built = target_dir.join(WASM_TARGET).join("policy").join(&file);
        let dest = out.join(&file);
        copy(&built, &dest)?;
        println!("cargo::rustc-env={var}={}", dest.display());
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}
