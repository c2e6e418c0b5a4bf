//! The policy runtime's Prometheus metrics. The host registers them in its
//! registry beside its own; tools that run policies without a scrape (the
//! simulator, `wicket policy test`) create them unregistered.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The metrics a [`crate::PolicyRunner`] and a [`crate::PolicySource`] update.
#[derive(Debug, Clone)]
pub struct PolicyMetrics {
    /// Duration of policy calls, by call (`assign`, `scale`).
    pub call: HistogramVec,
    /// Policy faults, by kind (trap, timeout, memory, invariant, instantiate).
    pub faults: IntCounterVec,
    /// Decisions answered by a fallback policy after a fault.
    pub fallbacks: IntCounterVec,
    /// The active policy of each app (value 1).
    pub info: IntGaugeVec,
    /// Policy versions refused when loading (hot swap kept the last good one).
    pub load_errors: IntCounterVec,
}

impl PolicyMetrics {
    /// Creates the metrics, not registered anywhere (see [`Self::register`]).
    pub fn new() -> prometheus::Result<Self> {
        let app = &["application"];
        Ok(Self {
            call: HistogramVec::new(
                HistogramOpts::new("wicket_policy_call_seconds", "Duration of policy calls")
                    .buckets(vec![
                        1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2,
                    ]),
                &["application", "call"],
            )?,
            faults: IntCounterVec::new(
                Opts::new(
                    "wicket_policy_faults_total",
                    "Policy calls that trapped, timed out, ran out of memory or broke an invariant",
                ),
                &["application", "kind"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "wicket_policy_fallbacks_total",
                    "Decisions answered by the last good policy after a fault",
                ),
                app,
            )?,
            info: IntGaugeVec::new(
                Opts::new("wicket_policy_info", "The active policy of each app"),
                &["application", "source", "digest"],
            )?,
            load_errors: IntCounterVec::new(
                Opts::new(
                    "wicket_policy_load_errors_total",
                    "Policy versions refused at load (the last good one was kept)",
                ),
                &["source"],
            )?,
        })
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.call.clone()))?;
        registry.register(Box::new(self.faults.clone()))?;
        registry.register(Box::new(self.fallbacks.clone()))?;
        registry.register(Box::new(self.info.clone()))?;
        registry.register(Box::new(self.load_errors.clone()))
    }
}
