//! Per-app ports (k8sTicket's `deployment.port`): listeners of the proxy
//! that serve one app each, opened, moved and closed by name. The
//! controller decides which app wants which port; this module owns the
//! sockets and their edge threads.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::proxy::{self, Proxy};
use crate::task::Task;

/// One open app port.
#[derive(Debug)]
struct Open {
    port: u16,
    addr: SocketAddr,
    _serving: Task,
}

/// The per-app listeners of one proxy.
#[derive(Debug)]
pub struct AppPorts {
    proxy: Arc<Proxy>,
    ip: IpAddr,
    threads: usize,
    shared_port: u16,
    open: Mutex<HashMap<String, Open>>,
}

/// What [`AppPorts::open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The app is served on this address of its own.
    Listening(SocketAddr),
    /// The port is the shared one: no listener of its own is needed.
    Shared,
}

impl AppPorts {
    /// Per-app ports of `proxy`, bound on `ip` with `threads` edge threads
    /// each; `shared_port` is the proxy's shared port.
    pub fn new(proxy: Arc<Proxy>, ip: IpAddr, threads: usize, shared_port: u16) -> Arc<Self> {
        Arc::new(Self {
            proxy,
            ip,
            threads,
            shared_port,
            open: Mutex::default(),
        })
    }

    /// Serves app `app` on `port` (moving it if it had another). On an
    /// error the app has no port of its own (it stays on the shared one).
    /// Must be called inside a tokio runtime.
    pub fn open(&self, app: &str, port: u16) -> io::Result<Opened> {
        if let Some(o) = self.open.lock().get(app)
            && o.port == port
        {
            return Ok(Opened::Listening(o.addr));
        }
        // The old listener goes first: a move to a port is a new bind.
        self.close(app);
        if port == self.shared_port {
            return Ok(Opened::Shared);
        }
        let listeners = proxy::edge::bind(SocketAddr::new(self.ip, port), self.threads)?;
        let addr = listeners.local_addr();
        let scope: Arc<str> = Arc::from(app);
        let serving = Task::spawn(proxy::edge::serve(
            listeners,
            Arc::clone(&self.proxy),
            Some(scope),
        ));
        tracing::info!(%app, %addr, "app port open");
        self.open.lock().insert(
            app.to_owned(),
            Open {
                port,
                addr,
                _serving: serving,
            },
        );
        Ok(Opened::Listening(addr))
    }

    /// Closes app `app`'s own port, if it has one.
    pub fn close(&self, app: &str) {
        let closed = self.open.lock().remove(app);
        if let Some(o) = closed {
            tracing::info!(%app, addr = %o.addr, "app port closed");
        }
    }

    /// Where app `app`'s own port listens, if open.
    pub fn addr(&self, app: &str) -> Option<SocketAddr> {
        self.open.lock().get(app).map(|o| o.addr)
    }
}
