//! Graceful shutdown of the edge (SIGTERM): stop accepting, let what is
//! in flight finish, close what is idle, tell waiting users to reconnect,
//! hold WebSocket tunnels up to a deadline, then report.
//!
//! The sequence (see docs/edge.md, "Shutting down"):
//! 1. [`Stage::Draining`]: every listener closes (after taking the
//!    connections the kernel had already accepted on it). A keep-alive
//!    connection waiting between requests is closed at once; one in the
//!    middle of a request gets `Connection: close` on its response and is
//!    closed after it. Waiting users (ticket WebSocket, no-JavaScript poll)
//!    are told to reconnect; their place in line is left as a resumable
//!    user's, kept for the app's resume grace period. Tunnels to pods stay.
//! 2. When every connection has ended, or `proxy.shutdown_grace_ms` has
//!    passed: [`Stage::Closing`]: tunnels still open are closed on both
//!    sides; whatever else is left is cut when the process exits.
//!
//! Hot-path cost: none that a request pays beyond an atomic load. A
//! connection that waits between requests is woken through its waker,
//! registered once per connection with its edge thread's [`Sleepers`]
//! (a `Notify` would take a lock on every wait, i.e. every request).

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::fairness::Fairness;

/// Where the edge is in its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    /// Accepting and serving.
    Serving = 0,
    /// Listeners closed; connections finish what they are doing.
    Draining = 1,
    /// The grace period is over: tunnels close too.
    Closing = 2,
}

impl Stage {
    fn of(v: u8) -> Self {
        match v {
            0 => Stage::Serving,
            1 => Stage::Draining,
            _ => Stage::Closing,
        }
    }
}

/// The shutdown state of one proxy, shared by its edge threads.
#[derive(Debug)]
pub struct Drain {
    stage: AtomicU8,
    /// For the few that wait on a stage: accept loops, tunnels, ticket
    /// sockets, polls.
    watch: watch::Sender<Stage>,
    /// One per accept loop (edge thread): its connections that wait
    /// between requests.
    sleepers: Mutex<Vec<Weak<Sleepers>>>,
    /// WebSocket tunnels to pods open now.
    tunnels: AtomicUsize,
    /// Idle keep-alive connections closed by the drain.
    idle_closed: AtomicUsize,
    /// Waiting users told to reconnect (ticket sockets and polls).
    told: AtomicUsize,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            stage: AtomicU8::new(Stage::Serving as u8),
            watch: watch::Sender::new(Stage::Serving),
            sleepers: Mutex::new(Vec::new()),
            tunnels: AtomicUsize::new(0),
            idle_closed: AtomicUsize::new(0),
            told: AtomicUsize::new(0),
        }
    }
}

/// What a shutdown did, for its closing log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// User connections open when it began.
    pub open_at_start: u32,
    /// Of them, WebSocket tunnels to pods.
    pub tunnels_at_start: usize,
    /// Idle keep-alive connections closed at once.
    pub idle_closed: usize,
    /// Waiting users told to reconnect.
    pub told_to_reconnect: usize,
    /// Tunnels still open at the deadline (then closed).
    pub tunnels_cut: usize,
    /// Other connections still open at the deadline (cut at exit).
    pub connections_cut: u32,
    /// How long it took.
    pub took: Duration,
}

/// A connection's view of the stage, for waiting on it.
#[derive(Debug, Clone)]
pub struct Watch(watch::Receiver<Stage>);

impl Watch {
    /// Waits until the stage is at least `stage`.
    pub async fn reached(&mut self, stage: Stage) {
        if self.0.wait_for(|s| *s >= stage).await.is_err() {
            // The proxy is gone (so is everything it served): never.
            std::future::pending::<()>().await;
        }
    }
}

/// The connections of one edge thread that may wait between requests:
/// their tasks' wakers, each registered once per connection.
#[derive(Debug, Default)]
pub struct Sleepers {
    next: AtomicU64,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Sleepers {
    fn wake_all(&self) {
        for w in self.wakers.lock().values() {
            w.wake_by_ref();
        }
    }
}

/// A connection's place among its thread's [`Sleepers`] (left on drop).
#[derive(Debug)]
pub struct Sleeper {
    sleepers: Arc<Sleepers>,
    id: u64,
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.sleepers.wakers.lock().remove(&self.id);
    }
}

/// A tunnel counted as open while this lives.
#[derive(Debug)]
pub struct TunnelCount<'a>(&'a Drain);

impl Drop for TunnelCount<'_> {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drain {
    /// The current stage (one atomic load: fine on every request).
    #[inline]
    pub fn stage(&self) -> Stage {
        Stage::of(self.stage.load(Ordering::SeqCst))
    }

    /// Is the edge shutting down?
    #[inline]
    pub fn draining(&self) -> bool {
        self.stage() != Stage::Serving
    }

    /// Waits on the stage.
    pub fn watch(&self) -> Watch {
        Watch(self.watch.subscribe())
    }

    /// The sleepers of a new accept loop, for the connections it accepts.
    pub fn sleepers(&self) -> Arc<Sleepers> {
        let sleepers = Arc::new(Sleepers::default());
        let mut all = self.sleepers.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&sleepers));
        sleepers
    }

    /// Waits until the edge shuts down, for a connection between requests.
    /// The task's waker is registered in `place` (among `sleepers`) the
    /// first time only: the task of a connection does not change, and a
    /// wait then costs an atomic load.
    pub async fn until_draining(&self, sleepers: &Arc<Sleepers>, place: &mut Option<Sleeper>) {
        poll_fn(|cx| {
            if self.draining() {
                return Poll::Ready(());
            }
            if place.is_none() {
                let id = sleepers.next.fetch_add(1, Ordering::Relaxed);
                sleepers.wakers.lock().insert(id, cx.waker().clone());
                *place = Some(Sleeper {
                    sleepers: Arc::clone(sleepers),
                    id,
                });
                // A shutdown between the first look and the registration
                // set the stage before it took the lock: seen now.
                if self.draining() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await;
    }

    /// Counts a tunnel as open until the result is dropped.
    pub fn tunnel(&self) -> TunnelCount<'_> {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        TunnelCount(self)
    }

    /// An idle keep-alive connection was closed by the drain.
    pub fn closed_idle(&self) {
        self.idle_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// A waiting user was told to reconnect.
    pub fn told(&self) {
        self.told.fetch_add(1, Ordering::Relaxed);
    }

    fn enter(&self, stage: Stage) {
        // The store comes before the wake-ups (see `until_draining`).
        self.stage.fetch_max(stage as u8, Ordering::SeqCst);
        self.watch.send_if_modified(|s| {
            let later = stage > *s;
            if later {
                *s = stage;
            }
            later
        });
        let all: Vec<_> = self
            .sleepers
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for sleepers in all {
            sleepers.wake_all();
        }
    }

    /// Runs the shutdown: drains, waits until every user connection of
    /// `fairness` has ended or `grace` has passed, then closes the tunnels
    /// (waiting briefly for them to go). Logs a line at the start and one
    /// at the end.
    pub async fn run(&self, fairness: &Fairness, grace: Duration) -> Summary {
        /// How often the open connections are counted while draining: a
        /// count per connection end would cost every connection, for a
        /// wait that happens once.
        const POLL: Duration = Duration::from_millis(50);
        /// How long closing tunnels get to go after the deadline.
        const CLOSE: Duration = Duration::from_secs(1);
        let start = Instant::now();
        let open_at_start = fairness.open_connections();
        let tunnels_at_start = self.tunnels.load(Ordering::Relaxed);
        tracing::info!(
            connections = open_at_start,
            tunnels = tunnels_at_start,
            grace_ms = grace.as_millis() as u64,
            "shutting down: listeners closed; finishing requests in flight, closing idle \
             connections, telling waiting users to reconnect, holding tunnels up to the grace period"
        );
        self.enter(Stage::Draining);
        let deadline = start + grace;
        while fairness.open_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        let tunnels_cut = self.tunnels.load(Ordering::Relaxed);
        let left = fairness.open_connections();
        if left > 0 {
            self.enter(Stage::Closing);
            let until = Instant::now() + CLOSE;
            while self.tunnels.load(Ordering::Relaxed) > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let summary = Summary {
            open_at_start,
            tunnels_at_start,
            idle_closed: self.idle_closed.load(Ordering::Relaxed),
            told_to_reconnect: self.told.load(Ordering::Relaxed),
            tunnels_cut,
            connections_cut: left.saturating_sub(u32::try_from(tunnels_cut).unwrap_or(u32::MAX)),
            took: start.elapsed(),
        };
        tracing::info!(
            took_ms = summary.took.as_millis() as u64,
            connections_at_start = summary.open_at_start,
            idle_closed = summary.idle_closed,
            told_to_reconnect = summary.told_to_reconnect,
            tunnels_cut = summary.tunnels_cut,
            connections_cut = summary.connections_cut,
            "shutdown: the edge is done"
        );
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stages_only_move_forward_and_wake_waiters() {
        let d = Arc::new(Drain::default());
        let sleepers = d.sleepers();
        let waiting = {
            let (d, sleepers) = (Arc::clone(&d), Arc::clone(&sleepers));
            tokio::spawn(async move {
                let mut place = None;
                d.until_draining(&sleepers, &mut place).await;
            })
        };
        let mut w = d.watch();
        assert_eq!(d.stage(), Stage::Serving);
        // Registered, waiting.
        while sleepers.wakers.lock().is_empty() {
            tokio::task::yield_now().await;
        }
        d.enter(Stage::Draining);
        waiting.await.expect("woken");
        assert!(sleepers.wakers.lock().is_empty(), "its place left with it");
        w.reached(Stage::Draining).await;
        assert!(d.draining());
        d.enter(Stage::Closing);
        d.enter(Stage::Draining);
        assert_eq!(d.stage(), Stage::Closing, "never back");
        w.reached(Stage::Closing).await;
    }
}
