//! The built-in demo app: a tiny stateful web app that shows which pod and
//! ticket served you, with a WebSocket counter kept per session so that
//! stickiness is visible. `wicket demo` runs one process of it per "pod".

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpSocket};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Marker line printed on stdout once the app listens (read by the local
/// provider to learn the port).
pub const LISTENING: &str = "LISTENING";

struct Demo {
    pod: String,
    /// Session counters, keyed by the proxy prefix (one per ticket).
    counters: Mutex<HashMap<String, u64>>,
}

/// Serves the demo app on every address of `listen` until the process
/// ends: one process can stand for many pods (one address each), as the
/// scale benchmark needs (1,000 pods on 127.1.x.y).
pub async fn serve(listen: Vec<SocketAddr>, pod: String) -> anyhow::Result<()> {
    let demo = Arc::new(Demo {
        pod,
        counters: Mutex::new(HashMap::new()),
    });
    let mut listeners = Vec::with_capacity(listen.len());
    for addr in &listen {
        let listener = bind(*addr).map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
        // One line per address; the local provider reads the first.
        println!("{LISTENING} {}", listener.local_addr()?);
        listeners.push(listener);
    }
    let Some(last) = listeners.pop() else {
        anyhow::bail!("no address to listen on");
    };
    for listener in listeners {
        tokio::spawn(accept_loop(listener, Arc::clone(&demo)));
    }
    accept_loop(last, demo).await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, demo: Arc<Demo>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let demo = Arc::clone(&demo);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let demo = Arc::clone(&demo);
                async move { Ok::<_, Infallible>(demo.handle(req)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Pending connections queued: room for a proxy that opens hundreds of
/// keep-alive connections at once (the default 128 drops SYNs, and each
/// dropped one waits a second for its retransmit).
const BACKLOG: u32 = 1024;

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}

impl Demo {
    fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if path.ends_with("/hello") {
            return text(StatusCode::OK, "text/plain", "hello, world\n");
        }
        if path.ends_with("/healthz") {
            return text(StatusCode::OK, "text/plain", "ok\n");
        }
        let prefix = req
            .headers()
            .get("x-forwarded-prefix")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(direct)")
            .to_owned();
        if path.ends_with("/counter") && req.headers().contains_key(header::UPGRADE) {
            return self.counter(req, prefix);
        }
        let count = self.counters.lock().get(&prefix).copied().unwrap_or(0);
        let page = PAGE
            .replace("{{POD}}", &crate::html::escape(&self.pod))
            .replace("{{PREFIX}}", &crate::html::escape(&prefix))
            .replace("{{PATH}}", &crate::html::escape(path))
            .replace("{{COUNT}}", &count.to_string());
        text(StatusCode::OK, "text/html; charset=utf-8", page)
    }

    /// WebSocket: each "inc" message bumps the session's counter and answers
    /// its new value.
    fn counter(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        session: String,
    ) -> Response<Full<Bytes>> {
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
            return text(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "missing Sec-WebSocket-Key\n",
            );
        };
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg
                    && t.as_str() == "inc"
                {
                    let n = {
                        let mut c = self.counters.lock();
                        let n = c.entry(session.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if ws.send(Message::text(n.to_string())).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = text(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Bytes::new());
        let h = r.headers_mut();
        h.remove(header::CONTENT_TYPE);
        h.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        h.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }
}

const PAGE: &str = include_str!("static/demo_app.html");
