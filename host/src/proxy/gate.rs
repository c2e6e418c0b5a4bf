//! The ticket gate: whether a request may use ticket (`pod`, `uid`) of an
//! app with the token it presents. Every path that lets a ticket through
//! asks here: proxied requests and upgrades (through [`Proxy::authorize`]
//! and its per-connection [`Pass`]), claims, and the denial pages (which
//! say why a request did not pass).

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::app::App;
use crate::state::{Ticket, Token};

use super::request::dns_parts;
use super::routes::{self, Route};
use super::wire::RequestHead;
use super::{CLAIM, Proxy, cookies};

/// The gate's answer for (app, pod, uid, token).
#[derive(Debug)]
pub(super) enum Gate {
    /// A live ticket that the token opens.
    Open(Arc<Ticket>),
    /// The app has no live ticket (`pod`, `uid`).
    NoTicket,
    /// The ticket exists but the token is missing, malformed or not its own.
    WrongToken,
}

/// Checks `token` (as sent: hex) against ticket (`pod`, `uid`) of `app`.
pub(super) fn check(app: &App, pod: &str, uid: &str, token: Option<&str>) -> Gate {
    let Some(ticket) = app.ticket(pod, uid) else {
        return Gate::NoTicket;
    };
    if token.is_some_and(|t| opens(&ticket, t)) {
        Gate::Open(ticket)
    } else {
        Gate::WrongToken
    }
}

/// Does `token` (as sent: hex) open `ticket`?
fn opens(ticket: &Ticket, token: &str) -> bool {
    Token::parse(token).is_ok_and(|t| ticket.accepts(&t))
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
/// let through on. The next request on the same ticket of the same app
/// with the same cookie needs no lookup in the app table or the app's
/// serverlist (no lock, no hashing, no reference count shared with other
/// threads), as long as the ticket is still live and the app not retired.
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

    /// Does this pass open (`pod`, `uid`) of `app` for `cookie`? The app is
    /// compared too: on the shared port, pod and uid of one app's ticket
    /// must not open the same names under another app's prefix.
    fn opens(&self, app: &Arc<App>, pod: &str, uid: &str, cookie: &str) -> bool {
        Arc::ptr_eq(&self.app, app)
            && self.ticket.is_live()
            && !self.app.is_retired()
            && *self.pod == *pod
            && *self.uid == *uid
            && cookie.len() == self.token.len()
            && bool::from(cookie.as_bytes().ct_eq(&self.token))
    }
}

impl Proxy {
    /// Checks a request head for a live ticket and its cookie: `Some` when
    /// the request is to be forwarded to the ticket's pod (which `pass`
    /// then names). Everything else (pages, the ticket socket, claims,
    /// denials) is for [`Proxy::handle`].
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
        let domain = self.dns_domain.as_deref();
        let (pod, uid, rest, prefix) = match head.host.and_then(|h| dns_parts(app, domain, h, path))
        {
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
        let mut sent = cookies::all_in(head.cookies(), pod, uid);
        let first = sent.next()?;
        let authorized = Authorized {
            pod,
            uid,
            rest,
            prefix,
        };
        if pass.as_ref().is_some_and(|p| p.opens(app, pod, uid, first)) {
            return Some(authorized);
        }
        // Any cookie of the ticket's name may be the user's own: one set
        // by someone else in front of it must not lock the user out.
        // (One ticket lookup, then a token comparison per cookie.)
        let ticket = app.ticket(pod, uid)?;
        let cookie = std::iter::once(first)
            .chain(sent)
            .find(|c| opens(&ticket, c))?;
        *pass = Some(Pass {
            app: Arc::clone(app),
            ticket,
            pod: pod.into(),
            uid: uid.into(),
            token: cookie.as_bytes().into(),
        });
        Some(authorized)
    }
}
