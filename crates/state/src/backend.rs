//! Where a pod's app listens. Plain data: the proxy turns it into what the
//! wire needs (the `Host` header is kept as text, valid by construction).

use std::net::SocketAddr;

/// Where a pod's app listens: `addr` plus the path requests are rewritten to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Pod IP and app port.
    pub addr: SocketAddr,
    /// `addr` as a `Host` header value (for clients that sent none), written
    /// once: a socket address is always a valid header value.
    pub host: String,
    /// `pod.path`, always starting and ending with `/`.
    pub base_path: String,
}

impl Backend {
    /// A backend at `addr` serving under `path` (normalised to `/…/`).
    pub fn new(addr: SocketAddr, path: &str) -> Self {
        let trimmed = path.trim_matches('/');
        let base_path = if trimmed.is_empty() {
            "/".to_owned()
        } else {
            format!("/{trimmed}/")
        };
        Self {
            addr,
            host: addr.to_string(),
            base_path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_the_host_is_the_address() {
        let addr: SocketAddr = "10.0.0.7:3838".parse().expect("addr");
        for (path, want) in [("/", "/"), ("", "/"), ("app", "/app/"), ("/a/b/", "/a/b/")] {
            assert_eq!(Backend::new(addr, path).base_path, want, "{path:?}");
        }
        assert_eq!(Backend::new(addr, "/").host, "10.0.0.7:3838");
        let v6: SocketAddr = "[::1]:80".parse().expect("addr");
        assert_eq!(Backend::new(v6, "/").host, "[::1]:80");
    }
}
