//! One app at run time: its serverlist, its policy runner, its provider, and
//! the loop that expires tickets, serves the queue and scales.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, oneshot, watch};

use crate::metrics::Metrics;
use crate::policy::PolicyRunner;
use crate::provider::{PodEvent, PodProvider};
use crate::state::{AppSettings, Estimate, Grant, Serverlist, Snapshot, Ticket, Token, WaiterId};

/// How often the app's loop runs even when nothing happens (expiry, idle
/// pods, retries).
const TICK: Duration = Duration::from_millis(250);

/// How long a waiting user who can resume (see [`App::make_resumable`])
/// keeps their place after losing the connection, unless
/// [`App::set_resume_grace`] says otherwise.
pub const DEFAULT_RESUME_GRACE: Duration = Duration::from_secs(30);

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

/// Where a waiting user is, as the waiting page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStatus {
    /// 1-based place in the queue.
    pub position: usize,
    /// About how long until a slot.
    pub estimate: Estimate,
}

/// The answer to "may I have a ticket, or my old place back?" (see
/// [`App::join`]).
#[derive(Debug)]
pub enum Join {
    /// A slot was free.
    Granted(Grant),
    /// The user waits (again).
    Queued {
        /// The user's place; dropping it leaves (or, if resumable, steps away).
        waiting: Waiting,
        /// The resume id, if the user may come back after a disconnect.
        rid: Option<Token>,
        /// True when the user got their old place back.
        resumed: bool,
    },
    /// The app is disabled or being removed.
    Closed,
}

/// A connected waiting user's hold on their place. Dropping it ends the
/// connection: a resumable user steps away (keeping the place for the grace
/// period), anyone else leaves; a grant that arrived unseen is given back.
#[derive(Debug)]
pub struct Waiting {
    app: Arc<App>,
    waiter: WaiterId,
    rx: oneshot::Receiver<Grant>,
}

/// The app stopped taking users while one waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the app is not accepting new users")]
pub struct Closed;

impl Waiting {
    /// The waiter's id.
    pub fn waiter(&self) -> WaiterId {
        self.waiter
    }

    /// The user's place and estimated wait.
    pub fn status(&self) -> Option<WaitStatus> {
        self.app.status(self.waiter)
    }

    /// Waits for the ticket. Cancel-safe: a grant is never lost by dropping
    /// this future (it stays for the next call, or is given back on drop).
    pub async fn granted(&mut self) -> Result<Grant, Closed> {
        (&mut self.rx).await.map_err(|_| Closed)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.app.detach(self.waiter);
        if let Ok(grant) = self.rx.try_recv() {
            self.app.release(&grant);
        }
    }
}

struct Waiter {
    /// Where the grant goes; None while the user is away.
    tx: Option<oneshot::Sender<Grant>>,
    since: Instant,
    /// Set when the user may come back after a disconnect.
    resume: Option<Token>,
}

struct Inner {
    list: Serverlist,
    waiters: HashMap<WaiterId, Waiter>,
    /// Resume ids of waiters that may come back.
    resumable: HashMap<Token, WaiterId>,
    snap: Snapshot,
    /// Scratch for waiters dropped after their grace period.
    gone: Vec<WaiterId>,
}

impl Inner {
    /// Forgets a waiter entirely (queue, channel, resume id).
    fn forget(&mut self, waiter: WaiterId) -> bool {
        if let Some(w) = self.waiters.remove(&waiter)
            && let Some(rid) = w.resume
        {
            self.resumable.remove(&rid);
        }
        self.list.cancel(waiter)
    }
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
    /// Name shown to users; the URL name when unset.
    display_name: RwLock<Option<Arc<str>>>,
    /// [`DEFAULT_RESUME_GRACE`] unless set, in milliseconds.
    resume_grace_ms: AtomicU64,
    /// Changes whenever what waiting pages show may have changed.
    changes: watch::Sender<Signature>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("routing", &self.routing)
            .finish_non_exhaustive()
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
                resumable: HashMap::new(),
                snap: Snapshot::default(),
                gone: Vec::new(),
            }),
            policy,
            provider,
            wake: Notify::new(),
            metrics,
            display_name: RwLock::new(None),
            resume_grace_ms: AtomicU64::new(DEFAULT_RESUME_GRACE.as_millis() as u64),
            changes: watch::Sender::new(Signature::default()),
        })
    }

    /// The name users see on the waiting page (the URL name unless set).
    pub fn display_name(&self) -> Arc<str> {
        match &*self.display_name.read() {
            Some(n) => Arc::clone(n),
            None => Arc::from(self.name()),
        }
    }

    /// Sets (or, with None or an empty name, clears) the display name.
    pub fn set_display_name(&self, name: Option<&str>) {
        *self.display_name.write() = name.map(str::trim).filter(|n| !n.is_empty()).map(Arc::from);
    }

    /// How long a resumable waiter keeps their place while disconnected.
    pub fn resume_grace(&self) -> Duration {
        Duration::from_millis(self.resume_grace_ms.load(Ordering::Relaxed))
    }

    /// Sets the resume grace period (live).
    pub fn set_resume_grace(&self, grace: Duration) {
        self.resume_grace_ms.store(
            grace.as_millis().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// A receiver that sees a new value whenever what a waiting page shows
    /// may have changed (queue, tickets, starting pods, accepting).
    pub fn subscribe(&self) -> watch::Receiver<Signature> {
        self.changes.subscribe()
    }

    /// Can new users get tickets (the app is neither disabled nor draining)?
    pub fn accepting(&self) -> bool {
        self.inner.lock().list.accepting()
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
        // Users away keep their places but do not hold up the others.
        if inner.list.next_present().is_none()
            && let Some(grant) = self.try_issue(&mut inner, started)
        {
            self.metrics
                .ticket_wait
                .with_label_values(&[self.name()])
                .observe(started.elapsed().as_secs_f64());
            self.publish(&inner.list);
            drop(inner);
            self.wake.notify_one();
            return TicketRequest::Granted(grant);
        }
        let waiter = inner.list.enqueue();
        let (tx, rx) = oneshot::channel();
        inner.waiters.insert(
            waiter,
            Waiter {
                tx: Some(tx),
                since: started,
                resume: None,
            },
        );
        self.publish(&inner.list);
        drop(inner);
        self.wake.notify_one();
        TicketRequest::Queued { waiter, rx }
    }

    /// Asks for a ticket, or for the old place of a user who comes back
    /// with the resume id `resume`. With `resumable`, a queued user gets a
    /// resume id and keeps the place for the grace period after a
    /// disconnect; otherwise leaving the connection leaves the queue
    /// (k8sTicket's behaviour).
    pub fn join(self: &Arc<Self>, resume: Option<&Token>, resumable: bool) -> Join {
        if let Some(rid) = resume
            && let Some((waiter, rx)) = self.resume(rid)
        {
            let waiting = Waiting {
                app: Arc::clone(self),
                waiter,
                rx,
            };
            return Join::Queued {
                waiting,
                rid: Some(*rid),
                resumed: true,
            };
        }
        match self.request_ticket() {
            TicketRequest::Granted(grant) => Join::Granted(grant),
            TicketRequest::Closed => Join::Closed,
            TicketRequest::Queued { waiter, rx } => {
                let rid = if resumable {
                    self.make_resumable(waiter)
                } else {
                    None
                };
                let waiting = Waiting {
                    app: Arc::clone(self),
                    waiter,
                    rx,
                };
                Join::Queued {
                    waiting,
                    rid,
                    resumed: false,
                }
            }
        }
    }

    /// Asks the policy for a pod and issues a ticket on it.
    fn try_issue(&self, inner: &mut Inner, now: Instant) -> Option<Grant> {
        inner.list.snapshot_into(now, &mut inner.snap);
        let (id, snap) = self.policy.assign(std::mem::take(&mut inner.snap));
        inner.snap = snap;
        match inner.list.issue(id?, now) {
            Ok(grant) => {
                self.metrics
                    .users_total
                    .with_label_values(&[self.name()])
                    .inc();
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
        if inner.forget(waiter) {
            self.publish(&inner.list);
        }
    }

    /// Lets a queued user come back after a disconnect: returns the secret
    /// resume id they present to [`resume`](Self::resume) (the same one on
    /// every call). None if the user is not waiting.
    pub fn make_resumable(&self, waiter: WaiterId) -> Option<Token> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let w = inner.waiters.get_mut(&waiter)?;
        let rid = *w.resume.get_or_insert_with(Token::generate);
        inner.resumable.insert(rid, waiter);
        Some(rid)
    }

    /// The user's connection ended. A resumable user keeps their place for
    /// the grace period (skipped when slots are given out); any other user
    /// leaves the queue.
    pub fn detach(&self, waiter: WaiterId) {
        let mut inner = self.inner.lock();
        let resumable = match inner.waiters.get_mut(&waiter) {
            Some(w) if w.resume.is_some() => {
                w.tx = None;
                true
            }
            _ => false,
        };
        if resumable {
            inner.list.set_away(waiter, Instant::now());
        } else {
            inner.forget(waiter);
        }
        self.publish(&inner.list);
    }

    /// A user who was away comes back with their resume id: they are
    /// connected again at their old place and get a new grant channel. None
    /// if the id is unknown, its grace period is over, or the user is
    /// connected elsewhere (e.g. a duplicated tab).
    pub fn resume(&self, rid: &Token) -> Option<(WaiterId, oneshot::Receiver<Grant>)> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let waiter = *inner.resumable.get(rid)?;
        if inner.list.is_present(waiter) {
            return None;
        }
        let w = inner.waiters.get_mut(&waiter)?;
        let (tx, rx) = oneshot::channel();
        w.tx = Some(tx);
        inner.list.set_present(waiter);
        self.publish(&inner.list);
        drop(guard);
        self.wake.notify_one();
        Some((waiter, rx))
    }

    /// 0-based queue position of a waiting user.
    pub fn position(&self, waiter: WaiterId) -> Option<usize> {
        self.inner.lock().list.position(waiter)
    }

    /// The user's place and estimated wait.
    pub fn status(&self, waiter: WaiterId) -> Option<WaitStatus> {
        let inner = self.inner.lock();
        let position = inner.list.position(waiter)?;
        Some(WaitStatus {
            position: position + 1,
            estimate: inner.list.estimate(position, Instant::now()),
        })
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
            inner.resumable.clear();
            while inner.list.pop_front().is_some() {}
        }
        self.publish(&inner.list);
    }

    /// Gives free slots to waiting users who are connected, first come
    /// first served; users away past the grace period lose their place.
    fn serve_queue(&self, inner: &mut Inner, now: Instant) {
        let mut gone = std::mem::take(&mut inner.gone);
        inner.list.drop_away(now, self.resume_grace(), &mut gone);
        for waiter in gone.drain(..) {
            inner.forget(waiter);
        }
        inner.gone = gone;
        while let Some(waiter) = inner.list.next_present() {
            let connected = inner
                .waiters
                .get(&waiter)
                .and_then(|w| w.tx.as_ref())
                .is_some_and(|tx| !tx.is_closed());
            if !connected {
                // The session ended without saying so: treat it as a disconnect.
                match inner.waiters.get(&waiter) {
                    Some(w) if w.resume.is_some() => {
                        inner.list.set_away(waiter, now);
                    }
                    _ => {
                        inner.forget(waiter);
                    }
                }
                continue;
            }
            // The user is still counted as waiting while the policy decides.
            let Some(grant) = self.try_issue(inner, now) else {
                break;
            };
            let w = inner.waiters.remove(&waiter);
            inner.forget(waiter);
            let Some(Waiter {
                tx: Some(tx),
                since,
                ..
            }) = w
            else {
                inner.list.release(&grant.pod, &grant.uid, now);
                continue;
            };
            let waited = now.saturating_duration_since(since);
            if let Err(grant) = tx.send(grant) {
                inner.list.release(&grant.pod, &grant.uid, now);
            } else {
                self.metrics
                    .ticket_wait
                    .with_label_values(&[self.name()])
                    .observe(waited.as_secs_f64());
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
        let creates: Vec<u32> = (0..decision.create)
            .map(|_| inner.list.begin_create_at(now))
            .collect();
        let deletes: Vec<String> = decision
            .delete
            .iter()
            .filter_map(|&id| inner.list.begin_delete(id))
            .collect();
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
        self.inner
            .lock()
            .list
            .end_create(placeholder, info, Instant::now());
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
        self.metrics
            .current_users
            .with_label_values(&app)
            .set(list.tickets_in_use() as f64);
        self.metrics
            .free_tickets
            .with_label_values(&app)
            .set(list.free_tickets() as f64);
        self.metrics
            .scaled_pods
            .with_label_values(&app)
            .set(list.autoscaled_pods() as f64);
        self.metrics
            .waiting_users
            .with_label_values(&app)
            .set(list.waiting() as i64);
        let sig = Signature {
            waiting: list.waiting(),
            in_use: list.tickets_in_use(),
            free: list.free_tickets(),
            starting: list.starting_pods(),
            accepting: list.accepting(),
        };
        self.changes.send_if_modified(|old| {
            let changed = *old != sig;
            *old = sig;
            changed
        });
    }
}

/// What waiting pages show depends on these; a change wakes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signature {
    waiting: usize,
    in_use: u32,
    free: u32,
    starting: u32,
    accepting: bool,
}
