//! The recent arrival trace of a running app: for each finished session,
//! when the user asked for a slot (unix time) and how long they used it, in
//! the format `wicket simulate --trace` reads (served by the admin endpoint
//! at `/apps/<app>/trace.csv`), so an author can replay production traffic.
//!
//! Memory is bounded: at most [`SESSIONS_KEPT`] finished sessions (the
//! oldest go first, 16 bytes each: 1.6 MB per app when full), plus one
//! entry per ticket held now.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::state::Serverlist;

/// Finished sessions kept per app.
pub const SESSIONS_KEPT: usize = 100_000;

/// Recent sessions of one app. Pure: callers pass the times.
#[derive(Debug)]
pub struct SessionLog {
    /// Tickets held now, by (pod, uid): when their user asked (unix ms).
    open: HashMap<(String, String), i64>,
    /// Finished sessions: (arrival unix ms, session ms), oldest first.
    done: VecDeque<(i64, u64)>,
    cap: usize,
}

impl Default for SessionLog {
    fn default() -> Self {
        Self::with_capacity(SESSIONS_KEPT)
    }
}

impl SessionLog {
    /// A log keeping at most `cap` finished sessions.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            open: HashMap::new(),
            done: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// A ticket on `pod` was handed to a user who asked at `asked_unix_ms`.
    pub fn granted(&mut self, pod: &str, uid: &str, asked_unix_ms: i64) {
        self.open
            .insert((pod.to_owned(), uid.to_owned()), asked_unix_ms);
    }

    /// The grant never reached its user (the ticket is freed).
    pub fn forget(&mut self, pod: &str, uid: &str) {
        self.open.remove(&(pod.to_owned(), uid.to_owned()));
    }

    /// Call just before `list.sweep(now, expiry)`: records the sessions
    /// whose tickets that sweep frees, and forgets tickets freed otherwise.
    /// A session lasts from the grant until the last use, which is `expiry`
    /// before the sweep that frees the ticket (give or take one tick).
    pub fn before_sweep(&mut self, list: &Serverlist, now: Instant, expiry: Duration) {
        if self.open.is_empty() {
            return;
        }
        let done = &mut self.done;
        let cap = self.cap;
        self.open.retain(|(pod, uid), asked| {
            let Some(ticket) = list.ticket(pod, uid) else {
                return false;
            };
            if !ticket.is_expired(now, expiry) {
                return true;
            }
            let held = now.saturating_duration_since(ticket.issued_at);
            if done.len() == cap {
                done.pop_front();
            }
            done.push_back((*asked, held.saturating_sub(expiry).as_millis() as u64));
            false
        });
    }

    /// Finished sessions kept.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    /// True when no session finished yet.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// The finished sessions as a trace CSV, in arrival order.
    pub fn csv(&self) -> String {
        let mut rows: Vec<(i64, u64)> = self.done.iter().copied().collect();
        rows.sort_unstable();
        crate::simulate::trace::write_unix(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::trace;
    use crate::state::{AppSettings, Backend, PodInfo};

    #[test]
    fn a_freed_ticket_becomes_a_session_and_the_oldest_go_first() {
        let t0 = Instant::now();
        let settings = AppSettings {
            tickets_max: 5,
            ..AppSettings::default()
        };
        let mut list = Serverlist::new(settings, t0);
        list.upsert_pod(
            PodInfo {
                name: "a".into(),
                backend: Some(Backend::new(([127, 0, 0, 1], 1).into(), "/")),
                ready: true,
                autoscaled: false,
            },
            t0,
        );
        let id = list.snapshot(t0, Default::default()).pods[0].id;
        let expiry = Duration::from_secs(3);
        let mut log = SessionLog::with_capacity(2);
        let unix0 = 1_796_374_800_000;
        let s = Duration::from_secs;
        for k in 0..3u64 {
            let at = t0 + s(10 * k);
            let g = list.issue(id, at).expect("slot");
            // The user asked 2 s before the grant and stays 60 s.
            log.granted(&g.pod, &g.uid, unix0 + (10 * k as i64 - 2) * 1000);
            list.ticket(&g.pod, &g.uid).expect("t").touch_at(at + s(60));
        }
        let released = list.issue(id, t0).expect("slot");
        log.granted(&released.pod, &released.uid, unix0);
        list.release(&released.pod, &released.uid, t0);
        for now in [t0 + s(62), t0 + s(64), t0 + s(80), t0 + s(90)] {
            log.before_sweep(&list, now, expiry);
            list.sweep(now, expiry);
        }
        assert_eq!(log.len(), 2, "capacity 2: the first session left");
        let t = trace::parse(&log.csv()).expect("a valid trace");
        assert_eq!(t.start_unix_ms, Some(unix0 + 8000));
        // Granted at 10 s, freed by the sweep at 80 s: used until 77 s.
        assert_eq!(t.arrivals[0].session_ms, 67_000);
        assert_eq!(t.arrivals[1].at_ms, 10_000);
        assert!(
            log.open.is_empty(),
            "released and freed tickets are forgotten"
        );
    }
}
