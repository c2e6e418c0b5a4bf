//! An app's side of a shared ticket store (see [`crate::store`]): claims,
//! the round trip of every interval (uses written, tickets mirrored, the
//! shared queue), expiry through the store, and what happens while the
//! store does not answer. Without a shared store none of this runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::App;
use crate::state::{Grant, Mirrored, WaiterId};
use crate::store::{Claim, QueueReport, Sharing, Store, StoreError, StoredTicket, Touch};

/// A store shared with other replicas, and what this replica knows of it.
/// Its `sync` lock may be taken while the app's state is locked, never the
/// other way round.
#[derive(Debug)]
pub(super) struct Shared {
    store: Arc<dyn Store>,
    /// How often uses are written and the version checked.
    refresh: Duration,
    /// How often every ticket is reloaded anyway.
    resync: Duration,
    /// This replica's id in the shared queue.
    replica: String,
    /// Did the last round trip succeed?
    up: AtomicBool,
    sync: Mutex<SyncState>,
    /// Tickets to free in the store at the next sync: those whose user
    /// never received them, and those whose claim got no answer (the store
    /// may have made it after all: a command sent before an outage runs
    /// when the server comes back).
    orphans: Mutex<Vec<(String, String)>>,
}

/// What the last successful reload of the store's tickets brought.
#[derive(Debug, Default)]
struct SyncState {
    /// The version the mirror matches (None: reload at the next sync).
    known: Option<i64>,
    /// When the mirror was last reloaded in full.
    reloaded: Option<Instant>,
    /// The store's tickets at that reload (for expiry, which also covers
    /// tickets of pods this replica does not know).
    remote: Vec<StoredTicket>,
    /// For this replica's connected waiting users: how many of other
    /// replicas' asked before them (at the last sync).
    ahead: HashMap<WaiterId, u64>,
    /// Connected waiting users of other replicas (at the last sync).
    others_waiting: u64,
    /// When the store last answered again after an outage.
    back_at: Option<Instant>,
}

/// How long after the store answers again expiry waits: the uses other
/// replicas saw during the outage reach the store with their next syncs
/// (the same bound after which a silent replica counts as gone).
fn expiry_hold(refresh: Duration) -> Duration {
    (5 * refresh).max(Duration::from_secs(3))
}

/// How often loading the tickets at start is tried before giving up.
const LOAD_ATTEMPTS: u32 = 5;

/// Waiting users reported to the shared queue per sync, at most: enough
/// for any number of slots freed in one interval.
const QUEUE_REPORTED: usize = 1000;

/// Why a claim in the shared store did not give the ticket.
pub(super) enum ClaimLost {
    /// Another replica took the slot first: decide again.
    Decide,
    /// The store did not answer.
    Down,
}

impl App {
    /// Shares the app's tickets through `store` (with the in-memory store
    /// this does nothing: the app keeps them alone). Set before the app's
    /// loop runs; a second call is ignored. `refresh` bounds how long a
    /// ticket freed elsewhere still opens here; every `resync` the tickets
    /// are reloaded in full.
    pub fn share(&self, sharing: &Sharing) {
        let Sharing {
            store,
            refresh,
            resync,
        } = sharing.clone();
        if !store.is_shared() {
            return;
        }
        self.metrics
            .store_up
            .with_label_values(&[self.name()])
            .set(1);
        let _ = self.shared.set(Shared {
            store,
            refresh,
            resync,
            replica: hex::encode(rand::random::<[u8; 8]>()),
            up: AtomicBool::new(true),
            sync: Mutex::new(SyncState::default()),
            orphans: Mutex::new(Vec::new()),
        });
    }

    /// Is the shared store answering (always true without one)?
    pub fn store_up(&self) -> bool {
        self.shared
            .get()
            .is_none_or(|s| s.up.load(Ordering::Relaxed))
    }

    /// Connected waiting users of other replicas (0 without a shared store).
    pub(super) fn others_waiting(&self) -> u64 {
        self.shared
            .get()
            .map_or(0, |s| s.sync.lock().others_waiting)
    }

    /// Waiting users of other replicas ahead of `waiter` in the shared
    /// queue (all of them while it is not yet in it; 0 without a store).
    pub(super) fn others_ahead(&self, waiter: WaiterId) -> u64 {
        self.shared.get().map_or(0, |s| {
            let st = s.sync.lock();
            st.ahead.get(&waiter).copied().unwrap_or(st.others_waiting)
        })
    }

    /// May `waiter`, first in this replica's line, take one of the `free`
    /// slots? Only if fewer users of other replicas asked before them.
    pub(super) fn may_serve(&self, waiter: WaiterId, free: u32) -> bool {
        self.shared.get().is_none() || self.others_ahead(waiter) < u64::from(free)
    }

    /// Frees a ticket in the shared store with the next sync (within one
    /// refresh interval; a ticket the store cannot free meanwhile ends
    /// there by expiry).
    pub(super) fn free_shared(&self, shared: &Shared, grant: &Grant) {
        shared
            .orphans
            .lock()
            .push((grant.pod.clone(), grant.uid.clone()));
    }

    /// Takes back locally a ticket whose claim in the store was lost.
    pub(super) fn unclaim(&self, grant: &Grant) {
        let mut inner = self.inner.lock();
        inner.list.release(&grant.pod, &grant.uid, Instant::now());
        self.publish(&inner.list);
    }

    /// Claims the slot of a ticket just issued here in the shared store.
    pub(super) async fn claim(
        &self,
        shared: &Shared,
        grant: &Grant,
        capacity: u32,
    ) -> Result<(), ClaimLost> {
        let ticket = StoredTicket {
            pod: grant.pod.clone(),
            uid: grant.uid.clone(),
            digest: grant.token.digest(),
            last_use_ms: self.unix_ms(Instant::now()),
        };
        match shared.store.claim(self.name(), &ticket, capacity).await {
            Ok(Claim::Granted) => {
                self.store_answered(shared);
                self.metrics
                    .users_total
                    .with_label_values(&[self.name()])
                    .inc();
                Ok(())
            }
            Ok(Claim::Full { .. } | Claim::Taken) => {
                self.store_answered(shared);
                Err(ClaimLost::Decide)
            }
            Err(e) => {
                self.store_failed(shared, &e);
                shared
                    .orphans
                    .lock()
                    .push((grant.pod.clone(), grant.uid.clone()));
                Err(ClaimLost::Down)
            }
        }
    }

    fn store_answered(&self, shared: &Shared) {
        if !shared.up.swap(true, Ordering::Relaxed) {
            shared.sync.lock().back_at = Some(Instant::now());
            tracing::warn!(app = %self.name(), "the ticket store answers again: new users are admitted");
            self.metrics
                .store_up
                .with_label_values(&[self.name()])
                .set(1);
            // Users who waited for the store are served now.
            self.wake.notify_one();
        }
    }

    fn store_failed(&self, shared: &Shared, e: &StoreError) {
        self.metrics
            .store_errors
            .with_label_values(&[self.name(), e.op])
            .inc();
        if shared.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                app = %self.name(),
                "{e}: existing tickets keep working from this replica's copy; new users wait and scaling pauses until the store answers"
            );
            self.metrics
                .store_up
                .with_label_values(&[self.name()])
                .set(0);
            // Waiting pages say why.
            let inner = self.inner.lock();
            self.publish(&inner.list);
        }
    }

    /// The instant of unix time `ms` (inverse of `unix_ms`).
    fn instant_of(&self, ms: i64) -> Instant {
        let (i0, _) = self.epoch;
        let delta = ms - self.unix_ms(i0);
        if delta >= 0 {
            i0 + Duration::from_millis(delta as u64)
        } else {
            i0.checked_sub(Duration::from_millis(delta.unsigned_abs()))
                .unwrap_or(i0)
        }
    }

    /// Loads the tickets from the shared store (at start: every ticket held
    /// before a restart is valid again). Nothing to do without one.
    pub async fn load_shared(&self) -> Result<(), StoreError> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        shared.sync.lock().known = None;
        // The store answered a PING a moment ago: a failure now is most
        // likely passing (a busy server), worth a few more tries.
        for _ in 0..LOAD_ATTEMPTS {
            if self.sync_once(shared).await {
                return Ok(());
            }
            tokio::time::sleep(shared.refresh).await;
        }
        Err(StoreError {
            op: "load",
            reason: format!("the ticket store did not answer {LOAD_ATTEMPTS} times"),
        })
    }

    /// One round trip: writes the uses of this replica's tickets since the
    /// last one and reads the store's version, and, if it changed (or a
    /// reload is due), mirrors every ticket. Returns whether the store
    /// answered.
    pub(super) async fn sync_once(&self, shared: &Shared) -> bool {
        let now = Instant::now();
        let mut touches = Vec::new();
        let mut marks = Vec::new();
        let waiters;
        {
            let inner = self.inner.lock();
            waiters = inner.list.present_waiters(QUEUE_REPORTED);
            let origin = inner.list.origin();
            // A quarter of the expiry (at most a second) between two writes
            // of a busy ticket's use: the store's last use stays well within
            // the expiry of the truth.
            let gap = (self.expiry / 4).min(Duration::from_secs(1));
            for (pod, t) in inner.list.all_tickets() {
                if let Some(ms) = t.unflushed_use(now, gap) {
                    touches.push(Touch {
                        pod: pod.to_owned(),
                        uid: t.uid().to_owned(),
                        at_ms: self.unix_ms(origin + Duration::from_millis(ms)),
                    });
                    marks.push((Arc::clone(t), ms));
                }
            }
        }
        let known = {
            let st = shared.sync.lock();
            let due = st
                .reloaded
                .is_none_or(|at| now.saturating_duration_since(at) >= shared.resync);
            if due { None } else { st.known }
        };
        let queue = QueueReport {
            replica: shared.replica.clone(),
            waiters: waiters
                .iter()
                .map(|&(id, since)| (id, self.unix_ms(since)))
                .collect(),
            now_ms: self.unix_ms(now),
            // Several missed intervals: the replica is gone.
            stale_ms: expiry_hold(shared.refresh).as_millis() as i64,
        };
        // Freed first, so that the reload below no longer has them.
        let orphans = std::mem::take(&mut *shared.orphans.lock());
        if !orphans.is_empty() {
            match shared.store.free(self.name(), &orphans).await {
                Ok(n) => {
                    tracing::debug!(app = %self.name(), freed = n, "tickets nobody holds freed in the store");
                }
                Err(e) => {
                    shared.orphans.lock().extend(orphans);
                    self.store_failed(shared, &e);
                    return false;
                }
            }
        }
        let fetched_at = Instant::now();
        let synced = match shared
            .store
            .sync(self.name(), &touches, &queue, known)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                self.store_failed(shared, &e);
                return false;
            }
        };
        for (t, ms) in marks {
            t.mark_flushed(ms);
        }
        self.store_answered(shared);
        {
            let mut st = shared.sync.lock();
            st.ahead = waiters
                .iter()
                .map(|&(id, _)| id)
                .zip(synced.ahead.iter().copied())
                .collect();
            let moved = st.others_waiting != synced.others_waiting;
            st.others_waiting = synced.others_waiting;
            if moved || !waiters.is_empty() {
                // The places in the shared queue moved: serve who may go.
                self.wake.notify_one();
            }
        }
        let Some(tickets) = synced.tickets else {
            return true;
        };
        let mirrored: Vec<Mirrored> = tickets
            .iter()
            .map(|t| Mirrored {
                pod: t.pod.clone(),
                uid: t.uid.clone(),
                digest: t.digest,
                last_use: self.instant_of(t.last_use_ms).min(fetched_at),
            })
            .collect();
        let change = {
            // Lock order: the app's state, then the sync state.
            let mut inner = self.inner.lock();
            let mut st = shared.sync.lock();
            if st.reloaded.is_some_and(|at| at > fetched_at) {
                // A later reload (running alongside) was applied already.
                return true;
            }
            let change = inner.list.mirror(&mirrored, fetched_at);
            self.publish(&inner.list);
            drop(inner);
            st.known = (change.unplaced == 0).then_some(synced.version);
            st.reloaded = Some(fetched_at);
            st.remote = tickets;
            change
        };
        if change.removed > 0 || change.added > 0 {
            tracing::debug!(app = %self.name(), added = change.added, removed = change.removed, "tickets mirrored from the store");
            // Freed slots go to the queue; taken ones change the pages.
            self.wake.notify_one();
        }
        true
    }

    /// Writes uses and mirrors the store every refresh interval, until the
    /// task is aborted. Nothing to do without a shared store.
    pub(super) async fn sync_loop(&self) {
        let Some(shared) = self.shared.get() else {
            return std::future::pending().await;
        };
        let mut tick = tokio::time::interval(shared.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sync_once(shared).await;
        }
    }

    /// Expires, in the shared store, tickets nobody used for the expiry
    /// time on any replica (the store checks the last use of each); the
    /// next sync then revokes them on every replica.
    ///
    /// Not while the store is down (an expiry sent to a frozen server runs
    /// when it comes back, against last uses nobody could write
    /// meanwhile), nor for [`expiry_hold`] after it answers again: tickets
    /// used on other replicas during the outage would look idle.
    pub(super) async fn expire_shared(&self, shared: &Shared) {
        let now = Instant::now();
        if !shared.up.load(Ordering::Relaxed)
            || shared
                .sync
                .lock()
                .back_at
                .is_some_and(|at| now.saturating_duration_since(at) < expiry_hold(shared.refresh))
        {
            return;
        }
        let cutoff = self.unix_ms(now) - self.expiry.as_millis() as i64;
        let mut idle = self.inner.lock().list.idle_tickets(now, self.expiry);
        idle.extend(
            shared
                .sync
                .lock()
                .remote
                .iter()
                .filter(|t| t.last_use_ms < cutoff)
                .map(|t| (t.pod.clone(), t.uid.clone())),
        );
        if idle.is_empty() {
            return;
        }
        idle.sort();
        idle.dedup();
        match shared.store.expire(self.name(), &idle, cutoff).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(app = %self.name(), expired = n, "tickets expired");
                self.sync_once(shared).await;
            }
            Err(e) => self.store_failed(shared, &e),
        }
    }

    /// With a shared store, waits for a ticket this replica does not know,
    /// on a pod it knows, to arrive with the next syncs (it may have been
    /// issued a moment ago through another replica): at most two refresh
    /// intervals and a round trip. True if it arrived. Without a shared
    /// store, or for a ticket known already, answers at once (false).
    pub async fn await_ticket(&self, pod: &str, uid: &str) -> bool {
        let Some(shared) = self.shared.get() else {
            return false;
        };
        if self.ticket(pod, uid).is_some() || !self.has_pod(pod) {
            return false;
        }
        let deadline = Instant::now() + 2 * shared.refresh + Duration::from_millis(100);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.ticket(pod, uid).is_some() {
                return true;
            }
        }
        false
    }
}
