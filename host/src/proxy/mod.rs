//! The HTTP edge: waiting page, ticket WebSocket, ticket claims, the
//! no-JavaScript poll and the proxied requests. It reads tickets and
//! backends from the apps' state and never talks to Kubernetes.
//!
//! Browsers and plain HTTP clients are told apart by `Accept`: a request
//! that asks for `text/html` (or says nothing) gets pages, one that asks
//! only for something else (`curl`'s `*/*`, `application/json`) or carries
//! `X-Requested-With` gets redirects and k8sTicket's plain 403 texts.
//!
//! Who does what: [`edge`] runs the listening threads; [`connection`]
//! reads and decides the requests of a user connection and `forward`
//! relays one forwarded exchange, within the bounds of `clock`; `gate`
//! decides whether a ticket lets a request through; `answer` routes
//! everything else to `admit` (tickets to cookies), `deny` (why not),
//! [`pages`] and [`ticket_ws`]; [`drain`] shuts the edge down. This
//! module holds what they share: the [`Proxy`] and its settings.

mod admit;
mod answer;
pub mod claims;
mod clock;
pub mod connection;
pub mod cookies;
mod deny;
pub mod drain;
pub mod edge;
pub mod fairness;
mod forward;
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

use crate::app::{App, Binding, Owner, Places};
use crate::apps::Apps;
use crate::state::Token;
use answer::{CLAIM, POLL_HOLD, Upgrade, refused};
use claims::ClaimKey;
pub use connection::{ClientTimeouts, serve};
use fairness::{ClientLimits, Fairness};
pub use gate::{Authorized, Pass};
use pool::{Pool, PoolSettings};
use ticket_ws::WsTiming;

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
    /// Host names users reach wicket by (lowercase; empty: any), see
    /// [`Proxy::public_host`].
    pub public_hosts: Arc<[Box<str>]>,
    /// Limits per client and on connections.
    pub limits: ClientLimits,
}

/// The proxy: routes every request of every app. Ticketed requests are
/// forwarded by [`connection`] (through `gate` and `forward`);
/// everything else is answered by [`Proxy::handle`] (`answer`).
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
    public_hosts: Arc<[Box<str>]>,
    claim_key: ClaimKey,
    fairness: Arc<Fairness>,
    drain: drain::Drain,
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
            public_hosts: settings.public_hosts,
            claim_key: ClaimKey::generate(),
            fairness: Fairness::new(settings.limits),
            drain: drain::Drain::default(),
        })
    }

    /// Shuts the edge down gracefully (see [`drain`]): every listener of
    /// this proxy stops accepting, and this returns when every user
    /// connection has ended, or `grace` has passed and the tunnels left
    /// were closed. The caller then stops the host.
    pub async fn shutdown(&self, grace: Duration) -> drain::Summary {
        self.drain.run(&self.fairness, grace).await
    }

    /// How `client`, with the binding cookie `browser`, makes new places
    /// in line: under the limits (see [`fairness`]), bound to the browser
    /// or, without a binding cookie, to the client.
    fn places(&self, client: IpAddr, browser: Option<Token>) -> Places {
        let limits = self.fairness.limits();
        let places = limits.places_per_client;
        Places {
            owner: (places > 0).then_some(Owner { client, places }),
            line: limits.places_per_app,
            binding: Binding {
                browser,
                client: browser.is_none().then_some(client),
            },
            back: None,
        }
    }

    /// Is `host` (a request's `Host`) one users reach wicket by
    /// (`proxy.public_hosts` or `dns_domain`, port aside)? Any is, when
    /// none are configured. Asked before a place in line is taken.
    fn public_host(&self, host: &str) -> bool {
        if self.public_hosts.is_empty() {
            return true;
        }
        let name = ticket_ws::host_name(host);
        self.public_hosts
            .iter()
            .map(|h| &**h)
            .chain(self.dns_domain.as_deref())
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// The app a request names, if this listener serves it (`scope` limits
    /// a listener to one app: k8sTicket's per-app ports).
    fn app(&self, name: &str, scope: Option<&str>) -> Option<Arc<App>> {
        match scope {
            Some(only) if only != name => None,
            _ => self.apps.get(name),
        }
    }
}
