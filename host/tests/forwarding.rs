//! The forwarding path byte by byte: a raw TCP client on one side, a
//! scripted pod on the other (a real socket that reads what wicket sends
//! and answers what each test says), so framing, hop-by-hop fields,
//! interim responses, early answers, closes and malformed input are seen
//! exactly as they cross the wire.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const APP: &str = "demo";
const LIMIT: Duration = Duration::from_secs(10);

/// A demo host whose only pod is the scripted one at `pod`, its config
/// changed by `tune`.
async fn host_tuned(
    pod: SocketAddr,
    tune: impl FnOnce(&mut wicket::config::Config),
) -> wicket::demo::Demo {
    let mut c = config();
    c.demo.replicas = 0;
    c.demo.pods_max = 0;
    c.demo.tickets_spare = 0;
    c.demo.tickets_max = 100;
    c.demo.static_backends = vec![pod];
    c.proxy.ticket_expiry_ms = 600;
    tune(&mut c);
    let free = c.demo.tickets_max;
    start(c, free).await
}

/// Reads until `buf` ends with `end` (or holds it), within the limit.
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) {
    timeout(LIMIT, async {
        while !buf.windows(end.len()).any(|w| w == end) {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed before {:?}; got {:?}",
                String::from_utf8_lossy(end),
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("in time");
}

/// Reads a head (through the empty line); returns it and what followed.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    read_until(s, &mut buf, b"\r\n\r\n").await;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end")
        + 4;
    let rest = buf.split_off(end);
    (String::from_utf8(buf).expect("ascii head"), rest)
}

/// Reads exactly `n` more bytes after `have`.
async fn read_n(s: &mut TcpStream, mut have: Vec<u8>, n: usize) -> Vec<u8> {
    timeout(LIMIT, async {
        while have.len() < n {
            let mut chunk = [0u8; 4096];
            let got = s.read(&mut chunk).await.expect("read");
            assert!(got > 0, "closed early");
            have.extend_from_slice(&chunk[..got]);
        }
    })
    .await
    .expect("in time");
    have
}

/// Reads until the peer closes.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    timeout(LIMIT, s.read_to_end(&mut all))
        .await
        .expect("closed in time")
        .expect("read");
    all
}

struct Setup {
    _host: wicket::demo::Demo,
    pods: TcpListener,
    proxy: SocketAddr,
    t: Ticket,
}

impl Setup {
    async fn new() -> Self {
        Self::tuned(|_| {}).await
    }

    async fn tuned(tune: impl FnOnce(&mut wicket::config::Config)) -> Self {
        let pods = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = host_tuned(pods.local_addr().expect("addr"), tune).await;
        let proxy = host.proxy_addr;
        let t = ticket(proxy, APP, LIMIT).await;
        Self {
            _host: host,
            pods,
            proxy,
            t,
        }
    }

    async fn user(&self) -> TcpStream {
        TcpStream::connect(self.proxy).await.expect("connect")
    }

    async fn pod_conn(&self) -> TcpStream {
        timeout(LIMIT, self.pods.accept())
            .await
            .expect("wicket dials the pod")
            .expect("accept")
            .0
    }

    /// Nothing reaches the pod (no connection within a moment).
    async fn no_pod(&self) {
        assert!(
            timeout(Duration::from_millis(300), self.pods.accept())
                .await
                .is_err(),
            "nothing reached the pod"
        );
    }

    /// Sends `raw` on a new user connection; returns all the user got
    /// until wicket closed it.
    async fn refused(&self, raw: &str) -> String {
        let mut user = self.user().await;
        user.write_all(raw.as_bytes()).await.expect("write");
        String::from_utf8_lossy(&read_to_close(&mut user).await).into_owned()
    }

    /// A request line and the ticket's fields, then `extra` fields.
    fn head(&self, method: &str, rest: &str, extra: &str) -> String {
        format!(
            "{method} {}{rest} HTTP/1.1\r\nHost: users.example\r\nCookie: a=1; {}\r\n{extra}\r\n",
            self.t.prefix(APP),
            self.t.cookie()
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_are_rewritten_and_bodies_pass_as_sent() {
    let s = Setup::new().await;
    let mut user = s.user().await;

    // A body with a length, sent in two pieces.
    let head = s.head(
        "POST",
        "upload?x=1",
        "Content-Length: 11\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n",
    );
    user.write_all(head.as_bytes()).await.expect("write");
    user.write_all(b"hello").await.expect("write");
    let mut pod = s.pod_conn().await;
    let (seen, rest) = read_head(&mut pod).await;
    assert!(seen.starts_with("POST /upload?x=1 HTTP/1.1\r\n"), "{seen}");
    for want in [
        "Host: users.example\r\n",
        "cookie: a=1\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
        "x-forwarded-host: users.example\r\n",
        "x-origin-host: users.example\r\n",
        "x-forwarded-proto: http\r\n",
        &format!("x-forwarded-prefix: /{APP}/{}/{}\r\n", s.t.pod, s.t.uid),
        // One canonical Content-Length, written by wicket.
        "content-length: 11\r\n",
    ] {
        assert!(seen.contains(want), "{want:?} missing in {seen}");
    }
    for gone in ["stoken", "X-Hop", "Connection", "keep-alive"] {
        assert!(!seen.contains(gone), "{gone} forwarded: {seen}");
    }
    user.write_all(b" world").await.expect("write");
    let body = read_n(&mut pod, rest, 11).await;
    assert_eq!(body, b"hello world");
    pod.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\nok")
        .await
        .expect("write");
    let (resp, rest) = read_head(&mut user).await;
    assert!(resp.starts_with("HTTP/1.1 201 Created\r\n"), "{resp}");
    assert!(!resp.to_ascii_lowercase().contains("keep-alive"), "{resp}");
    assert_eq!(read_n(&mut user, rest, 2).await, b"ok");

    // A chunked body each way, on the same connections.
    let head = s.head("PUT", "c", "Transfer-Encoding: chunked\r\n");
    user.write_all(head.as_bytes()).await.expect("write");
    user.write_all(b"5\r\nhello\r\n").await.expect("write");
    let (seen, rest) = read_head(&mut pod).await;
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    user.write_all(b"0\r\n\r\n").await.expect("write");
    let mut body = rest;
    read_until(&mut pod, &mut body, b"0\r\n\r\n").await;
    assert_eq!(body, b"5\r\nhello\r\n0\r\n\r\n");
    pod.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .await
        .expect("write");
    pod.write_all(b"0\r\n\r\n").await.expect("write");
    let (resp, rest) = read_head(&mut user).await;
    assert!(resp.contains("Transfer-Encoding: chunked\r\n"), "{resp}");
    let mut body = rest;
    read_until(&mut user, &mut body, b"0\r\n\r\n").await;
    assert_eq!(body, b"3\r\nabc\r\n0\r\n\r\n");

    // Two requests in one write (pipelined), and a HEAD: answered in order,
    // the HEAD's Content-Length without a body.
    let two = format!("{}{}", s.head("GET", "one", ""), s.head("HEAD", "two", ""));
    user.write_all(two.as_bytes()).await.expect("write");
    let (seen, _) = read_head(&mut pod).await;
    assert!(seen.starts_with("GET /one "), "{seen}");
    pod.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        .await
        .expect("write");
    let (seen, _) = read_head(&mut pod).await;
    assert!(seen.starts_with("HEAD /two "), "{seen}");
    pod.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
        .await
        .expect("write");
    let (resp, rest) = read_head(&mut user).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The second answer may have come in the same read as the first.
    let mut both = read_n(&mut user, rest, 3).await;
    assert_eq!(&both[..3], b"one");
    let mut second = both.split_off(3);
    read_until(&mut user, &mut second, b"\r\n\r\n").await;
    let resp = String::from_utf8_lossy(&second).into_owned();
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("Content-Length: 99"),
        "{resp}"
    );
    assert!(
        resp.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {resp:?}"
    );

    // One pod connection for all of it up to the HEAD; the body its
    // answer announced could still come, so the next request goes on a
    // new one (see a_body_written_after_a_head_answer_never_becomes_the_next_response).
    user.write_all(s.head("GET", "last", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_to_close(&mut pod).await, b"", "closed after the HEAD");
    let mut fresh = s.pod_conn().await;
    let (seen, _) = read_head(&mut fresh).await;
    assert!(seen.starts_with("GET /last "), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_answers_pass_and_early_answers_close() {
    let s = Setup::new().await;
    let mut user = s.user().await;

    // Expect: 100-continue: the user waits for the pod's 100.
    let head = s.head(
        "POST",
        "big",
        "Content-Length: 4\r\nExpect: 100-continue\r\n",
    );
    user.write_all(head.as_bytes()).await.expect("write");
    let mut pod = s.pod_conn().await;
    let (seen, _) = read_head(&mut pod).await;
    assert!(seen.contains("Expect: 100-continue\r\n"), "{seen}");
    pod.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        .await
        .expect("write");
    let (interim, _) = read_head(&mut user).await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    user.write_all(b"data").await.expect("write");
    assert_eq!(read_n(&mut pod, Vec::new(), 4).await, b"data");
    pod.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    let (resp, _) = read_head(&mut user).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    // A pod that answers before the body is all there: the user gets the
    // answer, and the connection closes (its unread rest cannot be framed).
    let head = s.head("POST", "too-big", "Content-Length: 1000000\r\n");
    user.write_all(head.as_bytes()).await.expect("write");
    user.write_all(b"some").await.expect("write");
    let (seen, _) = read_head(&mut pod).await;
    assert!(seen.starts_with("POST /too-big "), "{seen}");
    pod.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nnope")
        .await
        .expect("write");
    let all = read_to_close(&mut user).await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("nope"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_users_and_close_delimited_answers() {
    let s = Setup::new().await;

    // HTTP/1.0: sent on as 1.0, answered, closed.
    let mut user = s.user().await;
    let req = format!(
        "GET {}ten HTTP/1.0\r\nCookie: {}\r\n\r\n",
        s.t.prefix(APP),
        s.t.cookie()
    );
    user.write_all(req.as_bytes()).await.expect("write");
    let mut pod = s.pod_conn().await;
    let (seen, _) = read_head(&mut pod).await;
    assert!(seen.starts_with("GET /ten HTTP/1.0\r\n"), "{seen}");
    assert!(
        seen.contains("host: 127.0.0.1:"),
        "a Host for the pod: {seen}"
    );
    pod.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .expect("write");
    drop(pod);
    let all = read_to_close(&mut user).await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("hi"), "{text}");

    // An answer without a length runs until the pod closes; so does the
    // user's connection.
    let mut user = s.user().await;
    user.write_all(s.head("GET", "stream", "").as_bytes())
        .await
        .expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    pod.write_all(b"HTTP/1.1 200 OK\r\n\r\npart one, ")
        .await
        .expect("write");
    pod.write_all(b"part two").await.expect("write");
    drop(pod);
    let all = read_to_close(&mut user).await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("part one, part two"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_or_oversized_requests_never_reach_the_pod() {
    let s = Setup::new().await;
    for (extra, want) in [
        (
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "HTTP/1.1 400",
        ),
        ("Transfer-Encoding: gzip, chunked\r\n", "HTTP/1.1 400"),
        ("Content-Length: 3\r\nContent-Length: 5\r\n", "HTTP/1.1 400"),
        (
            &format!("X-Big: {}\r\n", "a".repeat(70_000)),
            "HTTP/1.1 431",
        ),
    ] {
        let mut user = s.user().await;
        let head = s.head("POST", "x", extra);
        // The oversized head is refused before it is all sent.
        let _ = user.write_all(head.as_bytes()).await;
        let all = read_to_close(&mut user).await;
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with(want), "{extra:.60}: {text}");
    }
    // A chunked body with a bad size line: 400 and closed.
    let mut user = s.user().await;
    let head = s.head("POST", "x", "Transfer-Encoding: chunked\r\n");
    user.write_all(format!("{head}zz\r\n").as_bytes())
        .await
        .expect("write");
    let all = read_to_close(&mut user).await;
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 400"));
    // The pod never saw a connection.
    assert!(
        timeout(Duration::from_millis(300), s.pods.accept())
            .await
            .is_err(),
        "nothing reached the pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_closes_after_each_answer_costs_no_request() {
    let s = Setup::new().await;
    let pods = s.pods;
    // The pod answers one request per connection and closes it, without
    // saying so.
    let server = tokio::spawn(async move {
        let mut served = 0;
        while served < 5 {
            let (mut c, _) = pods.accept().await.expect("accept");
            let (seen, _) = read_head(&mut c).await;
            assert!(seen.starts_with("GET /n"), "{seen}");
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .expect("write");
            served += 1;
        }
    });
    let mut user = TcpStream::connect(s.proxy).await.expect("connect");
    for i in 0..5 {
        let req = format!(
            "GET {}n{i} HTTP/1.1\r\nHost: h\r\nCookie: {}\r\n\r\n",
            s.t.prefix(APP),
            s.t.cookie()
        );
        user.write_all(req.as_bytes()).await.expect("write");
        let (resp, rest) = read_head(&mut user).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "request {i}: {resp}");
        assert_eq!(read_n(&mut user, rest, 2).await, b"ok");
    }
    timeout(LIMIT, server)
        .await
        .expect("in time")
        .expect("pod served all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_leaves_mid_request_frees_the_ticket() {
    let s = Setup::new().await;
    let mut user = s.user().await;
    user.write_all(s.head("GET", "slow", "").as_bytes())
        .await
        .expect("write");
    // The pod never answers; the user gives up.
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    drop(user);
    // The open request no longer holds the ticket: it expires as unused.
    wait_for(LIMIT, || async {
        metric(&s._host, "k8sticket_current_users_total").await == 0.0
    })
    .await;
    // And the pod's connection was dropped with the request.
    let mut buf = [0u8; 1];
    let n = timeout(LIMIT, pod.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_users_are_closed() {
    let pods = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut c = config();
    c.demo.replicas = 0;
    c.demo.pods_max = 0;
    c.demo.tickets_spare = 0;
    c.demo.static_backends = vec![pods.local_addr().expect("addr")];
    c.proxy.header_timeout_ms = 400;
    c.proxy.idle_timeout_ms = 800;
    let host = start(c, 1).await;

    // Half a head, then nothing: closed after the header timeout (checked
    // every 200 ms here), long before the idle one would matter.
    let started = std::time::Instant::now();
    let mut slow = TcpStream::connect(host.proxy_addr).await.expect("connect");
    slow.write_all(b"GET /demo/ HTTP/1.1\r\nHost: h")
        .await
        .expect("write");
    assert!(read_to_close(&mut slow).await.is_empty());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // A served request, then silence: closed after the idle timeout.
    let started = std::time::Instant::now();
    let mut idle = TcpStream::connect(host.proxy_addr).await.expect("connect");
    idle.write_all(b"GET /demo/ HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\n\r\n")
        .await
        .expect("write");
    let all = read_to_close(&mut idle).await;
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticket_socket_answers_at_once_and_reads_frames_sent_with_the_handshake() {
    let s = Setup::new().await;
    const HANDSHAKE: &str = "GET /demo/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    // The handshake and the user's close (masked, code 1000) in one write:
    // the ticket comes with the 101, and the close already sent ends the
    // session without the one-second wait for it.
    let mut user = s.user().await;
    let mut first = HANDSHAKE.as_bytes().to_vec();
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    first.extend_from_slice(&[0x88, 0x82]);
    first.extend_from_slice(&mask);
    first.extend_from_slice(&[0x03 ^ mask[0], 0xe8 ^ mask[1]]);
    let started = std::time::Instant::now();
    user.write_all(&first).await.expect("write");
    let all = read_to_close(&mut user).await;
    let took = started.elapsed();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&all[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455's example key and its answer.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    let frames = &all[end..];
    assert_eq!(frames[0], 0x81, "a text frame first: {frames:?}");
    let len = usize::from(frames[1]);
    let text = std::str::from_utf8(&frames[2..2 + len]).expect("utf-8");
    assert!(
        text.starts_with("tkn#") && text.contains("@demo-static-0@"),
        "{text}"
    );
    assert_eq!(
        &frames[2 + len..],
        [0x88, 0x02, 0x03, 0xe8],
        "then a normal close"
    );
    assert!(took < Duration::from_millis(900), "closed after {took:?}");

    // Not a WebSocket handshake: a plain 400, and an upgrade is closed.
    let mut user = s.user().await;
    user.write_all(b"GET /demo/ws HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .expect("write");
    let (head, rest) = read_head(&mut user).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let body = read_n(
        &mut user,
        rest,
        "This endpoint speaks WebSocket only.\n".len(),
    )
    .await;
    assert_eq!(body, b"This endpoint speaks WebSocket only.\n");
    let mut user = s.user().await;
    user.write_all(
        b"GET /demo/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    )
    .await
    .expect("write");
    let all = String::from_utf8(read_to_close(&mut user).await).expect("ascii");
    assert!(
        all.starts_with("HTTP/1.1 400") && all.contains("connection: close\r\n"),
        "{all}"
    );
}

/// The ticket is in use (1) or freed (0): waits for `users` tickets in use.
async fn wait_users(s: &Setup, users: f64) {
    wait_for(LIMIT, || async {
        metric(&s._host, "k8sticket_current_users_total").await == users
    })
    .await;
}

/// Has the peer closed (or reset) the connection? Waits for it.
async fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    timeout(LIMIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_gets_408_and_frees_ticket_and_pod_connection() {
    let s = Setup::tuned(|c| c.proxy.body_timeout_ms = 300).await;
    let mut user = s.user().await;
    let started = std::time::Instant::now();
    user.write_all(
        s.head("POST", "upload", "Content-Length: 100\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    user.write_all(b"0123456789").await.expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    // The user sends nothing more: 408, closed, after the body bound.
    let all = String::from_utf8(read_to_close(&mut user).await).expect("ascii");
    let took = started.elapsed();
    assert!(all.starts_with("HTTP/1.1 408"), "{all}");
    assert!(all.contains("connection: close\r\n"), "{all}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // The half-sent request's pod connection is not kept for anyone.
    assert!(closed_by_peer(&mut pod).await, "pod connection closed");
    wait_users(&s, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_does_not_answer_gets_504_and_frees_the_ticket() {
    let s = Setup::tuned(|c| c.proxy.response_timeout_ms = 300).await;
    let mut user = s.user().await;
    let started = std::time::Instant::now();
    user.write_all(s.head("GET", "never", "").as_bytes())
        .await
        .expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    let all = String::from_utf8(read_to_close(&mut user).await).expect("ascii");
    let took = started.elapsed();
    assert!(all.starts_with("HTTP/1.1 504"), "{all}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(closed_by_peer(&mut pod).await, "pod connection closed");
    wait_users(&s, 0.0).await;

    // A pod that stops in the middle of a body: the user's connection is
    // closed (the head is out: no status can be sent any more).
    let t = ticket(s.proxy, APP, LIMIT).await;
    let mut user = s.user().await;
    let head = format!(
        "GET {}half HTTP/1.1\r\nHost: h\r\nCookie: {}\r\n\r\n",
        t.prefix(APP),
        t.cookie()
    );
    user.write_all(head.as_bytes()).await.expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    pod.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        .await
        .expect("write");
    let all = String::from_utf8(read_to_close(&mut user).await).expect("ascii");
    assert!(
        all.starts_with("HTTP/1.1 200") && all.ends_with("half"),
        "{all}"
    );
    assert!(closed_by_peer(&mut pod).await, "pod connection closed");
    wait_users(&s, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_does_not_read_is_closed_and_frees_the_ticket() {
    let s = Setup::tuned(|c| c.proxy.send_timeout_ms = 300).await;
    let mut user = s.user().await;
    user.write_all(s.head("GET", "big", "").as_bytes())
        .await
        .expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    // More than the sockets between pod and user can buffer; the user
    // never reads a byte of it.
    const BIG: usize = 256 << 20;
    let writer = tokio::spawn(async move {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
        pod.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..BIG >> 20 {
            pod.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    wait_users(&s, 0.0).await;
    // wicket gave up on the user, so the pod's connection went too.
    let written = timeout(LIMIT, writer)
        .await
        .expect("the pod's writes end")
        .expect("joined");
    assert!(written.is_err(), "the pod connection was closed");
    drop(user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_and_frees_the_ticket() {
    let s = Setup::tuned(|c| c.proxy.tunnel_idle_timeout_ms = 400).await;
    let mut user = s.user().await;
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    user.write_all(s.head("GET", "socket", upgrade).as_bytes())
        .await
        .expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    pod.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .expect("write");
    let (head, _) = read_head(&mut user).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Traffic keeps the tunnel open well past its idle bound.
    for i in 0..8u8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        user.write_all(&[i]).await.expect("tunnel open");
        let mut b = [0u8; 1];
        timeout(LIMIT, pod.read_exact(&mut b))
            .await
            .expect("in time")
            .expect("byte through");
        assert_eq!(b[0], i);
    }
    // Then silence: closed on both sides, ticket freed.
    let started = std::time::Instant::now();
    assert!(closed_by_peer(&mut user).await, "user side closed");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(closed_by_peer(&mut pod).await, "pod side closed");
    wait_users(&s, 0.0).await;
}

/// A provider for an app whose pods are given, never created.
struct NoProvider;

impl wicket::provider::PodProvider for NoProvider {
    fn create<'a>(
        &'a self,
        app: &'a str,
    ) -> wicket::provider::BoxFuture<
        'a,
        Result<wicket::state::PodInfo, wicket::provider::ProviderError>,
    > {
        Box::pin(async move {
            Err(wicket::provider::ProviderError {
                action: "create".into(),
                app: app.into(),
                reason: "not in this test".into(),
            })
        })
    }

    fn delete<'a>(
        &'a self,
        app: &'a str,
        _pod: &'a str,
    ) -> wicket::provider::BoxFuture<'a, Result<(), wicket::provider::ProviderError>> {
        Box::pin(async move {
            Err(wicket::provider::ProviderError {
                action: "delete".into(),
                app: app.into(),
                reason: "not in this test".into(),
            })
        })
    }
}

/// Adds a second app `name` to the host, with no pods.
fn second_app(host: &wicket::demo::Demo, name: &str) {
    use std::sync::Arc;
    let limits = wicket::policy::Limits {
        timeout: Duration::from_secs(2),
        ..wicket::policy::Limits::default()
    };
    let engine = wicket::policy::PolicyEngine::new(limits).expect("engine");
    let default = wicket::policy::load_default(&engine).expect("default policy");
    let runner = wicket::policy::PolicyRunner::new(
        name,
        engine,
        Arc::clone(&host.source),
        default,
        host.metrics.policy.clone(),
    );
    let app = wicket::app::App::new(
        wicket::app::Routing {
            name: name.into(),
            dns: false,
        },
        wicket::state::AppSettings::default(),
        Duration::from_secs(60),
        runner,
        Arc::new(NoProvider),
        host.metrics.clone(),
    );
    host.apps.insert(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_of_one_app_opens_nothing_under_another_apps_prefix() {
    let s = Setup::new().await;
    second_app(&s._host, "other");
    // A fresh ticket (setting up the other app took longer than an unused
    // ticket lives).
    let t = ticket(s.proxy, APP, LIMIT).await;
    let mut user = s.user().await;
    // A request on the ticket: it reaches the pod (and the connection
    // remembers the ticket).
    let first = format!(
        "GET {}first HTTP/1.1\r\nHost: users.example\r\nCookie: {}\r\n\r\n",
        t.prefix(APP),
        t.cookie()
    );
    user.write_all(first.as_bytes()).await.expect("write");
    let mut pod = s.pod_conn().await;
    let (head, _) = read_head(&mut pod).await;
    assert!(head.starts_with("GET /first HTTP/1.1\r\n"), "{head}");
    pod.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .expect("write");
    let (head, rest) = read_head(&mut user).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    read_n(&mut user, rest, 2).await;
    // The same pod, uid and cookie under the other app's prefix, on the
    // same connection: not forwarded.
    let cross = format!(
        "GET /other/{}/{}/second HTTP/1.1\r\nHost: users.example\r\nCookie: {}\r\n\r\n",
        t.pod,
        t.uid,
        t.cookie()
    );
    user.write_all(cross.as_bytes()).await.expect("write");
    let (head, _) = read_head(&mut user).await;
    assert!(
        head.starts_with("HTTP/1.1 302") && head.contains("location: /other/\r\n"),
        "{head}"
    );
    let mut buf = [0u8; 64];
    let leaked = timeout(Duration::from_millis(300), pod.read(&mut buf)).await;
    assert!(
        !matches!(leaked, Ok(Ok(n)) if n > 0),
        "the pod of the first app got the request: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ticket_cookie_reaches_a_pod() {
    let s = Setup::new().await;
    let mut user = s.user().await;
    let head = format!(
        "GET {}x HTTP/1.1\r\nHost: h\r\nCookie: a=1; {}; demo-static-0-0123abcd-stoken=other; wicket-bind=00; b=2\r\nCookie: old-pod-u1-stoken=x\r\n\r\n",
        s.t.prefix(APP),
        s.t.cookie()
    );
    user.write_all(head.as_bytes()).await.expect("write");
    let mut pod = s.pod_conn().await;
    let (head, _) = read_head(&mut pod).await;
    let cookies: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("cookie:"))
        .collect();
    assert_eq!(cookies, ["cookie: a=1; b=2"], "{head}");
}

const HANDSHAKE_FIELDS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticket_socket_refuses_pages_of_other_origins() {
    let s = Setup::tuned(|c| c.proxy.ws_origins = vec!["https://portal.example".into()]).await;
    let open = |origin: &str| {
        let origin = if origin.is_empty() {
            String::new()
        } else {
            format!("Origin: {origin}\r\n")
        };
        format!("GET /demo/ws HTTP/1.1\r\nHost: wicket.test:9001\r\n{origin}{HANDSHAKE_FIELDS}\r\n")
    };
    for (origin, allowed) in [
        ("http://evil.example", false),
        ("null", false),
        ("http://wicket.test:9002", false),
        ("http://wicket.test:9001", true),
        ("https://portal.example", true),
        ("", true),
    ] {
        let mut user = s.user().await;
        user.write_all(open(origin).as_bytes())
            .await
            .expect("write");
        let (head, _) = read_head(&mut user).await;
        let status = if allowed {
            "HTTP/1.1 101"
        } else {
            "HTTP/1.1 403"
        };
        assert!(head.starts_with(status), "{origin:?}: {head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_that_never_answers_pings_loses_its_place() {
    let s = Setup::tuned(|c| {
        c.demo.tickets_max = 1;
        c.proxy.ws_ping_ms = 200;
    })
    .await;
    // The only slot is taken: the setup's ticket, kept by a request the
    // pod does not answer.
    let mut holder = s.user().await;
    holder
        .write_all(s.head("GET", "hold", "").as_bytes())
        .await
        .expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    let mut user = s.user().await;
    let req = format!("GET /demo/ws HTTP/1.1\r\nHost: h\r\n{HANDSHAKE_FIELDS}\r\n");
    user.write_all(req.as_bytes()).await.expect("write");
    let (head, _) = read_head(&mut user).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    wait_for(LIMIT, || async {
        metric(&s._host, "wicket_waiting_users").await == 1.0
    })
    .await;
    // The client reads (pings arrive) but never answers: half-open as far
    // as the server can tell. Dropped after a ping goes unanswered.
    let started = std::time::Instant::now();
    assert!(
        closed_by_peer(&mut user).await,
        "the server drops the client"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    wait_for(LIMIT, || async {
        metric(&s._host, "wicket_waiting_users").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_gets_429_past_its_connections() {
    let s = Setup::tuned(|c| c.proxy.connections_per_client = 3).await;
    const ASK: &[u8] = b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n";
    // Three served connections, kept open.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut u = s.user().await;
        u.write_all(ASK).await.expect("write");
        let (head, _) = read_head(&mut u).await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        held.push(u);
    }
    let mut fourth = s.user().await;
    fourth.write_all(ASK).await.expect("write");
    let all = String::from_utf8(read_to_close(&mut fourth).await).expect("ascii");
    assert!(all.starts_with("HTTP/1.1 429"), "{all}");
    assert!(
        all.contains("Too many connections from your address"),
        "{all}"
    );
    // One closes: a new connection is served again.
    drop(held.pop());
    wait_for(LIMIT, || async {
        let mut u = s.user().await;
        if u.write_all(ASK).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 12];
        matches!(timeout(LIMIT, u.read_exact(&mut buf)).await, Ok(Ok(_)))
            && buf.starts_with(b"HTTP/1.1 404")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holds_only_so_many_places_and_sockets() {
    let s = Setup::tuned(|c| {
        c.demo.tickets_max = 1;
        c.demo.resume_grace = Duration::from_secs(4);
        c.proxy.places_per_client = 2;
        c.proxy.sockets_per_client = 3;
    })
    .await;
    // The only slot is taken: the setup's ticket, held by an open request.
    let mut holder = s.user().await;
    holder
        .write_all(s.head("GET", "hold", "").as_bytes())
        .await
        .expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    let c = client();
    // Two polls without JavaScript: each leaves a place (kept while away).
    for _ in 0..2 {
        let r = get(&c, s.proxy, "/demo/.wicket/poll", None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(metric(&s._host, "wicket_waiting_users").await, 2.0);
    // A third place: refused, at once.
    let r = get(&c, s.proxy, "/demo/.wicket/poll", None, &[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    // And on the ticket socket: a message, then a close, no place.
    let mut ws = connect_ws(s.proxy, APP).await;
    let session = read_ticket(&mut ws, LIMIT).await;
    assert!(session.ticket.is_none());
    assert!(
        session
            .messages
            .iter()
            .any(|m| m.contains("Too many people are waiting from your address")),
        "{:?}",
        session.messages
    );
    assert_eq!(metric(&s._host, "wicket_waiting_users").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_gets_429_past_its_waiting_room_sockets() {
    let s = Setup::tuned(|c| {
        c.demo.tickets_max = 1;
        c.proxy.sockets_per_client = 1;
    })
    .await;
    // The only slot is taken: the setup's ticket, held by an open request.
    let mut holder = s.user().await;
    holder
        .write_all(s.head("GET", "hold", "").as_bytes())
        .await
        .expect("write");
    let mut pod = s.pod_conn().await;
    read_head(&mut pod).await;
    // One waiting-room socket, open: the client's one.
    let _first = connect_ws(s.proxy, APP).await;
    wait_for(LIMIT, || async {
        metric(&s._host, "wicket_waiting_users").await == 1.0
    })
    .await;
    let mut second = s.user().await;
    let req = format!("GET /demo/ws HTTP/1.1\r\nHost: h\r\n{HANDSHAKE_FIELDS}\r\n");
    second.write_all(req.as_bytes()).await.expect("write");
    let all = String::from_utf8(read_to_close(&mut second).await).expect("ascii");
    assert!(all.starts_with("HTTP/1.1 429"), "{all}");
    // A poll is a waiting-room socket too.
    let r = get(&client(), s.proxy, "/demo/.wicket/poll", None, &[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(metric(&s._host, "wicket_waiting_users").await, 1.0);
}

// Regression tests of issue #20 ("Hardening the edge"), one per item:
// each failed on the code before the change.

/// Sends `raw` on a new user connection and reads the head the pod gets.
async fn to_pod(s: &Setup, raw: &str) -> (TcpStream, TcpStream, String, Vec<u8>) {
    let mut user = s.user().await;
    user.write_all(raw.as_bytes()).await.expect("write");
    let mut pod = s.pod_conn().await;
    let (seen, rest) = read_head(&mut pod).await;
    (user, pod, seen, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loose_chunk_line_in_a_request_is_refused() {
    let s = Setup::new().await;
    // `3 3`: once read as size 3 with an "extension" and forwarded.
    let head = s.head("POST", "x", "Transfer-Encoding: chunked\r\n");
    let text = s.refused(&format!("{head}3 3\r\nabc\r\n0\r\n\r\n")).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    s.no_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loose_chunk_line_from_a_pod_ends_both_connections() {
    let s = Setup::new().await;
    let (mut user, mut pod, _, _) = to_pod(&s, &s.head("GET", "bad", "")).await;
    pod.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 3\r\nabc\r\n0\r\n\r\n")
        .await
        .expect("write");
    let got = read_to_close(&mut user).await;
    assert!(!String::from_utf8_lossy(&got).contains("abc"), "{got:?}");
    assert_eq!(
        read_to_close(&mut pod).await,
        b"",
        "the pod connection is closed"
    );
    // Not pooled: the next request needs a new pod connection.
    let (_, _, seen, _) = to_pod(&s, &s.head("GET", "next", "")).await;
    assert!(seen.starts_with("GET /next "), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_extensions_are_not_forwarded() {
    let s = Setup::new().await;
    let head = s.head("POST", "x", "Transfer-Encoding: chunked\r\n");
    let (mut user, mut pod, _, mut body) =
        to_pod(&s, &format!("{head}3;name=\"v;1\"\r\nabc\r\n0\r\n\r\n")).await;
    read_until(&mut pod, &mut body, b"0\r\n\r\n").await;
    assert_eq!(String::from_utf8_lossy(&body), "3\r\nabc\r\n0\r\n\r\n");
    pod.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\n\r\n")
        .await
        .expect("write");
    let (_, mut body) = read_head(&mut user).await;
    read_until(&mut user, &mut body, b"0\r\n\r\n").await;
    assert_eq!(String::from_utf8_lossy(&body), "2\r\nok\r\n0\r\n\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_are_dropped_unless_configured() {
    let s = Setup::new().await;
    let head = s.head("POST", "x", "Transfer-Encoding: chunked\r\n");
    let (mut user, mut pod, _, mut body) =
        to_pod(&s, &format!("{head}3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")).await;
    read_until(&mut pod, &mut body, b"0\r\n\r\n").await;
    assert_eq!(String::from_utf8_lossy(&body), "3\r\nabc\r\n0\r\n\r\n");
    pod.write_all(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-R: 1\r\n\r\n",
    )
    .await
    .expect("write");
    let (_, mut body) = read_head(&mut user).await;
    read_until(&mut user, &mut body, b"0\r\n\r\n").await;
    assert_eq!(String::from_utf8_lossy(&body), "2\r\nok\r\n0\r\n\r\n");

    // proxy.forward_trailers = true: they pass.
    let s = Setup::tuned(|c| c.proxy.forward_trailers = true).await;
    let head = s.head("POST", "x", "Transfer-Encoding: chunked\r\n");
    let (_, mut pod, _, mut body) =
        to_pod(&s, &format!("{head}3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")).await;
    read_until(&mut pod, &mut body, b"0\r\nX-Trailer: 1\r\n\r\n").await;

    // But never a field the proxy checks in a head: a pod that merges
    // trailers would take it for wicket's own.
    let text = s
        .refused(&format!(
            "{head}3\r\nabc\r\n0\r\nX-Forwarded-For: 203.0.113.1\r\n\r\n"
        ))
        .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    s.no_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_beside_transfer_encoding_is_dropped_from_responses() {
    let s = Setup::new().await;
    let (mut user, mut pod, _, _) = to_pod(&s, &s.head("GET", "both", "")).await;
    pod.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await
    .expect("write");
    let (resp, mut body) = read_head(&mut user).await;
    assert!(resp.contains("Transfer-Encoding: chunked\r\n"), "{resp}");
    assert!(
        !resp.to_ascii_lowercase().contains("content-length"),
        "{resp}"
    );
    read_until(&mut user, &mut body, b"0\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_heads_with_bare_lf_reach_the_user_with_crlf() {
    let s = Setup::new().await;
    let (mut user, mut pod, _, _) = to_pod(&s, &s.head("GET", "lf", "")).await;
    pod.write_all(b"HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 2\n\nhi")
        .await
        .expect("write");
    let mut got = Vec::new();
    read_until(&mut user, &mut got, b"hi").await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        !got.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "a bare LF reached the user: {text:?}"
    );
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\nX-A: 1\r\ncontent-length: 2\r\n\r\nhi"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_heads_with_empty_lines_before_the_status_line_reach_the_user_without_them() {
    let s = Setup::new().await;
    for (i, lead) in [&b"\r\n"[..], b"\n", b"\r\n\n"].into_iter().enumerate() {
        let (mut user, mut pod, _, _) = to_pod(&s, &s.head("GET", &format!("lead{i}"), "")).await;
        pod.write_all(&[lead, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"].concat())
            .await
            .expect("write");
        let mut got = Vec::new();
        read_until(&mut user, &mut got, b"hi").await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"),
            "{lead:?}: {text:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_canonical_content_length_is_forwarded() {
    let s = Setup::new().await;
    let head = s.head(
        "POST",
        "len",
        "Content-Length: 003\r\ncontent-length: 3\r\n",
    );
    let (_, mut pod, seen, rest) = to_pod(&s, &format!("{head}abc")).await;
    assert_eq!(
        seen.to_ascii_lowercase().matches("content-length").count(),
        1,
        "{seen}"
    );
    assert!(seen.contains("content-length: 3\r\n"), "{seen}");
    assert_eq!(read_n(&mut pod, rest, 3).await, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_are_routed_by_their_path() {
    let s = Setup::new().await;
    let raw = format!(
        "GET http://users.example{}abs?q=1 HTTP/1.1\r\nHost: other\r\nCookie: {}\r\n\r\n",
        s.t.prefix(APP),
        s.t.cookie()
    );
    let (mut user, mut pod, seen, _) = to_pod(&s, &raw).await;
    assert!(seen.starts_with("GET /abs?q=1 HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("host: users.example\r\n"), "{seen}");
    assert!(!seen.contains("other"), "{seen}");
    pod.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    let (resp, _) = read_head(&mut user).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_without_host_is_refused() {
    let s = Setup::new().await;
    let raw = format!(
        "GET {}x HTTP/1.1\r\nCookie: {}\r\n\r\n",
        s.t.prefix(APP),
        s.t.cookie()
    );
    let text = s.refused(&raw).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    s.no_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_to_other_protocols_are_not_forwarded() {
    let s = Setup::new().await;
    let extra = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n";
    let (mut user, mut pod, seen, _) = to_pod(&s, &s.head("GET", "h2", extra)).await;
    assert!(seen.starts_with("GET /h2 "), "{seen}");
    assert!(!seen.to_ascii_lowercase().contains("upgrade"), "{seen}");
    assert!(!seen.contains("HTTP2-Settings"), "{seen}");
    pod.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    let (resp, _) = read_head(&mut user).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // A WebSocket upgrade still goes through, its 101 with it.
    let extra = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n";
    let (mut user, mut pod, seen, _) = to_pod(&s, &s.head("GET", "ws", extra)).await;
    assert!(seen.contains("upgrade: websocket\r\n"), "{seen}");
    pod.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes")
        .await
        .expect("write");
    let (resp, mut rest) = read_head(&mut user).await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    assert!(
        resp.contains("Upgrade: websocket\r\n") && resp.contains("connection: upgrade\r\n"),
        "{resp}"
    );
    read_until(&mut user, &mut rest, b"frames").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused() {
    let s = Setup::new().await;
    let raw = format!(
        "CONNECT {}x HTTP/1.1\r\nHost: h\r\nCookie: {}\r\n\r\n",
        s.t.prefix(APP),
        s.t.cookie()
    );
    let text = s.refused(&raw).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    s.no_pod().await;
}

/// The Set-Cookie line of a no-JavaScript poll sent with
/// `X-Forwarded-Proto: https`.
async fn poll_cookie(s: &Setup) -> String {
    let text = s
        .refused(
            "GET /demo/.wicket/poll HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\
             X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
        )
        .await;
    text.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("a ticket cookie: {text}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_forwarded_proto_is_not_believed() {
    let s = Setup::new().await;
    let extra = "X-Forwarded-Proto: https\r\n";
    let (_, _, seen, _) = to_pod(&s, &s.head("GET", "who", extra)).await;
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    assert!(!seen.contains("https"), "{seen}");
    // wicket's own scheme decision: no Secure cookie on a client's word.
    let cookie = poll_cookie(&s).await;
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofable_forwarding_fields_are_replaced_or_dropped() {
    let s = Setup::new().await;
    let spoof = "X-Forwarded-For: 203.0.113.7\r\nForwarded: for=203.0.113.7\r\n\
                 X-Real-IP: 203.0.113.7\r\nX_Forwarded_For: 203.0.113.7\r\n\
                 X-Forwarded-Host: evil.example\r\n";
    let (_, _, seen, _) = to_pod(&s, &s.head("GET", "who", spoof)).await;
    for want in [
        "x-forwarded-for: 127.0.0.1\r\n",
        "forwarded: for=127.0.0.1;host=\"users.example\";proto=http\r\n",
        "x-forwarded-host: users.example\r\n",
    ] {
        assert!(seen.contains(want), "{want:?} missing in {seen}");
    }
    for gone in ["203.0.113.7", "X-Real-IP", "X_Forwarded_For", "evil"] {
        assert!(!seen.contains(gone), "{gone} forwarded: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_believed() {
    let s = Setup::tuned(|c| c.proxy.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let extra =
        "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 1.1.1.1\r\n";
    let (_, _, seen, _) = to_pod(&s, &s.head("GET", "who", extra)).await;
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: https\r\n"), "{seen}");
    assert!(!seen.contains("1.1.1.1"), "{seen}");
    assert!(poll_cookie(&s).await.contains("; Secure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_written_after_a_head_answer_never_becomes_the_next_response() {
    let s = Setup::new().await;
    let (mut user, mut pod, seen, _) = to_pod(&s, &s.head("HEAD", "page", "")).await;
    assert!(seen.starts_with("HEAD /page "), "{seen}");
    // A HEAD handler that writes its body anyway, after the head: its bytes
    // come late, once wicket has sent the user the head.
    pod.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
        .await
        .expect("write");
    let (resp, _) = read_head(&mut user).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    user.write_all(s.head("GET", "next", "").as_bytes())
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The late "body" looks like a response; it must not answer the GET.
    let _ = pod
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL")
        .await;
    if let Ok(Ok((mut fresh, _))) = timeout(Duration::from_secs(1), s.pods.accept()).await {
        let (seen, _) = read_head(&mut fresh).await;
        assert!(seen.starts_with("GET /next "), "{seen}");
        fresh
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine")
            .await
            .expect("write");
    }
    let (resp, body) = read_head(&mut user).await;
    let body = read_n(&mut user, body, 4).await;
    assert_eq!(String::from_utf8_lossy(&body), "fine", "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_a_pod_could_read_as_climbing_out_never_reach_it() {
    let s = Setup::new().await;
    // Tomcat and Jetty read `..;x` as `..`; a pod that cuts a fragment
    // reads `a/..#` as `a/..`.
    for rest in [
        "..;/etc",
        "a/..;x=1/..;/etc",
        "%2e%2e;/etc",
        "..%3b/etc",
        "a/..#",
    ] {
        let text = s
            .refused(&s.head("GET", rest, "Connection: close\r\n"))
            .await;
        assert!(text.starts_with("HTTP/1.1 400"), "{rest}: {text}");
    }
    s.no_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_switches_to_another_protocol_than_allowed_gets_502() {
    let s = Setup::new().await;
    let extra = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n";
    // Asked for a WebSocket, the pod switches to h2c (or names nothing):
    // no tunnel (through it the user would reach the pod unchecked).
    for switch in ["Upgrade: h2c\r\n", ""] {
        let (mut user, mut pod, _, _) = to_pod(&s, &s.head("GET", "ws", extra)).await;
        pod.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\n{switch}Connection: Upgrade\r\n\r\nframes"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let (resp, _) = read_head(&mut user).await;
        assert!(resp.starts_with("HTTP/1.1 502"), "{switch:?}: {resp}");
        assert_eq!(
            read_to_close(&mut pod).await,
            b"",
            "the pod connection is closed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_cannot_overwrite_or_delete_wickets_cookies() {
    let s = Setup::new().await;
    let (mut user, mut pod, _, _) = to_pod(&s, &s.head("GET", "cookies", "")).await;
    // The user's ticket cookie deleted, the claim binding overwritten:
    // dropped; the app's own cookie passes.
    let answer = format!(
        "HTTP/1.1 200 OK\r\nSet-Cookie: session=1; Path=/\r\nSet-Cookie: {}-{}-stoken=; Max-Age=0\r\n\
         Set-Cookie: wicket-bind=0; Path=/demo/\r\nContent-Length: 2\r\n\r\nok",
        s.t.pod, s.t.uid
    );
    pod.write_all(answer.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    read_until(&mut user, &mut got, b"ok").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Set-Cookie: session=1; Path=/\r\n"), "{text}");
    assert!(
        !text.contains("stoken") && !text.contains("wicket-bind"),
        "{text}"
    );
}
