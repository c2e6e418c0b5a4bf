//! The proxy's listening side: one thread per core, each with its own
//! single-threaded runtime and its own `SO_REUSEPORT` socket on the same
//! address. The kernel spreads new connections over the sockets, and a
//! user connection (with its pod connection, see
//! [`super::pool`]) then lives on one thread: no work stealing, no
//! cross-thread wake-ups on the request path.
//!
//! Everything else (the apps' state, the policy, Kubernetes) stays on the
//! main runtime; the edge threads reach it through the same shared,
//! runtime-independent state.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use super::Proxy;

/// Pending connections queued per socket.
const BACKLOG: u32 = 1024;

/// Bound listening sockets, not yet served.
#[derive(Debug)]
pub struct Listeners {
    sockets: Vec<std::net::TcpListener>,
    addr: SocketAddr,
}

impl Listeners {
    /// The address they listen on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// How many edge threads `configured` means: 0 is one per CPU.
pub fn thread_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds `threads` sockets (at least one) to `addr` with `SO_REUSEPORT`.
/// Must be called inside a tokio runtime.
pub fn bind(addr: SocketAddr, threads: usize) -> io::Result<Listeners> {
    let mut sockets = Vec::with_capacity(threads.max(1));
    let mut bound = addr;
    for _ in 0..threads.max(1) {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        // Port 0 picks a port once; the other sockets share it.
        socket.bind(bound)?;
        let listener = socket.listen(BACKLOG)?;
        bound = listener.local_addr()?;
        sockets.push(listener.into_std()?);
    }
    Ok(Listeners {
        sockets,
        addr: bound,
    })
}

/// Serves `proxy` on `listeners`, one edge thread per socket, until this
/// future is dropped (the threads then stop, ending their connections).
/// With `scope`, only that app. When the proxy shuts down (see
/// [`super::drain`]) the sockets are closed and the threads serve the
/// connections they have until this future is dropped.
pub async fn serve(listeners: Listeners, proxy: Arc<Proxy>, scope: Option<Arc<str>>) {
    let (stop_tx, stop_rx) = watch::channel(());
    // Dropped with this future: every thread sees it and stops.
    let _stop_on_drop = stop_tx;
    for (i, socket) in listeners.sockets.into_iter().enumerate() {
        let (proxy, scope, mut stop) = (Arc::clone(&proxy), scope.clone(), stop_rx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("wicket-edge-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("edge thread {i}: cannot start its runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(socket) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("edge thread {i}: cannot use its socket: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        // Returns when the proxy shuts down: the listener
                        // is closed, and the connections it accepted run
                        // on this runtime until they end or the host stops.
                        () = super::serve(listener, proxy, scope) => {}
                        _ = stop.changed() => return,
                    }
                    let _ = stop.changed().await;
                });
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start edge thread {i}: {e}");
        }
    }
    // Idle pod connections are closed after their timeout even when no
    // user comes to park another one (which sweeps too).
    let mut sweep = tokio::time::interval(super::pool::SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        sweep.tick().await;
        proxy.pool.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_share_one_port() {
        let l = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 3).expect("bind");
        assert_eq!(l.sockets.len(), 3);
        assert_ne!(l.local_addr().port(), 0);
        for s in &l.sockets {
            assert_eq!(s.local_addr().expect("addr"), l.local_addr());
        }
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        assert!(bind(addr, 2).is_err());
    }
}
