//! Retrying Kubernetes API calls: which errors are worth retrying, and an
//! exponential backoff with jitter and an overall deadline.

use std::time::Duration;

use tokio::time::Instant;

/// Backoff settings (from `[kubernetes]` in the host config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// How long one action is retried before it is given up.
    pub deadline: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            deadline: Duration::from_secs(120),
        }
    }
}

/// Exponential backoff: `initial`, doubling up to `max`, each delay with up
/// to 25 % random jitter, until `deadline` has passed since the start.
#[derive(Debug, Clone)]
pub struct Backoff {
    settings: RetrySettings,
    next: Duration,
    started: Instant,
}

impl Backoff {
    /// A backoff starting now.
    pub fn new(settings: &RetrySettings) -> Self {
        Self {
            settings: *settings,
            next: settings.initial,
            started: Instant::now(),
        }
    }

    /// The next delay, or None once the deadline is reached.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let elapsed = self.started.elapsed();
        if elapsed >= self.settings.deadline {
            return None;
        }
        let base = self.next;
        self.next = (self.next * 2).min(self.settings.max);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.25);
        Some((base + jitter).min(self.settings.deadline - elapsed))
    }

    /// Starts over (after a success).
    pub fn reset(&mut self) {
        self.next = self.settings.initial;
        self.started = Instant::now();
    }
}

/// Watch-stream backoff for `kube::runtime` (no deadline: watches retry forever).
#[derive(Debug, Clone)]
pub struct WatchBackoff(Backoff);

impl WatchBackoff {
    /// From the retry settings; the deadline is ignored.
    pub fn new(settings: &RetrySettings) -> Self {
        Self(Backoff::new(&RetrySettings {
            deadline: Duration::MAX,
            ..*settings
        }))
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.0.next_delay()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0.reset();
    }
}

/// Is the error worth retrying: connection problems, timeouts, throttling and
/// server errors are; refusals (forbidden, invalid, not found) are not.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => matches!(status.code, 0 | 408 | 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The HTTP status of an API error (0 if it is not one).
pub fn status_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max_with_jitter() {
        let s = RetrySettings {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            deadline: Duration::from_secs(60),
        };
        let mut b = Backoff::new(&s);
        let delays: Vec<Duration> = (0..6)
            .map(|_| b.next_delay().expect("within the deadline"))
            .collect();
        let ms = |d: &Duration| d.as_millis() as u64;
        assert!((100..=125).contains(&ms(&delays[0])), "{delays:?}");
        assert!((200..=250).contains(&ms(&delays[1])), "{delays:?}");
        assert!(
            delays[2..].iter().all(|d| (400..=500).contains(&ms(d))),
            "{delays:?}"
        );
        b.reset();
        assert!(
            b.next_delay()
                .is_some_and(|d| d <= Duration::from_millis(125))
        );
    }

    #[test]
    fn backoff_stops_at_the_deadline() {
        let s = RetrySettings {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            deadline: Duration::ZERO,
        };
        assert_eq!(Backoff::new(&s).next_delay(), None);
        let mut w = WatchBackoff::new(&s);
        assert!(w.next().is_some(), "watches retry forever");
    }

    #[test]
    fn classification() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        for code in [429, 500, 503, 504] {
            assert!(is_transient(&api(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!is_transient(&api(code)), "{code}");
        }
        assert_eq!(status_code(&api(403)), 403);
    }
}
