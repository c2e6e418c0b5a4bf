//! Fairness per client: how many connections, waiting-room sockets and
//! places in line one client may hold, and how many connections the
//! proxy takes at all. Counted per [`client_key`]; a refusal is an answer
//! (429, or 503 when the proxy is full), never a crash.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::state::Ticket;

/// The key a client's limits are counted under, from the address the
/// request came from. The one place that decides who "one client" is:
/// an IPv4 address, or an IPv6 /64 (one subscriber's network; a single
/// host commonly holds a whole /64, so its addresses are one client).
///
/// Behind a load balancer every user arrives from its address: the
/// client's own address must then come from a forwarding field sent by a
/// trusted proxy (`proxy.trusted_proxies`), resolved before this is called.
pub fn client_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Limits per client and for the whole proxy (0: none).
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// User connections the proxy keeps open at once (per process).
    pub max_connections: u32,
    /// User connections one client may keep open at once.
    pub connections_per_client: u32,
    /// Ticket WebSockets and no-JavaScript polls one client may have open
    /// at once.
    pub sockets_per_client: u32,
    /// Places in line one client may hold in one app (connected or away).
    pub places_per_client: u32,
    /// Live tickets one client may hold, over all apps: a new place (or
    /// ticket) is refused while it holds as many.
    pub tickets_per_client: u32,
    /// Places in one app's line, over all clients, per process (see
    /// [`crate::app::Places::line`]): bounds what many addresses together
    /// can make the line (and the policy's view of demand) grow to.
    pub places_per_app: u32,
}

/// Why a connection or socket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The proxy holds `max_connections`.
    #[error("the proxy is full")]
    Full,
    /// The client holds as many as it may.
    #[error("too many from one client")]
    TooMany,
    /// The app's line holds `places_per_app`: not this client's doing, so
    /// 503 (the service cannot take anyone now), not 429.
    #[error("the waiting room is full")]
    LineFull,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    connections: u32,
    sockets: u32,
}

/// What a [`Slot`] holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Connection,
    /// A connection from a trusted proxy: counted only in the total.
    Proxied,
    Socket,
}

/// The counts, shared by every edge thread. Its lock is taken when a
/// connection opens or closes and when a waiting-room socket or poll
/// starts or ends, never per proxied request.
#[derive(Debug)]
pub struct Fairness {
    limits: ClientLimits,
    connections: AtomicU32,
    per_client: Mutex<HashMap<IpAddr, Counts>>,
    /// The tickets given to each client (see [`Fairness::may_take_ticket`]).
    tickets: Mutex<Tickets>,
}

/// The tickets given to clients; ended ones are forgotten when their
/// client asks again, and all of them when the map has doubled.
#[derive(Debug, Default)]
struct Tickets {
    by_client: HashMap<IpAddr, Vec<Arc<Ticket>>>,
    /// Clients in the map after the last sweep.
    swept: usize,
}

/// One counted connection or socket; dropping it gives the place back.
#[derive(Debug)]
pub struct Slot {
    fairness: Arc<Fairness>,
    client: IpAddr,
    kind: Kind,
}

fn within(n: u32, limit: u32) -> bool {
    limit == 0 || n < limit
}

impl Fairness {
    /// Counts under `limits`.
    pub fn new(limits: ClientLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            connections: AtomicU32::new(0),
            per_client: Mutex::new(HashMap::new()),
            tickets: Mutex::new(Tickets::default()),
        })
    }

    /// The limits.
    pub fn limits(&self) -> ClientLimits {
        self.limits
    }

    /// User connections open now.
    pub fn open_connections(&self) -> u32 {
        self.connections.load(Ordering::Acquire)
    }

    /// Takes a place for a new connection of `client`.
    pub fn connection(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        let total = self.connections.fetch_add(1, Ordering::AcqRel);
        if !within(total, self.limits.max_connections) {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Full);
        }
        let taken = self.take(client, Kind::Connection);
        if taken.is_err() {
            self.connections.fetch_sub(1, Ordering::AcqRel);
        }
        taken
    }

    /// Takes a place for a new connection from a trusted proxy, which many
    /// users share: only `max_connections` applies to it.
    pub fn proxied_connection(self: &Arc<Self>) -> Result<Slot, Refusal> {
        let total = self.connections.fetch_add(1, Ordering::AcqRel);
        if !within(total, self.limits.max_connections) {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Full);
        }
        Ok(Slot {
            fairness: Arc::clone(self),
            client: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            kind: Kind::Proxied,
        })
    }

    /// May `client` take a place in line or a ticket? Not while it holds
    /// `tickets_per_client` live tickets: else one client could take every
    /// free slot, one short-lived socket after another. Checked before a
    /// join, so joins of one client at the same moment may each pass (by
    /// at most `sockets_per_client`), and a client's places in line may
    /// each become a ticket.
    pub fn may_take_ticket(&self, client: IpAddr) -> bool {
        let limit = self.limits.tickets_per_client;
        if limit == 0 {
            return true;
        }
        let mut t = self.tickets.lock();
        let Some(held) = t.by_client.get_mut(&client) else {
            return true;
        };
        held.retain(|ticket| ticket.is_live());
        let n = held.len();
        if n == 0 {
            t.by_client.remove(&client);
        }
        within(n as u32, limit)
    }

    /// `client` was given `ticket` (it counts while live).
    pub fn took_ticket(&self, client: IpAddr, ticket: Arc<Ticket>) {
        if self.limits.tickets_per_client == 0 {
            return;
        }
        let mut t = self.tickets.lock();
        t.by_client.entry(client).or_default().push(ticket);
        if t.by_client.len() > (2 * t.swept).max(1024) {
            t.by_client.retain(|_, held| {
                held.retain(|ticket| ticket.is_live());
                !held.is_empty()
            });
            t.swept = t.by_client.len();
        }
    }

    /// Takes a place for a ticket WebSocket or poll of `client`.
    pub fn socket(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        self.take(client, Kind::Socket)
    }

    fn take(self: &Arc<Self>, client: IpAddr, kind: Kind) -> Result<Slot, Refusal> {
        let mut map = self.per_client.lock();
        let c = map.entry(client).or_default();
        let (n, limit) = match kind {
            Kind::Connection => (&mut c.connections, self.limits.connections_per_client),
            // Proxied connections are not counted per client (see `proxied_connection`).
            Kind::Socket | Kind::Proxied => (&mut c.sockets, self.limits.sockets_per_client),
        };
        if !within(*n, limit) {
            if c.connections == 0 && c.sockets == 0 {
                map.remove(&client);
            }
            return Err(Refusal::TooMany);
        }
        *n += 1;
        Ok(Slot {
            fairness: Arc::clone(self),
            client,
            kind,
        })
    }
}

impl Slot {
    /// The tickets of this slot's client (see [`Fairness::may_take_ticket`]).
    pub fn quota(&self) -> Quota {
        Quota {
            fairness: Arc::clone(&self.fairness),
            client: self.client,
        }
    }
}

/// One client's count of live tickets, for the ticket socket and polls.
#[derive(Debug, Clone)]
pub struct Quota {
    fairness: Arc<Fairness>,
    client: IpAddr,
}

impl Quota {
    /// May the client take a place or a ticket now?
    pub fn allows(&self) -> bool {
        self.fairness.may_take_ticket(self.client)
    }

    /// The client was given `ticket`.
    pub fn took(&self, ticket: Arc<Ticket>) {
        self.fairness.took_ticket(self.client, ticket);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let f = &self.fairness;
        match self.kind {
            Kind::Connection => {
                f.connections.fetch_sub(1, Ordering::AcqRel);
            }
            Kind::Proxied => {
                f.connections.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            Kind::Socket => {}
        }
        let mut map = f.per_client.lock();
        if let Some(c) = map.get_mut(&self.client) {
            match self.kind {
                Kind::Connection => c.connections = c.connections.saturating_sub(1),
                Kind::Socket | Kind::Proxied => c.sockets = c.sockets.saturating_sub(1),
            }
            if c.connections == 0 && c.sockets == 0 {
                map.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn one_client_is_an_ipv4_address_or_an_ipv6_network() {
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            client_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn limits_hold_and_places_come_back() {
        let f = Fairness::new(ClientLimits {
            max_connections: 3,
            connections_per_client: 2,
            sockets_per_client: 1,
            places_per_client: 0,
            tickets_per_client: 0,
            places_per_app: 0,
        });
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let a1 = f.connection(a).expect("first");
        let a2 = f.connection(a).expect("second");
        assert_eq!(f.connection(a).err(), Some(Refusal::TooMany));
        let b1 = f.connection(b).expect("another client");
        assert_eq!(f.connection(b).err(), Some(Refusal::Full));
        drop(a1);
        let b2 = f.connection(b).expect("room again");
        let s = f.socket(a).expect("a socket");
        assert_eq!(f.socket(a).err(), Some(Refusal::TooMany));
        drop((a2, b1, b2, s));
        assert!(f.per_client.lock().is_empty(), "nothing left counted");
        assert_eq!(f.connections.load(Ordering::Acquire), 0);
    }
}
