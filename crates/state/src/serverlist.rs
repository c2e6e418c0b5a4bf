//! The serverlist: one app's pods, their tickets and the waiting queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::arrival_gate::ArrivalGate;
use super::arrivals::Arrivals;
use super::backend::Backend;
use super::clock::Clock;
use super::observed::{self, Capacity, Estimate, Observed};
use super::settings::AppSettings;
use super::snapshot::{ObservedTimes, Phase, SnapPod, Snapshot};
use super::ticket::{Grant, Ticket, Token, TokenDigest};

/// Stable numeric id of a pod within its app (what policies name pods by).
pub type PodId = u32;

/// Id of a user waiting in the queue.
pub type WaiterId = u64;

/// What the pod source (informer or local provider) knows about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Pod name.
    pub name: String,
    /// Address, once the pod has one.
    pub backend: Option<Backend>,
    /// Running and Ready.
    pub ready: bool,
    /// Created by wicket.
    pub autoscaled: bool,
}

/// Why a ticket could not be issued on a pod.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IssueError {
    /// The app is disabled or being removed.
    #[error("the app is not accepting new users")]
    NotAccepting,
    /// No pod with that id.
    #[error("unknown pod id {0}")]
    UnknownPod(PodId),
    /// The pod is starting or draining.
    #[error("pod {0} is not ready")]
    NotReady(String),
    /// Every slot of the pod is taken.
    #[error("pod {0} is full")]
    Full(String),
}

/// A ticket as a shared store holds it (see [`Serverlist::mirror`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    /// Pod name.
    pub pod: String,
    /// Ticket uid.
    pub uid: String,
    /// Digest of the ticket's token.
    pub digest: TokenDigest,
    /// Its last use on any replica.
    pub last_use: Instant,
}

/// What [`Serverlist::mirror`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MirrorChange {
    /// Tickets issued elsewhere, now known here.
    pub added: u32,
    /// Tickets gone from the store (freed or expired on some replica),
    /// now refused here.
    pub removed: u32,
    /// Tickets of pods this list does not know (yet): mirrored later.
    pub unplaced: u32,
}

/// What a sweep changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Tickets freed because nobody used them for the expiry time.
    pub expired: u32,
    /// Draining pods removed because their last ticket ended.
    pub removed_pods: Vec<String>,
}

#[derive(Debug)]
struct PodEntry {
    id: PodId,
    backend: Option<Arc<Backend>>,
    capacity: u32,
    phase: Phase,
    autoscaled: bool,
    tickets: HashMap<String, Held>,
    /// Since when the pod has held no ticket (or became ready).
    idle_since: Instant,
    /// While starting: since when (its creation was asked for, or it was
    /// first seen), to observe start times.
    starting_since: Option<Instant>,
    /// When the pod was first seen (or its creation asked for): its age.
    first_seen: Instant,
}

/// A ticket the serverlist holds. However it lets go of it (freed,
/// expired, its pod removed, the whole list dropped with its app), the
/// ticket stops being live, so nobody who remembers it can use it again.
#[derive(Debug)]
struct Held(Arc<Ticket>);

impl std::ops::Deref for Held {
    type Target = Arc<Ticket>;

    fn deref(&self) -> &Arc<Ticket> {
        &self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.revoke();
    }
}

impl PodEntry {
    fn is_full(&self) -> bool {
        self.tickets.len() as u32 >= self.capacity
    }
}

/// A user in the waiting queue.
#[derive(Debug, Clone, Copy)]
struct QueueEntry {
    id: WaiterId,
    /// Set while the user is disconnected (and may come back): they keep
    /// their place but are skipped when slots are given out.
    away_since: Option<Instant>,
    /// When the user asked for a ticket.
    since: Instant,
}

/// One app's pods, tickets and FIFO waiting queue. Pure: no I/O, no clock.
#[derive(Debug)]
pub struct Serverlist {
    origin: Instant,
    settings: AppSettings,
    accepting: bool,
    pods: BTreeMap<String, PodEntry>,
    /// Placeholders for pods whose creation was requested but not yet
    /// answered, with when it was requested (if known).
    creating: Vec<(PodId, Option<Instant>)>,
    next_pod_id: PodId,
    queue: VecDeque<QueueEntry>,
    next_waiter: WaiterId,
    observed: Observed,
    arrivals: Arrivals,
    /// Which joins of a client count as arrivals.
    arrival_gate: ArrivalGate,
}

impl Serverlist {
    /// An empty serverlist; `now` anchors the tickets' clocks.
    pub fn new(settings: AppSettings, now: Instant) -> Self {
        Self {
            origin: now,
            settings,
            accepting: true,
            pods: BTreeMap::new(),
            creating: Vec::new(),
            next_pod_id: 0,
            queue: VecDeque::new(),
            next_waiter: 0,
            observed: Observed::default(),
            arrivals: Arrivals::default(),
            arrival_gate: ArrivalGate::default(),
        }
    }

    /// The app's settings.
    pub fn settings(&self) -> &AppSettings {
        &self.settings
    }

    /// Applies new settings; pods take the new tickets.max as capacity.
    pub fn set_settings(&mut self, settings: AppSettings) {
        for pod in self.pods.values_mut() {
            pod.capacity = settings.tickets_max;
        }
        self.settings = settings;
    }

    /// Whether new tickets may be issued at all.
    pub fn accepting(&self) -> bool {
        self.accepting
    }

    /// Enables or disables (drains) the app. Existing tickets are kept.
    pub fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    fn alloc_id(&mut self) -> PodId {
        let id = self.next_pod_id;
        self.next_pod_id = self.next_pod_id.wrapping_add(1);
        id
    }

    /// Adds or updates a pod from the pod source. A ready pod whose address
    /// changed, or that stopped being ready, drains; a draining pod never
    /// returns to service (it is re-added once removed).
    pub fn upsert_pod(&mut self, info: PodInfo, now: Instant) {
        let capacity = self.settings.tickets_max;
        let ready = info.ready && info.backend.is_some();
        match self.pods.get_mut(&info.name) {
            None => {
                let id = self.alloc_id();
                let phase = if ready { Phase::Ready } else { Phase::Starting };
                self.pods.insert(
                    info.name,
                    PodEntry {
                        id,
                        backend: info.backend.map(Arc::new),
                        capacity,
                        phase,
                        autoscaled: info.autoscaled,
                        tickets: HashMap::new(),
                        idle_since: now,
                        starting_since: (!ready).then_some(now),
                        first_seen: now,
                    },
                );
            }
            Some(pod) => {
                pod.autoscaled |= info.autoscaled;
                let moved = match (&pod.backend, &info.backend) {
                    (Some(old), Some(new)) => **old != *new,
                    _ => false,
                };
                match pod.phase {
                    Phase::Draining => {}
                    Phase::Starting if ready => {
                        pod.phase = Phase::Ready;
                        pod.idle_since = now;
                        pod.backend = info.backend.map(Arc::new);
                        if let Some(since) = pod.starting_since.take() {
                            self.observed
                                .record_start(now.saturating_duration_since(since));
                        }
                    }
                    Phase::Starting => {
                        if info.backend.is_some() {
                            pod.backend = info.backend.map(Arc::new);
                        }
                    }
                    Phase::Ready if !ready || moved => pod.phase = Phase::Draining,
                    Phase::Ready => {}
                }
            }
        }
    }

    /// The pod is gone (deleted) or must not be used: drain it, or remove it
    /// at once if it holds no tickets. Returns whether it was known.
    pub fn drain_pod(&mut self, name: &str) -> bool {
        let Some(pod) = self.pods.get_mut(name) else {
            return false;
        };
        if pod.tickets.is_empty() {
            self.pods.remove(name);
        } else {
            pod.phase = Phase::Draining;
        }
        true
    }

    /// Reserves a placeholder for a pod about to be created, so that scale
    /// decisions made while the creation is in flight count it.
    pub fn begin_create(&mut self) -> PodId {
        let id = self.alloc_id();
        self.creating.push((id, None));
        id
    }

    /// [`begin_create`](Self::begin_create) at `now`: the pod's start time
    /// is then observed from the request on.
    pub fn begin_create_at(&mut self, now: Instant) -> PodId {
        let id = self.alloc_id();
        self.creating.push((id, Some(now)));
        id
    }

    /// Ends a creation: the placeholder turns into the created pod (starting),
    /// or disappears if creation failed.
    pub fn end_create(&mut self, placeholder: PodId, created: Option<PodInfo>, now: Instant) {
        let asked = self
            .creating
            .iter()
            .find(|(id, _)| *id == placeholder)
            .and_then(|(_, t)| *t);
        self.creating.retain(|&(id, _)| id != placeholder);
        if let Some(info) = created {
            let name = info.name.clone();
            self.upsert_pod(info, now);
            if let (Some(asked), Some(pod)) = (asked, self.pods.get_mut(&name)) {
                pod.first_seen = pod.first_seen.min(asked);
                if let Some(since) = pod.starting_since.as_mut() {
                    *since = (*since).min(asked);
                }
            }
        }
    }

    /// Starts deleting pod `id`: allowed only for an autoscaled pod with no
    /// tickets that is not starting. The pod stops getting tickets at once and
    /// leaves the list; returns its name for the provider.
    pub fn begin_delete(&mut self, id: PodId) -> Option<String> {
        let name = self
            .pods
            .iter()
            .find(|(_, p)| {
                p.id == id && p.autoscaled && p.tickets.is_empty() && p.phase != Phase::Starting
            })
            .map(|(name, _)| name.clone())?;
        self.pods.remove(&name);
        Some(name)
    }

    /// Fills `out` with the current state at `now` (durations: idle times,
    /// ages, waits) and `clock` (the wall clock or simulated time, for the
    /// arrival history), reusing its allocations.
    pub fn snapshot_into(&self, now: Instant, clock: Clock, out: &mut Snapshot) {
        let s = &self.settings;
        out.tickets_max = s.tickets_max;
        out.tickets_spare = s.tickets_spare;
        out.pods_max = s.pods_max;
        out.cooldown_seconds = s.cooldown.as_secs().min(u32::MAX as u64) as u32;
        if out.config != s.policy_config {
            out.config.clone_from(&s.policy_config);
        }
        out.waiting = self.queue.len() as u32;
        out.clock = clock;
        self.arrivals.fill(
            clock.unix_seconds,
            &mut out.arrivals_per_minute,
            &mut out.arrivals_per_hour,
        );
        let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX)) as u32;
        let secs = |d: Duration| d.as_secs().min(u64::from(u32::MAX)) as u32;
        let starts = self.observed.start_percentiles();
        let sessions = self.observed.session_percentiles();
        out.observed = ObservedTimes {
            startup_median_ms: starts.map(|p| ms(p.median)),
            startup_p90_ms: starts.map(|p| ms(p.p90)),
            session_median_seconds: sessions.map(|p| secs(p.median)),
            session_p90_seconds: sessions.map(|p| secs(p.p90)),
            longest_wait_ms: self
                .queue
                .front()
                .map_or(0, |w| ms(now.saturating_duration_since(w.since))),
        };
        out.pods.clear();
        out.pods.extend(self.pods.values().map(|p| SnapPod {
            id: p.id,
            capacity: p.capacity,
            tickets: p.tickets.len() as u32,
            phase: p.phase,
            autoscaled: p.autoscaled,
            idle_seconds: if p.tickets.is_empty() {
                now.saturating_duration_since(p.idle_since)
                    .as_secs()
                    .min(u32::MAX as u64) as u32
            } else {
                0
            },
            age_seconds: secs(now.saturating_duration_since(p.first_seen)),
        }));
        out.pods
            .extend(self.creating.iter().map(|&(id, asked)| SnapPod {
                id,
                capacity: s.tickets_max,
                tickets: 0,
                phase: Phase::Starting,
                autoscaled: true,
                idle_seconds: 0,
                age_seconds: asked.map_or(0, |t| secs(now.saturating_duration_since(t))),
            }));
    }

    /// A fresh snapshot (see [`snapshot_into`](Self::snapshot_into)).
    pub fn snapshot(&self, now: Instant, clock: Clock) -> Snapshot {
        let mut s = Snapshot::default();
        self.snapshot_into(now, clock, &mut s);
        s
    }

    /// The arrivals counted so far.
    pub fn arrivals(&self) -> &Arrivals {
        &self.arrivals
    }

    /// Counts a user who asked for a ticket at `unix_seconds` (once per
    /// user: not again when they resume a place in the queue).
    pub fn record_arrival(&mut self, unix_seconds: u64) {
        self.arrivals.record(unix_seconds);
    }

    /// Counts a join of `client` at `unix_seconds` as an arrival unless
    /// the client has had `allowance` joins counted this minute (see
    /// [`ArrivalGate`]: one client's churn is not new users). Returns
    /// whether it counted.
    pub fn record_arrival_of(&mut self, client: IpAddr, allowance: u32, unix_seconds: u64) -> bool {
        let counted = self.arrival_gate.admit(client, allowance, unix_seconds);
        if counted {
            self.arrivals.record(unix_seconds);
        }
        counted
    }

    /// Issues a ticket on pod `id` with a fresh token and uid.
    pub fn issue(&mut self, id: PodId, now: Instant) -> Result<Grant, IssueError> {
        if !self.accepting {
            return Err(IssueError::NotAccepting);
        }
        let origin = self.origin;
        let (name, pod) = self
            .pods
            .iter_mut()
            .find(|(_, p)| p.id == id)
            .ok_or(IssueError::UnknownPod(id))?;
        let backend = match (&pod.backend, pod.phase) {
            (Some(b), Phase::Ready) => Arc::clone(b),
            _ => return Err(IssueError::NotReady(name.clone())),
        };
        if pod.is_full() {
            return Err(IssueError::Full(name.clone()));
        }
        let uid = loop {
            // 48 random bits: unique on the pod is all a uid must be.
            let candidate = hex::encode(rand::random::<[u8; 6]>());
            if !pod.tickets.contains_key(&candidate) {
                break candidate;
            }
        };
        let token = Token::generate();
        let ticket = Arc::new(Ticket::new(token, uid.clone(), backend, origin, now));
        pod.tickets.insert(uid.clone(), Held(ticket));
        Ok(Grant {
            token,
            pod: name.clone(),
            uid,
        })
    }

    /// The instant tickets count their uses from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The ticket capacity of pod `pod`.
    pub fn capacity_of(&self, pod: &str) -> Option<u32> {
        self.pods.get(pod).map(|p| p.capacity)
    }

    /// Makes the tickets match a shared store's list `remote`, read at
    /// `fetched_at`: tickets missing from it are revoked (another replica
    /// freed or expired them) unless issued at or after `fetched_at` (their
    /// claim may not have reached the store when it was read); tickets
    /// issued elsewhere are added (opened by their digest); last uses are
    /// merged (the later wins).
    pub fn mirror(&mut self, remote: &[Mirrored], fetched_at: Instant) -> MirrorChange {
        let mut change = MirrorChange::default();
        let mut by_pod: HashMap<&str, HashMap<&str, &Mirrored>> = HashMap::new();
        for m in remote {
            by_pod.entry(&m.pod).or_default().insert(&m.uid, m);
        }
        let origin = self.origin;
        let observed = &mut self.observed;
        for (name, pod) in &mut self.pods {
            let theirs = by_pod.remove(name.as_str()).unwrap_or_default();
            let before = pod.tickets.len();
            pod.tickets.retain(|uid, t| {
                let keep = theirs.contains_key(uid.as_str()) || t.issued_at >= fetched_at;
                if !keep {
                    observed.record_session(fetched_at.saturating_duration_since(t.issued_at));
                }
                keep
            });
            let removed = before - pod.tickets.len();
            change.removed += removed as u32;
            if removed > 0 && pod.tickets.is_empty() {
                pod.idle_since = fetched_at;
            }
            for (uid, m) in theirs {
                if let Some(t) = pod.tickets.get(uid) {
                    t.touch_at(m.last_use);
                    // What the store holds needs no flushing back.
                    t.mark_flushed(m.last_use.saturating_duration_since(origin).as_millis() as u64);
                    continue;
                }
                let Some(backend) = &pod.backend else {
                    change.unplaced += 1;
                    continue;
                };
                let t = Ticket::mirrored(
                    m.digest,
                    uid.to_owned(),
                    Arc::clone(backend),
                    origin,
                    m.last_use.min(fetched_at),
                );
                t.touch_at(m.last_use);
                t.mark_flushed(m.last_use.saturating_duration_since(origin).as_millis() as u64);
                pod.tickets.insert(uid.to_owned(), Held(Arc::new(t)));
                change.added += 1;
            }
        }
        change.unplaced += by_pod.values().map(|t| t.len() as u32).sum::<u32>();
        change
    }

    /// Tickets nobody used for `expiry`: (pod, uid) pairs for a shared
    /// store to expire (it frees them only if no replica used them since).
    pub fn idle_tickets(&self, now: Instant, expiry: Duration) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, pod) in &self.pods {
            for (uid, t) in &pod.tickets {
                if t.is_expired(now, expiry) {
                    out.push((name.clone(), uid.clone()));
                }
            }
        }
        out
    }

    /// Every ticket with its pod name, for writing their uses to a shared
    /// store.
    pub fn all_tickets(&self) -> impl Iterator<Item = (&str, &Arc<Ticket>)> {
        self.pods
            .iter()
            .flat_map(|(name, p)| p.tickets.values().map(move |t| (name.as_str(), &t.0)))
    }

    /// The live ticket `uid` on pod `pod`.
    pub fn ticket(&self, pod: &str, uid: &str) -> Option<&Arc<Ticket>> {
        self.pods.get(pod)?.tickets.get(uid).map(|h| &h.0)
    }

    /// Does a pod of this name exist (in any phase)?
    pub fn has_pod(&self, pod: &str) -> bool {
        self.pods.contains_key(pod)
    }

    /// Frees a ticket at once (e.g. it was issued to a user who left before
    /// receiving it). Returns whether it existed.
    pub fn release(&mut self, pod: &str, uid: &str, now: Instant) -> bool {
        let Some(entry) = self.pods.get_mut(pod) else {
            return false;
        };
        let removed = entry.tickets.remove(uid).is_some();
        if removed && entry.tickets.is_empty() {
            entry.idle_since = now;
        }
        removed
    }

    /// Frees expired tickets and removes draining pods that hold none.
    /// How long each freed ticket held its slot is observed.
    pub fn sweep(&mut self, now: Instant, expiry: Duration) -> Sweep {
        let mut sweep = Sweep::default();
        let observed = &mut self.observed;
        for pod in self.pods.values_mut() {
            let before = pod.tickets.len();
            pod.tickets.retain(|_, t| {
                let expired = t.is_expired(now, expiry);
                if expired {
                    observed.record_session(now.saturating_duration_since(t.issued_at));
                }
                !expired
            });
            let freed = before - pod.tickets.len();
            if freed > 0 && pod.tickets.is_empty() {
                pod.idle_since = now;
            }
            sweep.expired += freed as u32;
        }
        self.pods.retain(|name, pod| {
            let keep = pod.phase != Phase::Draining || !pod.tickets.is_empty();
            if !keep {
                sweep.removed_pods.push(name.clone());
            }
            keep
        });
        sweep
    }

    /// Adds a user who asked for a ticket at `since` to the queue, behind
    /// everyone who asked before them or at the same instant (usually the
    /// back). A user whose first try took longer (the policy decided, the
    /// state changed, they are queued after all) keeps the place they asked
    /// for; and the line stays in the order of `since`, which is the order
    /// of the queue shared by several replicas: were it not, each replica's
    /// first user could wait for users behind another replica's first, and
    /// nobody would be served.
    pub fn enqueue(&mut self, since: Instant) -> WaiterId {
        let id = self.next_waiter;
        self.next_waiter += 1;
        let at = self.queue.partition_point(|e| e.since <= since);
        self.queue.insert(
            at,
            QueueEntry {
                id,
                away_since: None,
                since,
            },
        );
        id
    }

    fn index(&self, waiter: WaiterId) -> Option<usize> {
        self.queue.iter().position(|e| e.id == waiter)
    }

    /// Removes a user from the queue (they left). Returns whether they were in it.
    pub fn cancel(&mut self, waiter: WaiterId) -> bool {
        match self.index(waiter) {
            Some(i) => {
                self.queue.remove(i);
                true
            }
            None => false,
        }
    }

    /// 0-based position of a waiting user (users away count: they keep
    /// their places).
    pub fn position(&self, waiter: WaiterId) -> Option<usize> {
        self.index(waiter)
    }

    /// The first `limit` connected waiting users, in order, with when each
    /// asked (what a shared queue orders them by).
    pub fn present_waiters(&self, limit: usize) -> Vec<(WaiterId, Instant)> {
        self.queue
            .iter()
            .filter(|e| e.away_since.is_none())
            .take(limit)
            .map(|e| (e.id, e.since))
            .collect()
    }

    /// The user to serve next.
    pub fn queue_front(&self) -> Option<WaiterId> {
        self.queue.front().map(|e| e.id)
    }

    /// Removes the user at the front of the queue.
    pub fn pop_front(&mut self) -> Option<WaiterId> {
        self.queue.pop_front().map(|e| e.id)
    }

    /// The user lost their connection at `now` but may come back: they keep
    /// their place and are skipped when slots are given out. Returns whether
    /// they were in the queue.
    pub fn set_away(&mut self, waiter: WaiterId, now: Instant) -> bool {
        let Some(i) = self.index(waiter) else {
            return false;
        };
        let entry = &mut self.queue[i];
        entry.away_since.get_or_insert(now);
        true
    }

    /// The user is connected again. Returns whether they were in the queue.
    pub fn set_present(&mut self, waiter: WaiterId) -> bool {
        let Some(i) = self.index(waiter) else {
            return false;
        };
        self.queue[i].away_since = None;
        true
    }

    /// Is the user in the queue and connected?
    pub fn is_present(&self, waiter: WaiterId) -> bool {
        self.index(waiter)
            .is_some_and(|i| self.queue[i].away_since.is_none())
    }

    /// The first connected user: the next to be given a slot.
    pub fn next_present(&self) -> Option<WaiterId> {
        self.queue
            .iter()
            .find(|e| e.away_since.is_none())
            .map(|e| e.id)
    }

    /// Waiting users who still ask for capacity: the connected ones and
    /// those away for less than `bound` (the others keep their places but
    /// may never come back).
    pub fn waiting_counted(&self, now: Instant, bound: Duration) -> usize {
        self.queue
            .iter()
            .filter(|e| {
                e.away_since
                    .is_none_or(|since| now.saturating_duration_since(since) < bound)
            })
            .count()
    }

    /// Removes the users away for `grace` or longer, appending them to `gone`.
    pub fn drop_away(&mut self, now: Instant, grace: Duration, gone: &mut Vec<WaiterId>) {
        self.queue.retain(|e| match e.away_since {
            Some(since) if now.saturating_duration_since(since) >= grace => {
                gone.push(e.id);
                false
            }
            _ => true,
        });
    }

    /// About how long the user at 0-based `position` still waits, from the
    /// current capacity and what was observed of turnover and pod starts.
    pub fn estimate(&self, position: usize, now: Instant) -> Estimate {
        let mut starting: Vec<Duration> = self
            .pods
            .values()
            .filter(|p| p.phase == Phase::Starting)
            .map(|p| {
                p.starting_since
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
            })
            .chain(
                self.creating
                    .iter()
                    .map(|(_, t)| t.map_or(Duration::ZERO, |s| now.saturating_duration_since(s))),
            )
            .collect();
        starting.sort_unstable_by(|a, b| b.cmp(a));
        let (mut busy, mut live) = (0u32, Duration::ZERO);
        for pod in self.pods.values().filter(|p| p.phase == Phase::Ready) {
            busy += pod.tickets.len() as u32;
            for t in pod.tickets.values() {
                live = live.saturating_add(now.saturating_duration_since(t.issued_at));
            }
        }
        let cap = Capacity {
            free: self.free_tickets(),
            per_pod: self.settings.tickets_max,
            starting: &starting,
            busy,
            live,
        };
        observed::estimate(position, cap, &self.observed)
    }

    /// What was observed of turnover and pod starts.
    pub fn observed(&self) -> &Observed {
        &self.observed
    }

    /// Users waiting.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Name of the pod with this id.
    pub fn pod_name(&self, id: PodId) -> Option<&str> {
        self.pods
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(n, _)| n.as_str())
    }

    /// Tickets held across all pods.
    pub fn tickets_in_use(&self) -> u32 {
        self.pods.values().map(|p| p.tickets.len() as u32).sum()
    }

    /// Free slots on ready pods (k8sTicket's "free tickets").
    pub fn free_tickets(&self) -> u32 {
        self.pods
            .values()
            .filter(|p| p.phase == Phase::Ready)
            .map(|p| p.capacity.saturating_sub(p.tickets.len() as u32))
            .sum()
    }

    /// Autoscaled pods, including those being created.
    pub fn autoscaled_pods(&self) -> u32 {
        self.pods.values().filter(|p| p.autoscaled).count() as u32 + self.creating.len() as u32
    }

    /// Autoscaled pods that exist (named), for adoption and cleanup.
    pub fn autoscaled_names(&self) -> impl Iterator<Item = &str> {
        self.pods
            .iter()
            .filter(|(_, p)| p.autoscaled)
            .map(|(n, _)| n.as_str())
    }

    /// Pods starting (created or booting, including placeholders).
    pub fn starting_pods(&self) -> u32 {
        self.pods
            .values()
            .filter(|p| p.phase == Phase::Starting)
            .count() as u32
            + self.creating.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn settings(t: u32) -> AppSettings {
        AppSettings {
            tickets_max: t,
            ..AppSettings::default()
        }
    }

    fn pod(name: &str, port: u16, ready: bool, autoscaled: bool) -> PodInfo {
        PodInfo {
            name: name.into(),
            backend: Some(Backend::new(SocketAddr::from(([127, 0, 0, 1], port)), "/")),
            ready,
            autoscaled,
        }
    }

    fn id_of(list: &Serverlist, name: &str, now: Instant) -> PodId {
        let snap = list.snapshot(now, Clock::default());
        let idx = list
            .pods
            .keys()
            .position(|n| n == name)
            .expect("pod exists");
        snap.pods[idx].id
    }

    #[test]
    fn ready_pod_takes_tickets_up_to_capacity() {
        let now = Instant::now();
        let mut list = Serverlist::new(settings(2), now);
        list.upsert_pod(pod("a", 1, true, false), now);
        let a = id_of(&list, "a", now);
        let g1 = list.issue(a, now).expect("first");
        let g2 = list.issue(a, now).expect("second");
        assert_ne!(g1.uid, g2.uid);
        assert_eq!(
            list.issue(a, now).map(|_| ()),
            Err(IssueError::Full("a".into()))
        );
        assert_eq!(list.tickets_in_use(), 2);
        assert_eq!(list.free_tickets(), 0);
        assert!(
            list.ticket("a", &g1.uid)
                .is_some_and(|t| t.accepts(&g1.token))
        );
        assert!(
            !list
                .ticket("a", &g1.uid)
                .is_some_and(|t| t.accepts(&g2.token))
        );
    }

    #[test]
    fn mirroring_a_shared_store_adds_removes_and_keeps_claims_in_flight() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(3), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        let a = id_of(&list, "a", t0);
        let freed = list.issue(a, t0).expect("issued here, freed elsewhere");
        let kept = list.issue(a, t0).expect("issued here, in the store");
        let old = list.ticket("a", &freed.uid).cloned().expect("ticket");
        let fetched = t0 + Duration::from_millis(10);
        let in_flight = list.issue(a, fetched).expect("claim not in the store yet");
        let elsewhere = Token::generate();
        let later_use = t0 + Duration::from_secs(5);
        let remote = vec![
            Mirrored {
                pod: "a".into(),
                uid: kept.uid.clone(),
                digest: kept.token.digest(),
                last_use: later_use,
            },
            Mirrored {
                pod: "a".into(),
                uid: "e1".into(),
                digest: elsewhere.digest(),
                last_use: t0,
            },
            Mirrored {
                pod: "unknown".into(),
                uid: "x".into(),
                digest: elsewhere.digest(),
                last_use: t0,
            },
        ];
        let change = list.mirror(&remote, fetched);
        assert_eq!(
            change,
            MirrorChange {
                added: 1,
                removed: 1,
                unplaced: 1
            }
        );
        assert!(list.ticket("a", &freed.uid).is_none());
        assert!(
            !old.is_live(),
            "a connection that remembers it is refused too"
        );
        assert!(
            list.ticket("a", &in_flight.uid).is_some(),
            "issued after the read"
        );
        let theirs = list
            .ticket("a", "e1")
            .expect("issued elsewhere, known here");
        assert!(
            theirs.accepts(&elsewhere),
            "opened by the token of its digest"
        );
        assert!(!theirs.accepts(&kept.token));
        let mine = list.ticket("a", &kept.uid).expect("kept");
        assert!(
            !mine.is_expired(later_use + Duration::from_secs(1), Duration::from_secs(3)),
            "the later use on another replica counts"
        );
        assert_eq!(list.tickets_in_use(), 3, "counts include other replicas'");
        assert_eq!(
            list.issue(a, fetched).map(|_| ()),
            Err(IssueError::Full("a".into()))
        );
    }

    #[test]
    fn a_ticket_the_list_lets_go_of_is_no_longer_live() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(3), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        let a = id_of(&list, "a", t0);
        let grants: Vec<Grant> = (0..3).map(|_| list.issue(a, t0).expect("issue")).collect();
        let held: Vec<Arc<Ticket>> = grants
            .iter()
            .map(|g| Arc::clone(list.ticket("a", &g.uid).expect("ticket")))
            .collect();
        assert!(held.iter().all(|t| t.is_live()));
        // Released, expired, then the pod drained away with the last one.
        assert!(list.release("a", &grants[0].uid, t0));
        assert!(!held[0].is_live() && held[1].is_live());
        let guard = held[2].open();
        list.sweep(t0 + Duration::from_secs(10), Duration::from_secs(3));
        assert!(!held[1].is_live() && held[2].is_live());
        list.drain_pod("a");
        drop(guard);
        list.sweep(
            Instant::now() + Duration::from_secs(10),
            Duration::from_secs(3),
        );
        assert!(!held[2].is_live());
        // A list dropped with its app lets go of everything.
        let mut list = Serverlist::new(settings(1), t0);
        list.upsert_pod(pod("b", 1, true, false), t0);
        let b = id_of(&list, "b", t0);
        let g = list.issue(b, t0).expect("issue");
        let t = Arc::clone(list.ticket("b", &g.uid).expect("ticket"));
        drop(list);
        assert!(!t.is_live());
    }

    #[test]
    fn starting_pods_get_no_tickets_until_ready() {
        let now = Instant::now();
        let mut list = Serverlist::new(settings(1), now);
        list.upsert_pod(pod("a", 1, false, true), now);
        let a = id_of(&list, "a", now);
        assert!(matches!(list.issue(a, now), Err(IssueError::NotReady(_))));
        assert_eq!(list.starting_pods(), 1);
        list.upsert_pod(pod("a", 1, true, true), now);
        assert!(list.issue(a, now).is_ok());
        assert_eq!(list.starting_pods(), 0);
    }

    #[test]
    fn unused_ticket_expires_but_open_one_does_not() {
        let t0 = Instant::now();
        let expiry = Duration::from_secs(3);
        let mut list = Serverlist::new(settings(2), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        let a = id_of(&list, "a", t0);
        let idle = list.issue(a, t0).expect("idle");
        let busy = list.issue(a, t0).expect("busy");
        let busy_ticket = Arc::clone(list.ticket("a", &busy.uid).expect("busy ticket"));
        let guard = busy_ticket.open();
        assert_eq!(
            list.sweep(t0 + Duration::from_millis(2900), expiry).expired,
            0
        );
        let sweep = list.sweep(t0 + Duration::from_secs(10), expiry);
        assert_eq!(sweep.expired, 1);
        assert!(list.ticket("a", &idle.uid).is_none());
        assert!(list.ticket("a", &busy.uid).is_some());
        drop(guard);
        // Dropping the guard counts as a use "now" (real clock), so the ticket
        // lives at least `expiry` past that.
        assert_eq!(
            list.sweep(Instant::now() + Duration::from_secs(1), expiry)
                .expired,
            0
        );
        assert_eq!(
            list.sweep(Instant::now() + Duration::from_secs(4), expiry)
                .expired,
            1
        );
    }

    #[test]
    fn touch_keeps_ticket_alive() {
        let t0 = Instant::now();
        let expiry = Duration::from_secs(3);
        let mut list = Serverlist::new(settings(1), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        let g = list.issue(id_of(&list, "a", t0), t0).expect("ticket");
        list.ticket("a", &g.uid)
            .expect("t")
            .touch_at(t0 + Duration::from_secs(2));
        assert_eq!(list.sweep(t0 + Duration::from_secs(4), expiry).expired, 0);
        assert_eq!(list.sweep(t0 + Duration::from_secs(5), expiry).expired, 1);
    }

    #[test]
    fn draining_pod_keeps_tickets_then_leaves() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(2), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        let a = id_of(&list, "a", t0);
        let g = list.issue(a, t0).expect("ticket");
        // Not ready any more: drains, keeps the ticket, gives no new ones.
        list.upsert_pod(pod("a", 1, false, false), t0);
        assert!(list.ticket("a", &g.uid).is_some());
        assert!(matches!(list.issue(a, t0), Err(IssueError::NotReady(_))));
        assert_eq!(list.free_tickets(), 0);
        // Ready again does not un-drain.
        list.upsert_pod(pod("a", 1, true, false), t0);
        assert!(matches!(list.issue(a, t0), Err(IssueError::NotReady(_))));
        let sweep = list.sweep(t0 + Duration::from_secs(5), Duration::from_secs(3));
        assert_eq!(sweep.removed_pods, vec!["a".to_string()]);
        assert!(!list.has_pod("a"));
    }

    #[test]
    fn address_change_drains() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        let _g = list.issue(id_of(&list, "a", t0), t0).expect("ticket");
        list.upsert_pod(pod("a", 2, true, false), t0);
        assert_eq!(
            list.snapshot(t0, Clock::default()).pods[0].phase,
            Phase::Draining
        );
    }

    #[test]
    fn drain_removes_idle_pod_at_once() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        assert!(list.drain_pod("a"));
        assert!(!list.has_pod("a"));
        assert!(!list.drain_pod("a"));
    }

    #[test]
    fn queue_is_fifo_and_cancellable() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        let w1 = list.enqueue(t0);
        let w2 = list.enqueue(t0);
        let w3 = list.enqueue(t0);
        assert_eq!(list.position(w3), Some(2));
        assert!(list.cancel(w2));
        assert!(!list.cancel(w2));
        assert_eq!(list.position(w3), Some(1));
        assert_eq!(list.snapshot(t0, Clock::default()).waiting, 2);
        assert_eq!(list.pop_front(), Some(w1));
        assert_eq!(list.queue_front(), Some(w3));
    }

    #[test]
    fn a_user_queued_late_stands_where_they_asked() {
        // One user's first try took longer: they are queued after two who
        // asked later, yet stand before them, so every waiting user's
        // place follows when they asked (the shared queue's order).
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut list = Serverlist::new(settings(1), t0);
        let later = list.enqueue(t0 + ms(30));
        let same = list.enqueue(t0 + ms(30));
        let slow = list.enqueue(t0 + ms(10));
        let last = list.enqueue(t0 + ms(40));
        assert_eq!(list.position(slow), Some(0));
        assert_eq!(list.position(later), Some(1));
        assert_eq!(
            list.position(same),
            Some(2),
            "equal instants keep their order"
        );
        assert_eq!(list.position(last), Some(3));
        let asked: Vec<Instant> = list.present_waiters(10).iter().map(|w| w.1).collect();
        assert!(asked.is_sorted(), "the line follows when users asked");
    }

    #[test]
    fn placeholders_count_as_starting_autoscaled() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(2), t0);
        let p = list.begin_create();
        let snap = list.snapshot(t0, Clock::default());
        assert_eq!(snap.pods.len(), 1);
        assert_eq!(snap.pods[0].phase, Phase::Starting);
        assert!(snap.pods[0].autoscaled);
        assert_eq!(list.autoscaled_pods(), 1);
        list.end_create(p, Some(pod("x", 1, false, true)), t0);
        assert_eq!(list.autoscaled_pods(), 1);
        assert_eq!(list.snapshot(t0, Clock::default()).pods.len(), 1);
        let q = list.begin_create();
        list.end_create(q, None, t0);
        assert_eq!(list.autoscaled_pods(), 1);
    }

    #[test]
    fn delete_refuses_replicas_busy_and_starting_pods() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        list.upsert_pod(pod("replica", 1, true, false), t0);
        list.upsert_pod(pod("busy", 2, true, true), t0);
        list.upsert_pod(pod("boot", 3, false, true), t0);
        list.upsert_pod(pod("idle", 4, true, true), t0);
        let _g = list.issue(id_of(&list, "busy", t0), t0).expect("ticket");
        for name in ["replica", "busy", "boot"] {
            assert_eq!(list.begin_delete(id_of(&list, name, t0)), None, "{name}");
        }
        assert_eq!(
            list.begin_delete(id_of(&list, "idle", t0)),
            Some("idle".into())
        );
        assert!(!list.has_pod("idle"));
    }

    #[test]
    fn idle_seconds_count_from_last_ticket() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        list.upsert_pod(pod("a", 1, true, true), t0);
        let g = list.issue(id_of(&list, "a", t0), t0).expect("ticket");
        assert_eq!(
            list.snapshot(t0 + Duration::from_secs(5), Clock::default())
                .pods[0]
                .idle_seconds,
            0
        );
        assert!(list.release("a", &g.uid, t0 + Duration::from_secs(5)));
        assert_eq!(
            list.snapshot(t0 + Duration::from_secs(12), Clock::default())
                .pods[0]
                .idle_seconds,
            7
        );
    }

    #[test]
    fn settings_change_updates_capacity() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        assert_eq!(list.free_tickets(), 1);
        list.set_settings(settings(3));
        assert_eq!(list.free_tickets(), 3);
    }

    #[test]
    fn disabled_app_issues_nothing_but_keeps_tickets() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(2), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        let a = id_of(&list, "a", t0);
        let g = list.issue(a, t0).expect("ticket");
        list.set_accepting(false);
        assert_eq!(list.issue(a, t0).map(|_| ()), Err(IssueError::NotAccepting));
        assert!(list.ticket("a", &g.uid).is_some());
    }

    #[test]
    fn away_users_keep_their_place_but_are_skipped() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(30);
        let mut list = Serverlist::new(settings(1), t0);
        let (w1, w2, w3) = (list.enqueue(t0), list.enqueue(t0), list.enqueue(t0));
        assert!(list.set_away(w1, t0));
        assert_eq!(
            list.position(w2),
            Some(1),
            "the away user still counts ahead"
        );
        assert_eq!(list.next_present(), Some(w2), "but is not served");
        assert!(!list.is_present(w1) && list.is_present(w2));
        // Back in time: first again.
        assert!(list.set_present(w1));
        assert_eq!(list.next_present(), Some(w1));
        // Away past the grace period: gone.
        list.set_away(w1, t0);
        list.set_away(w3, t0 + Duration::from_secs(20));
        let mut gone = Vec::new();
        list.drop_away(t0 + Duration::from_secs(29), grace, &mut gone);
        assert!(gone.is_empty());
        list.drop_away(t0 + Duration::from_secs(31), grace, &mut gone);
        assert_eq!(gone, vec![w1]);
        assert_eq!(list.position(w2), Some(0));
        assert_eq!(list.waiting(), 2);
        assert_eq!(
            list.waiting_counted(t0 + Duration::from_secs(31), Duration::from_secs(5)),
            1,
            "only the connected user asks for capacity"
        );
        assert_eq!(
            list.waiting_counted(t0 + Duration::from_secs(21), Duration::from_secs(5)),
            2,
            "a user away for a moment still does"
        );
        // Going away twice keeps the first time.
        list.set_away(w3, t0 + Duration::from_secs(40));
        list.drop_away(t0 + Duration::from_secs(51), grace, &mut gone);
        assert_eq!(gone, vec![w1, w3]);
        assert!(!list.set_away(w1, t0) && !list.set_present(w1));
        assert_eq!(list.next_present(), Some(w2));
    }

    #[test]
    fn turnover_and_start_times_are_observed() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        let p = list.begin_create_at(t0);
        list.end_create(
            p,
            Some(pod("a", 1, false, true)),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(list.observed().mean_start(), None);
        list.upsert_pod(pod("a", 1, true, true), t0 + Duration::from_secs(12));
        assert_eq!(
            list.observed().mean_start(),
            Some(Duration::from_secs(12)),
            "from the request, not the first sight"
        );
        let g = list
            .issue(id_of(&list, "a", t0), t0 + Duration::from_secs(12))
            .expect("ticket");
        // Not yet ended: no session observed.
        assert_eq!(list.observed().sessions_seen(), 0);
        list.ticket("a", &g.uid)
            .expect("t")
            .touch_at(t0 + Duration::from_secs(40));
        list.sweep(t0 + Duration::from_secs(45), Duration::from_secs(3));
        assert_eq!(list.observed().sessions_seen(), 1);
        // Held from issue (12 s) until the sweep freed it (45 s): 33 s, plus the prior, over 2.
        assert_eq!(
            list.observed().mean_session(Duration::ZERO),
            (Duration::from_secs(33) + observed::PRIOR_SESSION) / 2
        );
    }

    #[test]
    fn a_clients_joins_past_its_allowance_are_not_arrivals() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        let unix = 1_796_378_430;
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let counted = (0..200)
            .filter(|_| list.record_arrival_of(a, 4, unix))
            .count();
        assert_eq!(counted, 4);
        assert!(list.record_arrival_of(b, 4, unix), "another client counts");
        let clock = Clock {
            unix_seconds: unix,
            utc_offset_seconds: 0,
        };
        let snap = list.snapshot(t0, clock);
        assert_eq!(snap.arrivals_per_minute[59], 5);
        assert_eq!(snap.arrivals_per_hour[167], 5);
    }

    #[test]
    fn snapshots_carry_the_clock_arrivals_ages_and_observed_times() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut list = Serverlist::new(settings(1), t0);
        let asked = list.begin_create_at(t0);
        list.upsert_pod(pod("replica", 1, true, false), t0 + s(5));
        // 10:00:30 UTC: two arrivals this minute, one 3 minutes before.
        let unix = 1_796_378_430;
        list.record_arrival(unix - 180);
        list.record_arrival(unix - 1);
        list.record_arrival(unix);
        list.enqueue(t0 + s(8));
        list.enqueue(t0 + s(9));
        let clock = Clock {
            unix_seconds: unix,
            utc_offset_seconds: 3600,
        };
        let snap = list.snapshot(t0 + s(10), clock);
        assert_eq!(snap.clock, clock);
        assert_eq!(snap.arrivals_per_minute.len(), 60);
        assert_eq!(snap.arrivals_per_hour.len(), 168);
        assert_eq!(snap.arrivals_per_minute[59], 2);
        assert_eq!(snap.arrivals_per_minute[56], 1);
        assert_eq!(snap.arrivals_per_hour[167], 2);
        assert_eq!(snap.arrivals_per_hour[166], 1, "09:57 is the hour before");
        // The replica was first seen at 5 s, the placeholder asked for at 0.
        assert_eq!(snap.pods[0].age_seconds, 5);
        assert_eq!(snap.pods[1].id, asked);
        assert_eq!(snap.pods[1].age_seconds, 10);
        assert_eq!(
            snap.observed,
            ObservedTimes {
                longest_wait_ms: 2000,
                ..ObservedTimes::default()
            },
            "the first in line asked at 8 s; nothing else observed yet"
        );
        // A created pod keeps the age of its request; start and session
        // times show up as medians and p90s.
        list.end_create(asked, Some(pod("a", 2, false, true)), t0 + s(3));
        list.upsert_pod(pod("a", 2, true, true), t0 + s(12));
        let g = list
            .issue(id_of(&list, "a", t0 + s(12)), t0 + s(12))
            .expect("ticket");
        list.ticket("a", &g.uid).expect("t").touch_at(t0 + s(20));
        list.sweep(t0 + s(30), s(3));
        let snap = list.snapshot(t0 + s(40), clock);
        let a = snap.pods.iter().find(|p| p.autoscaled).expect("pod a");
        assert_eq!(a.age_seconds, 40, "from the request at 0 s");
        assert_eq!(snap.observed.startup_median_ms, Some(12_000));
        assert_eq!(snap.observed.startup_p90_ms, Some(12_000));
        assert_eq!(snap.observed.session_median_seconds, Some(18));
        assert_eq!(snap.observed.session_p90_seconds, Some(18));
        assert_eq!(snap.observed.longest_wait_ms, 32_000);
        // Totals agree with the pods.
        let t = snap.totals();
        assert_eq!((t.ready_pods, t.autoscaled_pods, t.free_tickets), (2, 1, 2));
    }

    #[test]
    fn estimates_follow_capacity() {
        let t0 = Instant::now();
        let mut list = Serverlist::new(settings(1), t0);
        list.upsert_pod(pod("a", 1, true, false), t0);
        let w = list.enqueue(t0);
        let e = list.estimate(list.position(w).expect("queued"), t0);
        assert_eq!(e.wait, Some(Duration::ZERO), "a free slot: any moment");
        let _g = list.issue(id_of(&list, "a", t0), t0).expect("ticket");
        let e = list.estimate(0, t0 + Duration::from_secs(10));
        assert_eq!(e.basis, observed::Basis::Queue);
        assert_eq!(
            e.wait,
            Some(Duration::from_secs(10) + observed::PRIOR_SESSION)
        );
        // A pod being created takes the first waiter.
        list.begin_create_at(t0 + Duration::from_secs(10));
        let e = list.estimate(0, t0 + Duration::from_secs(11));
        assert_eq!(e.basis, observed::Basis::Starting);
        assert_eq!(e.wait, None, "no start time observed yet");
        assert_eq!(
            list.estimate(1, t0 + Duration::from_secs(11)).basis,
            observed::Basis::Queue
        );
    }

    #[test]
    fn backend_path_is_normalised() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 80));
        assert_eq!(Backend::new(addr, "").base_path, "/");
        assert_eq!(Backend::new(addr, "/").base_path, "/");
        assert_eq!(Backend::new(addr, "app").base_path, "/app/");
        assert_eq!(Backend::new(addr, "/a/b/").base_path, "/a/b/");
    }
}
