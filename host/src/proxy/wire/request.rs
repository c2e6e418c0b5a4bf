//! Request heads: parsed in place and checked (framing, target form,
//! Host, upgrades), then written out again for the pod with the proxy's
//! changes (path, hop-by-hop fields, ticket cookie, forwarding fields).

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig};

use super::framing::{
    Body, Framing, HeadError, MAX_HEADERS, complete, field, length_field, parse_error,
    protocols_allowed,
};
use super::names::{Name, classify, lists, tokens};
use crate::proxy::cookies;

/// A parsed request head; borrows the read buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    /// The method, as sent.
    pub method: &'b str,
    /// The request target, as sent.
    pub target: &'b str,
    /// The path of the target (for an absolute-form target, the part
    /// after its authority; `*` for `OPTIONS *`).
    pub path: &'b str,
    /// The query, without `?`.
    pub query: Option<&'b str>,
    /// An HTTP/1.0 request (no chunked coding, no keep-alive here).
    pub http10: bool,
    /// Length of the head in bytes; the body (if any) follows.
    pub len: usize,
    /// How the body is delimited.
    pub body: Body,
    /// The `Content-Length` of the request, when it has one.
    pub content_length: Option<u64>,
    /// The client keeps the connection open after the response.
    pub keep_alive: bool,
    /// The protocol asked for by an upgrade request (`Connection: upgrade`).
    pub upgrade: Option<&'b [u8]>,
    /// The host the request is for: the authority of an absolute-form
    /// target, else the Host field (RFC 9112 §3.2.2).
    pub host: Option<&'b str>,
    /// The target is in absolute form (`GET http://host/path`): the Host
    /// field sent on is its authority.
    pub absolute: bool,
    /// `Expect: 100-continue`: the client may wait for an interim response
    /// before it sends the body.
    pub expects_continue: bool,
    headers: &'h [Header<'b>],
    /// What each of `headers` is, found once while parsing.
    names: [Name; MAX_HEADERS],
    /// Some Connection field is present (it may name other fields to drop).
    connection: bool,
}

/// The three request-target forms a proxied request may use (RFC 9112
/// §3.2); authority-form is CONNECT's, which is refused.
struct Target<'b> {
    path: &'b str,
    query: Option<&'b str>,
    /// The authority of an absolute-form target.
    authority: Option<&'b str>,
}

/// What a byte of a request target is to [`split_query`].
const PLAIN: u8 = 0;
const QUERY: u8 = 1;
const FRAGMENT: u8 = 2;
const REFUSED: u8 = 3;

/// The bytes of a request target that end its path (`?`), are refused in
/// its path (`#`), or anywhere: `"`, `<`, `>` and `` ` `` are never raw in
/// a URI (RFC 3986; browsers always percent-encode them), and the `http`
/// crate, hence a hyper-based pod, refuses some of them where httparse
/// takes them. A table: one look per byte.
static TARGET_BYTES: [u8; 256] = {
    let mut t = [PLAIN; 256];
    t[b'?' as usize] = QUERY;
    t[b'#' as usize] = FRAGMENT;
    t[b'"' as usize] = REFUSED;
    t[b'<' as usize] = REFUSED;
    t[b'>' as usize] = REFUSED;
    t[b'`' as usize] = REFUSED;
    t
};

/// Splits a target's path from its query, in one pass over it. A `#` in
/// the path is refused (RFC 9112 §3.2: a request target has no fragment; a
/// pod or the `http` crate cuts it off, so it would route on another path
/// than wicket did); in the query it is the query's.
fn split_query(s: &str) -> Result<(&str, Option<&str>), HeadError> {
    let mut query = None;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        match TARGET_BYTES[usize::from(b)] {
            PLAIN => {}
            QUERY => {
                query.get_or_insert(i);
            }
            FRAGMENT if query.is_none() => {
                return Err(HeadError::Invalid("fragment in the request target"));
            }
            FRAGMENT => {}
            _ => {
                return Err(HeadError::Invalid(
                    "invalid character in the request target",
                ));
            }
        }
    }
    Ok(match query {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    })
}

fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

fn target<'b>(method: &str, target: &'b str) -> Result<Target<'b>, HeadError> {
    if target.starts_with('/') {
        let (path, query) = split_query(target)?;
        return Ok(Target {
            path,
            query,
            authority: None,
        });
    }
    if target == "*" && method == "OPTIONS" {
        return Ok(Target {
            path: target,
            query: None,
            authority: None,
        });
    }
    let Some(rest) = strip_scheme(target) else {
        return Err(HeadError::Invalid("request target form not accepted"));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_query) = rest.split_at(end);
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is an error.
    if authority.is_empty() || authority.contains('@') || !valid_host(authority.as_bytes()) {
        return Err(HeadError::Invalid(
            "invalid authority in the request target",
        ));
    }
    let (path, query) = split_query(path_query)?;
    Ok(Target {
        path: if path.is_empty() { "/" } else { path },
        query,
        authority: Some(authority),
    })
}

/// Host syntax (RFC 9110 §7.2: uri-host [":" port]): the characters of a
/// reg-name, an IP literal and a port, nothing a later parser could split
/// on (no `/`, `@`, `"`, `\`, white space or controls).
fn valid_host(value: &[u8]) -> bool {
    value.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
            )
    })
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
    let (Some(method), Some(raw_target), Some(version)) = (method, path, version) else {
        return Err(HeadError::Invalid("incomplete request line"));
    };
    if method == "CONNECT" {
        // A tunnel to wherever the client names: never wanted here.
        return Err(HeadError::Invalid("CONNECT is not supported"));
    }
    let http10 = version == 0;
    let Target {
        path,
        query,
        authority,
    } = target(method, raw_target)?;

    let mut framing = Framing::default();
    let (mut upgrade, mut host, mut expects_continue) = (None, None, false);
    let mut names = [Name::Other; MAX_HEADERS];
    for (h, slot) in headers.iter().zip(names.iter_mut()) {
        *slot = classify(h.name);
        match *slot {
            Name::ContentLength => framing.length(h.value),
            Name::TransferEncoding => framing.encoding(h.value),
            Name::Connection => framing.connection(h.value),
            Name::Upgrade => {
                if upgrade.is_some() {
                    return Err(HeadError::Invalid("more than one Upgrade field"));
                }
                upgrade = Some(h.value);
            }
            Name::Host => {
                if host.is_some() {
                    return Err(HeadError::Invalid("more than one Host field"));
                }
                if !valid_host(h.value) {
                    return Err(HeadError::Invalid("invalid Host field"));
                }
                // Checked above: ASCII.
                host = std::str::from_utf8(h.value).ok();
            }
            Name::Expect => {
                expects_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400.
    if !http10 && host.is_none() {
        return Err(HeadError::Invalid("HTTP/1.1 request without Host"));
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
        target: raw_target,
        path,
        query,
        http10,
        len,
        body,
        content_length: framing.length,
        keep_alive: framing.persistent(http10),
        upgrade: upgrade.filter(|_| framing.upgrade && !http10),
        host: authority.or(host),
        absolute: authority.is_some(),
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

    /// The values of the fields named `name`.
    fn values(&self, name: Name) -> impl DoubleEndedIterator<Item = &'b [u8]> + '_ {
        self.headers
            .iter()
            .zip(self.names)
            .filter(move |(_, n)| *n == name)
            .map(|(h, _)| h.value)
    }

    /// The values of the Cookie fields.
    pub fn cookies(&self) -> impl Iterator<Item = &'b [u8]> + '_ {
        self.values(Name::Cookie)
    }

    /// The values of the `X-Forwarded-For` fields, in order (only worth
    /// reading when the peer is a trusted proxy, see [`crate::proxy::trust`]).
    pub fn forwarded_for(&self) -> impl DoubleEndedIterator<Item = &'b [u8]> + '_ {
        self.values(Name::XForwardedFor)
    }

    /// The last `X-Forwarded-Proto` value (the one the nearest proxy set).
    pub fn forwarded_proto(&self) -> Option<&'b [u8]> {
        self.values(Name::XForwardedProto).flat_map(tokens).last()
    }

    /// A method whose request may be sent again if the connection it went
    /// out on turns out to have been closed (RFC 9110 §9.2.2, as Go's
    /// transport: PUT and DELETE are idempotent but retried by nobody).
    pub fn is_replayable(&self) -> bool {
        matches!(self.method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
    }

    /// Keeps the upgrade only when every protocol it asks for is one of
    /// `allowed` (compared without case and without a `/version`);
    /// otherwise the request goes on as an ordinary one (its Upgrade and
    /// Connection fields are hop-by-hop and dropped anyway).
    pub fn allow_upgrades<S: AsRef<str>>(&mut self, allowed: &[S]) {
        if let Some(value) = self.upgrade
            && !protocols_allowed(value, allowed)
        {
            self.upgrade = None;
        }
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
    /// The user connection's peer address, written as the client (or
    /// appended to a trusted proxy's chain).
    pub client_ip: &'a str,
    /// The peer is a trusted proxy: its `X-Forwarded-For` and `Forwarded`
    /// chains are kept and extended; otherwise they are replaced.
    pub trusted: bool,
    /// The scheme the user came in on, as wicket decided it
    /// ([`crate::proxy::trust::scheme`]).
    pub scheme: &'a str,
    /// Host to send when the client sent none (an HTTP/1.0 client).
    pub default_host: &'a [u8],
    /// The ticket cookie, `(pod, uid)`, removed from the Cookie fields.
    pub ticket: (&'a str, &'a str),
}

/// `X-Forwarded-For` as sent on: the user's own chain, then the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFor {
    /// A new chain: the peer only.
    Fresh,
    /// Behind a trusted proxy: its chain comes first.
    Appended,
}

/// The values of the Connection fields among `headers`.
fn connection_values<'b>(headers: &[Header<'b>]) -> impl Iterator<Item = &'b [u8]> {
    headers
        .iter()
        .filter(|h| classify(h.name) == Name::Connection)
        .map(|h| h.value)
}

/// Writes the request head for the pod into `out`: the path rewritten to
/// `pod.path` + rest, hop-by-hop fields and the ticket cookie removed, one
/// canonical `Content-Length`, the forwarding fields written by wicket
/// (`X-Forwarded-*`, `Forwarded`; a client's own only kept, and extended,
/// when it is a trusted proxy; `X-Real-IP` and `_` spellings dropped);
/// everything else as the user sent it.
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
    let mut chains = false;
    for (h, &name) in req.headers.iter().zip(&req.names) {
        match name {
            n if n.is_hop_by_hop() => continue,
            // Set by the proxy below.
            Name::XForwardedHost
            | Name::XOriginHost
            | Name::XForwardedPrefix
            | Name::XForwardedProto
            | Name::ContentLength
            | Name::XRealIp
            | Name::Alias => continue,
            Name::XForwardedFor | Name::Forwarded => {
                chains |= up.trusted;
                continue;
            }
            // The authority of an absolute-form target replaces it.
            Name::Host if req.absolute => continue,
            Name::Cookie => {
                cookies::write_without_ticket(out, h.value, up.ticket.0, up.ticket.1);
                continue;
            }
            Name::Other | Name::Expect
                if req.connection && lists(connection_values(req.headers), h.name.as_bytes()) =>
            {
                continue;
            }
            _ => {}
        }
        field(out, h.name.as_bytes(), h.value);
    }
    if let Some(proto) = req.upgrade {
        field(out, b"connection", b"upgrade");
        field(out, b"upgrade", proto);
    }
    match req.body {
        Body::Chunked => field(out, b"transfer-encoding", b"chunked"),
        _ => {
            if let Some(n) = req.content_length {
                length_field(out, n);
            }
        }
    }
    match req.host {
        Some(host) if req.absolute => field(out, b"host", host.as_bytes()),
        Some(_) => {}
        None => field(out, b"host", up.default_host),
    }
    write_forwarding(out, req, up, chains);
    out.extend_from_slice(b"\r\n");
    if chains {
        ForwardedFor::Appended
    } else {
        ForwardedFor::Fresh
    }
}

/// The forwarding fields, the user's chains first when `chains` (a trusted
/// proxy sent them).
fn write_forwarding(
    out: &mut Vec<u8>,
    req: &RequestHead<'_, '_>,
    up: &UpstreamHead<'_>,
    chains: bool,
) {
    let chain = |out: &mut Vec<u8>, name: Name| {
        if chains {
            for v in req.values(name) {
                let v = v.trim_ascii();
                if !v.is_empty() {
                    out.extend_from_slice(v);
                    out.extend_from_slice(b", ");
                }
            }
        }
    };
    out.extend_from_slice(b"x-forwarded-for: ");
    chain(out, Name::XForwardedFor);
    out.extend_from_slice(up.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    // RFC 7239: an IPv6 node and a host with a port are quoted (the host
    // was checked to hold no `"` or `\`).
    out.extend_from_slice(b"forwarded: ");
    chain(out, Name::Forwarded);
    if up.client_ip.contains(':') {
        out.extend_from_slice(b"for=\"[");
        out.extend_from_slice(up.client_ip.as_bytes());
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(b"for=");
        out.extend_from_slice(up.client_ip.as_bytes());
    }
    if let Some(host) = req.host.filter(|h| !h.is_empty()) {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(up.scheme.as_bytes());
    out.extend_from_slice(b"\r\n");
    // A trusted proxy's X-Forwarded-Host names the host the user asked for.
    let asked = up
        .trusted
        .then(|| req.values(Name::XForwardedHost).last())
        .flatten()
        .map(<[u8]>::trim_ascii)
        .filter(|h| !h.is_empty() && valid_host(h));
    if let Some(host) = asked.or(req.host.map(str::as_bytes)) {
        field(out, b"x-forwarded-host", host);
    }
    if let Some(host) = req.host {
        field(out, b"x-origin-host", host.as_bytes());
    }
    field(out, b"x-forwarded-proto", up.scheme.as_bytes());
    field(out, b"x-forwarded-prefix", up.prefix.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::framing::{HeaderSlots, MAX_HEAD, header_slots};
    use super::*;

    fn req(raw: &str) -> Result<(RequestHead<'static, 'static>, usize), HeadError> {
        let buf: &'static [u8] = Box::leak(raw.as_bytes().to_vec().into_boxed_slice());
        let slots: &'static mut HeaderSlots<'static> = Box::leak(Box::new(header_slots()));
        let head = parse_request(buf, slots)?;
        let len = head.len;
        Ok((head, len))
    }

    const UP: UpstreamHead<'static> = UpstreamHead {
        base_path: "/app/",
        rest: "x/y.js",
        prefix: "/demo/p1/u1",
        client_ip: "192.0.2.9",
        trusted: false,
        scheme: "http",
        default_host: b"10.0.0.7:3838",
        ticket: ("p1", "u1"),
    };

    fn upstream_with(raw: &str, up: &UpstreamHead<'_>) -> String {
        let (head, _) = req(raw).expect("valid request");
        let mut out = Vec::new();
        write_request_head(&mut out, &head, up);
        String::from_utf8(out).expect("ascii")
    }

    fn upstream(raw: &str) -> String {
        upstream_with(raw, &UP)
    }

    #[test]
    fn request_framing() {
        let (h, len) = req("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nrest").expect("valid");
        assert_eq!((h.method, h.path, h.query), ("GET", "/a", Some("b=1")));
        assert_eq!(len, "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n".len());
        assert_eq!((h.body, h.keep_alive, h.http10), (Body::Empty, true, false));
        let (h, _) =
            req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n").expect("valid");
        assert_eq!(h.body, Body::Length(12));
        let (h, _) =
            req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n")
                .expect("same");
        assert_eq!(h.body, Body::Length(3));
        let (h, _) =
            req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n").expect("valid");
        assert_eq!(h.body, Body::Chunked);
        let (h, _) = req("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("valid");
        assert!(!h.keep_alive);
        let (h, _) = req("GET / HTTP/1.0\r\n\r\n").expect("valid");
        assert!(h.http10 && !h.keep_alive && h.host.is_none());
        let (h, _) =
            req("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .expect("ws");
        assert_eq!(h.upgrade, Some(&b"websocket"[..]));
        let (h, _) =
            req("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n").expect("no token");
        assert_eq!(
            h.upgrade, None,
            "Upgrade without Connection: upgrade is no upgrade"
        );
        let (h, _) =
            req("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect("valid");
        assert!(h.expects_continue && !h.is_replayable());
        let (h, _) = req("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").expect("asterisk form");
        assert_eq!(h.path, "*");
    }

    #[test]
    fn absolute_form_targets_are_routed_by_their_path() {
        let (h, _) =
            req("GET HTTP://Apps.Example:8080/demo/p/u/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n")
                .expect("absolute form");
        assert_eq!((h.path, h.query), ("/demo/p/u/x", Some("q=1")));
        assert_eq!((h.host, h.absolute), (Some("Apps.Example:8080"), true));
        let (h, _) = req("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n").expect("no path");
        assert_eq!(h.path, "/");
        // A `#` in the query is the query's (the path is settled).
        let (h, _) = req("GET /a?b#c HTTP/1.1\r\nHost: h\r\n\r\n").expect("query");
        assert_eq!((h.path, h.query), ("/a", Some("b#c")));
        let out = upstream("GET http://apps.example/demo/p1/u1/x HTTP/1.1\r\nHost: evil\r\n\r\n");
        assert!(out.contains("host: apps.example\r\n"), "{out}");
        assert!(!out.contains("evil"), "{out}");
        for bad in [
            "GET http://user@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /demo/p/u/..#x HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http://h/demo/p/u/a#/../.. HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /a<b HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /a`b HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /a?b=\"c\" HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET http://h/a>b HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(matches!(req(bad), Err(HeadError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        for bad in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /\0 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nX: 1\r\n\r\n",
            "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
            "CONNECT /demo/p/u/ HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n",
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
             Accept: */*\r\nx-forwarded-for: 192.0.2.9\r\n\
             forwarded: for=192.0.2.9;host=\"apps.example\";proto=http\r\n\
             x-forwarded-host: apps.example\r\n\
             x-origin-host: apps.example\r\nx-forwarded-proto: http\r\n\
             x-forwarded-prefix: /demo/p1/u1\r\n\r\n"
        );
    }

    #[test]
    fn a_clients_forwarding_fields_are_replaced() {
        let raw = "GET / HTTP/1.1\r\nHost: h:81\r\nX-Forwarded-For: 203.0.113.1\r\n\
                   x-forwarded-for: 198.51.100.2 \r\nX-Forwarded-Proto: https\r\n\
                   Forwarded: for=203.0.113.1;proto=https\r\nX-Real-IP: 203.0.113.1\r\n\
                   X_Forwarded_For: 203.0.113.1\r\nx_forwarded_proto: https\r\n\r\n";
        let out = upstream(raw);
        assert!(out.contains("x-forwarded-for: 192.0.2.9\r\n"), "{out}");
        assert!(out.contains("x-forwarded-proto: http\r\n"), "{out}");
        assert!(
            out.contains("forwarded: for=192.0.2.9;host=\"h:81\";proto=http\r\n"),
            "{out}"
        );
        for gone in [
            "203.0.113",
            "198.51.100",
            "https",
            "X-Real-IP",
            "X_Forwarded",
        ] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        // Behind a trusted proxy, its chains are kept and extended, and the
        // scheme is what wicket decided from it.
        let trusted = UpstreamHead {
            trusted: true,
            scheme: "https",
            client_ip: "2001:db8::1",
            ..UP
        };
        let out = upstream_with(raw, &trusted);
        assert!(
            out.contains("x-forwarded-for: 203.0.113.1, 198.51.100.2, 2001:db8::1\r\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "forwarded: for=203.0.113.1;proto=https, for=\"[2001:db8::1]\";host=\"h:81\";proto=https\r\n"
            ),
            "{out}"
        );
        assert!(out.contains("x-forwarded-proto: https\r\n"), "{out}");
        assert!(
            !out.contains("X-Real-IP") && !out.contains("X_Forwarded"),
            "{out}"
        );
        let raw = "GET / HTTP/1.1\r\nHost: wicket:9001\r\nX-Forwarded-Host: apps.example\r\n\r\n";
        let out = upstream_with(raw, &trusted);
        assert!(out.contains("x-forwarded-host: apps.example\r\n"), "{out}");
        assert!(out.contains("x-origin-host: wicket:9001\r\n"), "{out}");
        let out = upstream(raw);
        assert!(out.contains("x-forwarded-host: wicket:9001\r\n"), "{out}");
    }

    #[test]
    fn the_client_address_comes_from_a_trusted_chain_only() {
        use crate::proxy::trust::{TrustedProxies, client_ip};
        let (h, _) = req(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 203.0.113.5\r\n\
                          X-Forwarded-For: 10.0.0.2\r\n\r\n",
        )
        .expect("valid");
        let peer = "10.0.0.1".parse().expect("ip");
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).expect("cidr");
        assert_eq!(
            client_ip(&trusted, peer, h.forwarded_for()),
            "203.0.113.5".parse::<std::net::IpAddr>().expect("ip")
        );
        assert_eq!(
            client_ip(&TrustedProxies::default(), peer, h.forwarded_for()),
            peer
        );
    }

    #[test]
    fn one_canonical_content_length_is_sent_on() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n",
        ] {
            let out = upstream(raw);
            assert_eq!(out.matches("ength: ").count(), 1, "{out}");
            assert!(out.contains("content-length: 7\r\n"), "{out}");
        }
        let out = upstream("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        assert!(out.contains("content-length: 0\r\n"), "{out}");
    }

    #[test]
    fn upgrades_only_for_allowed_protocols() {
        let allowed = ["websocket"];
        for (proto, kept) in [
            ("websocket", true),
            ("WebSocket/13", true),
            ("h2c", false),
            ("websocket, h2c", false),
            (",", false),
        ] {
            let raw = format!(
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: {proto}\r\n\r\n"
            );
            let (mut h, _) = req(&raw).expect("valid");
            h.allow_upgrades(&allowed);
            assert_eq!(h.upgrade.is_some(), kept, "{proto}");
            let mut out = Vec::new();
            write_request_head(&mut out, &h, &UP);
            let out = String::from_utf8(out).expect("ascii").to_ascii_lowercase();
            assert_eq!(out.contains("upgrade"), kept, "{out}");
        }
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
}
