//! Ticketed requests that do not pass the gate: why, in the words the
//! user should see (a browser goes back to the waiting room, a script
//! gets k8sTicket's 403 texts).

use http::{Request, StatusCode, header};

use crate::app::App;

use super::gate::{self, Gate};
use super::pages::{self, Ended, ProxyBody, local};
use super::request::{DnsParts, host, is_navigation, scheme};
use super::{CLAIM, claims, cookies, routes};

/// A ticketed request that was not forwarded: why it may not pass.
pub(super) fn ticketed(
    app: &App,
    domain: Option<&str>,
    pod: &str,
    uid: &str,
    req: &Request<()>,
) -> http::Response<ProxyBody> {
    let cookie = cookies::find(req.headers(), pod, uid);
    match gate::check(app, pod, uid, cookie) {
        Gate::NoTicket if !app.has_pod(pod) => {
            // k8sTicket: an unknown pod leads home.
            if is_navigation(req.headers()) {
                return ended(app, domain, req, Ended::Expired);
            }
            pages::redirect(StatusCode::FOUND, &format!("/{}/", app.name()))
        }
        Gate::NoTicket if cookie.is_none() => {
            denied(app, domain, req, Ended::Expired, pages::SESSION_EXPIRED)
        }
        Gate::NoTicket => denied(app, domain, req, Ended::Expired, pages::NO_ACCESS),
        Gate::WrongToken if cookie.is_none() => {
            denied(app, domain, req, Ended::Denied, pages::SESSION_EXPIRED)
        }
        Gate::WrongToken => denied(app, domain, req, Ended::Denied, pages::NO_ACCESS),
        Gate::Open(_) => {
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
    }
}

/// DNS mode: `<pod>.<uid>.<host>/<app>/<rest>` that was not forwarded:
/// the claim, or a denial.
pub(super) fn dns_request(
    app: &App,
    domain: Option<&str>,
    key: &claims::ClaimKey,
    dns: &DnsParts<'_>,
    req: &Request<()>,
) -> http::Response<ProxyBody> {
    if let Err(e) = routes::check_rest(dns.rest) {
        return local(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("Bad request: {e}.\n"),
        );
    }
    if dns.rest == CLAIM {
        let home = format!("/{}/", app.name());
        let domain = super::request::cookie_domain(domain, dns.base);
        return super::admit::claim(app, key, dns.pod, dns.uid, req, &home, Some(domain));
    }
    ticketed(app, domain, dns.pod, dns.uid, req)
}

/// A ticketed request that cannot pass: a browser navigating goes back to
/// the waiting room with a word on why; anything else gets k8sTicket's 403.
fn denied(
    app: &App,
    domain: Option<&str>,
    req: &Request<()>,
    why: Ended,
    text: &'static str,
) -> http::Response<ProxyBody> {
    if is_navigation(req.headers()) {
        ended(app, domain, req, why)
    } else {
        pages::forbidden(text)
    }
}

/// Redirects to the waiting room's "session ended" page (on the base host
/// in DNS mode).
pub(super) fn ended(
    app: &App,
    domain: Option<&str>,
    req: &Request<()>,
    why: Ended,
) -> http::Response<ProxyBody> {
    let path = format!("/{}/?ended={}", app.name(), why.as_str());
    // Only a host that names one of the app's pods is a DNS-mode host.
    let dns = super::request::dns_parts(app, domain, host(req), req.uri().path());
    let location = match dns {
        Some(d) => format!("{}://{}{path}", scheme(req.headers()), d.base),
        None => path,
    };
    pages::redirect(StatusCode::SEE_OTHER, &location)
}
