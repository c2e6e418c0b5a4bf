//! Arrival traces: the CSV that `wicket simulate --trace` reads and that a
//! running host serves at `/apps/<app>/trace.csv`.
//!
//! ```text
//! # comments start with '#'; blank lines are skipped
//! arrival_seconds,session_seconds
//! 0,1800
//! 12.5,600
//! 2026-12-04T09:00:03Z,2400
//! ```
//!
//! `arrival_seconds` is seconds from the start of the trace, or an RFC 3339
//! time (one kind per file); `session_seconds` is how long the user stays
//! once they have a slot. The header line is optional.
//!
//! Two numeric columns: a hand-written reader names the line and column of
//! every mistake exactly, which is most of what a CSV crate would add.

use std::fmt::Write as _;

/// The header line.
pub const HEADER: &str = "arrival_seconds,session_seconds";

/// One user: when they asked for a slot, and how long they stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Arrival {
    /// Milliseconds from the start of the simulation.
    pub at_ms: u64,
    /// How long the user uses the slot, in milliseconds.
    pub session_ms: u64,
}

/// A trace read from CSV, sorted by arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The arrivals, earliest first.
    pub arrivals: Vec<Arrival>,
    /// Unix time (ms) of the trace's start when it gave RFC 3339 times (its
    /// first arrival); None for relative times.
    pub start_unix_ms: Option<i64>,
}

/// A malformed trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// A field that cannot be read.
    #[error("line {line}, column {column} ({name}): {reason}")]
    Field {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The column's name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A line without exactly two fields.
    #[error("line {line}: expected 2 columns ({HEADER}), found {found}")]
    Columns {
        /// 1-based line.
        line: usize,
        /// Fields found.
        found: usize,
    },
    /// Nothing but comments.
    #[error(
        "the trace has no arrivals (a host records a session when its ticket expires, \
         a few seconds after the user's last request: use the app, wait, then fetch \
         /apps/APP/trace.csv again)"
    )]
    Empty,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    Relative,
    Absolute,
}

/// Longest session or relative arrival accepted: about 31 years.
const MAX_SECONDS: f64 = 1e9;

fn seconds(field: &str) -> Result<f64, String> {
    let v: f64 = field
        .parse()
        .map_err(|_| format!("`{field}` is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{field}` must be 0 or more"));
    }
    if v > MAX_SECONDS {
        return Err(format!("`{field}` is out of range"));
    }
    Ok(v)
}

/// Reads a trace.
pub fn parse(text: &str) -> Result<Trace, TraceError> {
    // (arrival ms, relative or unix; session ms)
    let mut rows: Vec<(i64, u64)> = Vec::new();
    let mut kind: Option<TimeKind> = None;
    let mut seen_data = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if !seen_data && content.replace(' ', "").eq_ignore_ascii_case(HEADER) {
            seen_data = true;
            continue;
        }
        seen_data = true;
        let fields: Vec<&str> = content.split(',').map(str::trim).collect();
        if fields.len() != 2 {
            return Err(TraceError::Columns {
                line,
                found: fields.len(),
            });
        }
        let field_err = |column: usize, reason: String| TraceError::Field {
            line,
            column,
            name: if column == 1 {
                "arrival_seconds"
            } else {
                "session_seconds"
            },
            reason,
        };
        let (at, this_kind) = match seconds(fields[0]) {
            Ok(s) => ((s * 1000.0).round() as i64, TimeKind::Relative),
            Err(number_err) => match fields[0].parse::<jiff::Timestamp>() {
                Ok(ts) => (ts.as_millisecond(), TimeKind::Absolute),
                Err(_) if fields[0].contains('T') => {
                    return Err(field_err(
                        1,
                        format!("`{}` is not an RFC 3339 time", fields[0]),
                    ));
                }
                Err(_) => return Err(field_err(1, number_err)),
            },
        };
        match kind {
            None => kind = Some(this_kind),
            Some(k) if k != this_kind => {
                return Err(field_err(
                    1,
                    "mixes seconds and RFC 3339 times (use one kind per file)".into(),
                ));
            }
            Some(_) => {}
        }
        let session = seconds(fields[1]).map_err(|e| field_err(2, e))?;
        rows.push((at, (session * 1000.0).round() as u64));
    }
    if rows.is_empty() {
        return Err(TraceError::Empty);
    }
    let (origin, start_unix_ms) = match kind {
        Some(TimeKind::Absolute) => {
            let first = rows.iter().map(|r| r.0).min().unwrap_or(0);
            (first, Some(first))
        }
        _ => (0, None),
    };
    let mut arrivals: Vec<Arrival> = rows
        .into_iter()
        .map(|(at, session_ms)| Arrival {
            at_ms: (at - origin).max(0) as u64,
            session_ms,
        })
        .collect();
    arrivals.sort();
    Ok(Trace {
        arrivals,
        start_unix_ms,
    })
}

/// Writes arrivals given as (unix ms, session ms) in the trace format, with
/// RFC 3339 times.
pub fn write_unix(rows: impl IntoIterator<Item = (i64, u64)>) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for (unix_ms, session_ms) in rows {
        let at = jiff::Timestamp::from_millisecond(unix_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let _ = writeln!(out, "{at},{:.3}", session_ms as f64 / 1000.0);
    }
    out
}

/// Writes arrivals in the trace format with relative times.
pub fn write_relative(arrivals: &[Arrival]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for a in arrivals {
        let _ = writeln!(
            out,
            "{:.3},{:.3}",
            a.at_ms as f64 / 1000.0,
            a.session_ms as f64 / 1000.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_relative_times_comments_and_header() {
        let t = parse("# a class\narrival_seconds,session_seconds\n\n12.5, 600 # late\n0,1800\n")
            .expect("valid");
        assert_eq!(
            t.arrivals,
            vec![
                Arrival {
                    at_ms: 0,
                    session_ms: 1_800_000
                },
                Arrival {
                    at_ms: 12_500,
                    session_ms: 600_000
                },
            ]
        );
        assert_eq!(t.start_unix_ms, None);
    }

    #[test]
    fn reads_rfc3339_times_from_the_first_arrival() {
        let t = parse("2026-12-04T09:00:03Z,60\n2026-12-04T09:00:00Z,30\n").expect("valid");
        assert_eq!(t.arrivals[0].at_ms, 0);
        assert_eq!(t.arrivals[1].at_ms, 3000);
        assert_eq!(t.start_unix_ms, Some(1_796_374_800_000));
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases = [
            (
                "0,60\n5,abc\n",
                "line 2, column 2 (session_seconds): `abc` is not a number",
            ),
            (
                "0,60\n\n# x\nsoon,60\n",
                "line 4, column 1 (arrival_seconds): `soon`",
            ),
            ("0,60\n1,2,3\n", "line 2: expected 2 columns"),
            (
                "-1,60\n",
                "line 1, column 1 (arrival_seconds): `-1` must be 0 or more",
            ),
            (
                "0,60\n2026-12-04T09:00:00Z,5\n",
                "line 2, column 1 (arrival_seconds): mixes",
            ),
            (
                "2026-13-04T09:00:00Z,5\n",
                "line 1, column 1 (arrival_seconds): `2026-13-04T09:00:00Z` is not an RFC 3339",
            ),
            ("0,NaN\n", "line 1, column 2 (session_seconds)"),
            (
                "# nothing\n",
                "no arrivals (a host records a session when its ticket expires",
            ),
            (
                "arrival_seconds,session_seconds\n",
                "fetch /apps/APP/trace.csv again",
            ),
        ];
        for (text, want) in cases {
            let got = parse(text).expect_err(text).to_string();
            assert!(
                got.starts_with(want) || got.contains(want),
                "{text:?}: {got}"
            );
        }
    }

    #[test]
    fn written_traces_read_back() {
        let rows = [(1_796_374_800_000, 1_800_000), (1_796_374_812_500, 600_250)];
        let t = parse(&write_unix(rows)).expect("valid");
        assert_eq!(t.start_unix_ms, Some(1_796_374_800_000));
        assert_eq!(
            t.arrivals[1],
            Arrival {
                at_ms: 12_500,
                session_ms: 600_250
            }
        );
        let again = parse(&write_relative(&t.arrivals)).expect("valid");
        assert_eq!(again.arrivals, t.arrivals);
    }
}
