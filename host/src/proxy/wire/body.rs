//! How much of a message body has gone by, for bodies forwarded in the
//! bytes they came in (less the chunk extensions and trailers the chunked
//! scanner cuts).

use super::chunked::{ChunkError, ChunkedScanner, Scanned, Trailers};
use super::framing::Body;

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
    /// A body framed as `body`, none of it seen yet; `trailers` says what
    /// becomes of a chunked body's trailer fields.
    pub fn new(body: Body, trailers: Trailers) -> Self {
        match body {
            Body::Empty => Self::Done,
            Body::Length(n) => Self::Length(n),
            Body::Chunked => Self::Chunked(ChunkedScanner::new(trailers)),
            Body::UntilClose => Self::UntilClose,
        }
    }

    /// Takes the next `bytes`: says how many belong to the body (fewer
    /// than given when it ends inside them) and how many of those, moved
    /// to the front of `bytes`, are to be forwarded.
    pub fn advance(&mut self, bytes: &mut [u8]) -> Result<Scanned, ChunkError> {
        let whole = |n| Scanned { taken: n, kept: n };
        let scanned = match self {
            Self::Done => whole(0),
            Self::UntilClose => whole(bytes.len()),
            Self::Length(left) => {
                let n = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                *left -= n as u64;
                whole(n)
            }
            Self::Chunked(scanner) => scanner.scan(bytes)?,
        };
        if matches!(self, Self::Length(0)) || matches!(self, Self::Chunked(s) if s.is_done()) {
            *self = Self::Done;
        }
        Ok(scanned)
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

    fn taken(b: &mut BodyProgress, bytes: &[u8]) -> Result<usize, ChunkError> {
        b.advance(&mut bytes.to_vec()).map(|s| s.taken)
    }

    #[test]
    fn lengths_stop_at_their_end() {
        let mut b = BodyProgress::new(Body::Length(5), Trailers::Drop);
        assert_eq!(taken(&mut b, b"abc"), Ok(3));
        assert!(!b.is_done());
        assert_eq!(taken(&mut b, b"defGET"), Ok(2));
        assert!(b.is_done());
        assert_eq!(taken(&mut b, b"more"), Ok(0));
        assert!(BodyProgress::new(Body::Empty, Trailers::Drop).is_done());
    }

    #[test]
    fn chunked_and_close_delimited() {
        let mut b = BodyProgress::new(Body::Chunked, Trailers::Drop);
        let mut bytes = b"2;x\r\nhi\r\n0\r\nT: 1\r\n\r\nnext".to_vec();
        assert_eq!(
            b.advance(&mut bytes),
            Ok(Scanned {
                taken: 20,
                kept: 12
            })
        );
        assert_eq!(&bytes[..12], b"2\r\nhi\r\n0\r\n\r\n");
        assert!(b.is_done());
        let mut b = BodyProgress::new(Body::UntilClose, Trailers::Drop);
        assert_eq!(taken(&mut b, b"anything"), Ok(8));
        assert!(b.until_close() && !b.is_done());
        let mut b = BodyProgress::new(Body::Chunked, Trailers::Drop);
        assert!(taken(&mut b, b"zz\r\n").is_err());
    }
}
