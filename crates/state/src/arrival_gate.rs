//! Which joins count as arrivals: at most an allowance per client in each
//! whole UTC minute, so that one client that joins and leaves in a loop
//! (each new socket without a resume id) cannot push the arrival rate that
//! policies scale on beyond what its real users could be.
//!
//! The choices, and why:
//! - **Per client (address or IPv6 /64), not per browser.** A browser's
//!   `wicket-bind` cookie would tell users behind one address apart, but a
//!   script that churns sends no cookie, or a new one each time: it bounds
//!   nothing. Its address it cannot change at will.
//! - **The allowance is the client's `places_per_client`.** As many users
//!   as one address may have waiting at once may also all arrive within one
//!   minute (a class of 60 behind one NAT address, with the limits sized
//!   for it as docs/edge.md says, all count); joins past that in the same
//!   minute are the same users again, or users the client could not give a
//!   place anyway. An allowance of 0 (the limit off) counts every join.
//! - **Whole UTC minutes, the buckets of [`Arrivals`](crate::Arrivals).**
//!   Every per-minute count a policy sees then holds at most the allowance
//!   from one client (and every hour 60 times it), and expiry is free: the
//!   table is emptied when the minute turns.
//!
//! Memory: one entry per client that joined in the current minute, at most
//! [`MAX_CLIENTS`]. Clients past that in the same minute share one
//! allowance, so a client holding many networks cannot grow the table (the
//! count it then shows is at least [`MAX_CLIENTS`] a minute anyway).

use std::collections::HashMap;
use std::net::IpAddr;

/// Most clients tracked within one minute (per app).
pub const MAX_CLIENTS: usize = 16_384;

/// The joins counted in the current minute, per client.
#[derive(Debug, Default)]
pub struct ArrivalGate {
    /// The minute counted (unix seconds / 60).
    minute: u64,
    /// Joins counted this minute, per client.
    counted: HashMap<IpAddr, u32>,
    /// Joins counted this minute of the clients past [`MAX_CLIENTS`].
    overflow: u32,
}

impl ArrivalGate {
    /// Does a join of `client` at `unix_seconds`, allowed `allowance`
    /// arrivals a minute (0: no bound), count as an arrival? If so it is
    /// counted against the allowance.
    pub fn admit(&mut self, client: IpAddr, allowance: u32, unix_seconds: u64) -> bool {
        if allowance == 0 {
            return true;
        }
        let minute = unix_seconds / 60;
        if minute > self.minute {
            // A clock that goes back counts in the newest minute instead
            // (never more than the allowance either way).
            self.minute = minute;
            let was = self.counted.len();
            self.counted.clear();
            // Room for as many as the last minute had: a burst's table
            // does not stay allocated.
            self.counted.shrink_to(was);
            self.overflow = 0;
        }
        let full = self.counted.len() >= MAX_CLIENTS;
        let n = match self.counted.get_mut(&client) {
            Some(n) => n,
            None if full => &mut self.overflow,
            None => self.counted.entry(client).or_insert(0),
        };
        if *n >= allowance {
            return false;
        }
        *n += 1;
        true
    }

    /// Clients tracked now.
    pub fn clients(&self) -> usize {
        self.counted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T10:00:00Z, a whole minute.
    const T: u64 = 1_796_378_400;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn one_client_churning_counts_its_allowance_a_minute() {
        let mut g = ArrivalGate::default();
        let a = ip("192.0.2.1");
        let counted = (0..200).filter(|i| g.admit(a, 32, T + i / 10)).count();
        assert_eq!(counted, 32, "200 joins within 20 s");
        // The next minute it has a new allowance, and no more.
        let counted = (0..200).filter(|_| g.admit(a, 32, T + 60)).count();
        assert_eq!(counted, 32);
        // Without a bound every join counts.
        assert!((0..200).all(|_| g.admit(a, 0, T + 60)));
    }

    #[test]
    fn many_users_behind_one_address_and_distinct_clients_all_count() {
        let mut g = ArrivalGate::default();
        // A class of 60 behind one address, the limit sized for it.
        let school = ip("198.51.100.7");
        assert!((0..60).all(|_| g.admit(school, 60, T + 5)));
        assert!(!g.admit(school, 60, T + 6), "the 61st join of the minute");
        // Other clients are not held up by it.
        for i in 0..250u8 {
            let c = IpAddr::from([203, 0, 113, i]);
            assert!(g.admit(c, 1, T + 7), "{c}");
            assert!(!g.admit(c, 1, T + 8), "{c} again");
        }
    }

    #[test]
    fn entries_expire_when_the_minute_turns_and_the_table_is_capped() {
        let mut g = ArrivalGate::default();
        for i in 0..MAX_CLIENTS as u32 + 100 {
            let c = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) << 64));
            g.admit(c, 2, T);
        }
        assert_eq!(g.clients(), MAX_CLIENTS, "capped");
        // Clients past the cap share one allowance.
        let late = IpAddr::from(std::net::Ipv6Addr::from(u128::MAX));
        assert!(!g.admit(late, 2, T), "the shared allowance is spent");
        // The next minute starts empty: everyone counts again.
        assert!(g.admit(late, 2, T + 60));
        assert_eq!(g.clients(), 1);
        assert!(g.counted.capacity() >= 1);
        // The burst's table was not kept: room for at most last minute's.
        assert!(g.admit(ip("192.0.2.1"), 2, T + 120));
        assert!(g.counted.capacity() < 64, "{}", g.counted.capacity());
    }

    #[test]
    fn a_clock_that_goes_back_counts_in_the_newest_minute() {
        let mut g = ArrivalGate::default();
        let a = ip("192.0.2.1");
        assert!(g.admit(a, 1, T + 600));
        assert!(!g.admit(a, 1, T), "not a fresh allowance for an old minute");
        assert!(g.admit(a, 1, T + 660));
    }
}
