//! The HTTP edge: waiting page, ticket WebSocket, ticket claims, the
//! no-JavaScript poll and the proxied requests. It reads tickets and
//! backends from the apps' state and never talks to Kubernetes.
//!
//! Browsers and plain HTTP clients are told apart by `Accept`: a request
//! that asks for `text/html` (or says nothing) gets pages, one that asks
//! only for something else (`curl`'s `*/*`, `application/json`) or carries
//! `X-Requested-With` gets redirects and k8sTicket's plain 403 texts.
//!
//! Who does what: [`front`] reads requests and [`exchange`] forwards them
//! on a user connection, within the bounds of [`clock`]; [`gate`] decides
//! whether a ticket lets a request through; this module routes everything
//! else to [`admit`] (tickets to cookies), [`deny`] (why not), [`pages`]
//! and [`ticket_ws`].

mod admit;
pub mod claims;
mod clock;
pub mod cookies;
mod deny;
pub mod edge;
mod exchange;
pub mod fairness;
pub mod front;
mod gate;
pub mod pages;
pub mod pool;
mod request;
mod rewind;
pub mod routes;
pub mod ticket_ws;
pub mod trust;
pub mod wire;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header;
use http::{Method, Request, Response, StatusCode};

use crate::app::{App, Owner};
use crate::apps::Apps;
use claims::ClaimKey;
use fairness::{ClientLimits, Fairness, Refusal};
pub use front::{ClientTimeouts, serve};
pub use gate::{Authorized, Pass};
use pages::{Ended, ProxyBody, Room, View, local};
use pool::{Pool, PoolSettings};
use request::{dns_parts, host, query_param, wants_page};
use routes::{Route, RouteError};
use ticket_ws::WsTiming;

/// The claim endpoint under a ticket prefix (or an app in DNS mode).
const CLAIM: &str = ".wicket/claim";
/// The no-JavaScript poll endpoint: `/<app>/.wicket/poll[?w=<resume id>]`.
const POLL: &str = "poll";
/// How long one poll waits for a slot before it answers with the place in
/// line (at most half the resume grace period).
const POLL_HOLD: Duration = Duration::from_secs(5);

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Connections to the pods.
    pub pods: PoolSettings,
    /// Timing of the ticket WebSocket.
    pub ws: WsTiming,
    /// Timeouts of user connections.
    pub clients: ClientTimeouts,
    /// Framing rules: trailers, upgrade protocols.
    pub wire: wire::Rules,
    /// Peers whose forwarding fields are believed.
    pub trusted: trust::TrustedProxies,
    /// The domain of DNS-mode hosts (`<pod>.<uid>.<domain>`) and of their
    /// cookies; None takes it from the request's host (not recommended).
    pub dns_domain: Option<Arc<str>>,
    /// Origins besides the host's own whose pages may open the ticket
    /// WebSocket.
    pub ws_origins: Arc<[Box<str>]>,
    /// Limits per client and on connections.
    pub limits: ClientLimits,
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
    wire: wire::Rules,
    trusted: trust::TrustedProxies,
    dns_domain: Option<Arc<str>>,
    ws_origins: Arc<[Box<str>]>,
    claim_key: ClaimKey,
    fairness: Arc<Fairness>,
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
            wire: settings.wire,
            trusted: settings.trusted,
            dns_domain: settings.dns_domain,
            ws_origins: settings.ws_origins,
            claim_key: ClaimKey::generate(),
            fairness: Fairness::new(settings.limits),
        })
    }

    /// Who holds places in line for `client` (see [`fairness`]).
    fn owner(&self, client: IpAddr) -> Option<Owner> {
        let places = self.fairness.limits().places_per_client;
        (places > 0).then_some(Owner { client, places })
    }

    /// The app a request names, if this listener serves it (`scope` limits
    /// a listener to one app: k8sTicket's per-app ports).
    fn app(&self, name: &str, scope: Option<&str>) -> Option<Arc<App>> {
        match scope {
            Some(only) if only != name => None,
            _ => self.apps.get(name),
        }
    }

    /// Answers one request that is not forwarded to a pod (its body, if
    /// any, is not needed: only the head is passed). Never fails: every
    /// error is a response. `scope` limits a listener to one app
    /// (k8sTicket's per-app ports); None serves every app (the shared port).
    /// `client` is the sender's key (see [`fairness::client_key`]).
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
                let mut page =
                    pages::room_page(room(&app, &title), ended.map_or(View::Live, View::Ended));
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
            let origin = req.headers().get(header::ORIGIN).map(|o| o.as_bytes());
            if !ticket_ws::origin_allowed(origin, host(&req), &self.ws_origins) {
                return Upgrade::Answer(ticket_ws::foreign_origin());
            }
            let bind = admit::bind_of(&req).map(|b| (self.claim_key, b));
            let Some(opening) = ticket_ws::opening(&req, bind) else {
                return Upgrade::Answer(ticket_ws::not_a_websocket());
            };
            return match self.fairness.socket(client) {
                Ok(slot) => Upgrade::TicketSocket(app, opening.held_by(slot, self.owner(client))),
                Err(r) => Upgrade::Answer(refused(r)),
            };
        }
        Upgrade::Answer(self.handle(req, scope, client).await)
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
    };
    let mut r = local(status, "text/plain; charset=utf-8", text);
    r.headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
    r
}
