//! Per-app policy execution with fallback: the active policy answers; if it
//! faults, the last good one answers instead and the faulty one is retired.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::engine::PolicyEngine;
use super::invariants::{self, Violation};
use super::live::{CallError, Live};
use super::loaded::LoadedPolicy;
use super::source::PolicySource;
use crate::PolicyMetrics;
use wicket_state::{ScaleDecision, Snapshot};

/// Why a call's answer was not used.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("broke an invariant: {0}")]
    Invariant(#[from] Violation),
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Fault::Call(e) => e.kind(),
            Fault::Invariant(_) => "invariant",
        }
    }
}

struct Slot {
    policy: Arc<LoadedPolicy>,
    live: Option<Live>,
}

impl Slot {
    fn new(policy: Arc<LoadedPolicy>) -> Self {
        Self { policy, live: None }
    }
}

/// What went wrong with a runner's policy calls so far: the same events the
/// fault metrics count, for tools that run policies without a Prometheus
/// registry to scrape (`wicket simulate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Calls that trapped, ran past the deadline, ran out of memory or could
    /// not be instantiated.
    pub failed_calls: u64,
    /// Answers refused because they broke an invariant.
    pub rejected: u64,
    /// Decisions answered by a fallback policy after a fault.
    pub fallbacks: u64,
    /// The first fault, as it was logged.
    pub first: Option<String>,
}

struct Inner {
    source: Arc<PolicySource>,
    faults: FaultCounts,
    active: Slot,
    /// The last good policy before the active one (the default if none).
    fallback: Option<Arc<LoadedPolicy>>,
    /// Digest retired after a fault: not taken back from the source until the
    /// source publishes another version.
    retired: Option<String>,
}

/// Runs one app's policy calls. Each call is short and synchronous on the
/// policy thread; callers await its answer, and the runner's mutex is only
/// taken there, never across an await.
pub struct PolicyRunner(Arc<Core>);

struct Core {
    app: String,
    engine: Arc<PolicyEngine>,
    default: Arc<LoadedPolicy>,
    metrics: PolicyMetrics,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PolicyRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRunner")
            .field("app", &self.0.app)
            .finish_non_exhaustive()
    }
}

impl PolicyRunner {
    /// A runner for `app` that follows `source`, with `default` as the last resort.
    pub fn new(
        app: &str,
        engine: Arc<PolicyEngine>,
        source: Arc<PolicySource>,
        default: Arc<LoadedPolicy>,
        metrics: PolicyMetrics,
    ) -> Self {
        let current = source.current();
        let core = Core {
            app: app.to_owned(),
            engine,
            default,
            metrics,
            inner: Mutex::new(Inner {
                source,
                active: Slot::new(Arc::clone(&current)),
                fallback: None,
                retired: None,
                faults: FaultCounts::default(),
            }),
        };
        core.publish_info(None, &current);
        Self(Arc::new(core))
    }

    /// Follows another source from now on (e.g. the app's annotation changed).
    pub fn set_source(&self, source: Arc<PolicySource>) {
        self.0.inner.lock().source = source;
    }

    /// The policy currently answering.
    pub fn active(&self) -> Arc<LoadedPolicy> {
        let mut inner = self.0.inner.lock();
        self.0.sync(&mut inner);
        Arc::clone(&inner.active.policy)
    }

    /// Faults and fallbacks of this runner's calls so far.
    pub fn faults(&self) -> FaultCounts {
        self.0.inner.lock().faults.clone()
    }

    /// Which pod gets the next ticket, if any. Takes the snapshot by value
    /// and gives it back, so the caller's buffer is reused. The caller must
    /// not hold a lock across the await: the call waits its turn on the
    /// policy thread.
    pub async fn assign(&self, snap: Snapshot) -> (Option<u32>, Snapshot) {
        self.on_policy_thread(snap, None, |core, snap| {
            core.decide(snap, "assign", None, Live::assign, |s, a| {
                invariants::check_assign(s, *a)
            })
        })
        .await
    }

    /// What to create and delete now (snapshot given back as for `assign`).
    pub async fn scale(&self, snap: Snapshot) -> (ScaleDecision, Snapshot) {
        self.on_policy_thread(snap, ScaleDecision::default(), |core, snap| {
            core.decide(
                snap,
                "scale",
                ScaleDecision::default(),
                Live::scale,
                invariants::check_scale,
            )
        })
        .await
    }

    /// WASI's synchronous host functions (a guest writing to stderr, say)
    /// block on an internal runtime, which must not happen on a tokio worker
    /// thread. Inside tokio, calls therefore run on the engine's policy
    /// thread and the caller awaits the answer; elsewhere (benchmarks,
    /// `policy check`) they run inline and the future is ready at once.
    async fn on_policy_thread<T: Send + 'static>(
        &self,
        snap: Snapshot,
        conservative: T,
        f: fn(&Core, &Snapshot) -> T,
    ) -> (T, Snapshot) {
        if tokio::runtime::Handle::try_current().is_err() {
            let answer = f(&self.0, &snap);
            return (answer, snap);
        }
        let core = Arc::clone(&self.0);
        self.0
            .engine
            .run_on_policy_thread(move || {
                let answer = f(&core, &snap);
                (answer, snap)
            })
            .await
            .unwrap_or_else(|| {
                tracing::error!("the policy thread is gone; taking no decision");
                (conservative, Snapshot::default())
            })
    }
}

impl Core {
    fn decide<T>(
        &self,
        snap: &Snapshot,
        call: &'static str,
        conservative: T,
        f: impl Fn(&mut Live, &Snapshot) -> Result<T, CallError>,
        check: impl Fn(&Snapshot, &T) -> Result<(), Violation>,
    ) -> T {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        self.sync(inner);
        let histogram = self
            .metrics
            .call
            .with_label_values(&[self.app.as_str(), call]);
        let mut faulted = false;
        loop {
            let started = Instant::now();
            let result = call_slot(&self.engine, &mut inner.active, snap, &f);
            histogram.observe(started.elapsed().as_secs_f64());
            let fault = match result {
                Ok(answer) => match check(snap, &answer) {
                    Ok(()) => {
                        if faulted {
                            inner.faults.fallbacks += 1;
                            self.metrics.fallbacks.with_label_values(&[&self.app]).inc();
                        }
                        return answer;
                    }
                    Err(v) => Fault::from(v),
                },
                Err(e) => Fault::from(e),
            };
            faulted = true;
            match fault {
                Fault::Invariant(_) => inner.faults.rejected += 1,
                Fault::Call(_) => inner.faults.failed_calls += 1,
            }
            if inner.faults.first.is_none() {
                let policy = &inner.active.policy.source;
                inner.faults.first = Some(format!("{call} ({policy}): {fault}"));
            }
            // A faulted instance is poisoned (or untrustworthy): drop it.
            inner.active.live = None;
            self.metrics
                .faults
                .with_label_values(&[self.app.as_str(), fault.kind()])
                .inc();
            let bad = Arc::clone(&inner.active.policy);
            if bad.digest == self.default.digest {
                tracing::error!(app = %self.app, call, "the default policy faulted ({fault}); taking no action");
                return conservative;
            }
            let next = inner
                .fallback
                .take()
                .unwrap_or_else(|| Arc::clone(&self.default));
            tracing::warn!(
                app = %self.app, call, policy = %bad.source, digest = bad.short_digest(),
                fallback = next.short_digest(),
                "policy faulted ({fault}); retiring it and answering from the last good policy"
            );
            inner.retired = Some(bad.digest.clone());
            inner.active = Slot::new(Arc::clone(&next));
            self.publish_info(Some(&bad), &next);
        }
    }

    /// Switches to the source's current version if it is new (and not retired).
    fn sync(&self, inner: &mut Inner) {
        let current = inner.source.current();
        if current.digest == inner.active.policy.digest
            || inner.retired.as_deref() == Some(current.digest.as_str())
        {
            return;
        }
        let previous = std::mem::replace(&mut inner.active, Slot::new(Arc::clone(&current)));
        tracing::info!(
            app = %self.app, policy = %current.source, digest = current.short_digest(),
            previous = previous.policy.short_digest(), "policy switched"
        );
        self.publish_info(Some(&previous.policy), &current);
        inner.fallback = Some(previous.policy);
        inner.retired = None;
    }

    fn publish_info(&self, old: Option<&LoadedPolicy>, new: &LoadedPolicy) {
        if let Some(old) = old {
            let _ = self
                .metrics
                .info
                .remove_label_values(&[&self.app, &old.source, &old.digest]);
        }
        self.metrics
            .info
            .with_label_values(&[&self.app, &new.source, &new.digest])
            .set(1);
    }
}

fn call_slot<T>(
    engine: &PolicyEngine,
    slot: &mut Slot,
    snap: &Snapshot,
    f: &impl Fn(&mut Live, &Snapshot) -> Result<T, CallError>,
) -> Result<T, CallError> {
    if slot.live.is_none() {
        slot.live = Some(slot.policy.instantiate(engine)?);
    }
    let result = match slot.live.as_mut() {
        Some(live) => f(live, snap),
        None => Err(CallError::Instantiate("no instance".into())),
    };
    if result.is_ok() && slot.live.as_ref().is_some_and(Live::worn_out) {
        tracing::debug!(
            policy = %slot.policy.source,
            "the policy instance's memory grew past half its headroom; the next call gets a fresh one"
        );
        slot.live = None;
    }
    result
}
