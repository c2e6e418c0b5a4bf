//! A stream with bytes already read put back in front of it (the ticket
//! WebSocket's first frames may come with its handshake), and bytes to
//! write held back until the first write or flush (the handshake's answer,
//! so that it leaves with the first message).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// `prefix`, then whatever `inner` delivers; writes go to `inner`, after
/// `head`.
#[derive(Debug)]
pub struct Rewind {
    prefix: Bytes,
    head: Bytes,
    inner: TcpStream,
}

impl Rewind {
    /// `inner`, to be read after `prefix`.
    pub fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Self {
            prefix,
            head: Bytes::new(),
            inner,
        }
    }

    /// Writes `head` before the first bytes written (or at the first flush).
    pub fn with_head(mut self, head: Bytes) -> Self {
        self.head = head;
        self
    }

    /// Writes what is left of `head` together with `buf`; `Ready(Ok(n))`
    /// once the head is out, `n` being the bytes of `buf` that went with it.
    fn poll_head(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        while !self.head.is_empty() {
            let bufs = [io::IoSlice::new(&self.head), io::IoSlice::new(buf)];
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let in_head = n.min(self.head.len());
            self.head.advance(in_head);
            if self.head.is_empty() {
                return Poll::Ready(Ok(n - in_head));
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.head.is_empty() {
            let n = std::task::ready!(self.poll_head(cx, buf))?;
            // Some of `buf` went with the head: report it; else go on.
            if n > 0 || buf.is_empty() {
                return Poll::Ready(Ok(n));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            std::task::ready!(self.poll_head(cx, &[]))?;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut peer = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        peer.write_all(b" world").await.expect("write");
        let mut r = Rewind::new(Bytes::from_static(b"hello,"), stream);
        let mut all = [0u8; 12];
        r.read_exact(&mut all).await.expect("read");
        assert_eq!(&all, b"hello, world");
        r.write_all(b"back").await.expect("write through");
        let mut back = [0u8; 4];
        peer.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"back");
    }

    #[tokio::test]
    async fn the_head_leaves_with_the_first_write_or_at_a_flush() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        for flush_first in [false, true] {
            let mut peer = TcpStream::connect(addr).await.expect("connect");
            let (stream, _) = listener.accept().await.expect("accept");
            let mut w = Rewind::new(Bytes::new(), stream).with_head(Bytes::from_static(b"HEAD|"));
            if flush_first {
                w.flush().await.expect("flush");
            }
            w.write_all(b"body").await.expect("write");
            w.write_all(b"+more").await.expect("write");
            drop(w);
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.expect("read");
            assert_eq!(all, b"HEAD|body+more", "flush first: {flush_first}");
        }
    }
}
