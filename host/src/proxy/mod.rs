//! The HTTP edge: waiting page, ticket WebSocket, ticket claims, the
//! no-JavaScript poll and the proxied requests. It reads tickets and
//! backends from the apps' state and never talks to Kubernetes.
//!
//! Browsers and plain HTTP clients are told apart by `Accept`: a request
//! that asks for `text/html` (or says nothing) gets pages, one that asks
//! only for something else (`curl`'s `*/*`, `application/json`) or carries
//! `X-Requested-With` gets redirects and k8sTicket's plain 403 texts.

pub mod cookies;
pub mod edge;
pub mod forward;
pub mod pages;
pub mod routes;
pub mod ticket_ws;
pub mod upstream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::app::{App, Join};
use crate::apps::Apps;
use crate::state::{Grant, Token};
pub use forward::Peer;
use forward::{Forwarder, ProxyBody, Target, local};
use pages::{Ended, Room, View};
use routes::{Route, RouteError};
use ticket_ws::WsTiming;
use upstream::Link;

/// The claim endpoint under a ticket prefix (or an app in DNS mode).
const CLAIM: &str = ".wicket/claim";
/// The no-JavaScript poll endpoint: `/<app>/.wicket/poll[?w=<resume id>]`.
const POLL: &str = "poll";
/// How long one poll waits for a slot before it answers with the place in
/// line (at most half the resume grace period).
const POLL_HOLD: Duration = Duration::from_secs(5);

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
    h.get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn accept_has_html(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.to_ascii_lowercase().contains("text/html"))
    })
}

fn is_xhr(h: &HeaderMap) -> bool {
    h.contains_key("x-requested-with")
}

/// Should `/<app>/` answer with the waiting page (a browser, or a client
/// that does not say what it accepts, as k8sTicket's users did) rather
/// than act as the poll endpoint (curl and other plain HTTP clients)?
fn wants_page(h: &HeaderMap) -> bool {
    !is_xhr(h) && (!h.contains_key(header::ACCEPT) || accept_has_html(h))
}

/// Is this a person's browser navigating (who should see a page), rather
/// than a script or API client (who should see k8sTicket's 403 text)?
fn is_navigation(h: &HeaderMap) -> bool {
    let fetch_mode_ok = h
        .get("sec-fetch-mode")
        .is_none_or(|m| m.as_bytes().eq_ignore_ascii_case(b"navigate"));
    accept_has_html(h) && !is_xhr(h) && fetch_mode_ok
}

fn scheme(h: &HeaderMap) -> &'static str {
    if wants_https(h) { "https" } else { "http" }
}

fn room<'a>(app: &'a App, title: &'a str) -> Room<'a> {
    Room {
        app: app.name(),
        title,
        dns: app.routing().dns,
    }
}

impl Proxy {
    /// A proxy over `apps`.
    pub fn new(apps: Arc<Apps>, forwarder: Forwarder, timing: WsTiming) -> Arc<Self> {
        Arc::new(Self {
            apps,
            forwarder,
            timing,
        })
    }

    /// Handles one request. Never fails: every error is a response.
    /// `scope` limits a listener to one app (k8sTicket's per-app ports);
    /// None serves every app (the shared port). `link` is the user
    /// connection's way to the pods, driven by [`upstream::drive`].
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        client: &Peer,
        scope: Option<&str>,
        link: &Link,
    ) -> Response<ProxyBody> {
        // Routes borrow from a cheap clone of the URI, so the request can move
        // on to the backend without copying its path pieces.
        let uri = req.uri().clone();
        let route = match routes::parse(uri.path()) {
            Ok(r) => r,
            Err(RouteError::NotFound) => {
                return local(StatusCode::NOT_FOUND, "text/plain", "Not found.\n");
            }
            Err(RouteError::TooLong) => {
                return local(StatusCode::URI_TOO_LONG, "text/plain", "Path too long.\n");
            }
            Err(e) => {
                return local(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("Bad request: {e}.\n"),
                );
            }
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
            return local(
                StatusCode::NOT_FOUND,
                "text/plain",
                "No such application.\n",
            );
        };
        if app.routing().dns
            && let Some(dns) = dns_target(&app, &req)
        {
            return self.dns(&app, dns, req, client, link).await;
        }
        match route {
            Route::Waiting { .. } if req.method() == Method::GET && !wants_page(req.headers()) => {
                self.poll(&app, &req).await
            }
            Route::Waiting { .. }
                if req.method() == Method::GET || req.method() == Method::HEAD =>
            {
                let title = app.display_name();
                let ended = query_param(req.uri().query(), "ended").and_then(Ended::parse);
                pages::room_page(room(&app, &title), ended.map_or(View::Live, View::Ended))
            }
            Route::Waiting { .. } => local(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "Method not allowed.\n",
            ),
            Route::TicketSocket { .. } => ticket_ws::accept(app, req, self.timing),
            Route::Internal { what: POLL, .. } if req.method() == Method::GET => {
                self.poll(&app, &req).await
            }
            Route::Internal { .. } => local(StatusCode::NOT_FOUND, "text/plain", "Not found.\n"),
            Route::PodOnly { .. } => {
                pages::redirect(StatusCode::FOUND, &format!("/{}/", app.name()))
            }
            Route::Ticketed { pod, uid, rest, .. } if rest == CLAIM => {
                let (pod, uid) = (pod.to_owned(), uid.to_owned());
                let home = format!("/{}/{pod}/{uid}/", app.name());
                claim(&app, &pod, &uid, &req, &home, None)
            }
            Route::Ticketed { pod, uid, rest, .. } => {
                // `rest` ends the path: what precedes it is `/<app>/<pod>/<uid>/`.
                let path = uri.path();
                let prefix = path[..path.len() - rest.len()].trim_end_matches('/');
                self.ticketed(&app, pod, uid, rest, prefix, req, client, link)
                    .await
            }
        }
    }

    /// DNS mode: `<pod>.<uid>.<host>/<app>/<rest>`.
    async fn dns(
        &self,
        app: &App,
        t: DnsTarget,
        req: Request<Incoming>,
        client: &Peer,
        link: &Link,
    ) -> Response<ProxyBody> {
        if let Err(e) = routes::check_rest(&t.rest) {
            return local(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("Bad request: {e}.\n"),
            );
        }
        let home = format!("/{}/", app.name());
        if t.rest == CLAIM {
            let domain = t.base.split(':').next().unwrap_or(&t.base);
            return claim(app, &t.pod, &t.uid, &req, &home, Some(domain));
        }
        self.ticketed(
            app,
            &t.pod,
            &t.uid,
            &t.rest,
            home.trim_end_matches('/'),
            req,
            client,
            link,
        )
        .await
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
        client: &Peer,
        link: &Link,
    ) -> Response<ProxyBody> {
        let Some(ticket) = app.ticket(pod, uid) else {
            if !app.has_pod(pod) {
                // k8sTicket: an unknown pod leads home.
                if is_navigation(req.headers()) {
                    return ended(app, &req, Ended::Expired);
                }
                return pages::redirect(StatusCode::FOUND, &format!("/{}/", app.name()));
            }
            return match cookies::find(req.headers(), pod, uid) {
                None => denied(app, &req, Ended::Expired, pages::SESSION_EXPIRED),
                Some(_) => denied(app, &req, Ended::Expired, pages::NO_ACCESS),
            };
        };
        let Some(cookie) = cookies::find(req.headers(), pod, uid) else {
            return denied(app, &req, Ended::Denied, pages::SESSION_EXPIRED);
        };
        match Token::parse(cookie) {
            Ok(token) if ticket.accepts(&token) => {}
            _ => return denied(app, &req, Ended::Denied, pages::NO_ACCESS),
        }
        let guard = ticket.open();
        cookies::strip(req.headers_mut(), pod, uid);
        let target = Target {
            backend: ticket.backend(),
            rest,
            prefix,
            client,
        };
        self.forwarder.forward(req, target, guard, link).await
    }
}

impl Proxy {
    /// The no-JavaScript way in (`/<app>/.wicket/poll`, and `/<app>/` for
    /// plain HTTP clients): a free slot answers with a redirect that sets
    /// the HttpOnly ticket cookie and lands on the app; otherwise the poll
    /// waits a few seconds for one, then answers with a page showing the
    /// place in line that reloads itself here with its resume id `w`.
    async fn poll(&self, app: &Arc<App>, req: &Request<Incoming>) -> Response<ProxyBody> {
        let rid = query_param(req.uri().query(), "w").and_then(|w| Token::parse(w).ok());
        let (mut waiting, rid) = match app.join(rid.as_ref(), true).await {
            Join::Granted(grant) => return admit(app, &grant, req),
            Join::Closed => return pages::room_page(room(app, &app.display_name()), View::Closed),
            Join::Queued { waiting, rid, .. } => (waiting, rid),
        };
        let hold = POLL_HOLD.min(app.resume_grace() / 2);
        let outcome = tokio::time::timeout(hold, waiting.granted()).await;
        match outcome {
            Ok(Ok(grant)) => {
                drop(waiting);
                admit(app, &grant, req)
            }
            Ok(Err(_)) => pages::room_page(room(app, &app.display_name()), View::Closed),
            Err(_) => {
                let status = waiting.status();
                // Steps away until the next poll (the place is kept).
                drop(waiting);
                let rid = rid.map(|r| r.to_string()).unwrap_or_default();
                pages::room_page(
                    room(app, &app.display_name()),
                    View::NoScript { rid: &rid, status },
                )
            }
        }
    }
}

/// Sends a user who was granted `grant` to the app, with the ticket cookie
/// set by this response (HttpOnly; the token never appears in a URL).
fn admit(app: &App, grant: &Grant, req: &Request<Incoming>) -> Response<ProxyBody> {
    let name = app.name();
    let base = host(req);
    let dns = app.routing().dns && !base.is_empty();
    let (location, path) = if dns {
        (
            format!(
                "{}://{}.{}.{base}/{name}/",
                scheme(req.headers()),
                grant.pod,
                grant.uid
            ),
            format!("/{name}/"),
        )
    } else {
        let p = format!("/{name}/{}/{}/", grant.pod, grant.uid);
        (p.clone(), p)
    };
    let domain = dns.then(|| base.split(':').next().unwrap_or(base));
    let scope = cookies::CookieScope {
        path: &path,
        domain,
        secure: wants_https(req.headers()),
    };
    let mut r = pages::redirect(StatusCode::SEE_OTHER, &location);
    if let Some(v) = cookies::set_cookie(&grant.pod, &grant.uid, &grant.token.to_string(), scope) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A ticketed request that cannot pass: a browser navigating goes back to
/// the waiting room with a word on why; anything else gets k8sTicket's 403.
fn denied(
    app: &App,
    req: &Request<Incoming>,
    why: Ended,
    text: &'static str,
) -> Response<ProxyBody> {
    if is_navigation(req.headers()) {
        ended(app, req, why)
    } else {
        pages::forbidden(text)
    }
}

/// Redirects to the waiting room's "session ended" page (on the base host
/// in DNS mode).
fn ended(app: &App, req: &Request<Incoming>, why: Ended) -> Response<ProxyBody> {
    let path = format!("/{}/?ended={}", app.name(), why.as_str());
    // Only a host that names one of the app's pods is a DNS-mode host.
    let dns_host = routes::parse_dns_host(host(req))
        .filter(|(pod, _, _)| app.routing().dns && app.has_pod(pod));
    let location = match dns_host {
        Some((_, _, base)) => format!("{}://{base}{path}", scheme(req.headers())),
        None => path,
    };
    pages::redirect(StatusCode::SEE_OTHER, &location)
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
    let rest = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(app.name()))
        .unwrap_or("");
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    Some(DnsTarget {
        pod: pod.to_owned(),
        uid: uid.to_owned(),
        base: base.to_owned(),
        rest: rest.to_owned(),
    })
}

/// Turns a valid token into an HttpOnly cookie and redirects to the app.
fn claim(
    app: &App,
    pod: &str,
    uid: &str,
    req: &Request<Incoming>,
    home: &str,
    domain: Option<&str>,
) -> Response<ProxyBody> {
    let token = query_param(req.uri().query(), "token").and_then(|t| Token::parse(t).ok());
    let ticket = app.ticket(pod, uid);
    let (Some(token), Some(ticket)) = (token, ticket) else {
        return pages::forbidden(pages::NO_ACCESS);
    };
    if !ticket.accepts(&token) {
        return pages::forbidden(pages::NO_ACCESS);
    }
    ticket.touch_at(std::time::Instant::now());
    let scope = cookies::CookieScope {
        path: home,
        domain,
        secure: wants_https(req.headers()),
    };
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
            let link = Link::new(Arc::clone(proxy.forwarder.pool()));
            let peer = Arc::new(Peer::new(client));
            let svc = {
                let link = Arc::clone(&link);
                service_fn(move |req| {
                    let (proxy, scope, link, peer) = (
                        Arc::clone(&proxy),
                        scope.clone(),
                        Arc::clone(&link),
                        Arc::clone(&peer),
                    );
                    async move {
                        Ok::<_, Infallible>(proxy.handle(req, &peer, scope.as_deref(), &link).await)
                    }
                })
            };
            // HTTP/1.1 only: browsers speak HTTP/2 only over TLS, which an
            // ingress terminates; skipping protocol sniffing saves work on
            // every connection.
            let server = http1::Builder::new()
                .timer(TokioTimer::new())
                // As for pod connections (upstream.rs): one buffer, one write.
                .writev(false)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = upstream::drive(server, &link).await {
                tracing::debug!(%client, "connection ended: {e}");
            }
        });
    }
}
