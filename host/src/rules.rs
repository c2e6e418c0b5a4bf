//! Rules for app settings that the host config (`[demo]`) and the
//! Kubernetes annotations share. A leaf module.

use std::time::Duration;

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
