//! `wicket-bench abuse`: one address floods wicket — connections held
//! open, ticket WebSockets, no-JavaScript polls, far past the per-client
//! limits — while well-behaved users from other addresses join one after
//! another, each getting a ticket, using it once and leaving. Reports what
//! the flood got (and was refused), the well-behaved users' time to a
//! ticket, and whether they were served in the order they joined.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncReadExt;

use crate::order;
use crate::soak::verdict;
use crate::summarise;
use crate::tally::Errors;
use crate::users::{self, Http, NoTicket};

/// Settings of an abuse run.
#[derive(Debug, Clone)]
pub struct Abuse {
    /// The ticket WebSocket, ws://IP:PORT/APP/ws.
    pub url: String,
    /// The flooding client's address.
    pub flood_from: IpAddr,
    /// Connections the flood tries to hold open at once (sending nothing).
    pub flood_conns: usize,
    /// Ticket WebSockets the flood keeps trying to have open at once.
    pub flood_sockets: usize,
    /// No-JavaScript polls the flood keeps in flight at once.
    pub flood_polls: usize,
    /// How long the flood runs before the first well-behaved user.
    pub warmup: Duration,
    /// Well-behaved users, each from its own address.
    pub good: usize,
    /// Between two well-behaved users' arrivals.
    pub spacing: Duration,
    /// How long a well-behaved user keeps its ticket in use.
    pub hold: Duration,
    /// Bound on the whole run after the warm-up.
    pub timeout: Duration,
    /// Third octet of the first well-behaved user's address.
    pub block: u8,
    /// wicket's process id (for its RSS and descriptors).
    pub pid: u32,
    /// Where the raw figures and the report fragment go.
    pub out: PathBuf,
    /// wicket's log with its order events (`RUST_LOG=wicket::order=debug`),
    /// for its own order of joining and granting.
    pub order_log: Option<PathBuf>,
}

/// The flood's tallies.
#[derive(Debug, Default)]
struct Flood {
    conn_attempts: AtomicU64,
    conn_held: AtomicU64,
    conn_429: AtomicU64,
    conn_503: AtomicU64,
    conn_closed_later: AtomicU64,
    conn_other: AtomicU64,
    ws_attempts: AtomicU64,
    ws_429: AtomicU64,
    ws_place_refused: AtomicU64,
    ws_tickets: AtomicU64,
    ws_away: AtomicU64,
    ws_other: AtomicU64,
    poll_attempts: AtomicU64,
    poll_429: AtomicU64,
    poll_waiting: AtomicU64,
    poll_tickets: AtomicU64,
    poll_other: AtomicU64,
    /// Most flood connections held open at once.
    held_now: AtomicU64,
    held_max: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Pause after a refusal: the flood keeps trying, without a busy loop
/// that would only measure this client.
const BACKOFF: Duration = Duration::from_millis(200);
/// A silent connection not answered within this long was accepted.
const REFUSAL_WAIT: Duration = Duration::from_millis(2500);

/// One flood connection slot: open, send nothing, see what wicket says;
/// held ones stay until wicket closes them or the flood stops.
async fn hold_conn(cfg: Arc<Abuse>, f: Arc<Flood>, stop: Arc<AtomicBool>) {
    let Ok(to) = users::target(&cfg.url) else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        inc(&f.conn_attempts);
        let mut s = match users::connect(Some(cfg.flood_from), to).await {
            Ok(s) => s,
            Err(_) => {
                inc(&f.conn_other);
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        let mut buf = [0u8; 256];
        // A refused connection is answered within a second (wicket reads
        // the request it may be sent first, for a second at most).
        match tokio::time::timeout(REFUSAL_WAIT, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let head = String::from_utf8_lossy(&buf[..n]);
                if head.starts_with("HTTP/1.1 429") {
                    inc(&f.conn_429);
                } else if head.starts_with("HTTP/1.1 503") {
                    inc(&f.conn_503);
                } else {
                    inc(&f.conn_other);
                }
                tokio::time::sleep(BACKOFF).await;
            }
            Ok(_) => {
                inc(&f.conn_other);
                tokio::time::sleep(BACKOFF).await;
            }
            Err(_) => {
                inc(&f.conn_held);
                let now = f.held_now.fetch_add(1, Ordering::Relaxed) + 1;
                f.held_max.fetch_max(now, Ordering::Relaxed);
                // Held: until wicket closes it (idle timeout) or the end.
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                        Err(_) => continue,
                        Ok(Ok(n)) if n > 0 => continue,
                        Ok(_) => {
                            inc(&f.conn_closed_later);
                            break;
                        }
                    }
                }
                f.held_now.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// One flood ticket-socket slot: join again and again, never using a
/// ticket. A waiting slot keeps each socket until its ticket comes; a
/// hit-and-run slot joins resumable (`?resume`) and leaves as soon as it
/// has its resume id, so each join leaves a place behind, kept for the
/// app's grace period: the places add up past the open sockets.
async fn flood_ws(cfg: Arc<Abuse>, f: Arc<Flood>, stop: Arc<AtomicBool>, hit_and_run: bool) {
    let url = if hit_and_run {
        format!("{}?resume", cfg.url)
    } else {
        cfg.url.clone()
    };
    while !stop.load(Ordering::Relaxed) {
        inc(&f.ws_attempts);
        let res = tokio::select! {
            r = join(&url, cfg.flood_from, hit_and_run) => r,
            () = until(&stop) => return,
        };
        match res {
            Ok(Joined::Ticket) => inc(&f.ws_tickets),
            Ok(Joined::Away) => inc(&f.ws_away),
            Err(NoTicket::Status(429)) => {
                inc(&f.ws_429);
                tokio::time::sleep(BACKOFF).await;
            }
            Err(NoTicket::Closed(Some(m))) if m.contains("Too many") => {
                inc(&f.ws_place_refused);
                tokio::time::sleep(BACKOFF).await;
            }
            Err(_) => {
                inc(&f.ws_other);
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// How a flood join ended well for the flood.
enum Joined {
    /// It got a ticket.
    Ticket,
    /// It got in line and left its place behind (hit and run).
    Away,
}

/// Opens a ticket socket; with `leave`, drops it at the resume id.
async fn join(url: &str, from: IpAddr, leave: bool) -> Result<Joined, NoTicket> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{Error, Message};
    let to = users::target(url).map_err(NoTicket::Failed)?;
    let stream = users::connect(Some(from), to)
        .await
        .map_err(NoTicket::Failed)?;
    let mut ws = match tokio_tungstenite::client_async(url, stream).await {
        Ok((ws, _)) => ws,
        Err(Error::Http(r)) => return Err(NoTicket::Status(r.status().as_u16())),
        Err(e) => return Err(NoTicket::Failed(anyhow::anyhow!("handshake: {e}"))),
    };
    let mut last = None;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let t = t.as_str();
                if t.starts_with("tkn#") {
                    return Ok(Joined::Ticket);
                }
                if leave && t.starts_with("rid#") {
                    // Dropped without a close: the place stays, away.
                    return Ok(Joined::Away);
                }
                if let Some(m) = t.strip_prefix("msg#") {
                    last = Some(m.to_owned());
                }
            }
            Some(Ok(Message::Close(_))) | None => return Err(NoTicket::Closed(last)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(NoTicket::Failed(anyhow::anyhow!("{e}"))),
        }
    }
}

/// One flood poll slot: `/<app>/.wicket/poll` again and again, each time
/// as a new user (no resume id).
async fn flood_poll(
    cfg: Arc<Abuse>,
    f: Arc<Flood>,
    stop: Arc<AtomicBool>,
    to: SocketAddr,
    app: String,
) {
    let path = format!("/{app}/.wicket/poll");
    let mut conn: Option<Http> = None;
    while !stop.load(Ordering::Relaxed) {
        inc(&f.poll_attempts);
        let mut h = match conn.take() {
            Some(h) if h.is_open() => h,
            _ => match Http::open(to, Some(cfg.flood_from)).await {
                Ok(h) => h,
                Err(_) => {
                    inc(&f.poll_other);
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            },
        };
        let res = tokio::select! {
            r = h.get(&path, None, &[("accept", "text/html")]) => r,
            () = until(&stop) => return,
        };
        match res {
            Ok((429, _)) => {
                inc(&f.poll_429);
                tokio::time::sleep(BACKOFF).await;
            }
            Ok((200, _)) => inc(&f.poll_waiting),
            Ok((303, _)) => inc(&f.poll_tickets),
            _ => {
                inc(&f.poll_other);
                tokio::time::sleep(BACKOFF).await;
            }
        }
        conn = Some(h);
    }
}

/// Resolves once `stop` is set (checked every 50 ms).
async fn until(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A well-behaved user's outcome.
#[derive(Debug, Clone)]
struct Good {
    i: usize,
    /// From the run's start: handshake done (in line), ticket received.
    opened: Option<Duration>,
    at: Option<Duration>,
    /// Connect start → ticket.
    wait: Option<Duration>,
    queued: bool,
    used: bool,
    /// The user's address.
    from: IpAddr,
    /// The ticket's pod and uid (how wicket's order log names it).
    ticket: Option<(String, String)>,
}

async fn good_user(
    cfg: Arc<Abuse>,
    i: usize,
    t0: Instant,
    start: Instant,
    errors: Arc<Errors>,
) -> Good {
    tokio::time::sleep_until(start.into()).await;
    let from = users::source(cfg.block, i);
    let mut g = Good {
        i,
        opened: None,
        at: None,
        wait: None,
        queued: false,
        used: false,
        from,
        ticket: None,
    };
    let got = match users::ticket(&cfg.url, Some(from)).await {
        Ok(got) => got,
        Err(e) => {
            errors.add("no ticket", &format!("user {i}: {e}"));
            return g;
        }
    };
    g.opened = Some(got.opened - t0);
    g.at = Some(got.at - t0);
    g.wait = Some(got.elapsed);
    g.queued = got.queued;
    g.ticket = Some((got.ticket.pod.clone(), got.ticket.uid.clone()));
    let app = crate::app_of(&cfg.url).unwrap_or("app").to_owned();
    let path = format!("{}/hello", got.ticket.prefix(&app));
    let used = async {
        let to = users::target(&cfg.url)?;
        let mut h = Http::open(to, Some(from)).await?;
        let r = h.get(&path, Some(&got.ticket.cookie()), &[]).await?;
        tokio::time::sleep(cfg.hold).await;
        anyhow::Ok(r)
    }
    .await;
    match used {
        Ok((200, _)) => g.used = true,
        Ok((s, _)) => errors.add("ticket use", &format!("user {i}: {path} answered {s}")),
        Err(e) => errors.add("ticket use", &format!("user {i}: {e:#}")),
    }
    g
}

/// Tickets arriving less than this apart are one delivery burst: one pass
/// of the app loop grants several waiters at once, and their sockets are
/// written by separate tasks, in no set order.
const BURST_GAP: Duration = Duration::from_millis(5);

/// Pairs (a, b) where a got in line first but b got its ticket first:
/// any such pair, and those in different delivery bursts (tickets that
/// arrived less than `gap` after the one before are one burst).
fn inversions(users: &[Good], gap: Duration) -> (usize, usize) {
    let served: Vec<(Duration, Duration)> = users
        .iter()
        .filter_map(|u| Some((u.opened?, u.at?)))
        .collect();
    inversions_of(served, gap)
}

/// Pairs served against their order: `served` holds (place in the order,
/// time served) of each; as [`inversions`].
fn inversions_of<K: Ord + Copy>(mut served: Vec<(K, Duration)>, gap: Duration) -> (usize, usize) {
    // Burst of each ticket, by arrival.
    served.sort_by_key(|(_, at)| *at);
    let mut burst = Vec::with_capacity(served.len());
    let mut b = 0usize;
    for (k, (_, at)) in served.iter().enumerate() {
        if k > 0 && *at - served[k - 1].1 >= gap {
            b += 1;
        }
        burst.push(b);
    }
    let mut by_join: Vec<(K, Duration, usize)> = served
        .iter()
        .zip(burst)
        .map(|((o, at), b)| (*o, *at, b))
        .collect();
    by_join.sort_by_key(|(o, _, _)| *o);
    let (mut any, mut across) = (0, 0);
    for (k, (_, a_at, a_burst)) in by_join.iter().enumerate() {
        for (_, b_at, b_burst) in &by_join[k + 1..] {
            if b_at < a_at {
                any += 1;
                if b_burst < a_burst {
                    across += 1;
                }
            }
        }
    }
    (any, across)
}

/// Runs the abuse test; writes `good.tsv` and `report.md` into `out`, and
/// returns the one-line summary.
pub async fn run(cfg: Abuse) -> anyhow::Result<String> {
    let to = users::target(&cfg.url)?;
    let app = crate::app_of(&cfg.url)?.to_owned();
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {:?}", cfg.out))?;
    let cfg = Arc::new(cfg);
    let (rss0, fds0) = users::proc_usage(cfg.pid);
    let edge0 = order::sched_ns(cfg.pid, "wicket-edge");
    let flood = Arc::new(Flood::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..cfg.flood_conns {
        flooders.push(tokio::spawn(hold_conn(
            Arc::clone(&cfg),
            Arc::clone(&flood),
            Arc::clone(&stop),
        )));
    }
    for i in 0..cfg.flood_sockets {
        flooders.push(tokio::spawn(flood_ws(
            Arc::clone(&cfg),
            Arc::clone(&flood),
            Arc::clone(&stop),
            i % 2 == 1,
        )));
    }
    for _ in 0..cfg.flood_polls {
        flooders.push(tokio::spawn(flood_poll(
            Arc::clone(&cfg),
            Arc::clone(&flood),
            Arc::clone(&stop),
            to,
            app.clone(),
        )));
    }
    let t0 = Instant::now();
    let t0_wall = std::time::SystemTime::now();
    let first = t0 + cfg.warmup;
    let errors = Arc::new(Errors::default());
    let mut goods = Vec::new();
    for i in 0..cfg.good {
        let start = first + cfg.spacing * u32::try_from(i).unwrap_or(u32::MAX);
        goods.push(tokio::spawn(good_user(
            Arc::clone(&cfg),
            i,
            t0,
            start,
            Arc::clone(&errors),
        )));
    }
    let deadline = first + cfg.timeout;
    let mut users = Vec::new();
    let mut peak_fds = fds0.unwrap_or(0);
    let mut peak_rss = rss0.unwrap_or(0);
    for (i, g) in goods.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        // Sample wicket while waiting for the users.
        let (r, f) = users::proc_usage(cfg.pid);
        peak_rss = peak_rss.max(r.unwrap_or(0));
        peak_fds = peak_fds.max(f.unwrap_or(0));
        match tokio::time::timeout(left, g).await {
            Ok(Ok(u)) => users.push(u),
            Ok(Err(e)) => errors.add("user task", &e),
            Err(_) => {
                errors.add(
                    "timeout",
                    &format!("user {i} had no ticket within the run's bound"),
                );
                users.push(Good {
                    i,
                    opened: None,
                    at: None,
                    wait: None,
                    queued: true,
                    used: false,
                    from: users::source(cfg.block, i),
                    ticket: None,
                });
            }
        }
    }
    let (r, f) = users::proc_usage(cfg.pid);
    peak_rss = peak_rss.max(r.unwrap_or(0));
    peak_fds = peak_fds.max(f.unwrap_or(0));
    let edge1 = order::sched_ns(cfg.pid, "wicket-edge");
    let flood_time = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in flooders {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    // Give wicket a moment to see the flood's sockets close.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_end, fds_end) = users::proc_usage(cfg.pid);

    let t0_unix_us = t0_wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let mut tsv = format!(
        "# t0 (unix µs): {t0_unix_us}\n# user\topened_ms\tticket_ms\twait_us\tqueued\tused\tfrom\tpod\tuid\n"
    );
    for u in &users {
        let ms =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
        let _ = writeln!(
            tsv,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            u.i,
            ms(u.opened),
            ms(u.at),
            u.wait
                .map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e6)),
            u.queued,
            u.used,
            u.from,
            u.ticket.as_ref().map_or("-", |t| t.0.as_str()),
            u.ticket.as_ref().map_or("-", |t| t.1.as_str()),
        );
    }
    std::fs::write(cfg.out.join("good.tsv"), tsv)?;

    let served = users.iter().filter(|u| u.at.is_some()).count();
    let used = users.iter().filter(|u| u.used).count();
    let mut waits: Vec<Duration> = users.iter().filter_map(|u| u.wait).collect();
    let s_all = summarise(&mut waits);
    let mut at_once: Vec<Duration> = users
        .iter()
        .filter(|u| !u.queued)
        .filter_map(|u| u.wait)
        .collect();
    let s_once = summarise(&mut at_once);
    let queued = users.iter().filter(|u| u.queued && u.at.is_some()).count();
    let (inv0, inv2) = inversions(&users, BURST_GAP);
    let seen = match &cfg.order_log {
        Some(path) => Some(wicket_order(&order::OrderLog::read(path)?, &users)),
        None => None,
    };
    let errs = errors.snapshot();
    let f = &flood;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "The flood, from {}: {} connections held open (sending nothing; one answered within {:.1} s counts as refused), {} ticket WebSockets and {} no-JavaScript polls kept in flight (each joining again at once, or {} ms after a refusal), from {:.0} s before the first well-behaved user until the last one was served ({:.0} s in all). {} well-behaved users from 127.0.{}.1 onwards, one every {} ms, each using its ticket once (a GET through wicket) and keeping it {} ms.",
        cfg.flood_from,
        cfg.flood_conns,
        REFUSAL_WAIT.as_secs_f64(),
        cfg.flood_sockets,
        cfg.flood_polls,
        BACKOFF.as_millis(),
        cfg.warmup.as_secs_f64(),
        flood_time.as_secs_f64(),
        cfg.good,
        cfg.block,
        cfg.spacing.as_millis(),
        cfg.hold.as_millis()
    );
    let _ = writeln!(md);
    if cfg.flood_conns + cfg.flood_sockets + cfg.flood_polls > 0 {
        let _ = writeln!(md, "| the flood | attempts | refused | got through |");
        let _ = writeln!(md, "| --- | ---: | --- | --- |");
        let _ = writeln!(
            md,
            "| connections | {} | {} × 429, {} × 503, {} other | {} held (at most {} at once), {} of them closed by wicket later |",
            get(&f.conn_attempts),
            get(&f.conn_429),
            get(&f.conn_503),
            get(&f.conn_other),
            get(&f.conn_held),
            get(&f.held_max),
            get(&f.conn_closed_later)
        );
        let _ = writeln!(
            md,
            "| ticket WebSockets (half waiting for a ticket, half hit-and-run resumable joins) | {} | {} × 429 at the handshake, {} × \"too many waiting\" and closed, {} other | {} tickets, {} places left behind (away) |",
            get(&f.ws_attempts),
            get(&f.ws_429),
            get(&f.ws_place_refused),
            get(&f.ws_other),
            get(&f.ws_tickets),
            get(&f.ws_away)
        );
        let _ = writeln!(
            md,
            "| no-JavaScript polls | {} | {} × 429, {} other | {} waiting pages, {} tickets (303) |",
            get(&f.poll_attempts),
            get(&f.poll_429),
            get(&f.poll_other),
            get(&f.poll_waiting),
            get(&f.poll_tickets)
        );
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "| well-behaved users | value | target |");
    let _ = writeln!(md, "| --- | ---: | --- |");
    let _ = writeln!(
        md,
        "| got a ticket / used it (200 through wicket) | {served} / {used} of {} | all: {} |",
        cfg.good,
        verdict(served == cfg.good && used == cfg.good)
    );
    if let Some(s) = &s_all {
        let _ = writeln!(
            md,
            "| connect → ticket, all: p50 / p99 / max | {:.0} / {:.0} / {:.0} µs | |",
            s.p50, s.p99, s.max
        );
    }
    let _ = writeln!(
        md,
        "| served at once / waited in line | {} / {queued} | |",
        served - queued
    );
    if let Some(s) = &s_once {
        let _ = writeln!(
            md,
            "| connect → ticket, served at once: p50 / p99 / max | {:.0} / {:.0} / {:.0} µs | |",
            s.p50, s.p99, s.max
        );
    }
    if let Some(w) = &seen {
        let _ = writeln!(
            md,
            "| order of joining, the users' (handshake answered) against wicket's (its log): pairs in a different order | {} | |",
            w.joined_against_users
        );
        let _ = writeln!(
            md,
            "| wicket's order (its log, users who waited in line: {}): pairs granted against wicket's order of joining | {} | 0: {} |",
            w.users,
            w.granted_against_joining,
            verdict(w.granted_against_joining == 0)
        );
        let _ = writeln!(
            md,
            "| tickets written to the users' sockets against the order of granting (any / in different bursts of writes) | {} / {} | |",
            w.written_against_granting.0, w.written_against_granting.1
        );
        if let Some(d) = &w.grant_to_write {
            let _ = writeln!(
                md,
                "| grant → ticket written by the user's edge thread: p50 / p99 / max; writes ≥ {} ms late | {:.0} / {:.0} / {:.0} µs; {}{} | |",
                LATE.as_millis(),
                d.p50,
                d.p99,
                d.max,
                w.late.values().sum::<usize>(),
                if w.late.is_empty() {
                    String::new()
                } else {
                    let by: Vec<String> = w.late.iter().map(|(t, n)| format!("{t}: {n}")).collect();
                    format!(" ({})", by.join(", "))
                }
            );
        }
    }
    let _ = writeln!(
        md,
        "| order as the users saw it: pairs served against their order of joining (any / in different delivery bursts, a burst being tickets < {} ms apart) | {inv0} / {inv2} | 0 across bursts: {} |",
        BURST_GAP.as_millis(),
        verdict(inv2 == 0)
    );
    if let (Some(a), Some(b)) = (edge0, edge1) {
        let _ = writeln!(
            md,
            "| wicket's edge threads from the flood's start to the last ticket: CPU / runnable but waiting for a CPU (/proc schedstat) | {:.0} / {:.0} ms | |",
            b.0.saturating_sub(a.0) as f64 / 1e6,
            b.1.saturating_sub(a.1) as f64 / 1e6
        );
    }
    let _ = writeln!(
        md,
        "| wicket RSS: before / peak / 3 s after the flood | {} / {peak_rss} / {} kB | |",
        rss0.unwrap_or(0),
        rss_end.unwrap_or(0),
    );
    let _ = writeln!(
        md,
        "| wicket open fds: before / peak / 3 s after the flood | {} / {peak_fds} / {} | |",
        fds0.unwrap_or(0),
        fds_end.unwrap_or(0)
    );
    if !errs.is_empty() {
        let _ = writeln!(md);
        let _ = writeln!(md, "Well-behaved users' errors:");
        for (k, (n, ex)) in &errs {
            let _ = writeln!(md, "- {k}: {n} — {}", ex.join("; "));
        }
    }
    std::fs::write(cfg.out.join("report.md"), &md)?;
    Ok(format!(
        "good_served={served} good_used={used} wait_p50_us={:.0} wait_p99_us={:.0} queued={queued} inversions={inv0} inversions_across_bursts={inv2} flood_conn_429={} flood_conn_held={} flood_ws_429={} flood_ws_place_refused={} flood_ws_tickets={} flood_ws_away={} flood_poll_429={} flood_poll_tickets={}",
        s_all.as_ref().map_or(0.0, |s| s.p50),
        s_all.as_ref().map_or(0.0, |s| s.p99),
        get(&f.conn_429),
        get(&f.conn_held),
        get(&f.ws_429),
        get(&f.ws_place_refused),
        get(&f.ws_tickets),
        get(&f.ws_away),
        get(&f.poll_429),
        get(&f.poll_tickets)
    ) + &seen.map_or(String::new(), |w| {
        format!(
            " joined_against_users={} wicket_granted_against_joining={} written_against_granting_across_bursts={} writes_late={}",
            w.joined_against_users,
            w.granted_against_joining,
            w.written_against_granting.1,
            w.late.values().sum::<usize>()
        )
    }))
}

/// A ticket written this long after its grant is late (the edge thread
/// holding the socket ran late).
const LATE: Duration = Duration::from_millis(5);

/// The run's users as wicket's order log saw them.
#[derive(Debug)]
struct WicketOrder {
    /// Users who waited in line and are in the log.
    users: usize,
    /// Pairs whose order of joining differs between the users' view (their
    /// handshakes completing) and wicket's (its waiter ids): a user is in
    /// line before wicket answers the handshake, so none unless an answer
    /// is delayed past the next user's.
    joined_against_users: usize,
    /// Pairs granted against wicket's order of joining (its waiter ids).
    granted_against_joining: usize,
    /// Pairs whose tickets were written against the order of granting:
    /// any, and in different bursts of writes (as [`inversions`]).
    written_against_granting: (usize, usize),
    /// Grant → ticket written.
    grant_to_write: Option<crate::Summary>,
    /// Writes at least [`LATE`] after their grant, by edge thread.
    late: std::collections::BTreeMap<String, usize>,
}

fn wicket_order(log: &order::OrderLog, users: &[Good]) -> WicketOrder {
    let paths: Vec<order::Path> = users
        .iter()
        .filter_map(|u| {
            let (pod, uid) = u.ticket.as_ref()?;
            log.path(u.from, pod, uid)
        })
        .collect();
    let us = |t: i64| Duration::from_micros(u64::try_from(t).unwrap_or(0));
    let joined: Vec<(Duration, u64)> = users
        .iter()
        .filter_map(|u| {
            let (pod, uid) = u.ticket.as_ref()?;
            Some((u.opened?, log.path(u.from, pod, uid)?.waiter))
        })
        .collect();
    let joined_against_users = joined
        .iter()
        .enumerate()
        .map(|(k, (o, w))| {
            joined[k + 1..]
                .iter()
                .filter(|(o2, w2)| (o2 > o) != (w2 > w))
                .count()
        })
        .sum();
    // Grants happen one at a time in the app's loop: any pair counts.
    let granted: Vec<(u64, Duration)> = paths.iter().map(|p| (p.waiter, us(p.granted))).collect();
    let (granted_against_joining, _) = inversions_of(granted, Duration::ZERO);
    let written: Vec<((Duration, u64), Duration)> = paths
        .iter()
        .filter_map(|p| Some(((us(p.granted), p.waiter), us(p.written.as_ref()?.0))))
        .collect();
    let written_against_granting = inversions_of(written, BURST_GAP);
    let mut delays = Vec::new();
    let mut late = std::collections::BTreeMap::new();
    for p in &paths {
        if let Some((at, thread)) = &p.written {
            let d = us(*at).saturating_sub(us(p.granted));
            delays.push(d);
            if d >= LATE {
                *late.entry(thread.clone()).or_insert(0) += 1;
            }
        }
    }
    WicketOrder {
        users: paths.len(),
        joined_against_users,
        granted_against_joining,
        written_against_granting,
        grant_to_write: summarise(&mut delays),
        late,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(opened_ms: u64, at_ms: u64) -> Good {
        Good {
            i: 0,
            opened: Some(Duration::from_millis(opened_ms)),
            at: Some(Duration::from_millis(at_ms)),
            wait: None,
            queued: true,
            used: true,
            from: IpAddr::from([127, 0, 0, 1]),
            ticket: None,
        }
    }

    #[test]
    fn counts_users_served_out_of_order() {
        let gap = Duration::from_millis(5);
        let fifo = [user(0, 100), user(10, 200), user(20, 300)];
        assert_eq!(inversions(&fifo, gap), (0, 0));
        // The third in line served well before both others.
        let jump = [user(0, 100), user(10, 200), user(20, 50)];
        assert_eq!(inversions(&jump, gap), (2, 2));
        // Swapped within one burst (1 ms apart): out of order, same burst.
        let close = [user(0, 101), user(10, 100)];
        assert_eq!(inversions(&close, gap), (1, 0));
        // A burst is a chain: 100, 103, 106 is one burst though 6 ms wide.
        let chain = [user(0, 106), user(10, 103), user(20, 100)];
        assert_eq!(inversions(&chain, gap), (3, 0));
        // Unserved users are not counted.
        let mut none = user(5, 0);
        none.at = None;
        assert_eq!(inversions(&[user(0, 100), none], gap), (0, 0));
    }
}
