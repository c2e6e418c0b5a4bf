//! wicket's own view of the queue's order, read back from its log
//! (`RUST_LOG=wicket::order=debug`): when each user got in line (and as
//! which waiter: waiter ids are given in order of joining), when wicket
//! granted each waiter its ticket, and when the edge thread holding the
//! user's socket wrote it there. Set beside what the client saw, this
//! tells wicket's order of granting apart from the delays between a grant
//! and the user reading it (the edge thread being scheduled, the client's
//! own event loop).
//!
//! Also reads the edge threads' scheduler statistics from /proc: how long
//! they ran and how long they waited, runnable, for a CPU.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::Context;

/// The log's target for these events (`wicket::app::ORDER_TARGET`).
const TARGET: &str = " wicket::order: ";

/// One user's path through wicket's queue, times in unix µs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Waiter id: wicket's order of joining.
    pub waiter: u64,
    /// Got in line.
    pub joined: i64,
    /// Granted the ticket.
    pub granted: i64,
    /// The ticket written to the user's socket, and by which edge thread.
    pub written: Option<(i64, String)>,
}

/// The order events of one wicket log.
#[derive(Debug, Default)]
pub struct OrderLog {
    /// By client address: (time, waiter) of each "in line".
    joins: HashMap<IpAddr, Vec<(i64, u64)>>,
    /// By waiter: (time, pod, uid) of its (last) grant.
    grants: HashMap<u64, (i64, String, String)>,
    /// By (pod, uid): (time, thread) of each "ticket sent".
    written: HashMap<(String, String), Vec<(i64, String)>>,
}

impl OrderLog {
    /// Reads the order events of the log at `path`.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
        Ok(Self::parse(&String::from_utf8_lossy(&text)))
    }

    /// The order events in a log's text (other lines are skipped).
    pub fn parse(text: &str) -> Self {
        let mut log = Self::default();
        for line in text.lines() {
            let Some((head, event)) = line.split_once(TARGET) else {
                continue;
            };
            let Some(at) = head.split_whitespace().next().and_then(unix_us) else {
                continue;
            };
            let (kind, fields) = event.split_once(" app=").unwrap_or((event, ""));
            let f = fields_of(fields);
            let get = |k: &str| f.get(k).copied();
            match kind {
                "in line" => {
                    let client = get("client")
                        .and_then(|c| c.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok());
                    if let (Some(client), Some(w)) = (client, get("waiter").and_then(num)) {
                        log.joins.entry(client).or_default().push((at, w));
                    }
                }
                "granted" => {
                    if let (Some(w), Some(pod), Some(uid)) =
                        (get("waiter").and_then(num), get("pod"), get("uid"))
                    {
                        log.grants.insert(w, (at, pod.to_owned(), uid.to_owned()));
                    }
                }
                "ticket sent" => {
                    if let (Some(pod), Some(uid)) = (get("pod"), get("uid")) {
                        let thread = get("thread").unwrap_or("?").to_owned();
                        log.written
                            .entry((pod.to_owned(), uid.to_owned()))
                            .or_default()
                            .push((at, thread));
                    }
                }
                _ => {}
            }
        }
        log
    }

    /// The path of the user from `client` who waited in line and got the
    /// ticket `(pod, uid)`: None if it did not wait (served at once) or
    /// the log does not have it.
    pub fn path(&self, client: IpAddr, pod: &str, uid: &str) -> Option<Path> {
        // The client's last place in line granted this very ticket.
        let (joined, waiter) = self.joins.get(&client)?.iter().rev().find(|(_, w)| {
            self.grants
                .get(w)
                .is_some_and(|(_, p, u)| p == pod && u == uid)
        })?;
        let (granted, ..) = self.grants.get(waiter)?;
        let written = self
            .written
            .get(&(pod.to_owned(), uid.to_owned()))
            .and_then(|w| w.iter().find(|(t, _)| t >= granted).cloned());
        Some(Path {
            waiter: *waiter,
            joined: *joined,
            granted: *granted,
            written,
        })
    }
}

/// `key=value` fields of a tracing line; values may be quoted.
fn fields_of(s: &str) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    let mut s = s;
    // The first field is the app's value (its key was split off).
    let mut key = "app";
    loop {
        let (value, after) = if let Some(q) = s.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, a)) => (v, a),
                None => (q, ""),
            }
        } else {
            s.split_once(' ').unwrap_or((s, ""))
        };
        out.insert(key, value);
        let after = after.trim_start();
        let Some((k, v)) = after.split_once('=') else {
            break;
        };
        key = k;
        s = v;
    }
    out
}

fn num(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// `2026-12-05T00:32:41.123456Z` (tracing's default timestamps) in unix µs.
/// By hand: one fixed format, not worth a date crate in the bench tool.
fn unix_us(ts: &str) -> Option<i64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    // Fraction to µs (any number of digits).
    let digits: String = frac.chars().chain("000000".chars()).take(6).collect();
    let us: i64 = digits.parse().ok()?;
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000_000 + sec * 1_000_000 + us)
}

/// CPU time and run-queue wait (ns) of process `pid`'s threads whose name
/// starts with `prefix`, summed (from /proc/<pid>/task/*/schedstat).
pub fn sched_ns(pid: u32, prefix: &str) -> Option<(u64, u64)> {
    let mut sum = (0u64, 0u64);
    let mut found = false;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
        let mut f = stat.split_whitespace().map(|v| v.parse::<u64>().ok());
        sum.0 += f.next()??;
        sum.1 += f.next()??;
        found = true;
    }
    found.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(unix_us("1970-01-01T00:00:00.000000Z"), Some(0));
        assert_eq!(unix_us("1970-01-02T00:00:01.5Z"), Some(86_401_500_000));
        assert_eq!(
            unix_us("2026-12-05T00:32:41.123456Z"),
            Some(1_796_430_761_123_456)
        );
        assert_eq!(unix_us("garbage"), None);
    }

    #[test]
    fn a_users_path_from_the_log() {
        let log = "\
2026-12-05T00:00:01.000000Z DEBUG wicket::order: in line app=\"a\" waiter=7 client=Some(127.0.2.5)
2026-12-05T00:00:01.100000Z  WARN wicket::other: unrelated
2026-12-05T00:00:02.000000Z DEBUG wicket::order: granted app=a waiter=7 pod=a-x uid=u1
2026-12-05T00:00:02.004000Z DEBUG wicket::order: ticket sent app=\"a\" pod=a-x uid=u1 thread=\"wicket-edge-1\"
";
        let l = OrderLog::parse(log);
        let base = unix_us("2026-12-05T00:00:01.000000Z").expect("ts");
        let ip: IpAddr = "127.0.2.5".parse().expect("ip");
        assert_eq!(
            l.path(ip, "a-x", "u1"),
            Some(Path {
                waiter: 7,
                joined: base,
                granted: base + 1_000_000,
                written: Some((base + 1_004_000, "wicket-edge-1".into())),
            })
        );
        // Another ticket, or another client: not this user's path.
        assert_eq!(l.path(ip, "a-x", "u2"), None);
        assert_eq!(l.path("127.0.2.6".parse().expect("ip"), "a-x", "u1"), None);
    }
}
