//! Keep-alive connections to the pods.
//!
//! Every user connection has a [`Link`]: the upstream connection it last
//! used, driven by the user connection's own task (see [`drive`]). A
//! proxied request therefore never hops to another task or thread, which
//! is where a general-purpose pooled client spends most of a small
//! request's time. When the user's connection ends, its upstream
//! connection goes back to the per-pod idle [`Pool`] for the next user
//! connection. WebSocket upgrades get a connection of their own (see
//! [`Pool::dial_for_upgrade`]), which never returns to the pool.
//!
//! Idle connections are pooled per thread: a socket reports readiness to
//! the runtime that registered it, so a connection used from another edge
//! thread would need a cross-thread wake-up for every response (and waits
//! whenever its own thread is busy).

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

/// The I/O half of an upstream connection.
type Conn = Connection<TokioIo<TcpStream>, Incoming>;

/// Connection pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Backend dial timeout (k8sTicket: 5 s).
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Most idle connections kept per pod, per thread.
    pub max_idle_per_host: usize,
}

/// Why a request did not reach its pod or got no answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connect failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The pod.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The TCP connect did not finish within the dial timeout.
    #[error("connecting to {addr}: timed out after {timeout:?}")]
    ConnectTimeout {
        /// The pod.
        addr: SocketAddr,
        /// The dial timeout.
        timeout: Duration,
    },
    /// HTTP failed on an established connection.
    #[error("HTTP exchange with the pod: {0}")]
    Http(#[from] hyper::Error),
    /// Fresh connections kept closing before the request could be sent.
    #[error("the pod closed {0} connections in a row before the request was sent")]
    Closed(usize),
}

/// One upstream connection: the half that sends requests and the half
/// that does the I/O, which must be polled for anything to happen.
struct Upstream {
    addr: SocketAddr,
    /// Out of its slot while a request is being handed over.
    sender: Option<SendRequest<Incoming>>,
    conn: Conn,
}

impl Upstream {
    /// Idle and open: fit for the pool.
    fn reusable(&self) -> bool {
        self.sender
            .as_ref()
            .is_some_and(|s| s.is_ready() && !s.is_closed())
    }
}

struct Idle {
    up: Upstream,
    since: Instant,
}

/// Moves the connections idle for `timeout` or longer from `list` (oldest
/// first, as parked) to `into`, to be closed outside the pool's lock.
fn take_expired(list: &mut Vec<Idle>, now: Instant, timeout: Duration, into: &mut Vec<Idle>) {
    let keep_from = list
        .iter()
        .position(|i| now.duration_since(i.since) < timeout)
        .unwrap_or(list.len());
    into.extend(list.drain(..keep_from));
}

/// Idle keep-alive connections per pod, shared by all user connections.
pub struct Pool {
    settings: PoolSettings,
    idle: Mutex<IdleMap>,
}

/// Idle connections by (the thread whose runtime they belong to, pod).
type IdleKey = (ThreadId, SocketAddr);

struct IdleMap {
    by_addr: HashMap<IdleKey, Vec<Idle>>,
    last_sweep: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// How often idle connections of every pod are checked for expiry (so a
/// deleted pod's connections do not linger).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Fresh connections tried for one request before giving up.
const MAX_ATTEMPTS: usize = 3;

impl Pool {
    /// An empty pool.
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            idle: Mutex::new(IdleMap {
                by_addr: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        })
    }

    /// The most recently parked connection to `addr` of this thread that
    /// is still within the idle timeout (its liveness is checked by the
    /// caller).
    fn checkout(&self, addr: SocketAddr) -> Option<Upstream> {
        let now = Instant::now();
        let key = (thread::current().id(), addr);
        let mut expired = Vec::new();
        let found = {
            let mut idle = self.idle.lock();
            let list = idle.by_addr.get_mut(&key)?;
            take_expired(list, now, self.settings.idle_timeout, &mut expired);
            let found = list.pop().map(|i| i.up);
            if list.is_empty() {
                idle.by_addr.remove(&key);
            }
            found
        };
        // Closing sockets outside the lock.
        drop(expired);
        found
    }

    /// Parks an idle connection (of this thread's runtime), or drops it
    /// when it is not reusable or the pod already has enough idle ones.
    fn checkin(&self, up: Upstream) {
        if !up.reusable() || self.settings.max_idle_per_host == 0 {
            return;
        }
        let now = Instant::now();
        let mut dropped = Vec::new();
        {
            let mut idle = self.idle.lock();
            if now.duration_since(idle.last_sweep) >= SWEEP_EVERY {
                idle.last_sweep = now;
                let timeout = self.settings.idle_timeout;
                idle.by_addr.retain(|_, list| {
                    take_expired(list, now, timeout, &mut dropped);
                    !list.is_empty()
                });
            }
            let list = idle
                .by_addr
                .entry((thread::current().id(), up.addr))
                .or_default();
            if list.len() < self.settings.max_idle_per_host {
                list.push(Idle { up, since: now });
            } else {
                dropped.push(Idle { up, since: now });
            }
        }
        drop(dropped);
    }

    /// A new connection to `addr` (dial timeout applied).
    async fn dial(&self, addr: SocketAddr) -> Result<(SendRequest<Incoming>, Conn), UpstreamError> {
        let timeout = self.settings.connect_timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
            Err(_) => return Err(UpstreamError::ConnectTimeout { addr, timeout }),
        };
        // Small requests and responses: do not wait to coalesce.
        let _ = stream.set_nodelay(true);
        Ok(http1::Builder::new()
            // One buffer, one write(2): measured ≈ 4 % less proxy CPU per
            // request than writev(2) of head and body (bench/NOTES.md).
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await?)
    }

    /// Sends an upgrade request (a WebSocket) on a connection of its own,
    /// driven by its own task until it is upgraded or closed.
    pub async fn dial_for_upgrade(
        &self,
        addr: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (mut sender, conn) = self.dial(addr).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, "upgrade connection ended: {e}");
            }
        });
        Ok(sender.send_request(req).await?)
    }
}

/// A user connection's upstream connection (at most one at a time).
pub struct Link {
    pool: Arc<Pool>,
    slot: Mutex<Option<Upstream>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    /// A link with no connection yet; connections come from `pool`.
    pub fn new(pool: Arc<Pool>) -> Arc<Self> {
        Arc::new(Self {
            pool,
            slot: Mutex::new(None),
        })
    }

    /// Sends `req` to the pod at `addr` and waits for the response head.
    /// Must be awaited inside [`drive`] for this link (the connection does
    /// its I/O when the user connection's task polls it).
    ///
    /// A pooled connection the pod closed while it was idle is replaced by
    /// a fresh one, as long as the request was not sent on it.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut sender = self.acquire(addr).await?;
            if sender.ready().await.is_err() {
                self.discard();
                continue;
            }
            let response = sender.try_send_request(req);
            self.put_back(sender);
            match response.await {
                Ok(r) => return Ok(r),
                Err(mut e) => match e.take_message() {
                    // Not sent: the connection was closed under us.
                    Some(unsent) => {
                        req = unsent;
                        self.discard();
                    }
                    None => return Err(e.into_error().into()),
                },
            }
        }
        Err(UpstreamError::Closed(MAX_ATTEMPTS))
    }

    /// The sender of a live connection to `addr`, installed in the slot:
    /// the one already there, a pooled one, or a new one.
    async fn acquire(&self, addr: SocketAddr) -> Result<SendRequest<Incoming>, UpstreamError> {
        let previous = {
            let mut slot = self.slot.lock();
            match slot.as_mut() {
                Some(up) if up.addr == addr => {
                    if let Some(s) = up.sender.take() {
                        return Ok(s);
                    }
                    slot.take()
                }
                _ => slot.take(),
            }
        };
        // A request for another pod (another ticket on this connection):
        // the previous pod's connection goes back to the pool.
        if let Some(prev) = previous {
            self.pool.checkin(prev);
        }
        let mut up = loop {
            match self.pool.checkout(addr) {
                Some(mut up) => {
                    // One poll surfaces a close the pod sent while the
                    // connection sat idle.
                    let open =
                        poll_fn(|cx| Poll::Ready(Pin::new(&mut up.conn).poll(cx).is_pending()))
                            .await;
                    if open && up.sender.as_ref().is_some_and(|s| !s.is_closed()) {
                        break up;
                    }
                }
                None => {
                    let (sender, conn) = self.pool.dial(addr).await?;
                    break Upstream {
                        addr,
                        sender: Some(sender),
                        conn,
                    };
                }
            }
        };
        let sender = up.sender.take().ok_or(UpstreamError::Closed(0))?;
        *self.slot.lock() = Some(up);
        Ok(sender)
    }

    /// Returns the sender to the connection in the slot (if that
    /// connection still exists).
    fn put_back(&self, sender: SendRequest<Incoming>) {
        if let Some(up) = self.slot.lock().as_mut()
            && up.sender.is_none()
        {
            up.sender = Some(sender);
        }
    }

    /// Drops the connection in the slot.
    fn discard(&self) {
        let gone = self.slot.lock().take();
        drop(gone);
    }

    /// Polls the connection in the slot; a finished one is dropped.
    fn poll_conn(&self, cx: &mut Context<'_>) {
        let mut slot = self.slot.lock();
        if let Some(up) = slot.as_mut()
            && Pin::new(&mut up.conn).poll(cx).is_ready()
        {
            *slot = None;
        }
    }

    /// The user connection ended: its upstream connection goes to the pool.
    fn release(&self) {
        let up = self.slot.lock().take();
        if let Some(up) = up {
            self.pool.checkin(up);
        }
    }
}

/// Runs a user connection's `server` future and the upstream connection of
/// its `link` together, in the calling task, until the user connection
/// ends; then the upstream connection goes back to the pool.
pub async fn drive<F: Future>(server: F, link: &Link) -> F::Output {
    let mut server = pin!(server);
    let out = poll_fn(|cx| {
        // Upstream first (a response arrived), then the user side (which
        // may send a request or want body bytes), then upstream again so
        // that request or body moves in this same wake-up.
        link.poll_conn(cx);
        let out = server.as_mut().poll(cx);
        link.poll_conn(cx);
        out
    })
    .await;
    link.release();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::server::conn::http1 as server_http1;
    use hyper::service::service_fn;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    fn settings() -> PoolSettings {
        PoolSettings {
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            max_idle_per_host: 4,
        }
    }

    /// A backend that answers with the number of the TCP connection the
    /// request came on; `close_after` closes each connection after that
    /// many requests (keep-alive off for the last one).
    async fn backend(close_after: Option<usize>) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&conns);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let served = Arc::new(AtomicUsize::new(0));
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        let k = served.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            let mut r = Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(n.to_string()),
                            ));
                            if close_after.is_some_and(|c| k >= c) {
                                r.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = server_http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, conns)
    }

    /// A front server whose every request is sent through one link per
    /// user connection, as the proxy does.
    async fn front(pool: Arc<Pool>, backend: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let link = Link::new(Arc::clone(&pool));
                tokio::spawn(async move {
                    let l = Arc::clone(&link);
                    let svc = service_fn(move |mut req: Request<Incoming>| {
                        let l = Arc::clone(&l);
                        async move {
                            req.headers_mut().insert(
                                http::header::HOST,
                                http::HeaderValue::from_static("backend"),
                            );
                            let r = match l.send(backend, req).await {
                                Ok(mut r) => {
                                    // Hop-by-hop, as the proxy does: the pod
                                    // closing its side must not close the user's.
                                    r.headers_mut().remove(http::header::CONNECTION);
                                    r.map(|b| b.boxed())
                                }
                                Err(e) => Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from(format!(
                                        "error: {e}"
                                    )))
                                    .map_err(|never| match never {})
                                    .boxed(),
                                ),
                            };
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let server =
                        server_http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    let _ = drive(server, &link).await;
                });
            }
        });
        addr
    }

    /// Sends `n` GETs on one keep-alive client connection; the bodies.
    async fn get_many(front: SocketAddr, n: usize) -> Vec<String> {
        let stream = TcpStream::connect(front).await.expect("connect");
        let (mut sender, conn) =
            http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let mut out = Vec::new();
        for _ in 0..n {
            sender.ready().await.expect("ready");
            let req = Request::builder()
                .uri("/x")
                .header(http::header::HOST, "front")
                .body(http_body_util::Empty::new())
                .expect("request");
            let resp = sender.send_request(req).await.expect("response");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            out.push(String::from_utf8_lossy(&body).into_owned());
        }
        out
    }

    #[tokio::test]
    async fn one_upstream_connection_serves_a_user_connection_and_is_pooled_after() {
        let (backend, conns) = backend(None).await;
        let pool = Pool::new(settings());
        let front = front(Arc::clone(&pool), backend).await;
        assert_eq!(get_many(front, 5).await, vec!["1"; 5]);
        // The next user connection reuses the parked connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(get_many(front, 3).await, vec!["1"; 3]);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_pod_closes_is_replaced_without_failing_requests() {
        // The backend closes every connection after two requests.
        let (backend, conns) = backend(Some(2)).await;
        let pool = Pool::new(settings());
        let front = front(Arc::clone(&pool), backend).await;
        let bodies = get_many(front, 6).await;
        assert!(bodies.iter().all(|b| !b.starts_with("error")), "{bodies:?}");
        assert_eq!(conns.load(Ordering::SeqCst), 3, "{bodies:?}");
    }

    #[tokio::test]
    async fn an_unreachable_pod_is_an_error_not_a_hang() {
        // Bind and drop: nothing listens on that port any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let pool = Pool::new(settings());
        let front = front(pool, addr).await;
        let bodies = get_many(front, 1).await;
        assert!(bodies[0].starts_with("error: connecting"), "{bodies:?}");
    }
}
