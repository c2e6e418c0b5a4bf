//! The admin endpoint: `/metrics` (Prometheus), `/healthz`, and
//! `/apps/<app>/trace.csv` (the app's recent arrival trace, for
//! `wicket simulate --trace`; see [`crate::session_log`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::apps::Apps;
use crate::metrics::Metrics;

/// The answer to a path: status, content type and body.
fn route(path: &str, metrics: &Metrics, apps: &Apps) -> (StatusCode, &'static str, String) {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        )
    };
    match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        "/healthz" | "/readyz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        _ => {
            let Some(name) = path
                .strip_prefix("/apps/")
                .and_then(|p| p.strip_suffix("/trace.csv"))
            else {
                return not_found();
            };
            match apps.get(name) {
                Some(app) => (StatusCode::OK, "text/csv", app.session_trace()),
                None => not_found(),
            }
        }
    }
}

/// Connections the admin listener serves at once; more are closed at
/// once. Scrapers and probes need a few; a flood of idle connections
/// (the listener is often on every interface of the pod) must not take
/// the file descriptors the proxy's users need.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request head may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one admin connection lives at most (a scraper that keeps its
/// connection alive opens a new one).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves metrics, health and the apps' traces on `listener` until the
/// task is aborted, within [`MAX_CONNECTIONS`], [`HEAD_TIMEOUT`] and
/// [`CONNECTION_LIFETIME`].
pub async fn serve(listener: TcpListener, metrics: Metrics, apps: Arc<Apps>) {
    let metrics = Arc::new(metrics);
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: no busy loop meanwhile.
                tracing::debug!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(held) = Arc::clone(&open).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let apps = Arc::clone(&apps);
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                let apps = Arc::clone(&apps);
                async move {
                    let (status, ctype, body) = route(req.uri().path(), &metrics, &apps);
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = status;
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(ctype),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(held);
        });
    }
}

#[cfg(test)]
mod tests {
    //! The trace endpoint over a real socket, with a live app whose
    //! ticket expires on the app's own loop.
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::app::{App, Routing, TicketRequest};
    use crate::policy::{Limits, PolicyEngine, PolicyRunner, PolicySource, load_default};
    use crate::provider::{BoxFuture, PodEvent, PodProvider, ProviderError};
    use crate::state::{AppSettings, Backend, PodInfo};

    /// pods.max is 0: nothing is ever created or deleted.
    struct Fixed;

    impl PodProvider for Fixed {
        fn create<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<PodInfo, ProviderError>> {
            Box::pin(async move {
                Err(ProviderError {
                    action: "create".into(),
                    app: app.into(),
                    reason: "fixed pods".into(),
                })
            })
        }

        fn delete<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), ProviderError>> {
            Box::pin(async { Ok(()) })
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_apps_finished_sessions_are_served_as_a_trace() {
        let metrics = Metrics::new().expect("metrics");
        let engine = PolicyEngine::new(Limits {
            timeout: Duration::from_secs(2),
            ..Limits::default()
        })
        .expect("engine");
        let default = load_default(&engine).expect("default");
        let runner = PolicyRunner::new(
            "t",
            engine,
            PolicySource::new("default", std::sync::Arc::clone(&default)),
            default,
            metrics.policy.clone(),
        );
        let settings = AppSettings {
            tickets_max: 2,
            pods_max: 0,
            ..AppSettings::default()
        };
        let routing = Routing {
            name: "t".into(),
            dns: false,
        };
        let expiry = Duration::from_millis(300);
        let app = App::new(
            routing,
            settings,
            expiry,
            runner,
            Arc::new(Fixed),
            metrics.clone(),
        );
        app.apply(PodEvent::Upsert {
            app: "t".into(),
            pod: PodInfo {
                name: "p".into(),
                backend: Some(Backend::new(([127, 0, 0, 1], 9).into(), "/")),
                ready: true,
                autoscaled: false,
            },
        });
        let apps = Arc::new(Apps::default());
        apps.insert(Arc::clone(&app));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, metrics, apps));
        let looping = tokio::spawn(Arc::clone(&app).run());

        let before = std::time::SystemTime::now();
        assert!(matches!(
            app.request_ticket().await,
            TicketRequest::Granted(_)
        ));
        let empty = get(addr, "/apps/t/trace.csv").await;
        assert!(empty.starts_with("HTTP/1.1 200"), "{empty}");
        assert!(
            empty.ends_with("arrival_seconds,session_seconds\n"),
            "no session finished yet: {empty}"
        );
        // Unused, the ticket expires on the loop's next sweeps.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let full = get(addr, "/apps/t/trace.csv").await;
        assert!(full.contains("content-type: text/csv"), "{full}");
        let body = full.split("\r\n\r\n").nth(1).expect("body");
        let trace = crate::simulate::trace::parse(body).expect("the simulator reads it");
        assert_eq!(trace.arrivals.len(), 1, "{body}");
        let asked = trace.start_unix_ms.expect("RFC 3339 times");
        let before_ms = before
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        assert!((asked - before_ms).abs() < 1000, "{asked} vs {before_ms}");
        assert!(trace.arrivals[0].session_ms < 1000, "never used: {body}");
        assert!(
            get(addr, "/apps/nope/trace.csv")
                .await
                .starts_with("HTTP/1.1 404")
        );
        looping.abort();
        server.abort();
    }

    /// Has the server closed `s` within `limit` (EOF or reset)?
    async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 256];
        matches!(
            tokio::time::timeout(limit, async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await,
            Ok(())
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_are_closed_and_connections_are_capped() {
        let metrics = Metrics::new().expect("metrics");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, metrics, Arc::new(Apps::default())));
        let connect = || tokio::net::TcpStream::connect(addr);

        // A head that never ends is closed after the head timeout.
        let mut slow = connect().await.expect("connect");
        slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let started = std::time::Instant::now();
        assert!(closed_within(&mut slow, HEAD_TIMEOUT * 2).await);
        assert!(started.elapsed() >= HEAD_TIMEOUT - Duration::from_millis(500));

        // Past the cap, a connection is closed at once; the held ones are
        // still served.
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(connect().await.expect("connect"));
        }
        let mut over = connect().await.expect("connect");
        assert!(closed_within(&mut over, Duration::from_secs(2)).await);
        let first = held.first_mut().expect("held");
        first
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        first.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Places come back when connections end.
        drop(held);
        let mut ok = false;
        for _ in 0..50 {
            let mut s = connect().await.expect("connect");
            let mut answer = Vec::new();
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .is_ok()
                && s.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "served again after the held connections closed");
        server.abort();
    }
}
