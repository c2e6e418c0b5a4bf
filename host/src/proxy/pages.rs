//! Pages and texts the proxy answers with itself.

use http::StatusCode;
use http::header::{self, HeaderValue};

use super::forward::{ProxyBody, local};
use crate::demo_app::html_escape;

/// k8sTicket's answer to a ticketed request without its cookie.
pub const SESSION_EXPIRED: &str = "Session expired! Please open your application again by using the base path.";
/// k8sTicket's answer to a wrong or unknown token.
pub const NO_ACCESS: &str = "You do not have access to this page...";

const WAITING_PAGE: &str = include_str!("../static/waiting.html");

/// The waiting page of `app`.
pub fn waiting_page(app: &str, dns: bool) -> http::Response<ProxyBody> {
    let html = WAITING_PAGE.replace("{{APP}}", &html_escape(app)).replace("{{DNS}}", if dns { "true" } else { "false" });
    let mut r = local(StatusCode::OK, "text/html; charset=utf-8", html);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A redirect to `location`.
pub fn redirect(status: StatusCode, location: &str) -> http::Response<ProxyBody> {
    let mut r = local(status, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 403 with a plain-text reason.
pub fn forbidden(reason: &'static str) -> http::Response<ProxyBody> {
    local(StatusCode::FORBIDDEN, "text/plain; charset=utf-8", reason)
}
