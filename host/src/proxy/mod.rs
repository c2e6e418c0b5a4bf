//! The HTTP edge: waiting page, ticket WebSocket, ticket claims, the
//! no-JavaScript poll and the proxied requests. It reads tickets and
//! backends from the apps' state and never talks to Kubernetes.
//!
//! Browsers and plain HTTP clients are told apart by `Accept`: a request
//! that asks for `text/html` (or says nothing) gets pages, one that asks
//! only for something else (`curl`'s `*/*`, `application/json`) or carries
//! `X-Requested-With` gets redirects and k8sTicket's plain 403 texts.

mod clock;
pub mod cookies;
pub mod edge;
mod exchange;
pub mod front;
pub mod pages;
pub mod pool;
mod rewind;
pub mod routes;
pub mod ticket_ws;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};

use crate::app::{App, Join};
use crate::apps::Apps;
use crate::state::{Grant, Ticket, Token};
pub use front::{ClientTimeouts, serve};
use pages::{Ended, ProxyBody, Room, View, local};
use pool::{Pool, PoolSettings};
use routes::{Route, RouteError};
use ticket_ws::WsTiming;
use wire::RequestHead;

/// The claim endpoint under a ticket prefix (or an app in DNS mode).
const CLAIM: &str = ".wicket/claim";
/// The no-JavaScript poll endpoint: `/<app>/.wicket/poll[?w=<resume id>]`.
const POLL: &str = "poll";
/// How long one poll waits for a slot before it answers with the place in
/// line (at most half the resume grace period).
const POLL_HOLD: Duration = Duration::from_secs(5);

/// The proxy's settings.
#[derive(Debug, Clone, Copy)]
pub struct ProxySettings {
    /// Connections to the pods.
    pub pods: PoolSettings,
    /// Timing of the ticket WebSocket.
    pub ws: WsTiming,
    /// Timeouts of user connections.
    pub clients: ClientTimeouts,
}

/// The proxy: routes every request of every app. Ticketed requests are
/// forwarded by [`front`]; everything else is answered by
/// [`Proxy::handle`].
#[derive(Debug)]
pub struct Proxy {
    apps: Arc<Apps>,
    pool: Arc<Pool>,
    timing: WsTiming,
    clients: ClientTimeouts,
}

/// A request that may go to its pod: the parts of the path the forwarded
/// request needs (the ticket is in the connection's [`Pass`]).
#[derive(Debug)]
pub struct Authorized<'a> {
    /// Pod name, as in the ticket cookie's name.
    pub pod: &'a str,
    /// Ticket uid, as in the ticket cookie's name.
    pub uid: &'a str,
    /// The path after the ticket prefix (no leading `/`).
    pub rest: &'a str,
    /// The ticket prefix the user sees (`/<app>/<pod>/<uid>`, or `/<app>`
    /// in DNS mode), for `X-Forwarded-Prefix`.
    pub prefix: &'a str,
}

/// What a user connection remembers of the ticket its last request was
/// let through on. The next request on the same ticket with the same
/// cookie needs no lookup in the app table or the app's serverlist (no
/// lock, no hashing, no reference count shared with other threads), as
/// long as the ticket is still live and the app not retired.
#[derive(Debug)]
pub struct Pass {
    app: Arc<App>,
    ticket: Arc<Ticket>,
    pod: Box<str>,
    uid: Box<str>,
    /// The cookie value that opened the ticket.
    token: Box<[u8]>,
}

impl Pass {
    /// The ticket.
    pub fn ticket(&self) -> &Arc<Ticket> {
        &self.ticket
    }

    /// Does this pass open (`pod`, `uid`) of `app` for `cookie`?
    fn opens(&self, pod: &str, uid: &str, cookie: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.ticket.is_live()
            && !self.app.is_retired()
            && *self.pod == *pod
            && *self.uid == *uid
            && cookie.len() == self.token.len()
            && bool::from(cookie.as_bytes().ct_eq(&self.token))
    }
}

fn host(req: &Request<()>) -> &str {
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
    pub fn new(apps: Arc<Apps>, settings: ProxySettings) -> Arc<Self> {
        Arc::new(Self {
            apps,
            pool: Pool::new(settings.pods),
            timing: settings.ws,
            clients: settings.clients,
        })
    }

    /// The app a request names, if this listener serves it (`scope` limits
    /// a listener to one app: k8sTicket's per-app ports).
    fn app(&self, name: &str, scope: Option<&str>) -> Option<Arc<App>> {
        match scope {
            Some(only) if only != name => None,
            _ => self.apps.get(name),
        }
    }

    /// Checks a request head for a live ticket and its cookie: `Some` when
    /// the request is to be forwarded to the ticket's pod (which `pass`
    /// then names). Everything else (pages, the ticket socket, claims,
    /// denials) is for [`Self::handle`].
    pub fn authorize<'a>(
        &self,
        head: &RequestHead<'_, 'a>,
        scope: Option<&str>,
        pass: &mut Option<Pass>,
    ) -> Option<Authorized<'a>> {
        let path = head.path;
        let route = routes::parse(path).ok()?;
        let name = route.app();
        // The remembered app while it is current (this connection's scope
        // let it through before), else a lookup.
        let fetched;
        let app = match pass.as_ref() {
            Some(p) if p.app.name() == name && !p.app.is_retired() => &p.app,
            _ => {
                fetched = self.app(name, scope)?;
                &fetched
            }
        };
        let (pod, uid, rest, prefix) = match head.host.and_then(|h| dns_parts(app, h, path)) {
            Some(dns) => {
                routes::check_rest(dns.rest).ok()?;
                // `/<app>`: the path starts with it.
                (dns.pod, dns.uid, dns.rest, &path[..=name.len()])
            }
            None => match route {
                Route::Ticketed { pod, uid, rest, .. } => {
                    let prefix = path[..path.len() - rest.len()].trim_end_matches('/');
                    (pod, uid, rest, prefix)
                }
                _ => return None,
            },
        };
        if rest == CLAIM {
            return None;
        }
        let cookie = cookies::find_in(head.cookies(), pod, uid)?;
        let authorized = Authorized {
            pod,
            uid,
            rest,
            prefix,
        };
        if pass.as_ref().is_some_and(|p| p.opens(pod, uid, cookie)) {
            return Some(authorized);
        }
        let ticket = app.ticket(pod, uid)?;
        let token = Token::parse(cookie).ok()?;
        if !ticket.accepts(&token) {
            return None;
        }
        let app = Arc::clone(app);
        *pass = Some(Pass {
            app,
            ticket,
            pod: pod.into(),
            uid: uid.into(),
            token: cookie.as_bytes().into(),
        });
        Some(authorized)
    }

    /// Answers one request that is not forwarded to a pod (its body, if
    /// any, is not needed: only the head is passed). Never fails: every
    /// error is a response. `scope` limits a listener to one app
    /// (k8sTicket's per-app ports); None serves every app (the shared port).
    pub async fn handle(&self, req: Request<()>, scope: Option<&str>) -> Response<ProxyBody> {
        // Routes borrow from a cheap clone of the URI, so the request can move
        // on (to the ticket socket) without copying its path pieces.
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
        let Some(app) = self.app(route.app(), scope) else {
            return local(
                StatusCode::NOT_FOUND,
                "text/plain",
                "No such application.\n",
            );
        };
        if let Some(dns) = dns_parts(&app, host(&req), uri.path()) {
            return dns_request(&app, &dns, &req);
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
            // A plain request: an upgrade goes through `Proxy::upgrade`.
            Route::TicketSocket { .. } => ticket_ws::not_a_websocket(),
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
            Route::Ticketed { pod, uid, .. } => ticketed(&app, pod, uid, &req),
        }
    }
}

/// What becomes of an upgrade request that is not on a ticket.
pub(crate) enum Upgrade {
    /// The ticket WebSocket of the app, its handshake checked.
    TicketSocket(Arc<App>, ticket_ws::Opening),
    /// Anything else: answered, then the connection is closed.
    Answer(Response<ProxyBody>),
}

impl Proxy {
    /// Sorts an upgrade request: the ticket WebSocket (k8sTicket's
    /// `/<app>/ws`) or a response (a bad handshake, a DNS-mode request, an
    /// unknown app, …: whatever [`Proxy::handle`] says). `req` is a request
    /// whose head asked for an upgrade ([`wire::RequestHead::upgrade`]).
    pub(crate) async fn upgrade(&self, req: Request<()>, scope: Option<&str>) -> Upgrade {
        if let Ok(Route::TicketSocket { app }) = routes::parse(req.uri().path())
            && let Some(app) = self.app(app, scope)
            && dns_parts(&app, host(&req), req.uri().path()).is_none()
        {
            return match ticket_ws::opening(&req) {
                Some(opening) => Upgrade::TicketSocket(app, opening),
                None => Upgrade::Answer(ticket_ws::not_a_websocket()),
            };
        }
        Upgrade::Answer(self.handle(req, scope).await)
    }
}

impl Proxy {
    /// The no-JavaScript way in (`/<app>/.wicket/poll`, and `/<app>/` for
    /// plain HTTP clients): a free slot answers with a redirect that sets
    /// the HttpOnly ticket cookie and lands on the app; otherwise the poll
    /// waits a few seconds for one, then answers with a page showing the
    /// place in line that reloads itself here with its resume id `w`.
    async fn poll(&self, app: &Arc<App>, req: &Request<()>) -> Response<ProxyBody> {
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

/// DNS mode: `<pod>.<uid>.<host>/<app>/<rest>` that was not forwarded:
/// the claim, or a denial.
fn dns_request(app: &App, dns: &DnsParts<'_>, req: &Request<()>) -> Response<ProxyBody> {
    if let Err(e) = routes::check_rest(dns.rest) {
        return local(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("Bad request: {e}.\n"),
        );
    }
    if dns.rest == CLAIM {
        let home = format!("/{}/", app.name());
        let domain = dns.base.split(':').next().unwrap_or(dns.base);
        return claim(app, dns.pod, dns.uid, req, &home, Some(domain));
    }
    ticketed(app, dns.pod, dns.uid, req)
}

/// A ticketed request that was not forwarded: why it may not pass.
fn ticketed(app: &App, pod: &str, uid: &str, req: &Request<()>) -> Response<ProxyBody> {
    let Some(ticket) = app.ticket(pod, uid) else {
        if !app.has_pod(pod) {
            // k8sTicket: an unknown pod leads home.
            if is_navigation(req.headers()) {
                return ended(app, req, Ended::Expired);
            }
            return pages::redirect(StatusCode::FOUND, &format!("/{}/", app.name()));
        }
        return match cookies::find(req.headers(), pod, uid) {
            None => denied(app, req, Ended::Expired, pages::SESSION_EXPIRED),
            Some(_) => denied(app, req, Ended::Expired, pages::NO_ACCESS),
        };
    };
    let Some(cookie) = cookies::find(req.headers(), pod, uid) else {
        return denied(app, req, Ended::Denied, pages::SESSION_EXPIRED);
    };
    match Token::parse(cookie) {
        Ok(token) if ticket.accepts(&token) => {
            // The forwarding path found no valid ticket a moment ago (or the
            // request target was not in origin form); the user may retry.
            tracing::debug!(app = app.name(), pod, "ticket became valid after the check");
            let mut r = local(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "Please try again.\n",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            r
        }
        _ => denied(app, req, Ended::Denied, pages::NO_ACCESS),
    }
}

/// Sends a user who was granted `grant` to the app, with the ticket cookie
/// set by this response (HttpOnly; the token never appears in a URL).
fn admit(app: &App, grant: &Grant, req: &Request<()>) -> Response<ProxyBody> {
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
fn denied(app: &App, req: &Request<()>, why: Ended, text: &'static str) -> Response<ProxyBody> {
    if is_navigation(req.headers()) {
        ended(app, req, why)
    } else {
        pages::forbidden(text)
    }
}

/// Redirects to the waiting room's "session ended" page (on the base host
/// in DNS mode).
fn ended(app: &App, req: &Request<()>, why: Ended) -> Response<ProxyBody> {
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
struct DnsParts<'a> {
    pod: &'a str,
    uid: &'a str,
    base: &'a str,
    rest: &'a str,
}

/// The DNS-mode target of a request to `host` and `path`, when `app` is in
/// DNS mode and the host names one of its pods (otherwise the normal
/// routes apply, e.g. the waiting page on the base host).
fn dns_parts<'a>(app: &App, host: &'a str, path: &'a str) -> Option<DnsParts<'a>> {
    if !app.routing().dns {
        return None;
    }
    let (pod, uid, base) = routes::parse_dns_host(host)?;
    if !app.has_pod(pod) {
        return None;
    }
    let rest = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(app.name()))
        .unwrap_or("");
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    Some(DnsParts {
        pod,
        uid,
        base,
        rest,
    })
}

/// Turns a valid token into an HttpOnly cookie and redirects to the app.
fn claim(
    app: &App,
    pod: &str,
    uid: &str,
    req: &Request<()>,
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
