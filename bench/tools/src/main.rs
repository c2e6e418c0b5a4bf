//! `wicket-bench`: the client-side helpers of `bench/run.sh`.
//!
//! * `ticket` asks wicket's ticket WebSocket for one ticket and prints what
//!   an HTTP load generator (wrk) needs to use it: the `Cookie` header value
//!   and the path prefix `/<app>/<pod>/<uid>`.
//! * `ticket-latency` measures how long issuing a ticket takes as a user
//!   sees it: from the start of the TCP connect to the `tkn#` message.
//! * `relay` is the cheapest possible proxy (bytes copied, nothing parsed),
//!   the reference for what any proxy can reach on the machine.
//! * `soak`, `scale` and `abuse` drive `bench/soak.sh`, `bench/scale.sh`
//!   and `bench/abuse.sh`: many users for a long time, many live tickets,
//!   and one client flooding while others queue (see bench/README.md).

mod abuse;
mod order;
mod relay;
mod scale;
mod soak;
mod tally;
mod users;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// Load-test helpers for wicket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Get one ticket; prints two lines: the Cookie header value, then the
    /// path prefix (`/<app>/<pod>/<uid>`).
    Ticket {
        /// The ticket WebSocket, e.g. ws://127.0.0.1:9001/demo/ws.
        #[arg(long)]
        url: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Time N ticket WebSockets (connect start → `tkn#` received).
    TicketLatency {
        /// The ticket WebSocket, e.g. ws://127.0.0.1:9001/demo/ws.
        #[arg(long)]
        url: String,
        /// Tickets to time (warm-up excluded).
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Connections in flight at once (each worker opens its share one
        /// after another).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Untimed tickets fetched first (connection setup, allocator and
        /// policy instance warm-up).
        #[arg(long, default_value_t = 20)]
        warmup: usize,
        /// Limit of one ticket, in milliseconds; a slower one is an error.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// Print one `key=value` line instead of the human table.
        #[arg(long)]
        kv: bool,
    },
    /// Relay TCP connections to a backend, copying bytes both ways with
    /// nothing parsed (runs until stopped).
    Relay {
        /// Where to listen, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The backend.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Threads, each with its own `SO_REUSEPORT` socket.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Many users, each holding a WebSocket to its pod and making a
    /// request every interval, for a long time; samples wicket's RSS and
    /// descriptors (prints one `key=value` line, writes raw files to --out).
    Soak {
        /// The ticket WebSocket, e.g. ws://127.0.0.1:9001/demo/ws.
        #[arg(long)]
        url: String,
        /// Users held at once.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Seconds from the first user's start until all leave.
        #[arg(long, default_value_t = 600)]
        duration_s: u64,
        /// Seconds over which the users start.
        #[arg(long, default_value_t = 30)]
        ramp_s: u64,
        /// Milliseconds between a user's rounds (one `inc`, one GET).
        #[arg(long, default_value_t = 3000)]
        interval_ms: u64,
        /// wicket's process id.
        #[arg(long)]
        pid: u32,
        /// Seconds between samples of wicket's RSS and descriptors.
        #[arg(long, default_value_t = 10)]
        sample_s: u64,
        /// Most seconds to wait, after the users left, for wicket's
        /// descriptors to come back to the start.
        #[arg(long, default_value_t = 150)]
        settle_s: u64,
        /// Users' source addresses start at 127.0.<BLOCK>.1 (250 per /24);
        /// 0: every user from 127.0.0.1.
        #[arg(long, default_value_t = 1)]
        block: u8,
        /// Directory for the raw figures and the report fragment.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Issues many tickets (kept live by the app's expiry), timing each,
    /// then reads wicket's RSS and policy cost at that size.
    Scale {
        /// The ticket WebSocket.
        #[arg(long)]
        url: String,
        /// Tickets to issue.
        #[arg(long, default_value_t = 10_000)]
        tickets: usize,
        /// Ticket sockets in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// wicket's process id.
        #[arg(long)]
        pid: u32,
        /// wicket's metrics endpoint, e.g. http://127.0.0.1:9999/metrics.
        #[arg(long)]
        metrics: String,
        /// Tickets checked with one request through the proxy afterwards.
        #[arg(long, default_value_t = 1000)]
        check: usize,
        /// Users' source addresses start at 127.0.<BLOCK>.1; 0: 127.0.0.1.
        #[arg(long, default_value_t = 1)]
        block: u8,
        /// Directory for the raw figures and the report fragment.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// One address floods (connections, ticket sockets, no-JS polls) while
    /// well-behaved users from other addresses join and get tickets.
    Abuse {
        /// The ticket WebSocket.
        #[arg(long)]
        url: String,
        /// The flooding client's address.
        #[arg(long, default_value = "127.66.0.1")]
        flood_from: std::net::IpAddr,
        /// Connections the flood tries to hold open at once.
        #[arg(long, default_value_t = 600)]
        flood_conns: usize,
        /// Ticket WebSockets the flood keeps in flight.
        #[arg(long, default_value_t = 200)]
        flood_sockets: usize,
        /// No-JavaScript polls the flood keeps in flight.
        #[arg(long, default_value_t = 100)]
        flood_polls: usize,
        /// Seconds the flood runs before the first well-behaved user.
        #[arg(long, default_value_t = 3)]
        warmup_s: u64,
        /// Well-behaved users.
        #[arg(long, default_value_t = 100)]
        good: usize,
        /// Milliseconds between two well-behaved users' arrivals.
        #[arg(long, default_value_t = 50)]
        spacing_ms: u64,
        /// Milliseconds a well-behaved user keeps its ticket in use.
        #[arg(long, default_value_t = 500)]
        hold_ms: u64,
        /// Bound in seconds on the run after the warm-up.
        #[arg(long, default_value_t = 180)]
        timeout_s: u64,
        /// Well-behaved users' addresses start at 127.0.<BLOCK>.1.
        #[arg(long, default_value_t = 1)]
        block: u8,
        /// wicket's process id.
        #[arg(long)]
        pid: u32,
        /// Directory for the raw figures and the report fragment.
        #[arg(long)]
        out: std::path::PathBuf,
        /// wicket's log, run with `RUST_LOG=wicket::order=debug`: reports
        /// wicket's own order of joining and granting beside the users'.
        #[arg(long)]
        order_log: Option<std::path::PathBuf>,
    },
}

/// A ticket as the WebSocket sends it: `tkn#<token>@<pod>@<uid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ticket {
    token: String,
    pod: String,
    uid: String,
}

impl Ticket {
    /// Parses the text of a `tkn#` message (None for any other message).
    fn parse(msg: &str) -> Option<Self> {
        let body = msg.strip_prefix("tkn#")?;
        let mut parts = body.split('@');
        let (token, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || token.is_empty() || pod.is_empty() || uid.is_empty() {
            return None;
        }
        Some(Self {
            token: token.into(),
            pod: pod.into(),
            uid: uid.into(),
        })
    }

    /// k8sTicket's cookie: `<pod>-<uid>-stoken=<token>`.
    fn cookie(&self) -> String {
        format!("{}-{}-stoken={}", self.pod, self.uid, self.token)
    }

    /// `/<app>/<pod>/<uid>`, where `app` is the segment before `/ws`.
    fn prefix(&self, app: &str) -> String {
        format!("/{app}/{}/{}", self.pod, self.uid)
    }
}

/// The app's name from a ticket socket URL `ws://host/<app>/ws`.
fn app_of(url: &str) -> anyhow::Result<&str> {
    let path = url.split_once("://").map_or(url, |(_, r)| r);
    let path = path.split_once('/').map(|(_, p)| p).unwrap_or("");
    let app = path.strip_suffix("/ws").unwrap_or("");
    if app.is_empty() || app.contains('/') {
        bail!("expected a URL of the form ws://HOST/APP/ws, got {url}");
    }
    Ok(app)
}

/// Opens the ticket WebSocket and waits for the ticket; returns it and the
/// time from connect start to its arrival. The socket is then closed
/// cleanly (outside the timed part) so the server sees a normal close.
async fn fetch(url: &str) -> anyhow::Result<(Ticket, Duration)> {
    let start = Instant::now();
    // Nagle off, as a browser would have: no 40 ms delayed-ACK stalls.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let ticket = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                // `msg#`/`pos#` (waiting) are skipped; the caller's timeout
                // bounds the wait.
                if let Some(ticket) = Ticket::parse(t.as_str()) {
                    break ticket;
                }
            }
            Some(Ok(Message::Close(f))) => bail!("the server closed without a ticket: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("ticket socket failed: {e}"),
            None => bail!("the server closed without a ticket"),
        }
    };
    let elapsed = start.elapsed();
    // Drain until the server's close is answered (tungstenite replies to it);
    // bounded so a misbehaving server cannot hang the benchmark.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok((ticket, elapsed))
}

async fn fetch_with_timeout(url: &str, timeout: Duration) -> anyhow::Result<(Ticket, Duration)> {
    tokio::time::timeout(timeout, fetch(url))
        .await
        .with_context(|| format!("no ticket within {timeout:?}"))?
}

/// Latency figures in microseconds.
#[derive(Debug, PartialEq)]
struct Summary {
    count: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

/// Nearest-rank percentiles of `samples` (which it sorts).
fn summarise(samples: &mut [Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let rank = |q: f64| {
        let n = samples.len();
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        us(samples[i])
    };
    let total: f64 = samples.iter().map(|d| us(*d)).sum();
    Some(Summary {
        count: samples.len(),
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        max: us(samples[samples.len() - 1]),
        mean: total / samples.len() as f64,
    })
}

async fn ticket_latency(
    url: String,
    count: usize,
    concurrency: usize,
    warmup: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    if count == 0 || concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    for _ in 0..warmup {
        fetch_with_timeout(&url, timeout).await?;
    }
    // Each worker fetches its share sequentially; shares differ by at most one.
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let share = count / concurrency + usize::from(w < count % concurrency);
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(share);
            for _ in 0..share {
                let (_, d) = fetch_with_timeout(&url, timeout).await?;
                out.push(d);
            }
            anyhow::Ok(out)
        }));
    }
    let mut samples = Vec::with_capacity(count);
    for w in workers {
        samples.extend(w.await.context("a latency worker panicked")??);
    }
    Ok(samples)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread: the client must not compete with the server for the two
    // cores more than it has to; a few concurrent sockets need no more.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        // Threads and runtimes of its own, laid out as wicket's edge.
        Command::Relay {
            listen,
            to,
            threads,
        } => relay::run(listen, to, threads)?,
        Command::Soak {
            url,
            users,
            duration_s,
            ramp_s,
            interval_ms,
            pid,
            sample_s,
            settle_s,
            block,
            out,
        } => {
            let cfg = soak::Soak {
                url,
                users,
                duration: Duration::from_secs(duration_s),
                ramp: Duration::from_secs(ramp_s.min(duration_s)),
                interval: Duration::from_millis(interval_ms.max(1)),
                pid,
                sample: Duration::from_secs(sample_s.max(1)),
                settle: Duration::from_secs(settle_s),
                block: (block > 0).then_some(block),
                out,
            };
            println!("{}", rt.block_on(soak::run(cfg))?);
        }
        Command::Scale {
            url,
            tickets,
            concurrency,
            pid,
            metrics,
            check,
            block,
            out,
        } => {
            let cfg = scale::Scale {
                url,
                tickets,
                concurrency,
                pid,
                metrics,
                check,
                block: (block > 0).then_some(block),
                out,
            };
            println!("{}", rt.block_on(scale::run(cfg))?);
        }
        Command::Abuse {
            url,
            flood_from,
            flood_conns,
            flood_sockets,
            flood_polls,
            warmup_s,
            good,
            spacing_ms,
            hold_ms,
            timeout_s,
            block,
            pid,
            out,
            order_log,
        } => {
            let cfg = abuse::Abuse {
                url,
                flood_from,
                flood_conns,
                flood_sockets,
                flood_polls,
                warmup: Duration::from_secs(warmup_s),
                good,
                spacing: Duration::from_millis(spacing_ms),
                hold: Duration::from_millis(hold_ms),
                timeout: Duration::from_secs(timeout_s),
                block,
                pid,
                out,
                order_log,
            };
            println!("{}", rt.block_on(abuse::run(cfg))?);
        }
        Command::Ticket { url, timeout_ms } => {
            let app = app_of(&url)?.to_owned();
            let (ticket, _) =
                rt.block_on(fetch_with_timeout(&url, Duration::from_millis(timeout_ms)))?;
            println!("{}", ticket.cookie());
            println!("{}", ticket.prefix(&app));
        }
        Command::TicketLatency {
            url,
            count,
            concurrency,
            warmup,
            timeout_ms,
            kv,
        } => {
            app_of(&url)?;
            let timeout = Duration::from_millis(timeout_ms);
            let started = Instant::now();
            let mut samples =
                rt.block_on(ticket_latency(url, count, concurrency, warmup, timeout))?;
            let wall = started.elapsed();
            let s = summarise(&mut samples).context("no samples")?;
            if kv {
                println!(
                    "count={} concurrency={concurrency} p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0} mean_us={:.0} wall_s={:.2}",
                    s.count,
                    s.p50,
                    s.p90,
                    s.p99,
                    s.max,
                    s.mean,
                    wall.as_secs_f64()
                );
            } else {
                println!(
                    "ticket issue latency (connect start → tkn# received), concurrency {concurrency}"
                );
                println!(
                    "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
                    "count", "p50 µs", "p90 µs", "p99 µs", "max µs", "mean µs"
                );
                println!(
                    "{:>8} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
                    s.count, s.p50, s.p90, s.p99, s.max, s.mean
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tickets() {
        let t = Ticket::parse("tkn#00ff@demo-static-0@a1b2").expect("ticket");
        assert_eq!(t.cookie(), "demo-static-0-a1b2-stoken=00ff");
        assert_eq!(t.prefix("demo"), "/demo/demo-static-0/a1b2");
        for bad in ["msg#wait", "tkn#", "tkn#a@b", "tkn#a@b@c@d", "tkn#@b@c"] {
            assert_eq!(Ticket::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn app_from_url() {
        assert_eq!(app_of("ws://127.0.0.1:9001/demo/ws").ok(), Some("demo"));
        assert!(app_of("ws://127.0.0.1:9001/ws").is_err());
        assert!(app_of("ws://127.0.0.1:9001/a/b/ws").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = summarise(&mut v).expect("summary");
        assert_eq!(
            (s.count, s.p50, s.p90, s.p99, s.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert!(summarise(&mut []).is_none());
    }
}
