//! One app at run time: its serverlist, its policy runner, its provider, and
//! the loop that expires tickets, serves the queue and scales.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard, RwLock};
use tokio::sync::{Notify, oneshot, watch};

use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::policy::{PolicyRunner, invariants};
use crate::provider::{PodEvent, PodProvider};
use crate::session_log::SessionLog;
use crate::state::{
    AppSettings, Clock, Estimate, Grant, IssueError, ScaleActions, Serverlist, Snapshot, Ticket,
    Token, WaiterId,
};
mod shared;

use shared::{ClaimLost, Shared};

/// How often the app's loop runs even when nothing happens (expiry, idle
/// pods, retries).
const TICK: Duration = Duration::from_millis(250);

/// Least time between two rounds of the app's loop. Every ticket issued
/// wakes the loop (to scale), and each round costs a policy call: under
/// load, one round then answers a burst of wakes rather than one each.
/// Short next to a pod's start, so scaling and the queue hardly notice.
const ROUND_GAP: Duration = Duration::from_millis(5);

/// How often one ticket request decides again after the state changed under
/// its decision (the pod filled or went meanwhile) before it joins the
/// queue, where the app's loop serves it.
const ISSUE_ATTEMPTS: u32 = 3;

/// Snapshot buffers kept for reuse: one per decision in flight is enough.
const SPARE_SNAPSHOTS: usize = 4;

/// How long a waiting user who can resume (see [`App::make_resumable`])
/// keeps their place after losing the connection, unless
/// [`App::set_resume_grace`] says otherwise.
pub const DEFAULT_RESUME_GRACE: Duration = Duration::from_secs(30);

/// How long a waiting user who lost the connection still counts as
/// waiting for the policy (which scales for waiting users). Their place is
/// kept for the whole resume grace period, but a user who does not come
/// back within this bound (a closed tab, a stopped no-JavaScript poll)
/// stops asking for capacity. A page without JavaScript reloads itself
/// about a second after each poll, well within it.
pub const AWAY_COUNTS_FOR: Duration = Duration::from_secs(5);

/// Tracing target of the queue's order events, at debug level: a user
/// in line (ticket socket), a grant handed to a waiting user, a ticket
/// written to its socket. `RUST_LOG=wicket::order=debug` shows them, so
/// the order of grants can be checked against the order of joining
/// (bench/abuse.sh does).
pub const ORDER_TARGET: &str = "wicket::order";

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
    /// No slot now, and the app's line on this replica already holds as
    /// many places as it may (see [`Places::line`]): no place was made.
    Full,
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
    /// The client already holds as many places in line as it may (see
    /// [`Owner`]).
    Refused,
    /// The app's line on this replica holds as many places as it may (see
    /// [`Places::line`]).
    Full,
}

/// How a new place in line is made, and who may come back to an old one
/// (see [`App::join_as`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Places {
    /// The client asking, if its places are counted.
    pub owner: Option<Owner>,
    /// Who may come back to a new place by link (recorded with it).
    pub binding: Binding,
    /// Who comes back, when coming back must pass the place's
    /// [`Binding`]; None: no check (the ticket socket, whose resume id
    /// is in no address a link could carry).
    pub back: Option<Comer>,
    /// Most places the app's line holds on this replica, connected or away
    /// (0: no limit). Per replica: with a shared store each replica counts
    /// only the places its own users hold (a count over every replica would
    /// cost a store round trip per join). Past it a newcomer who would have
    /// to wait is refused; one served at once by a free slot is not.
    pub line: u32,
}

/// Who asks for a place in line, for the limit of places per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The client's key (its address, or its network for IPv6).
    pub client: IpAddr,
    /// Most places this client may hold at once (connected or away).
    pub places: u32,
}

/// Who may come back to a place with its resume id by a link (the
/// no-JavaScript poll's `?w=`, which is in the page's address): the
/// browser that made it, so that a link from someone else resumes no place
/// (and gets no ticket) in the browser that opens it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Binding {
    /// The browser's binding cookie (`wicket-bind`): the one its request
    /// sent, or the one the answer that made the place sets.
    pub browser: Option<Token>,
    /// The client's key, only for a place made without a binding cookie:
    /// a client that keeps no cookies (a script, `curl`) comes back from
    /// its address.
    pub client: Option<IpAddr>,
}

/// Who comes back to a place: the request's binding cookie and client key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comer {
    /// The binding cookie the request sent, if any.
    pub browser: Option<Token>,
    /// The client's key (see `proxy::fairness::client_key`).
    pub client: IpAddr,
}

impl Binding {
    /// May `comer` come back to the place? With a binding cookie, only if
    /// it is the place's own (compared in constant time); without one,
    /// only to a place made without one, from the same client.
    pub fn admits(&self, comer: &Comer) -> bool {
        match (comer.browser, self.browser) {
            (Some(sent), Some(own)) => own.matches(&sent),
            (Some(_), None) => false,
            (None, _) => self.client.is_some_and(|c| c == comer.client),
        }
    }
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
    /// The client holding the place, if counted (see [`Owner`]).
    owner: Option<IpAddr>,
    /// Who may come back to it by link.
    binding: Binding,
}

struct Inner {
    list: Serverlist,
    waiters: HashMap<WaiterId, Waiter>,
    /// Resume ids of waiters that may come back.
    resumable: HashMap<Token, WaiterId>,
    /// Snapshot buffers for reuse; decisions run without the lock, so
    /// several may be in flight.
    snaps: Vec<Snapshot>,
    /// Scratch for waiters dropped after their grace period.
    gone: Vec<WaiterId>,
    /// Places held per client (only clients with places are in it).
    owners: HashMap<IpAddr, u32>,
    /// The app's time zone, for the UTC offset policies see.
    zone: jiff::tz::TimeZone,
    /// Finished sessions, for `/apps/<app>/trace.csv`.
    sessions: SessionLog,
}

/// Does the line on this replica hold `line` places (0: no limit)? Away
/// users count: each holds memory and a resume id until its grace ends.
fn line_full(inner: &Inner, line: u32) -> bool {
    line > 0 && inner.waiters.len() >= line as usize
}

/// The wall clock in unix seconds (0 before 1970: a broken clock, not a time).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What became of an `assign` decision applied to the current state.
enum Issued {
    /// The ticket is issued.
    Granted(Grant),
    /// The state changed while the policy decided: decide again.
    Stale,
    /// The app stopped taking users.
    Closed,
}

impl Inner {
    /// Forgets a waiter entirely (queue, channel, resume id, owner).
    fn forget(&mut self, waiter: WaiterId) -> bool {
        if let Some(w) = self.waiters.remove(&waiter) {
            self.unlink(&w);
        }
        self.list.cancel(waiter)
    }

    /// Removes a waiter entirely, like [`forget`](Self::forget), and
    /// returns its entry (to hand it a grant).
    fn take_waiter(&mut self, waiter: WaiterId) -> Option<Waiter> {
        self.list.cancel(waiter);
        let w = self.waiters.remove(&waiter)?;
        self.unlink(&w);
        Some(w)
    }

    /// Drops what refers to a removed waiter: its resume id, and its place
    /// in its client's count.
    fn unlink(&mut self, w: &Waiter) {
        if let Some(rid) = w.resume {
            self.resumable.remove(&rid);
        }
        if let Some(client) = w.owner
            && let Some(n) = self.owners.get_mut(&client)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.owners.remove(&client);
            }
        }
    }

    /// The current state as a snapshot, in a reused buffer, with the wall
    /// clock and the app's UTC offset at this moment. Waiting users away
    /// for longer than [`AWAY_COUNTS_FOR`] are not counted.
    fn take_snapshot(&mut self, now: Instant) -> Snapshot {
        let mut snap = self.snaps.pop().unwrap_or_default();
        let clock = Clock::at(unix_now(), &self.zone);
        self.list.snapshot_into(now, clock, &mut snap);
        snap.waiting = self.list.waiting_counted(now, AWAY_COUNTS_FOR) as u32;
        snap
    }

    /// Keeps a snapshot's buffer for the next decision.
    fn give_back(&mut self, snap: Snapshot) {
        if self.snaps.len() < SPARE_SNAPSHOTS {
            self.snaps.push(snap);
        }
    }

    /// Adds a user to the back of the queue.
    fn enqueue(&mut self, since: Instant) -> (WaiterId, oneshot::Receiver<Grant>) {
        let waiter = self.list.enqueue(since);
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(
            waiter,
            Waiter {
                tx: Some(tx),
                since,
                resume: None,
                owner: None,
                binding: Binding::default(),
            },
        );
        (waiter, rx)
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
    /// Set once the app is removed from (or replaced in) the app table:
    /// connections that remember it must look it up again.
    retired: AtomicBool,
    /// The same moment on both clocks: turns `Instant`s into unix times.
    epoch: (Instant, SystemTime),
    /// Whether this replica scales; unset: it runs alone and does.
    leadership: OnceLock<Leadership>,
    /// The shared store, if the app's tickets are shared with other
    /// replicas (see [`App::share`]); unset with the in-memory store.
    shared: OnceLock<Shared>,
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
                snaps: Vec::new(),
                gone: Vec::new(),
                zone: jiff::tz::TimeZone::UTC,
                owners: HashMap::new(),
                sessions: SessionLog::default(),
            }),
            policy,
            provider,
            wake: Notify::new(),
            metrics,
            display_name: RwLock::new(None),
            resume_grace_ms: AtomicU64::new(DEFAULT_RESUME_GRACE.as_millis() as u64),
            changes: watch::Sender::new(Signature::default()),
            retired: AtomicBool::new(false),
            epoch: (Instant::now(), SystemTime::now()),
            leadership: OnceLock::new(),
            shared: OnceLock::new(),
        })
    }

    /// Scale only while `leadership` says this replica leads (set once,
    /// before the app runs).
    pub fn follow(&self, leadership: &Leadership) {
        let _ = self.leadership.set(leadership.clone());
    }

    /// Marks the app as gone from the app table.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Has the app left the app table?
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
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

    /// Is nobody left on a draining app: not accepting, and no ticket in
    /// use? (Whoever removes drained apps asks this, not the metrics.)
    pub fn is_drained(&self) -> bool {
        let inner = self.inner.lock();
        !inner.list.accepting() && inner.list.tickets_in_use() == 0
    }

    /// The app's name (URL prefix).
    pub fn name(&self) -> &str {
        &self.routing.name
    }

    /// How users reach the app.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Unix time in ms of `at`.
    fn unix_ms(&self, at: Instant) -> i64 {
        let (i0, s0) = self.epoch;
        let base = s0
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        base + at.saturating_duration_since(i0).as_millis() as i64
            - i0.saturating_duration_since(at).as_millis() as i64
    }

    /// The app's recent finished sessions as an arrival trace (CSV, the
    /// format `wicket simulate --trace` reads).
    pub fn session_trace(&self) -> String {
        self.inner.lock().sessions.csv()
    }

    /// The arrivals a policy is sent now: counts per minute (60) and per
    /// hour (168), oldest first. Counted by this process only: with a
    /// shared store each replica counts the users who joined through it.
    pub fn arrivals(&self) -> (Vec<u32>, Vec<u32>) {
        self.inner.lock().list.arrivals().at(unix_now())
    }

    /// The app's policy runner.
    pub fn policy(&self) -> &PolicyRunner {
        &self.policy
    }

    /// Sets the time zone whose UTC offset policies see (UTC until set).
    pub fn set_timezone(&self, zone: jiff::tz::TimeZone) {
        self.inner.lock().zone = zone;
    }

    /// Asks for a ticket: granted at once if nobody waits and the policy
    /// assigns a pod, else queued (first come, first served).
    ///
    /// The policy decides without the app's lock held (other users and the
    /// proxy go on meanwhile), so its answer is checked again against the
    /// state it finds when it comes back.
    pub async fn request_ticket(&self) -> TicketRequest {
        self.request_ticket_as(None, 0).await
    }

    /// [`request_ticket`](Self::request_ticket) for a client whose places
    /// are limited (`owner`), in a line that holds at most `line` places on
    /// this replica (0: no limit).
    ///
    /// The owner's joins count as arrivals only up to its places per minute
    /// (see [`ArrivalGate`](crate::state::ArrivalGate)), so that one client
    /// joining and leaving in a loop does not scale arrival-based policies
    /// up. A user who would have to wait in a full line is refused
    /// ([`TicketRequest::Full`]) and is no arrival either.
    async fn request_ticket_as(&self, owner: Option<Owner>, line: u32) -> TicketRequest {
        let started = Instant::now();
        for attempt in 0..ISSUE_ATTEMPTS {
            let snap = {
                let mut inner = self.inner.lock();
                if !inner.list.accepting() {
                    return TicketRequest::Closed;
                }
                // Users away keep their places but do not hold up the others.
                let now = Instant::now();
                let behind =
                    Self::next_waiter(&mut inner, now).is_some() || self.others_waiting() > 0;
                if behind && line_full(&inner, line) {
                    // Refused before it counts as an arrival: the policy
                    // does not scale for users who were turned away.
                    return TicketRequest::Full;
                }
                if attempt == 0 {
                    // A new user (a resumed place does not come here).
                    match owner {
                        Some(o) => {
                            inner.list.record_arrival_of(o.client, o.places, unix_now());
                        }
                        None => inner.list.record_arrival(unix_now()),
                    }
                }
                if behind {
                    return self.enqueue(inner, started, line);
                }
                inner.take_snapshot(now)
            };
            let (id, snap) = self.policy.assign(snap).await;
            let (grant, capacity) = {
                let mut inner = self.inner.lock();
                inner.give_back(snap);
                let now = Instant::now();
                // No slot, or someone started waiting meanwhile: the queue
                // serves them first.
                let Some(id) = id.filter(|_| Self::next_waiter(&mut inner, now).is_none()) else {
                    return if inner.list.accepting() {
                        self.enqueue(inner, started, line)
                    } else {
                        TicketRequest::Closed
                    };
                };
                match self.issue_decided(&mut inner, id, now) {
                    Issued::Granted(grant) => {
                        let capacity = inner.list.capacity_of(&grant.pod).unwrap_or(0);
                        (grant, capacity)
                    }
                    Issued::Closed => return TicketRequest::Closed,
                    Issued::Stale => continue,
                }
            };
            if let Some(shared) = self.shared.get() {
                // The decision was made on this replica's view: the store
                // checks it against every replica's.
                match self.claim(shared, &grant, capacity).await {
                    Ok(()) => {}
                    Err(ClaimLost::Down) => {
                        // The user waits until the store answers.
                        self.unclaim(&grant);
                        break;
                    }
                    Err(ClaimLost::Decide) => {
                        self.unclaim(&grant);
                        // Fresh counts, then decide again.
                        self.sync_once(shared).await;
                        continue;
                    }
                }
            }
            let mut inner = self.inner.lock();
            let asked = self.unix_ms(started);
            inner.sessions.granted(&grant.pod, &grant.uid, asked);
            self.metrics
                .ticket_wait
                .with_label_values(&[self.name()])
                .observe(started.elapsed().as_secs_f64());
            self.publish(&inner.list);
            drop(inner);
            self.wake.notify_one();
            return TicketRequest::Granted(grant);
        }
        // The state kept changing under the decisions: the queue keeps the
        // user and the app's loop serves them.
        let inner = self.inner.lock();
        if !inner.list.accepting() {
            return TicketRequest::Closed;
        }
        self.enqueue(inner, started, line)
    }

    /// Queues a user who asked for a ticket at `since`, and wakes the loop
    /// to serve the queue; refuses while the line holds `line` places
    /// (0: no limit).
    fn enqueue(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        since: Instant,
        line: u32,
    ) -> TicketRequest {
        if line_full(&inner, line) {
            return TicketRequest::Full;
        }
        let (waiter, rx) = inner.enqueue(since);
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
    pub async fn join(self: &Arc<Self>, resume: Option<&Token>, resumable: bool) -> Join {
        self.join_as(Places::default(), resume, resumable).await
    }

    /// [`join`](Self::join) under `places`: a new place is refused
    /// ([`Join::Refused`]) while the client holds `owner.places`, and
    /// ([`Join::Full`]) while the app's line holds `places.line` on this
    /// replica. Coming back to an old place is not a new one and is never
    /// refused. The client's count is checked before the ticket is asked
    /// for, so joins of one client running at the same moment may each
    /// pass it; the line's is checked where the place is made.
    pub async fn join_as(
        self: &Arc<Self>,
        places: Places,
        resume: Option<&Token>,
        resumable: bool,
    ) -> Join {
        let owner = places.owner;
        if let Some(rid) = resume
            && let Some((waiter, rx)) = self.resume_as(rid, places.back.as_ref())
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
        if let Some(o) = owner
            && self
                .inner
                .lock()
                .owners
                .get(&o.client)
                .copied()
                .unwrap_or(0)
                >= o.places
        {
            return Join::Refused;
        }
        match self.request_ticket_as(owner, places.line).await {
            TicketRequest::Granted(grant) => Join::Granted(grant),
            TicketRequest::Closed => Join::Closed,
            TicketRequest::Full => {
                tracing::debug!(app = %self.name(), line = places.line, "line full: a newcomer refused");
                Join::Full
            }
            TicketRequest::Queued { waiter, rx } => {
                self.own(waiter, owner.map(|o| o.client), places.binding);
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

    /// Issues a ticket on the pod the policy chose, if the current state
    /// still allows it.
    fn issue_decided(&self, inner: &mut Inner, id: u32, now: Instant) -> Issued {
        match inner.list.issue(id, now) {
            Ok(grant) => {
                // With a shared store, counted once the store's claim holds.
                if self.shared.get().is_none() {
                    self.metrics
                        .users_total
                        .with_label_values(&[self.name()])
                        .inc();
                }
                Issued::Granted(grant)
            }
            Err(IssueError::NotAccepting) => Issued::Closed,
            Err(e) => {
                // The decision passed the invariant check on its snapshot.
                // If the state now would pass it too, issuing must not fail.
                let snap = inner.take_snapshot(now);
                if invariants::check_assign(&snap, Some(id)).is_ok() {
                    tracing::error!(app = %self.name(), "issuing an approved ticket failed: {e}");
                } else {
                    tracing::debug!(app = %self.name(), "the state changed while the policy decided: {e}");
                }
                inner.give_back(snap);
                Issued::Stale
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

    /// Records who made a queued user's place: counted for `client` (if
    /// its places are counted), and who may come back to it by link.
    fn own(&self, waiter: WaiterId, client: Option<IpAddr>, binding: Binding) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let Some(w) = inner.waiters.get_mut(&waiter) else {
            return;
        };
        w.binding = binding;
        if let Some(client) = client
            && w.owner.is_none()
        {
            w.owner = Some(client);
            *inner.owners.entry(client).or_default() += 1;
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
        self.resume_as(rid, None)
    }

    /// [`resume`](Self::resume), for `comer` only if given: None (the place
    /// untouched) when the place's [`Binding`] does not admit them.
    fn resume_as(
        &self,
        rid: &Token,
        comer: Option<&Comer>,
    ) -> Option<(WaiterId, oneshot::Receiver<Grant>)> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let waiter = *inner.resumable.get(rid)?;
        if inner.list.is_present(waiter) {
            return None;
        }
        let w = inner.waiters.get_mut(&waiter)?;
        if comer.is_some_and(|c| !w.binding.admits(c)) {
            return None;
        }
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
        // Users of other replicas who asked first are in line too.
        let position = inner.list.position(waiter)? + self.others_ahead(waiter) as usize;
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
        if let Some(shared) = self.shared.get() {
            self.free_shared(shared, grant);
        }
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
            inner.owners.clear();
            while inner.list.pop_front().is_some() {}
        }
        self.publish(&inner.list);
    }

    /// The first waiting user who is connected: the next to get a slot.
    /// Users whose session ended without saying so are treated as
    /// disconnected on the way (away if resumable, else gone).
    fn next_waiter(inner: &mut Inner, now: Instant) -> Option<WaiterId> {
        while let Some(waiter) = inner.list.next_present() {
            let connected = inner
                .waiters
                .get(&waiter)
                .and_then(|w| w.tx.as_ref())
                .is_some_and(|tx| !tx.is_closed());
            if connected {
                return Some(waiter);
            }
            match inner.waiters.get(&waiter) {
                Some(w) if w.resume.is_some() => {
                    inner.list.set_away(waiter, now);
                }
                _ => {
                    inner.forget(waiter);
                }
            }
        }
        None
    }

    /// Hands a fresh grant to the first connected waiting user (who may
    /// not be the one it was decided for: that one may have left while the
    /// policy decided); frees it if nobody takes it.
    fn hand_out(&self, inner: &mut Inner, mut grant: Grant, now: Instant) -> bool {
        while let Some(waiter) = Self::next_waiter(inner, now) {
            let Some(Waiter {
                tx: Some(tx),
                since,
                ..
            }) = inner.take_waiter(waiter)
            else {
                continue;
            };
            let asked = self.unix_ms(since);
            inner.sessions.granted(&grant.pod, &grant.uid, asked);
            tracing::debug!(
                target: ORDER_TARGET,
                app = %self.name(), waiter, pod = %grant.pod, uid = %grant.uid,
                "granted"
            );
            match tx.send(grant) {
                Ok(()) => {
                    self.metrics
                        .ticket_wait
                        .with_label_values(&[self.name()])
                        .observe(now.saturating_duration_since(since).as_secs_f64());
                    return true;
                }
                // Gone between the check and the send: the next one gets it.
                Err(back) => {
                    inner.sessions.forget(&back.pod, &back.uid);
                    grant = back;
                }
            }
        }
        inner.list.release(&grant.pod, &grant.uid, now);
        false
    }

    /// Gives free slots to waiting users who are connected, first come
    /// first served; users away past the grace period lose their place.
    /// Each slot is one policy decision, made without the lock.
    async fn serve_queue(&self) {
        let mut stale = 0;
        loop {
            let snap = {
                let mut guard = self.inner.lock();
                let inner = &mut *guard;
                let now = Instant::now();
                let mut gone = std::mem::take(&mut inner.gone);
                inner.list.drop_away(now, self.resume_grace(), &mut gone);
                for waiter in gone.drain(..) {
                    inner.forget(waiter);
                }
                inner.gone = gone;
                let Some(next) = Self::next_waiter(inner, now) else {
                    self.publish(&inner.list);
                    return;
                };
                if !self.may_serve(next, inner.list.free_tickets()) {
                    // Users of other replicas who asked first take the
                    // free slots; the next sync tells when it is this one's turn.
                    self.publish(&inner.list);
                    return;
                }
                // The user is still counted as waiting while the policy decides.
                inner.take_snapshot(now)
            };
            let (id, snap) = self.policy.assign(snap).await;
            let (grant, capacity) = {
                let mut guard = self.inner.lock();
                let inner = &mut *guard;
                inner.give_back(snap);
                let Some(id) = id else {
                    self.publish(&inner.list);
                    return;
                };
                let now = Instant::now();
                let grant = match self.issue_decided(inner, id, now) {
                    Issued::Granted(grant) => grant,
                    Issued::Closed => return,
                    Issued::Stale => {
                        stale += 1;
                        // The next round (at the latest the next tick) goes on.
                        if stale >= ISSUE_ATTEMPTS {
                            return;
                        }
                        self.publish(&inner.list);
                        continue;
                    }
                };
                if self.shared.get().is_none() {
                    self.hand_out(inner, grant, now);
                    self.publish(&inner.list);
                    continue;
                }
                let capacity = inner.list.capacity_of(&grant.pod).unwrap_or(0);
                (grant, capacity)
            };
            let Some(shared) = self.shared.get() else {
                continue;
            };
            match self.claim(shared, &grant, capacity).await {
                Ok(()) => {
                    let mut guard = self.inner.lock();
                    let taken = self.hand_out(&mut guard, grant.clone(), Instant::now());
                    self.publish(&guard.list);
                    drop(guard);
                    if !taken {
                        self.free_shared(shared, &grant);
                    }
                }
                Err(ClaimLost::Down) => {
                    self.unclaim(&grant);
                    return;
                }
                Err(ClaimLost::Decide) => {
                    self.unclaim(&grant);
                    self.sync_once(shared).await;
                    stale += 1;
                    if stale >= ISSUE_ATTEMPTS {
                        return;
                    }
                }
            }
        }
    }

    /// One round: expire tickets (on the timer tick only: it visits every
    /// ticket), serve the queue, ask the policy to scale and start the
    /// actions it approved.
    async fn step(self: &Arc<Self>, sweep: bool) {
        if sweep && let Some(shared) = self.shared.get() {
            self.expire_shared(shared).await;
            // Draining pods whose last ticket ended go; tickets expire
            // through the store only.
            let mut inner = self.inner.lock();
            // An expiry no ticket reaches (in whole milliseconds, as tickets count).
            inner
                .list
                .sweep(Instant::now(), Duration::from_millis(u64::MAX));
            self.publish(&inner.list);
        } else if sweep {
            let mut guard = self.inner.lock();
            let inner = &mut *guard;
            let now = Instant::now();
            inner.sessions.before_sweep(&inner.list, now, self.expiry);
            let swept = inner.list.sweep(now, self.expiry);
            if swept.expired > 0 {
                tracing::debug!(app = %self.name(), expired = swept.expired, "tickets expired");
            }
            self.publish(&inner.list);
        }
        self.serve_queue().await;
        self.scale().await;
    }

    /// Asks the policy to scale and starts the actions it approved that the
    /// current state still allows.
    async fn scale(self: &Arc<Self>) {
        // Only the leader scales (see docs/ha.md); and with a shared store
        // that does not answer, counts may be stale: no pod is created or
        // deleted on them.
        if self.leadership.get().is_some_and(|l| !l.is_leader()) || !self.store_up() {
            return;
        }
        let snap = self.inner.lock().take_snapshot(Instant::now());
        let (decision, snap) = self.policy.scale(snap).await;
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.give_back(snap);
        if decision.is_noop() {
            return;
        }
        let ScaleActions { creates, deletes } = inner.list.apply_scale(&decision, Instant::now());
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
        let sync = self.sync_loop();
        let main = self.main_loop();
        tokio::join!(sync, main);
    }

    async fn main_loop(self: &Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sweep = tokio::select! {
                _ = tick.tick() => true,
                _ = self.wake.notified() => false,
            };
            self.step(sweep).await;
            tokio::time::sleep(ROUND_GAP).await;
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
            .set(list.autoscaled_names().count() as f64);
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

#[cfg(test)]
pub(crate) mod tests {
    //! The app's ticket rules with the real default policy on its thread,
    //! and no network: requests and loop rounds are called directly.
    use super::*;
    use crate::policy::{Limits, PolicyEngine, PolicySource, load_default};
    use crate::provider::{BoxFuture, ProviderError};
    use crate::state::{Backend, PodInfo};

    /// A provider that is never asked for anything (pods.max is 0).
    struct NoProvider;

    impl NoProvider {
        fn refuse(app: &str) -> ProviderError {
            ProviderError {
                action: "anything".into(),
                app: app.into(),
                reason: "this test has no pods to create or delete".into(),
            }
        }
    }

    impl PodProvider for NoProvider {
        fn create<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<PodInfo, ProviderError>> {
            Box::pin(async move { Err(Self::refuse(app)) })
        }

        fn delete<'a>(
            &'a self,
            app: &'a str,
            _pod: &'a str,
        ) -> BoxFuture<'a, Result<(), ProviderError>> {
            Box::pin(async move { Err(Self::refuse(app)) })
        }
    }

    /// An app with one ready pod of `tickets_max` slots and no scaling.
    pub(crate) fn app(tickets_max: u32) -> Arc<App> {
        app_with(tickets_max, Arc::new(NoProvider))
    }

    /// A provider that counts the creations it is asked for (and refuses them).
    struct Counting(AtomicU64);

    impl PodProvider for Counting {
        fn create<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<PodInfo, ProviderError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Err(NoProvider::refuse(app)) })
        }

        fn delete<'a>(
            &'a self,
            app: &'a str,
            _pod: &'a str,
        ) -> BoxFuture<'a, Result<(), ProviderError>> {
            Box::pin(async move { Err(NoProvider::refuse(app)) })
        }
    }

    /// [`app`] with `provider`.
    fn app_with(tickets_max: u32, provider: Arc<dyn PodProvider>) -> Arc<App> {
        let metrics = Metrics::new().expect("metrics");
        // Debug builds, tests in parallel: no deadline trouble.
        let limits = Limits {
            timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let engine = PolicyEngine::new(limits).expect("engine");
        let default = load_default(&engine).expect("default policy");
        let source = PolicySource::new("embedded:spare-tickets", Arc::clone(&default));
        let runner = PolicyRunner::new("t", engine, source, default, metrics.policy.clone());
        let settings = AppSettings {
            tickets_max,
            tickets_spare: 0,
            pods_max: 0,
            ..AppSettings::default()
        };
        let routing = Routing {
            name: "t".into(),
            dns: false,
        };
        let expiry = Duration::from_secs(60);
        let app = App::new(routing, settings, expiry, runner, provider, metrics);
        app.apply(PodEvent::Upsert {
            app: "t".into(),
            pod: PodInfo {
                name: "p".into(),
                backend: Some(Backend::new(([127, 0, 0, 1], 9).into(), "/")),
                ready: true,
                autoscaled: false,
            },
        });
        app
    }

    fn granted(r: TicketRequest) -> Option<Grant> {
        match r {
            TicketRequest::Granted(g) => Some(g),
            _ => None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_leader_asks_for_pods() {
        let provider = Arc::new(Counting(AtomicU64::new(0)));
        let app = app_with(1, Arc::clone(&provider) as Arc<dyn PodProvider>);
        // Free 1 < spare 2: the policy wants a pod.
        app.set_settings(AppSettings {
            tickets_max: 1,
            tickets_spare: 2,
            pods_max: 3,
            ..AppSettings::default()
        });
        let leadership = Leadership::follower();
        app.follow(&leadership);
        for _ in 0..3 {
            app.step(true).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            provider.0.load(Ordering::SeqCst),
            0,
            "a follower never creates"
        );
        leadership.set(true);
        app.step(false).await;
        let start = Instant::now();
        while provider.0.load(Ordering::SeqCst) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the leader creates"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decisions_made_in_parallel_never_overfill_a_pod() {
        let app = app(3);
        // All ten decide on snapshots taken before any of them issued, so
        // most answers are stale by the time they come back.
        let answers = futures_util::future::join_all((0..10).map(|_| app.request_ticket())).await;
        let (mut grants, mut queued) = (0, 0);
        for a in answers {
            match a {
                TicketRequest::Granted(_) => grants += 1,
                TicketRequest::Queued { .. } => queued += 1,
                TicketRequest::Closed | TicketRequest::Full => panic!("the app accepts users"),
            }
        }
        assert_eq!((grants, queued), (3, 7), "every user is granted or waits");
        let inner = app.inner.lock();
        assert_eq!(inner.list.tickets_in_use(), 3);
        assert_eq!(inner.list.waiting(), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_freed_slot_goes_to_the_queue_before_a_newcomer() {
        let app = app(1);
        let first = granted(app.request_ticket().await).expect("the free slot");
        let TicketRequest::Queued { waiter, mut rx } = app.request_ticket().await else {
            panic!("the pod is full: the second user waits");
        };
        let rid = app.make_resumable(waiter).expect("waiting");
        app.release(&first);
        // A slot is free, but someone waits: the newcomer queues behind.
        let third = app.request_ticket().await;
        assert!(matches!(third, TicketRequest::Queued { .. }), "{third:?}");
        app.step(false).await;
        let grant = rx.try_recv().expect("the first in line is served");
        assert_eq!(grant.pod, "p");
        let inner = app.inner.lock();
        assert_eq!(inner.list.waiting(), 1, "the newcomer still waits");
        assert!(
            !inner.resumable.contains_key(&rid),
            "a served user's resume id is forgotten"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_users_are_arrivals_resumed_ones_are_not_and_snapshots_carry_the_clock() {
        let app = app(1);
        app.set_timezone(crate::state::zone("Asia/Kolkata").expect("zone"));
        let first = granted(app.request_ticket().await).expect("the free slot");
        let Join::Queued {
            waiting,
            rid: Some(rid),
            ..
        } = app.join(None, true).await
        else {
            panic!("the pod is full: the second user waits, resumable");
        };
        drop(waiting);
        let Join::Queued { resumed, .. } = app.join(Some(&rid), true).await else {
            panic!("the place is kept");
        };
        assert!(resumed);
        let snap = app.inner.lock().take_snapshot(Instant::now());
        let arrived: u32 = snap.arrivals_per_minute.iter().sum();
        // Two users asked (at most one minute boundary apart); the resume
        // is not a new arrival.
        assert_eq!(arrived, 2, "{:?}", snap.arrivals_per_minute);
        assert_eq!(snap.arrivals_per_hour.iter().sum::<u32>(), 2);
        assert_eq!(snap.clock.utc_offset_seconds, 19_800, "India: +05:30");
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        assert!(unix.abs_diff(snap.clock.unix_seconds) < 5);
        assert_eq!(snap.waiting, 1);
        app.release(&first);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_user_who_is_gone_keeps_the_place_but_stops_asking_for_pods() {
        let app = app(1);
        let _first = granted(app.request_ticket().await).expect("the free slot");
        let TicketRequest::Queued { waiter, rx } = app.request_ticket().await else {
            panic!("the pod is full: the second user waits");
        };
        app.make_resumable(waiter).expect("waiting");
        drop(rx);
        // The connection ends (a poll answered, a socket dropped).
        app.detach(waiter);
        let mut inner = app.inner.lock();
        let now = Instant::now();
        assert_eq!(inner.take_snapshot(now).waiting, 1, "just gone: counted");
        let later = now + AWAY_COUNTS_FOR;
        assert_eq!(
            inner.take_snapshot(later).waiting,
            0,
            "gone for the bound: the policy no longer scales for them"
        );
        assert_eq!(inner.list.waiting(), 1, "the place is kept for the grace");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slots_freed_together_go_to_the_connected_waiters_in_order_of_joining() {
        let app = app(4);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(granted(app.request_ticket().await).expect("a free slot"));
        }
        // Eight wait: the 2nd steps away (resumable, disconnected), the 5th
        // leaves, the others stay connected.
        let mut line = Vec::new();
        for _ in 0..8 {
            let TicketRequest::Queued { waiter, rx } = app.request_ticket().await else {
                panic!("the pod is full: they wait");
            };
            line.push((waiter, rx));
        }
        app.make_resumable(line[1].0).expect("waiting");
        app.detach(line[1].0);
        app.leave_queue(line[4].0);
        // Who of the line got a ticket since the last look.
        fn ticketed(line: &mut [(WaiterId, oneshot::Receiver<Grant>)]) -> Vec<bool> {
            line.iter_mut()
                .map(|(_, rx)| rx.try_recv().is_ok())
                .collect()
        }
        // Three slots free at once (as at one expiry sweep), then one more.
        for g in held.drain(..3) {
            app.release(&g);
        }
        app.step(false).await;
        assert_eq!(
            ticketed(&mut line),
            [true, false, true, true, false, false, false, false],
            "the first three connected waiters, in order of joining"
        );
        app.release(&held.pop().expect("the fourth"));
        app.step(false).await;
        assert_eq!(
            ticketed(&mut line),
            [false, false, false, false, false, true, false, false],
            "then the next connected one"
        );
        assert_eq!(app.inner.lock().list.waiting(), 3, "away, 7th and 8th");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_clients_churn_is_not_arrivals_distinct_clients_are() {
        let app = app(1);
        let _first = granted(app.request_ticket().await).expect("the free slot");
        let churner = Places {
            owner: Some(Owner {
                client: [192, 0, 2, 1].into(),
                places: 4,
            }),
            ..Places::default()
        };
        let minute = || unix_now() / 60;
        let began = minute();
        // 200 joins and leaves from one address.
        for _ in 0..200 {
            let Join::Queued { waiting, .. } = app.join_as(churner, None, false).await else {
                panic!("the pod is full: the user waits");
            };
            drop(waiting);
        }
        let minutes = (minute() - began + 1) as u32;
        let (per_minute, _) = app.arrivals();
        // The held ticket, and at most 4 a minute of the churning client.
        let churned = per_minute.iter().sum::<u32>() - 1;
        assert!(churned <= 4 * minutes, "{per_minute:?}");
        assert!(churned >= 4, "{per_minute:?}");
        // Ten other clients each count.
        for i in 0..10u8 {
            let other = Places {
                owner: Some(Owner {
                    client: [198, 51, 100, i].into(),
                    places: 4,
                }),
                ..Places::default()
            };
            let Join::Queued { waiting, .. } = app.join_as(other, None, false).await else {
                panic!("queued");
            };
            drop(waiting);
        }
        let (per_minute, per_hour) = app.arrivals();
        assert_eq!(per_minute.iter().sum::<u32>(), 1 + churned + 10);
        assert_eq!(per_hour.iter().sum::<u32>(), 1 + churned + 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn places_per_client_are_limited_and_come_back() {
        let app = app(1);
        let _first = granted(app.request_ticket().await).expect("the free slot");
        let owner = Places {
            owner: Some(Owner {
                client: [192, 0, 2, 1].into(),
                places: 2,
            }),
            ..Places::default()
        };
        let other = Places {
            owner: Some(Owner {
                client: [192, 0, 2, 2].into(),
                places: 2,
            }),
            ..Places::default()
        };
        let mut held = Vec::new();
        for _ in 0..2 {
            match app.join_as(owner, None, true).await {
                Join::Queued { waiting, .. } => held.push(waiting),
                j => panic!("queued: {j:?}"),
            }
        }
        assert!(matches!(
            app.join_as(owner, None, true).await,
            Join::Refused
        ));
        assert!(matches!(
            app.join_as(other, None, true).await,
            Join::Queued { .. }
        ));
        // A place left for good is a place back.
        let w = held.pop().expect("held");
        app.leave_queue(w.waiter());
        drop(w);
        assert!(matches!(
            app.join_as(owner, None, true).await,
            Join::Queued { .. }
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_line_holds_only_so_many_places() {
        let app = app(1);
        let first = granted(app.request_ticket().await).expect("the free slot");
        let capped = Places {
            line: 2,
            ..Places::default()
        };
        let mut held = Vec::new();
        for _ in 0..2 {
            match app.join_as(capped, None, true).await {
                Join::Queued { waiting, rid, .. } => held.push((waiting, rid)),
                j => panic!("queued: {j:?}"),
            }
        }
        assert!(matches!(app.join_as(capped, None, true).await, Join::Full));
        let arrivals = || app.arrivals().0.iter().sum::<u32>();
        let before = arrivals();
        // One away still holds its place, and comes back to it.
        let (away, rid) = held.pop().expect("held");
        drop(away);
        assert!(matches!(app.join_as(capped, None, true).await, Join::Full));
        match app.join_as(capped, rid.as_ref(), true).await {
            Join::Queued {
                waiting,
                resumed: true,
                ..
            } => held.push((waiting, rid)),
            j => panic!("resumed: {j:?}"),
        }
        assert_eq!(
            arrivals(),
            before,
            "refused newcomers are no arrivals the policy scales for"
        );
        // Without a limit the line grows.
        match app.join_as(Places::default(), None, true).await {
            Join::Queued { waiting, rid, .. } => held.push((waiting, rid)),
            j => panic!("queued: {j:?}"),
        }
        // A line of users who all stepped away, and a free slot: a
        // newcomer is served at once, past the limit.
        drop(held);
        app.release(&first);
        assert!(matches!(
            app.join_as(capped, None, true).await,
            Join::Granted(_)
        ));
        assert_eq!(app.inner.lock().waiters.len(), 3, "the away keep theirs");
    }

    #[test]
    fn a_place_made_by_a_browser_is_for_that_browser_only() {
        let (mine, theirs) = (Token::generate(), Token::generate());
        let (here, there): (IpAddr, IpAddr) = ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        let comer = |browser, client| Comer { browser, client };
        let with_cookie = Binding {
            browser: Some(mine),
            client: None,
        };
        assert!(
            with_cookie.admits(&comer(Some(mine), there)),
            "its browser, anywhere"
        );
        assert!(!with_cookie.admits(&comer(Some(theirs), here)));
        assert!(
            !with_cookie.admits(&comer(None, here)),
            "no cookie: not that browser"
        );
        // Made without a cookie: the cookie its answer set, or (a client
        // that keeps none) its address.
        let without = Binding {
            browser: Some(mine),
            client: Some(here),
        };
        assert!(without.admits(&comer(Some(mine), there)));
        assert!(without.admits(&comer(None, here)));
        assert!(!without.admits(&comer(None, there)));
        assert!(
            !without.admits(&comer(Some(theirs), here)),
            "another browser"
        );
        assert!(!Binding::default().admits(&comer(None, here)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resume_id_from_someone_else_resumes_nothing() {
        let app = app(1);
        let _first = granted(app.request_ticket().await).expect("the free slot");
        let (mine, theirs) = (Token::generate(), Token::generate());
        let client: IpAddr = [192, 0, 2, 1].into();
        let made = Places {
            binding: Binding {
                browser: Some(mine),
                client: None,
            },
            ..Places::default()
        };
        let Join::Queued {
            waiting,
            rid: Some(rid),
            ..
        } = app.join_as(made, None, true).await
        else {
            panic!("queued");
        };
        drop(waiting);
        let back = |browser| Places {
            back: Some(Comer { browser, client }),
            ..made
        };
        // Another browser with the link: a new place of its own, behind.
        match app.join_as(back(Some(theirs)), Some(&rid), true).await {
            Join::Queued {
                waiting,
                resumed: false,
                rid: other,
            } => {
                assert_ne!(other, Some(rid));
                assert_eq!(waiting.status().map(|s| s.position), Some(2));
            }
            j => panic!("a new place: {j:?}"),
        }
        // The place is untouched: its own browser comes back to it.
        match app.join_as(back(Some(mine)), Some(&rid), true).await {
            Join::Queued {
                waiting,
                resumed: true,
                ..
            } => assert_eq!(waiting.status().map(|s| s.position), Some(1)),
            j => panic!("resumed: {j:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_app_answers_closed() {
        let app = app(1);
        app.set_accepting(false);
        assert!(matches!(app.request_ticket().await, TicketRequest::Closed));
    }
}
