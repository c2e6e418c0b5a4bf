//! Ticket cookies: k8sTicket's `<pod>-<uid>-stoken` scheme, read without
//! allocation, and the HttpOnly variant wicket sets itself.

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

/// Largest Cookie header value looked at; larger ones are ignored.
const MAX_COOKIE_HEADER: usize = 16 * 1024;

/// The claim-binding cookie: a random value the waiting page gives a
/// browser, to which the tickets it receives are bound (see
/// [`super::claims`]). Never forwarded to a pod.
pub const BIND: &str = "wicket-bind";

/// Suffix of every ticket cookie's name (`<pod>-<uid>-stoken`).
const TICKET_SUFFIX: &[u8] = b"-stoken";

/// The cookie name of ticket `uid` on `pod`.
pub fn name(pod: &str, uid: &str) -> String {
    format!("{pod}-{uid}-stoken")
}

/// Is `name` the ticket cookie's name, `<pod>-<uid>-stoken`?
fn is_ticket_cookie(name: &[u8], pod: &str, uid: &str) -> bool {
    name.strip_prefix(pod.as_bytes())
        .and_then(|r| r.strip_prefix(b"-"))
        .and_then(|r| r.strip_prefix(uid.as_bytes()))
        .is_some_and(|r| r == b"-stoken")
}

/// The value of the ticket cookie for (`pod`, `uid`) among raw Cookie
/// field values, if sent: pairs trimmed, quotes taken off the value;
/// oversized fields are skipped. Read as bytes: only the value found must
/// be text.
pub fn find_in<'v>(
    values: impl Iterator<Item = &'v [u8]>,
    pod: &str,
    uid: &str,
) -> Option<&'v str> {
    all_in(values, pod, uid).next()
}

/// Every value sent for the ticket cookie of (`pod`, `uid`), in order (see
/// [`find_in`]). A browser sends several cookies of one name when they
/// differ in path or domain, and one set by someone else (a page of
/// another app on the same origin, a sibling host in DNS mode) may come
/// first: the ticket opens with any of them.
pub fn all_in<'v, 'n>(
    values: impl Iterator<Item = &'v [u8]> + 'n,
    pod: &'n str,
    uid: &'n str,
) -> impl Iterator<Item = &'v str> + 'n
where
    'v: 'n,
{
    values
        .filter(|v| v.len() <= MAX_COOKIE_HEADER)
        .flat_map(|v| v.split(|&b| b == b';'))
        .filter_map(move |pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            if !is_ticket_cookie(name, pod, uid) {
                return None;
            }
            let start = value.iter().position(|&b| b != b'"').unwrap_or(value.len());
            let end = value
                .iter()
                .rposition(|&b| b != b'"')
                .map_or(start, |e| e + 1);
            std::str::from_utf8(&value[start..end.max(start)]).ok()
        })
}

/// The value of the ticket cookie for (`pod`, `uid`), if sent.
pub fn find<'h>(headers: &'h HeaderMap, pod: &str, uid: &str) -> Option<&'h str> {
    find_in(
        headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes),
        pod,
        uid,
    )
}

/// Is `name` one of wicket's own cookies: any ticket cookie (of any pod,
/// app or user: a browser sends every ticket cookie whose path covers the
/// request) or the claim binding?
fn is_wickets(name: &[u8]) -> bool {
    name.ends_with(TICKET_SUFFIX) || name == BIND.as_bytes()
}

/// Does the `Set-Cookie` field value `value` (a pod's) set one of
/// wicket's cookies: a ticket cookie (it could overwrite or delete a
/// user's ticket) or the claim binding? The name is what comes before the
/// first `=` of the part before the first `;`, trimmed, as browsers read
/// it (RFC 6265 §5.2; no `=`: an empty name, not wicket's). Such a cookie
/// would never come back to a pod anyway: wicket removes them all from
/// forwarded requests.
pub fn sets_wickets(value: &[u8]) -> bool {
    let pair = value.split(|&b| b == b';').next().unwrap_or_default();
    pair.iter()
        .position(|&b| b == b'=')
        .is_some_and(|eq| is_wickets(pair[..eq].trim_ascii()))
}

/// The value of the cookie `name` among raw Cookie field values.
pub fn find_named<'v>(values: impl Iterator<Item = &'v [u8]>, name: &str) -> Option<&'v str> {
    values
        .filter(|v| v.len() <= MAX_COOKIE_HEADER)
        .flat_map(|v| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            if pair[..eq].trim_ascii() != name.as_bytes() {
                return None;
            }
            std::str::from_utf8(pair[eq + 1..].trim_ascii()).ok()
        })
}

/// Writes the Cookie field `value` as `cookie: …\r\n` without wicket's
/// cookies: no ticket cookie (the one for `pod` and `uid`, nor any other)
/// and no claim binding reaches a pod. Other cookies pass as they came.
/// Writes nothing when wicket's cookies were all there was.
pub fn write_without_ticket(out: &mut Vec<u8>, value: &[u8], pod: &str, uid: &str) {
    let start = out.len();
    out.extend_from_slice(b"cookie: ");
    let first = out.len();
    for pair in value.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        let name = pair
            .split(|&b| b == b'=')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if is_ticket_cookie(name, pod, uid) || is_wickets(name) {
            continue;
        }
        if out.len() > first {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    if out.len() == first {
        out.truncate(start);
    } else {
        out.extend_from_slice(b"\r\n");
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
    set_named(&name(pod, uid), token, scope)
}

/// `Set-Cookie` value of any of wicket's cookies (see [`set_cookie`]).
pub fn set_named(name: &str, value: &str, scope: CookieScope<'_>) -> Option<HeaderValue> {
    let mut s = format!(
        "{name}={value}; Path={}; HttpOnly; SameSite=Lax",
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
    fn every_cookie_of_the_tickets_name_is_a_candidate() {
        let values: [&[u8]; 2] = [
            b"p-u-stoken=tossed; a=1; p-u-stoken=\"mine\"",
            b"p-u-stoken=third",
        ];
        let all: Vec<&str> = all_in(values.into_iter(), "p", "u").collect();
        assert_eq!(all, ["tossed", "mine", "third"]);
        assert_eq!(find_in(values.into_iter(), "p", "u"), Some("tossed"));
    }

    #[test]
    fn oversized_headers_are_ignored() {
        let big = format!("p-u-stoken=t; pad={}", "x".repeat(MAX_COOKIE_HEADER));
        assert_eq!(find(&headers(&[&big]), "p", "u"), None);
    }

    #[test]
    fn the_ticket_cookie_is_not_forwarded() {
        let strip = |v: &str| {
            let mut out = Vec::new();
            write_without_ticket(&mut out, v.as_bytes(), "p", "u");
            String::from_utf8(out).expect("ascii")
        };
        assert_eq!(
            strip("a=1; p-u-stoken=t; b=\"2\""),
            "cookie: a=1; b=\"2\"\r\n"
        );
        assert_eq!(strip(" p-u-stoken=t "), "");
        assert_eq!(strip("p-u-stoken=t;;flag"), "cookie: flag\r\n");
        assert_eq!(strip("p-u2-stoken=t"), "", "another ticket's cookie");
        assert_eq!(
            strip("q-v-stoken=t; wicket-bind=b; stoken=1; x-stoken-y=2"),
            "cookie: stoken=1; x-stoken-y=2\r\n"
        );
    }

    #[test]
    fn a_pods_set_cookie_of_wickets_names_is_recognised() {
        for ours in [
            "p1-u1-stoken=x",
            " other-pod-uid-stoken = ; Max-Age=0",
            "wicket-bind=0123; Path=/demo/",
            "wicket-bind=",
        ] {
            assert!(sets_wickets(ours.as_bytes()), "{ours}");
        }
        for theirs in [
            "session=abc; Path=/",
            "wicket-bind",
            "stoken=1",
            "Wicket-Bind=1",
            "a=wicket-bind=1",
            "session=1; p1-u1-stoken=2",
            "",
        ] {
            assert!(!sets_wickets(theirs.as_bytes()), "{theirs}");
        }
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
