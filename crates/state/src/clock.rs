//! The time of a decision as a policy sees it (contract 0.2 `clock`): unix
//! seconds and the app's UTC offset at that moment, from an IANA time zone.
//!
//! Pure: the time comes in as an argument. Zones are looked up in the IANA
//! database bundled into the binary (jiff's), never in the host's
//! `/usr/share/zoneinfo`: container images often lack it, and the live host,
//! `wicket policy test` and the simulator must agree on every offset.

use std::sync::OnceLock;

use jiff::tz::{TimeZone, TimeZoneDatabase};

/// The time of a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_seconds: u64,
    /// Offset of the app's local time from UTC at `unix_seconds`.
    pub utc_offset_seconds: i32,
}

impl Clock {
    /// The clock at `unix_seconds` in `zone`.
    pub fn at(unix_seconds: u64, zone: &TimeZone) -> Self {
        let offset = i64::try_from(unix_seconds)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map_or(0, |t| zone.to_offset(t).seconds());
        Self {
            unix_seconds,
            utc_offset_seconds: offset,
        }
    }
}

/// A time zone name that is not in the IANA database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is not an IANA time zone name (such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\")"
)]
pub struct UnknownZone {
    /// The name given.
    pub name: String,
}

impl UnknownZone {
    /// What is wrong, without the name (for messages that show it already).
    pub fn problem(&self) -> &'static str {
        "is not an IANA time zone name (such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\")"
    }
}

fn database() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// Looks a zone up by its IANA name (case-insensitive; surrounding blanks
/// ignored).
pub fn zone(name: &str) -> Result<TimeZone, UnknownZone> {
    let trimmed = name.trim();
    // An empty name would find nothing anyway; say so the same way.
    if trimmed.is_empty() {
        return Err(UnknownZone { name: name.into() });
    }
    database()
        .get(trimmed)
        .map_err(|_| UnknownZone { name: name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_daylight_saving_time() {
        let berlin = zone("Europe/Berlin").expect("bundled");
        // 2026-01-15T12:00:00Z (winter) and 2026-07-15T12:00:00Z (summer).
        assert_eq!(Clock::at(1_768_478_400, &berlin).utc_offset_seconds, 3600);
        assert_eq!(Clock::at(1_784_116_800, &berlin).utc_offset_seconds, 7200);
        let ny = zone("america/new_york").expect("case-insensitive");
        assert_eq!(Clock::at(1_768_478_400, &ny).utc_offset_seconds, -5 * 3600);
        let utc = zone(" UTC ").expect("utc");
        assert_eq!(Clock::at(1_768_478_400, &utc).utc_offset_seconds, 0);
        assert_eq!(Clock::at(1_768_478_400, &utc).unix_seconds, 1_768_478_400);
    }

    #[test]
    fn unknown_names_are_refused_with_the_name() {
        for bad in ["", "  ", "Mars/Olympus_Mons", "Europe/Berlín", "+01:00"] {
            let e = zone(bad).expect_err(bad);
            assert_eq!(e.name, bad);
            assert!(e.to_string().contains("IANA"), "{e}");
        }
    }

    #[test]
    fn times_beyond_the_calendar_do_not_panic() {
        let berlin = zone("Europe/Berlin").expect("bundled");
        assert_eq!(Clock::at(u64::MAX, &berlin).utc_offset_seconds, 0);
    }
}
