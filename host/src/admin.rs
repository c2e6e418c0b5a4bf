//! The admin endpoint: `/metrics` (Prometheus) and `/healthz`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Serves metrics and health on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let metrics = Arc::new(metrics);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move {
                    let (status, ctype, body) = match req.uri().path() {
                        "/metrics" => (
                            StatusCode::OK,
                            "text/plain; version=0.0.4",
                            metrics.render(),
                        ),
                        "/healthz" | "/readyz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                        _ => (
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "not found\n".to_owned(),
                        ),
                    };
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = status;
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(ctype),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
