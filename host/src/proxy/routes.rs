//! Parsing request paths into routes (k8sTicket's URL scheme). Pure; every
//! malformed input maps to a clear error, never a panic.

/// Longest path accepted.
pub const MAX_PATH: usize = 8 * 1024;

/// Reserved segment for wicket's own endpoints under a ticket prefix or an app.
pub const INTERNAL: &str = ".wicket";

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/<app>` or `/<app>/`: the waiting page.
    Waiting {
        /// App name.
        app: &'a str,
    },
    /// `/<app>/ws`: the ticket WebSocket.
    TicketSocket {
        /// App name.
        app: &'a str,
    },
    /// `/<app>/.wicket/<what>`: wicket's own endpoints for an app.
    Internal {
        /// App name.
        app: &'a str,
        /// The endpoint.
        what: &'a str,
    },
    /// `/<app>/<pod>` or `/<app>/<pod>/`: no uid — back to the waiting page.
    PodOnly {
        /// App name.
        app: &'a str,
    },
    /// `/<app>/<pod>/<uid>/<rest>`: a request on a ticket.
    Ticketed {
        /// App name.
        app: &'a str,
        /// Pod name.
        pod: &'a str,
        /// Ticket uid.
        uid: &'a str,
        /// The rest of the path, without its leading `/` (may be empty).
        rest: &'a str,
    },
}

impl<'a> Route<'a> {
    /// The app the route names.
    pub fn app(&self) -> &'a str {
        match *self {
            Route::Waiting { app }
            | Route::TicketSocket { app }
            | Route::Internal { app, .. }
            | Route::PodOnly { app }
            | Route::Ticketed { app, .. } => app,
        }
    }
}

/// A path that cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// `/` or nothing to route on.
    #[error("not found")]
    NotFound,
    /// Longer than [`MAX_PATH`].
    #[error("path too long")]
    TooLong,
    /// A segment with characters or a length no app, pod or uid can have.
    #[error("malformed path segment")]
    BadSegment,
    /// `..`/`.` segments (also percent-encoded) or NUL bytes in the rest.
    #[error("path traversal or control characters are not allowed")]
    Traversal,
}

pub use crate::rules::valid_name;

/// Parses `/<app>[/…]`.
pub fn parse(path: &str) -> Result<Route<'_>, RouteError> {
    if path.len() > MAX_PATH {
        return Err(RouteError::TooLong);
    }
    let p = path.strip_prefix('/').ok_or(RouteError::NotFound)?;
    let (app, after) = split_segment(p);
    if app.is_empty() {
        return Err(RouteError::NotFound);
    }
    if !valid_name(app) {
        return Err(RouteError::BadSegment);
    }
    let Some(after) = after else {
        return Ok(Route::Waiting { app });
    };
    let (second, after) = split_segment(after);
    match (second, after) {
        ("", None) => return Ok(Route::Waiting { app }),
        ("ws", None) => return Ok(Route::TicketSocket { app }),
        (INTERNAL, Some(what)) => return Ok(Route::Internal { app, what }),
        _ => {}
    }
    if !valid_name(second) {
        return Err(RouteError::BadSegment);
    }
    let pod = second;
    let (uid, rest) = match after {
        None => return Ok(Route::PodOnly { app }),
        Some(a) => split_segment(a),
    };
    if uid.is_empty() {
        return Ok(Route::PodOnly { app });
    }
    if !valid_name(uid) {
        return Err(RouteError::BadSegment);
    }
    let rest = rest.unwrap_or("");
    check_rest(rest)?;
    Ok(Route::Ticketed {
        app,
        pod,
        uid,
        rest,
    })
}

/// Splits at the first `/`: (segment, remainder after the slash).
fn split_segment(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// Refuses dot segments (plain or percent-encoded, also with path
/// parameters: `..;x`, which Tomcat and Jetty read as `..`), NUL bytes and
/// `#` (a fragment never belongs in a request; a pod that cuts it off
/// would see `a/..#` as `a/..`), so a request cannot climb out of
/// `pod.path` on the backend however the pod normalises its path.
pub fn check_rest(rest: &str) -> Result<(), RouteError> {
    // The usual path has nothing that could hide a dot segment or a NUL:
    // no need for the (allocating) checks below.
    if !rest
        .bytes()
        .any(|b| matches!(b, b'.' | b'%' | b'\\' | b'#' | 0))
    {
        return Ok(());
    }
    let lower_has = |needle: &str| {
        rest.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    if rest.contains(['\0', '#']) || lower_has("%00") {
        return Err(RouteError::Traversal);
    }
    for seg in rest.split(['/', '\\']) {
        let lowered = seg.to_ascii_lowercase();
        if is_dot_segment(&lowered) {
            return Err(RouteError::Traversal);
        }
        // An encoded slash or backslash next to dots could become a dot
        // segment after the backend decodes it.
        if (lowered.contains("%2f") || lowered.contains("%5c"))
            && lowered
                .replace("%2f", "/")
                .replace("%5c", "/")
                .split('/')
                .any(is_dot_segment)
        {
            return Err(RouteError::Traversal);
        }
    }
    Ok(())
}

/// Is `seg` (lower case) `.` or `..` once `%2e` is decoded and any path
/// parameters (`;…`, also as `%3b`) are cut off, as lenient servers do?
fn is_dot_segment(seg: &str) -> bool {
    let decoded = seg.replace("%2e", ".").replace("%3b", ";");
    let bare = decoded.split(';').next().unwrap_or("");
    bare == "." || bare == ".."
}

/// Splits a DNS-mode host `<pod>.<uid>.<base>[:port]` into its parts.
pub fn parse_dns_host(host: &str) -> Option<(&str, &str, &str)> {
    let (pod, rest) = host.split_once('.')?;
    let (uid, base) = rest.split_once('.')?;
    (valid_name(pod) && valid_name(uid) && !base.is_empty()).then_some((pod, uid, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_of_the_url_scheme() {
        assert_eq!(parse("/demo"), Ok(Route::Waiting { app: "demo" }));
        assert_eq!(parse("/demo/"), Ok(Route::Waiting { app: "demo" }));
        assert_eq!(parse("/demo/ws"), Ok(Route::TicketSocket { app: "demo" }));
        assert_eq!(
            parse("/demo/.wicket/poll"),
            Ok(Route::Internal {
                app: "demo",
                what: "poll"
            })
        );
        assert_eq!(parse("/demo/pod-1"), Ok(Route::PodOnly { app: "demo" }));
        assert_eq!(parse("/demo/pod-1/"), Ok(Route::PodOnly { app: "demo" }));
        assert_eq!(
            parse("/demo/pod-1/ab12/"),
            Ok(Route::Ticketed {
                app: "demo",
                pod: "pod-1",
                uid: "ab12",
                rest: ""
            })
        );
        assert_eq!(
            parse("/demo/pod-1/ab12"),
            Ok(Route::Ticketed {
                app: "demo",
                pod: "pod-1",
                uid: "ab12",
                rest: ""
            })
        );
        assert_eq!(
            parse("/demo/pod-1/ab12/shared/shiny.js"),
            Ok(Route::Ticketed {
                app: "demo",
                pod: "pod-1",
                uid: "ab12",
                rest: "shared/shiny.js"
            })
        );
        assert_eq!(
            parse("/demo/pod-1/ab12/api/contents/a%2Fb"),
            Ok(Route::Ticketed {
                app: "demo",
                pod: "pod-1",
                uid: "ab12",
                rest: "api/contents/a%2Fb"
            })
        );
    }

    #[test]
    fn malformed_paths_are_refused() {
        assert_eq!(parse(""), Err(RouteError::NotFound));
        assert_eq!(parse("/"), Err(RouteError::NotFound));
        assert_eq!(parse("//x"), Err(RouteError::NotFound));
        assert_eq!(parse("/de mo/"), Err(RouteError::BadSegment));
        assert_eq!(parse("/demo/<script>/x/"), Err(RouteError::BadSegment));
        assert_eq!(parse("/demo/../x/"), Err(RouteError::BadSegment));
        assert_eq!(parse("/demo/p/%2e%2e/"), Err(RouteError::BadSegment));
        assert_eq!(
            parse(&format!("/demo/{}/u/", "a".repeat(300))),
            Err(RouteError::BadSegment)
        );
        assert_eq!(
            parse(&format!("/demo/p/u/{}", "a".repeat(MAX_PATH))),
            Err(RouteError::TooLong)
        );
    }

    #[test]
    fn traversal_in_rest_is_refused() {
        for rest in [
            "..",
            "../etc/passwd",
            "a/../../b",
            "./x",
            "%2e%2e/x",
            "%2E%2e/x",
            ".%2e/x",
            "a/%2e%2E",
            "a\\..\\b",
            "x%00y",
            "a%2f..%2fb",
            "a%5c..%5cb",
            "%2e%2e%2fsecret",
            // Path parameters: Tomcat and Jetty read `..;x` as `..`.
            "..;/x",
            "..;a=b/x",
            "a/.;/b",
            "%2e%2e;/x",
            "..%3b/x",
            "a%2f..;%2fb",
            // A fragment: a pod that cuts it off sees `a/..`.
            "a/..#",
            "x#y",
        ] {
            assert_eq!(
                parse(&format!("/demo/p/u/{rest}")),
                Err(RouteError::Traversal),
                "{rest:?} must be refused"
            );
        }
        for ok in [
            "a..b",
            "...",
            "file.tar.gz",
            "a/.hidden",
            "%2e%2e%2e",
            "a;b/c",
            "...;x",
        ] {
            assert!(check_rest(ok).is_ok(), "{ok:?} is a name, not a traversal");
        }
    }

    #[test]
    fn dns_hosts() {
        assert_eq!(
            parse_dns_host("pod-1.ab12.wicket.test:9001"),
            Some(("pod-1", "ab12", "wicket.test:9001"))
        );
        assert_eq!(parse_dns_host("wicket.test"), None);
        assert_eq!(parse_dns_host("localhost:9001"), None);
        assert_eq!(parse_dns_host("a b.c.d"), None);
    }

    #[test]
    fn no_panic_on_arbitrary_bytes() {
        // Multi-byte characters at every position must not split a char.
        let weird = "/é/ü/ß/€/𝄞/../%/%%/%2/%2e/\u{0}";
        for i in 0..weird.len() {
            if weird.is_char_boundary(i) {
                let _ = parse(&weird[..i]);
                let _ = parse(&weird[i..]);
            }
        }
    }
}
