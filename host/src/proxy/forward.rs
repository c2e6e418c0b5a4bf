//! One forwarded exchange on a user connection ([`Exchange`]): the
//! request to the pod (its rewritten head, then the body as it arrives),
//! the response back to the user as it arrives, and for an upgrade (a
//! WebSocket) the tunnel after it. Bodies are forwarded in the bytes they
//! came in; only their ends are looked for (see [`super::wire`]). The
//! connection around it (reading heads, deciding, answering) is
//! [`super::connection`]'s.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Buf;
use http::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::Pass;
use super::clock::Phase;
use super::connection::{self, Plan, PodLink, State};
use super::drain::Stage;
use super::pool::{self, DialError};
use super::wire::{self, Body, BodyProgress, HeadError, MAX_HEAD, ResponseFacts};

/// Bytes asked of the kernel per read of a response body.
const BODY_CHUNK: usize = 64 * 1024;
/// What a user reads when the pod could not be reached or gave no answer.
const NO_ANSWER: &str = "The application pod did not answer.\n";
/// What a user reads when the pod took too long to answer.
const TOO_SLOW: &str = "The application pod did not answer in time.\n";
/// What a user reads whose request body stopped coming.
const BODY_STALLED: &str = "The request body did not arrive in time.\n";

/// What becomes of the user connection after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Ready for the next request.
    Keep,
    /// Closed (the user asked, the framing requires it, or something failed).
    Close,
}

impl After {
    /// Must the connection close?
    pub(super) fn is_close(self) -> bool {
        self == After::Close
    }
}

/// Why no response head came back.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// A connection that served earlier requests failed before any byte of
    /// the response: the pod most likely closed it while it sat idle.
    #[error("reused pod connection closed: {0}")]
    Stale(io::Error),
    /// The pod failed.
    #[error("pod connection: {0}")]
    Pod(io::Error),
    /// The pod's response head is unusable.
    #[error("pod response: {0}")]
    Response(HeadError),
    /// The request body the user sent is malformed.
    #[error("request body: {0}")]
    RequestBody(wire::ChunkError),
    /// The user went away (or did not take an interim response in time).
    #[error("the user closed the connection")]
    Client,
    /// The user stopped sending the request body (`proxy.body_timeout_ms`).
    #[error("the request body stalled")]
    BodyTimeout,
    /// The pod stopped reading the request or gave no response head in
    /// time (`proxy.response_timeout_ms`).
    #[error("the pod did not answer in time")]
    PodTimeout,
}

/// A write error as the exchange sees it: over time is the pod's fault
/// (it stopped reading), anything else is a connection that failed.
fn pod_write(e: io::Error, stale: impl FnOnce(io::Error) -> SendError) -> SendError {
    if e.kind() == io::ErrorKind::TimedOut {
        SendError::PodTimeout
    } else {
        stale(e)
    }
}

/// The response head at the start of `rbuf`, if complete.
fn response_facts(rbuf: &[u8], head_request: bool) -> Result<Option<ResponseFacts>, HeadError> {
    if rbuf.is_empty() {
        return Ok(None);
    }
    let mut slots = wire::header_slots();
    match wire::parse_response(rbuf, &mut slots, head_request) {
        Ok(head) => Ok(Some(head.facts())),
        Err(HeadError::Partial) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the response head at the start of `rbuf` for the user into `out`.
fn rewrite_response_head(
    out: &mut Vec<u8>,
    rbuf: &[u8],
    facts: &ResponseFacts,
    head_request: bool,
    close: bool,
) {
    if facts.wickets_cookie {
        tracing::debug!(
            status = facts.status,
            "a pod's Set-Cookie of one of wicket's cookies dropped"
        );
    }
    let mut slots = wire::header_slots();
    if let Ok(head) = wire::parse_response(rbuf, &mut slots, head_request) {
        wire::write_response_head(out, &rbuf[..facts.len], &head, close);
    }
}

/// One request forwarded on a user connection (its socket and state,
/// borrowed for the exchange).
pub(super) struct Exchange<'c> {
    /// The user's socket.
    pub client: &'c mut TcpStream,
    /// The connection's buffers, pod connection and clock.
    pub s: &'c mut State,
}

impl Exchange<'_> {
    /// Forwards the request whose head is in `out` (and whose body, if
    /// any, follows in `buf` and on the socket) to the pod of the ticket
    /// `pass` names, and relays the response.
    pub(super) async fn run(&mut self, plan: Plan, pass: &Pass) -> After {
        let guard = pass.ticket().open();
        let addr = pass.ticket().backend().addr;
        let s = &mut *self.s;
        let mut body = BodyProgress::new(plan.body, s.proxy.wire.trailers);
        // The body bytes already read go out with the head.
        let n = match body.advance(&mut s.buf) {
            Ok(n) => n,
            Err(e) => return self.bad_request_body(e).await,
        };
        s.out.extend_from_slice(&s.buf[..n.kept]);
        s.buf.advance(n.taken);
        let whole = body.is_done();

        let mut retried = false;
        let (mut link, facts) = loop {
            let link = match self.link(addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(%addr, "pod unreachable: {e}");
                    return self.bad_gateway(&plan, &body).await;
                }
            };
            match self.send(link, &mut body, &plan).await {
                Ok(sent) => break sent,
                // Sent again only when nothing of it can have been acted
                // on twice: a replayable method, the whole request in hand.
                Err(SendError::Stale(e)) if whole && plan.replayable && !retried => {
                    tracing::trace!(%addr, "retrying on a fresh connection: {e}");
                    retried = true;
                    self.s.rbuf.clear();
                }
                Err(SendError::Client) => return After::Close,
                Err(SendError::RequestBody(e)) => return self.bad_request_body(e).await,
                Err(SendError::BodyTimeout) => {
                    tracing::debug!(%addr, "request body stalled");
                    let _ = self
                        .reply(StatusCode::REQUEST_TIMEOUT, BODY_STALLED, true)
                        .await;
                    return After::Close;
                }
                Err(SendError::PodTimeout) => {
                    tracing::debug!(%addr, "the pod did not answer in time");
                    let _ = self
                        .reply(StatusCode::GATEWAY_TIMEOUT, TOO_SLOW, true)
                        .await;
                    return After::Close;
                }
                Err(e) => {
                    tracing::debug!(%addr, "no response from the pod: {e}");
                    return self.bad_gateway(&plan, &body).await;
                }
            }
        };

        if facts.status == 101 {
            if plan.upgrade && self.switches_to_allowed() {
                self.tunnel(link, &facts).await;
                drop(guard);
                return After::Close;
            }
            tracing::debug!(%addr, "pod switched protocols unasked or to another protocol");
            return self.bad_gateway(&plan, &body).await;
        }
        // A response before the whole request body: the rest of that body
        // is never read, so neither connection can carry another request.
        let early = !body.is_done();
        // A shutdown that began while the pod worked makes this the
        // connection's last response (looked at now, as late as can be).
        let close = !plan.keep_alive
            || facts.body == Body::UntilClose
            || early
            || self.s.proxy.drain.draining();
        match self
            .relay_response(&mut link, &facts, plan.head_request, close)
            .await
        {
            Ok(clean) if clean && facts.keep_alive && !early => {
                link.reused = true;
                self.s.pod = Some(link);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%addr, "response cut off: {e}");
                return After::Close;
            }
        }
        drop(guard);
        if close { After::Close } else { After::Keep }
    }

    /// Does the 101 at the start of `rbuf` switch to an allowed protocol
    /// (`proxy.upgrade_protocols`)? Parsed again: 101s are rare.
    fn switches_to_allowed(&self) -> bool {
        let mut slots = wire::header_slots();
        wire::parse_response(&self.s.rbuf, &mut slots, false)
            .is_ok_and(|head| head.switches_to_allowed(&self.s.proxy.wire.upgrades))
    }

    /// The pod connection for `addr`: the one this user connection holds,
    /// an idle one from the pool, or a new one.
    async fn link(&mut self, addr: std::net::SocketAddr) -> Result<PodLink, DialError> {
        let pool = &self.s.proxy.pool;
        if let Some(link) = self.s.pod.take() {
            if link.addr == addr {
                if pool::is_open(&link.stream) {
                    return Ok(link);
                }
            } else {
                // Another ticket on this connection, on another pod.
                pool.checkin(link.addr, link.stream);
            }
        }
        if let Some(stream) = pool.checkout(addr) {
            return Ok(PodLink {
                addr,
                stream,
                reused: true,
            });
        }
        Ok(PodLink {
            addr,
            stream: pool.dial(addr).await?,
            reused: false,
        })
    }

    /// Sends the request (head and body) on `link` and reads up to the
    /// final response head, forwarding interim (1xx) responses to the user.
    /// Meanwhile the user's side is watched: more body to forward, or a
    /// close (the user left; the exchange is dropped).
    async fn send(
        &mut self,
        mut link: PodLink,
        body: &mut BodyProgress,
        plan: &Plan,
    ) -> Result<(PodLink, ResponseFacts), SendError> {
        let stale = |reused: bool, e: io::Error| {
            if reused {
                SendError::Stale(e)
            } else {
                SendError::Pod(e)
            }
        };
        let s = &mut *self.s;
        if let Err(e) = s
            .clock
            .write_all(&mut link.stream, &s.out, Phase::Pod)
            .await
        {
            return Err(pod_write(e, |e| stale(link.reused, e)));
        }
        let mut answered = false;
        loop {
            let s = &mut *self.s;
            match response_facts(&s.rbuf, plan.head_request).map_err(SendError::Response)? {
                Some(f) if f.is_interim() => {
                    if !plan.http10 {
                        let sent = if f.verbatim {
                            s.clock
                                .write_all(&mut *self.client, &s.rbuf[..f.len], Phase::Send)
                                .await
                        } else {
                            let mut head = Vec::new();
                            rewrite_response_head(&mut head, &s.rbuf, &f, false, false);
                            s.clock
                                .write_all(&mut *self.client, &head, Phase::Send)
                                .await
                        };
                        sent.map_err(|_| SendError::Client)?;
                    }
                    s.rbuf.advance(f.len);
                    continue;
                }
                Some(f) => return Ok((link, f)),
                None if s.rbuf.len() >= MAX_HEAD => {
                    return Err(SendError::Response(HeadError::TooLarge));
                }
                None => {}
            }
            let body_pending = !body.is_done();
            let watch = !body_pending && s.buf.len() < MAX_HEAD;
            // A stalled body is the user's doing; anything else the pod's.
            s.clock.enter(if body_pending {
                Phase::Body
            } else {
                Phase::Pod
            });
            if s.rbuf.capacity() - s.rbuf.len() < 1024 {
                s.rbuf.reserve(connection::READ_CHUNK);
            }
            tokio::select! {
                biased;
                read = link.stream.read_buf(&mut s.rbuf) => match read {
                    Ok(0) if !answered => {
                        return Err(stale(link.reused, io::ErrorKind::UnexpectedEof.into()));
                    }
                    Ok(0) => return Err(SendError::Pod(io::ErrorKind::UnexpectedEof.into())),
                    Ok(_) => {
                        answered = true;
                        s.clock.progress();
                    }
                    Err(e) if !answered => return Err(stale(link.reused, e)),
                    Err(e) => return Err(SendError::Pod(e)),
                },
                // The task's own read-readiness slot: no waiter list to join
                // and leave on every request, as `readable()` would.
                ready = poll_fn(|cx| self.client.poll_read_ready(cx)), if body_pending || watch => {
                    if ready.is_err() {
                        return Err(SendError::Client);
                    }
                    if s.buf.capacity() - s.buf.len() < connection::READ_CHUNK / 2 {
                        s.buf.reserve(connection::READ_CHUNK);
                    }
                    // More body to forward, or pipelined bytes kept for
                    // later; a close means the user left.
                    match self.client.try_read_buf(&mut s.buf) {
                        Ok(0) => return Err(SendError::Client),
                        Ok(_) if body_pending => {
                            s.clock.progress();
                            let n = body.advance(&mut s.buf).map_err(SendError::RequestBody)?;
                            if let Err(e) = s
                                .clock
                                .write_all(&mut link.stream, &s.buf[..n.kept], Phase::Pod)
                                .await
                            {
                                return Err(pod_write(e, SendError::Pod));
                            }
                            s.buf.advance(n.taken);
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(SendError::Client),
                    }
                }
                over = s.clock.expired() => {
                    if over {
                        return Err(if body_pending {
                            SendError::BodyTimeout
                        } else {
                            SendError::PodTimeout
                        });
                    }
                }
            }
        }
    }

    /// Sends the response whose head `facts` describes (at the start of
    /// `rbuf`) to the user, then the rest of its body as it arrives.
    /// Returns whether the pod sent exactly the response (its connection
    /// may then carry another request).
    async fn relay_response(
        &mut self,
        link: &mut PodLink,
        facts: &ResponseFacts,
        head_request: bool,
        close: bool,
    ) -> io::Result<bool> {
        let s = &mut *self.s;
        let mut body = BodyProgress::new(facts.body, s.proxy.wire.trailers);
        let in_hand = body
            .advance(&mut s.rbuf[facts.len..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let end = facts.len + in_hand.kept;
        s.clock.enter(Phase::Pod);
        if facts.verbatim && !close {
            // The usual case: head and body as the pod sent them, one write.
            s.clock
                .write_all(&mut *self.client, &s.rbuf[..end], Phase::Send)
                .await?;
        } else {
            s.out.clear();
            rewrite_response_head(&mut s.out, &s.rbuf, facts, head_request, close);
            s.out.extend_from_slice(&s.rbuf[facts.len..end]);
            s.clock
                .write_all(&mut *self.client, &s.out, Phase::Send)
                .await?;
        }
        let mut exact = s.rbuf.len() == facts.len + in_hand.taken;
        s.rbuf.clear();
        while !body.is_done() {
            if s.rbuf.capacity() < BODY_CHUNK {
                s.rbuf.reserve(BODY_CHUNK);
            }
            // The pod's body, bounded like its head.
            let n = tokio::select! {
                biased;
                n = link.stream.read_buf(&mut s.rbuf) => n?,
                over = s.clock.expired() => {
                    if over {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    continue;
                }
            };
            s.clock.progress();
            if n == 0 {
                if body.until_close() {
                    break;
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = body
                .advance(&mut s.rbuf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            s.clock
                .write_all(&mut *self.client, &s.rbuf[..take.kept], Phase::Send)
                .await?;
            exact &= take.taken == s.rbuf.len();
            s.rbuf.clear();
        }
        Ok(exact)
    }

    /// After a 101: its head (re-written when the pod's is not fit to pass
    /// on), the bytes both sides sent early, then a byte tunnel until
    /// either side closes, or neither sends anything for
    /// `proxy.tunnel_idle_timeout_ms`.
    async fn tunnel(&mut self, mut link: PodLink, facts: &ResponseFacts) {
        let s = &mut *self.s;
        if !facts.verbatim {
            let mut head = Vec::new();
            rewrite_response_head(&mut head, &s.rbuf, facts, false, false);
            if s.clock
                .write_all(&mut *self.client, &head, Phase::Tunnel)
                .await
                .is_err()
            {
                return;
            }
            s.rbuf.advance(facts.len);
        }
        let early = s
            .clock
            .write_all(&mut *self.client, &s.rbuf, Phase::Tunnel)
            .await;
        if early.is_err() {
            return;
        }
        if !s.buf.is_empty()
            && s.clock
                .write_all(&mut link.stream, &s.buf, Phase::Tunnel)
                .await
                .is_err()
        {
            return;
        }
        // A long-lived tunnel keeps no HTTP buffers.
        s.rbuf = Default::default();
        s.buf = Default::default();
        s.out = Vec::new();
        s.clock.enter(Phase::Tunnel);
        let proxy = Arc::clone(&s.proxy);
        let _open = proxy.drain.tunnel();
        let mut stage = proxy.drain.watch();
        let moved = AtomicU64::new(0);
        let mut user = Counted {
            inner: &mut *self.client,
            moved: &moved,
        };
        let mut pod = Counted {
            inner: &mut link.stream,
            moved: &moved,
        };
        let copy = tokio::io::copy_bidirectional(&mut user, &mut pod);
        tokio::pin!(copy);
        let mut last = 0;
        loop {
            tokio::select! {
                ended = &mut copy => {
                    if let Err(e) = ended {
                        tracing::trace!(addr = %link.addr, "tunnel ended: {e}");
                    }
                    return;
                }
                // A shutdown holds tunnels up to its deadline, then closes
                // them (both sides get a FIN when the connections end).
                () = stage.reached(Stage::Closing) => {
                    tracing::debug!(addr = %link.addr, "tunnel closed: shutting down");
                    return;
                }
                () = s.clock.fired() => {
                    // Bytes moved since the last tick are progress.
                    if moved.load(Ordering::Relaxed) != last {
                        last = moved.load(Ordering::Relaxed);
                        s.clock.progress();
                    }
                    if s.clock.over() {
                        tracing::debug!(addr = %link.addr, "idle tunnel closed");
                        return;
                    }
                }
            }
        }
    }

    /// A small plain-text response of the proxy's own.
    async fn reply(&mut self, status: StatusCode, body: &str, close: bool) -> io::Result<()> {
        connection::reply(self.client, self.s, status, body, close).await
    }

    /// 502 to the user; the connection stays open when the request was
    /// read to its end and the user wants it kept.
    async fn bad_gateway(&mut self, plan: &Plan, body: &BodyProgress) -> After {
        let close = !plan.keep_alive || !body.is_done() || self.s.proxy.drain.draining();
        match self.reply(StatusCode::BAD_GATEWAY, NO_ANSWER, close).await {
            Ok(()) if !close => After::Keep,
            _ => After::Close,
        }
    }

    /// 400 for a malformed chunked request body; the connection closes
    /// (where the next request would start is unknown).
    async fn bad_request_body(&mut self, e: wire::ChunkError) -> After {
        let text = format!("Bad request: {e}.\n");
        let _ = self.reply(StatusCode::BAD_REQUEST, &text, true).await;
        After::Close
    }
}

/// A stream that counts the reads that brought bytes (a tunnel's
/// activity, for its idle bound). Atomic only because the connection's
/// future must be `Send`; one task uses it.
struct Counted<'a> {
    inner: &'a mut tokio::net::TcpStream,
    moved: &'a AtomicU64,
}

impl tokio::io::AsyncRead for Counted<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Counted<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
