//! Durations as people write them (`15s`, `1m30s`, `1500ms`, `2h`), read
//! and written by humantime. A leaf module: the host config (`[demo]`), the
//! Kubernetes annotations and policy case files all use it.

use std::time::Duration;

/// What a duration looks like, for error messages.
pub const EXPECTED: &str = "a number with a unit such as ms, s, m or h, e.g. 15s or 1m30s";

/// Parses a duration with units (`15s`, `1m 30s`, `250ms`; surrounding
/// blanks are ignored). A bare number is refused: `15` could mean seconds or
/// milliseconds, so it is not guessed.
pub fn parse(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// Writes a duration the way [`parse`] reads it (`30s`, `1m 30s`, `1s 500ms`);
/// parts below a millisecond are dropped.
pub fn format(d: Duration) -> String {
    let ms = Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64);
    humantime::format_duration(ms).to_string()
}

/// Serde for durations written as text (see [`parse`]).
pub mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    /// Writes `d` like `30s`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    /// Reads a duration written like `30s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).ok_or_else(|| {
            de::Error::custom(format!("{text:?} is not a duration: {}", super::EXPECTED))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        for (text, ms) in [
            ("0s", 0),
            ("15s", 15_000),
            ("  15s\t", 15_000),
            ("250ms", 250),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1m 30s", 90_000),
            ("1h2m3s4ms", 3_723_004),
            ("90s", 90_000),
        ] {
            assert_eq!(parse(text), Some(Duration::from_millis(ms)), "{text:?}");
        }
        for bad in [
            "",
            " ",
            "15",
            "s",
            "15S",
            "-1s",
            "+1s",
            "ms",
            "soon",
            "18446744073709551615h",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formatted_durations_parse_back() {
        for ms in [
            0, 1, 999, 1000, 1500, 30_000, 60_000, 90_000, 3_600_000, 5_400_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Some(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_secs(120)), "2m");
        assert_eq!(format(Duration::from_micros(1_500_700)), "1s 500ms");
    }
}
