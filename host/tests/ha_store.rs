//! High availability with the Redis store: several `wicket demo` processes
//! share one real redis-server and the same app instances; with a shared
//! port (SO_REUSEPORT) the kernel spreads users over them.

mod common;
mod redis;
mod replicas;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{connect_ws, exe, metric_at, read_ticket, ticket, wait_for};
use http::StatusCode;
use redis::RedisServer;
use replicas::{APP, Replicas, Setup, get_fresh};

/// Every test ends within this.
const LIMIT: Duration = Duration::from_secs(90);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the test ends within its time bound");
}

/// The tickets the store holds, read over a plain TCP connection with
/// RESP (no client of the store's own code).
fn store_tickets(server: &RedisServer) -> HashMap<String, String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("redis");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let key = format!("{{wicket:{APP}}}:tickets");
    write!(s, "*2\r\n$7\r\nHGETALL\r\n${}\r\n{key}\r\n", key.len()).expect("write");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("reply");
    let n: usize = line.trim()[1..].parse().expect("array length");
    let mut items = Vec::new();
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).expect("bulk length");
        line.clear();
        r.read_line(&mut line).expect("bulk");
        items.push(line.trim().to_owned());
    }
    items
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

/// What each replica counts: tickets, waiting users, free slots, store.
async fn figures(r: &Replicas) -> String {
    let mut out = String::new();
    for rep in &r.replicas {
        out += &format!("  {}:", rep.metrics);
        for name in [
            "k8sticket_current_users_total",
            "k8sticket_current_free_tickets_total",
            "wicket_waiting_users",
            "k8sticket_users_total",
            "wicket_store_up",
            "wicket_store_errors_total",
        ] {
            out += &format!(" {name}={}", metric_at(rep.metrics, name, "").await);
        }
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_users_at_once_on_three_replicas_never_overfill_a_pod() {
    bounded(async {
        let server = RedisServer::start();
        let setup = Setup {
            replicas: 3,
            pods: 4,
            tickets_max: 25,
            // Nobody uses a ticket here: none may expire (and be issued
            // again) within the test's bound, however slow the machine.
            ticket_expiry_ms: 2 * LIMIT.as_millis() as u64,
            ..Setup::default()
        };
        let r = Replicas::start(exe(), server.url(), setup);
        let addr = r.addr();
        // Each user connects and reads at once, as a browser does (one
        // that does not read misses the server's pings and is dropped as
        // gone), until a ticket comes or the test says stop (once every
        // slot is taken and a moment more has passed, so that a ticket
        // issued past the capacity would be seen). A busy machine only
        // makes this slower, never different.
        let granted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let readers: Vec<_> = (0..200)
            .map(|_| {
                let (granted, mut stop) = (Arc::clone(&granted), stop_rx.clone());
                tokio::spawn(async move {
                    let mut ws = connect_ws(addr, APP).await;
                    let s = tokio::select! {
                        s = read_ticket(&mut ws, LIMIT) => s,
                        _ = stop.wait_for(|s| *s) => common::Session::default(),
                    };
                    if s.ticket.is_some() {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                    (s, ws)
                })
            })
            .collect();
        // Free slots with users waiting must all be given out: a stall
        // here (users of one replica waiting for users behind another's)
        // is reported with what every replica saw.
        let started = std::time::Instant::now();
        while granted.load(Ordering::Relaxed) < 100 {
            if started.elapsed() > Duration::from_secs(40) {
                panic!(
                    "only {} of 100 slots given out within 40 s; the replicas:\n{}",
                    granted.load(Ordering::Relaxed),
                    figures(&r).await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = stop_tx.send(true);
        let mut sessions = Vec::new();
        for r in readers {
            sessions.push(r.await.expect("reader"));
        }
        let tickets: Vec<_> = sessions
            .iter()
            .filter_map(|(s, _)| s.ticket.clone())
            .collect();
        let mut per_pod: HashMap<&str, u32> = HashMap::new();
        for t in &tickets {
            *per_pod.entry(t.pod.as_str()).or_default() += 1;
        }
        assert!(
            per_pod.values().all(|&n| n <= 25),
            "no pod holds more than its capacity: {per_pod:?}"
        );
        assert_eq!(tickets.len(), 100, "every slot is used once: {per_pod:?}");
        let slots: HashSet<(&str, &str)> = tickets
            .iter()
            .map(|t| (t.pod.as_str(), t.uid.as_str()))
            .collect();
        let tokens: HashSet<&str> = tickets.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(
            (slots.len(), tokens.len()),
            (100, 100),
            "no ticket issued twice"
        );
        let stored = store_tickets(&server);
        assert_eq!(stored.len(), 100, "the store holds every ticket");
        for t in &tickets {
            assert!(
                !stored.values().any(|d| d == &t.token),
                "never the token itself"
            );
        }
        // Each ticket opens through any replica (fresh connections).
        for t in tickets.iter().take(30) {
            for _ in 0..3 {
                let status = get_fresh(addr, &t.prefix(APP), &t.cookie()).await;
                assert_eq!(status, Some(StatusCode::OK), "{t:?}");
            }
        }
        // The hundred others wait (their sockets are still open); every
        // replica counts every ticket in use.
        let in_use: f64 = {
            let mut sum = 0.0;
            for rep in &r.replicas {
                sum += metric_at(rep.metrics, "k8sticket_current_users_total", "").await;
            }
            sum
        };
        assert_eq!(
            in_use, 300.0,
            "each of the 3 replicas counts all 100 tickets in use"
        );
        let mut issued = 0.0;
        for rep in &r.replicas {
            issued += metric_at(rep.metrics, "k8sticket_users_total", "").await;
        }
        assert_eq!(
            issued, 100.0,
            "tickets issued, counted once (lost claims are not)"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ticket_that_ended_on_one_replica_is_refused_on_every_replica_within_the_bound() {
    bounded(async {
        let server = RedisServer::start();
        let setup = Setup {
            replicas: 3,
            pods: 1,
            ticket_expiry_ms: 1500,
            shared_port: false,
            ..Setup::default()
        };
        let r = Replicas::start(exe(), server.url(), setup);
        let t = ticket(r.replicas[0].proxy, APP, Duration::from_secs(10)).await;
        let (path, cookie) = (t.prefix(APP), t.cookie());
        for rep in &r.replicas {
            // A replica that has not synced the fresh ticket yet answers
            // 307 (the client repeats the request): OK within the bound.
            let mut status = get_fresh(rep.proxy, &path, &cookie).await;
            let asked = Instant::now();
            while status == Some(StatusCode::TEMPORARY_REDIRECT)
                && asked.elapsed() < Duration::from_secs(2)
            {
                status = get_fresh(rep.proxy, &path, &cookie).await;
            }
            assert_eq!(
                status,
                Some(StatusCode::OK),
                "every replica opens the ticket (known within the bound)"
            );
        }
        // Nobody uses it: it expires (on whichever replica sweeps first).
        let field = format!("{}/{}", t.pod, t.uid);
        let started = Instant::now();
        while store_tickets(&server).contains_key(&field) {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the ticket expires"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let gone = Instant::now();
        // Every replica asked at once, again and again, until it refuses.
        let delays = futures_util::future::join_all(r.replicas.iter().map(|rep| {
            let (path, cookie) = (path.clone(), cookie.clone());
            async move {
                loop {
                    let asked = Instant::now();
                    let status = get_fresh(rep.proxy, &path, &cookie).await;
                    if status != Some(StatusCode::OK) {
                        return asked.saturating_duration_since(gone);
                    }
                    assert!(
                        gone.elapsed() < Duration::from_secs(5),
                        "refused in the end"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }))
        .await;
        let worst = delays.into_iter().max().unwrap_or_default();
        eprintln!("a ticket gone from the store was refused everywhere after {worst:?}");
        assert!(
            worst < Duration::from_secs(1),
            "refused on every replica within 1 s of leaving the store ({worst:?})"
        );
    })
    .await;
}

/// A redis-server, replicas with `setup` in front of it, and `n` tickets
/// taken through their address.
async fn replicas_holding(setup: Setup, n: usize) -> (RedisServer, Replicas, Vec<common::Ticket>) {
    let server = RedisServer::start();
    let r = Replicas::start(exe(), server.url(), setup);
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(ticket(r.addr(), APP, Duration::from_secs(10)).await);
    }
    (server, r, held)
}

/// One task per ticket running `user` (e.g. [`browser_user`]) on it, with
/// `pause` between its requests, until `stop`.
fn spawn_users<F, Fut>(
    addr: std::net::SocketAddr,
    tickets: &[common::Ticket],
    pause: Duration,
    stop: &Arc<AtomicBool>,
    user: F,
) -> Vec<tokio::task::JoinHandle<Fut::Output>>
where
    F: Fn(std::net::SocketAddr, common::Ticket, Duration, Arc<AtomicBool>) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    tickets
        .iter()
        .map(|t| tokio::spawn(user(addr, t.clone(), pause, Arc::clone(stop))))
        .collect()
}

/// 0 tickets lost: the store holds `tickets` and no other, and each opens
/// `tries` times through `addr` (fresh connections: any replica).
async fn assert_tickets_kept(
    server: &RedisServer,
    addr: std::net::SocketAddr,
    tickets: &[common::Ticket],
    tries: usize,
) {
    let stored = store_tickets(server);
    assert_eq!(stored.len(), tickets.len(), "the store holds every ticket");
    for t in tickets {
        assert!(
            stored.contains_key(&format!("{}/{}", t.pod, t.uid)),
            "{t:?}"
        );
        for _ in 0..tries {
            assert_eq!(
                get_fresh(addr, &t.prefix(APP), &t.cookie()).await,
                Some(StatusCode::OK),
                "{t:?} opens"
            );
        }
    }
}

/// What the store-outage tests share: one redis-server, 2 replicas
/// sharing a port with 2 pods of 6 tickets each (claims time out fast,
/// 300 ms, while the server is frozen) and 4 users who hold tickets and
/// use them every 100 ms from before the outage until [`Self::stop_holders`].
struct StoreOutage {
    server: RedisServer,
    r: Replicas,
    addr: std::net::SocketAddr,
    held: Vec<common::Ticket>,
    stop: Arc<AtomicBool>,
    holders: Vec<tokio::task::JoinHandle<Tally>>,
}

impl StoreOutage {
    /// Starts it with tickets that expire after `ticket_expiry_ms`; each
    /// holder is a `user` ([`fresh_user`] or [`browser_user`]).
    async fn start<F, Fut>(ticket_expiry_ms: u64, user: F) -> Self
    where
        F: Fn(std::net::SocketAddr, common::Ticket, Duration, Arc<AtomicBool>) -> Fut,
        Fut: Future<Output = Tally> + Send + 'static,
    {
        let setup = Setup {
            replicas: 2,
            pods: 2,
            tickets_max: 6,
            ticket_expiry_ms,
            // Claims fail fast while the server is frozen.
            response_timeout_ms: 300,
            ..Setup::default()
        };
        let (server, r, held) = replicas_holding(setup, 4).await;
        let addr = r.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let holders = spawn_users(addr, &held, Duration::from_millis(100), &stop, user);
        tokio::time::sleep(Duration::from_millis(500)).await;
        Self {
            server,
            r,
            addr,
            held,
            stop,
            holders,
        }
    }

    /// The outage begins: the server keeps its port and its data but
    /// answers nothing, as behind a broken network. Returns once every
    /// replica says so (`wicket_store_up` 0), with the moment it began.
    async fn begin(&self) -> Instant {
        self.server.pause();
        let at = Instant::now();
        self.store_up_everywhere(0.0).await;
        at
    }

    /// The server answers again; the moment it did.
    fn end(&self) -> Instant {
        self.server.resume();
        Instant::now()
    }

    /// Waits until every replica's `wicket_store_up` is `up`.
    async fn store_up_everywhere(&self, up: f64) {
        for rep in &self.r.replicas {
            wait_for(Duration::from_secs(5), || async {
                metric_at(rep.metrics, "wicket_store_up", "").await == up
            })
            .await;
        }
    }

    /// Stops the holders: what each saw.
    async fn stop_holders(&mut self) -> Vec<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        let mut tallies = Vec::new();
        for h in self.holders.drain(..) {
            tallies.push(h.await.expect("holder task"));
        }
        tallies
    }

    /// 0 tickets lost: the store holds the 4 held and the 6 `admitted`
    /// newcomers' tickets, each of which works, and every replica counted
    /// the outage in `wicket_store_errors_total`.
    async fn check_no_ticket_lost(&self, admitted: &[common::Ticket]) {
        let all: Vec<_> = self.held.iter().chain(admitted).cloned().collect();
        assert_tickets_kept(&self.server, self.addr, &all, 1).await;
        let mut errors = 0.0;
        for rep in &self.r.replicas {
            errors += metric_at(rep.metrics, "wicket_store_errors_total", "").await;
        }
        assert!(errors > 0.0, "the outage is counted");
    }
}

/// A user who sends each request on a connection of its own, so the
/// kernel spreads them over the replicas (a 307 repeated as
/// [`get_fresh`] does), every `pause` until `stop`. Anything but a 200 in
/// the end is a failure.
async fn fresh_user(
    addr: std::net::SocketAddr,
    t: common::Ticket,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Tally {
    let (path, cookie) = (t.prefix(APP), t.cookie());
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        match get_fresh(addr, &path, &cookie).await {
            Some(StatusCode::OK) => tally.ok += 1,
            other => tally.failed.push(format!("{other:?}")),
        }
        tokio::time::sleep(pause).await;
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_loses_no_ticket_and_newcomers_get_in_when_it_returns() {
    bounded(async {
        // Holders use their tickets through any replica all along.
        let mut o = StoreOutage::start(Setup::default().ticket_expiry_ms, fresh_user).await;
        // 4 s here spans many refresh intervals and response timeouts
        // while the newcomers' sockets, unread meanwhile, stay within one
        // ping interval; the 30 s outage with users who read all along is
        // `a_thirty_second_store_outage_…` below.
        let outage = o.begin().await;
        let mut newcomers = Vec::new();
        for _ in 0..6 {
            newcomers.push(connect_ws(o.addr, APP).await);
        }
        let mut early = Vec::new();
        for ws in &mut newcomers {
            early.push(read_ticket(ws, Duration::from_millis(300)).await);
        }
        assert!(
            early.iter().all(|s| s.ticket.is_none()),
            "no ticket can be claimed while the store is down"
        );
        assert!(
            early
                .iter()
                .all(|s| s.messages.iter().any(|m| m == "sta#paused")
                    && s.messages
                        .iter()
                        .any(|m| m.starts_with("msg#New sessions are paused"))),
            "newcomers are told why they wait: {early:?}"
        );
        tokio::time::sleep(Duration::from_secs(4).saturating_sub(outage.elapsed())).await;
        o.end();
        let mut admitted = Vec::new();
        for ws in &mut newcomers {
            let s = read_ticket(ws, Duration::from_secs(15)).await;
            admitted.push(s.ticket.expect("a newcomer gets in once the store answers"));
        }
        o.store_up_everywhere(1.0).await;
        for t in o.stop_holders().await {
            assert!(t.ok > 25, "used all along: {t:?}");
            assert!(
                t.failed.is_empty(),
                "a held ticket kept working through the outage: {t:?}"
            );
        }
        o.check_no_ticket_lost(&admitted).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_ticket_survives_a_restart_of_all_replicas() {
    bounded(async {
        let setup = Setup {
            replicas: 2,
            pods: 2,
            ..Setup::default()
        };
        let (server, mut r, held) = replicas_holding(setup, 8).await;
        let addr = r.addr();
        while !r.replicas.is_empty() {
            r.stop(0);
        }
        assert!(get_fresh(addr, "/", "").await.is_none(), "nobody serves");
        r.start_one();
        r.start_one();
        assert_tickets_kept(&server, addr, &held, 3).await;
        // And the pods are still as full as before: two more, then none.
        let more = ticket(addr, APP, Duration::from_secs(10)).await;
        let last = ticket(addr, APP, Duration::from_secs(10)).await;
        assert_ne!(
            (more.pod.as_str(), more.uid.as_str()),
            (last.pod.as_str(), last.uid.as_str())
        );
        let mut ws = connect_ws(addr, APP).await;
        let s = read_ticket(&mut ws, Duration::from_millis(800)).await;
        assert!(
            s.ticket.is_none(),
            "10 slots, 10 tickets: the next user waits"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_waiting_on_different_replicas_are_served_in_the_order_they_came() {
    bounded(async {
        let server = RedisServer::start();
        let setup = Setup {
            replicas: 2,
            pods: 1,
            tickets_max: 1,
            ticket_expiry_ms: 1200,
            shared_port: false,
            ..Setup::default()
        };
        let r = Replicas::start(exe(), server.url(), setup);
        let (a, b) = (r.replicas[0].proxy, r.replicas[1].proxy);
        let first = ticket(a, APP, Duration::from_secs(10)).await;
        // Four users wait, alternately on each replica, 300 ms apart.
        let mut waiting = Vec::new();
        for (i, addr) in [a, b, a, b].into_iter().enumerate() {
            let mut ws = connect_ws(addr, APP).await;
            let early = read_ticket(&mut ws, Duration::from_millis(300)).await;
            assert!(
                early.ticket.is_none(),
                "user {i} waits: the one slot is taken"
            );
            waiting.push((i, ws));
        }
        // Nobody uses the tickets: each expires in turn and frees the slot
        // for the next in line.
        let order =
            futures_util::future::join_all(waiting.into_iter().map(|(i, mut ws)| async move {
                let s = read_ticket(&mut ws, Duration::from_secs(40)).await;
                let t = s.ticket.unwrap_or_else(|| panic!("user {i} gets in"));
                (Instant::now(), i, t)
            }))
            .await;
        let mut order: Vec<_> = order.into_iter().collect();
        order.sort_by_key(|(at, ..)| *at);
        let served: Vec<usize> = order.iter().map(|(_, i, _)| *i).collect();
        assert_eq!(
            served,
            vec![0, 1, 2, 3],
            "first come, first served across replicas"
        );
        assert!(order.iter().all(|(.., t)| t.pod == first.pod));
    })
    .await;
}

/// Commands clients sent (scripts run and plain commands), from `INFO
/// commandstats`, over plain RESP: the round trips. Commands a script runs
/// inside the server are not counted.
fn commands_processed(server: &RedisServer) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("redis");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    s.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")
        .expect("write");
    let mut buf = vec![0u8; 65536];
    let mut text = String::new();
    // A bulk string: `$<len>\r\n<text>\r\n`.
    loop {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "INFO answered");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        let Some((len, rest)) = text.split_once("\r\n") else {
            continue;
        };
        let len: usize = len.trim_start_matches('$').parse().expect("bulk length");
        if rest.len() >= len {
            break;
        }
    }
    // Script calls and the client's own commands; the commands scripts run
    // are counted under their names too, so only these are summed.
    let client_sent = [
        "evalsha", "eval", "ping", "script", "hello", "client", "info",
    ];
    text.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, stats) = l.split_once(':')?;
            client_sent.contains(&name).then_some(())?;
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxied_requests_make_no_store_round_trips() {
    bounded(async {
        let server = RedisServer::start();
        let setup = Setup {
            replicas: 3,
            pods: 1,
            ..Setup::default()
        };
        let r = Replicas::start(exe(), server.url(), setup);
        let addr = r.addr();
        let t = ticket(addr, APP, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let window = Duration::from_secs(2);
        // Idle: only the replicas' syncs (one round trip per interval).
        let before = commands_processed(&server);
        tokio::time::sleep(window).await;
        let idle = commands_processed(&server) - before;
        // Busy: requests on the ticket through every replica for as long.
        let before = commands_processed(&server);
        let started = Instant::now();
        let mut requests = 0u32;
        let (path, cookie) = (t.prefix(APP), t.cookie());
        while started.elapsed() < window {
            let answers = futures_util::future::join_all(
                (0..8).map(|_| get_fresh(addr, &path, &cookie)),
            )
            .await;
            assert!(answers.iter().all(|a| *a == Some(StatusCode::OK)));
            requests += 8;
        }
        let busy = commands_processed(&server) - before;
        eprintln!("store commands in {window:?}: {idle} idle, {busy} with {requests} proxied requests");
        assert!(requests >= 100, "enough requests to tell: {requests}");
        assert!(
            busy <= idle + idle / 2 + 5,
            "round trips do not grow with proxied requests: {idle} idle, {busy} busy ({requests} requests)"
        );
    })
    .await;
}

#[test]
fn an_unreachable_store_stops_the_start_with_an_error_naming_store_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wicket.toml");
    let url = format!("redis://127.0.0.1:{}/", redis::free_port());
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [demo]\nreplicas = 0\n[store]\nkind = \"redis\"\nurl = \"{url}\"\nconnect_timeout_ms = 300\n"
        ),
    )
    .expect("config");
    let out = std::process::Command::new(exe())
        .args(["demo", "--config"])
        .arg(&path)
        .output()
        .expect("wicket runs");
    assert!(!out.status.success(), "it does not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.url"), "{err}");
    std::fs::write(&path, "[store]\nkind = \"redis\"\nurl = \"http://x/\"\n").expect("config");
    let out = std::process::Command::new(exe())
        .args(["demo", "--config"])
        .arg(&path)
        .output()
        .expect("wicket runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("store.url"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_pauses_while_the_store_is_down_and_resumes_after() {
    bounded(async {
        let server = RedisServer::start();
        let mut cfg = common::config();
        cfg.proxy.ticket_expiry_ms = 30_000;
        cfg.demo.replicas = 1;
        cfg.demo.tickets_max = 1;
        cfg.demo.tickets_spare = 0;
        cfg.demo.pods_max = 2;
        cfg.store.kind = wicket::config::StoreKind::Redis;
        cfg.store.url = server.url();
        cfg.store.refresh_ms = 100;
        cfg.store.response_timeout_ms = 300;
        let demo = common::start(cfg, 1).await;
        let addr = demo.proxy_addr;
        let _first = ticket(addr, APP_DEMO, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            common::metric(&demo, "k8sticket_scaled_pods_total").await,
            0.0,
            "nobody waits: no pod"
        );
        server.pause();
        wait_for(Duration::from_secs(5), || async {
            common::metric(&demo, "wicket_store_up").await == 0.0
        })
        .await;
        // A user arrives: with the store up the policy would start a pod.
        let mut ws = connect_ws(addr, APP_DEMO).await;
        let s = read_ticket(&mut ws, Duration::from_secs(2)).await;
        assert!(s.ticket.is_none(), "no ticket while the store is down");
        assert_eq!(
            common::metric(&demo, "k8sticket_scaled_pods_total").await,
            0.0,
            "no pod is created on counts that may be stale"
        );
        server.resume();
        let s = read_ticket(&mut ws, Duration::from_secs(20)).await;
        let t = s
            .ticket
            .expect("a pod starts once the store answers, and the user gets in");
        assert_eq!(
            common::metric(&demo, "k8sticket_scaled_pods_total").await,
            1.0
        );
        assert_eq!(
            get_fresh(addr, &t.prefix(APP_DEMO), &t.cookie()).await,
            Some(StatusCode::OK)
        );
    })
    .await;
}

/// The app name of [`common::config`]'s demo.
const APP_DEMO: &str = "demo";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_no_ticket() {
    bounded(async {
        let setup = Setup {
            replicas: 3,
            pods: 2,
            ..Setup::default()
        };
        let (server, mut r, held) = replicas_holding(setup, 6).await;
        let addr = r.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let users: Vec<_> = held
            .iter()
            .map(|t| {
                let (path, cookie, stop) = (t.prefix(APP), t.cookie(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        answers.push((Instant::now(), get_fresh(addr, &path, &cookie).await));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    answers
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let killed = Instant::now();
        r.stop(0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let (mut failed, mut total) = (0, 0);
        for u in users {
            for (at, answer) in u.await.expect("user task") {
                total += 1;
                match answer {
                    Some(StatusCode::OK) => {}
                    // Only requests the dying process held may fail:
                    // those started just before the kill (or as it ran).
                    None if at + Duration::from_millis(300) >= killed
                        && at <= killed + Duration::from_millis(300) =>
                    {
                        failed += 1
                    }
                    other => panic!("a held ticket was refused: {other:?}"),
                }
            }
        }
        eprintln!("{failed} of {total} requests failed around the kill");
        assert!(
            failed <= 6,
            "at most the requests in flight on the killed replica: {failed}"
        );
        // 0 tickets lost; the same cookies work on the replicas left.
        assert_tickets_kept(&server, addr, &held, 3).await;
    })
    .await;
}

/// Two replicas on ports of their own, one pod of 10 slots, and slow
/// syncs: the second replica learns of a ticket taken on the first late.
fn slow_sync_pair(server: &RedisServer) -> Replicas {
    let setup = Setup {
        replicas: 2,
        pods: 1,
        tickets_max: 10,
        shared_port: false,
        refresh_ms: 1000,
        ..Setup::default()
    };
    Replicas::start(exe(), server.url(), setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ticket_used_on_another_replica_before_it_knows_it_is_repeated_not_refused() {
    bounded(async {
        let server = RedisServer::start();
        let r = slow_sync_pair(&server);
        let (a, b) = (r.replicas[0].proxy, r.replicas[1].proxy);
        let c = common::client();
        let mut repeated = 0;
        for _ in 0..5 {
            let t = ticket(a, APP, Duration::from_secs(10)).await;
            // At once on the other replica (a browser's next request).
            let first = common::get(&c, b, &t.prefix(APP), Some(&t.cookie()), &[]).await;
            match first.status {
                StatusCode::TEMPORARY_REDIRECT => {
                    repeated += 1;
                    let again = common::get(&c, b, &t.prefix(APP), Some(&t.cookie()), &[]).await;
                    assert_eq!(again.status, StatusCode::OK, "the repeat passes");
                }
                // The replica happened to sync in between.
                StatusCode::OK => {}
                other => panic!("a fresh ticket was refused on the other replica: {other}"),
            }
        }
        assert!(repeated > 0, "the window exists and is bridged");
    })
    .await;
}

/// A TCP stream that counts the bytes it has read: whether any byte of a
/// response arrived before its connection closed.
struct Counted {
    inner: tokio::net::TcpStream,
    read: Arc<AtomicU64>,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a browser-like user saw.
#[derive(Debug, Default)]
struct Tally {
    /// Requests answered 200 (a 307 repeat and its repeat count once).
    ok: u64,
    /// Requests sent again because their connection closed (or could not
    /// be opened) before any byte of a response arrived.
    retries: u64,
    /// wicket's documented 307 "repeat it" on a ticketed path.
    repeats: u64,
    /// Anything else, with what happened.
    failed: Vec<String>,
}

impl Tally {
    /// Adds what another user saw.
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.retries += other.retries;
        self.repeats += other.repeats;
        self.failed.extend(other.failed);
    }
}

/// A browser-like user: requests on its ticket over a keep-alive
/// connection (a new one when the server closed it), one after another
/// with `pause` between them, until `stop`. Retries a request only if its
/// connection closed before any response byte arrived.
async fn browser_user(
    addr: std::net::SocketAddr,
    t: common::Ticket,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Tally {
    use http_body_util::{BodyExt, Empty};
    type Sender = hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>;
    let (path, cookie) = (t.prefix(APP), t.cookie());
    let mut tally = Tally::default();
    let mut conn: Option<(Sender, Arc<AtomicU64>)> = None;
    while !stop.load(Ordering::Relaxed) {
        // A connection that the server closed between requests is simply
        // replaced: no request was lost on it.
        if let Some((sender, _)) = conn.as_mut()
            && sender.ready().await.is_err()
        {
            conn = None;
        }
        let (sender, read) = match conn.as_mut() {
            Some(c) => c,
            None => {
                let stream = match tokio::net::TcpStream::connect(addr).await {
                    Ok(s) => s,
                    Err(_) => {
                        // Not even connected: nothing was answered.
                        tally.retries += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let read = Arc::new(AtomicU64::new(0));
                let io = hyper_util::rt::TokioIo::new(Counted {
                    inner: stream,
                    read: Arc::clone(&read),
                });
                let Ok((sender, connection)) = hyper::client::conn::http1::handshake(io).await
                else {
                    tally.retries += 1;
                    continue;
                };
                tokio::spawn(connection);
                conn.insert((sender, read))
            }
        };
        let before = read.load(Ordering::Relaxed);
        let req = http::Request::get(path.as_str())
            .header("host", addr.to_string())
            .header("cookie", cookie.as_str())
            .body(Empty::new())
            .expect("request");
        let sent = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await;
        let resp = match sent {
            Err(_) => {
                tally.failed.push("no answer within 10 s".into());
                conn = None;
                continue;
            }
            Ok(Err(e)) => {
                let got_bytes = read.load(Ordering::Relaxed) != before;
                conn = None;
                if got_bytes {
                    tally
                        .failed
                        .push(format!("closed after response bytes: {e}"));
                } else {
                    tally.retries += 1;
                }
                continue;
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        let closes = resp
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if let Err(e) = resp.into_body().collect().await {
            tally.failed.push(format!("{status}, body cut: {e}"));
            conn = None;
            continue;
        }
        if closes {
            conn = None;
        }
        match status {
            StatusCode::OK => tally.ok += 1,
            StatusCode::TEMPORARY_REDIRECT => {
                // Repeated at once, as a browser follows it.
                tally.repeats += 1;
                continue;
            }
            other => tally.failed.push(format!("status {other}")),
        }
        tokio::time::sleep(pause).await;
    }
    tally
}

/// A user with a WebSocket to the app (the demo app's counter) through the
/// proxy: sends "inc" every `pause` and checks the pod's answer. A tunnel
/// closed by a draining replica is opened again (counted); a refusal of its
/// upgrade is a failure.
async fn tunnel_user(
    addr: std::net::SocketAddr,
    t: common::Ticket,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> (Tally, u64) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Error, Message, client::IntoClientRequest};
    let mut tally = Tally::default();
    let mut reopened = 0u64;
    let mut last = 0u64;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let mut req = format!("ws://{addr}{}counter", t.prefix(APP))
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("cookie", t.cookie().parse().expect("cookie"));
        let mut ws = match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => ws,
            Err(Error::Http(resp)) => {
                tally
                    .failed
                    .push(format!("tunnel upgrade refused: {}", resp.status()));
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(_) => {
                tally.retries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !first {
            reopened += 1;
        }
        first = false;
        while !stop.load(Ordering::Relaxed) {
            if ws.send(Message::text("inc")).await.is_err() {
                break;
            }
            let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
            let Ok(Some(Ok(Message::Text(n)))) = reply else {
                break;
            };
            match n.as_str().parse::<u64>() {
                // Higher by one, or more if an "inc" reached the pod just
                // as the tunnel closed: the pod's session goes on.
                Ok(n) if n > last => {
                    last = n;
                    tally.ok += 1;
                }
                other => tally
                    .failed
                    .push(format!("the pod's counter went from {last} to {other:?}")),
            }
            tokio::time::sleep(pause).await;
        }
    }
    (tally, reopened)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_with_sigterm_under_load_fails_no_request_and_loses_no_ticket() {
    bounded(async {
        let setup = Setup {
            replicas: 3,
            pods: 2,
            tickets_max: 10,
            // Tunnels hold a draining replica this long.
            shutdown_grace_ms: 2000,
            ..Setup::default()
        };
        let (server, mut r, held) = replicas_holding(setup, 14).await;
        let addr = r.addr();
        let stop = Arc::new(AtomicBool::new(false));
        // Twelve browsers, a request each every 20 ms (a few hundred a
        // second in all); two users with a WebSocket to their pod.
        let browsers = spawn_users(
            addr,
            &held[..12],
            Duration::from_millis(20),
            &stop,
            browser_user,
        );
        let tunnels = spawn_users(
            addr,
            &held[12..],
            Duration::from_millis(50),
            &stop,
            tunnel_user,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        // Every replica in turn: the oldest is always first in the list.
        for round in 0..3 {
            let status =
                tokio::task::block_in_place(|| r.roll(0, Duration::from_secs(15)));
            let status = status.unwrap_or_else(|| panic!("round {round}: the old replica exits"));
            assert!(status.success(), "round {round}: it exits 0 ({status})");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let rolled = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for b in browsers {
            all.add(b.await.expect("browser task"));
        }
        let (mut tunnel_msgs, mut reopened, mut tunnel_retries) = (0, 0, 0);
        for u in tunnels {
            let (t, n) = u.await.expect("tunnel task");
            tunnel_msgs += t.ok;
            reopened += n;
            tunnel_retries += t.retries;
            all.failed.extend(t.failed);
        }
        let report = format!(
            "rolled 3 replicas in {rolled:?}: {} requests answered 200 ({} 307 repeats), \
             {} retried (closed before any response byte), {} failed; \
             {tunnel_msgs} tunnel messages, {reopened} tunnels reopened ({tunnel_retries} retried opens)",
            all.ok,
            all.repeats,
            all.retries,
            all.failed.len()
        );
        eprintln!("{report}");
        assert!(all.failed.is_empty(), "{report}: {:?}", all.failed);
        assert!(
            all.ok as f64 / (rolled.as_secs_f64() + 1.5) >= 100.0,
            "under load: {report}"
        );
        assert!(tunnel_msgs > 0 && reopened >= 1, "tunnels were used and drained: {report}");
        // 0 tickets lost: the store holds them all and each opens through
        // the new replicas.
        assert_tickets_kept(&server, addr, &held, 3).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thirty_second_store_outage_fails_no_holder_gives_no_5xx_and_loses_no_ticket() {
    bounded(async {
        // Expiry shorter than the outage: tickets in use must not expire
        // because their last use could not be written meanwhile.
        let mut o = StoreOutage::start(20_000, browser_user).await;
        let addr = o.addr;
        // The 30 s.
        const OUTAGE: Duration = Duration::from_secs(30);
        let outage = o.begin().await;
        // Newcomers arrive all through the outage: each waits (reading its
        // socket all along, as a browser answers pings), is told why, and a
        // page request never gets a 5xx.
        let mut newcomers = Vec::new();
        let mut pages = Vec::new();
        for at in [1u64, 8, 15, 22, 27, 29] {
            tokio::time::sleep(Duration::from_secs(at).saturating_sub(outage.elapsed())).await;
            let mut ws = connect_ws(addr, APP).await;
            newcomers.push(tokio::spawn(async move {
                let s = read_ticket(&mut ws, Duration::from_secs(60)).await;
                (Instant::now(), s)
            }));
            let c = common::client();
            let page = common::get(
                &c,
                addr,
                &format!("/{APP}/"),
                None,
                &[("accept", "text/html")],
            )
            .await;
            pages.push(page.status);
        }
        assert!(
            pages.iter().all(|s| !s.is_server_error()),
            "no 5xx for a newcomer's page: {pages:?}"
        );
        tokio::time::sleep(OUTAGE.saturating_sub(outage.elapsed())).await;
        let back = o.end();
        let mut admitted = Vec::new();
        let mut latest = Duration::ZERO;
        for (i, n) in newcomers.into_iter().enumerate() {
            let (at, s) = n.await.expect("newcomer task");
            assert!(
                s.messages.iter().any(|m| m == "sta#paused"),
                "newcomer {i} is told why it waits: {:?}",
                s.messages
            );
            let t = s.ticket.unwrap_or_else(|| {
                panic!(
                    "newcomer {i} gets in once the store answers: {:?}",
                    s.messages
                )
            });
            assert!(
                at >= back,
                "newcomer {i} got no ticket while the store was down"
            );
            latest = latest.max(at - back);
            admitted.push(t);
        }
        let admitted_after = latest;
        o.store_up_everywhere(1.0).await;
        // Holders go on a while after the return (the sweeps that follow
        // must not expire what was used during the outage).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut all = Tally::default();
        for t in o.stop_holders().await {
            all.add(t);
        }
        let report = format!(
            "{OUTAGE:?} outage: holders made {} requests ({} retried, {} failed); \
             6 newcomers all in {admitted_after:?} after the store returned; pages {pages:?}",
            all.ok,
            all.retries,
            all.failed.len()
        );
        eprintln!("{report}");
        assert!(all.failed.is_empty(), "{report}: {:?}", all.failed);
        assert!(all.ok > 4 * 200, "used all along: {report}");
        o.check_no_ticket_lost(&admitted).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_to_the_app_on_a_replica_that_learns_its_ticket_late_is_opened_not_redirected()
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    bounded(async {
        let server = RedisServer::start();
        let r = slow_sync_pair(&server);
        let (a, b) = (r.replicas[0].proxy, r.replicas[1].proxy);
        for round in 0..5 {
            let t = ticket(a, APP, Duration::from_secs(10)).await;
            // At once on the other replica. A browser fails a WebSocket
            // answered with anything but 101 (it follows no redirect), so
            // the 307 "repeat it" of plain requests would end the tunnel.
            let mut req = format!("ws://{b}{}counter", t.prefix(APP))
                .into_client_request()
                .expect("request");
            req.headers_mut()
                .insert("cookie", t.cookie().parse().expect("cookie"));
            let (mut ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .unwrap_or_else(|e| panic!("round {round}: the tunnel opens: {e}"));
            ws.send(Message::text("inc")).await.expect("send");
            let reply = ws.next().await.expect("reply").expect("frame");
            assert_eq!(
                reply.to_text().expect("text"),
                "1",
                "round {round}: the pod answers"
            );
        }
    })
    .await;
}
