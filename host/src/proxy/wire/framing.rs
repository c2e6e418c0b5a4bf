//! What requests and responses share: header slots and size limits, the
//! parse errors, how a body is delimited, and the rules for the framing
//! fields (`Content-Length`, `Transfer-Encoding`, `Connection`).

use std::mem::MaybeUninit;

use httparse::{Header, Status};

use super::names::tokens;

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

pub(super) fn parse_error(e: httparse::Error) -> HeadError {
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

pub(super) fn complete(status: Status<usize>, buffered: usize) -> Result<usize, HeadError> {
    match status {
        Status::Complete(len) if len <= MAX_HEAD => Ok(len),
        Status::Complete(_) => Err(HeadError::TooLarge),
        Status::Partial if buffered >= MAX_HEAD => Err(HeadError::TooLarge),
        Status::Partial => Err(HeadError::Partial),
    }
}

/// A `Content-Length` value: digits only (no sign, no list).
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
pub(super) struct Framing {
    /// A Connection field was seen.
    pub connection: bool,
    /// Its tokens: `close`, `keep-alive`, `upgrade`.
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    pub length: Option<u64>,
    pub conflicting_length: bool,
    /// Content-Length fields seen.
    pub length_fields: usize,
    /// Every Content-Length value is written as the proxy would write it
    /// (no leading zeros, no white space).
    pub length_canonical: bool,
    /// Transfer-Encoding fields seen.
    pub encodings: usize,
    /// The last transfer coding of the Transfer-Encoding fields.
    pub chunked_last: bool,
    /// "chunked" exactly, in one field.
    pub chunked_only: bool,
    /// The last Transfer-Encoding field is empty or ends with a comma:
    /// parsers disagree on its final coding.
    pub encoding_ends_empty: bool,
}

impl Framing {
    pub fn length(&mut self, value: &[u8]) {
        self.length_fields += 1;
        let canonical = !value.is_empty()
            && (value == b"0" || value[0] != b'0')
            && value.iter().all(u8::is_ascii_digit);
        self.length_canonical = canonical && (self.length_fields == 1 || self.length_canonical);
        match (content_length(value), self.length) {
            (None, _) => self.conflicting_length = true,
            (Some(n), Some(m)) if n != m => self.conflicting_length = true,
            (Some(n), _) => self.length = Some(n),
        }
    }

    pub fn connection(&mut self, value: &[u8]) {
        self.connection = true;
        for t in tokens(value) {
            self.close |= t.eq_ignore_ascii_case(b"close");
            self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            self.upgrade |= t.eq_ignore_ascii_case(b"upgrade");
        }
    }

    /// The connection stays open after this message (RFC 9112 §9.3).
    pub fn persistent(&self, http10: bool) -> bool {
        if http10 { self.keep_alive } else { !self.close }
    }

    pub fn encoding(&mut self, value: &[u8]) {
        self.encodings += 1;
        // The fields are one list (RFC 9110 §5.3) whose empty elements do
        // not count; but parsers that look only at the text after the last
        // comma (hyper among them) read `chunked,` as not chunked.
        let v = value.trim_ascii();
        self.encoding_ends_empty = v.is_empty() || v.ends_with(b",");
        if let Some(last) = tokens(value).last() {
            self.chunked_last = last.eq_ignore_ascii_case(b"chunked");
        }
        self.chunked_only =
            self.encodings == 1 && value.trim_ascii().eq_ignore_ascii_case(b"chunked");
    }
}

/// Does an Upgrade field `value` name only protocols in `allowed` (each
/// compared without case and without its `/version`), and at least one?
pub(super) fn protocols_allowed<S: AsRef<str>>(value: &[u8], allowed: &[S]) -> bool {
    let ok = |proto: &[u8]| {
        let name = proto.split(|&b| b == b'/').next().unwrap_or(proto);
        allowed
            .iter()
            .any(|a| a.as_ref().as_bytes().eq_ignore_ascii_case(name))
    };
    tokens(value).next().is_some() && tokens(value).all(ok)
}

/// Does every line of the head `buf[..len]` that httparse parsed, with
/// `headers`, end with CRLF (httparse accepts LF alone; the proxy never
/// passes it on)? Its line ends are exactly where httparse found them:
/// before each field name, and the last two (field values and the status
/// line cannot hold a LF, obs-fold is refused, and empty lines before the
/// status line are skipped, which the first byte shows). So two bytes per
/// field are looked at instead of every byte of the head.
pub(super) fn crlf_only(buf: &[u8], len: usize, headers: &[Header<'_>]) -> bool {
    let base = buf.as_ptr() as usize;
    buf.first() == Some(&b'H')
        && len >= 4
        && buf.get(len - 4..len) == Some(&b"\r\n\r\n"[..])
        && headers.iter().all(|h| {
            let at = (h.name.as_ptr() as usize).wrapping_sub(base);
            at >= 2 && at <= len && buf[at - 2..at] == *b"\r\n"
        })
}

/// Writes one header field line.
pub(super) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `content-length: n` (formatted on the stack: no allocation).
pub(super) fn length_field(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    field(out, b"content-length", &digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_read_and_written_canonically() {
        let mut f = Framing::default();
        f.length(b"007");
        assert_eq!(f.length, Some(7));
        assert!(!f.length_canonical && !f.conflicting_length);
        let mut f = Framing::default();
        f.length(b"7");
        assert!(f.length_canonical);
        f.length(b"7");
        assert!(f.length_canonical && f.length_fields == 2);
        f.length(b"8");
        assert!(f.conflicting_length);
        for bad in [&b"+7"[..], b"-7", b"7, 7", b"0x7", b""] {
            let mut f = Framing::default();
            f.length(bad);
            assert!(f.conflicting_length, "{bad:?}");
        }
        let mut out = Vec::new();
        length_field(&mut out, 0);
        length_field(&mut out, u64::MAX);
        assert_eq!(
            out,
            b"content-length: 0\r\ncontent-length: 18446744073709551615\r\n"
        );
    }

    #[test]
    fn bare_line_feeds_are_found() {
        let crlf = |head: &[u8]| {
            let mut slots = header_slots();
            let mut resp = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut resp, head, &mut slots)
            {
                Ok(Status::Complete(n)) => n,
                other => panic!("{other:?}"),
            };
            crlf_only(head, len, resp.headers)
        };
        assert!(crlf(b"HTTP/1.1 200 OK\r\nA: b\r\nC: d\r\n\r\n"));
        assert!(crlf(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert!(!crlf(b"HTTP/1.1 200 OK\nA: b\r\n\r\n"));
        assert!(!crlf(b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n"));
        assert!(!crlf(b"HTTP/1.1 200 OK\r\nA: b\r\n\n"));
        assert!(!crlf(b"HTTP/1.1 200 OK\r\nA: b\n\r\n"));
        assert!(!crlf(b"HTTP/1.1 204 No Content\n\r\n"));
        assert!(!crlf(b"\nHTTP/1.1 200 OK\r\nA: b\r\n\r\n"));
    }
}
