//! What a request head says about its sender and target, as the pages,
//! claims and denials need it: the host, the scheme, browser or script,
//! query parameters, and the DNS-mode reading of the host.

use http::Request;
use http::header::{self, HeaderMap};

use crate::app::App;

use super::routes;

/// The request's host (the `Host` field, else the target's authority).
pub(super) fn host(req: &Request<()>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// Did the user come over https (as the proxy in front says)?
pub(super) fn wants_https(h: &HeaderMap) -> bool {
    h.get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The scheme the user sees.
pub(super) fn scheme(h: &HeaderMap) -> &'static str {
    if wants_https(h) { "https" } else { "http" }
}

/// The value of `key` in a query string.
pub(super) fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
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
pub(super) fn wants_page(h: &HeaderMap) -> bool {
    !is_xhr(h) && (!h.contains_key(header::ACCEPT) || accept_has_html(h))
}

/// Is this a person's browser navigating (who should see a page), rather
/// than a script or API client (who should see k8sTicket's 403 text)?
pub(super) fn is_navigation(h: &HeaderMap) -> bool {
    let fetch_mode_ok = h
        .get("sec-fetch-mode")
        .is_none_or(|m| m.as_bytes().eq_ignore_ascii_case(b"navigate"));
    accept_has_html(h) && !is_xhr(h) && fetch_mode_ok
}

/// A DNS-mode request: the host names the pod and the ticket uid.
#[derive(Debug)]
pub(super) struct DnsParts<'a> {
    pub pod: &'a str,
    pub uid: &'a str,
    /// The base host (with its port, if the host had one).
    pub base: &'a str,
    pub rest: &'a str,
}

/// Does `base` (a host, maybe with a port) name `domain`?
fn is_domain(base: &str, domain: &str) -> bool {
    let name = base.rsplit_once(':').map_or(base, |(n, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            n
        } else {
            base
        }
    });
    name.eq_ignore_ascii_case(domain)
}

/// Reads `host` as `<pod>.<uid>.<base>` when `app` is in DNS mode and
/// the host names one of its pods (with `domain` configured, the base
/// must be that domain). Otherwise None: the normal routes apply (e.g. the
/// waiting page on the base host).
pub(super) fn dns_parts<'a>(
    app: &App,
    domain: Option<&str>,
    host: &'a str,
    path: &'a str,
) -> Option<DnsParts<'a>> {
    if !app.routing().dns {
        return None;
    }
    let (pod, uid, base) = routes::parse_dns_host(host)?;
    if domain.is_some_and(|d| !is_domain(base, d)) || !app.has_pod(pod) {
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

/// The `Domain` of DNS-mode cookies: the configured domain, else (not
/// recommended: the client's `Host` decides) the base host without port.
pub(super) fn cookie_domain<'a>(configured: Option<&'a str>, base: &'a str) -> &'a str {
    configured.unwrap_or_else(|| base.split(':').next().unwrap_or(base))
}

/// The base host users reach DNS-mode pods under: the configured domain
/// (with the port of the request's host, if any), else the request's host.
pub(super) fn base_host<'a>(configured: Option<&str>, host: &'a str) -> std::borrow::Cow<'a, str> {
    match configured {
        Some(d) => {
            let port = host
                .rsplit_once(':')
                .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .map_or("", |(_, p)| p);
            if port.is_empty() {
                d.to_owned().into()
            } else {
                format!("{d}:{port}").into()
            }
        }
        None => host.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_ignore_case_and_port() {
        assert!(is_domain("wicket.test", "wicket.test"));
        assert!(is_domain("Wicket.TEST:9001", "wicket.test"));
        assert!(!is_domain("evil.test", "wicket.test"));
        assert!(!is_domain("x.wicket.test", "wicket.test"));
        assert_eq!(cookie_domain(Some("a.test"), "b.test:80"), "a.test");
        assert_eq!(cookie_domain(None, "b.test:80"), "b.test");
    }
}
