//! Tickets handed to browsers as HttpOnly cookies: the no-JavaScript poll
//! (the cookie comes with its answer) and the claim of a ticket the
//! ticket WebSocket delivered (bound to the browser it went to, see
//! [`super::claims`]).

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, StatusCode, header};

use crate::app::{App, Comer, Join};
use crate::state::{Grant, Token};

use super::drain::Stage;
use super::gate::{self, Gate};
use super::pages::{self, ProxyBody, View};
use super::request::{base_host, cookie_domain, host, query_param, scheme, wants_https};
use super::{POLL_HOLD, Proxy, claims, cookies};

impl Proxy {
    /// The no-JavaScript way in (`/<app>/.wicket/poll`, and `/<app>/` for
    /// plain HTTP clients): a free slot answers with a redirect that sets
    /// the HttpOnly ticket cookie and lands on the app; otherwise the poll
    /// waits a few seconds for one, then answers with a page showing the
    /// place in line that reloads itself here with its resume id `w`.
    pub(super) async fn poll(
        &self,
        app: &Arc<App>,
        req: &Request<()>,
        client: IpAddr,
    ) -> http::Response<ProxyBody> {
        if !self.public_host(host(req)) {
            return super::ticket_ws::misdirected();
        }
        if !self.poll_allowed(req) {
            return forbidden_poll();
        }
        // Counted as an open waiting-room socket while it holds.
        let slot = match self.fairness.socket(client) {
            Ok(s) => s,
            Err(r) => return super::refused(r),
        };
        let rid = query_param(req.uri().query(), "w").and_then(|w| Token::parse(w).ok());
        if self.drain.draining() {
            // This process is shutting down: it takes no place and gives no
            // ticket; the page reloads, with the resume id it came with, on
            // a new connection (to another process).
            self.drain.told();
            let rid = rid.map(|r| r.to_string()).unwrap_or_default();
            return pages::room_page(
                self.room(app, &app.display_name()),
                View::NoScript {
                    rid: &rid,
                    status: None,
                    restarting: true,
                },
            );
        }
        // The place is bound to the browser (its binding cookie, or one
        // set with the answer that makes the place), and coming back to a
        // place needs the same: a poll link from someone else resumes
        // nothing. A client that keeps no cookies comes back from its
        // address (see `Binding`).
        let sent = bind_of(req);
        let fresh = sent.is_none().then(Token::generate);
        let mut places = self.places(client, sent);
        places.binding.browser = places.binding.browser.or(fresh);
        places.back = Some(Comer {
            browser: sent,
            client,
        });
        // As on the ticket socket: a client holding as many tickets as it
        // may takes no new place nor ticket (its old place it may resume).
        let quota = slot.quota();
        let over = !quota.allows();
        let too_many = || super::refused(super::fairness::Refusal::TooMany);
        if over && rid.is_none() {
            return too_many();
        }
        let took = |grant: &Grant| {
            if let Some(t) = app.ticket(&grant.pod, &grant.uid) {
                quota.took(t);
            }
        };
        let (mut waiting, rid, bound) = match app.join_as(places, rid.as_ref(), true).await {
            Join::Granted(grant) if over => {
                app.release(&grant);
                return too_many();
            }
            Join::Granted(grant) => {
                took(&grant);
                return self.admit(app, &grant, req);
            }
            Join::Queued {
                waiting,
                resumed: false,
                ..
            } if over => {
                drop(waiting);
                return too_many();
            }
            Join::Closed => {
                return pages::room_page(self.room(app, &app.display_name()), View::Closed);
            }
            Join::Refused => return too_many(),
            Join::Full => return super::refused(super::fairness::Refusal::LineFull),
            Join::Queued {
                waiting,
                rid,
                resumed,
            } => (waiting, rid, fresh.filter(|_| !resumed)),
        };
        let hold = POLL_HOLD.min(app.resume_grace() / 2);
        // A shutdown answers at once (the page comes back, with its resume
        // id, on a new connection: to another process).
        let mut stage = self.drain.watch();
        let outcome = tokio::select! {
            granted = waiting.granted() => Ok(granted),
            () = tokio::time::sleep(hold) => Err(()),
            () = stage.reached(Stage::Draining) => Err(()),
        };
        match outcome {
            Ok(Ok(grant)) => {
                drop(waiting);
                took(&grant);
                self.admit(app, &grant, req)
            }
            Ok(Err(_)) => pages::room_page(self.room(app, &app.display_name()), View::Closed),
            Err(_) => {
                let status = waiting.status();
                // Steps away until the next poll (the place is kept).
                drop(waiting);
                let rid = rid.map(|r| r.to_string()).unwrap_or_default();
                let restarting = self.drain.draining();
                if restarting {
                    self.drain.told();
                }
                let mut page = pages::room_page(
                    self.room(app, &app.display_name()),
                    View::NoScript {
                        rid: &rid,
                        status,
                        restarting,
                    },
                );
                // The binding the new place was made with, for the
                // browser's next poll.
                if let Some(v) = bound.and_then(|b| self.binding_cookie_of(app, req, &b)) {
                    page.headers_mut().insert(header::SET_COOKIE, v);
                }
                page
            }
        }
    }

    /// May this request take a place by poll? Not when a browser says it
    /// is a subresource or frame of another site's page (`Sec-Fetch-Site`
    /// other than `same-origin` or `none`, and not the top-level document):
    /// else any page could spend slots through its visitors' browsers with
    /// an `<img>` or a `fetch`, as it could through the ticket socket
    /// before its Origin check. A top-level navigation is the user's own
    /// visit; clients that send no fetch metadata (scripts, old
    /// browsers) pass, as do origins the ticket socket allows.
    fn poll_allowed(&self, req: &Request<()>) -> bool {
        let h = req.headers();
        let is = |name: &str, values: &[&str]| {
            h.get(name).is_some_and(|v| {
                values
                    .iter()
                    .any(|want| v.as_bytes().eq_ignore_ascii_case(want.as_bytes()))
            })
        };
        let Some(site) = h.get("sec-fetch-site") else {
            return true;
        };
        let own = [b"same-origin".as_slice(), b"none"]
            .iter()
            .any(|want| site.as_bytes().eq_ignore_ascii_case(want));
        let visit = is("sec-fetch-mode", &["navigate"]) && is("sec-fetch-dest", &["document"]);
        let origins = h
            .get_all(header::ORIGIN)
            .iter()
            .map(http::HeaderValue::as_bytes);
        let listed = h.contains_key(header::ORIGIN)
            && super::ticket_ws::origins_allowed(origins, host(req), &self.ws_origins);
        own || visit || listed
    }

    /// Sends a user who was granted `grant` to the app, with the ticket
    /// cookie set by this response (HttpOnly; the token never appears in a
    /// URL).
    fn admit(&self, app: &App, grant: &Grant, req: &Request<()>) -> http::Response<ProxyBody> {
        let name = app.name();
        let base = host(req);
        let dns = app.routing().dns && !base.is_empty();
        let (location, path) = if dns {
            (
                format!(
                    "{}://{}.{}.{}/{name}/",
                    scheme(req.headers()),
                    grant.pod,
                    grant.uid,
                    base_host(self.dns_domain.as_deref(), base)
                ),
                format!("/{name}/"),
            )
        } else {
            let p = format!("/{name}/{}/{}/", grant.pod, grant.uid);
            (p.clone(), p)
        };
        let domain = dns.then(|| cookie_domain(self.dns_domain.as_deref(), base));
        let scope = cookies::CookieScope {
            path: &path,
            domain,
            secure: wants_https(req.headers()),
        };
        let mut r = pages::redirect(StatusCode::SEE_OTHER, &location);
        if let Some(v) =
            cookies::set_cookie(&grant.pod, &grant.uid, &grant.token.to_string(), scope)
        {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    /// The claim-binding cookie for a browser that loads the waiting page
    /// of `app` without one (None when it has one).
    pub(super) fn binding_cookie(&self, app: &App, req: &Request<()>) -> Option<http::HeaderValue> {
        if bind_of(req).is_some() {
            return None;
        }
        self.binding_cookie_of(app, req, &Token::generate())
    }

    /// The claim-binding cookie `bind` for a browser at `app`.
    fn binding_cookie_of(
        &self,
        app: &App,
        req: &Request<()>,
        bind: &Token,
    ) -> Option<http::HeaderValue> {
        let base = host(req);
        let path = format!("/{}/", app.name());
        let scope = cookies::CookieScope {
            path: &path,
            domain: (app.routing().dns && !base.is_empty())
                .then(|| cookie_domain(self.dns_domain.as_deref(), base)),
            secure: wants_https(req.headers()),
        };
        cookies::set_named(cookies::BIND, &bind.to_string(), scope)
    }
}

/// The browser's claim binding, from its cookie.
pub(super) fn bind_of(req: &Request<()>) -> Option<Token> {
    let values = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .map(http::HeaderValue::as_bytes);
    cookies::find_named(values, cookies::BIND).and_then(|v| Token::parse(v).ok())
}

/// Turns a ticket's token into an HttpOnly cookie and redirects to the
/// app: only for the browser the ticket was delivered to (the claim's
/// proof `c` must match this browser's binding cookie and the token).
pub(super) fn claim(
    app: &App,
    key: &claims::ClaimKey,
    pod: &str,
    uid: &str,
    req: &Request<()>,
    home: &str,
    domain: Option<&str>,
) -> http::Response<ProxyBody> {
    let query = req.uri().query();
    let token = query_param(query, "token");
    let bound = match (token.and_then(|t| Token::parse(t).ok()), bind_of(req)) {
        (Some(t), Some(bind)) => query_param(query, "c").is_some_and(|c| key.verify(&t, &bind, c)),
        _ => false,
    };
    if !bound {
        return pages::forbidden(pages::NO_ACCESS);
    }
    let (Some(token), Gate::Open(ticket)) = (token, gate::check(app, pod, uid, token)) else {
        return pages::forbidden(pages::NO_ACCESS);
    };
    ticket.touch_at(std::time::Instant::now());
    let scope = cookies::CookieScope {
        path: home,
        domain,
        secure: wants_https(req.headers()),
    };
    let mut r = pages::redirect(StatusCode::SEE_OTHER, home);
    if let Some(v) = cookies::set_cookie(pod, uid, token, scope) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The answer to a poll from another site's page.
fn forbidden_poll() -> http::Response<ProxyBody> {
    pages::local(
        StatusCode::FORBIDDEN,
        "text/plain",
        "Another site's page may not take a place in this waiting room. Open the application's address directly.\n",
    )
}
