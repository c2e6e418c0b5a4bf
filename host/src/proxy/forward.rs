//! Forwarding a ticketed request to its pod over keep-alive connections
//! (see [`super::upstream`]), WebSocket upgrades included.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use super::upstream::{Link, Pool, PoolSettings};
use crate::state::{Backend, TicketGuard};

/// The body of every proxy response: a backend's streamed body (keeping its
/// ticket alive until fully sent) or a small local one.
pub type ProxyBody = Either<GuardedBody, Full<Bytes>>;

/// A backend response body that holds its ticket open while it streams.
#[derive(Debug)]
pub struct GuardedBody {
    inner: Incoming,
    _guard: TicketGuard,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A small local response.
pub fn local(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut r = Response::new(Either::Right(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Headers that describe one hop and are never forwarded as they are.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::UPGRADE || HOP_BY_HOP.contains(name)
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Most messages carry none: one pass over the names, without hashing,
    // spares the nine removals below.
    if !h.keys().any(is_hop_by_hop) {
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::UPGRADE);
}

/// Is this an HTTP/1.1 upgrade request (e.g. a WebSocket)?
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// What a forwarded request needs besides the request itself.
#[derive(Debug)]
pub struct Target<'a> {
    /// The pod.
    pub backend: &'a Backend,
    /// Path after the ticket prefix (no leading `/`).
    pub rest: &'a str,
    /// The ticket prefix the user sees (`/<app>/<pod>/<uid>`), for
    /// `X-Forwarded-Prefix`.
    pub prefix: &'a str,
    /// The user's connection.
    pub client: &'a Peer,
}

/// A user connection as forwarding sees it: its address, and its IP as a
/// ready header value (`X-Forwarded-For`), made once per connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The user's address.
    pub addr: SocketAddr,
    ip: HeaderValue,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { addr, ip }
    }
}

/// Sends ticketed requests to the pods.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pool: Arc<Pool>,
}

impl Forwarder {
    /// A forwarder with its own connection pool.
    pub fn new(pool: PoolSettings) -> Self {
        Self {
            pool: Pool::new(pool),
        }
    }

    /// The idle connection pool, for [`Link`]s of user connections.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Forwards `req` to the target; the guard keeps the ticket alive until
    /// the response (or the upgraded connection) ends.
    /// `link` is the user connection's; the call must run inside its
    /// [`super::upstream::drive`].
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        target: Target<'_>,
        guard: TicketGuard,
        link: &Link,
    ) -> Response<ProxyBody> {
        let upgrade = is_upgrade(&req);
        let uri = match upstream_uri(target.backend, target.rest, req.uri().query()) {
            Some(u) => u,
            None => return local(StatusCode::BAD_REQUEST, "text/plain", "Bad request path.\n"),
        };
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let upgrade_proto = req.headers().get(header::UPGRADE).cloned();
        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let h = &mut parts.headers;
        strip_hop_by_hop(h);
        if let Some(proto) = upgrade_proto {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, proto);
        }
        add_forwarded(h, &target);
        // The user's Host stays (as k8sTicket's proxy kept it); an HTTP/1.0
        // client may have sent none.
        if !h.contains_key(header::HOST) {
            h.insert(header::HOST, target.backend.host.clone());
        }

        let req = Request::from_parts(parts, body);
        let addr = target.backend.addr;
        let sent = if upgrade {
            self.pool.dial_for_upgrade(addr, req).await
        } else {
            link.send(addr, req).await
        };
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(backend = %target.backend.addr, "backend request failed: {e}");
                return local(
                    StatusCode::BAD_GATEWAY,
                    "text/plain",
                    "The application pod did not answer.\n",
                );
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let (Ok(client), Ok(backend)) = tokio::join!(client_upgrade, backend_upgrade)
                else {
                    return;
                };
                let (mut c, mut b) = (TokioIo::new(client), TokioIo::new(backend));
                // The guard lives as long as the tunnel: the ticket stays.
                let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                drop(guard);
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, Either::Right(Full::new(Bytes::new())));
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(
            parts,
            Either::Left(GuardedBody {
                inner: body,
                _guard: guard,
            }),
        )
    }
}

/// The origin-form URI on the pod: `pod.path` + the rest + the query.
fn upstream_uri(backend: &Backend, rest: &str, query: Option<&str>) -> Option<Uri> {
    let mut pq = String::with_capacity(
        backend.base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
    );
    pq.push_str(&backend.base_path);
    pq.push_str(rest);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    PathAndQuery::try_from(pq).ok().map(Uri::from)
}

fn add_forwarded(h: &mut HeaderMap, target: &Target<'_>) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static XOH: HeaderName = HeaderName::from_static("x-origin-host");
    static XPREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
    match h.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            if let Ok(v) = HeaderValue::from_str(&format!("{prev}, {}", target.client.addr.ip())) {
                h.insert(XFF.clone(), v);
            }
        }
        // The usual case: the connection's own value, shared, not rebuilt.
        None => {
            h.insert(XFF.clone(), target.client.ip.clone());
        }
    }
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(XFH.clone(), host.clone());
        h.insert(XOH.clone(), host);
    }
    if !h.contains_key(&XFP) {
        h.insert(XFP.clone(), HeaderValue::from_static("http"));
    }
    if let Ok(v) = HeaderValue::from_str(target.prefix) {
        h.insert(XPREFIX.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_rewrites_to_pod_path() {
        let b = Backend::new(SocketAddr::from(([10, 0, 0, 7], 3838)), "/app");
        let u = upstream_uri(&b, "x/y.js", Some("v=1")).expect("uri");
        assert_eq!(u.to_string(), "/app/x/y.js?v=1");
        let b = Backend::new(SocketAddr::from(([10, 0, 0, 7], 80)), "/");
        assert_eq!(upstream_uri(&b, "", None).expect("uri").to_string(), "/");
    }

    #[test]
    fn forwarded_headers_name_the_user_and_the_prefix() {
        let backend = Backend::new(SocketAddr::from(([10, 0, 0, 7], 3838)), "/");
        let peer = Peer::new(SocketAddr::from(([192, 0, 2, 9], 51000)));
        let target = Target {
            backend: &backend,
            rest: "x",
            prefix: "/demo/p1/u1",
            client: &peer,
        };
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("apps.example"));
        add_forwarded(&mut h, &target);
        assert_eq!(h["x-forwarded-for"], "192.0.2.9");
        assert_eq!(h["x-forwarded-host"], "apps.example");
        assert_eq!(h["x-origin-host"], "apps.example");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-prefix"], "/demo/p1/u1");

        // Behind another proxy: the chain grows, its scheme stays.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        add_forwarded(&mut h, &target);
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 192.0.2.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(
            !h.contains_key("x-forwarded-host"),
            "no Host, nothing to copy"
        );
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-app", HeaderValue::from_static("stays"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-app"));

        // An Upgrade header alone is enough to take the slow path.
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-app", HeaderValue::from_static("stays"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
