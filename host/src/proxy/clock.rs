//! Time bounds of a user connection: one timer per connection that ticks
//! at a fixed period, and a progress counter the connection bumps as it
//! moves on. When the timer fires and the counter has not moved for as
//! many ticks as the current phase allows, the connection is over time.
//!
//! Why a ticking timer rather than a deadline per phase: resetting a
//! deadline on every read and write would touch the runtime's timer wheel
//! on every request of the keep-alive fast path. Here a request costs one
//! integer increment; the timer is touched once per period.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

/// Time bounds of user connections (and of what a forwarded request may
/// wait for). Each is a time without progress, not a total.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// A request head must be complete this long after its first byte.
    pub header: Duration,
    /// A connection with no request for this long is closed.
    pub idle: Duration,
    /// A forwarded request's body: at most this long without a byte from
    /// the user (then 408 and close).
    pub body: Duration,
    /// The pod: at most this long without a byte of its response, or
    /// without taking a byte of the request (then 504 if no response head
    /// came yet, else close).
    pub response: Duration,
    /// The user: at most this long without taking a byte of the response
    /// (then close).
    pub send: Duration,
    /// An upgraded connection (a WebSocket to the pod): at most this long
    /// without a byte either way (then close).
    pub tunnel_idle: Duration,
}

/// What a connection is doing, which decides the bound that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests, nothing buffered.
    Idle,
    /// Reading a request head.
    Head,
    /// Forwarding a request body from the user.
    Body,
    /// Waiting for (or reading) the pod's response, or writing to the pod.
    Pod,
    /// Writing the response to the user.
    Send,
    /// A byte tunnel after an upgrade.
    Tunnel,
}

impl ClientTimeouts {
    /// The timer period: a bound is noticed at most one period late (never
    /// early), and the timer costs nothing per request.
    pub fn tick(&self) -> Duration {
        let shortest = [
            self.header,
            self.idle,
            self.body,
            self.response,
            self.send,
            self.tunnel_idle,
        ]
        .into_iter()
        .min()
        .unwrap_or(self.idle);
        (shortest / 2).max(Duration::from_millis(10))
    }

    /// Periods without progress after which a connection is closed.
    fn ticks(&self, timeout: Duration) -> u32 {
        let tick = self.tick().as_millis().max(1);
        u32::try_from(timeout.as_millis().div_ceil(tick)).unwrap_or(u32::MAX)
    }

    fn limit(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Idle => self.idle,
            Phase::Head => self.header,
            Phase::Body => self.body,
            Phase::Pod => self.response,
            Phase::Send => self.send,
            Phase::Tunnel => self.tunnel_idle,
        }
    }
}

/// A connection's timer and progress.
pub struct Clock {
    bounds: ClientTimeouts,
    /// Bumped whenever the connection moves on.
    progress: u64,
    /// `progress` when the timer last fired, and the periods since then
    /// without progress.
    seen: u64,
    quiet: u32,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    /// The timer was polled since it was last set: it holds the waker of
    /// the connection's task (which never changes), so waiting on it again
    /// need not poll it (which would swap the waker on every request).
    armed: bool,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("phase", &self.phase)
            .field("quiet", &self.quiet)
            .finish_non_exhaustive()
    }
}

impl Clock {
    /// A clock for a new connection.
    pub fn new(bounds: ClientTimeouts) -> Self {
        Self {
            bounds,
            progress: 0,
            seen: 0,
            quiet: 0,
            phase: Phase::Idle,
            timer: Box::pin(tokio::time::sleep(bounds.tick())),
            armed: false,
        }
    }

    /// The connection moved on.
    #[inline]
    pub fn progress(&mut self) {
        self.progress = self.progress.wrapping_add(1);
    }

    /// The connection starts doing something else (which counts as
    /// progress: each phase gets its whole bound).
    #[inline]
    pub fn enter(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase;
            self.progress();
        }
    }

    /// Waits for the next tick; `true` when the connection is over the
    /// bound of its phase (else the timer is re-armed and the caller goes
    /// on). Cancel-safe.
    pub async fn expired(&mut self) -> bool {
        self.fired().await;
        self.over()
    }

    /// Waits for the next tick (for a caller that must note progress
    /// before [`Self::over`] is asked). Cancel-safe. The clock must be
    /// waited on by one task only (its connection's).
    pub async fn fired(&mut self) {
        std::future::poll_fn(|cx| {
            if self.armed {
                return if self.timer.is_elapsed() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
            let polled = self.timer.as_mut().poll(cx);
            self.armed = polled.is_pending();
            polled
        })
        .await;
    }

    /// After a tick: is the connection over the bound of its phase? If not,
    /// the timer is re-armed.
    pub fn over(&mut self) -> bool {
        if self.progress == self.seen {
            self.quiet = self.quiet.saturating_add(1);
        } else {
            (self.seen, self.quiet) = (self.progress, 0);
        }
        let b = self.bounds;
        if self.quiet >= b.ticks(b.limit(self.phase)) {
            return true;
        }
        self.timer.as_mut().reset(Instant::now() + b.tick());
        self.armed = false;
        false
    }

    /// Writes all of `buf` to `w`, counting each partial write as progress;
    /// `TimedOut` when `w` takes nothing for the bound of `phase`. The
    /// first write is tried before the timer is looked at, so a write that
    /// goes through at once costs nothing more.
    pub async fn write_all<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        mut buf: &[u8],
        phase: Phase,
    ) -> io::Result<()> {
        // The usual case, a write the kernel takes whole, needs no timer
        // and no select.
        let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *w).poll_write(cx, buf)));
        match first.await {
            Poll::Ready(Ok(0)) if !buf.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                self.progress();
                buf = &buf[n..];
                if buf.is_empty() {
                    return Ok(());
                }
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {}
        }
        let before = self.phase;
        self.enter(phase);
        while !buf.is_empty() {
            let n = tokio::select! {
                biased;
                n = WriteSome { w: &mut *w, buf } => n?,
                over = self.expired() => {
                    if over {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    continue;
                }
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
            self.progress();
        }
        self.phase = before;
        Ok(())
    }
}

/// One `write` call as a future (tokio's `write` borrows the buffer the
/// same way; this one is spelled out to keep the select above small).
struct WriteSome<'a, W> {
    w: &'a mut W,
    buf: &'a [u8],
}

impl<W: AsyncWrite + Unpin> Future for WriteSome<'_, W> {
    type Output = io::Result<usize>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let buf = self.buf;
        Pin::new(&mut *self.w).poll_write(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(ms: u64) -> ClientTimeouts {
        let d = Duration::from_millis(ms);
        ClientTimeouts {
            header: d,
            idle: d,
            body: d,
            response: d,
            send: d,
            tunnel_idle: d,
        }
    }

    #[test]
    fn timeouts_in_ticks() {
        let t = ClientTimeouts {
            header: Duration::from_secs(30),
            idle: Duration::from_secs(75),
            ..bounds(600_000)
        };
        assert_eq!(t.tick(), Duration::from_secs(15));
        assert_eq!(t.ticks(t.header), 2);
        assert_eq!(t.ticks(t.idle), 5);
        let short_body = ClientTimeouts {
            body: Duration::from_secs(4),
            ..t
        };
        assert_eq!(short_body.tick(), Duration::from_secs(2), "the shortest");
        let tiny = bounds(1);
        assert_eq!(tiny.tick(), Duration::from_millis(10));
        assert_eq!(tiny.ticks(tiny.idle), 1);
    }

    #[tokio::test]
    async fn a_quiet_phase_expires_never_early_and_progress_defers_it() {
        let mut c = Clock::new(ClientTimeouts {
            body: Duration::from_millis(100),
            ..bounds(10_000)
        });
        let start = Instant::now();
        c.enter(Phase::Body);
        // Progress at every tick for a while: never over.
        for _ in 0..5 {
            c.progress();
            assert!(!c.expired().await);
        }
        let quiet_from = Instant::now();
        while !c.expired().await {}
        let quiet = Instant::now() - quiet_from;
        assert!(quiet >= Duration::from_millis(100), "{quiet:?}");
        assert!(Instant::now() - start > Duration::from_millis(100));
    }
}
