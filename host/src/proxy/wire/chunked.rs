//! Finding the end of a chunked body (RFC 9112 §7.1) in bytes that are
//! forwarded as they came, with two cuts made in place: chunk extensions
//! are dropped (each chunk-size line goes on as the bare size) and so are
//! trailer fields unless they are to be forwarded. The proxy never
//! re-encodes chunk data; it only needs to know where the body ends, so
//! that the next message on the connection starts at the right byte.
//!
//! The scanner is strict where laxness would let two parties disagree on
//! where a message ends (request smuggling): the chunk-size line follows
//! the RFC's grammar exactly (hex digits; then only `;`-extensions of a
//! token name and a token or quoted-string value, with white space only
//! before `;` and around `=`), every line ends in CRLF, trailer lines are
//! `token ":" value`, and sizes, lines and trailers are bounded.

use super::names::{Name, classify};

/// Longest chunk-size line (size, extensions and CRLF) accepted.
const MAX_SIZE_LINE: usize = 4 * 1024;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;
/// Longest trailer field name kept to be looked at: longer than any the
/// proxy treats specially.
const NAME_ROOM: usize = 24;
/// Hex digits of the largest chunk size accepted (2^60 - 1).
const MAX_SIZE_DIGITS: u32 = 15;

/// Malformed chunked encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk size that is not hex, or too large.
    #[error("invalid chunk size")]
    Size,
    /// A chunk extension or trailer field outside the RFC's grammar.
    #[error("invalid chunk extension or trailer")]
    Syntax,
    /// A line that does not end in CRLF where one must.
    #[error("chunk line does not end in CRLF")]
    LineEnd,
    /// Chunk extensions or trailers beyond the limits.
    #[error("chunk extensions or trailers too long")]
    TooLong,
    /// A trailer field to be forwarded that frames, routes or describes the
    /// message or its sender (`Content-Length`, `Host`, `X-Forwarded-For`,
    /// …): a next hop that merges trailers into the head would take it for
    /// one the proxy checked (RFC 9110 §6.5.1).
    #[error("trailer field not allowed")]
    ForbiddenTrailer,
}

/// What becomes of the trailer fields of a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailers {
    /// Checked, then dropped (the default: a trailer is a header field the
    /// next hop may merge into the head unchecked).
    Drop,
    /// Checked and forwarded.
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size (`digits` so far).
    Size {
        digits: u32,
    },
    /// White space after the size or an extension value: `;` must follow.
    Bws,
    /// After `;`: white space, then an extension name.
    ExtSemi,
    /// In an extension name.
    ExtName,
    /// White space after a name: `=` or `;` must follow.
    ExtNameBws,
    /// After `=`: white space, then a token or a quoted string.
    ExtEq,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value; after its `\`.
    ExtQuoted,
    ExtQuotedPair,
    /// After a quoted-string value.
    ExtValueEnd,
    /// Expecting the LF of the size line.
    SizeLf,
    /// Inside chunk data: `left` bytes to go.
    Data {
        left: u64,
    },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// In a trailer field name, up to `:`.
    TrailerName,
    /// In a trailer field value, up to CR.
    TrailerValue,
    /// Expecting the LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    FinalLf,
    /// The body is complete.
    Done,
}

/// How far one call of [`ChunkedScanner::scan`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes of the input that belong to the body.
    pub taken: usize,
    /// Bytes to forward, moved to the front of the input: `taken` less the
    /// extensions and dropped trailers among them.
    pub kept: usize,
}

/// Where a chunked body ends, found incrementally.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    trailers: Trailers,
    size: u64,
    line: usize,
    trailer_bytes: usize,
    /// The name of the trailer field being read (forwarded trailers only),
    /// up to [`NAME_ROOM`] bytes; `name_len` beyond it: a longer name.
    name: [u8; NAME_ROOM],
    name_len: usize,
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `qdtext` (RFC 9110 §5.6.4): anything printable but `"` and `\`.
fn is_qdtext(b: u8) -> bool {
    is_ws(b) || b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b) || b >= 0x80
}

/// A field value byte (RFC 9110 §5.5): visible, white space, or obs-text.
fn is_field_byte(b: u8) -> bool {
    is_ws(b) || (0x21..=0x7e).contains(&b) || b >= 0x80
}

impl ChunkedScanner {
    /// A scanner at the start of a chunked body.
    pub fn new(trailers: Trailers) -> Self {
        Self {
            state: State::Size { digits: 0 },
            trailers,
            size: 0,
            line: 0,
            trailer_bytes: 0,
            name: [0; NAME_ROOM],
            name_len: 0,
        }
    }

    /// True once the last chunk and the trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans the next bytes of the body: all of `bytes` while the body goes
    /// on, fewer when it ends inside them (the rest is the next message).
    /// What is to be forwarded of them is moved to their front (a copy
    /// only once something was cut).
    pub fn scan(&mut self, bytes: &mut [u8]) -> Result<Scanned, ChunkError> {
        let (mut i, mut w) = (0, 0);
        while i < bytes.len() {
            let b = bytes[i];
            // Does this byte go on?
            let keep = match self.state {
                State::Done => break,
                State::Data { left } => {
                    // Skip the data in one step.
                    let take = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    if w != i {
                        bytes.copy_within(i..i + take, w);
                    }
                    i += take;
                    w += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::Size { .. } | State::Bws | State::ExtSemi => self.size_line(b)?,
                State::ExtName | State::ExtNameBws | State::ExtEq => self.size_line(b)?,
                State::ExtToken | State::ExtQuoted | State::ExtQuotedPair | State::ExtValueEnd => {
                    self.size_line(b)?
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.line = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data { left: self.size }
                    };
                    self.size = 0;
                    true
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.state = State::DataLf;
                    true
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.state = State::Size { digits: 0 };
                    true
                }
                State::TrailerStart => {
                    self.count_trailer()?;
                    match b {
                        b'\r' => {
                            self.state = State::FinalLf;
                            true
                        }
                        _ if is_tchar(b) => {
                            self.state = State::TrailerName;
                            self.name_len = 0;
                            self.name_byte(b);
                            self.trailers == Trailers::Forward
                        }
                        _ => return Err(ChunkError::Syntax),
                    }
                }
                State::TrailerName => {
                    self.count_trailer()?;
                    match b {
                        b':' => {
                            self.check_trailer_name()?;
                            self.state = State::TrailerValue;
                        }
                        _ if is_tchar(b) => self.name_byte(b),
                        _ => return Err(ChunkError::Syntax),
                    }
                    self.trailers == Trailers::Forward
                }
                State::TrailerValue => {
                    self.count_trailer()?;
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        _ if is_field_byte(b) => {}
                        b'\n' => return Err(ChunkError::LineEnd),
                        _ => return Err(ChunkError::Syntax),
                    }
                    self.trailers == Trailers::Forward
                }
                State::TrailerLf => {
                    self.count_trailer()?;
                    if b != b'\n' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.state = State::TrailerStart;
                    self.trailers == Trailers::Forward
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.state = State::Done;
                    true
                }
            };
            if keep {
                bytes[w] = b;
                w += 1;
            }
            i += 1;
        }
        Ok(Scanned { taken: i, kept: w })
    }

    /// One byte of a chunk-size line (RFC 9112 §7.1.1):
    /// `1*HEXDIG *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) CRLF`.
    /// Returns whether it goes on: the digits and the CR do, the
    /// extensions do not.
    fn size_line(&mut self, b: u8) -> Result<bool, ChunkError> {
        self.line += 1;
        if self.line > MAX_SIZE_LINE {
            return Err(ChunkError::TooLong);
        }
        let s = &mut self.state;
        match *s {
            State::Size { digits } => {
                if let Some(v) = hex(b) {
                    if digits == MAX_SIZE_DIGITS {
                        return Err(ChunkError::Size);
                    }
                    self.size = (self.size << 4) | u64::from(v);
                    *s = State::Size { digits: digits + 1 };
                    return Ok(true);
                }
                match b {
                    _ if digits == 0 => return Err(ChunkError::Size),
                    b'\r' => {
                        *s = State::SizeLf;
                        return Ok(true);
                    }
                    b';' => *s = State::ExtSemi,
                    _ if is_ws(b) => *s = State::Bws,
                    _ => return Err(ChunkError::Size),
                }
            }
            State::Bws => match b {
                b';' => *s = State::ExtSemi,
                _ if is_ws(b) => {}
                _ => return Err(ChunkError::Syntax),
            },
            State::ExtSemi => match b {
                _ if is_tchar(b) => *s = State::ExtName,
                _ if is_ws(b) => {}
                _ => return Err(ChunkError::Syntax),
            },
            State::ExtName | State::ExtToken => match b {
                _ if is_tchar(b) => {}
                b'=' if *s == State::ExtName => *s = State::ExtEq,
                b';' => *s = State::ExtSemi,
                b'\r' => {
                    *s = State::SizeLf;
                    return Ok(true);
                }
                _ if is_ws(b) && *s == State::ExtName => *s = State::ExtNameBws,
                _ if is_ws(b) => *s = State::Bws,
                _ => return Err(ChunkError::Syntax),
            },
            State::ExtNameBws => match b {
                b'=' => *s = State::ExtEq,
                b';' => *s = State::ExtSemi,
                _ if is_ws(b) => {}
                _ => return Err(ChunkError::Syntax),
            },
            State::ExtEq => match b {
                b'"' => *s = State::ExtQuoted,
                _ if is_tchar(b) => *s = State::ExtToken,
                _ if is_ws(b) => {}
                _ => return Err(ChunkError::Syntax),
            },
            State::ExtQuoted => match b {
                b'"' => *s = State::ExtValueEnd,
                b'\\' => *s = State::ExtQuotedPair,
                _ if is_qdtext(b) => {}
                _ => return Err(ChunkError::Syntax),
            },
            State::ExtQuotedPair => match b {
                _ if is_field_byte(b) => *s = State::ExtQuoted,
                _ => return Err(ChunkError::Syntax),
            },
            State::ExtValueEnd => match b {
                b';' => *s = State::ExtSemi,
                b'\r' => {
                    *s = State::SizeLf;
                    return Ok(true);
                }
                _ if is_ws(b) => *s = State::Bws,
                _ => return Err(ChunkError::Syntax),
            },
            _ => return Err(ChunkError::Syntax),
        }
        Ok(false)
    }

    /// One more byte of a trailer field name (kept only when trailers are
    /// forwarded: dropped ones need no look).
    fn name_byte(&mut self, b: u8) {
        if self.trailers == Trailers::Forward {
            if let Some(slot) = self.name.get_mut(self.name_len) {
                *slot = b;
            }
            self.name_len += 1;
        }
    }

    /// A trailer field to be forwarded must be one the proxy would pass on
    /// from a head as it came.
    fn check_trailer_name(&self) -> Result<(), ChunkError> {
        if self.trailers == Trailers::Drop || self.name_len > NAME_ROOM {
            return Ok(());
        }
        // Names are tchars: ASCII.
        let name = std::str::from_utf8(&self.name[..self.name_len]).unwrap_or("");
        if classify(name) == Name::Other {
            Ok(())
        } else {
            Err(ChunkError::ForbiddenTrailer)
        }
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(ChunkError::TooLong);
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `body` split at every possible point; the end and the bytes
    /// kept must be the same however the bytes arrive. Returns the end
    /// (when found) and what goes on.
    fn end_of(body: &[u8], trailers: Trailers) -> Result<(Option<usize>, Vec<u8>), ChunkError> {
        let mut whole = ChunkedScanner::new(trailers);
        let mut all = body.to_vec();
        let r = whole.scan(&mut all)?;
        let expected = whole.is_done().then_some(r.taken);
        let kept = all[..r.kept].to_vec();
        for split in 0..=body.len() {
            let mut s = ChunkedScanner::new(trailers);
            let (mut a, mut b) = (body[..split].to_vec(), body[split..].to_vec());
            let first = s.scan(&mut a)?;
            let mut got_kept = a[..first.kept].to_vec();
            let got = if s.is_done() {
                Some(first.taken)
            } else {
                let second = s.scan(&mut b)?;
                got_kept.extend_from_slice(&b[..second.kept]);
                s.is_done().then_some(split + second.taken)
            };
            assert_eq!(got, expected, "split at {split}");
            assert_eq!(got_kept, kept, "split at {split}");
        }
        Ok((expected, kept))
    }

    fn refused(bad: &[u8]) -> bool {
        ChunkedScanner::new(Trailers::Forward)
            .scan(&mut bad.to_vec())
            .is_err()
    }

    #[test]
    fn finds_the_end_of_well_formed_bodies() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            end_of(body, Trailers::Drop),
            Ok((Some(body.len()), body.to_vec()))
        );
        let with_next =
            b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let end = with_next.len() - "GET / HTTP/1.1\r\n".len();
        assert_eq!(
            end_of(with_next, Trailers::Drop),
            Ok((
                Some(end),
                b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n".to_vec()
            ))
        );
        assert_eq!(
            end_of(with_next, Trailers::Forward),
            Ok((
                Some(end),
                b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n".to_vec()
            ))
        );
        assert_eq!(
            end_of(b"0\r\n\r\n", Trailers::Drop),
            Ok((Some(5), b"0\r\n\r\n".to_vec()))
        );
    }

    #[test]
    fn extensions_in_the_rfc_grammar_are_accepted_and_cut() {
        for line in [
            &b"3;a"[..],
            b"3;a=b",
            b"3 ;a",
            b"3\t; a = b",
            b"3;a=\"q \\\" ;x\";b",
            b"3;a;b=c;d=\"\"",
            b"3;a=b ;c",
            b"3;!#$%&'*+-.^_`|~=x",
        ] {
            let mut body = line.to_vec();
            body.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
            assert_eq!(
                end_of(&body, Trailers::Drop),
                Ok((Some(body.len()), b"3\r\nabc\r\n0\r\n\r\n".to_vec())),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn an_unfinished_body_consumes_everything() {
        assert_eq!(end_of(b"5\r\nhel", Trailers::Drop).map(|r| r.0), Ok(None));
        assert_eq!(
            end_of(b"5\r\nhello\r\n0\r\n", Trailers::Drop).map(|r| r.0),
            Ok(None)
        );
        let mut s = ChunkedScanner::new(Trailers::Drop);
        assert_eq!(s.scan(&mut b"ff\r\n".to_vec()).map(|r| r.taken), Ok(4));
        assert_eq!(s.scan(&mut [b'x'; 200]).map(|r| r.taken), Ok(200));
        assert!(!s.is_done());
    }

    #[test]
    fn refuses_what_could_be_read_two_ways() {
        for bad in [
            &b"g\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"0x5\r\nhello\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n\r\n",
            b"1000000000000000\r\n",
            // Loose size lines: a second number, white space without `;`,
            // extensions outside the token grammar.
            b"3 3\r\nabc\r\n",
            b"3 \r\nabc\r\n",
            b" 3\r\nabc\r\n",
            b"3;\r\nabc\r\n",
            b"3;a \r\nabc\r\n",
            b"3;a=\r\nabc\r\n",
            b"3;a=b c\r\nabc\r\n",
            b"3;a=\"b\r\nabc\r\n",
            b"3;a=\"b\"c\r\n",
            b"3;a@b\r\n",
            b"3;a=b\n",
            b"3;\x00\r\n",
            b"3;a=\"\x7f\"\r\n",
            b"3\r\r\nabc\r\n",
            // Trailers: a field line, not anything up to CRLF.
            b"0\r\n: x\r\n\r\n",
            b"0\r\nX\r\n\r\n",
            b"0\r\nX Y: 1\r\n\r\n",
            b"0\r\n X: 1\r\n\r\n",
            b"0\r\nX: \x01\r\n\r\n",
        ] {
            assert!(refused(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn forwarded_trailers_cannot_carry_fields_the_proxy_checks() {
        for field in [
            "Content-Length: 5",
            "transfer-encoding: chunked",
            "Host: evil",
            "X-Forwarded-For: 203.0.113.1",
            "Forwarded: for=203.0.113.1",
            "X_Forwarded_For: 203.0.113.1",
            "X-Real-IP: 203.0.113.1",
            "Cookie: p-u-stoken=t",
            "Connection: close",
            "Trailer: X",
        ] {
            let body = format!("0\r\nX-Ok: 1\r\n{field}\r\n\r\n");
            assert_eq!(
                end_of(body.as_bytes(), Trailers::Forward),
                Err(ChunkError::ForbiddenTrailer),
                "{field}"
            );
            // Dropped trailers go nowhere: nothing to refuse.
            assert_eq!(
                end_of(body.as_bytes(), Trailers::Drop),
                Ok((Some(body.len()), b"0\r\n\r\n".to_vec()))
            );
        }
        let long = format!("0\r\nX-{}: 1\r\nServer-Timing: a\r\n\r\n", "y".repeat(40));
        assert_eq!(
            end_of(long.as_bytes(), Trailers::Forward),
            Ok((Some(long.len()), long.clone().into_bytes()))
        );
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'e', MAX_SIZE_LINE));
        assert_eq!(
            ChunkedScanner::new(Trailers::Drop).scan(&mut line),
            Err(ChunkError::TooLong)
        );
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"X-Trailer: 12345\r\n");
        }
        assert_eq!(
            ChunkedScanner::new(Trailers::Drop).scan(&mut trailers),
            Err(ChunkError::TooLong)
        );
    }

    #[test]
    fn large_chunks_are_skipped_not_walked() {
        let mut s = ChunkedScanner::new(Trailers::Drop);
        assert_eq!(
            s.scan(&mut b"FFFFFFFF\r\n".to_vec()).map(|r| r.taken),
            Ok(10)
        );
        let mut data = vec![0u8; 1 << 20];
        assert_eq!(
            s.scan(&mut data),
            Ok(Scanned {
                taken: 1 << 20,
                kept: 1 << 20
            })
        );
        assert!(matches!(s.state, State::Data { left } if left == 0xFFFF_FFFF - (1 << 20)));
    }
}
