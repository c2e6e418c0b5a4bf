//! The leader election: of several replicas, the one that holds a Lease
//! (`coordination.k8s.io/v1`, in the host's own namespace) scales; the
//! others serve tickets only. Built on `kube-lease-manager` (kube 5 has no
//! leader election of its own), which locks the Lease with server-side
//! apply, so two replicas cannot take it at once.
//!
//! What happens when:
//! - the leader dies without a word (SIGKILL, node lost): its Lease expires
//!   `duration` after its last renewal; a follower then takes it (after a
//!   random pause of up to 1 s, the crate's) and scales on its next round.
//! - the leader stops (SIGTERM): [`Leader::step_down`] releases the Lease;
//!   a follower takes it when its wait for the old expiry ends (the crate
//!   does not watch the Lease), without the random pause.
//! - a renewal fails (API unreachable): this replica stops scaling at once
//!   (before the Lease can expire and pass to another), then releases what
//!   it may still hold (retrying until the API answers) and runs for the
//!   Lease again.
//!
//! Changes are logged, counted in `wicket_leader` and recorded as Events on
//! the Lease.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::Client;
use kube::runtime::utils::Backoff;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};

use super::events::{self, EventSink, EventType, Record};
use super::retry::{RetrySettings, status_code};
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::task::Task;

/// How long stepping down waits for the Lease's release.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the election needs.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's name.
    pub name: String,
    /// The host's own namespace.
    pub namespace: String,
    /// This replica's identity in the Lease (unique per process).
    pub identity: String,
    /// How long a Lease holds after its last renewal.
    pub duration: Duration,
    /// How long before expiry the leader renews.
    pub renew_before: Duration,
}

/// The running election; [`Leader::step_down`] ends it.
#[derive(Debug)]
pub struct Leader {
    leadership: Leadership,
    manager: Arc<OnceLock<Arc<LeaseManager>>>,
    settings: LeaseSettings,
    metrics: Metrics,
    task: Task,
}

/// Where the election reports to.
#[derive(Debug, Clone)]
struct Report {
    leadership: Leadership,
    metrics: Metrics,
    events: EventSink,
    settings: LeaseSettings,
}

impl Report {
    /// Sets the flag; logs, counts and records a change.
    fn leads(&self, leader: bool) {
        self.metrics.leader.set(i64::from(leader));
        if !self.leadership.set(leader) {
            return;
        }
        let s = &self.settings;
        let (reason, action, note) = if leader {
            tracing::info!(lease = %s.name, identity = %s.identity, "became the leader: this replica scales");
            (
                "BecameLeader",
                "AcquireLease",
                format!("{} holds the Lease and scales the apps", s.identity),
            )
        } else {
            tracing::info!(lease = %s.name, identity = %s.identity, "no longer the leader: this replica stops scaling");
            (
                "StoppedLeading",
                "LoseLease",
                format!("{} no longer holds the Lease and stops scaling", s.identity),
            )
        };
        self.events.publish(Record {
            regarding: events::reference(
                "coordination.k8s.io/v1",
                "Lease",
                &s.namespace,
                &s.name,
                None,
            ),
            related: None,
            type_: EventType::Normal,
            reason,
            action,
            note,
        });
    }
}

/// Whole seconds for the crate, at least 1.
fn seconds(d: Duration) -> u64 {
    d.as_secs().max(1)
}

async fn build(client: &Client, s: &LeaseSettings) -> Result<LeaseManager, LeaseManagerError> {
    LeaseManagerBuilder::new(client.clone(), s.name.clone())
        .with_namespace(s.namespace.clone())
        .with_identity(s.identity.clone())
        .with_duration(seconds(s.duration))
        .with_grace(seconds(s.renew_before))
        .build()
        .await
}

/// What an error says to the operator: a refusal names the missing rule.
fn explain(e: &LeaseManagerError, s: &LeaseSettings) -> String {
    let forbidden = match e {
        LeaseManagerError::KubeError(k) => status_code(k) == 403,
        _ => false,
    };
    if forbidden {
        format!(
            "the ServiceAccount may not use Lease {}/{} (add the leases rule of deploy/role.yaml, or set kubernetes.leader_election = false for a single replica); this replica does not scale: {e}",
            s.namespace, s.name
        )
    } else {
        format!("Lease {}/{}: {e}", s.namespace, s.name)
    }
}

/// Waits for the next delay of `backoff` (the watches' backoff: forever,
/// capped at `retry_max_ms`).
async fn pause(backoff: &mut impl Backoff, retry: &RetrySettings) {
    tokio::time::sleep(backoff.next().unwrap_or(retry.max)).await;
}

async fn run(
    client: Client,
    report: Report,
    cell: Arc<OnceLock<Arc<LeaseManager>>>,
    retry: RetrySettings,
) {
    let s = report.settings.clone();
    let mut backoff = retry.watch();
    let manager = loop {
        match build(&client, &s).await {
            Ok(m) => break Arc::new(m),
            Err(e) => {
                tracing::error!("leader election: {}", explain(&e, &s));
                pause(&mut backoff, &retry).await;
            }
        }
    };
    let _ = cell.set(Arc::clone(&manager));
    backoff.reset();
    loop {
        match manager.changed().await {
            Ok(leader) => {
                backoff.reset();
                report.leads(leader);
            }
            Err(e) => {
                // Stop scaling first: the Lease may pass to another replica
                // while this one cannot renew it.
                report.leads(false);
                tracing::warn!("leader election: {}", explain(&e, &s));
                // Free what this replica may still hold before running
                // again: the crate still counts it as the holder and would
                // go on renewing a Lease that no replica scales with. Once
                // released, `changed` reports the loss and runs again.
                loop {
                    pause(&mut backoff, &retry).await;
                    match manager.release().await {
                        Ok(()) => break,
                        Err(e) => tracing::debug!("leader election: releasing after an error: {e}"),
                    }
                }
            }
        }
    }
}

impl Leader {
    /// Starts running for the Lease; `leadership` is set while this replica
    /// holds it.
    pub fn start(
        client: Client,
        settings: LeaseSettings,
        leadership: Leadership,
        metrics: Metrics,
        events: EventSink,
        retry: RetrySettings,
    ) -> Self {
        leadership.set(false);
        metrics.leader.set(0);
        tracing::info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity,
            duration = ?settings.duration, "running for the leader Lease");
        let manager = Arc::new(OnceLock::new());
        let report = Report {
            leadership: leadership.clone(),
            metrics: metrics.clone(),
            events,
            settings: settings.clone(),
        };
        let task = Task::spawn(run(client, report, Arc::clone(&manager), retry));
        Self {
            leadership,
            manager,
            settings,
            metrics,
            task,
        }
    }

    /// The flag this election sets.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Stops scaling and releases the Lease (if held): no replica has to
    /// force an expired Lease free to take over.
    pub async fn step_down(self) {
        drop(self.task);
        self.leadership.set(false);
        self.metrics.leader.set(0);
        if let Some(m) = self.manager.get() {
            match tokio::time::timeout(RELEASE_TIMEOUT, m.release()).await {
                Ok(Ok(())) => {
                    tracing::info!(lease = %self.settings.name, "stepped down: the Lease is free")
                }
                Ok(Err(e)) => tracing::warn!("releasing the Lease: {e}"),
                Err(_) => tracing::warn!("releasing the Lease: no answer in {RELEASE_TIMEOUT:?}"),
            }
        }
    }
}
