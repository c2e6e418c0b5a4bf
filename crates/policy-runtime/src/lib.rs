//! The policy runtime: untrusted Wasm components that decide who gets a
//! ticket and how to scale, run under deadlines and memory caps, checked
//! against the host's invariants, hot-swapped without dropping anything.
//! Components speak contract 0.2 natively or 0.1 through an adapter.

pub mod bindings;
pub mod built;
pub mod cases;
mod engine;
pub mod invariants;
mod live;
mod loaded;
mod metrics;
mod runner;
pub mod samples;
mod source;

pub use engine::{
    INSTANTIATE_TIMEOUT_MS_MAX, LimitOverrides, Limits, MEMORY_MIB_MAX, PolicyEngine,
    TIMEOUT_MS_MAX,
};
pub use live::{CallError, Live, renewal_point};
pub use loaded::{LoadError, LoadedPolicy, SLOW_COMPONENT_BYTES, large_component_notice};
pub use metrics::PolicyMetrics;
pub use runner::{FaultCounts, PolicyRunner};
pub use source::{
    DEFAULT_POLICY, FileError, PolicyFile, PolicySetup, PolicySource, load_default, load_file,
    watch_file,
};
