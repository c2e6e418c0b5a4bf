//! The discrete-event simulation of one app under one policy.
//!
//! The live app's steps, driven by an event queue in simulated time instead
//! of tokio: a user arrives and asks for a ticket (`assign`; issued or
//! queued), the queue is served (one `assign` per slot), the policy scales
//! (`scale`, applied by [`Serverlist::apply_scale`]), a created pod becomes
//! ready after its start-up time, and a ticket expires once its user left
//! and the ticket expiry passed (the same sweep as the host's).
//!
//! Rounds (serve the queue, then scale) run after every batch of events at
//! one instant that can change a decision (an arrival, a pod created or
//! ready) and on every tick (`tick`, 1 s by default), which also sweeps
//! expired tickets — as the host's loop does on its 250 ms timer.
//!
//! Everything that decides is the host's own code: [`Serverlist`] holds
//! pods, tickets and the queue, [`PolicyRunner`] runs the policy in wasmtime
//! with the host's limits, invariant checks and fallback.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::dist::Sampler;
use super::summary::{Outcome, Point, Timeline};
use super::{Scenario, SimError};
use wicket_policy_runtime::PolicyRunner;
use wicket_state::{
    AppSettings, Backend, Clock, Grant, Phase, PodId, PodInfo, Serverlist, Snapshot, WaiterId,
};

/// How often a decision is retried on a state that changed under it before
/// the user joins the queue (the live app's `ISSUE_ATTEMPTS`). In the
/// simulation nothing changes while the policy decides, so a retry means a
/// decision the invariant checks let through but the serverlist refused.
const ISSUE_ATTEMPTS: u32 = 3;

/// Events between two calls of the progress callback.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Events, in simulated milliseconds. Ties are broken by the order they
/// were scheduled in, so a run is a pure function of its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The timer: sweep expired tickets, then a round.
    Tick,
    /// User `n` (index into the arrivals) asks for a ticket.
    Arrival(u32),
    /// The pod provider answered a creation: the placeholder becomes pod `n`.
    Created { placeholder: PodId, pod: u64 },
    /// Pod `n` finished starting.
    Ready(u64),
}

/// Polls a policy call's future once. Outside a tokio runtime the runner
/// calls the policy inline, so the answer is there at the first poll; an
/// executor crate would only hide the one mistake possible here (running
/// inside a runtime, where the call would go to the policy thread).
fn answer<T>(fut: impl Future<Output = T>) -> Result<T, SimError> {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(SimError::InsideRuntime),
    }
}

/// A pod's made-up name and address (the serverlist needs both to issue).
fn pod_info(n: u64, ready: bool, autoscaled: bool) -> PodInfo {
    let name = if autoscaled {
        format!("pod-{n:06}")
    } else {
        format!("replica-{n:03}")
    };
    let b = n.to_be_bytes();
    PodInfo {
        name,
        backend: Some(Backend::new(
            SocketAddr::from(([10, b[5], b[6], b[7]], 8080)),
            "/",
        )),
        ready,
        autoscaled,
    }
}

/// Counts of the moment, for cost and the plots.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    starting: u32,
    ready: u32,
    draining: u32,
    tickets: u32,
    waiting: u32,
}

impl Counts {
    fn pods(&self) -> u32 {
        self.starting + self.ready + self.draining
    }
}

/// One run: the app's state, the policy, the clock and what was seen.
pub(super) struct Simulation<'a> {
    scenario: &'a Scenario,
    runner: &'a PolicyRunner,
    list: Serverlist,
    base: Instant,
    now: u64,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    /// Reused for every decision (as the live app reuses its buffers).
    snap: Snapshot,
    /// Who each queued waiter is.
    waiters: HashMap<WaiterId, u32>,
    /// When each user got a ticket (ms), by arrival index.
    granted: Vec<Option<u64>>,
    startup: Sampler,
    startup_rng: ChaCha8Rng,
    next_pod: u64,
    counts: Counts,
    /// Pod-milliseconds so far, and up to when.
    pod_ms: u128,
    accounted_to: u64,
    peak_pods: u32,
    pods_created: u64,
    pods_deleted: u64,
    issue_errors: u64,
    events_done: u64,
    timeline: Timeline,
}

impl<'a> Simulation<'a> {
    /// A run of `scenario` with the app's settings `app` (the scenario's,
    /// with the policy's own config) under `runner`.
    pub(super) fn new(scenario: &'a Scenario, app: AppSettings, runner: &'a PolicyRunner) -> Self {
        let base = Instant::now();
        let s = &scenario.settings;
        let mut list = Serverlist::new(app, base);
        for n in 0..u64::from(s.replicas) {
            list.upsert_pod(pod_info(n, true, false), base);
        }
        let mut sim = Self {
            scenario,
            runner,
            list,
            base,
            now: 0,
            seq: 0,
            events: BinaryHeap::new(),
            snap: Snapshot::default(),
            waiters: HashMap::new(),
            granted: vec![None; scenario.arrivals.len()],
            startup: s.startup.sampler(),
            startup_rng: ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x57a7_0b00),
            next_pod: u64::from(s.replicas),
            counts: Counts::default(),
            pod_ms: 0,
            accounted_to: 0,
            peak_pods: 0,
            pods_created: 0,
            pods_deleted: 0,
            issue_errors: 0,
            events_done: 0,
            timeline: Timeline::new(scenario.end_ms, s.tick.as_millis() as u64),
        };
        for (i, a) in scenario.arrivals.iter().enumerate() {
            if a.at_ms <= scenario.end_ms {
                sim.schedule(a.at_ms, Event::Arrival(i as u32));
            }
        }
        sim.schedule(0, Event::Tick);
        sim
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    /// The state as a policy sees it, in the reused buffer (give it back to
    /// `self.snap`). The one place the simulator builds a snapshot: the
    /// simulated wall clock, where a contract needs it, is
    /// `scenario.start_unix_ms + now`.
    fn take_snapshot(&mut self) -> Snapshot {
        // The app's zone, as the host gives it: its offset at that moment.
        let clock = Clock::at(self.unix_seconds(), &self.scenario.settings.timezone);
        self.list
            .snapshot_into(self.instant(), clock, &mut self.snap);
        std::mem::take(&mut self.snap)
    }

    /// The simulated wall clock, in unix seconds.
    fn unix_seconds(&self) -> u64 {
        let ms = self
            .scenario
            .start_unix_ms
            .saturating_add_unsigned(self.now);
        u64::try_from(ms / 1000).unwrap_or(0)
    }

    /// The simulated `now` as the serverlist's clock.
    fn instant(&self) -> Instant {
        self.base + Duration::from_millis(self.now)
    }

    /// Runs to the end; `progress` hears (simulated ms, events) now and then.
    pub(super) fn run(mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<Outcome, SimError> {
        let end = self.scenario.end_ms;
        let tick = self.scenario.settings.tick.as_millis().max(1) as u64;
        self.observe();
        let mut reported = 0;
        while let Some(&Reverse((at, _, _))) = self.events.peek() {
            if at > end {
                break;
            }
            self.account(at);
            self.now = at;
            let (mut round, mut sweep) = (false, false);
            while let Some(&Reverse((t, _, event))) = self.events.peek() {
                if t != at {
                    break;
                }
                self.events.pop();
                self.events_done += 1;
                match event {
                    Event::Tick => {
                        sweep = true;
                        self.schedule(at + tick, Event::Tick);
                    }
                    Event::Arrival(user) => self.arrive(user)?,
                    Event::Created { placeholder, pod } => self.created(placeholder, pod),
                    Event::Ready(pod) => self.ready(pod),
                }
                round = true;
            }
            if round {
                self.round(sweep)?;
            }
            self.observe();
            if self.events_done >= reported + PROGRESS_EVERY {
                reported = self.events_done;
                progress(self.now, self.events_done);
            }
        }
        self.account(end);
        self.now = end;
        progress(end, self.events_done);
        Ok(self.finish())
    }

    /// A user asks for a ticket (the live app's `request_ticket`): queued
    /// behind anyone waiting, else the policy assigns a pod.
    fn arrive(&mut self, user: u32) -> Result<(), SimError> {
        // Counted where the live app counts it: when a user first asks.
        let unix = self.unix_seconds();
        self.list.record_arrival(unix);
        if self.list.next_present().is_some() {
            self.enqueue(user);
            return Ok(());
        }
        for _ in 0..ISSUE_ATTEMPTS {
            let snap = self.take_snapshot();
            let (id, snap) = answer(self.runner.assign(snap))?;
            self.snap = snap;
            let Some(id) = id else { break };
            match self.list.issue(id, self.instant()) {
                Ok(grant) => {
                    self.grant(user, &grant);
                    return Ok(());
                }
                Err(_) => self.issue_errors += 1,
            }
        }
        self.enqueue(user);
        Ok(())
    }

    fn enqueue(&mut self, user: u32) {
        let waiter = self.list.enqueue(self.instant());
        self.waiters.insert(waiter, user);
    }

    /// The user has a ticket: they use it for their session, after which
    /// it expires like any unused ticket (the host's ticket expiry).
    fn grant(&mut self, user: u32, grant: &Grant) {
        let i = user as usize;
        self.granted[i] = Some(self.now);
        let leaves = self.now + self.scenario.arrivals[i].session_ms;
        if let Some(ticket) = self.list.ticket(&grant.pod, &grant.uid) {
            // The last use lies in the future: the ticket cannot expire
            // before the user leaves.
            ticket.touch_at(self.base + Duration::from_millis(leaves));
        }
    }

    /// One round of the live app's loop: expire tickets (on ticks), serve
    /// the queue, scale.
    fn round(&mut self, sweep: bool) -> Result<(), SimError> {
        if sweep {
            self.list
                .sweep(self.instant(), self.scenario.settings.expiry);
        }
        self.serve_queue()?;
        self.scale()
    }

    /// Gives free slots to waiting users, first come first served, one
    /// `assign` per slot (the live app's `serve_queue`).
    fn serve_queue(&mut self) -> Result<(), SimError> {
        let mut stale = 0;
        while let Some(waiter) = self.list.next_present() {
            // The user still counts as waiting while the policy decides.
            let snap = self.take_snapshot();
            let (id, snap) = answer(self.runner.assign(snap))?;
            self.snap = snap;
            let Some(id) = id else { break };
            match self.list.issue(id, self.instant()) {
                Ok(grant) => {
                    self.list.cancel(waiter);
                    if let Some(user) = self.waiters.remove(&waiter) {
                        self.grant(user, &grant);
                    }
                }
                Err(_) => {
                    self.issue_errors += 1;
                    stale += 1;
                    if stale >= ISSUE_ATTEMPTS {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Asks the policy to scale and starts what it approved.
    fn scale(&mut self) -> Result<(), SimError> {
        let snap = self.take_snapshot();
        let (decision, snap) = answer(self.runner.scale(snap))?;
        self.snap = snap;
        if decision.is_noop() {
            return Ok(());
        }
        let actions = self.list.apply_scale(&decision, self.instant());
        for placeholder in actions.creates {
            let pod = self.next_pod;
            self.next_pod += 1;
            self.pods_created += 1;
            let at = self.now + self.scenario.settings.create_latency.as_millis() as u64;
            self.schedule(at, Event::Created { placeholder, pod });
        }
        // Deleted pods already left the list; the provider's part is free.
        self.pods_deleted += actions.deletes.len() as u64;
        Ok(())
    }

    fn created(&mut self, placeholder: PodId, pod: u64) {
        self.list.end_create(
            placeholder,
            Some(pod_info(pod, false, true)),
            self.instant(),
        );
        let startup = self.startup.sample_ms(&mut self.startup_rng);
        self.schedule(self.now + startup, Event::Ready(pod));
    }

    fn ready(&mut self, pod: u64) {
        let info = pod_info(pod, true, true);
        // A starting pod cannot be deleted, but a pod that is gone must
        // not come back.
        if self.list.has_pod(&info.name) {
            self.list.upsert_pod(info, self.instant());
        }
    }

    /// Adds the pods' time up to `to` to the cost.
    fn account(&mut self, to: u64) {
        let span = to.saturating_sub(self.accounted_to);
        self.pod_ms += u128::from(self.counts.pods()) * u128::from(span);
        self.accounted_to = self.accounted_to.max(to);
    }

    /// Reads the counts after a batch of events.
    fn observe(&mut self) {
        let snap = self.take_snapshot();
        let mut c = Counts {
            waiting: snap.waiting,
            ..Counts::default()
        };
        for p in &snap.pods {
            match p.phase {
                Phase::Starting => c.starting += 1,
                Phase::Ready => c.ready += 1,
                Phase::Draining => c.draining += 1,
            }
            c.tickets += p.tickets;
        }
        self.snap = snap;
        self.counts = c;
        self.peak_pods = self.peak_pods.max(c.pods());
        self.timeline.observe(
            self.now,
            Point {
                starting: c.starting,
                ready: c.ready,
                draining: c.draining,
                tickets: c.tickets,
                waiting: c.waiting,
            },
        );
    }

    fn finish(self) -> Outcome {
        let end = self.scenario.end_ms;
        let mut waits_ms = Vec::with_capacity(self.granted.len());
        let mut unserved = 0u64;
        for (a, g) in self.scenario.arrivals.iter().zip(&self.granted) {
            if a.at_ms > end {
                continue;
            }
            match g {
                Some(t) => waits_ms.push(t - a.at_ms),
                None => {
                    unserved += 1;
                    waits_ms.push(end - a.at_ms);
                }
            }
        }
        Outcome::new(
            waits_ms,
            unserved,
            self.pod_ms,
            self.peak_pods,
            self.pods_created,
            self.pods_deleted,
            self.issue_errors,
            self.runner.faults(),
            self.timeline,
        )
    }
}

/// The simulator decides with the host's own types, not copies: this only
/// compiles while a simulation holds a [`Serverlist`] and a
/// [`PolicyRunner`] (the very types the live app uses).
const _: for<'a> fn(&'a Simulation<'a>) -> (&'a Serverlist, &'a PolicyRunner) =
    |sim| (&sim.list, sim.runner);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::SimSettings;
    use wicket_policy_runtime::{Limits, PolicyEngine, PolicyMetrics, PolicySource, load_default};

    /// What a policy sees at `start` (unix ms) in `zone`.
    fn clock_seen(start_unix_ms: i64, zone: &str) -> Clock {
        let engine = Arc::new(PolicyEngine::new(Limits::default()).expect("engine"));
        let default = load_default(&engine).expect("default");
        let runner = PolicyRunner::new(
            "clock",
            Arc::clone(&engine),
            PolicySource::new("default", Arc::clone(&default)),
            default,
            PolicyMetrics::new().expect("metrics"),
        );
        let scenario = Scenario {
            arrivals: Vec::new(),
            start_unix_ms,
            end_ms: 60_000,
            settings: SimSettings {
                timezone: wicket_state::zone(zone).expect("zone"),
                ..SimSettings::default()
            },
            seed: 1,
        };
        let mut sim = Simulation::new(&scenario, AppSettings::default(), &runner);
        let snap = sim.take_snapshot();
        snap.clock
    }

    #[test]
    fn policies_see_the_apps_local_offset_as_in_the_host() {
        // Monday 2026-01-05 08:00 UTC: 09:00 in Paris (winter time).
        let winter = clock_seen(1_767_600_000_000, "Europe/Paris");
        assert_eq!(winter.unix_seconds, 1_767_600_000);
        assert_eq!(winter.utc_offset_seconds, 3600);
        // Monday 2026-07-06 07:00 UTC: 09:00 in Paris (summer time).
        assert_eq!(
            clock_seen(1_783_321_200_000, "Europe/Paris").utc_offset_seconds,
            7200
        );
        assert_eq!(clock_seen(1_767_600_000_000, "UTC").utc_offset_seconds, 0);
        assert_eq!(
            clock_seen(1_767_600_000_000, "America/New_York").utc_offset_seconds,
            -5 * 3600
        );
    }
}
