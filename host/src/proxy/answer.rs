//! The requests wicket answers itself (everything not forwarded to a
//! pod): routed here to the waiting page, polls, claims and denials
//! ([`super::admit`], [`super::deny`], [`super::pages`]), and upgrade
//! requests sorted into the ticket WebSocket ([`super::ticket_ws`]) or an
//! answer; and the answer to a request refused by a limit.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header;
use http::{Method, Request, Response, StatusCode};

use super::fairness::Refusal;
use super::pages::{self, Ended, ProxyBody, Room, View, local};
use super::request::{dns_parts, host, query_param, wants_page};
use super::routes::{self, Route, RouteError};
use super::{Proxy, admit, deny, ticket_ws};
use crate::app::App;

/// The claim endpoint under a ticket prefix (or an app in DNS mode).
pub(super) const CLAIM: &str = ".wicket/claim";
/// The no-JavaScript poll endpoint: `/<app>/.wicket/poll[?w=<resume id>]`.
const POLL: &str = "poll";
/// How long one poll waits for a slot before it answers with the place in
/// line (at most half the resume grace period).
pub(super) const POLL_HOLD: Duration = Duration::from_secs(5);

impl Proxy {
    /// The waiting room of `app` under `title`.
    pub(super) fn room<'a>(&'a self, app: &'a App, title: &'a str) -> Room<'a> {
        Room {
            app: app.name(),
            title,
            dns: app.routing().dns,
            framers: &self.ws_origins,
        }
    }
}

impl Proxy {
    /// Answers one request that is not forwarded to a pod (its body, if
    /// any, is not needed: only the head is passed). Never fails: every
    /// error is a response. `scope` limits a listener to one app
    /// (k8sTicket's per-app ports); None serves every app (the shared port).
    /// `client` is the sender's key (see [`super::fairness::client_key`]).
    pub async fn handle(
        &self,
        req: Request<()>,
        scope: Option<&str>,
        client: IpAddr,
    ) -> Response<ProxyBody> {
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
        let domain = self.dns_domain.as_deref();
        if let Some(dns) = dns_parts(&app, domain, host(&req), uri.path()) {
            // As below: a ticket issued through another replica a moment ago.
            if app.await_ticket(dns.pod, dns.uid).await && dns.rest != CLAIM {
                let again = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
                return pages::redirect(StatusCode::TEMPORARY_REDIRECT, again);
            }
            return deny::dns_request(&app, domain, &self.claim_key, &dns, &req);
        }
        match route {
            Route::Waiting { .. } if req.method() == Method::GET && !wants_page(req.headers()) => {
                self.poll(&app, &req, client).await
            }
            Route::Waiting { .. }
                if req.method() == Method::GET || req.method() == Method::HEAD =>
            {
                let title = app.display_name();
                let ended = query_param(req.uri().query(), "ended").and_then(Ended::parse);
                let mut page = pages::room_page(
                    self.room(&app, &title),
                    ended.map_or(View::Live, View::Ended),
                );
                if let Some(v) = self.binding_cookie(&app, &req) {
                    page.headers_mut().insert(header::SET_COOKIE, v);
                }
                page
            }
            Route::Waiting { .. } => local(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "Method not allowed.\n",
            ),
            // A plain request: an upgrade goes through `Proxy::upgrade`.
            Route::TicketSocket { .. } => ticket_ws::not_a_websocket(),
            Route::Internal { what: POLL, .. } if req.method() == Method::GET => {
                self.poll(&app, &req, client).await
            }
            Route::Internal { .. } => local(StatusCode::NOT_FOUND, "text/plain", "Not found.\n"),
            Route::PodOnly { .. } => {
                pages::redirect(StatusCode::FOUND, &format!("/{}/", app.name()))
            }
            Route::Ticketed { pod, uid, rest, .. } => {
                // A ticket issued a moment ago through another replica is
                // known here after the next sync with the shared store.
                let arrived = app.await_ticket(pod, uid).await;
                if rest == CLAIM {
                    let home = format!("/{}/{pod}/{uid}/", app.name());
                    admit::claim(&app, &self.claim_key, pod, uid, &req, &home, None)
                } else if arrived {
                    // Not forwarded yet: the client repeats it as it was.
                    let again = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
                    pages::redirect(StatusCode::TEMPORARY_REDIRECT, again)
                } else {
                    deny::ticketed(&app, domain, pod, uid, &req)
                }
            }
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
    pub(crate) async fn upgrade(
        &self,
        req: Request<()>,
        scope: Option<&str>,
        client: IpAddr,
    ) -> Upgrade {
        if let Ok(Route::TicketSocket { app }) = routes::parse(req.uri().path())
            && let Some(app) = self.app(app, scope)
            && dns_parts(
                &app,
                self.dns_domain.as_deref(),
                host(&req),
                req.uri().path(),
            )
            .is_none()
        {
            if !self.public_host(host(&req)) {
                return Upgrade::Answer(ticket_ws::misdirected());
            }
            let origins = req.headers().get_all(header::ORIGIN).iter();
            let origins = origins.map(http::HeaderValue::as_bytes);
            if !ticket_ws::origins_allowed(origins, host(&req), &self.ws_origins) {
                return Upgrade::Answer(ticket_ws::foreign_origin());
            }
            let sent = admit::bind_of(&req);
            let bind = sent.map(|b| (self.claim_key, b));
            let opening = match ticket_ws::opening(&req, bind) {
                Ok(o) => o,
                Err(bad) => return Upgrade::Answer(bad.answer()),
            };
            return match self.fairness.socket(client) {
                Ok(slot) => {
                    Upgrade::TicketSocket(app, opening.held_by(slot, self.places(client, sent)))
                }
                Err(r) => Upgrade::Answer(refused(r)),
            };
        }
        Upgrade::Answer(self.handle(req, scope, client).await)
    }
}

impl Proxy {
    /// An upgrade (a WebSocket to the app) on a ticket issued through
    /// another replica a moment ago waits for the ticket here, as
    /// [`Proxy::handle`] does; true if it arrived, and the request is then
    /// decided again and forwarded. A browser follows no redirect on a
    /// WebSocket handshake, so the `307` a plain request gets would end
    /// the tunnel (the app's page would have to reconnect).
    pub(crate) async fn upgrade_ticket_arrived(&self, path: &str, scope: Option<&str>) -> bool {
        if self.dns_domain.is_some() {
            // DNS-mode names are sorted by `handle` (and get its 307).
            return false;
        }
        let Ok(Route::Ticketed {
            app,
            pod,
            uid,
            rest,
        }) = routes::parse(path)
        else {
            return false;
        };
        if rest == CLAIM {
            return false;
        }
        match self.app(app, scope) {
            Some(app) => app.await_ticket(pod, uid).await,
            None => false,
        }
    }
}

/// The answer to a request refused by a limit of [`fairness`].
pub(crate) fn refused(why: Refusal) -> Response<ProxyBody> {
    let (status, text) = match why {
        Refusal::Full => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is busy. Please try again in a moment.\n",
        ),
        Refusal::TooMany => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many connections from your address. Close some tabs and try again.\n",
        ),
        Refusal::LineFull => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The waiting room is full. Please try again later.\n",
        ),
    };
    let mut r = local(status, "text/plain; charset=utf-8", text);
    r.headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
    r
}
