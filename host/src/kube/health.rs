//! What wicket waits for while the Kubernetes API cannot be reached: stale
//! watches and pod actions being retried. One line is logged when waiting
//! starts (and one per action that joins it), one when everything went
//! through again; the failing requests themselves are logged by kube's
//! client and the controller at debug level.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The outage tracker; cheap to share.
#[derive(Debug, Default)]
pub struct ApiHealth {
    waits: Mutex<Waits>,
}

#[derive(Debug, Default)]
struct Waits {
    /// Since when something waits (None: nothing does).
    since: Option<Instant>,
    /// Watches that failed and have not delivered an event since, with
    /// their last failure.
    stale: BTreeMap<String, Instant>,
    /// Actions being retried, by description.
    actions: Vec<(u64, String)>,
    next_id: u64,
    /// Actions that waited during this outage.
    waited: usize,
}

impl Waits {
    fn idle(&self) -> bool {
        self.stale.is_empty() && self.actions.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.stale.is_empty() {
            let w: Vec<&str> = self.stale.keys().map(String::as_str).collect();
            parts.push(format!("stale watches of {}", w.join(", ")));
        }
        for (_, a) in &self.actions {
            parts.push(a.clone());
        }
        parts.join("; ")
    }

    /// Called after each change: logs the start or the end of an outage.
    fn changed(&mut self, joined: Option<&str>) {
        match (self.since, self.idle()) {
            (None, false) => {
                self.since = Some(Instant::now());
                tracing::warn!(
                    "the Kubernetes API cannot be reached; waiting for it ({}); apps keep serving what they know, retrying with backoff",
                    self.describe()
                );
            }
            (Some(_), false) => {
                if let Some(what) = joined {
                    tracing::warn!("also waiting for the Kubernetes API: {what}");
                }
            }
            (Some(since), true) => {
                self.since = None;
                tracing::info!(
                    "the Kubernetes API answers again after {:.1} s: watches resumed, {} waiting pod action(s) went through or were given up",
                    since.elapsed().as_secs_f64(),
                    std::mem::take(&mut self.waited)
                );
            }
            (None, true) => {}
        }
    }
}

impl ApiHealth {
    /// A new tracker.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Watch `watch` (e.g. `pods in ns`) failed; it retries on its own.
    pub fn watch_failed(&self, watch: &str) {
        let mut w = self.waits.lock();
        if w.stale.insert(watch.to_owned(), Instant::now()).is_none() {
            w.changed(Some(&format!("the watch of {watch}")));
        }
    }

    /// A failing watch reports an error at each retry; a watch that
    /// reconnected to a quiet namespace reports nothing at all. So a stale
    /// watch without an error for `quiet` (longer than its longest backoff
    /// plus a connection attempt) counts as working again.
    pub fn watches_quiet_for(&self, quiet: Duration) {
        let mut w = self.waits.lock();
        let before = w.stale.len();
        w.stale.retain(|_, last| last.elapsed() < quiet);
        if w.stale.len() != before {
            w.changed(None);
        }
    }

    /// Watch `watch` delivered an event: it works.
    pub fn watch_works(&self, watch: &str) {
        let mut w = self.waits.lock();
        if w.stale.remove(watch).is_some() {
            w.changed(None);
        }
    }

    /// An action (e.g. `a pod creation for app x`) is being retried; it
    /// counts as waiting until the returned guard is dropped.
    pub fn action_waiting(self: &Arc<Self>, what: String) -> ActionWaiting {
        let mut w = self.waits.lock();
        let id = w.next_id;
        w.next_id += 1;
        w.waited += 1;
        w.actions.push((id, what.clone()));
        w.changed(Some(&what));
        ActionWaiting {
            health: Arc::clone(self),
            id,
        }
    }

    /// Is anything waiting for the API?
    pub fn waiting(&self) -> bool {
        !self.waits.lock().idle()
    }
}

/// An action waiting for the API; done when dropped.
#[derive(Debug)]
pub struct ActionWaiting {
    health: Arc<ApiHealth>,
    id: u64,
}

impl Drop for ActionWaiting {
    fn drop(&mut self) {
        let mut w = self.health.waits.lock();
        w.actions.retain(|(id, _)| *id != self.id);
        w.changed(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_outage_starts_with_the_first_wait_and_ends_with_the_last() {
        let h = ApiHealth::new();
        assert!(!h.waiting());
        h.watch_failed("pods in ns");
        h.watch_failed("pods in ns");
        let creation = h.action_waiting("a pod creation for app a".into());
        h.watch_works("pods in ns");
        assert!(h.waiting(), "the creation still waits");
        assert_eq!(h.waits.lock().describe(), "a pod creation for app a");
        drop(creation);
        assert!(!h.waiting());
        assert!(h.waits.lock().since.is_none());
        h.watch_works("deployments in ns");
        assert!(!h.waiting());
    }

    #[tokio::test]
    async fn a_watch_without_errors_for_a_while_counts_as_reconnected() {
        let quiet = Duration::from_secs(1);
        let h = ApiHealth::new();
        h.watch_failed("pods in ns");
        tokio::time::sleep(quiet / 2).await;
        h.watches_quiet_for(quiet);
        assert!(h.waiting(), "it may still be retrying");
        h.watch_failed("pods in ns");
        tokio::time::sleep(quiet / 2).await;
        h.watches_quiet_for(quiet);
        assert!(h.waiting(), "the last error counts, not the first");
        tokio::time::sleep(quiet * 7 / 10).await;
        h.watches_quiet_for(quiet);
        assert!(!h.waiting());
    }
}
