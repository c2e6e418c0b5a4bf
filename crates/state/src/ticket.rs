//! Tickets: an exclusive slot of one user on one pod, and its secret token.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::backend::Backend;

/// A ticket's secret: 128 bits from a CSPRNG, shown as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; 16]);

/// A string that is not a well-formed token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed ticket token")]
pub struct TokenParseError;

impl Token {
    /// A fresh random token (`rand`'s thread RNG is a reseeding CSPRNG).
    pub fn generate() -> Self {
        Self(rand::random())
    }

    /// Parses the hex form (32 digits, either case: the same secret);
    /// anything else (length, characters) is refused.
    pub fn parse(s: &str) -> Result<Self, TokenParseError> {
        let mut out = [0u8; 16];
        if s.len() != 32 {
            return Err(TokenParseError);
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| TokenParseError)?;
        Ok(Self(out))
    }

    /// Compares in constant time, so response timing leaks nothing about the
    /// secret.
    pub fn matches(&self, other: &Token) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The token's SHA-256: what a shared store keeps instead of the token
    /// (whoever reads the store cannot use a ticket from it).
    pub fn digest(&self) -> TokenDigest {
        Sha256::digest(self.0).into()
    }
}

/// SHA-256 of a [`Token`].
pub type TokenDigest = [u8; 32];

/// What opens a ticket: the token itself (issued here) or only its digest
/// (issued by another replica and learnt from the shared store).
#[derive(Debug, Clone, Copy)]
enum Secret {
    Token(Token),
    Digest(TokenDigest),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        // Cannot fail: the buffer is exactly twice the input.
        let _ = hex::encode_to_slice(self.0, &mut buf);
        f.write_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets into logs.
        f.write_str("Token(…)")
    }
}

/// Shards of a ticket's count of requests in flight.
const OPEN_SHARDS: usize = 8;

/// One shard of the count, on a cache line of its own: the edge threads
/// serving one ticket's connections each count on their own line, so a
/// request costs no cache-line transfer between cores.
#[derive(Debug, Default)]
#[repr(align(64))]
struct OpenShard(AtomicU32);

/// The shard the calling thread counts on (threads are spread round-robin).
fn open_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % OPEN_SHARDS;
    }
    SHARD.with(|s| *s)
}

/// A live ticket. Shared (`Arc`) between the serverlist and the proxy's
/// in-flight requests; only the atomics change after issue.
#[derive(Debug)]
pub struct Ticket {
    secret: Secret,
    uid: String,
    backend: Arc<Backend>,
    origin: Instant,
    /// Milliseconds since `origin` of the last use.
    last_used: AtomicU64,
    /// Proxied requests/connections in flight (a WebSocket counts while
    /// open), counted per thread.
    open: [OpenShard; OPEN_SHARDS],
    /// Cleared when the serverlist lets go of the ticket (freed, expired,
    /// its pod or app gone): a connection that remembers the ticket sees
    /// at once that it no longer opens anything.
    live: AtomicBool,
    /// Milliseconds since `origin` of the last use written to a shared
    /// store (unused with the in-memory store).
    flushed: AtomicU64,
    /// When the ticket was issued (or, for a ticket issued by another
    /// replica, first seen here).
    pub issued_at: Instant,
}

impl Ticket {
    pub(super) fn new(
        token: Token,
        uid: String,
        backend: Arc<Backend>,
        origin: Instant,
        now: Instant,
    ) -> Self {
        Self::with_secret(Secret::Token(token), uid, backend, origin, now)
    }

    /// A ticket issued by another replica, known here by its digest only.
    pub(super) fn mirrored(
        digest: TokenDigest,
        uid: String,
        backend: Arc<Backend>,
        origin: Instant,
        now: Instant,
    ) -> Self {
        Self::with_secret(Secret::Digest(digest), uid, backend, origin, now)
    }

    fn with_secret(
        secret: Secret,
        uid: String,
        backend: Arc<Backend>,
        origin: Instant,
        now: Instant,
    ) -> Self {
        let t = Self {
            secret,
            uid,
            backend,
            origin,
            last_used: AtomicU64::new(0),
            open: Default::default(),
            live: AtomicBool::new(true),
            flushed: AtomicU64::new(0),
            issued_at: now,
        };
        t.touch_at(now);
        t
    }

    /// The digest of the ticket's token.
    pub fn digest(&self) -> TokenDigest {
        match self.secret {
            Secret::Token(t) => t.digest(),
            Secret::Digest(d) => d,
        }
    }

    /// The last use (now while a request or connection is open) if it is
    /// at least `gap` newer than the last one written to the shared store,
    /// as milliseconds since the serverlist's origin. The gap keeps busy
    /// tickets from being written on every round trip: expiry needs the
    /// last use only to well within the expiry time.
    pub fn unflushed_use(&self, now: Instant, gap: Duration) -> Option<u64> {
        let last = if self.open_count() > 0 {
            now.saturating_duration_since(self.origin).as_millis() as u64
        } else {
            self.last_used.load(Ordering::Relaxed)
        };
        let flushed = self.flushed.load(Ordering::Relaxed);
        (last > flushed && last - flushed >= gap.as_millis() as u64).then_some(last)
    }

    /// Records that uses up to `ms` (since the origin) are in the store.
    pub fn mark_flushed(&self, ms: u64) {
        self.flushed.fetch_max(ms, Ordering::Relaxed);
    }

    /// The per-browser id that tells several tickets of one browser apart.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Where the ticket's requests go.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Does `token` open this ticket? Constant time.
    pub fn accepts(&self, token: &Token) -> bool {
        match &self.secret {
            Secret::Token(t) => t.matches(token),
            // Hashing first: the comparison still takes the same time
            // whatever the bytes.
            Secret::Digest(d) => bool::from(d.ct_eq(&token.digest())),
        }
    }

    /// Records a use at `now`.
    pub fn touch_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        // Busy tickets are touched many times per millisecond, often from
        // several edge threads: a plain load spares the read-modify-write
        // (and the cache-line transfer it costs) when nothing changes.
        if ms > self.last_used.load(Ordering::Relaxed) {
            self.last_used.fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// Marks a proxied request as started; the ticket cannot expire until the
    /// guard is dropped (which counts as a use).
    pub fn open(&self) -> TicketGuard<'_> {
        let shard = open_shard();
        self.open[shard].0.fetch_add(1, Ordering::Relaxed);
        TicketGuard {
            ticket: self,
            shard,
        }
    }

    /// Still held by the serverlist (not freed, expired, or gone with its
    /// pod or app)?
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The serverlist lets go of the ticket.
    pub(super) fn revoke(&self) {
        self.live.store(false, Ordering::Release);
    }

    /// True when nothing uses the ticket and its last use is at least `expiry` ago.
    pub fn is_expired(&self, now: Instant, expiry: Duration) -> bool {
        if self.open_count() > 0 {
            return false;
        }
        let now_ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        now_ms.saturating_sub(self.last_used.load(Ordering::Relaxed)) >= expiry.as_millis() as u64
    }

    /// Connections/requests currently open on this ticket.
    pub fn open_count(&self) -> u32 {
        self.open
            .iter()
            .map(|s| s.0.load(Ordering::Acquire))
            .fold(0, u32::wrapping_add)
    }
}

/// Keeps a ticket alive while a proxied request or connection is in flight.
#[derive(Debug)]
pub struct TicketGuard<'a> {
    ticket: &'a Ticket,
    shard: usize,
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        self.ticket.touch_at(Instant::now());
        // The shard it was counted on, whatever thread drops it.
        self.ticket.open[self.shard]
            .0
            .fetch_sub(1, Ordering::Release);
    }
}

/// What a user receives when a ticket is issued: enough to build the
/// `tkn#<token>@<pod>@<uid>` message and the cookie.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The secret.
    pub token: Token,
    /// Pod name.
    pub pod: String,
    /// Ticket uid.
    pub uid: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let t = Token::generate();
        let s = t.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(Token::parse(&s), Ok(t));
        for bad in [
            "",
            "abc",
            &"g".repeat(32),
            &"a".repeat(33),
            &"é".repeat(16),
            "../../etc/passwd",
        ] {
            assert_eq!(Token::parse(bad), Err(TokenParseError), "{bad:?}");
        }
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(Token::generate(), Token::generate());
    }

    #[test]
    fn open_requests_keep_a_ticket_from_expiring() {
        let origin = Instant::now();
        let backend = Arc::new(Backend::new(([127, 0, 0, 1], 80).into(), "/"));
        let t = Ticket::new(Token::generate(), "u".into(), backend, origin, origin);
        let later = origin + Duration::from_secs(10);
        let expiry = Duration::from_secs(3);
        let guard = t.open();
        let other = std::thread::scope(|s| s.spawn(|| t.open()).join().expect("thread"));
        assert_eq!(t.open_count(), 2);
        assert!(!t.is_expired(later, expiry));
        drop(guard);
        drop(other);
        assert_eq!(t.open_count(), 0);
        // Dropping a guard counts as a use.
        assert!(!t.is_expired(Instant::now() + Duration::from_secs(1), expiry));
        assert!(t.is_expired(Instant::now() + Duration::from_secs(4), expiry));
        assert!(t.is_live());
        t.revoke();
        assert!(!t.is_live());
    }

    #[test]
    fn debug_hides_secret() {
        let t = Token::generate();
        assert!(!format!("{t:?}").contains(&t.to_string()));
    }
}
