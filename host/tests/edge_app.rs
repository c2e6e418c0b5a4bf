//! wicket's own application edge as an outside attacker meets it: the
//! ticket WebSocket's handshake and frames (RFC 6455) over raw TCP, the
//! headers of wicket's own pages, ticket cookies tossed in front of the
//! user's own, and one client's churn counted as arrivals.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const APP: &str = "demo";
const LIMIT: Duration = Duration::from_secs(10);

/// A host whose one pod (`pod`, a socket nobody answers) has one slot,
/// held for a minute by the returned ticket: every newcomer waits.
async fn full_host(pod: &TcpListener) -> (wicket::demo::Demo, Ticket) {
    let mut c = one_pod(pod, 1);
    c.proxy.ticket_expiry_ms = 60_000;
    let host = start(c, 1).await;
    let t = ticket(host.proxy_addr, APP, LIMIT).await;
    (host, t)
}

/// Reads until the peer closes (or the limit).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = timeout(LIMIT, s.read_to_end(&mut all)).await;
    all
}

/// The head of the first response on `s`, and what followed it.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    timeout(LIMIT, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response in time");
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("end") + 4;
    let rest = buf.split_off(end);
    (String::from_utf8_lossy(&buf).into_owned(), rest)
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A ticket socket handshake with `fields` (each line ends in CRLF).
fn handshake(method: &str, fields: &str) -> String {
    format!(
        "{method} /{APP}/ws?resume HTTP/1.1\r\nHost: wicket.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{fields}\r\n"
    )
}

async fn answer_to(proxy: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    s.write_all(raw.as_bytes()).await.expect("write");
    read_head(&mut s).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_socket_handshakes_are_checked_as_rfc_6455_says() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (host, _held) = full_host(&pod).await;
    let key = format!("Sec-WebSocket-Key: {KEY}\r\n");
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    for (method, fields, status) in [
        ("GET", format!("{key}{v13}"), "101"),
        // §4.4: another version is answered 426 with the one spoken here.
        ("GET", format!("{key}Sec-WebSocket-Version: 8\r\n"), "426"),
        ("GET", key.clone(), "426"),
        (
            "GET",
            format!("{key}{v13}Sec-WebSocket-Version: 8\r\n"),
            "426",
        ),
        // §4.2.1: a key is 16 bytes in base64, sent once; the method is GET.
        ("GET", format!("Sec-WebSocket-Key: short\r\n{v13}"), "400"),
        ("GET", format!("Sec-WebSocket-Key: {KEY}x\r\n{v13}"), "400"),
        ("GET", format!("{key}{key}{v13}"), "400"),
        ("GET", v13.to_owned(), "400"),
        ("POST", format!("{key}{v13}"), "405"),
        // A body would be read as frames.
        (
            "GET",
            format!("{key}{v13}Content-Length: 4\r\n\r\nabcd"),
            "400",
        ),
        // No browser sends two Origin fields: the first is not believed.
        (
            "GET",
            format!("{key}{v13}Origin: http://wicket.test\r\nOrigin: http://evil.test\r\n"),
            "403",
        ),
    ] {
        let head = answer_to(host.proxy_addr, &handshake(method, &fields)).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{method} with {fields:?}: {head}"
        );
        if status == "426" {
            assert!(
                head.to_ascii_lowercase()
                    .contains("\r\nsec-websocket-version: 13\r\n"),
                "{head}"
            );
        }
    }
}

/// A client frame (masked unless `unmasked`).
fn frame(first: u8, payload: &[u8], unmasked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let mask_bit = if unmasked { 0 } else { 0x80 };
    match payload.len() {
        n @ 0..126 => f.push(mask_bit | n as u8),
        n @ 126..65536 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if unmasked {
        f.extend_from_slice(payload);
    } else {
        let key = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
    f
}

/// The code of the first close frame among the server's frames in
/// `bytes` (None if there is none).
fn close_code(mut bytes: &[u8]) -> Option<u16> {
    while bytes.len() >= 2 {
        let (op, len) = (bytes[0] & 0x0f, usize::from(bytes[1] & 0x7f));
        let (len, at) = match len {
            126 => (
                usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
                4,
            ),
            127 => return None,
            n => (n, 2),
        };
        let payload = bytes.get(at..at + len)?;
        if op == 8 {
            return Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
        }
        bytes = &bytes[at + len..];
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_that_breaks_the_protocol_gets_a_close_with_its_code() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (host, _held) = full_host(&pod).await;
    let text = 0x81;
    for (what, sent, code) in [
        ("an unmasked frame", frame(text, b"hi", true), 1002),
        ("reserved bits", frame(text | 0x40, b"hi", false), 1002),
        ("a reserved opcode", frame(0x83, b"hi", false), 1002),
        ("a fragmented ping", frame(0x09, b"p", false), 1002),
        (
            "a ping over 125 bytes",
            frame(0x89, &[b'p'; 126], false),
            1002,
        ),
        ("a continuation first", frame(0x80, b"x", false), 1002),
        (
            "text that is not UTF-8",
            frame(text, b"\xff\xfe", false),
            1007,
        ),
        (
            "a message over the limit",
            frame(0x82, &[0; 100_000], false),
            1009,
        ),
        // §5.5.1: a close is answered with a close.
        ("a close", frame(0x88, &1000u16.to_be_bytes(), false), 1000),
        // A close code that may not be sent is a protocol error.
        (
            "a close with code 999",
            frame(0x88, &999u16.to_be_bytes(), false),
            1002,
        ),
    ] {
        let mut user = TcpStream::connect(host.proxy_addr).await.expect("connect");
        let open = handshake(
            "GET",
            &format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"),
        );
        user.write_all(open.as_bytes()).await.expect("write");
        let (head, _) = read_head(&mut user).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // Waiting (the only slot is held): the server reads the frame.
        user.write_all(&sent).await.expect("write");
        let said = read_to_close(&mut user).await;
        assert_eq!(close_code(&said), Some(code), "{what}: {said:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wickets_pages_allow_only_their_own_script_and_framers() {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};

    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut config = config();
    config.demo.replicas = 0;
    config.demo.pods_max = 0;
    config.demo.static_backends = vec![pod.local_addr().expect("addr")];
    config.proxy.ws_origins = vec!["https://portal.example".into()];
    let host = start(config, 0).await;
    let c = client();
    let addr = host.proxy_addr;
    let page = get(&c, addr, "/demo/", None, &[("accept", "text/html")]).await;
    let field = |name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{name} on the waiting page"))
            .to_owned()
    };
    let csp = field("content-security-policy");
    for directive in [
        "default-src 'none'",
        // Framed only by its own origin and the pages that may use the
        // waiting room: a page elsewhere that framed it would have its
        // visitors join the line past the ticket socket's Origin check.
        "frame-ancestors 'self' https://portal.example",
        "connect-src 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    // The page's own inline script and style are the ones allowed.
    let between = |open: &str, close: &str| {
        let (_, rest) = page.body.split_once(open).expect("element");
        rest.split_once(close).expect("element end").0.to_owned()
    };
    let hash = |text: &str| {
        let digest = Sha256::digest(text.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    let script = hash(&between("<script>", "</script>"));
    let style = hash(&between("<style>", "</style>"));
    assert!(csp.contains(&format!("script-src {script};")), "{csp}");
    assert!(csp.contains(&format!("style-src {style};")), "{csp}");
    assert_eq!(field("x-frame-options"), "SAMEORIGIN");
    assert_eq!(field("x-content-type-options"), "nosniff");
    assert_eq!(field("referrer-policy"), "no-referrer");
    // Texts wicket answers itself are never sniffed into HTML either.
    let missing = get(&c, addr, "/no-such-app/x", None, &[]).await;
    assert_eq!(
        missing
            .headers
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_tossed_in_front_of_the_ticket_cookie_does_not_lock_the_user_out() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (host, t) = full_host(&pod).await;
    let name = format!("{}-{}-stoken", t.pod, t.uid);
    // A browser sends both cookies of one name (say, one set with a longer
    // path by another app's page on the same origin) first the longer path.
    for cookies in [
        format!(
            "Cookie: {name}=00000000000000000000000000000000; {name}={}\r\n",
            t.token
        ),
        format!("Cookie: {name}=junk\r\nCookie: {}\r\n", t.cookie()),
    ] {
        let mut user = TcpStream::connect(host.proxy_addr).await.expect("connect");
        let req = format!(
            "GET {}x HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n{cookies}\r\n",
            t.prefix(APP)
        );
        user.write_all(req.as_bytes()).await.expect("write");
        let (mut backend, _) = timeout(LIMIT, pod.accept())
            .await
            .unwrap_or_else(|_| panic!("forwarded with {cookies:?}"))
            .expect("accept");
        let (head, _) = read_head(&mut backend).await;
        assert!(head.starts_with("GET /x HTTP/1.1"), "{head}");
        assert!(
            !head.contains("stoken"),
            "no ticket cookie reaches the pod: {head}"
        );
    }
    // A wrong token alone still opens nothing.
    let mut user = TcpStream::connect(host.proxy_addr).await.expect("connect");
    let req = format!(
        "GET {}x HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nCookie: {name}=00000000000000000000000000000000; {name}=junk\r\n\r\n",
        t.prefix(APP)
    );
    user.write_all(req.as_bytes()).await.expect("write");
    let (head, _) = read_head(&mut user).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sites_page_cannot_take_places_by_poll() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let c = one_pod(&pod, 1);
    let host = start(c, 1).await;
    let web = client();
    let addr = host.proxy_addr;
    // What a browser sends for `<img src=…>` or `fetch(…, {mode: "no-cors"})`
    // on a page of another site, and for a hidden frame.
    let image = [
        ("accept", "image/avif,image/webp,*/*"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "no-cors"),
        ("sec-fetch-dest", "image"),
    ];
    let frame = [
        ("accept", "*/*"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "iframe"),
    ];
    for path in ["/demo/", "/demo/.wicket/poll"] {
        for fields in [&image, &frame] {
            let r = get(&web, addr, path, None, fields).await;
            assert_eq!(r.status, http::StatusCode::FORBIDDEN, "{path} {fields:?}");
            assert!(r.headers.get("set-cookie").is_none());
        }
    }
    assert_eq!(
        metric(&host, "k8sticket_current_free_tickets_total").await,
        1.0
    );
    assert_eq!(metric(&host, "wicket_waiting_users").await, 0.0);
    // The user's own visit (a top-level navigation, from anywhere) and a
    // client without fetch metadata get the slot as before.
    let visit = [
        ("accept", "*/*"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
    ];
    let r = get(&web, addr, "/demo/.wicket/poll", None, &visit).await;
    assert_eq!(r.status, http::StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.headers.get("set-cookie").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_that_stops_reading_loses_its_place() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut c = one_pod(&pod, 1);
    c.proxy.ticket_expiry_ms = 60_000;
    c.proxy.ws_ping_ms = 300;
    let host = start(c, 1).await;
    let _held = ticket(host.proxy_addr, APP, LIMIT).await;
    // A small receive buffer, so that what the server sends piles up in
    // its own send buffer soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut user = socket.connect(host.proxy_addr).await.expect("connect");
    let open = format!(
        "GET /{APP}/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    user.write_all(open.as_bytes()).await.expect("write");
    let (head, _) = read_head(&mut user).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    wait_for(LIMIT, || async {
        metric(&host, "wicket_waiting_users").await == 1.0
    })
    .await;
    // Pings make the server answer (pongs) into a socket never read, until
    // its buffers are full; then the client says nothing more.
    let pings: Vec<u8> = (0..64)
        .flat_map(|_| frame(0x89, &[b'p'; 125], false))
        .collect();
    let flood = async {
        loop {
            if user.write_all(&pings).await.is_err() {
                return;
            }
        }
    };
    let _ = timeout(Duration::from_secs(3), flood).await;
    // Gone as far as the server can tell: it drops the client within a
    // few ping intervals and the place is free.
    wait_for(Duration::from_secs(5), || async {
        metric(&host, "wicket_waiting_users").await == 0.0
    })
    .await;
    drop(user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_foreign_host_name_no_place_is_taken() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut c = one_pod(&pod, 1);
    c.proxy.public_hosts = vec!["Wicket.test".into()];
    let host = start(c, 1).await;
    let socket = |host: &str| {
        format!(
            "GET /{APP}/ws HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let poll = |host: &str| {
        format!(
            "GET /{APP}/.wicket/poll HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nSec-Fetch-Site: same-origin\r\n\r\n"
        )
    };
    // A page of rebound.example, its name pointed at wicket: same origin
    // as far as Origin and Host go.
    for raw in [socket("rebound.example:9001"), poll("rebound.example")] {
        let head = answer_to(host.proxy_addr, &raw).await;
        assert!(head.starts_with("HTTP/1.1 421"), "{raw}: {head}");
    }
    assert_eq!(metric(&host, "wicket_waiting_users").await, 0.0);
    assert_eq!(
        metric(&host, "k8sticket_current_free_tickets_total").await,
        1.0
    );
    // wicket's own name (any case, any port) is served.
    let head = answer_to(host.proxy_addr, &socket("wicket.TEST:9001")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_takes_only_so_many_free_tickets() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut c = one_pod(&pod, 5);
    c.proxy.tickets_per_client = 2;
    let host = start(c, 5).await;
    let addr = host.proxy_addr;
    // One short-lived socket after another, each taking a free ticket.
    for _ in 0..2 {
        ticket(addr, APP, LIMIT).await;
    }
    let mut ws = connect_ws(addr, APP).await;
    let third = read_ticket(&mut ws, LIMIT).await;
    assert!(third.ticket.is_none(), "{:?}", third.messages);
    assert!(
        third
            .messages
            .iter()
            .any(|m| m.contains("from your address")),
        "{:?}",
        third.messages
    );
    let poll = get(&client(), addr, "/demo/.wicket/poll", None, &[]).await;
    assert_eq!(
        poll.status,
        http::StatusCode::TOO_MANY_REQUESTS,
        "{}",
        poll.body
    );
    assert_eq!(
        metric(&host, "k8sticket_current_free_tickets_total").await,
        3.0
    );
    assert_eq!(metric(&host, "wicket_waiting_users").await, 0.0);
    // Unused, the two tickets expire: the client may take one again.
    wait_for(LIMIT, || async {
        metric(&host, "k8sticket_current_free_tickets_total").await == 5.0
    })
    .await;
    ticket(addr, APP, LIMIT).await;
}

/// One join and leave from source address `from` (a loopback address):
/// the ticket socket without a resume id, until its place in line, then a
/// close answered by the server's. Whether it got a place.
async fn join_and_leave(proxy: SocketAddr, from: [u8; 4]) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from((from, 0))).expect("bind");
    let tcp = sock.connect(proxy).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{proxy}/{APP}/ws"), tcp)
        .await
        .expect("handshake");
    let mut placed = false;
    while let Ok(Some(Ok(m))) = timeout(LIMIT, ws.next()).await {
        if let Message::Text(t) = m
            && t.starts_with("pos#")
        {
            placed = true;
            break;
        }
    }
    let _ = ws.close(None).await;
    while let Ok(Some(Ok(_))) = timeout(LIMIT, ws.next()).await {}
    placed
}

/// The whole UTC minute now.
fn minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_joins_and_leaves_are_arrivals_only_up_to_its_places() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut c = one_pod(&pod, 1);
    c.proxy.ticket_expiry_ms = 60_000;
    c.proxy.places_per_client = 8;
    let began = minute();
    let host = start(c, 1).await;
    let addr = host.proxy_addr;
    // The only slot is taken (by 127.0.0.1 too): every newcomer waits.
    let _held = ticket(addr, APP, LIMIT).await;
    let app = host.apps.get(APP).expect("the app");
    let mut placed = 0;
    for _ in 0..200 {
        placed += u32::from(join_and_leave(addr, [127, 0, 0, 1]).await);
    }
    let minutes = (minute() - began + 1) as u32;
    let (per_minute, _) = app.arrivals();
    let churned: u32 = per_minute.iter().sum();
    assert!(placed > 8 * minutes, "each join left its place: {placed}");
    assert!(
        churned <= 8 * minutes && per_minute.iter().all(|&n| n <= 8),
        "{churned} arrivals in {minutes} minute(s): {per_minute:?}"
    );
    assert!(churned >= 8, "{per_minute:?}");
    // Ten other clients (other loopback addresses) each count.
    for i in 2..12 {
        assert!(join_and_leave(addr, [127, 0, 0, i]).await, "127.0.0.{i}");
    }
    let (per_minute, per_hour) = app.arrivals();
    assert_eq!(per_minute.iter().sum::<u32>(), churned + 10);
    assert_eq!(per_hour.iter().sum::<u32>(), churned + 10);
}

/// The value after `w=` in the no-JavaScript page's reload address.
fn resume_id(page: &str) -> String {
    let at = page.find("?w=").expect("a reload with the resume id") + "?w=".len();
    page[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_together_hold_only_so_many_places_in_one_app() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut c = one_pod(&pod, 1);
    c.proxy.ticket_expiry_ms = 60_000;
    // Every request here comes from 127.0.0.1: with no limit per client,
    // it stands for many addresses.
    c.proxy.places_per_client = 0;
    c.proxy.places_per_app = 2;
    let host = start(c, 1).await;
    let addr = host.proxy_addr;
    let _held = ticket(addr, APP, LIMIT).await;
    let web = client();
    // Two places (polls hold a few seconds: both at once), each away
    // after its poll.
    let poll = "/demo/.wicket/poll";
    let two = tokio::join!(
        get(&web, addr, poll, None, &[]),
        get(&web, addr, poll, None, &[])
    );
    let mut rids = Vec::new();
    for r in [two.0, two.1] {
        assert_eq!(r.status, http::StatusCode::OK, "{}", r.body);
        rids.push(resume_id(&r.body));
    }
    assert_eq!(metric(&host, "wicket_waiting_users").await, 2.0);
    // A third: the service cannot take anyone now (not the client's doing).
    let r = get(&web, addr, "/demo/.wicket/poll", None, &[]).await;
    assert_eq!(
        r.status,
        http::StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        r.body
    );
    assert!(r.body.contains("waiting room is full"), "{}", r.body);
    assert!(r.headers.get("retry-after").is_some());
    let mut ws = connect_ws(addr, APP).await;
    let s = read_ticket(&mut ws, LIMIT).await;
    assert!(s.ticket.is_none(), "{:?}", s.messages);
    assert!(
        s.messages
            .iter()
            .any(|m| m == "msg#The waiting room is full. Please try again later."),
        "{:?}",
        s.messages
    );
    assert_eq!(metric(&host, "wicket_waiting_users").await, 2.0);
    // Coming back to one's place is never refused.
    let back: Vec<String> = rids.iter().map(|rid| format!("{poll}?w={rid}")).collect();
    let two = tokio::join!(
        get(&web, addr, &back[0], None, &[]),
        get(&web, addr, &back[1], None, &[])
    );
    for (r, rid) in [two.0, two.1].iter().zip(&rids) {
        assert_eq!(r.status, http::StatusCode::OK, "{}", r.body);
        assert_eq!(&resume_id(&r.body), rid);
    }
    assert_eq!(metric(&host, "wicket_waiting_users").await, 2.0);
}

/// The place in line the no-JavaScript page shows.
fn position(page: &str) -> u32 {
    let at = page.find("id=\"position\"").expect("a place");
    let (_, rest) = page[at..].split_once('>').expect("element");
    rest.split('<')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_link_from_someone_else_resumes_nothing() {
    let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut c = one_pod(&pod, 1);
    c.proxy.ticket_expiry_ms = 60_000;
    // A poll holds for half the grace period (5 s here): each place is
    // away for one hold before it is resumed, 5 s inside its grace.
    c.demo.resume_grace = Duration::from_secs(10);
    let host = start(c, 1).await;
    let addr = host.proxy_addr;
    let _held = ticket(addr, APP, LIMIT).await;
    let web = client();
    let poll = "/demo/.wicket/poll";
    let (alice, victim) = (
        format!("wicket-bind={}", "a".repeat(32)),
        format!("wicket-bind={}", "b".repeat(32)),
    );
    // Alice's browser (it has its binding cookie) and a client that keeps
    // no cookies each take a place.
    let (a, s) = tokio::join!(
        get(&web, addr, poll, Some(&alice), &[]),
        get(&web, addr, poll, None, &[])
    );
    assert_eq!(
        (a.status, s.status),
        (http::StatusCode::OK, http::StatusCode::OK)
    );
    assert!(
        a.headers.get("set-cookie").is_none(),
        "Alice has her binding"
    );
    let set = s
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a binding for the new place");
    assert!(
        set.starts_with("wicket-bind=") && set.contains("HttpOnly"),
        "{set}"
    );
    let given = set.split(';').next().expect("name=value").to_owned();
    let (rid_a, rid_s) = (resume_id(&a.body), resume_id(&s.body));
    let (link_a, link_s) = (format!("{poll}?w={rid_a}"), format!("{poll}?w={rid_s}"));
    // Their links opened elsewhere: in another browser, and (Alice's) by
    // a client without her cookie, even from her address. Each is a new
    // place of its own at the back, not theirs.
    let (v1, v2, bare) = tokio::join!(
        get(&web, addr, &link_a, Some(&victim), &[]),
        get(&web, addr, &link_s, Some(&victim), &[]),
        get(&web, addr, &link_a, None, &[])
    );
    for r in [&v1, &v2, &bare] {
        assert_eq!(r.status, http::StatusCode::OK, "{}", r.body);
        let rid = resume_id(&r.body);
        assert!(rid != rid_a && rid != rid_s, "someone else's place resumed");
    }
    assert_eq!(metric(&host, "wicket_waiting_users").await, 5.0);
    // Each comes back to their own: Alice with her cookie, the client
    // without cookies from its address, and a browser with the binding
    // the first answer gave it.
    let (a2, s2) = tokio::join!(
        get(&web, addr, &link_a, Some(&alice), &[]),
        get(&web, addr, &link_s, None, &[])
    );
    assert_eq!(resume_id(&a2.body), rid_a);
    assert_eq!(resume_id(&s2.body), rid_s);
    // Ahead of the three who came later.
    let mut ahead = [position(&a2.body), position(&s2.body)];
    ahead.sort_unstable();
    assert_eq!(ahead, [1, 2]);
    let s3 = get(&web, addr, &link_s, Some(&given), &[]).await;
    assert_eq!(resume_id(&s3.body), rid_s);
    assert_eq!(position(&s3.body), position(&s2.body));
}
