//! Loading a policy component: compile, check the contract version, link,
//! and dry-run it on sample snapshots before it may serve.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::bindings::{self, CONTRACT_VERSION, DECIDE_INTERFACE, PolicyPre};
use super::engine::{HostState, PolicyEngine};
use super::invariants::{self, Violation};
use super::live::{CallError, Live};
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
    /// Speaks an incompatible version of the contract.
    #[error(
        "policy speaks contract {DECIDE_INTERFACE}@{found}, but this host speaks @{CONTRACT_VERSION}; \
         {found} is a different major version — rebuild the policy against wit/ of this wicket"
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

/// A compiled, validated policy, ready to be instantiated.
pub struct LoadedPolicy {
    /// sha256 of the component bytes, hex.
    pub digest: String,
    /// Where it came from (file path, `embedded`, ConfigMap key).
    pub source: String,
    /// Contract version it exports.
    pub version: String,
    /// How long compilation and validation took.
    pub load_time: Duration,
    pre: PolicyPre<HostState>,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("digest", &self.short_digest())
            .field("source", &self.source)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl LoadedPolicy {
    /// Compiles and validates `bytes`. Slow (tens of ms): call it off the
    /// request path (`spawn_blocking`).
    pub fn load(engine: &PolicyEngine, bytes: &[u8], source: &str) -> Result<Arc<Self>, LoadError> {
        let started = Instant::now();
        let digest = hex::encode(Sha256::digest(bytes));
        let component = Component::new(engine.engine(), bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let version = contract_version(engine, &component)?;
        let instance_pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = PolicyPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let policy = Self {
            digest,
            source: source.to_owned(),
            version,
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

    /// A fresh instance in a fresh store.
    pub fn instantiate(&self, engine: &PolicyEngine) -> Result<Live, CallError> {
        let mut store = engine.new_store(&format!("{}@{}", self.source, self.short_digest()));
        // Instantiation runs guest code too: bound it like a call.
        store.set_epoch_deadline(engine.limits().deadline_ticks());
        let _running = engine.ticker().running();
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        Ok(Live::new(store, bindings))
    }

    /// Runs both functions on every sample and checks the invariants.
    fn dry_run(&self, engine: &PolicyEngine) -> Result<(), LoadError> {
        let mut live = self.instantiate(engine).map_err(|e| LoadError::DryRun {
            sample: "instantiate",
            reason: e.to_string(),
        })?;
        let mut buf = bindings::Snapshot::empty();
        for (sample, snap) in samples::samples() {
            buf.fill_from(&snap);
            let fail = |reason: String| LoadError::DryRun { sample, reason };
            let assigned = live.assign(&buf).map_err(|e| fail(e.to_string()))?;
            invariants::check_assign(&snap, assigned)
                .map_err(|v: Violation| fail(v.to_string()))?;
            let scale = live.scale(&buf).map_err(|e| fail(e.to_string()))?;
            invariants::check_scale(&snap, &scale).map_err(|v| fail(v.to_string()))?;
        }
        Ok(())
    }
}

/// Finds the `decide` export and checks its version against ours.
fn contract_version(engine: &PolicyEngine, component: &Component) -> Result<String, LoadError> {
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
        return if compatible(version, CONTRACT_VERSION) {
            Ok(version.to_owned())
        } else {
            Err(LoadError::WrongVersion {
                found: version.to_owned(),
            })
        };
    }
    Err(LoadError::NotAPolicy(if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }))
}

/// Semver compatibility: same major, and for 0.x the same minor.
fn compatible(found: &str, ours: &str) -> bool {
    match (semver::Version::parse(found), semver::Version::parse(ours)) {
        (Ok(f), Ok(o)) => f.major == o.major && (o.major != 0 || f.minor == o.minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn version_compatibility() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("garbage", "0.1.0"));
    }
}
