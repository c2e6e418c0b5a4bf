//! One app at run time: its serverlist, its policy runner, its provider, and
//! the loop that expires tickets, serves the queue and scales.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use crate::metrics::Metrics;
use crate::policy::PolicyRunner;
use crate::provider::{PodEvent, PodProvider};
use crate::state::{AppSettings, Grant, Serverlist, Snapshot, Ticket, WaiterId};

/// How often the app's loop runs even when nothing happens (expiry, idle
/// pods, retries).
const TICK: Duration = Duration::from_millis(250);

/// Routing settings of an app (how users reach it), as opposed to the
/// scaling settings in [`AppSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// URL prefix `/<name>`.
    pub name: String,
    /// Serve at `<pod>.<uid>.<host>/<app>/` instead of `/<app>/<pod>/<uid>/`.
    pub dns: bool,
}

/// The answer to "may I have a ticket?".
#[derive(Debug)]
pub enum TicketRequest {
    /// A slot was free.
    Granted(Grant),
    /// No slot now: wait for the grant on `rx`.
    Queued {
        /// The waiter's id (for position and leaving).
        waiter: WaiterId,
        /// Receives the ticket when it is issued.
        rx: oneshot::Receiver<Grant>,
    },
    /// The app is disabled or being removed.
    Closed,
}

struct Waiter {
    tx: oneshot::Sender<Grant>,
    since: Instant,
}

struct Inner {
    list: Serverlist,
    waiters: HashMap<WaiterId, Waiter>,
    snap: Snapshot,
}

/// One app at run time.
pub struct App {
    routing: Routing,
    expiry: Duration,
    inner: Mutex<Inner>,
    policy: PolicyRunner,
    provider: Arc<dyn PodProvider>,
    wake: Notify,
    metrics: Metrics,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("routing", &self.routing).finish_non_exhaustive()
    }
}

impl App {
    /// A new app with no pods yet.
    pub fn new(
        routing: Routing,
        settings: AppSettings,
        expiry: Duration,
        policy: PolicyRunner,
        provider: Arc<dyn PodProvider>,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            routing,
            expiry,
            inner: Mutex::new(Inner {
                list: Serverlist::new(settings, Instant::now()),
                waiters: HashMap::new(),
                snap: Snapshot::default(),
            }),
            policy,
            provider,
            wake: Notify::new(),
            metrics,
        })
    }

    /// The app's name (URL prefix).
    pub fn name(&self) -> &str {
        &self.routing.name
    }

    /// How users reach the app.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The app's policy runner.
    pub fn policy(&self) -> &PolicyRunner {
        &self.policy
    }

    /// Asks for a ticket: granted at once if nobody waits and the policy
    /// assigns a pod, else queued (first come, first served).
    pub fn request_ticket(&self) -> TicketRequest {
        let started = Instant::now();
        let mut inner = self.inner.lock();
        if !inner.list.accepting() {
            return TicketRequest::Closed;
        }
        if inner.list.waiting() == 0
            && let Some(grant) = self.try_issue(&mut inner, started)
        {
            self.metrics.ticket_wait.with_label_values(&[self.name()]).observe(started.elapsed().as_secs_f64());
            self.publish(&inner.list);
            drop(inner);
            self.wake.notify_one();
            return TicketRequest::Granted(grant);
        }
        let waiter = inner.list.enqueue();
        let (tx, rx) = oneshot::channel();
        inner.waiters.insert(waiter, Waiter { tx, since: started });
        self.publish(&inner.list);
        drop(inner);
        self.wake.notify_one();
        TicketRequest::Queued { waiter, rx }
    }

    /// Asks the policy for a pod and issues a ticket on it.
    fn try_issue(&self, inner: &mut Inner, now: Instant) -> Option<Grant> {
        inner.list.snapshot_into(now, &mut inner.snap);
        let (id, snap) = self.policy.assign(std::mem::take(&mut inner.snap));
        inner.snap = snap;
        match inner.list.issue(id?, now) {
            Ok(grant) => {
                self.metrics.users_total.with_label_values(&[self.name()]).inc();
                Some(grant)
            }
            Err(e) => {
                // The invariant check saw the same snapshot, so this is a bug.
                tracing::error!(app = %self.name(), "issuing an approved ticket failed: {e}");
                None
            }
        }
    }

    /// A waiting user left.
    pub fn leave_queue(&self, waiter: WaiterId) {
        let mut inner = self.inner.lock();
        inner.waiters.remove(&waiter);
        if inner.list.cancel(waiter) {
            self.publish(&inner.list);
        }
    }

    /// 0-based queue position of a waiting user.
    pub fn position(&self, waiter: WaiterId) -> Option<usize> {
        self.inner.lock().list.position(waiter)
    }

    /// Frees a ticket whose user never received it.
    pub fn release(&self, grant: &Grant) {
        let mut inner = self.inner.lock();
        inner.list.release(&grant.pod, &grant.uid, Instant::now());
        self.publish(&inner.list);
        drop(inner);
        self.wake.notify_one();
    }

    /// The live ticket `uid` on `pod`.
    pub fn ticket(&self, pod: &str, uid: &str) -> Option<Arc<Ticket>> {
        self.inner.lock().list.ticket(pod, uid).cloned()
    }

    /// Does the app have a pod of this name?
    pub fn has_pod(&self, pod: &str) -> bool {
        self.inner.lock().list.has_pod(pod)
    }

    /// Applies a pod event from the provider's pod source.
    pub fn apply(&self, event: PodEvent) {
        let mut inner = self.inner.lock();
        match event {
            PodEvent::Upsert { pod, .. } => inner.list.upsert_pod(pod, Instant::now()),
            PodEvent::Gone { name, .. } => {
                inner.list.drain_pod(&name);
            }
        }
        self.publish(&inner.list);
        drop(inner);
        self.wake.notify_one();
    }

    /// Applies new scaling settings (live).
    pub fn set_settings(&self, settings: AppSettings) {
        self.inner.lock().list.set_settings(settings);
        self.wake.notify_one();
    }

    /// Enables or drains the app.
    pub fn set_accepting(&self, accepting: bool) {
        let mut inner = self.inner.lock();
        inner.list.set_accepting(accepting);
        if !accepting {
            // Dropping the senders tells waiting users the app is closed.
            inner.waiters.clear();
            while inner.list.pop_front().is_some() {}
        }
        self.publish(&inner.list);
    }

    /// Gives free slots to waiting users, first come first served.
    fn serve_queue(&self, inner: &mut Inner, now: Instant) {
        while let Some(waiter) = inner.list.queue_front() {
            if !inner.waiters.contains_key(&waiter) {
                inner.list.pop_front();
                continue;
            }
            // The head is still counted as waiting while the policy decides.
            let Some(grant) = self.try_issue(inner, now) else { break };
            inner.list.pop_front();
            let Some(w) = inner.waiters.remove(&waiter) else { continue };
            let waited = now.saturating_duration_since(w.since);
            if let Err(grant) = w.tx.send(grant) {
                inner.list.release(&grant.pod, &grant.uid, now);
            } else {
                self.metrics.ticket_wait.with_label_values(&[self.name()]).observe(waited.as_secs_f64());
            }
        }
    }

    /// One round: expire tickets, serve the queue, ask the policy to scale
    /// and start the actions it approved.
    fn step(self: &Arc<Self>) {
        let now = Instant::now();
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let sweep = inner.list.sweep(now, self.expiry);
        if sweep.expired > 0 {
            tracing::debug!(app = %self.name(), expired = sweep.expired, "tickets expired");
        }
        self.serve_queue(inner, now);
        inner.list.snapshot_into(now, &mut inner.snap);
        let (decision, snap) = self.policy.scale(std::mem::take(&mut inner.snap));
        inner.snap = snap;
        let creates: Vec<u32> = (0..decision.create).map(|_| inner.list.begin_create()).collect();
        let deletes: Vec<String> = decision.delete.iter().filter_map(|&id| inner.list.begin_delete(id)).collect();
        self.publish(&inner.list);
        drop(guard);
        for placeholder in creates {
            let app = Arc::clone(self);
            tokio::spawn(async move { app.create_pod(placeholder).await });
        }
        for pod in deletes {
            let app = Arc::clone(self);
            tokio::spawn(async move { app.delete_pod(pod).await });
        }
    }

    async fn create_pod(self: Arc<Self>, placeholder: u32) {
        let created = self.provider.create(self.name()).await;
        let info = match created {
            Ok(info) => {
                tracing::info!(app = %self.name(), pod = %info.name, "created pod");
                Some(info)
            }
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        };
        self.inner.lock().list.end_create(placeholder, info, Instant::now());
        self.wake.notify_one();
    }

    async fn delete_pod(self: Arc<Self>, pod: String) {
        match self.provider.delete(self.name(), &pod).await {
            Ok(()) => tracing::info!(app = %self.name(), %pod, "deleted idle pod"),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Runs the app's loop until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            self.step();
        }
    }

    fn publish(&self, list: &Serverlist) {
        let app = [self.name()];
        self.metrics.current_users.with_label_values(&app).set(list.tickets_in_use() as f64);
        self.metrics.free_tickets.with_label_values(&app).set(list.free_tickets() as f64);
        self.metrics.scaled_pods.with_label_values(&app).set(list.autoscaled_pods() as f64);
        self.metrics.waiting_users.with_label_values(&app).set(list.waiting() as i64);
    }
}
