//! Where tickets live beyond one process: the store interface and its two
//! implementations. The in-memory store (the default) shares nothing: the
//! app's serverlist is the whole truth, as in a single replica. The Redis
//! store shares tickets between replicas; each replica keeps validating
//! requests from its own serverlist, which mirrors the store (see
//! [`crate::app`]), so no proxied request waits for the store.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use crate::config::StoreConfig;
use crate::provider::BoxFuture;
use crate::state::TokenDigest;

pub use memory::MemoryStore;
pub use redis::RedisStore;

/// A ticket as the store holds it: never the token, only its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTicket {
    /// Pod name.
    pub pod: String,
    /// Ticket uid.
    pub uid: String,
    /// SHA-256 of the token.
    pub digest: TokenDigest,
    /// Last use on any replica, unix milliseconds.
    pub last_use_ms: i64,
}

/// The store's answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The slot is the ticket's.
    Granted,
    /// The pod holds `held` tickets already (through any replica): at or
    /// over its capacity. The replica decides again.
    Full {
        /// Tickets the pod holds.
        held: u32,
    },
    /// The uid is taken on that pod (two replicas drew the same one).
    Taken,
}

/// A replica's connected waiting users, for the queue shared by every
/// replica: one first-come-first-served order by when each asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueReport {
    /// This replica's id (random, per process and app).
    pub replica: String,
    /// Its connected waiting users in order: (waiter id, when they asked,
    /// unix ms).
    pub waiters: Vec<(u64, i64)>,
    /// Now, unix ms.
    pub now_ms: i64,
    /// A replica not heard of for this long is gone: its waiters no longer
    /// count (ms).
    pub stale_ms: i64,
}

/// One replica's round trip of an interval (see [`Store::sync`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// For each reported waiter, in order: how many connected waiting
    /// users of other replicas asked before them.
    pub ahead: Vec<u64>,
    /// Connected waiting users of other replicas.
    pub others_waiting: u64,
    /// The store's ticket version (changes whenever a ticket is claimed or
    /// freed).
    pub version: i64,
    /// Every ticket of the app, when the version was not the known one.
    pub tickets: Option<Vec<StoredTicket>>,
}

/// A use of a ticket to write to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// Pod name.
    pub pod: String,
    /// Ticket uid.
    pub uid: String,
    /// When, unix milliseconds.
    pub at_ms: i64,
}

/// A store round trip that failed (the store is unreachable, timed out or
/// answered something unexpected).
#[derive(Debug, thiserror::Error)]
#[error("ticket store: {op}: {reason}")]
pub struct StoreError {
    /// What was asked (`claim`, `free`, `expire`, `sync`).
    pub op: &'static str,
    /// Why it failed.
    pub reason: String,
}

/// Where tickets are kept. Every call is one round trip at most; none is
/// made per proxied request.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Do other processes see what this store holds? False for the
    /// in-memory store: the app then never calls the store at all.
    fn is_shared(&self) -> bool;

    /// Claims a slot on `ticket.pod` for a new ticket, atomically checking
    /// that the pod holds fewer than `capacity` tickets.
    fn claim<'a>(
        &'a self,
        app: &'a str,
        ticket: &'a StoredTicket,
        capacity: u32,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Frees tickets (pod, uid) at once. Returns how many existed.
    fn free<'a>(
        &'a self,
        app: &'a str,
        tickets: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<u32, StoreError>>;

    /// Frees those of `tickets` whose last use on any replica is older
    /// than `cutoff_ms` (unix ms). Returns how many were freed.
    fn expire<'a>(
        &'a self,
        app: &'a str,
        tickets: &'a [(String, String)],
        cutoff_ms: i64,
    ) -> BoxFuture<'a, Result<u32, StoreError>>;

    /// Writes `touches` (later uses win) and this replica's waiting users,
    /// and reads the version, where the reported waiters stand in the
    /// shared queue, and every ticket unless the version is `known`.
    fn sync<'a>(
        &'a self,
        app: &'a str,
        touches: &'a [Touch],
        queue: &'a QueueReport,
        known: Option<i64>,
    ) -> BoxFuture<'a, Result<Synced, StoreError>>;
}

/// A store with the intervals of the replicas' round trips: what each app
/// is given (see [`crate::app::App::share`]).
#[derive(Debug, Clone)]
pub struct Sharing {
    /// The store.
    pub store: Arc<dyn Store>,
    /// `store.refresh_ms`.
    pub refresh: Duration,
    /// `store.resync_ms`.
    pub resync: Duration,
}

impl Sharing {
    /// Nothing shared: the in-memory store.
    pub fn memory() -> Self {
        Self {
            store: Arc::new(MemoryStore),
            refresh: Duration::from_secs(1),
            resync: Duration::from_secs(1),
        }
    }

    /// Opens the store `[store]` names (see [`open`]).
    pub async fn open(config: &StoreConfig) -> anyhow::Result<Self> {
        Ok(Self {
            store: open(config).await?,
            refresh: Duration::from_millis(config.refresh_ms),
            resync: Duration::from_millis(config.resync_ms),
        })
    }
}

/// Opens the store the `[store]` section names. For Redis, connects once:
/// a URL that does not parse or a server that does not answer is an error
/// naming `store.url`.
pub async fn open(config: &StoreConfig) -> anyhow::Result<Arc<dyn Store>> {
    match config.kind {
        crate::config::StoreKind::Memory => Ok(Arc::new(MemoryStore)),
        crate::config::StoreKind::Redis => Ok(Arc::new(RedisStore::connect(config).await?)),
    }
}

#[cfg(test)]
#[path = "../../tests/redis/mod.rs"]
mod redis_server;

#[cfg(test)]
mod tests;
