//! The workspace's policy components, built for `wasm32-wasip2` by this
//! crate's build script: the default policy the runtime embeds, and the
//! components the tests, benches and tools of the workspace load.

/// `policies/spare-tickets`: the default policy (embedded as
/// [`crate::DEFAULT_POLICY`]).
pub const SPARE_TICKETS: &str = env!("WICKET_POLICY_SPARE_TICKETS");
/// `policies/testing/faulty`: traps, loops, allocates or breaks invariants
/// on demand (its config names the fault).
pub const FAULTY: &str = env!("WICKET_POLICY_FAULTY");
/// `policies/testing/other-major`: speaks a contract major version the host
/// does not know.
pub const OTHER_MAJOR: &str = env!("WICKET_POLICY_OTHER_MAJOR");
/// `policies/testing/contract-0.1`: the 0.1 default, frozen.
pub const CONTRACT_0_1: &str = env!("WICKET_POLICY_CONTRACT_0_1");
/// `policies/testing/contract-0.2`: the contract 0.2 test component.
pub const CONTRACT_0_2: &str = env!("WICKET_POLICY_CONTRACT_0_2");
/// `examples/policies/scale-to-zero`: the Rust SDK example.
pub const SCALE_TO_ZERO: &str = env!("WICKET_POLICY_SCALE_TO_ZERO");
