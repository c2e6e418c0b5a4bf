//! Pages and texts the proxy answers with itself: the waiting room (live,
//! without JavaScript, closed, session ended), redirects and 403s.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::app::WaitStatus;
use crate::html::escape as html_escape;
use crate::state::Basis;

/// The body of every response wicket makes itself.
pub type ProxyBody = Full<Bytes>;

/// A small local response.
pub fn local(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Read as what it says it is, never sniffed into something else.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// k8sTicket's answer to a ticketed request without its cookie.
pub const SESSION_EXPIRED: &str =
    "Session expired! Please open your application again by using the base path.";
/// k8sTicket's answer to a wrong or unknown token.
pub const NO_ACCESS: &str = "You do not have access to this page...";

const WAITING_PAGE: &str = include_str!("../static/waiting.html");
const WAITING_SCRIPT: &str = include_str!("../static/waiting.js");

/// The waiting page's Content-Security-Policy, but for `frame-ancestors`
/// (see [`csp`]): its own inline script and style (by hash) and nothing
/// else; sockets and forms to its own origin only; no `<base>`. Even a
/// value that escaped escaping could not run or load anything.
static PAGE_POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let hash = |text: &str| {
        use base64::Engine as _;
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(text.as_bytes());
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    let style = WAITING_PAGE
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map_or("", |(style, _)| style);
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         form-action 'self'; base-uri 'none'",
        hash(&script_element_text()),
        hash(style)
    )
});

/// The waiting page's policy: [`PAGE_POLICY`], and framed only by pages of
/// its own origin or of `framers` (`proxy.ws_origins`). A page elsewhere
/// that framed the waiting room would have its visitors' browsers join the
/// line with the waiting room's own origin, past the ticket socket's
/// Origin check (and could clickjack it).
fn csp(framers: &[Box<str>]) -> HeaderValue {
    let mut policy = format!("{}; frame-ancestors 'self'", *PAGE_POLICY);
    for origin in framers {
        policy.push(' ');
        policy.push_str(origin);
    }
    HeaderValue::from_str(&policy).unwrap_or_else(|_| {
        HeaderValue::from_str(&format!("{}; frame-ancestors 'self'", *PAGE_POLICY))
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
    })
}

/// The text of the live page's `<script>` element (hashed for [`CSP`]).
fn script_element_text() -> String {
    format!("\n{WAITING_SCRIPT}")
}

/// Seconds between reloads of the page without JavaScript.
pub const NOSCRIPT_REFRESH_SECONDS: u32 = 1;
/// Seconds between checks of a closed app.
pub const CLOSED_RETRY_SECONDS: u32 = 30;

/// Which app a page is about.
#[derive(Debug, Clone, Copy)]
pub struct Room<'a> {
    /// URL name.
    pub app: &'a str,
    /// Name shown to people.
    pub title: &'a str,
    /// DNS mode (the page's script sends users to `<pod>.<uid>.<host>`).
    pub dns: bool,
    /// Origins besides its own whose pages may frame it
    /// (`proxy.ws_origins`).
    pub framers: &'a [Box<str>],
}

/// Why a user was sent back to the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The session's ticket is gone (closed tab, idle, pod removed).
    Expired,
    /// The session exists, but this browser does not hold it.
    Denied,
}

impl Ended {
    /// The `ended` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Expired => "expired",
            Ended::Denied => "denied",
        }
    }

    /// Parses the `ended` query value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "expired" => Some(Ended::Expired),
            "denied" => Some(Ended::Denied),
            _ => None,
        }
    }
}

/// What the waiting room shows.
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    /// The live page: its script waits on the ticket WebSocket; without
    /// JavaScript it moves on to the polling page.
    Live,
    /// Without JavaScript: the user waits at `status` and the page reloads
    /// itself through the poll endpoint with the resume id `rid`.
    NoScript {
        /// Resume id (hex).
        rid: &'a str,
        /// Place and estimate.
        status: Option<WaitStatus>,
        /// This process is shutting down: the next reload goes elsewhere.
        restarting: bool,
    },
    /// The app takes no users now (503).
    Closed,
    /// The user's session ended; they may start a new one.
    Ended(Ended),
}

/// The variable parts of the waiting room template.
struct Parts {
    head: String,
    class: &'static str,
    state: String,
    /// (position, estimated wait) when known.
    tiles: Option<(String, String)>,
    notice: Option<String>,
    actions: String,
    hint: String,
    script: String,
}

/// Human wording of an estimated wait (the page's script words it the same).
pub fn describe_wait(wait: Option<Duration>) -> String {
    let Some(w) = wait else {
        return "not known yet".into();
    };
    let s = w.as_secs();
    match s {
        0..5 => "any moment now".into(),
        5..55 => format!("about {} seconds", (s + 2) / 5 * 5),
        55..90 => "about 1 minute".into(),
        90..3600 => format!("about {} minutes", (s + 30) / 60),
        3600..86_400 => {
            let halves = (s + 900) / 1800;
            let h = if halves % 2 == 0 {
                format!("{}", halves / 2)
            } else {
                format!("{}.5", halves / 2)
            };
            format!("about {h} {}", if halves == 2 { "hour" } else { "hours" })
        }
        _ => "more than a day".into(),
    }
}

/// Fills `{{KEY}}` placeholders in one pass, so values are never
/// re-expanded.
fn render(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push_str(&value(&after[..end]));
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The waiting room of `room` in `view`.
pub fn room_page(room: Room<'_>, view: View<'_>) -> http::Response<ProxyBody> {
    let title = html_escape(room.title);
    let app = html_escape(room.app);
    let poll = format!("/{app}/.wicket/poll");
    let parts = match view {
        View::Live => Parts {
            head: format!("<noscript><meta http-equiv=\"refresh\" content=\"0;url={poll}\"></noscript>"),
            class: "",
            state: "Connecting…".into(),
            tiles: None,
            notice: None,
            actions: format!(
                "<noscript><p class=\"muted\">Without JavaScript, this page checks for a free slot by reloading \
                 itself. <a href=\"{poll}\">Continue</a></p></noscript>"
            ),
            hint: format!("Keep this tab open: {title} opens here by itself as soon as a slot is free."),
            script: format!("<script>{}</script>", script_element_text()),
        },
        View::NoScript {
            rid,
            status,
            restarting,
        } => {
            let rid = html_escape(rid);
            Parts {
                head: format!("<meta http-equiv=\"refresh\" content=\"{NOSCRIPT_REFRESH_SECONDS};url={poll}?w={rid}\">"),
                class: "",
                state: match status {
                    Some(s) if s.estimate.basis == Basis::Starting => "Starting a new instance for you…".into(),
                    Some(s) if s.position == 1 => "Waiting for a free slot — you are next".into(),
                    _ => "Waiting for a free slot".into(),
                },
                tiles: status.map(|s| (s.position.to_string(), describe_wait(s.estimate.wait))),
                notice: restarting.then(|| {
                    "The waiting room is restarting. This page reconnects by itself; your place in line is kept."
                        .to_owned()
                }),
                actions: format!(
                    "<form method=\"get\" action=\"{poll}\"><input type=\"hidden\" name=\"w\" value=\"{rid}\">\
                     <button class=\"button\" type=\"submit\">Check now</button></form>"
                ),
                hint: format!("This page reloads itself and opens {title} as soon as a slot is free."),
                script: String::new(),
            }
        }
        View::Closed => Parts {
            head: format!("<meta http-equiv=\"refresh\" content=\"{CLOSED_RETRY_SECONDS};url={poll}\">"),
            class: "done",
            state: format!("{title} is not available right now."),
            tiles: None,
            notice: Some("It may be switched off or being updated. Please try again later.".to_owned()),
            actions: format!("<p><a class=\"button\" href=\"{poll}\">Try again</a></p>"),
            hint: format!("This page checks again every {CLOSED_RETRY_SECONDS} seconds."),
            script: String::new(),
        },
        View::Ended(why) => Parts {
            head: String::new(),
            class: "done",
            state: "Your session has ended.".into(),
            tiles: None,
            notice: Some(match why {
                Ended::Expired => format!(
                    "Your session of {title} was closed, or unused for a while, and its slot went to someone \
                     else. Anything not saved in it is gone."
                ),
                Ended::Denied => format!(
                    "This address belongs to another session of {title}, or your session has ended. Open \
                     {title} from its start page to get a session of your own."
                ),
            }),
            actions: format!("<p><a class=\"button\" href=\"/{app}/\">Open {title} again</a></p>"),
            hint: "Every user gets a slot of their own; a slot nobody uses is given to the next person.".into(),
            script: String::new(),
        },
    };
    let (position, eta) = parts
        .tiles
        .clone()
        .unwrap_or_else(|| ("–".into(), "…".into()));
    let html = render(WAITING_PAGE, |key| match key {
        "TITLE" => title.clone(),
        "APP" => app.clone(),
        "DNS" => room.dns.to_string(),
        "HEAD" => parts.head.clone(),
        "CLASS" => parts.class.to_owned(),
        "STATE" => parts.state.clone(),
        "TILES_HIDDEN" => if parts.tiles.is_some() { "" } else { "hidden" }.to_owned(),
        "POSITION" => position.clone(),
        "ETA" => eta.clone(),
        "NOTICE_HIDDEN" => if parts.notice.is_some() { "" } else { "hidden" }.to_owned(),
        "NOTICE" => parts.notice.clone().unwrap_or_default(),
        "ACTIONS" => parts.actions.clone(),
        "HINT" => parts.hint.clone(),
        "SCRIPT" => parts.script.clone(),
        other => format!("{{{{{other}}}}}"),
    });
    let status = if matches!(view, View::Closed) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut r = local(status, "text/html; charset=utf-8", html);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp(room.framers));
    // For browsers without frame-ancestors (newer ones ignore it then).
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    // The no-JavaScript page's URL holds the resume id: not for the pod
    // the user is sent to next.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if matches!(view, View::Closed) {
        h.insert(header::RETRY_AFTER, HeaderValue::from(CLOSED_RETRY_SECONDS));
    }
    r
}

/// The live waiting page of `app` (its URL name is also its title).
pub fn waiting_page(app: &str, dns: bool) -> http::Response<ProxyBody> {
    room_page(
        Room {
            app,
            title: app,
            dns,
            framers: &[],
        },
        View::Live,
    )
}

/// A redirect to `location`.
pub fn redirect(status: StatusCode, location: &str) -> http::Response<ProxyBody> {
    let mut r = local(status, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 403 with a plain-text reason.
pub fn forbidden(reason: &'static str) -> http::Response<ProxyBody> {
    local(StatusCode::FORBIDDEN, "text/plain; charset=utf-8", reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Estimate;
    use http_body_util::BodyExt;

    async fn body(r: http::Response<ProxyBody>) -> String {
        let b = r
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&b).into_owned()
    }

    #[test]
    fn waits_in_words() {
        let s = |n| describe_wait(Some(Duration::from_secs(n)));
        assert_eq!(describe_wait(None), "not known yet");
        assert_eq!(s(0), "any moment now");
        assert_eq!(s(12), "about 10 seconds");
        assert_eq!(s(13), "about 15 seconds");
        assert_eq!(s(54), "about 55 seconds");
        assert_eq!(s(70), "about 1 minute");
        assert_eq!(s(150), "about 3 minutes");
        assert_eq!(s(3599), "about 60 minutes");
        assert_eq!(s(3600), "about 1 hour");
        assert_eq!(s(5400), "about 1.5 hours");
        assert_eq!(s(7200), "about 2 hours");
        assert_eq!(s(100_000), "more than a day");
    }

    #[test]
    fn placeholders_are_expanded_once() {
        let out = render("a{{X}}b{{Y}}c{{", |k| {
            if k == "X" { "{{Y}}".into() } else { "y".into() }
        });
        assert_eq!(out, "a{{Y}}byc{{");
    }

    #[tokio::test]
    async fn names_are_escaped_and_views_differ() {
        let room = Room {
            app: "demo",
            title: "<Shiny & co>",
            dns: false,
            framers: &[],
        };
        let live = body(room_page(room, View::Live)).await;
        assert!(live.contains("&lt;Shiny &amp; co&gt;") && !live.contains("<Shiny"));
        assert!(live.contains("role=\"status\""));
        assert!(live.contains(
            "<noscript><meta http-equiv=\"refresh\" content=\"0;url=/demo/.wicket/poll\">"
        ));
        assert!(
            live.contains("/ws?resume"),
            "the script opens the ticket socket"
        );
        assert!(!live.contains("{{"), "every placeholder filled");

        let status = WaitStatus {
            position: 3,
            estimate: Estimate {
                wait: Some(Duration::from_secs(150)),
                basis: Basis::Queue,
            },
        };
        let r = room_page(
            room,
            View::NoScript {
                rid: "ab12",
                status: Some(status),
                restarting: false,
            },
        );
        assert_eq!(r.status(), StatusCode::OK);
        let nojs = body(r).await;
        assert!(nojs.contains("url=/demo/.wicket/poll?w=ab12"));
        assert!(nojs.contains(">3</span>") && nojs.contains("about 3 minutes"));
        assert!(
            !nojs.contains("<script"),
            "the no-script page has no script"
        );

        let r = room_page(room, View::Closed);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(r).await.contains("not available right now"));
        let ended = body(room_page(room, View::Ended(Ended::Expired))).await;
        assert!(ended.contains("Your session has ended") && ended.contains("href=\"/demo/\""));
        assert!(
            !ended.contains("<script") && !ended.contains("http-equiv"),
            "no automatic new session"
        );
    }
}
