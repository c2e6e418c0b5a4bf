//! Loading a policy component: compile (or take it from the engine's cache),
//! find the contract version it speaks, link, and dry-run it on sample
//! snapshots under its limits before it may serve.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::bindings::{
    CONTRACT_VERSION, Contract, DECIDE_INTERFACE, LEGACY_CONTRACT_VERSION, v01, v02,
};
use super::engine::{HostState, Limits, PolicyEngine};
use super::invariants::{self, Violation};
use super::live::{Bindings, CallError, Live};
use super::samples;

/// Why a component cannot become a policy.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// Exports no `wicket:policy/decide` interface at all.
    #[error("not a wicket policy: it exports no `{DECIDE_INTERFACE}` interface (exports: {0})")]
    NotAPolicy(String),
    /// Speaks a contract version the host does not know.
    #[error(
        "policy speaks contract {DECIDE_INTERFACE}@{found}, but this host speaks \
         @{CONTRACT_VERSION} (and @{LEGACY_CONTRACT_VERSION} through an adapter); it accepts \
         0.1.x and 0.2.x — rebuild the policy against wit/ of this wicket"
    )]
    WrongVersion {
        /// Version the component exports.
        found: String,
    },
    /// Imports something the host does not give (e.g. networking).
    #[error("cannot link the policy (it imports something this host does not provide): {0}")]
    Link(String),
    /// Failed on one of the sample snapshots.
    #[error("dry run failed on sample {sample:?}: {reason}")]
    DryRun {
        /// Which sample.
        sample: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// The linked component, by the contract version it speaks.
enum Pre {
    V0_1(v01::PolicyPre<HostState>),
    V0_2(v02::PolicyPre<HostState>),
}

/// A compiled, validated policy, ready to be instantiated.
pub struct LoadedPolicy {
    /// sha256 of the component bytes, hex.
    pub digest: String,
    /// Where it came from (file path, `embedded`, ConfigMap key).
    pub source: String,
    /// Contract version it exports (e.g. `0.1.0`).
    pub version: String,
    /// The contract the host speaks with it.
    pub contract: Contract,
    /// The limits its calls and instances run under.
    pub limits: Limits,
    /// How long compilation took (zero when the engine had it cached).
    pub compile_time: Duration,
    /// How long loading took in all: compile, link and dry run.
    pub load_time: Duration,
    pre: Pre,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("digest", &self.short_digest())
            .field("source", &self.source)
            .field("version", &self.version)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl LoadedPolicy {
    /// Compiles and validates `bytes` under the engine's default limits.
    /// Slow (tens of ms, unless cached): call it off the request path
    /// (`spawn_blocking`).
    pub fn load(engine: &PolicyEngine, bytes: &[u8], source: &str) -> Result<Arc<Self>, LoadError> {
        Self::load_with(engine, bytes, source, engine.limits())
    }

    /// Compiles and validates `bytes`, to run under `limits`.
    pub fn load_with(
        engine: &PolicyEngine,
        bytes: &[u8],
        source: &str,
        limits: Limits,
    ) -> Result<Arc<Self>, LoadError> {
        let started = Instant::now();
        let digest = hex::encode(Sha256::digest(bytes));
        let (component, cached) = engine
            .compile(&digest, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let compile_time = if cached {
            Duration::ZERO
        } else {
            started.elapsed()
        };
        let (version, contract) = contract_version(engine, &component)?;
        let instance_pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        let pre = match contract {
            Contract::V0_1 => Pre::V0_1(v01::PolicyPre::new(instance_pre).map_err(link)?),
            Contract::V0_2 => Pre::V0_2(v02::PolicyPre::new(instance_pre).map_err(link)?),
        };
        let policy = Self {
            digest,
            source: source.to_owned(),
            version,
            contract,
            limits,
            compile_time,
            load_time: Duration::ZERO,
            pre,
        };
        policy.dry_run(engine)?;
        Ok(Arc::new(Self {
            load_time: started.elapsed(),
            ..policy
        }))
    }

    /// First 12 hex digits of the digest, for logs.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12.min(self.digest.len())]
    }

    /// A fresh instance in a fresh store, under the policy's limits.
    pub fn instantiate(&self, engine: &PolicyEngine) -> Result<Live, CallError> {
        let mut store = engine.new_store(
            &format!("{}@{}", self.source, self.short_digest()),
            &self.limits,
        );
        // Instantiation runs guest code too (an interpreter's start-up, for
        // some languages): bound it by its own budget.
        store.set_epoch_deadline(self.limits.instantiate_ticks());
        let _running = engine.ticker().running();
        let failed = |store: &wasmtime::Store<HostState>, e: wasmtime::Error| {
            if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
                CallError::Instantiate(format!(
                    "ran past its instantiation budget of {:?}",
                    self.limits.instantiate_timeout
                ))
            } else if store.data().memory_denied {
                CallError::Instantiate(format!(
                    "needed more than its memory limit of {} MiB",
                    self.limits.memory_bytes >> 20
                ))
            } else {
                CallError::Instantiate(format!("{e:#}"))
            }
        };
        let bindings = match &self.pre {
            Pre::V0_1(pre) => match pre.instantiate(&mut store) {
                Ok(b) => Bindings::V0_1(b, Box::new(v01::Snapshot::empty())),
                Err(e) => return Err(failed(&store, e)),
            },
            Pre::V0_2(pre) => match pre.instantiate(&mut store) {
                Ok(b) => Bindings::V0_2(b, Box::new(v02::Snapshot::empty())),
                Err(e) => return Err(failed(&store, e)),
            },
        };
        Ok(Live::new(store, bindings))
    }

    /// Runs both functions on every sample and checks the invariants.
    fn dry_run(&self, engine: &PolicyEngine) -> Result<(), LoadError> {
        let mut live = self.instantiate(engine).map_err(|e| LoadError::DryRun {
            sample: "instantiate",
            reason: e.to_string(),
        })?;
        for (sample, snap) in samples::samples() {
            let fail = |reason: String| LoadError::DryRun { sample, reason };
            let assigned = live.assign(&snap).map_err(|e| fail(e.to_string()))?;
            invariants::check_assign(&snap, assigned)
                .map_err(|v: Violation| fail(v.to_string()))?;
            let scale = live.scale(&snap).map_err(|e| fail(e.to_string()))?;
            invariants::check_scale(&snap, &scale).map_err(|v| fail(v.to_string()))?;
        }
        Ok(())
    }
}

/// Finds the `decide` export and the contract version the host speaks with it.
fn contract_version(
    engine: &PolicyEngine,
    component: &Component,
) -> Result<(String, Contract), LoadError> {
    let ty = component.component_type();
    let mut names = Vec::new();
    for (name, _) in ty.exports(engine.engine()) {
        let Some((iface, version)) = name.split_once('@') else {
            names.push(name.to_owned());
            continue;
        };
        if iface != DECIDE_INTERFACE {
            names.push(name.to_owned());
            continue;
        }
        return match Contract::for_version(version) {
            Some(c) => Ok((version.to_owned(), c)),
            None => Err(LoadError::WrongVersion {
                found: version.to_owned(),
            }),
        };
    }
    Err(LoadError::NotAPolicy(if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }))
}

/// Components at least this large take seconds to compile or to compress
/// (a Python one, ~18 MB: ~5 s to compile in a release build, more in a
/// debug one; gzip at its best takes as long).
pub const SLOW_COMPONENT_BYTES: u64 = 4 << 20;

/// The line a command prints (to stderr) before `doing` ("compiling",
/// "compressing") a component of `bytes` from `source`, so that a silent
/// pause of seconds is explained; None for a component that takes well
/// under a second.
pub fn large_component_notice(doing: &str, source: &str, bytes: u64) -> Option<String> {
    (bytes >= SLOW_COMPONENT_BYTES).then(|| {
        format!(
            "{doing} {source} ({:.1} MB): a component this large takes several seconds…",
            bytes as f64 / 1e6
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_components_are_announced_before_they_compile() {
        let note = large_component_notice("compiling", "spare-py.wasm", 18_462_599)
            .expect("18 MB is slow");
        assert!(note.contains("spare-py.wasm (18.5 MB)"), "{note}");
        assert_eq!(
            large_component_notice("compiling", "spare_rs.wasm", 82_018),
            None
        );
    }
    use crate::DEFAULT_POLICY;

    fn engine() -> Arc<PolicyEngine> {
        PolicyEngine::new(Limits {
            timeout: Duration::from_secs(2),
            ..Limits::default()
        })
        .expect("engine")
    }

    #[test]
    fn the_same_bytes_compile_once_whatever_the_limits() {
        let engine = engine();
        let first = LoadedPolicy::load(&engine, DEFAULT_POLICY, "a").expect("loads");
        assert!(first.compile_time > Duration::ZERO);
        let again = LoadedPolicy::load(&engine, DEFAULT_POLICY, "b").expect("loads");
        assert_eq!(again.compile_time, Duration::ZERO, "taken from the cache");
        assert_eq!(again.digest, first.digest);
        let roomy = Limits {
            memory_bytes: 64 << 20,
            ..engine.limits()
        };
        let other = LoadedPolicy::load_with(&engine, DEFAULT_POLICY, "c", roomy).expect("loads");
        assert_eq!(other.compile_time, Duration::ZERO);
        assert_eq!(other.limits, roomy, "the policy keeps its own limits");
        assert_eq!(first.limits, engine.limits());
    }

    #[test]
    fn a_policy_runs_under_its_own_memory_cap() {
        let engine = engine();
        let tiny = Limits {
            memory_bytes: 1 << 20,
            ..engine.limits()
        };
        let e = LoadedPolicy::load_with(&engine, DEFAULT_POLICY, "tiny", tiny)
            .expect_err("a Rust component starts above 1 MiB")
            .to_string();
        assert!(e.contains("memory limit of 1 MiB"), "{e}");
        // The same bytes under the engine's default cap load.
        let ok = LoadedPolicy::load(&engine, DEFAULT_POLICY, "default").expect("loads");
        let live = ok.instantiate(&engine).expect("instance");
        assert!(live.peak_memory() > 1 << 20, "{}", live.peak_memory());
        assert!(live.peak_memory() <= 16 << 20);
    }
}
