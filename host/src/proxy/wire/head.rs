//! Request and response heads: parsed in place, checked for unambiguous
//! framing, and written out again for the next hop.

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

use super::names::{Name, classify, lists, tokens};
use crate::proxy::cookies;

/// Largest request or response head accepted (request line or status
/// line and all header fields).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 128;

/// Uninitialised room for the header fields of one head (initialising
/// 128 fields for every message would cost more than parsing them).
pub type HeaderSlots<'b> = [MaybeUninit<Header<'b>>; MAX_HEADERS];

/// Fresh header slots.
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// How a message's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
}

/// A head that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// More bytes are needed.
    #[error("incomplete message head")]
    Partial,
    /// Larger than [`MAX_HEAD`] or with more than [`MAX_HEADERS`] fields.
    #[error("message head too large")]
    TooLarge,
    /// Not HTTP/1, or framed in a way two parties could read differently.
    #[error("{0}")]
    Invalid(&'static str),
}

fn parse_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        other => HeadError::Invalid(match other {
            httparse::Error::HeaderName => "invalid header name",
            httparse::Error::HeaderValue => "invalid header value",
            httparse::Error::NewLine => "invalid line ending",
            httparse::Error::Status => "invalid status",
            httparse::Error::Token => "invalid token",
            _ => "invalid HTTP version",
        }),
    }
}

fn complete(status: Status<usize>, buffered: usize) -> Result<usize, HeadError> {
    match status {
        Status::Complete(len) if len <= MAX_HEAD => Ok(len),
        Status::Complete(_) => Err(HeadError::TooLarge),
        Status::Partial if buffered >= MAX_HEAD => Err(HeadError::TooLarge),
        Status::Partial => Err(HeadError::Partial),
    }
}

/// A `Content-Length` value: digits only.
fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// What the framing and Connection fields of a head say, before the rules
/// for requests or responses are applied.
#[derive(Default)]
struct Framing {
    /// A Connection field was seen.
    connection: bool,
    /// Its tokens: `close`, `keep-alive`, `upgrade`.
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    length: Option<u64>,
    conflicting_length: bool,
    /// Transfer-Encoding fields seen.
    encodings: usize,
    /// The last transfer coding of the last Transfer-Encoding field.
    chunked_last: bool,
    /// "chunked" exactly, in one field.
    chunked_only: bool,
}

impl Framing {
    fn length(&mut self, value: &[u8]) {
        match (content_length(value), self.length) {
            (None, _) => self.conflicting_length = true,
            (Some(n), Some(m)) if n != m => self.conflicting_length = true,
            (Some(n), _) => self.length = Some(n),
        }
    }

    fn connection(&mut self, value: &[u8]) {
        self.connection = true;
        for t in tokens(value) {
            self.close |= t.eq_ignore_ascii_case(b"close");
            self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            self.upgrade |= t.eq_ignore_ascii_case(b"upgrade");
        }
    }

    /// The connection stays open after this message (RFC 9112 §9.3).
    fn persistent(&self, http10: bool) -> bool {
        if http10 { self.keep_alive } else { !self.close }
    }

    fn encoding(&mut self, value: &[u8]) {
        self.encodings += 1;
        self.chunked_last = tokens(value)
            .last()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        self.chunked_only =
            self.encodings == 1 && value.trim_ascii().eq_ignore_ascii_case(b"chunked");
    }
}

/// A parsed request head; borrows the read buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    /// The method, as sent.
    pub method: &'b str,
    /// The request target, as sent.
    pub target: &'b str,
    /// The request target up to `?`.
    pub path: &'b str,
    /// The query, without `?`.
    pub query: Option<&'b str>,
    /// An HTTP/1.0 request (no chunked coding, no keep-alive here).
    pub http10: bool,
    /// Length of the head in bytes; the body (if any) follows.
    pub len: usize,
    /// How the body is delimited.
    pub body: Body,
    /// The client keeps the connection open after the response.
    pub keep_alive: bool,
    /// The protocol asked for by an upgrade request (`Connection: upgrade`).
    pub upgrade: Option<&'b [u8]>,
    /// The Host field.
    pub host: Option<&'b str>,
    /// `Expect: 100-continue`: the client may wait for an interim response
    /// before it sends the body.
    pub expects_continue: bool,
    headers: &'h [Header<'b>],
    /// What each of `headers` is, found once while parsing.
    names: [Name; MAX_HEADERS],
    /// Some Connection field is present (it may name other fields to drop).
    connection: bool,
}

/// Parses the request head at the start of `buf`.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<RequestHead<'h, 'b>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    let status = ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, slots)
        .map_err(parse_error)?;
    let len = complete(status, buf.len())?;
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = req;
    let (Some(method), Some(target), Some(version)) = (method, path, version) else {
        return Err(HeadError::Invalid("incomplete request line"));
    };
    let http10 = version == 0;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };

    let mut framing = Framing::default();
    let (mut upgrade, mut host, mut expects_continue) = (None, None, false);
    let mut names = [Name::Other; MAX_HEADERS];
    for (h, slot) in headers.iter().zip(names.iter_mut()) {
        *slot = classify(h.name);
        match *slot {
            Name::ContentLength => framing.length(h.value),
            Name::TransferEncoding => framing.encoding(h.value),
            Name::Connection => framing.connection(h.value),
            Name::Upgrade => upgrade = Some(h.value),
            Name::Host => {
                if host.is_some() {
                    return Err(HeadError::Invalid("more than one Host field"));
                }
                host = Some(
                    std::str::from_utf8(h.value)
                        .map_err(|_| HeadError::Invalid("invalid Host field"))?,
                );
            }
            Name::Expect => {
                expects_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }
    if framing.conflicting_length {
        return Err(HeadError::Invalid("invalid or conflicting Content-Length"));
    }
    let body = if framing.encodings > 0 {
        // Both, or a coding the proxy cannot delimit: refused rather than
        // guessed (RFC 9112 §6.3 items 3 and 4; request smuggling).
        if http10 {
            return Err(HeadError::Invalid(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if framing.length.is_some() {
            return Err(HeadError::Invalid(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if !framing.chunked_only {
            return Err(HeadError::Invalid("unsupported Transfer-Encoding"));
        }
        Body::Chunked
    } else {
        match framing.length {
            None | Some(0) => Body::Empty,
            Some(n) => Body::Length(n),
        }
    };
    Ok(RequestHead {
        method,
        target,
        path,
        query,
        http10,
        len,
        body,
        keep_alive: framing.persistent(http10),
        upgrade: upgrade.filter(|_| framing.upgrade && !http10),
        host,
        expects_continue,
        headers,
        names,
        connection: framing.connection,
    })
}

impl<'b> RequestHead<'_, 'b> {
    /// Every header field, as sent.
    pub fn fields(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The values of the Cookie fields.
    pub fn cookies(&self) -> impl Iterator<Item = &'b [u8]> + '_ {
        self.headers
            .iter()
            .zip(self.names)
            .filter(|(_, n)| *n == Name::Cookie)
            .map(|(h, _)| h.value)
    }

    /// A method whose request may be sent again if the connection it went
    /// out on turns out to have been closed (RFC 9110 §9.2.2, as Go's
    /// transport: PUT and DELETE are idempotent but retried by nobody).
    pub fn is_replayable(&self) -> bool {
        matches!(self.method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
    }
}

/// What the proxy changes in a request on its way to the pod.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamHead<'a> {
    /// `pod.path`, starting and ending with `/`.
    pub base_path: &'a str,
    /// The path after the ticket prefix, without its leading `/`.
    pub rest: &'a str,
    /// The ticket prefix the user sees, for `X-Forwarded-Prefix`.
    pub prefix: &'a str,
    /// The user connection's address, appended to `X-Forwarded-For`.
    pub client_ip: &'a str,
    /// Host to send when the client sent none (an HTTP/1.0 client).
    pub default_host: &'a [u8],
    /// The ticket cookie, `(pod, uid)`, removed from the Cookie fields.
    pub ticket: (&'a str, &'a str),
}

/// `X-Forwarded-For` as sent on: the user's own chain, then the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFor {
    /// The user sent none.
    Fresh,
    /// Behind another proxy: its chain comes first.
    Appended,
}

/// The values of the Connection fields among `headers`.
fn connection_values<'b>(headers: &[Header<'b>]) -> impl Iterator<Item = &'b [u8]> {
    headers
        .iter()
        .filter(|h| classify(h.name) == Name::Connection)
        .map(|h| h.value)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the request head for the pod into `out`: the path rewritten to
/// `pod.path` + rest, hop-by-hop fields and the ticket cookie removed, the
/// `X-Forwarded-*` fields set; everything else as the user sent it.
pub fn write_request_head(
    out: &mut Vec<u8>,
    req: &RequestHead<'_, '_>,
    up: &UpstreamHead<'_>,
) -> ForwardedFor {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(up.base_path.as_bytes());
    out.extend_from_slice(up.rest.as_bytes());
    if let Some(q) = req.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(if req.http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    let mut has_proto = false;
    let mut xff = ForwardedFor::Fresh;
    for (h, &name) in req.headers.iter().zip(&req.names) {
        match name {
            n if n.is_hop_by_hop() => continue,
            // Set by the proxy below.
            Name::XForwardedHost | Name::XOriginHost | Name::XForwardedPrefix => continue,
            Name::XForwardedFor => {
                xff = ForwardedFor::Appended;
                continue;
            }
            Name::Cookie => {
                cookies::write_without_ticket(out, h.value, up.ticket.0, up.ticket.1);
                continue;
            }
            Name::Other | Name::XForwardedProto | Name::Expect
                if req.connection && lists(connection_values(req.headers), h.name.as_bytes()) =>
            {
                continue;
            }
            Name::XForwardedProto => has_proto = true,
            _ => {}
        }
        field(out, h.name.as_bytes(), h.value);
    }
    if let Some(proto) = req.upgrade {
        field(out, b"connection", b"upgrade");
        field(out, b"upgrade", proto);
    }
    if req.body == Body::Chunked {
        field(out, b"transfer-encoding", b"chunked");
    }
    if req.host.is_none() {
        field(out, b"host", up.default_host);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if xff == ForwardedFor::Appended {
        for (h, &name) in req.headers.iter().zip(&req.names) {
            if name == Name::XForwardedFor {
                out.extend_from_slice(h.value.trim_ascii());
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(up.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(host) = req.host {
        field(out, b"x-forwarded-host", host.as_bytes());
        field(out, b"x-origin-host", host.as_bytes());
    }
    if !has_proto {
        field(out, b"x-forwarded-proto", b"http");
    }
    field(out, b"x-forwarded-prefix", up.prefix.as_bytes());
    out.extend_from_slice(b"\r\n");
    xff
}

/// A parsed response head; borrows the read buffer.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    /// The status code.
    pub status: u16,
    /// Length of the head in bytes.
    pub len: usize,
    /// How the body is delimited.
    pub body: Body,
    /// The pod keeps the connection open after this response.
    pub keep_alive: bool,
    /// The head can go to the user as it is (HTTP/1.1, no hop-by-hop
    /// field other than Transfer-Encoding, which stays with the body).
    pub verbatim: bool,
    headers: &'h [Header<'b>],
    connection: bool,
}

/// Parses the response head at the start of `buf`; `head_request` says
/// whether it answers a HEAD (which has no body whatever the head says).
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut [MaybeUninit<Header<'b>>],
    head_request: bool,
) -> Result<ResponseHead<'h, 'b>, HeadError> {
    let mut resp = httparse::Response::new(&mut []);
    let status = ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, slots)
        .map_err(parse_error)?;
    let len = complete(status, buf.len())?;
    let (Some(code), Some(version)) = (resp.code, resp.version) else {
        return Err(HeadError::Invalid("incomplete status line"));
    };
    let headers = resp.headers;
    let http10 = version == 0;
    let mut framing = Framing::default();
    let mut other_hop = false;
    for h in headers.iter() {
        let name = classify(h.name);
        match name {
            Name::ContentLength => framing.length(h.value),
            Name::TransferEncoding => framing.encoding(h.value),
            Name::Connection => framing.connection(h.value),
            _ => {}
        }
        other_hop |= name.is_hop_by_hop() && name != Name::TransferEncoding;
    }
    let body = if head_request || (100..200).contains(&code) || code == 204 || code == 304 {
        Body::Empty
    } else if framing.encodings > 0 {
        // RFC 9112 §6.3: Transfer-Encoding wins over Content-Length; a body
        // whose last coding is not chunked runs until the close.
        if framing.chunked_last {
            Body::Chunked
        } else {
            Body::UntilClose
        }
    } else if framing.conflicting_length {
        return Err(HeadError::Invalid("invalid or conflicting Content-Length"));
    } else {
        match framing.length {
            Some(0) => Body::Empty,
            Some(n) => Body::Length(n),
            None => Body::UntilClose,
        }
    };
    Ok(ResponseHead {
        status: code,
        len,
        body,
        keep_alive: framing.persistent(http10) && body != Body::UntilClose,
        verbatim: !http10 && !other_hop,
        headers,
        connection: framing.connection,
    })
}

/// What the forwarding path needs to remember of a response head once
/// the buffer it was parsed from moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFacts {
    /// The status code.
    pub status: u16,
    /// Length of the head in bytes.
    pub len: usize,
    /// How the body is delimited.
    pub body: Body,
    /// The pod keeps the connection open after this response.
    pub keep_alive: bool,
    /// The head can go to the user as it is.
    pub verbatim: bool,
}

impl ResponseFacts {
    /// An interim (1xx) response other than 101: the final one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

impl ResponseHead<'_, '_> {
    /// The facts of this head.
    pub fn facts(&self) -> ResponseFacts {
        ResponseFacts {
            status: self.status,
            len: self.len,
            body: self.body,
            keep_alive: self.keep_alive,
            verbatim: self.verbatim,
        }
    }

    /// An interim (1xx) response other than 101: the final one follows.
    pub fn is_interim(&self) -> bool {
        self.facts().is_interim()
    }
}

/// Writes the response head for the user into `out`: HTTP/1.1, without
/// hop-by-hop fields (Transfer-Encoding stays: the body is forwarded in
/// the coding it came in), plus `Connection: close` when the proxy closes
/// the user's connection after this response.
pub fn write_response_head(
    out: &mut Vec<u8>,
    raw: &[u8],
    resp: &ResponseHead<'_, '_>,
    close: bool,
) {
    // The status line as sent, from the status code on.
    let line_end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    let status_line = raw[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&raw[..line_end]);
    out.extend_from_slice(b"HTTP/1.1");
    out.extend_from_slice(status_line.get(8..).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers {
        let name = classify(h.name);
        if name.is_hop_by_hop() && name != Name::TransferEncoding {
            continue;
        }
        if resp.connection
            && matches!(name, Name::Other)
            && lists(connection_values(resp.headers), h.name.as_bytes())
        {
            continue;
        }
        field(out, h.name.as_bytes(), h.value);
    }
    if close {
        field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<(RequestHead<'static, 'static>, usize), HeadError> {
        let buf: &'static [u8] = Box::leak(raw.as_bytes().to_vec().into_boxed_slice());
        let slots: &'static mut HeaderSlots<'static> = Box::leak(Box::new(header_slots()));
        let head = parse_request(buf, slots)?;
        let len = head.len;
        Ok((head, len))
    }

    fn resp(raw: &str, head_request: bool) -> Result<ResponseHead<'static, 'static>, HeadError> {
        let buf: &'static [u8] = Box::leak(raw.as_bytes().to_vec().into_boxed_slice());
        let slots: &'static mut HeaderSlots<'static> = Box::leak(Box::new(header_slots()));
        parse_response(buf, slots, head_request)
    }

    const UP: UpstreamHead<'static> = UpstreamHead {
        base_path: "/app/",
        rest: "x/y.js",
        prefix: "/demo/p1/u1",
        client_ip: "192.0.2.9",
        default_host: b"10.0.0.7:3838",
        ticket: ("p1", "u1"),
    };

    fn upstream(raw: &str) -> String {
        let (head, _) = req(raw).expect("valid request");
        let mut out = Vec::new();
        write_request_head(&mut out, &head, &UP);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn request_framing() {
        let (h, len) = req("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nrest").expect("valid");
        assert_eq!((h.method, h.path, h.query), ("GET", "/a", Some("b=1")));
        assert_eq!(len, "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n".len());
        assert_eq!((h.body, h.keep_alive, h.http10), (Body::Empty, true, false));
        let (h, _) = req("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n").expect("valid");
        assert_eq!(h.body, Body::Length(12));
        let (h, _) =
            req("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n").expect("same");
        assert_eq!(h.body, Body::Length(3));
        let (h, _) = req("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").expect("valid");
        assert_eq!(h.body, Body::Chunked);
        let (h, _) = req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").expect("valid");
        assert!(!h.keep_alive);
        let (h, _) = req("GET / HTTP/1.0\r\n\r\n").expect("valid");
        assert!(h.http10 && !h.keep_alive && h.host.is_none());
        let (h, _) =
            req("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").expect("ws");
        assert_eq!(h.upgrade, Some(&b"websocket"[..]));
        let (h, _) = req("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").expect("no token");
        assert_eq!(
            h.upgrade, None,
            "Upgrade without Connection: upgrade is no upgrade"
        );
        let (h, _) = req("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .expect("valid");
        assert!(h.expects_continue && !h.is_replayable());
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /\0 HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(req(bad), Err(HeadError::Invalid(_))),
                "{bad:?} gave {:?}",
                req(bad).map(|(h, _)| h.body)
            );
        }
    }

    #[test]
    fn partial_and_oversized_heads() {
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: x\r\n").err(),
            Some(HeadError::Partial)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(req(&big).err(), Some(HeadError::TooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            req(&format!("GET / HTTP/1.1\r\n{many}\r\n")).err(),
            Some(HeadError::TooLarge)
        );
    }

    #[test]
    fn upstream_head_rewrites_path_and_sets_forwarding_fields() {
        let out = upstream(
            "GET /demo/p1/u1/x/y.js?v=1 HTTP/1.1\r\nHost: apps.example\r\n\
             Cookie: a=1; p1-u1-stoken=secret; b=2\r\nAccept: */*\r\n\
             X-Forwarded-Host: evil\r\nX-Forwarded-Prefix: /evil\r\n\r\n",
        );
        assert_eq!(
            out,
            "GET /app/x/y.js?v=1 HTTP/1.1\r\nHost: apps.example\r\ncookie: a=1; b=2\r\n\
             Accept: */*\r\nx-forwarded-for: 192.0.2.9\r\nx-forwarded-host: apps.example\r\n\
             x-origin-host: apps.example\r\nx-forwarded-proto: http\r\n\
             x-forwarded-prefix: /demo/p1/u1\r\n\r\n"
        );
    }

    #[test]
    fn upstream_head_behind_another_proxy() {
        let out = upstream(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.1\r\n\
             x-forwarded-for: 198.51.100.2 \r\nX-Forwarded-Proto: https\r\n\r\n",
        );
        assert!(
            out.contains("x-forwarded-for: 203.0.113.1, 198.51.100.2, 192.0.2.9\r\n"),
            "{out}"
        );
        assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
        assert!(!out.contains("x-forwarded-proto: http\r\n"), "{out}");
    }

    #[test]
    fn upstream_head_drops_hop_by_hop_fields() {
        let out = upstream(
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret-Hop\r\n\
             X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
             Proxy-Authorization: Basic x\r\nTransfer-Encoding: chunked\r\nX-App: stays\r\n\r\n",
        );
        for gone in [
            "Connection",
            "X-Secret-Hop",
            "Keep-Alive",
            "TE:",
            "Proxy-Auth",
        ] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(out.contains("X-App: stays\r\n"));
        assert!(
            out.contains("transfer-encoding: chunked\r\n"),
            "re-added for the body"
        );
        let ws = upstream(
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: k\r\n\r\n",
        );
        assert!(
            ws.contains("connection: upgrade\r\nupgrade: websocket\r\n"),
            "{ws}"
        );
        assert!(ws.contains("Sec-WebSocket-Key: k\r\n"));
        let only_ticket = upstream("GET / HTTP/1.1\r\nHost: h\r\nCookie: p1-u1-stoken=s\r\n\r\n");
        assert!(
            !only_ticket.to_ascii_lowercase().contains("cookie"),
            "{only_ticket}"
        );
    }

    #[test]
    fn upstream_head_for_an_http10_client() {
        let out = upstream("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(out.starts_with("GET /app/x/y.js HTTP/1.0\r\n"), "{out}");
        assert!(out.contains("host: 10.0.0.7:3838\r\n"), "{out}");
        assert!(!out.contains("keep-alive"), "{out}");
        assert!(!out.contains("x-forwarded-host"), "{out}");
    }

    #[test]
    fn response_framing() {
        let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).expect("ok");
        assert_eq!(
            (r.status, r.body, r.keep_alive, r.verbatim),
            (200, Body::Length(5), true, true)
        );
        let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).expect("ok");
        assert_eq!(r.body, Body::Empty, "HEAD has no body");
        let r = resp(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            false,
        )
        .expect("ok");
        assert_eq!(r.body, Body::Empty);
        let r = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .expect("ok");
        assert_eq!((r.body, r.verbatim), (Body::Chunked, true));
        let r = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
        )
        .expect("TE wins");
        assert_eq!(r.body, Body::Chunked);
        let r = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).expect("ok");
        assert_eq!((r.body, r.keep_alive), (Body::UntilClose, false));
        let r = resp("HTTP/1.1 200 OK\r\n\r\n", false).expect("ok");
        assert_eq!((r.body, r.keep_alive), (Body::UntilClose, false));
        let r = resp(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .expect("ok");
        assert_eq!(
            (r.body, r.keep_alive, r.verbatim),
            (Body::Empty, false, false)
        );
        let r = resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).expect("ok");
        assert!(!r.keep_alive && !r.verbatim);
        let r = resp("HTTP/1.1 100 Continue\r\n\r\n", false).expect("ok");
        assert!(r.is_interim());
        let r = resp(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            false,
        )
        .expect("ok");
        assert!(!r.is_interim());
        assert!(matches!(
            resp(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            ),
            Err(HeadError::Invalid(_))
        ));
    }

    #[test]
    fn response_head_rewrite() {
        let raw = "HTTP/1.0 200 Fine Thanks\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
                   Keep-Alive: timeout=5\r\nContent-Length: 2\r\nX-App: 1\r\n\r\n";
        let r = resp(raw, false).expect("ok");
        let mut out = Vec::new();
        write_response_head(&mut out, raw.as_bytes(), &r, true);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\nX-App: 1\r\nconnection: close\r\n\r\n"
        );
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\n\r\n";
        let r = resp(raw, false).expect("ok");
        let mut out = Vec::new();
        write_response_head(&mut out, raw.as_bytes(), &r, false);
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }
}
