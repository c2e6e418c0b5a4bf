//! Prometheus metrics: k8sTicket's four (same names, label `application`)
//! plus wicket's own.

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use wicket_policy_runtime::PolicyMetrics;

/// Every metric the host exports, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Tickets in use (k8sTicket).
    pub current_users: GaugeVec,
    /// Free tickets on ready pods (k8sTicket).
    pub free_tickets: GaugeVec,
    /// Autoscaled pods that exist (k8sTicket).
    pub scaled_pods: GaugeVec,
    /// Tickets issued (k8sTicket).
    pub users_total: CounterVec,
    /// Users waiting for a ticket.
    pub waiting_users: IntGaugeVec,
    /// Time from asking for a ticket to receiving it.
    pub ticket_wait: HistogramVec,
    /// The policy runtime's metrics (calls, faults, fallbacks, the active
    /// policy, refused loads).
    pub policy: PolicyMetrics,
    /// 1 while this replica is the one that scales (holds the Lease, or
    /// runs alone), else 0.
    pub leader: IntGauge,
    /// 1 while the app's shared store answers, 0 while it does not (only
    /// with a shared store: `[store] kind = "redis"`).
    pub store_up: IntGaugeVec,
    /// Failed round trips to the shared store, by operation.
    pub store_errors: IntCounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let app = &["application"];
        let m = Self {
            registry: Registry::new(),
            current_users: GaugeVec::new(
                opts("k8sticket_current_users_total", "Tickets in use"),
                app,
            )?,
            free_tickets: GaugeVec::new(
                opts(
                    "k8sticket_current_free_tickets_total",
                    "Free tickets on ready pods",
                ),
                app,
            )?,
            scaled_pods: GaugeVec::new(
                opts(
                    "k8sticket_scaled_pods_total",
                    "Autoscaled pods of the app that exist now (created, starting, ready or draining); creations still waiting for the API are not counted",
                ),
                app,
            )?,
            users_total: CounterVec::new(opts("k8sticket_users_total", "Tickets issued"), app)?,
            waiting_users: IntGaugeVec::new(
                opts("wicket_waiting_users", "Users waiting for a ticket"),
                app,
            )?,
            ticket_wait: HistogramVec::new(
                HistogramOpts::new(
                    "wicket_ticket_wait_seconds",
                    "Time from asking for a ticket to receiving it",
                )
                .buckets(vec![
                    0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ]),
                app,
            )?,
            policy: PolicyMetrics::new()?,
            leader: IntGauge::with_opts(opts(
                "wicket_leader",
                "1 while this replica is the leader that scales (holds the Lease), else 0",
            ))?,
            store_up: IntGaugeVec::new(
                opts(
                    "wicket_store_up",
                    "1 while the shared ticket store answers, 0 while it is unreachable",
                ),
                app,
            )?,
            store_errors: IntCounterVec::new(
                opts(
                    "wicket_store_errors_total",
                    "Failed round trips to the shared ticket store",
                ),
                &["application", "op"],
            )?,
        };
        let r = &m.registry;
        r.register(Box::new(m.current_users.clone()))?;
        r.register(Box::new(m.free_tickets.clone()))?;
        r.register(Box::new(m.scaled_pods.clone()))?;
        r.register(Box::new(m.users_total.clone()))?;
        r.register(Box::new(m.waiting_users.clone()))?;
        r.register(Box::new(m.ticket_wait.clone()))?;
        m.policy.register(r)?;
        r.register(Box::new(m.leader.clone()))?;
        r.register(Box::new(m.store_up.clone()))?;
        r.register(Box::new(m.store_errors.clone()))?;
        Ok(m)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
