//! A user connection, from accept to close: the accept loop, reading and
//! deciding request heads, and the answers wicket makes itself.
//!
//! Every request head is read and parsed here. A request on a live ticket
//! (k8sTicket's `/<app>/<pod>/<uid>/…`, or a DNS-mode host) is forwarded
//! to its pod by one `forward::Exchange` over the pod connection
//! this user connection keeps. Any other request (the waiting page, claims, polls,
//! denials) is answered by [`Proxy::handle`] and its response written
//! here, so a browser that loads the waiting page and then the app keeps
//! its connection. The ticket WebSocket (an upgrade) goes on here too, as
//! a [`super::ticket_ws`] session.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use super::clock::ClientTimeouts;
use super::clock::{Clock, Phase};
use super::drain::{Sleeper, Sleepers, Stage};
use super::fairness::{self, Refusal, Slot};
use super::forward::{After, Exchange};
use super::pages::{self, ProxyBody};
use super::ticket_ws;
use super::trust::{self, Scheme};
use super::wire::{self, Body, HeadError, RequestHead, UpstreamHead};
use super::{Pass, Proxy, Upgrade};

/// Bytes asked of the kernel per read of a user's request.
pub(super) const READ_CHUNK: usize = 8 * 1024;

/// A forwarded request, decided: what the exchange with the pod needs
/// once the head is written.
#[derive(Debug)]
pub(super) struct Plan {
    pub body: Body,
    /// The user keeps the connection after the response.
    pub keep_alive: bool,
    pub http10: bool,
    pub upgrade: bool,
    pub head_request: bool,
    pub replayable: bool,
}

/// What to do with the request at the start of the buffer.
enum Next {
    /// Forward it; its head (`usize` bytes) is already rewritten in `out`.
    Forward(Plan, usize),
    /// Answer it with [`Proxy::handle`].
    Answer(Box<Answer>),
    /// An upgrade not on a ticket: the ticket WebSocket, or else
    /// answered and closed.
    Upgrade(Box<Answer>),
}

/// A request wicket answers itself.
struct Answer {
    req: Request<()>,
    /// Length of its head.
    len: usize,
    /// Close the connection after the response (the user asked, an
    /// HTTP/1.0 client, or a body nobody reads).
    close: bool,
    head_request: bool,
}

/// The pod connection a user connection uses.
#[derive(Debug)]
pub(super) struct PodLink {
    pub addr: SocketAddr,
    pub stream: TcpStream,
    /// It served an earlier request (so it may have been closed since).
    pub reused: bool,
}

/// Everything of a user connection but its socket.
pub(super) struct State {
    pub proxy: Arc<Proxy>,
    scope: Option<Arc<str>>,
    /// The peer's IP, for `X-Forwarded-For` (formatted once).
    client_ip: String,
    /// The peer is a trusted proxy (`proxy.trusted_proxies`).
    pub peer_trusted: bool,
    /// The peer's address.
    peer: IpAddr,
    /// The user's key for the limits per client (see [`fairness`]): the
    /// peer's, or behind a trusted proxy the forwarded client's, per request.
    client: IpAddr,
    /// This connection's place in the connection counts.
    _slot: Slot,
    /// Bytes read from the user and not yet handled.
    pub buf: BytesMut,
    /// A head being written (for the pod, or for the user).
    pub out: Vec<u8>,
    /// Bytes read from the pod.
    pub rbuf: BytesMut,
    pub pod: Option<PodLink>,
    /// The ticket the last forwarded request was let through on.
    pub pass: Option<Pass>,
    /// Time bounds (see [`ClientTimeouts`]).
    pub clock: Clock,
}

/// A user connection.
pub(super) struct Conn {
    client: TcpStream,
    s: State,
}

/// Serves `proxy` on `listener` until the task is aborted or the proxy
/// shuts down (see [`super::drain`]); with `scope`, only that app. On a
/// shutdown the connections the kernel had already accepted are taken,
/// then the listener is closed; the connections go on (on this runtime)
/// until they end.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, scope: Option<Arc<str>>) {
    let sleepers = proxy.drain.sleepers();
    let mut stage = proxy.drain.watch();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stage.reached(Stage::Draining) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, client)) => admit(stream, client, &proxy, &scope, &sleepers),
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Connections that completed their handshake are the clients' requests
    // in flight: served (each gets one answer, then closed), not reset.
    while let Some(Ok((stream, client))) = listener.accept().now_or_never() {
        admit(stream, client, &proxy, &scope, &sleepers);
    }
}

/// Starts serving an accepted connection (or refuses it, over a limit).
fn admit(
    stream: TcpStream,
    client: SocketAddr,
    proxy: &Arc<Proxy>,
    scope: &Option<Arc<str>>,
    sleepers: &Arc<Sleepers>,
) {
    let _ = stream.set_nodelay(true);
    let key = fairness::client_key(client.ip());
    // A trusted proxy carries many users: only the global cap counts
    // its connections (its users are counted per request).
    let slot = if proxy.trusted.trusts(client.ip()) {
        proxy.fairness.proxied_connection()
    } else {
        proxy.fairness.connection(key)
    };
    match slot {
        Ok(slot) => {
            let conn = Conn::new(stream, client, key, slot, Arc::clone(proxy), scope.clone());
            tokio::spawn(conn.run(Arc::clone(sleepers)));
        }
        Err(why) => {
            tracing::debug!(%client, "connection refused: {why}");
            tokio::spawn(refuse(stream, why));
        }
    }
}

impl Conn {
    fn new(
        client: TcpStream,
        addr: SocketAddr,
        key: IpAddr,
        slot: Slot,
        proxy: Arc<Proxy>,
        scope: Option<Arc<str>>,
    ) -> Self {
        let clock = Clock::new(proxy.clients);
        let peer = addr.ip().to_canonical();
        let peer_trusted = proxy.trusted.trusts(peer);
        Self {
            client,
            s: State {
                proxy,
                scope,
                client_ip: peer.to_string(),
                peer_trusted,
                peer,
                client: key,
                _slot: slot,
                buf: BytesMut::with_capacity(READ_CHUNK),
                out: Vec::with_capacity(1024),
                rbuf: BytesMut::new(),
                pod: None,
                pass: None,
                clock,
            },
        }
    }

    /// Serves requests until the user, an error or a shutdown ends the
    /// connection; `sleepers` are its edge thread's (see [`super::drain`]).
    async fn run(mut self, sleepers: Arc<Sleepers>) {
        let mut place = None;
        loop {
            match self.s.decide() {
                Ok(Next::Forward(plan, head_len)) => {
                    self.s.buf.advance(head_len);
                    if self.forward(plan).await.is_close() {
                        break;
                    }
                }
                Ok(Next::Answer(answer)) => {
                    self.s.buf.advance(answer.len);
                    let close = answer.close;
                    let resp = self
                        .s
                        .proxy
                        .handle(answer.req, self.s.scope.as_deref(), self.s.client)
                        .await;
                    // Looked at once the answer is ready: a shutdown that
                    // began meanwhile (a poll held) closes after it.
                    let close = close || self.s.proxy.drain.draining();
                    if self
                        .respond(resp, answer.head_request, close)
                        .await
                        .is_err()
                        || close
                    {
                        break;
                    }
                }
                Ok(Next::Upgrade(answer)) => {
                    // A ticket that reaches this replica a moment late:
                    // the head is still in the buffer, decided again.
                    let proxy = Arc::clone(&self.s.proxy);
                    let path = answer.req.uri().path();
                    if proxy
                        .upgrade_ticket_arrived(path, self.s.scope.as_deref())
                        .await
                    {
                        continue;
                    }
                    self.s.buf.advance(answer.len);
                    self.upgrade(answer.req).await;
                    return;
                }
                Err(HeadError::Partial) => {
                    if let Err(e) = self.read_more(&sleepers, &mut place).await {
                        tracing::trace!("user connection ended: {e}");
                        break;
                    }
                }
                Err(HeadError::TooLarge) => {
                    let _ = self
                        .reply(
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "Request head too large.\n",
                            true,
                        )
                        .await;
                    break;
                }
                Err(HeadError::Invalid(why)) => {
                    let body = format!("Bad request: {why}.\n");
                    let _ = self.reply(StatusCode::BAD_REQUEST, &body, true).await;
                    break;
                }
            }
        }
        self.finish().await;
    }

    /// Reads more of the user's bytes, closing idle and slow connections
    /// (see [`ClientTimeouts`]), and idle ones when the proxy shuts down
    /// (`sleepers` and `place`: see [`super::drain::Drain::until_draining`]).
    async fn read_more(
        &mut self,
        sleepers: &Arc<Sleepers>,
        place: &mut Option<Sleeper>,
    ) -> io::Result<()> {
        if self.s.buf.capacity() - self.s.buf.len() < READ_CHUNK / 2 {
            self.s.buf.reserve(READ_CHUNK);
        }
        let s = &mut self.s;
        let idle = s.buf.is_empty();
        s.clock.enter(if idle { Phase::Idle } else { Phase::Head });
        let drain = &s.proxy.drain;
        loop {
            tokio::select! {
                biased;
                read = self.client.read_buf(&mut s.buf) => {
                    return match read {
                        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(_) => Ok(()),
                        Err(e) => Err(e),
                    };
                }
                over = s.clock.expired() => {
                    if over {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                // Between requests only: a request begun is finished.
                () = drain.until_draining(sleepers, place), if idle => {
                    drain.closed_idle();
                    return Err(io::Error::other("shutting down"));
                }
            }
        }
    }

    /// Serves an upgrade request (already taken from the buffer): the
    /// ticket WebSocket runs on this connection until it ends; anything
    /// else is answered and the connection closed.
    async fn upgrade(mut self, req: Request<()>) {
        if let Some(link) = self.s.pod.take() {
            self.s.proxy.pool.checkin(link.addr, link.stream);
        }
        let proxy = Arc::clone(&self.s.proxy);
        match proxy
            .upgrade(req, self.s.scope.as_deref(), self.s.client)
            .await
        {
            Upgrade::TicketSocket(app, opening) => {
                let early = self.s.buf.split().freeze();
                ticket_ws::serve(app, opening, proxy.timing, self.client, early, &proxy.drain)
                    .await;
            }
            Upgrade::Answer(resp) => {
                if self.respond(resp, false, true).await.is_ok() {
                    self.finish().await;
                }
            }
        }
    }

    /// Forwards the request whose head is in `out` to the ticket's pod
    /// (see [`Exchange`]).
    async fn forward(&mut self, plan: Plan) -> After {
        // The pass is set for every forwarded request; it stays out of the
        // state for the exchange (the guard borrows its ticket).
        let Some(pass) = self.s.pass.take() else {
            return After::Close;
        };
        let after = Exchange {
            client: &mut self.client,
            s: &mut self.s,
        }
        .run(plan, &pass)
        .await;
        self.s.pass = Some(pass);
        after
    }

    /// Writes a response of wicket's own (its body is in memory).
    async fn respond(
        &mut self,
        resp: Response<ProxyBody>,
        head_request: bool,
        close: bool,
    ) -> io::Result<()> {
        respond(&mut self.client, &mut self.s, resp, head_request, close).await
    }

    /// Sends a small plain-text response of the proxy's own.
    async fn reply(&mut self, status: StatusCode, body: &str, close: bool) -> io::Result<()> {
        reply(&mut self.client, &mut self.s, status, body, close).await
    }

    /// The connection ends: its pod connection goes to the pool.
    async fn finish(mut self) {
        if let Some(link) = self.s.pod.take() {
            self.s.proxy.pool.checkin(link.addr, link.stream);
        }
        let _ = self.client.shutdown().await;
    }
}

/// Writes a response of wicket's own (its body is in memory) to `client`
/// of the connection whose state is `s`.
async fn respond(
    client: &mut TcpStream,
    s: &mut State,
    resp: Response<ProxyBody>,
    head_request: bool,
    close: bool,
) -> io::Result<()> {
    write_response(&mut s.out, resp, head_request, close).await;
    s.clock.write_all(client, &s.out, Phase::Send).await
}

/// Sends a small plain-text response of the proxy's own.
pub(super) async fn reply(
    client: &mut TcpStream,
    s: &mut State,
    status: StatusCode,
    body: &str,
    close: bool,
) -> io::Result<()> {
    let resp = pages::local(status, "text/plain; charset=utf-8", body.to_owned());
    respond(client, s, resp, false, close).await
}

/// Writes a response of wicket's own (its body is in memory) into `out`:
/// the one writer of every response wicket makes itself.
async fn write_response(
    out: &mut Vec<u8>,
    resp: Response<ProxyBody>,
    head_request: bool,
    close: bool,
) {
    let (parts, body) = resp.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(&body);
    }
}

/// Answers a connection over a limit (429, or 503 when the proxy is
/// full) and closes it. The request is read first (briefly, bounded), so
/// that closing does not reset the connection before the answer is read.
async fn refuse(mut stream: TcpStream, why: Refusal) {
    const GRACE: Duration = Duration::from_secs(1);
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(GRACE, stream.read(&mut buf)).await;
    let mut out = Vec::new();
    write_response(&mut out, super::refused(why), false, true).await;
    let write = async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(GRACE, write).await;
}

/// The head of a request wicket answers itself, as an `http` request:
/// its `X-Forwarded-Proto` is wicket's decision (`scheme`), its Host the
/// authority of an absolute-form target when it has one.
fn request_of(head: &RequestHead<'_, '_>, scheme: Scheme) -> Result<Request<()>, ()> {
    let mut req = Request::builder()
        .method(head.method)
        .uri(head.target)
        .version(if head.http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        });
    for (name, value) in head.fields() {
        let ours = name.eq_ignore_ascii_case("x-forwarded-proto")
            || (head.absolute && name.eq_ignore_ascii_case("host"));
        if !ours {
            req = req.header(name, value);
        }
    }
    if let Some(host) = head.host.filter(|_| head.absolute) {
        req = req.header(http::header::HOST, host);
    }
    if scheme == Scheme::Https {
        req = req.header("x-forwarded-proto", "https");
    }
    req.body(()).map_err(|_| ())
}

impl State {
    /// Looks at the request head at the start of the buffer: forwarded
    /// (its head for the pod written to `out`) or answered here.
    fn decide(&mut self) -> Result<Next, HeadError> {
        let mut slots = wire::header_slots();
        let mut head = wire::parse_request(&self.buf, &mut slots)?;
        let scheme = if self.peer_trusted {
            // Behind a trusted proxy the limits per client count the
            // client it forwards, not the proxy.
            self.client = fairness::client_key(trust::client_ip(
                &self.proxy.trusted,
                self.peer,
                head.forwarded_for(),
            ));
            trust::scheme(true, head.forwarded_proto())
        } else {
            Scheme::Http
        };
        self.clock.progress();
        let auth = self
            .proxy
            .authorize(&head, self.scope.as_deref(), &mut self.pass);
        let (Some(auth), Some(pass)) = (auth, self.pass.as_ref()) else {
            let answer = Box::new(Answer {
                req: request_of(&head, scheme).map_err(|()| {
                    HeadError::Invalid("request target or header field not accepted")
                })?,
                len: head.len,
                close: !head.keep_alive
                    || head.http10
                    || head.body != Body::Empty
                    || self.proxy.drain.draining(),
                head_request: head.method == "HEAD",
            });
            if head.upgrade.is_some() {
                return Ok(Next::Upgrade(answer));
            }
            return Ok(Next::Answer(answer));
        };
        // Only upgrades to the allowed protocols reach a pod (the ticket
        // WebSocket above is wicket's own).
        head.allow_upgrades(&self.proxy.wire.upgrades);
        let backend = pass.ticket().backend();
        self.out.clear();
        wire::write_request_head(
            &mut self.out,
            &head,
            &UpstreamHead {
                base_path: &backend.base_path,
                rest: auth.rest,
                prefix: auth.prefix,
                client_ip: &self.client_ip,
                trusted: self.peer_trusted,
                scheme: scheme.as_str(),
                default_host: backend.host.as_bytes(),
                ticket: (auth.pod, auth.uid),
            },
        );
        let plan = Plan {
            body: head.body,
            keep_alive: head.keep_alive && !head.http10,
            http10: head.http10,
            upgrade: head.upgrade.is_some(),
            head_request: head.method == "HEAD",
            replayable: head.is_replayable(),
        };
        Ok(Next::Forward(plan, head.len))
    }
}
