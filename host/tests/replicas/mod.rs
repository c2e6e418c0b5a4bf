//! Several wicket processes (`wicket demo`) sharing one Redis store and one
//! set of app instances that run before they start (static backends: a
//! fixed Deployment without autoscaling). With `shared_port`, they all
//! bind the same proxy port through `SO_REUSEPORT`, so the kernel spreads
//! connections over them as a Service would; else each has its own (to ask
//! one replica in particular). Processes are killed when dropped.
//!
//! Built so that a rolling restart under load can be added: [`Replicas::stop`]
//! and [`Replicas::start_one`] replace one replica at a time.

#![allow(dead_code, missing_docs)] // each test binary uses a subset

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::redis::free_port;

/// One app instance (a "pod" that exists before any replica starts).
#[derive(Debug)]
pub struct Backend {
    child: Child,
    pub addr: SocketAddr,
}

impl Backend {
    /// Starts `wicket demo-app` on a free loopback port.
    pub fn start(exe: &PathBuf, pod: &str) -> Self {
        let mut child = Command::new(exe)
            .args(["demo-app", "--pod", pod])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("demo-app starts");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("LISTENING line");
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("demo-app said {line:?}"));
        Self { child, addr }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One wicket process.
#[derive(Debug)]
pub struct Replica {
    child: Child,
    /// Where it serves users (shared with the others with `shared_port`).
    pub proxy: SocketAddr,
    /// Its own `/metrics`.
    pub metrics: SocketAddr,
}

impl Replica {
    /// Kills it at once (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace` for it to exit
    /// (then kills it). Its exit status, if it exited by itself.
    pub fn terminate(mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings of a replica set.
#[derive(Debug, Clone)]
pub struct Setup {
    pub replicas: usize,
    pub pods: usize,
    pub tickets_max: u32,
    pub ticket_expiry_ms: u64,
    pub shared_port: bool,
    pub refresh_ms: u64,
    pub response_timeout_ms: u64,
    /// `proxy.shutdown_grace_ms`: how long a SIGTERM'd replica holds tunnels.
    pub shutdown_grace_ms: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            replicas: 3,
            pods: 2,
            tickets_max: 5,
            ticket_expiry_ms: 30_000,
            shared_port: true,
            refresh_ms: 100,
            response_timeout_ms: 1000,
            shutdown_grace_ms: 30_000,
        }
    }
}

/// Replicas, their pods and their store URL.
#[derive(Debug)]
pub struct Replicas {
    pub setup: Setup,
    pub backends: Vec<Backend>,
    pub replicas: Vec<Replica>,
    /// The shared port (with `shared_port`).
    pub port: u16,
    pub store_url: String,
    dir: tempfile::TempDir,
    exe: PathBuf,
}

/// The app every replica serves.
pub const APP: &str = "demo";

impl Replicas {
    /// Starts the pods, then `setup.replicas` replicas against `store_url`.
    pub fn start(exe: PathBuf, store_url: String, setup: Setup) -> Self {
        let backends = (0..setup.pods)
            .map(|i| Backend::start(&exe, &format!("pod-{i}")))
            .collect();
        let mut r = Self {
            port: free_port(),
            setup,
            backends,
            replicas: Vec::new(),
            store_url,
            dir: tempfile::tempdir().expect("tempdir"),
            exe,
        };
        for _ in 0..r.setup.replicas {
            r.start_one();
        }
        r
    }

    /// A replica's config. Policy budgets are generous: debug builds of
    /// several processes share a busy 2-core machine.
    fn config(&self, port: u16) -> String {
        let s = &self.setup;
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|b| format!("\"{}\"", b.addr))
            .collect();
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nticket_expiry_ms = {}\nwaiting_message_ms = 200\nshutdown_grace_ms = {}\n\
             connections_per_client = 1000\nsockets_per_client = 1000\nplaces_per_client = 1000\ntickets_per_client = 0\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [policy]\ntimeout_ms = 500\ninstantiate_timeout_ms = 5000\n\
             [demo]\napp = \"{APP}\"\nreplicas = 0\ntickets_max = {}\ntickets_spare = 0\npods_max = 0\n\
             static_backends = [{}]\n\
             [store]\nkind = \"redis\"\nurl = \"{}\"\nrefresh_ms = {}\nresync_ms = 1000\nresponse_timeout_ms = {}\nconnect_timeout_ms = 1000\n",
            s.ticket_expiry_ms,
            s.shutdown_grace_ms,
            s.tickets_max,
            backends.join(", "),
            self.store_url,
            s.refresh_ms,
            s.response_timeout_ms,
        )
    }

    /// Starts one more replica (on the shared port, or its own) and waits
    /// until it serves. Returns its index.
    pub fn start_one(&mut self) -> usize {
        let port = if self.setup.shared_port {
            self.port
        } else {
            free_port()
        };
        let path = self
            .dir
            .path()
            .join(format!("wicket-{port}-{}.toml", self.replicas.len()));
        std::fs::write(&path, self.config(port)).expect("config written");
        let mut child = Command::new(&self.exe)
            .args(["demo", "--config"])
            .arg(&path)
            // WICKET_TEST_LOG (a RUST_LOG filter) shows the replicas' logs
            // when a test needs looking into.
            .env(
                "RUST_LOG",
                std::env::var("WICKET_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wicket demo starts");
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let mut proxy = None;
        let mut metrics = None;
        for line in lines.by_ref() {
            let line = line.expect("stdout line");
            let addr = |l: &str| -> Option<SocketAddr> {
                l.split("http://").nth(1)?.split('/').next()?.parse().ok()
            };
            if line.trim_start().starts_with("app ") {
                proxy = addr(&line);
            }
            if line.trim_start().starts_with("metrics ") {
                metrics = addr(&line);
            }
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        // Keep reading stdout so the process never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        let replica = Replica {
            child,
            proxy: proxy.expect("the replica printed its address"),
            metrics: metrics.expect("the replica printed its metrics address"),
        };
        self.replicas.push(replica);
        self.replicas.len() - 1
    }

    /// Stops replica `i` (SIGKILL) and removes it from the list.
    pub fn stop(&mut self, i: usize) {
        self.replicas.remove(i).kill();
    }

    /// Replaces replica `i` as a rolling update does: a new one starts (and
    /// serves) first, then the old one gets SIGTERM and `grace` to exit.
    /// The old one's exit status, if it exited in time.
    pub fn roll(&mut self, i: usize, grace: Duration) -> Option<std::process::ExitStatus> {
        self.start_one();
        self.replicas.remove(i).terminate(grace)
    }

    /// Where users connect: the shared port, or replica 0's.
    pub fn addr(&self) -> SocketAddr {
        if self.setup.shared_port {
            SocketAddr::from(([127, 0, 0, 1], self.port))
        } else {
            self.replicas[0].proxy
        }
    }
}

/// GET on a new connection each time (so that, on the shared port, the
/// kernel may pick any replica), following wicket's 307 "repeat it" (a
/// ticket that reached this replica a moment after the request) up to
/// three times. The status, or None if no answer came.
pub async fn get_fresh(addr: SocketAddr, path: &str, cookie: &str) -> Option<StatusCode> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut status = None;
    for _ in 0..4 {
        let req = Request::get(format!("http://{addr}{path}"))
            .header("cookie", cookie)
            .header("connection", "close")
            .body(Empty::new())
            .ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
            .await
            .ok()?
            .ok()?;
        status = Some(resp.status());
        if resp.status() != StatusCode::TEMPORARY_REDIRECT {
            break;
        }
    }
    status
}
