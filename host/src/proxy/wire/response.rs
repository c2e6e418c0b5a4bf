//! Response heads: parsed in place and checked, and written out again for
//! the user: HTTP/1.1, CRLF line ends, no hop-by-hop field, one canonical
//! `Content-Length` and none beside `Transfer-Encoding` (RFC 9112 §6.3).

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig};

use super::framing::{
    Body, Framing, HeadError, complete, crlf_only, field, length_field, parse_error,
    protocols_allowed,
};
use super::names::{Name, classify, lists};
use crate::proxy::cookies;

/// A parsed response head; borrows the read buffer.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    /// The status code.
    pub status: u16,
    /// Length of the head in bytes.
    pub len: usize,
    /// How the body is delimited.
    pub body: Body,
    /// The pod connection may carry another request after this response:
    /// the pod keeps it open, and nothing the pod may still send for this
    /// response can be taken for the next one's.
    pub keep_alive: bool,
    /// The head can go to the user as it is (HTTP/1.1, CRLF line ends, no
    /// hop-by-hop field other than Transfer-Encoding, which stays with the
    /// body, and `Content-Length` as the proxy would write it).
    pub verbatim: bool,
    headers: &'h [Header<'b>],
    connection: bool,
    /// Transfer-Encoding is present: every Content-Length is dropped.
    encoded: bool,
    /// A Set-Cookie field sets one of wicket's cookies: it is dropped.
    wickets_cookie: bool,
    /// The one Content-Length written in place of the pod's (`None`: the
    /// pod's are dropped, or there were none).
    length: Option<u64>,
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
    // RFC 9110 §15: three digits, 100 at least (httparse takes `099`,
    // which a user's parser refuses).
    if code < 100 {
        return Err(HeadError::Invalid("invalid status code"));
    }
    let headers = resp.headers;
    let http10 = version == 0;
    let mut framing = Framing::default();
    let mut other_hop = false;
    let mut wickets_cookie = false;
    for h in headers.iter() {
        let name = classify(h.name);
        match name {
            Name::ContentLength => framing.length(h.value),
            Name::TransferEncoding => framing.encoding(h.value),
            Name::Connection => framing.connection(h.value),
            // Only a Set-Cookie field's value is looked at.
            Name::Other if is_set_cookie(h.name) => {
                wickets_cookie |= cookies::sets_wickets(h.value);
            }
            _ => {}
        }
        other_hop |= name.is_hop_by_hop() && name != Name::TransferEncoding;
    }
    let encoded = framing.encodings > 0;
    let bodiless = head_request || (100..200).contains(&code) || code == 204 || code == 304;
    let body = if bodiless {
        Body::Empty
    } else if encoded && framing.encoding_ends_empty {
        return Err(HeadError::Invalid("ambiguous Transfer-Encoding"));
    } else if encoded {
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
    // Framing a pod may not have kept to: an HTTP/1.0 message with a
    // transfer coding (RFC 9112 §6.1: faulty framing, close after it), or a
    // body announced where none may follow (a HEAD, 204 or 304 answered by
    // a handler that writes the body anyway, after its head). Bytes that
    // come late would be read as the next request's response, maybe
    // another user's: the pod connection is not used again.
    let suspect =
        (http10 && encoded) || (bodiless && (encoded || framing.length.is_some_and(|n| n > 0)));
    let length_as_sent = framing.length_fields == 0
        || (!encoded && framing.length_fields == 1 && framing.length_canonical);
    // A bare LF is rare: only looked for when the head is otherwise kept.
    let verbatim =
        !http10 && !other_hop && !wickets_cookie && length_as_sent && crlf_only(buf, len, headers);
    Ok(ResponseHead {
        status: code,
        len,
        body,
        keep_alive: framing.persistent(http10) && body != Body::UntilClose && !suspect,
        verbatim,
        headers,
        connection: framing.connection,
        encoded,
        wickets_cookie,
        length: framing
            .length
            .filter(|_| !encoded && !framing.conflicting_length),
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
    /// The pod tried to set one of wicket's cookies (see
    /// [`write_response_head`]).
    pub wickets_cookie: bool,
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
            wickets_cookie: self.wickets_cookie,
        }
    }

    /// An interim (1xx) response other than 101: the final one follows.
    pub fn is_interim(&self) -> bool {
        self.facts().is_interim()
    }

    /// Does this (101) response switch to protocols in `allowed` only, as
    /// its Upgrade field says? RFC 9110 §7.8: a 101 names the protocols
    /// switched to, and only ones the client asked for (which were all
    /// allowed), so a pod's switch to anything else is not tunnelled.
    pub fn switches_to_allowed<S: AsRef<str>>(&self, allowed: &[S]) -> bool {
        let mut upgrades = self
            .headers
            .iter()
            .filter(|h| classify(h.name) == Name::Upgrade);
        match (upgrades.next(), upgrades.next()) {
            (Some(h), None) => protocols_allowed(h.value, allowed),
            _ => false,
        }
    }
}

/// Is `name` Set-Cookie?
fn is_set_cookie(name: &str) -> bool {
    name.len() == 10 && name.eq_ignore_ascii_case("set-cookie")
}

/// The values of the Connection fields among `headers`.
fn connection_values<'b>(headers: &[Header<'b>]) -> impl Iterator<Item = &'b [u8]> {
    headers
        .iter()
        .filter(|h| classify(h.name) == Name::Connection)
        .map(|h| h.value)
}

/// Writes the response head for the user into `out`: HTTP/1.1 with CRLF
/// line ends, without hop-by-hop fields (Transfer-Encoding stays: the body
/// is forwarded in the coding it came in; a 101 keeps its Upgrade), with
/// one canonical Content-Length unless Transfer-Encoding is present, plus
/// `Connection: close` when the proxy closes the user's connection after
/// this response. A Set-Cookie field that would set one of wicket's
/// cookies (a user's ticket cookie or claim binding, which a pod could
/// otherwise overwrite or delete) is dropped.
pub fn write_response_head(
    out: &mut Vec<u8>,
    raw: &[u8],
    resp: &ResponseHead<'_, '_>,
    close: bool,
) {
    // The status line as sent, from the status code on (after the empty
    // lines httparse skips before it).
    let raw = &raw[raw
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()..];
    let line_end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    let status_line = raw[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&raw[..line_end]);
    out.extend_from_slice(b"HTTP/1.1");
    out.extend_from_slice(status_line.get(8..).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    let switching = resp.status == 101;
    for h in resp.headers {
        let name = classify(h.name);
        match name {
            Name::ContentLength => continue,
            Name::TransferEncoding => {}
            Name::Upgrade if switching => {}
            n if n.is_hop_by_hop() => continue,
            Name::Other
                if resp.wickets_cookie
                    && is_set_cookie(h.name)
                    && cookies::sets_wickets(h.value) =>
            {
                continue;
            }
            Name::Other
                if resp.connection && lists(connection_values(resp.headers), h.name.as_bytes()) =>
            {
                continue;
            }
            _ => {}
        }
        field(out, h.name.as_bytes(), h.value);
    }
    if let Some(n) = resp.length.filter(|_| !resp.encoded) {
        length_field(out, n);
    }
    if switching {
        field(out, b"connection", b"upgrade");
    } else if close {
        field(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::framing::{HeaderSlots, header_slots};
    use super::*;

    fn resp(raw: &str, head_request: bool) -> Result<ResponseHead<'static, 'static>, HeadError> {
        let buf: &'static [u8] = Box::leak(raw.as_bytes().to_vec().into_boxed_slice());
        let slots: &'static mut HeaderSlots<'static> = Box::leak(Box::new(header_slots()));
        parse_response(buf, slots, head_request)
    }

    fn rewritten(raw: &str, close: bool) -> String {
        let r = resp(raw, false).expect("ok");
        let mut out = Vec::new();
        write_response_head(&mut out, raw.as_bytes(), &r, close);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn a_pod_cannot_set_wickets_cookies() {
        let own = "HTTP/1.1 200 OK\r\nSet-Cookie: session=1; Path=/\r\nContent-Length: 0\r\n\r\n";
        let r = resp(own, false).expect("ok");
        assert!(
            r.verbatim && !r.facts().wickets_cookie,
            "the app's own cookies pass as they are"
        );
        let raw = "HTTP/1.1 200 OK\r\nSet-Cookie: session=1\r\nset-cookie: p1-u1-stoken=; Max-Age=0\r\n\
                   SET-COOKIE: wicket-bind=00; Path=/demo/\r\nContent-Length: 0\r\n\r\n";
        let r = resp(raw, false).expect("ok");
        assert!(!r.verbatim && r.facts().wickets_cookie);
        assert_eq!(
            rewritten(raw, false),
            "HTTP/1.1 200 OK\r\nSet-Cookie: session=1\r\ncontent-length: 0\r\n\r\n"
        );
        // On a 101 too (browsers take cookies from a WebSocket handshake).
        let raw = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Set-Cookie: wicket-bind=1\r\n\r\n";
        assert!(
            !rewritten(raw, false)
                .to_ascii_lowercase()
                .contains("set-cookie")
        );
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
        assert_eq!((r.body, r.verbatim), (Body::Chunked, false));
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
        assert!(matches!(
            resp("HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", false),
            Err(HeadError::Invalid(_))
        ));
        for odd in [
            "HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 01\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        ] {
            let r = resp(odd, false).expect("ok");
            assert_eq!((r.body, r.verbatim), (Body::Length(1), false), "{odd:?}");
        }
    }

    #[test]
    fn pod_connections_are_not_reused_after_framing_a_pod_may_break() {
        for (raw, head) in [
            // The body a HEAD handler writes after the head anyway.
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                false,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                false,
            ),
            // RFC 9112 §6.1: HTTP/1.0 with a transfer coding is faulty.
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
            ),
        ] {
            let r = resp(raw, head).expect("ok");
            assert!(!r.keep_alive, "{raw:?}");
        }
        for (raw, head) in [
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true),
            ("HTTP/1.1 200 OK\r\n\r\n", true),
            ("HTTP/1.1 204 No Content\r\n\r\n", false),
            ("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", false),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false,
            ),
        ] {
            let r = resp(raw, head).expect("ok");
            assert!(r.keep_alive, "{raw:?}");
        }
    }

    #[test]
    fn a_transfer_coding_list_that_ends_empty_is_refused() {
        // RFC 9110 §5.6.1 ignores the empty element (the final coding is
        // chunked); hyper looks after the last comma (not chunked: read
        // until close). A user's parser could read either: refused.
        for raw in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: ,\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked,\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n",
        ] {
            assert!(
                matches!(resp(raw, false), Err(HeadError::Invalid(_))),
                "{raw:?}"
            );
        }
        let r = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .expect("ok");
        assert_eq!(r.body, Body::Chunked);
    }

    #[test]
    fn a_switch_is_to_an_allowed_protocol_only() {
        let allowed = ["websocket"];
        for (upgrade, ok) in [
            ("Upgrade: websocket\r\n", true),
            ("Upgrade: WebSocket/13\r\n", true),
            ("Upgrade: h2c\r\n", false),
            ("Upgrade: websocket, h2c\r\n", false),
            ("Upgrade: ,\r\n", false),
            ("", false),
            ("Upgrade: websocket\r\nUpgrade: websocket\r\n", false),
        ] {
            let raw =
                format!("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n{upgrade}\r\n");
            let r = resp(&raw, false).expect("ok");
            assert_eq!(r.switches_to_allowed(&allowed), ok, "{upgrade:?}");
        }
    }

    #[test]
    fn response_head_rewrite() {
        assert_eq!(
            rewritten(
                "HTTP/1.0 200 Fine Thanks\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
                 Keep-Alive: timeout=5\r\nContent-Length: 2\r\nX-App: 1\r\n\r\n",
                true
            ),
            "HTTP/1.1 200 Fine Thanks\r\nX-App: 1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            rewritten(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\n\r\n",
                false
            ),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn content_length_beside_transfer_encoding_is_dropped() {
        assert_eq!(
            rewritten(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\
                 content-length: 9\r\n\r\n",
                false
            ),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            rewritten(
                "HTTP/1.1 200 OK\r\nContent-Length: 007\r\ncontent-length: 7\r\n\r\n",
                false
            ),
            "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n"
        );
    }

    #[test]
    fn bare_line_feeds_become_crlf() {
        assert_eq!(
            rewritten("HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 0\n\n", false),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(
            rewritten(
                "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n\
                 Sec-WebSocket-Accept: x\n\n",
                false
            ),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\
             connection: upgrade\r\n\r\n"
        );
    }
}
