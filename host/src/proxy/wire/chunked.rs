//! Finding the end of a chunked body (RFC 9112 §7.1) in bytes that are
//! forwarded as they are: the proxy never re-encodes a chunked message, it
//! only needs to know where it ends, so that the next message on the
//! connection starts at the right byte.
//!
//! The scanner is strict where laxness would let two parties disagree on
//! where a message ends (request smuggling): chunk sizes are hex digits
//! only, every line ends in CRLF, and sizes, extensions and trailers are
//! bounded.

/// Longest chunk-size line (size, extensions and CRLF) accepted.
const MAX_SIZE_LINE: usize = 4 * 1024;
/// Longest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;
/// Hex digits of the largest chunk size accepted (2^60 - 1).
const MAX_SIZE_DIGITS: u32 = 15;

/// Malformed chunked encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk size that is not hex, or too large.
    #[error("invalid chunk size")]
    Size,
    /// A line that does not end in CRLF where one must.
    #[error("chunk line does not end in CRLF")]
    LineEnd,
    /// Chunk extensions or trailers beyond the limits.
    #[error("chunk extensions or trailers too long")]
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size (`digits` so far).
    Size { digits: u32 },
    /// After the size: extensions up to CR.
    Extension,
    /// Expecting the LF of the size line.
    SizeLf,
    /// Inside chunk data: `left` bytes to go.
    Data { left: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line, up to CR.
    Trailer,
    /// Expecting the LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    FinalLf,
    /// The body is complete.
    Done,
}

/// Where a chunked body ends, found incrementally.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
    line: usize,
    trailers: usize,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a chunked body.
    pub fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
            trailers: 0,
        }
    }

    /// True once the last chunk and the trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans the next bytes of the body. Returns how many of them belong to
    /// it: all of `bytes` while the body goes on, fewer when it ends inside
    /// them (the rest is the next message).
    pub fn scan(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Done => return Ok(i),
                State::Data { left } => {
                    // Skip the data in one step.
                    let take = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::Size { digits } => {
                    self.count_line()?;
                    if let Some(v) = hex(b) {
                        if digits == MAX_SIZE_DIGITS {
                            return Err(ChunkError::Size);
                        }
                        self.size = (self.size << 4) | u64::from(v);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ChunkError::Size);
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        self.state = State::Extension;
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else {
                        return Err(ChunkError::Size);
                    }
                }
                State::Extension => {
                    self.count_line()?;
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\n' => return Err(ChunkError::LineEnd),
                        _ => {}
                    }
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
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    self.count_trailer()?;
                    self.state = match b {
                        b'\r' => State::FinalLf,
                        b'\n' => return Err(ChunkError::LineEnd),
                        _ => State::Trailer,
                    };
                }
                State::Trailer => {
                    self.count_trailer()?;
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' => return Err(ChunkError::LineEnd),
                        _ => {}
                    }
                }
                State::TrailerLf => {
                    self.count_trailer()?;
                    if b != b'\n' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnd);
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
            }
            i += 1;
        }
        Ok(i)
    }

    fn count_line(&mut self) -> Result<(), ChunkError> {
        self.line += 1;
        if self.line > MAX_SIZE_LINE {
            return Err(ChunkError::TooLong);
        }
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
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

    /// Scans `body` split at every possible point; the end must be found at
    /// the same byte however the bytes arrive.
    fn end_of(body: &[u8]) -> Result<Option<usize>, ChunkError> {
        let mut whole = ChunkedScanner::new();
        let n = whole.scan(body)?;
        let expected = whole.is_done().then_some(n);
        for split in 0..=body.len() {
            let mut s = ChunkedScanner::new();
            let a = s.scan(&body[..split])?;
            let got = if s.is_done() {
                Some(a)
            } else {
                let b = s.scan(&body[split..])?;
                s.is_done().then_some(split + b)
            };
            assert_eq!(got, expected, "split at {split}");
        }
        Ok(expected)
    }

    #[test]
    fn finds_the_end_of_well_formed_bodies() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(end_of(body), Ok(Some(body.len())));
        let with_next =
            b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let end = with_next.len() - "GET / HTTP/1.1\r\n".len();
        assert_eq!(end_of(with_next), Ok(Some(end)));
        assert_eq!(end_of(b"0\r\n\r\n"), Ok(Some(5)));
    }

    #[test]
    fn an_unfinished_body_consumes_everything() {
        assert_eq!(end_of(b"5\r\nhel"), Ok(None));
        assert_eq!(end_of(b"5\r\nhello\r\n0\r\n"), Ok(None));
        let mut s = ChunkedScanner::new();
        assert_eq!(s.scan(b"ff\r\n"), Ok(4));
        assert_eq!(s.scan(&[b'x'; 200]), Ok(200));
        assert!(!s.is_done());
    }

    #[test]
    fn refuses_what_could_be_read_two_ways() {
        for bad in [
            &b"g\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"0x5\r\nhello\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n\r\n",
            b"1000000000000000\r\n",
        ] {
            let mut s = ChunkedScanner::new();
            assert!(s.scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'e', MAX_SIZE_LINE));
        assert_eq!(ChunkedScanner::new().scan(&line), Err(ChunkError::TooLong));
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..2000 {
            trailers.extend_from_slice(b"X-Trailer: 12345\r\n");
        }
        assert_eq!(
            ChunkedScanner::new().scan(&trailers),
            Err(ChunkError::TooLong)
        );
    }

    #[test]
    fn large_chunks_are_skipped_not_walked() {
        let mut s = ChunkedScanner::new();
        assert_eq!(s.scan(b"FFFFFFFF\r\n"), Ok(10));
        let data = vec![0u8; 1 << 20];
        assert_eq!(s.scan(&data), Ok(data.len()));
        assert!(matches!(s.state, State::Data { left } if left == 0xFFFF_FFFF - (1 << 20)));
    }
}
