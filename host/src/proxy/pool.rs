//! Keep-alive TCP connections to the pods.
//!
//! A user connection keeps the pod connection it last used (see
//! [`super::connection`]), so consecutive requests of one user connection go
//! out on the same socket with no lookup at all. When the user connection
//! ends, or turns to another pod, its pod connection is parked here for
//! the next user connection of the same thread.
//!
//! Idle connections are kept per thread: a socket reports readiness to
//! the runtime that registered it, so a connection used from another edge
//! thread would need a cross-thread wake-up for every response (measured:
//! twice the p99 at 256 connections).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpStream;

/// Connection pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Backend dial timeout (k8sTicket: 5 s).
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Most idle connections kept per pod, per thread.
    pub max_idle_per_host: usize,
}

/// Why no connection to a pod could be had.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The TCP connect failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The pod.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// The TCP connect did not finish within the dial timeout.
    #[error("connecting to {addr}: timed out after {timeout:?}")]
    Timeout {
        /// The pod.
        addr: SocketAddr,
        /// The dial timeout.
        timeout: Duration,
    },
}

/// Is a connection that sat idle still open? A close (or stray bytes) sent
/// by the pod meanwhile has made the socket readable; an open, quiet one
/// is not, and tokio answers that from its readiness state without a
/// system call.
pub fn is_open(stream: &TcpStream) -> bool {
    matches!(stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// Moves the connections idle for `timeout` or longer from `list` (oldest
/// first, as parked) to `into`, to be closed outside the pool's lock.
fn take_expired(list: &mut Vec<Idle>, now: Instant, timeout: Duration, into: &mut Vec<Idle>) {
    let keep_from = list
        .iter()
        .position(|i| now.duration_since(i.since) < timeout)
        .unwrap_or(list.len());
    into.extend(list.drain(..keep_from));
}

/// Idle connections by (the thread whose runtime they belong to, pod).
type IdleKey = (ThreadId, SocketAddr);

struct IdleMap {
    by_addr: HashMap<IdleKey, Vec<Idle>>,
    last_sweep: Instant,
}

/// How often idle connections of every pod are checked for expiry (so a
/// deleted pod's connections do not linger): on a checkin at most this
/// often, and by the edge's timer ([`Pool::sweep`]) when nothing is parked.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Idle keep-alive connections to the pods, shared by all user
/// connections; its lock is taken when a user connection starts using a
/// pod or ends, never per request.
pub struct Pool {
    settings: PoolSettings,
    idle: Mutex<IdleMap>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// An empty pool.
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            idle: Mutex::new(IdleMap {
                by_addr: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        })
    }

    /// An open idle connection to `addr` of this thread, the most recently
    /// parked first.
    pub fn checkout(&self, addr: SocketAddr) -> Option<TcpStream> {
        let now = Instant::now();
        let key = (thread::current().id(), addr);
        let mut closed = Vec::new();
        let found = {
            let mut idle = self.idle.lock();
            let list = idle.by_addr.get_mut(&key)?;
            take_expired(list, now, self.settings.idle_timeout, &mut closed);
            let mut found = None;
            while let Some(i) = list.pop() {
                if is_open(&i.stream) {
                    found = Some(i.stream);
                    break;
                }
                closed.push(i);
            }
            if list.is_empty() {
                idle.by_addr.remove(&key);
            }
            found
        };
        // Closing sockets outside the lock.
        drop(closed);
        found
    }

    /// Parks an idle connection to `addr` (of this thread's runtime), or
    /// drops it when the pod already has enough idle ones.
    pub fn checkin(&self, addr: SocketAddr, stream: TcpStream) {
        if self.settings.max_idle_per_host == 0 || !is_open(&stream) {
            return;
        }
        let now = Instant::now();
        let mut dropped = Vec::new();
        {
            let mut idle = self.idle.lock();
            if now.duration_since(idle.last_sweep) >= SWEEP_EVERY {
                self.take_all_expired(&mut idle, now, &mut dropped);
            }
            let list = idle
                .by_addr
                .entry((thread::current().id(), addr))
                .or_default();
            let idle = Idle { stream, since: now };
            if list.len() < self.settings.max_idle_per_host {
                list.push(idle);
            } else {
                dropped.push(idle);
            }
        }
        drop(dropped);
    }

    /// Closes the connections of every pod and thread idle for the idle
    /// timeout or longer. The edge runs it every [`SWEEP_EVERY`]: without
    /// it, connections parked when the last users left would stay open
    /// until the next checkin, however long that is.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut dropped = Vec::new();
        self.take_all_expired(&mut self.idle.lock(), now, &mut dropped);
        // Closing sockets outside the lock.
        drop(dropped);
    }

    fn take_all_expired(&self, idle: &mut IdleMap, now: Instant, into: &mut Vec<Idle>) {
        idle.last_sweep = now;
        let timeout = self.settings.idle_timeout;
        idle.by_addr.retain(|_, list| {
            take_expired(list, now, timeout, into);
            !list.is_empty()
        });
    }

    /// A new connection to `addr` (dial timeout applied).
    pub async fn dial(&self, addr: SocketAddr) -> Result<TcpStream, DialError> {
        let timeout = self.settings.connect_timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(DialError::Connect { addr, source }),
            Err(_) => return Err(DialError::Timeout { addr, timeout }),
        };
        // Small requests and responses: do not wait to coalesce.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Idle connections parked for `addr` on this thread (for tests).
    #[cfg(test)]
    fn idle_count(&self, addr: SocketAddr) -> usize {
        self.idle
            .lock()
            .by_addr
            .get(&(thread::current().id(), addr))
            .map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn settings(max_idle: usize) -> PoolSettings {
        PoolSettings {
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            max_idle_per_host: max_idle,
        }
    }

    /// A listener that keeps every accepted socket until told to close them.
    async fn pod() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
        (addr, rx)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn parked_connections_are_reused_and_bounded() {
        let (addr, _accepted) = pod().await;
        let pool = Pool::new(settings(2));
        assert!(pool.checkout(addr).is_none());
        for _ in 0..3 {
            let s = pool.dial(addr).await.expect("dial");
            pool.checkin(addr, s);
        }
        assert_eq!(pool.idle_count(addr), 2, "at most max_idle_per_host");
        assert!(pool.checkout(addr).is_some());
        assert!(pool.checkout(addr).is_some());
        assert!(pool.checkout(addr).is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_sweep_closes_expired_connections_with_no_checkin() {
        let (addr, mut accepted) = pod().await;
        let pool = Pool::new(PoolSettings {
            idle_timeout: Duration::from_millis(50),
            ..settings(4)
        });
        let s = pool.dial(addr).await.expect("dial");
        pool.checkin(addr, s);
        let mut server_side = accepted.recv().await.expect("accepted");
        pool.sweep();
        assert_eq!(pool.idle_count(addr), 1, "not expired yet");
        tokio::time::sleep(Duration::from_millis(80)).await;
        pool.sweep();
        assert_eq!(pool.idle_count(addr), 0);
        // The pod sees the close: the socket is gone, not only forgotten.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut server_side, &mut buf),
        )
        .await
        .expect("closed in time")
        .expect("read");
        assert_eq!(n, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_the_pod_closed_is_not_handed_out() {
        let (addr, mut accepted) = pod().await;
        let pool = Pool::new(settings(4));
        let s = pool.dial(addr).await.expect("dial");
        pool.checkin(addr, s);
        let mut server_side = accepted.recv().await.expect("accepted");
        server_side.shutdown().await.expect("shutdown");
        drop(server_side);
        // Let the reactor see the close.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.checkout(addr).is_none());
        assert_eq!(pool.idle_count(addr), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn expired_connections_are_closed() {
        let (addr, _accepted) = pod().await;
        let pool = Pool::new(PoolSettings {
            idle_timeout: Duration::from_millis(20),
            ..settings(4)
        });
        let s = pool.dial(addr).await.expect("dial");
        pool.checkin(addr, s);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(pool.checkout(addr).is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_pod_is_an_error_not_a_hang() {
        // Bind and drop: nothing listens on that port any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let err = Pool::new(settings(1))
            .dial(addr)
            .await
            .expect_err("refused");
        assert!(err.to_string().starts_with("connecting to"), "{err}");
    }
}
