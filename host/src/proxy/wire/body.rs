//! How much of a message body has gone by, for bodies forwarded in the
//! bytes they came in.

use super::chunked::{ChunkError, ChunkedScanner};
use super::head::Body;

/// The part of a body still to come.
#[derive(Debug, Clone)]
pub enum BodyProgress {
    /// This many bytes.
    Length(u64),
    /// A chunked body, up to its last chunk and trailers.
    Chunked(ChunkedScanner),
    /// Everything until the sender closes.
    UntilClose,
    /// Nothing: the body is complete.
    Done,
}

impl BodyProgress {
    /// A body framed as `body`, none of it seen yet.
    pub fn new(body: Body) -> Self {
        match body {
            Body::Empty => Self::Done,
            Body::Length(n) => Self::Length(n),
            Body::Chunked => Self::Chunked(ChunkedScanner::new()),
            Body::UntilClose => Self::UntilClose,
        }
    }

    /// Takes the next `bytes`: returns how many belong to the body (fewer
    /// than given when it ends inside them).
    pub fn advance(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
        let taken = match self {
            Self::Done => 0,
            Self::UntilClose => bytes.len(),
            Self::Length(left) => {
                let n = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                *left -= n as u64;
                n
            }
            Self::Chunked(scanner) => scanner.scan(bytes)?,
        };
        if matches!(self, Self::Length(0)) || matches!(self, Self::Chunked(s) if s.is_done()) {
            *self = Self::Done;
        }
        Ok(taken)
    }

    /// The whole body has gone by.
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// The body ends when its sender closes the connection.
    pub fn until_close(&self) -> bool {
        matches!(self, Self::UntilClose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_stop_at_their_end() {
        let mut b = BodyProgress::new(Body::Length(5));
        assert_eq!(b.advance(b"abc"), Ok(3));
        assert!(!b.is_done());
        assert_eq!(b.advance(b"defGET"), Ok(2));
        assert!(b.is_done());
        assert_eq!(b.advance(b"more"), Ok(0));
        assert!(BodyProgress::new(Body::Empty).is_done());
    }

    #[test]
    fn chunked_and_close_delimited() {
        let mut b = BodyProgress::new(Body::Chunked);
        assert_eq!(b.advance(b"2\r\nhi\r\n0\r\n\r\nnext"), Ok(12));
        assert!(b.is_done());
        let mut b = BodyProgress::new(Body::UntilClose);
        assert_eq!(b.advance(b"anything"), Ok(8));
        assert!(b.until_close() && !b.is_done());
        let mut b = BodyProgress::new(Body::Chunked);
        assert!(b.advance(b"zz\r\n").is_err());
    }
}
