//! Graceful shutdown (issue 19 item 4), against real processes and sockets:
//! `wicket demo` (the built binary) gets SIGTERM while a slow request is in
//! flight, a keep-alive connection sits idle, a WebSocket tunnel to a pod
//! is open and a user waits in line; then it must finish the request, close
//! the idle connection, refuse new ones, tell the waiting user to
//! reconnect, hold the tunnel up to `proxy.shutdown_grace_ms`, and exit 0.
//! The pod is a scripted socket of the test, so every byte is seen.
//!
//! The second test shows the place kept: two edges over one queue (what a
//! shared store gives two processes), one shuts down, its waiting users
//! reconnect to the other with their resume ids and keep their places.

#![allow(clippy::unwrap_used)] // tests

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const APP: &str = "demo";
const LIMIT: Duration = Duration::from_secs(10);
const GRACE_MS: u64 = 2500;

/// Reads until the empty line; returns the head and what followed.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    timeout(LIMIT, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a head in time");
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let rest = buf.split_off(end);
    (String::from_utf8(buf).unwrap(), rest)
}

/// Reads `n` bytes after `have`.
async fn read_n(s: &mut TcpStream, mut have: Vec<u8>, n: usize) -> Vec<u8> {
    timeout(LIMIT, async {
        while have.len() < n {
            let mut chunk = [0u8; 4096];
            let got = s.read(&mut chunk).await.unwrap();
            assert!(got > 0, "closed early");
            have.extend_from_slice(&chunk[..got]);
        }
    })
    .await
    .expect("in time");
    have
}

/// Waits for the peer to close: `Ok(bytes read before)` on a clean close
/// (FIN), `Err` on a reset.
async fn until_closed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    timeout(LIMIT, s.read_to_end(&mut all))
        .await
        .expect("closed in time")?;
    Ok(all)
}

/// A request on ticket `t`.
fn request(t: &Ticket, rest: &str, extra: &str) -> String {
    format!(
        "GET {}{rest} HTTP/1.1\r\nHost: users.example\r\nCookie: {}\r\n{extra}\r\n",
        t.prefix(APP),
        t.cookie()
    )
}

async fn accept(pods: &TcpListener) -> TcpStream {
    timeout(LIMIT, pods.accept())
        .await
        .expect("wicket dials the pod")
        .unwrap()
        .0
}

/// Messages of a ticket socket until it closes, and its close code.
async fn until_ws_closed(ws: &mut WsStream) -> (Vec<String>, Option<CloseCode>) {
    let mut texts = Vec::new();
    let mut code = None;
    let _ = timeout(LIMIT, async {
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Text(t) => texts.push(t.to_string()),
                Message::Close(f) => code = f.map(|f| f.code),
                _ => {}
            }
        }
    })
    .await;
    (texts, code)
}

/// Reads text messages until one starts with `prefix`.
async fn until_message(ws: &mut WsStream, prefix: &str) -> String {
    let mut seen = Vec::new();
    timeout(LIMIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with(prefix) => return t.to_string(),
                Some(Ok(m)) => seen.push(m),
                other => panic!("socket ended before {prefix}: {other:?} after {seen:?}"),
            }
        }
    })
    .await
    .expect("in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_closes_idle_refuses_new_holds_tunnels_then_exits_0() {
    let pods = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = std::env::temp_dir().join(format!("wicket-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("wicket.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nthreads = 2\nticket_expiry_ms = 60000\n\
             shutdown_grace_ms = {GRACE_MS}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n\
             [demo]\nreplicas = 0\npods_max = 0\ntickets_spare = 0\ntickets_max = 1\n\
             static_backends = [\"{}\"]\n",
            pods.local_addr().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wicket"))
        .args(["demo", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let proxy: SocketAddr = timeout(Duration::from_secs(60), async {
        let mut app = None;
        while let Some(line) = out.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("app") {
                let rest = url.trim().strip_prefix("http://").unwrap();
                app = Some(rest[..rest.find('/').unwrap()].parse().unwrap());
            }
            if line.contains("Press Ctrl-C") {
                return app.expect("an app URL");
            }
        }
        panic!("the demo did not start");
    })
    .await
    .expect("started in time");
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let logs = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(l)) = err.next_line().await {
            all.push(l);
        }
        all
    });

    // The only slot: this ticket.
    let t = ticket(proxy, APP, Duration::from_secs(30)).await;

    // (b) A keep-alive connection that served a request and sits idle.
    let mut idle = TcpStream::connect(proxy).await.unwrap();
    idle.write_all(request(&t, "one", "").as_bytes())
        .await
        .unwrap();
    let mut pod_idle = accept(&pods).await;
    read_head(&mut pod_idle).await;
    pod_idle
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let (head, rest) = read_head(&mut idle).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "kept alive: {head}");
    read_n(&mut idle, rest, 2).await;

    // (a) A slow request: the pod has it and has not answered.
    let mut slow = TcpStream::connect(proxy).await.unwrap();
    slow.write_all(request(&t, "slow", "").as_bytes())
        .await
        .unwrap();
    let mut pod_slow = accept(&pods).await;
    read_head(&mut pod_slow).await;

    // (d) A WebSocket tunnel to the pod.
    let mut tunnel = TcpStream::connect(proxy).await.unwrap();
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    tunnel
        .write_all(request(&t, "socket", upgrade).as_bytes())
        .await
        .unwrap();
    let mut pod_tunnel = accept(&pods).await;
    read_head(&mut pod_tunnel).await;
    pod_tunnel
        .write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        )
        .await
        .unwrap();
    let (head, _) = read_head(&mut tunnel).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    // (e) A user waiting in line (the slot is taken), resumable.
    let (mut waiting, _) =
        tokio_tungstenite::connect_async(format!("ws://{proxy}/{APP}/ws?resume"))
            .await
            .unwrap();
    let rid = until_message(&mut waiting, "rid#").await;
    assert_eq!(until_message(&mut waiting, "pos#").await, "pos#1");

    let pid = child.id().unwrap().to_string();
    let sent = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

    // (c) New connections are refused once the listeners are closed.
    timeout(Duration::from_secs(3), async {
        loop {
            match TcpStream::connect(proxy).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("connections refused soon after SIGTERM");
    let again = TcpStream::connect(proxy).await;
    assert!(again.is_err(), "still refused");

    // (b) The idle connection is closed cleanly (a FIN, nothing sent).
    let got = until_closed(&mut idle).await.expect("a clean close");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));

    // (e) The waiting user is told to reconnect (1012: Service Restart).
    let (texts, code) = until_ws_closed(&mut waiting).await;
    assert!(texts.iter().any(|m| m == "sta#restart"), "{texts:?}");
    assert!(texts.iter().any(|m| m.starts_with("msg#")), "{texts:?}");
    assert_eq!(code, Some(CloseCode::Restart));
    assert!(rid.len() > 4);

    // (a) The slow request completes, as the connection's last response.
    pod_slow
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
        .await
        .unwrap();
    let (head, rest) = read_head(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    let body = until_closed(&mut slow).await.expect("then a clean close");
    assert_eq!([rest, body].concat(), b"slow");

    // (d) The tunnel still carries bytes both ways within the grace period…
    tunnel.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    timeout(LIMIT, pod_tunnel.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"ping");
    pod_tunnel.write_all(b"pong").await.unwrap();
    timeout(LIMIT, tunnel.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"pong");
    assert!(sent.elapsed() < Duration::from_millis(GRACE_MS));
    // …and is closed on both sides at its deadline.
    until_closed(&mut tunnel).await.expect("user side closed");
    let held = sent.elapsed();
    assert!(held >= Duration::from_millis(GRACE_MS), "{held:?}");
    let _ = until_closed(&mut pod_tunnel).await;

    // Exit status 0.
    let status = timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        sent.elapsed() < Duration::from_millis(GRACE_MS + 4000),
        "{:?}",
        sent.elapsed()
    );
    let logs = logs.await.unwrap();
    let start = logs.iter().find(|l| l.contains("shutting down"));
    assert!(
        start.is_some_and(|l| l.contains("INFO") && l.contains("tunnels=1")),
        "{logs:#?}"
    );
    let end = logs
        .iter()
        .find(|l| l.contains("the edge is done"))
        .unwrap_or_else(|| panic!("{logs:#?}"));
    // The idle connection, and any connection of the probes above that got
    // in before the listeners closed.
    let idle_closed: u32 = end
        .split_whitespace()
        .find_map(|w| w.strip_prefix("idle_closed="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(idle_closed >= 1, "{end}");
    for count in ["told_to_reconnect=1", "tunnels_cut=1", "connections_cut=0"] {
        assert!(end.contains(count), "{count} in {end}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_users_told_to_reconnect_keep_their_places_on_another_edge() {
    // One pod (a socket nothing is forwarded to here) with one slot, and
    // no scaling: whoever comes after the first user waits.
    let pod = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = one_pod(&pod, 1);
    c.proxy.ticket_expiry_ms = 60_000;
    c.proxy.threads = 1;
    let settings = c.proxy_settings();
    let host = start(c, 1).await;
    let a = host.proxy_addr;
    // A second edge over the same apps: another process with a shared
    // store, as far as the queue is concerned.
    let other = wicket::proxy::Proxy::new(Arc::clone(&host.apps), settings);
    let listeners = wicket::proxy::edge::bind(SocketAddr::from(([127, 0, 0, 1], 0)), 1).unwrap();
    let b = listeners.local_addr();
    let serving = tokio::spawn(wicket::proxy::edge::serve(
        listeners,
        Arc::clone(&other),
        None,
    ));

    let mut holder = connect_ws(a, APP).await;
    let held = read_ticket(&mut holder, LIMIT)
        .await
        .ticket
        .expect("a ticket");
    let join = |addr: SocketAddr, rid: Option<String>| async move {
        let q = rid.map_or("resume".to_owned(), |r| format!("resume={r}"));
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/{APP}/ws?{q}"))
            .await
            .unwrap();
        ws
    };
    let mut first = join(a, None).await;
    let rid1 = until_message(&mut first, "rid#").await[4..].to_owned();
    assert_eq!(until_message(&mut first, "pos#").await, "pos#1");
    let mut second = join(a, None).await;
    let rid2 = until_message(&mut second, "rid#").await[4..].to_owned();
    assert_eq!(until_message(&mut second, "pos#").await, "pos#2");
    // A no-JavaScript user polling, third in line.
    let poll = tokio::spawn(async move {
        get(
            &client(),
            a,
            &format!("/{APP}/.wicket/poll"),
            None,
            &[("accept", "text/html")],
        )
        .await
    });
    wait_for(LIMIT, || async {
        metric(&host, "wicket_waiting_users").await == 3.0
    })
    .await;

    let started = Instant::now();
    let summary = host.proxy.shutdown(Duration::from_secs(5)).await;
    assert_eq!(summary.told_to_reconnect, 3, "{summary:?}");
    assert_eq!(summary.connections_cut, 0, "{summary:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let (texts, code) = until_ws_closed(&mut first).await;
    assert!(texts.iter().any(|m| m == "sta#restart") && code == Some(CloseCode::Restart));
    let (texts, code) = until_ws_closed(&mut second).await;
    assert!(texts.iter().any(|m| m == "sta#restart") && code == Some(CloseCode::Restart));
    // The poll was answered at once: its page reloads (with its resume id)
    // on a new connection, and says why.
    let page = poll.await.unwrap();
    assert_eq!(page.status, http::StatusCode::OK);
    assert!(
        page.body.contains("restarting") && page.body.contains("?w="),
        "{}",
        page.body
    );
    assert_eq!(
        page.headers.get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    // The listener of the edge that shut down is closed.
    assert!(TcpStream::connect(a).await.is_err());
    // A poll that still reaches it (on a connection opened before) takes
    // no place and no ticket there: its page reloads elsewhere, at once,
    // with the resume id it came with.
    let req = http::Request::get(format!("/{APP}/.wicket/poll?w={rid2}"))
        .header("host", "h")
        .body(())
        .unwrap();
    let asked = Instant::now();
    let page = host.proxy.handle(req, None, [127, 0, 0, 1].into()).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    let body = http_body_util::BodyExt::collect(page.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("restarting") && body.contains(&format!("?w={rid2}")),
        "{body}"
    );

    // Back on the other edge, in the other order: each keeps its place.
    let mut second = join(b, Some(rid2.clone())).await;
    assert_eq!(until_message(&mut second, "rid#").await[4..], rid2);
    assert_eq!(until_message(&mut second, "pos#").await, "pos#2");
    let mut first = join(b, Some(rid1.clone())).await;
    assert_eq!(until_message(&mut first, "rid#").await[4..], rid1);
    assert_eq!(until_message(&mut first, "pos#").await, "pos#1");
    // The holder leaves: the first in line gets the slot.
    drop(holder);
    host.apps.get(APP).unwrap().release(&wicket::state::Grant {
        token: wicket::state::Token::parse(&held.token).unwrap(),
        pod: held.pod.clone(),
        uid: held.uid.clone(),
    });
    let got = read_ticket(&mut first, LIMIT).await;
    assert!(got.ticket.is_some(), "{:?}", got.messages);
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_edge_gives_no_ticket_to_a_poll() {
    let pod = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = one_pod(&pod, 1);
    let host = start(c, 1).await;
    let summary = host.proxy.shutdown(Duration::from_secs(5)).await;
    assert_eq!(summary.open_at_start, 0, "{summary:?}");
    // A slot is free, but a ticket given by a process on its way out would
    // be lost with it: the poll's page sends the user elsewhere.
    let req = http::Request::get(format!("/{APP}/.wicket/poll"))
        .header("host", "h")
        .body(())
        .unwrap();
    let page = host.proxy.handle(req, None, [127, 0, 0, 1].into()).await;
    assert_eq!(page.status(), http::StatusCode::OK);
    assert!(page.headers().get("set-cookie").is_none(), "{page:?}");
    let body = http_body_util::BodyExt::collect(page.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("restarting"));
    assert_eq!(metric(&host, "k8sticket_current_users_total").await, 0.0);
}
