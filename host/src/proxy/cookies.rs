//! Ticket cookies: k8sTicket's `<pod>-<uid>-stoken` scheme, read without
//! allocation, and the HttpOnly variant wicket sets itself.

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

/// Largest Cookie header value looked at; larger ones are ignored.
const MAX_COOKIE_HEADER: usize = 16 * 1024;

/// The cookie name of ticket `uid` on `pod`.
pub fn name(pod: &str, uid: &str) -> String {
    format!("{pod}-{uid}-stoken")
}

fn is_ticket_cookie(name: &str, pod: &str, uid: &str) -> bool {
    name.strip_prefix(pod)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_prefix(uid))
        .is_some_and(|r| r == "-stoken")
}

fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter(|v| v.len() <= MAX_COOKIE_HEADER)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
}

/// The value of the ticket cookie for (`pod`, `uid`), if sent.
pub fn find<'h>(headers: &'h HeaderMap, pod: &str, uid: &str) -> Option<&'h str> {
    pairs(headers)
        .find(|(k, _)| is_ticket_cookie(k, pod, uid))
        .map(|(_, v)| v)
}

/// Removes the ticket cookie from the Cookie headers (the backend has no use
/// for the secret). Other cookies pass unchanged.
pub fn strip(headers: &mut HeaderMap, pod: &str, uid: &str) {
    if find(headers, pod, uid).is_none() {
        return;
    }
    let mut kept = String::new();
    for (k, v) in pairs(headers).filter(|(k, _)| !is_ticket_cookie(k, pod, uid)) {
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(k);
        kept.push('=');
        kept.push_str(v);
    }
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept)
    {
        headers.insert(COOKIE, v);
    }
}

/// Attributes of a ticket cookie set by the server.
#[derive(Debug, Clone, Copy)]
pub struct CookieScope<'a> {
    /// `Path` attribute.
    pub path: &'a str,
    /// `Domain` attribute (DNS mode), without port.
    pub domain: Option<&'a str>,
    /// Add `Secure` (the user came over https).
    pub secure: bool,
}

/// `Set-Cookie` value: HttpOnly (scripts cannot read it) and SameSite=Lax.
pub fn set_cookie(
    pod: &str,
    uid: &str,
    token: &str,
    scope: CookieScope<'_>,
) -> Option<HeaderValue> {
    let mut s = format!(
        "{}={token}; Path={}; HttpOnly; SameSite=Lax",
        name(pod, uid),
        scope.path
    );
    if let Some(d) = scope.domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    if scope.secure {
        s.push_str("; Secure");
    }
    HeaderValue::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).expect("valid header"));
        }
        h
    }

    #[test]
    fn finds_the_right_cookie() {
        let h = headers(&[
            "a=1; demo-p1-u1-stoken=tok1",
            "demo-p1-u2-stoken=tok2; x=\"y\"",
        ]);
        assert_eq!(find(&h, "demo-p1", "u1"), Some("tok1"));
        assert_eq!(find(&h, "demo-p1", "u2"), Some("tok2"));
        assert_eq!(find(&h, "demo-p1", "u3"), None);
        assert_eq!(
            find(&h, "demo", "p1-u1"),
            Some("tok1"),
            "names are ambiguous; the token decides"
        );
        assert_eq!(find(&headers(&[]), "p", "u"), None);
        assert_eq!(find(&headers(&[";;;=;==; p-u-stoken"]), "p", "u"), None);
    }

    #[test]
    fn oversized_headers_are_ignored() {
        let big = format!("p-u-stoken=t; pad={}", "x".repeat(MAX_COOKIE_HEADER));
        assert_eq!(find(&headers(&[&big]), "p", "u"), None);
    }

    #[test]
    fn strip_keeps_other_cookies() {
        let mut h = headers(&["a=1; p-u-stoken=t; b=2"]);
        strip(&mut h, "p", "u");
        assert_eq!(
            h.get(COOKIE).map(|v| v.to_str().ok()),
            Some(Some("a=1; b=2"))
        );
        let mut h = headers(&["p-u-stoken=t"]);
        strip(&mut h, "p", "u");
        assert!(h.get(COOKIE).is_none());
    }

    #[test]
    fn set_cookie_is_http_only() {
        let v = set_cookie(
            "p",
            "u",
            "t",
            CookieScope {
                path: "/demo/p/u/",
                domain: None,
                secure: false,
            },
        )
        .expect("value");
        assert_eq!(v, "p-u-stoken=t; Path=/demo/p/u/; HttpOnly; SameSite=Lax");
        let v = set_cookie(
            "p",
            "u",
            "t",
            CookieScope {
                path: "/demo/",
                domain: Some("wicket.test"),
                secure: true,
            },
        )
        .expect("value");
        assert!(
            v.to_str()
                .is_ok_and(|s| s.ends_with("; Domain=wicket.test; Secure"))
        );
    }
}
