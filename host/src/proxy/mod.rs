//! The HTTP edge: waiting page, ticket WebSocket, ticket claims and the
//! proxied requests. It reads tickets and backends from the apps' state and
//! never talks to Kubernetes.

pub mod cookies;
pub mod forward;
pub mod pages;
pub mod routes;
pub mod ticket_ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::app::App;
use crate::apps::Apps;
use crate::state::Token;
use forward::{Forwarder, ProxyBody, Target, local};
use routes::{Route, RouteError};
use ticket_ws::WsTiming;

/// The claim endpoint under a ticket prefix (or an app in DNS mode).
const CLAIM: &str = ".wicket/claim";

/// The proxy service: routes every request of every app.
#[derive(Debug)]
pub struct Proxy {
    apps: Arc<Apps>,
    forwarder: Forwarder,
    timing: WsTiming,
}

fn host(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

fn wants_https(h: &HeaderMap) -> bool {
    h.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

impl Proxy {
    /// A proxy over `apps`.
    pub fn new(apps: Arc<Apps>, forwarder: Forwarder, timing: WsTiming) -> Arc<Self> {
        Arc::new(Self { apps, forwarder, timing })
    }

    /// Handles one request. Never fails: every error is a response.
    /// `scope` limits a listener to one app (k8sTicket's per-app ports);
    /// None serves every app (the shared port).
    pub async fn handle(&self, req: Request<Incoming>, client: SocketAddr, scope: Option<&str>) -> Response<ProxyBody> {
        let route = match routes::parse(req.uri().path()) {
            Ok(r) => r,
            Err(RouteError::NotFound) => return local(StatusCode::NOT_FOUND, "text/plain", "Not found.\n"),
            Err(RouteError::TooLong) => return local(StatusCode::URI_TOO_LONG, "text/plain", "Path too long.\n"),
            Err(e) => return local(StatusCode::BAD_REQUEST, "text/plain", format!("Bad request: {e}.\n")),
        };
        let app_name = match route {
            Route::Waiting { app }
            | Route::TicketSocket { app }
            | Route::Internal { app, .. }
            | Route::PodOnly { app }
            | Route::Ticketed { app, .. } => app,
        };
        let app = match scope {
            Some(only) if only != app_name => None,
            _ => self.apps.get(app_name),
        };
        let Some(app) = app else {
            return local(StatusCode::NOT_FOUND, "text/plain", "No such application.\n");
        };
        if app.routing().dns
            && let Some(dns) = dns_target(&app, &req)
        {
            return self.dns(&app, dns, req, client).await;
        }
        match route {
            Route::Waiting { .. } if req.method() == Method::GET || req.method() == Method::HEAD => {
                pages::waiting_page(app.name(), app.routing().dns)
            }
            Route::Waiting { .. } => local(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "Method not allowed.\n"),
            Route::TicketSocket { .. } => ticket_ws::accept(app, req, self.timing),
            Route::Internal { .. } => local(StatusCode::NOT_FOUND, "text/plain", "Not found.\n"),
            Route::PodOnly { .. } => pages::redirect(StatusCode::FOUND, &format!("/{}/", app.name())),
            Route::Ticketed { pod, uid, rest, .. } if rest == CLAIM => {
                let (pod, uid) = (pod.to_owned(), uid.to_owned());
                let home = format!("/{}/{pod}/{uid}/", app.name());
                claim(&app, &pod, &uid, &req, &home, None)
            }
            Route::Ticketed { pod, uid, rest, .. } => {
                let prefix = format!("/{}/{pod}/{uid}", app.name());
                let (pod, uid, rest) = (pod.to_owned(), uid.to_owned(), rest.to_owned());
                self.ticketed(&app, &pod, &uid, &rest, &prefix, req, client).await
            }
        }
    }

    /// DNS mode: `<pod>.<uid>.<host>/<app>/<rest>`.
    async fn dns(&self, app: &App, t: DnsTarget, req: Request<Incoming>, client: SocketAddr) -> Response<ProxyBody> {
        if let Err(e) = routes::check_rest(&t.rest) {
            return local(StatusCode::BAD_REQUEST, "text/plain", format!("Bad request: {e}.\n"));
        }
        let home = format!("/{}/", app.name());
        if t.rest == CLAIM {
            let domain = t.base.split(':').next().unwrap_or(&t.base);
            return claim(app, &t.pod, &t.uid, &req, &home, Some(domain));
        }
        self.ticketed(app, &t.pod, &t.uid, &t.rest, home.trim_end_matches('/'), req, client).await
    }

    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    async fn ticketed(
        &self,
        app: &App,
        pod: &str,
        uid: &str,
        rest: &str,
        prefix: &str,
        mut req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let Some(ticket) = app.ticket(pod, uid) else {
            if !app.has_pod(pod) {
                // k8sTicket: an unknown pod leads home.
                return pages::redirect(StatusCode::FOUND, &format!("/{}/", app.name()));
            }
            return match cookies::find(req.headers(), pod, uid) {
                None => pages::forbidden(pages::SESSION_EXPIRED),
                Some(_) => pages::forbidden(pages::NO_ACCESS),
            };
        };
        let Some(cookie) = cookies::find(req.headers(), pod, uid) else {
            return pages::forbidden(pages::SESSION_EXPIRED);
        };
        match Token::parse(cookie) {
            Ok(token) if ticket.accepts(&token) => {}
            _ => return pages::forbidden(pages::NO_ACCESS),
        }
        let guard = ticket.open();
        cookies::strip(req.headers_mut(), pod, uid);
        let target = Target { backend: ticket.backend(), rest, prefix, client };
        self.forwarder.forward(req, target, guard).await
    }
}

/// A DNS-mode request: the host names the pod and the ticket uid.
struct DnsTarget {
    pod: String,
    uid: String,
    base: String,
    rest: String,
}

/// The DNS-mode target of `req`, when its host names a pod of `app`
/// (otherwise the normal routes apply, e.g. the waiting page on the base host).
fn dns_target(app: &App, req: &Request<Incoming>) -> Option<DnsTarget> {
    let (pod, uid, base) = routes::parse_dns_host(host(req))?;
    if !app.has_pod(pod) {
        return None;
    }
    let path = req.uri().path();
    let rest = path.strip_prefix('/').and_then(|p| p.strip_prefix(app.name())).unwrap_or("");
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    Some(DnsTarget { pod: pod.to_owned(), uid: uid.to_owned(), base: base.to_owned(), rest: rest.to_owned() })
}

/// Turns a valid token into an HttpOnly cookie and redirects to the app.
fn claim(app: &App, pod: &str, uid: &str, req: &Request<Incoming>, home: &str, domain: Option<&str>) -> Response<ProxyBody> {
    let token = query_param(req.uri().query(), "token").and_then(|t| Token::parse(t).ok());
    let ticket = app.ticket(pod, uid);
    let (Some(token), Some(ticket)) = (token, ticket) else {
        return pages::forbidden(pages::NO_ACCESS);
    };
    if !ticket.accepts(&token) {
        return pages::forbidden(pages::NO_ACCESS);
    }
    ticket.touch_at(std::time::Instant::now());
    let scope = cookies::CookieScope { path: home, domain, secure: wants_https(req.headers()) };
    let mut r = pages::redirect(StatusCode::SEE_OTHER, home);
    if let Some(v) = cookies::set_cookie(pod, uid, &token.to_string(), scope) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Serves `proxy` on `listener` until the task is aborted; with `scope`,
/// only that app.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, scope: Option<Arc<str>>) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        let scope = scope.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (proxy, scope) = (Arc::clone(&proxy), scope.clone());
                async move { Ok::<_, Infallible>(proxy.handle(req, client, scope.as_deref()).await) }
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%client, "connection ended: {e}");
            }
        });
    }
}
