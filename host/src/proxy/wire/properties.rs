//! Property tests (proptest) over the head parsers and the chunked
//! scanner: whatever the bytes, an answer and no panic; and what is
//! accepted is written out in a form the parser reads the same way.

use proptest::prelude::*;

use super::*;

const UP: UpstreamHead<'static> = UpstreamHead {
    base_path: "/app/",
    rest: "x",
    prefix: "/demo/p/u",
    client_ip: "192.0.2.1",
    trusted: false,
    scheme: "http",
    default_host: b"10.0.0.1:80",
    ticket: ("p", "u"),
};

/// Pieces of request and response heads, valid and not.
fn head_line() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "Host: h\r\n",
        "Host: h:8080\r\n",
        "Host: \r\n",
        "Content-Length: 5\r\n",
        "Content-Length: 005\r\n",
        "Content-Length: 0\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: -1\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Connection: close\r\n",
        "Connection: keep-alive, X-Hop\r\n",
        "Connection: upgrade\r\n",
        "Upgrade: websocket\r\n",
        "Upgrade: h2c\r\n",
        "X-Hop: 1\r\n",
        "Keep-Alive: 5\r\n",
        "Cookie: a=1; p-u-stoken=t\r\n",
        "X-Forwarded-For: 203.0.113.9\r\n",
        "X_Forwarded_For: 203.0.113.9\r\n",
        "Forwarded: for=1.2.3.4\r\n",
        "Expect: 100-continue\r\n",
        "X-App: v\r\n",
        "X: a\r\n b\r\n",
        "X-Bare: lf\n",
        "Bad Name: 1\r\n",
    ])
    .prop_map(str::to_owned)
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let line = prop::sample::select(vec![
        "GET /demo/p/u/x HTTP/1.1\r\n",
        "POST /a?b=c HTTP/1.1\r\n",
        "GET http://h/demo/p/u/x?q HTTP/1.1\r\n",
        "GET HTTPS://h:1 HTTP/1.1\r\n",
        "OPTIONS * HTTP/1.1\r\n",
        "HEAD / HTTP/1.0\r\n",
        "CONNECT h:443 HTTP/1.1\r\n",
        "GET x HTTP/1.1\r\n",
        "GET / HTTP/1.2\r\n",
    ]);
    (line, prop::collection::vec(head_line(), 0..8))
        .prop_map(|(l, fields)| format!("{l}{}\r\nhello", fields.concat()).into_bytes())
}

fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    let line = prop::sample::select(vec![
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 200 OK\n",
        "HTTP/1.0 404 Not Found\r\n",
        "HTTP/1.1 204 No Content\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n",
        "HTTP/1.1 100 Continue\r\n",
        "HTTP/1.1 304 Not Modified\r\n",
        // Empty lines before the status line (httparse skips them).
        "\nHTTP/1.1 200 OK\r\n",
        "\r\nHTTP/1.1 200 OK\r\n",
    ]);
    let end = prop::sample::select(vec!["\r\n", "\n"]);
    (line, prop::collection::vec(head_line(), 0..8), end)
        .prop_map(|(l, fields, end)| format!("{l}{}{end}hello", fields.concat()).into_bytes())
}

/// A chunked body from chunk-size lines of every kind (valid and loose),
/// line ends and trailers.
fn chunked_bytes() -> impl Strategy<Value = Vec<u8>> {
    let size = prop::sample::select(vec![
        "5",
        "05",
        "5;a",
        "5;a=b",
        "5 ;a",
        "5;a=\"x y\"",
        "5;a=\"q\\\"\"",
        "5 5",
        "5 ",
        " 5",
        "5;",
        "+5",
        "0x5",
        "5\t;\ta\t=\tb",
        "5;a=b c",
        "5;a=",
        "6",
        "4",
    ]);
    let end = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n", "\r"]);
    let chunk = (size, end.clone(), end).prop_map(|(s, e1, e2)| format!("{s}{e1}hello{e2}"));
    let trailer = prop::sample::select(vec![
        "",
        "",
        "X-T: 1\r\n",
        "X-T:1\r\nY: 2\r\n",
        "X-T: 1\n",
        " X: 1\r\n",
        "X T: 1\r\n",
        ": 1\r\n",
    ]);
    (prop::collection::vec(chunk, 0..4), trailer)
        .prop_map(|(chunks, t)| format!("{}0\r\n{t}\r\nGET", chunks.concat()).into_bytes())
}

/// Runs `bytes` through a chunked scanner, split at `split`: the end
/// (when found) and what goes on.
fn scan_split(bytes: &[u8], split: usize, trailers: Trailers) -> Option<(usize, Vec<u8>)> {
    let split = split.min(bytes.len());
    let mut s = ChunkedScanner::new(trailers);
    let (mut a, mut b) = (bytes[..split].to_vec(), bytes[split..].to_vec());
    let first = s.scan(&mut a).ok()?;
    let mut kept = a[..first.kept].to_vec();
    if s.is_done() {
        return Some((first.taken, kept));
    }
    let second = s.scan(&mut b).ok()?;
    kept.extend_from_slice(&b[..second.kept]);
    s.is_done().then_some((split + second.taken, kept))
}

/// The rest of a ticket path, from pieces a traversal could be made of.
fn rest_bytes() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "a", ".", "..", "%2e", "%2E", ";", ";x=1", "%3b", "/", "\\", "%2f", "%5C", "#", "%00", "%",
        "%25",
    ]);
    prop::collection::vec(piece, 0..10).prop_map(|v| v.concat())
}

/// How deep below the pod's base path `rest` ends up, read by a server as
/// lenient as any: cut at `#`, `\` and encoded slashes as `/`, `%2e` and
/// `%3b` decoded, `;` parameters dropped, dot segments resolved. `None`
/// when it climbs above the base.
fn lenient_depth(rest: &str) -> Option<usize> {
    let rest = rest.split('#').next().unwrap_or("").to_ascii_lowercase();
    let rest = rest
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/");
    let mut depth = 0usize;
    for seg in rest.split('/') {
        let seg = seg.replace("%2e", ".").replace("%3b", ";");
        match seg.split(';').next().unwrap_or("") {
            "." => {}
            ".." => depth = depth.checked_sub(1)?,
            _ => depth += 1,
        }
    }
    Some(depth)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn an_accepted_rest_never_climbs_out_of_the_pods_base_path(rest in rest_bytes()) {
        if crate::proxy::routes::check_rest(&rest).is_ok() {
            prop_assert!(lenient_depth(&rest).is_some(), "{:?} climbs out", rest);
        }
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), head in any::<bool>()) {
        let mut slots = header_slots();
        if let Ok(h) = parse_request(&bytes, &mut slots) {
            let mut out = Vec::new();
            write_request_head(&mut out, &h, &UP);
        }
        let mut slots = header_slots();
        if let Ok(r) = parse_response(&bytes, &mut slots, head) {
            let mut out = Vec::new();
            write_response_head(&mut out, &bytes[..r.len], &r, head);
        }
        let _ = scan_split(&bytes, bytes.len() / 2, Trailers::Drop);
    }

    #[test]
    fn accepted_requests_are_written_as_they_were_read(bytes in request_bytes(), trusted in any::<bool>()) {
        let mut slots = header_slots();
        let Ok(mut h) = parse_request(&bytes, &mut slots) else { return Ok(()) };
        h.allow_upgrades(&["websocket"]);
        let mut out = Vec::new();
        write_request_head(&mut out, &h, &UpstreamHead { trusted, ..UP });
        let mut again = header_slots();
        let w = parse_request(&out, &mut again).expect("the written head parses");
        prop_assert_eq!(w.len, out.len());
        prop_assert_eq!((w.method, w.path, w.query), (h.method, "/app/x", h.query));
        prop_assert_eq!((w.body, w.content_length, w.http10), (h.body, h.content_length, h.http10));
        prop_assert_eq!(w.upgrade, h.upgrade);
        prop_assert_eq!(w.host.is_some(), true);
        if h.host.is_some() {
            prop_assert_eq!(w.host, h.host);
        }
        prop_assert!(!out.windows(2).any(|p| p[1] == b'\n' && p[0] != b'\r'), "bare LF");
        // Written once more, the head is the same (nothing left to change
        // but the path, which is already the pod's).
        let mut twice = Vec::new();
        write_request_head(&mut twice, &w, &UpstreamHead { base_path: "/app/", rest: "x", trusted: false, ..UP });
        let lower = |v: &[u8]| String::from_utf8_lossy(v).to_ascii_lowercase();
        let fwd = |s: String| {
            let mut v: Vec<String> = s.lines().filter(|l| !l.contains("forward") && !l.contains("origin")).map(str::to_owned).collect();
            v.sort();
            v
        };
        prop_assert_eq!(fwd(lower(&twice)), fwd(lower(&out)));
    }

    #[test]
    fn accepted_responses_are_written_as_they_were_read(bytes in response_bytes(), head in any::<bool>()) {
        let mut slots = header_slots();
        let Ok(r) = parse_response(&bytes, &mut slots, head) else { return Ok(()) };
        // A head passed as it is has no bare LF (the check looks only at
        // the line ends httparse found).
        let bare = bytes[..r.len].iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
        prop_assert!(!(r.verbatim && bare), "{:?}", String::from_utf8_lossy(&bytes[..r.len]));
        let mut out = Vec::new();
        write_response_head(&mut out, &bytes[..r.len], &r, false);
        let mut again = header_slots();
        let w = parse_response(&out, &mut again, head).expect("the written head parses");
        prop_assert_eq!((w.status, w.len), (r.status, out.len()));
        // Framing is kept; a close-delimited body stays one.
        prop_assert_eq!(w.body, r.body);
        prop_assert!(!out.windows(2).any(|p| p[1] == b'\n' && p[0] != b'\r'), "bare LF");
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        prop_assert!(!(text.contains("transfer-encoding") && text.contains("content-length")), "{}", text);
        prop_assert!(text.matches("content-length").count() <= 1, "{}", text);
        if r.status != 101 {
            prop_assert!(w.verbatim, "a written head passes as it is: {}", text);
        }
        let mut twice = Vec::new();
        write_response_head(&mut twice, &out, &w, false);
        prop_assert_eq!(twice, out);
    }

    #[test]
    fn chunked_bodies_end_in_one_place_and_rescan_the_same(
        bytes in chunked_bytes(),
        split in 0usize..200,
        forward in any::<bool>(),
    ) {
        let trailers = if forward { Trailers::Forward } else { Trailers::Drop };
        let whole = scan_split(&bytes, bytes.len(), trailers);
        prop_assert_eq!(scan_split(&bytes, split, trailers), whole.clone());
        if let Some((end, kept)) = whole {
            prop_assert_eq!(&bytes[end..], b"GET");
            // What goes on is a body the scanner reads to its end, unchanged:
            // bare sizes, CRLF, the same data.
            prop_assert_eq!(scan_split(&kept, kept.len(), trailers), Some((kept.len(), kept.clone())));
            prop_assert!(!kept.contains(&b';'));
            prop_assert!(!kept.windows(2).any(|p| p[1] == b'\n' && p[0] != b'\r'));
        }
    }

    #[test]
    fn chunked_scanner_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), split in 0usize..300) {
        if let Some((end, kept)) = scan_split(&bytes, split, Trailers::Drop) {
            prop_assert!(end <= bytes.len() && kept.len() <= end);
        }
    }
}
