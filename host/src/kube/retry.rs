//! Retrying Kubernetes API calls: which errors are worth retrying, and the
//! backoffs (backon's exponential backoff with jitter; for watches wrapped
//! the way kube-runtime wraps its own default).

use std::time::Duration;

use backon::ExponentialBuilder;
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher::ExponentialBackoff;

/// A watch that worked this long since its last failure starts its backoff
/// over (kube-runtime's `DefaultBackoff` uses the same figure).
const WATCH_BACKOFF_RESET: Duration = Duration::from_secs(120);

/// Backoff settings (from `[kubernetes]` in the host config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// How long one action waits between its attempts in all before it is
    /// given up.
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

impl RetrySettings {
    fn exponential(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_jitter()
            .without_max_times()
    }

    /// The backoff of one action (a pod creation, an Event): `initial`,
    /// doubling up to `max`, with jitter, until the delays add up to
    /// `deadline`.
    pub fn action(&self) -> ExponentialBuilder {
        self.exponential().with_total_delay(Some(self.deadline))
    }

    /// The backoff of a watch: as [`Self::action`] but forever, started
    /// over once the watch has worked for a while.
    pub fn watch(&self) -> impl Backoff + use<> {
        ResetTimerBackoff::new(
            ExponentialBackoff::from(self.exponential()),
            WATCH_BACKOFF_RESET,
        )
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
    use backon::BackoffBuilder;

    fn settings(deadline: Duration) -> RetrySettings {
        RetrySettings {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            deadline,
        }
    }

    #[test]
    fn action_backoff_grows_to_max_and_stops_at_the_deadline() {
        let delays: Vec<Duration> = settings(Duration::from_secs(3)).action().build().collect();
        assert!(!delays.is_empty());
        // Jitter adds up to the delay itself.
        assert!(delays[0] >= Duration::from_millis(100), "{delays:?}");
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(800)),
            "{delays:?}"
        );
        let total: Duration = delays.iter().sum();
        assert!(total <= Duration::from_secs(3), "{total:?}");
        assert!(settings(Duration::ZERO).action().build().next().is_none());
    }

    #[tokio::test]
    async fn watches_retry_forever() {
        let mut w = settings(Duration::ZERO).watch();
        assert!((0..100).all(|_| w.next().is_some()));
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
