//! A real `redis-server` (Debian's package) per test, on a free loopback
//! port, with no persistence; killed when dropped. Used by the store's unit
//! tests (through `#[path]`) and by the multi-replica integration tests.

#![allow(dead_code, missing_docs)] // each test binary uses a subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

/// A loopback port nobody listens on (free when asked; the caller binds it
/// right after), never the same one twice in one test binary: tests run in
/// parallel, and two servers on one port (SO_REUSEPORT lets wicket's
/// replicas share one) would mix two tests' users.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> Self {
        loop {
            let mut s = Self {
                child: None,
                port: free_port(),
            };
            if s.spawn() {
                return s;
            }
            // Another process took the port first: another one.
        }
    }

    /// Starts the server; false if it exited (its port was taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The answer must be this server's: it is still running.
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            if self.answers() {
                // A server that could not bind exits within milliseconds:
                // then the answer was someone else's.
                std::thread::sleep(Duration::from_millis(100));
                let exited = self
                    .child
                    .as_mut()
                    .is_none_or(|c| c.try_wait().ok().flatten().is_some());
                if exited {
                    self.child = None;
                }
                return !exited;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Does the server answer PING now?
    pub fn answers(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// Freezes the server (SIGSTOP): it keeps its data and its port but
    /// answers nothing, like a server behind a broken network.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server (its data is lost: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A paused process dies of SIGKILL too.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
