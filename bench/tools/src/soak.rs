//! `wicket-bench soak`: many users for a long time. Each user gets a
//! ticket, keeps a WebSocket to its pod through the proxy (the demo app's
//! `/counter`: every `inc` is answered with the session's next count, so a
//! reply also proves the user stayed on its pod) and, every interval, sends
//! one `inc` and one HTTP GET on its own keep-alive connection. wicket's
//! RSS and open file descriptors are sampled throughout, and after the
//! users leave until the descriptors are back where they started.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::tally::Errors;
use crate::users::{self, Http, Ws};
use crate::{Ticket, summarise};

/// Settings of a soak run.
#[derive(Debug, Clone)]
pub struct Soak {
    /// The ticket WebSocket, ws://IP:PORT/APP/ws.
    pub url: String,
    /// Users held at once.
    pub users: usize,
    /// From the first user's start to everyone leaving.
    pub duration: Duration,
    /// Users start evenly over this long.
    pub ramp: Duration,
    /// Each user's pause between rounds (one `inc` and one GET).
    pub interval: Duration,
    /// wicket's process id.
    pub pid: u32,
    /// How often RSS and descriptors are sampled.
    pub sample: Duration,
    /// After the users leave, how long to wait for the descriptors to
    /// come back to the start.
    pub settle: Duration,
    /// Third octet of the first user's source address (see
    /// [`users::source`]); None: every user from 127.0.0.1.
    pub block: Option<u8>,
    /// Where the raw figures and the report fragment go.
    pub out: PathBuf,
}

/// What all users share.
struct Shared {
    cfg: Soak,
    to: SocketAddr,
    app: String,
    errors: Errors,
    rounds: AtomicU64,
    active: AtomicUsize,
    /// Round-trip times of the WebSocket `inc` and the GET, in µs.
    ws_us: std::sync::Mutex<Vec<Duration>>,
    http_us: std::sync::Mutex<Vec<Duration>>,
}

/// One sample of wicket's usage.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t: Duration,
    rss_kb: u64,
    fds: usize,
    active: usize,
    rounds: u64,
    errors: u64,
}

/// A user's connections to its pod.
struct Session {
    ticket: Ticket,
    ws: Ws,
    http: Http,
    /// The counter value the next `inc` must return (None: not known yet).
    next: Option<u64>,
}

impl Shared {
    fn from(&self, i: usize) -> Option<IpAddr> {
        self.cfg.block.map(|b| users::source(b, i))
    }

    async fn open(&self, i: usize) -> Result<Session, (&'static str, anyhow::Error)> {
        let got = users::ticket(&self.cfg.url, self.from(i))
            .await
            .map_err(|e| ("ticket", anyhow::anyhow!("{e}")))?;
        let ticket = got.ticket;
        let prefix = ticket.prefix(&self.app);
        let ws = users::pod_socket(self.to, self.from(i), &format!("{prefix}/counter"), &ticket)
            .await
            .map_err(|e| ("pod websocket open", e))?;
        let http = Http::open(self.to, self.from(i))
            .await
            .map_err(|e| ("http connect", e))?;
        Ok(Session {
            ticket,
            ws,
            http,
            next: None,
        })
    }

    /// One round: an `inc` on the socket and a GET; the first error.
    async fn round(&self, s: &mut Session) -> Result<(), (&'static str, anyhow::Error)> {
        let t = Instant::now();
        let reply = users::ask(&mut s.ws, "inc")
            .await
            .map_err(|e| ("pod websocket", e))?;
        let n: u64 = reply.parse().map_err(|_| {
            (
                "pod websocket reply",
                anyhow::anyhow!("not a count: {reply:?}"),
            )
        })?;
        if let Some(want) = s.next
            && n != want
        {
            // Another pod (or another session) answered: stickiness broke.
            return Err((
                "pod websocket reply",
                anyhow::anyhow!("count {n}, expected {want}"),
            ));
        }
        s.next = Some(n + 1);
        push(&self.ws_us, t.elapsed());
        let t = Instant::now();
        let path = format!("{}/hello", s.ticket.prefix(&self.app));
        let (status, body) = s
            .http
            .get(&path, Some(&s.ticket.cookie()), &[])
            .await
            .map_err(|e| ("http request", e))?;
        if status != 200 || body.as_ref() != b"hello, world\n" {
            return Err((
                "http status",
                anyhow::anyhow!("{status} {:?}", String::from_utf8_lossy(&body)),
            ));
        }
        push(&self.http_us, t.elapsed());
        Ok(())
    }
}

fn push(v: &std::sync::Mutex<Vec<Duration>>, d: Duration) {
    v.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(d);
}

/// Bound on one round or one session opening: a stall past it is an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// One user: starts at `start`, holds a session until `end` (opening a new
/// one after an error), and closes it cleanly.
async fn user(sh: Arc<Shared>, i: usize, start: Instant, end: Instant) {
    tokio::time::sleep_until(start.into()).await;
    sh.active.fetch_add(1, Ordering::Relaxed);
    // Spread the rounds over the interval, not all users at once.
    let phase = sh.cfg.interval.mul_f64((i % 97) as f64 / 97.0);
    let mut session: Option<Session> = None;
    let mut next_round = Instant::now() + phase;
    while Instant::now() < end {
        let s = match session.take() {
            Some(s) => s,
            None => match tokio::time::timeout(STEP_TIMEOUT, sh.open(i)).await {
                Ok(Ok(s)) => s,
                Ok(Err((kind, e))) => {
                    sh.errors.add(kind, &e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => {
                    sh.errors.add("open timeout", &"no session within 10 s");
                    continue;
                }
            },
        };
        let mut s = s;
        tokio::time::sleep_until(next_round.min(end).into()).await;
        if Instant::now() >= end {
            session = Some(s);
            break;
        }
        next_round += sh.cfg.interval;
        match tokio::time::timeout(STEP_TIMEOUT, sh.round(&mut s)).await {
            Ok(Ok(())) => {
                sh.rounds.fetch_add(1, Ordering::Relaxed);
                if s.http.is_open() {
                    session = Some(s);
                } else {
                    sh.errors
                        .add("http closed", &"the proxy closed a keep-alive connection");
                }
            }
            Ok(Err((kind, e))) => sh.errors.add(kind, &e),
            Err(_) => sh.errors.add("round timeout", &"no answer within 10 s"),
        }
    }
    if let Some(s) = session {
        users::close(s.ws).await;
        drop(s.http);
    }
    sh.active.fetch_sub(1, Ordering::Relaxed);
}

/// Runs the soak; writes `samples.tsv`, `after.tsv`, `errors.tsv` and
/// `report.md` into `out`, and returns the one-line summary.
pub async fn run(cfg: Soak) -> anyhow::Result<String> {
    let to = users::target(&cfg.url)?;
    let app = crate::app_of(&cfg.url)?.to_owned();
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {:?}", cfg.out))?;
    let (rss0, fds0) = usage(cfg.pid)?;
    let sh = Arc::new(Shared {
        cfg: cfg.clone(),
        to,
        app,
        errors: Errors::default(),
        rounds: AtomicU64::new(0),
        active: AtomicUsize::new(0),
        ws_us: std::sync::Mutex::default(),
        http_us: std::sync::Mutex::default(),
    });
    let t0 = Instant::now();
    let end = t0 + cfg.duration;
    let mut samples = vec![Sample {
        t: Duration::ZERO,
        rss_kb: rss0,
        fds: fds0,
        active: 0,
        rounds: 0,
        errors: 0,
    }];
    let mut tasks = Vec::with_capacity(cfg.users);
    for i in 0..cfg.users {
        let start = t0 + cfg.ramp.mul_f64(i as f64 / cfg.users as f64);
        tasks.push(tokio::spawn(user(Arc::clone(&sh), i, start, end)));
    }
    // Sample until every user has left.
    let mut tick = tokio::time::interval(cfg.sample);
    tick.tick().await;
    loop {
        tick.tick().await;
        let done = tasks.iter().all(tokio::task::JoinHandle::is_finished);
        let (rss, fds) = usage(cfg.pid)?;
        samples.push(Sample {
            t: t0.elapsed(),
            rss_kb: rss,
            fds,
            active: sh.active.load(Ordering::Relaxed),
            rounds: sh.rounds.load(Ordering::Relaxed),
            errors: sh.errors.total(),
        });
        eprintln!(
            "[soak {:>5.0} s] users {:>5}  rounds {:>8}  errors {:>4}  wicket RSS {:>7} kB  fds {:>5}",
            t0.elapsed().as_secs_f64(),
            sh.active.load(Ordering::Relaxed),
            sh.rounds.load(Ordering::Relaxed),
            sh.errors.total(),
            rss,
            fds
        );
        if done {
            break;
        }
    }
    for t in tasks {
        t.await.context("a user task panicked")?;
    }
    let left = Instant::now();
    let huge_kb = users::huge_pages_kb(cfg.pid);
    // After: until the descriptors are back to the start, or `settle`.
    let mut after = Vec::new();
    loop {
        let (rss, fds) = usage(cfg.pid)?;
        after.push((left.elapsed(), rss, fds));
        if fds <= fds0 || left.elapsed() >= cfg.settle {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let report = Report {
        cfg: &cfg,
        samples: &samples,
        after: &after,
        errors: sh.errors.snapshot(),
        ws: take(&sh.ws_us),
        http: take(&sh.http_us),
        rounds: sh.rounds.load(Ordering::Relaxed),
        huge_kb,
    };
    report.write()
}

fn take(v: &std::sync::Mutex<Vec<Duration>>) -> Vec<Duration> {
    std::mem::take(&mut *v.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

fn usage(pid: u32) -> anyhow::Result<(u64, usize)> {
    match users::proc_usage(pid) {
        (Some(r), Some(f)) => Ok((r, f)),
        _ => anyhow::bail!("cannot read /proc/{pid} (is wicket running?)"),
    }
}

struct Report<'a> {
    cfg: &'a Soak,
    samples: &'a [Sample],
    after: &'a [(Duration, u64, usize)],
    errors: BTreeMap<&'static str, (u64, Vec<String>)>,
    ws: Vec<Duration>,
    http: Vec<Duration>,
    rounds: u64,
    /// wicket's memory on transparent huge pages when the users left.
    huge_kb: Option<u64>,
}

/// The sample closest to `t` (the samples are in time order).
fn at(samples: &[Sample], t: Duration) -> Option<&Sample> {
    samples
        .iter()
        .min_by_key(|s| s.t.as_millis().abs_diff(t.as_millis()))
}

/// RSS growth in percent from `a` to `b`.
fn growth(a: u64, b: u64) -> f64 {
    if a == 0 {
        return 0.0;
    }
    (b as f64 - a as f64) * 100.0 / a as f64
}

impl Report<'_> {
    fn write(mut self) -> anyhow::Result<String> {
        let out = &self.cfg.out;
        let mut tsv = String::from("# t_s\trss_kb\tfds\tusers\trounds\terrors\n");
        for s in self.samples {
            let _ = writeln!(
                tsv,
                "{:.1}\t{}\t{}\t{}\t{}\t{}",
                s.t.as_secs_f64(),
                s.rss_kb,
                s.fds,
                s.active,
                s.rounds,
                s.errors
            );
        }
        std::fs::write(out.join("samples.tsv"), tsv)?;
        let mut tsv = String::from("# s_after_leaving\trss_kb\tfds\n");
        for (t, r, f) in self.after {
            let _ = writeln!(tsv, "{:.1}\t{r}\t{f}", t.as_secs_f64());
        }
        std::fs::write(out.join("after.tsv"), tsv)?;
        let mut tsv = String::from("# kind\tcount\texamples\n");
        for (k, (n, ex)) in &self.errors {
            let _ = writeln!(tsv, "{k}\t{n}\t{}", ex.join(" | "));
        }
        std::fs::write(out.join("errors.tsv"), tsv)?;

        let total_errors: u64 = self.errors.values().map(|(n, _)| n).sum();
        let start = self.samples[0];
        let peak_fds = self.samples.iter().map(|s| s.fds).max().unwrap_or(0);
        let peak_rss = self.samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
        let last_after = self.after.last().copied().unwrap_or_default();
        // Growth window: minute 2 to minute 10 of a 10-minute run; for a
        // shorter run, from a fifth of it to its end (users still on).
        let d = self.cfg.duration;
        let from_t = Duration::from_secs(120).min(d / 5);
        let to_t = d.saturating_sub(Duration::from_secs(1)).max(from_t);
        let (ga, gb) = (at(self.samples, from_t), at(self.samples, to_t));
        let g = match (ga, gb) {
            (Some(a), Some(b)) => growth(a.rss_kb, b.rss_kb),
            _ => 0.0,
        };
        let ws = summarise(&mut self.ws);
        let http = summarise(&mut self.http);
        let mut md = String::new();
        let _ = writeln!(
            md,
            "{} users, each from its own loopback address{}, held for {:.0} s (started evenly over the first {:.0} s); every {:.1} s each sends one `inc` on its WebSocket to its pod (through wicket, the demo app's `/counter`) and one GET on its own keep-alive connection.",
            self.cfg.users,
            match self.cfg.block {
                Some(b) => format!(" (127.0.{b}.1 onwards, 250 per /24)"),
                None => " (all 127.0.0.1)".into(),
            },
            d.as_secs_f64(),
            self.cfg.ramp.as_secs_f64(),
            self.cfg.interval.as_secs_f64()
        );
        let _ = writeln!(md);
        let _ = writeln!(md, "| figure | value | target |");
        let _ = writeln!(md, "| --- | ---: | --- |");
        let _ = writeln!(
            md,
            "| rounds completed (one `inc` + one GET each) | {} | |",
            self.rounds
        );
        let _ = writeln!(
            md,
            "| errors | {total_errors} | 0: {} |",
            verdict(total_errors == 0)
        );
        if let (Some(a), Some(b)) = (ga, gb) {
            let _ = writeln!(
                md,
                "| wicket RSS growth, {:.0} s → {:.0} s | {:+.2} % ({} → {} kB) | < 5 %: {} |",
                a.t.as_secs_f64(),
                b.t.as_secs_f64(),
                g,
                a.rss_kb,
                b.rss_kb,
                verdict(g < 5.0)
            );
        }
        let _ = writeln!(
            md,
            "| wicket RSS at start / peak | {} / {} kB | |",
            start.rss_kb, peak_rss
        );
        if let Some(h) = self.huge_kb {
            let _ = writeln!(
                md,
                "| of the RSS at the end: anonymous memory on transparent huge pages | {h} kB | |"
            );
        }
        let _ = writeln!(
            md,
            "| wicket open fds: start / peak / {:.0} s after the users left | {} / {} / {} | back to the start: {} |",
            last_after.0.as_secs_f64(),
            start.fds,
            peak_fds,
            last_after.2,
            verdict(last_after.2 <= start.fds)
        );
        if let Some(s) = &ws {
            let _ = writeln!(
                md,
                "| WebSocket `inc` round trip p50 / p99 / max | {:.0} / {:.0} / {:.0} µs | |",
                s.p50, s.p99, s.max
            );
        }
        if let Some(s) = &http {
            let _ = writeln!(
                md,
                "| GET round trip p50 / p99 / max | {:.0} / {:.0} / {:.0} µs | |",
                s.p50, s.p99, s.max
            );
        }
        let _ = writeln!(md);
        if total_errors > 0 {
            let _ = writeln!(md, "Errors by kind (first examples):");
            let _ = writeln!(md);
            for (k, (n, ex)) in &self.errors {
                let _ = writeln!(md, "- {k}: {n} — {}", ex.join("; "));
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "wicket's RSS and descriptors, every minute:");
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| minute | RSS kB | open fds | users | rounds | errors |"
        );
        let _ = writeln!(md, "| ---: | ---: | ---: | ---: | ---: | ---: |");
        let minutes = (d.as_secs() / 60).max(1);
        let mut rows: Vec<(String, &Sample)> = Vec::new();
        for m in 0..=minutes {
            if let Some(s) = at(self.samples, Duration::from_secs(m * 60).min(d)) {
                rows.push((m.to_string(), s));
            }
        }
        if !d.as_secs().is_multiple_of(60)
            && let Some(s) = at(self.samples, d)
        {
            rows.push((format!("{:.1} (end)", d.as_secs_f64() / 60.0), s));
        }
        for (m, s) in rows {
            let _ = writeln!(
                md,
                "| {m} | {} | {} | {} | {} | {} |",
                s.rss_kb, s.fds, s.active, s.rounds, s.errors
            );
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "After the users left: {} fds after {:.0} s (start {}), RSS {} kB; the trace is in `after.tsv`.",
            last_after.2,
            last_after.0.as_secs_f64(),
            start.fds,
            last_after.1
        );
        std::fs::write(out.join("report.md"), &md)?;
        Ok(format!(
            "users={} rounds={} errors={total_errors} rss_start_kb={} rss_peak_kb={peak_rss} rss_growth_pct={g:.2} fds_start={} fds_peak={peak_fds} fds_after={} after_s={:.0}",
            self.cfg.users,
            self.rounds,
            start.rss_kb,
            start.fds,
            last_after.2,
            last_after.0.as_secs_f64()
        ))
    }
}

/// "**met**" or "**missed**".
pub fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_in_percent() {
        assert!((growth(100, 104) - 4.0).abs() < 1e-9);
        assert!((growth(100, 95) + 5.0).abs() < 1e-9);
        assert_eq!(growth(0, 5), 0.0);
    }

    #[test]
    fn nearest_sample() {
        let s = |t| Sample {
            t: Duration::from_secs(t),
            rss_kb: t,
            fds: 0,
            active: 0,
            rounds: 0,
            errors: 0,
        };
        let v = [s(0), s(10), s(20), s(30)];
        assert_eq!(at(&v, Duration::from_secs(12)).map(|x| x.rss_kb), Some(10));
        assert_eq!(at(&v, Duration::from_secs(99)).map(|x| x.rss_kb), Some(30));
        assert!(at(&[], Duration::ZERO).is_none());
    }
}
