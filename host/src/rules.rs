//! Rules for app settings that the host config (`[demo]`) and the
//! Kubernetes annotations share. A leaf module.

use std::time::Duration;

/// Longest app, pod or uid name: one URL path segment, like a Kubernetes
/// object name.
pub const NAME_MAX_LEN: usize = 253;

/// Longest display name, in characters: it is a heading on a phone screen.
pub const DISPLAY_NAME_MAX_CHARS: usize = 80;

/// Shortest resume grace period (`demo.resume_grace`,
/// `wicket.dev/resume-grace`). The no-JavaScript page polls for half of it,
/// so a shorter one would have such users poll in a tight loop.
pub const RESUME_GRACE_MIN: Duration = Duration::from_secs(1);
/// Longest resume grace period: past an hour a place in line is a
/// reservation, not a dropped connection.
pub const RESUME_GRACE_MAX: Duration = Duration::from_secs(3600);

/// Is `s` usable as a display name: at most [`DISPLAY_NAME_MAX_CHARS`]
/// characters once trimmed, and no control characters (a line break or an
/// escape sequence has no place in a heading or a log line)? The page
/// escapes HTML, so any other text is safe. A blank name is valid: it means
/// the app name.
pub fn valid_display_name(s: &str) -> bool {
    let s = s.trim();
    s.chars().count() <= DISPLAY_NAME_MAX_CHARS && !s.chars().any(char::is_control)
}

/// Is `s` a plausible app, pod or uid name: one URL path segment of letters,
/// digits, `-`, `_` and `.`, not starting with a dot?
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX_LEN
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Is `s` usable as an app name? `ws` is not: `/ws` is the ticket socket of
/// the shared port.
pub fn valid_app_name(s: &str) -> bool {
    valid_name(s) && s != "ws"
}
