//! What a simulated user does, shared by `soak`, `scale` and `abuse`: get
//! a ticket from a source address of its own, open a WebSocket to its pod
//! through the proxy, and make HTTP requests on a keep-alive connection.
//!
//! Users come from distinct loopback addresses (127.0.0.0/8 is all local
//! on Linux), so wicket's per-client limits see one client per user, as
//! they would in production, and stay at their defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::Ticket;

/// A WebSocket over a plain TCP connection.
pub type Ws = WebSocketStream<TcpStream>;

/// The source address of user `i` in the block of third octet `block`:
/// 127.`block + i / 250`.`1 + i % 250` (second octet 0), e.g. user 0 of
/// block 1 is 127.0.1.1. Up to 250 users per /24, 62,500 per block.
pub fn source(block: u8, i: usize) -> IpAddr {
    let third = usize::from(block) + i / 250;
    let [hi, lo] = u16::try_from(third).unwrap_or(u16::MAX).to_be_bytes();
    // Users past 127.255.255.x wrap into the second octet (never reached).
    let fourth = u8::try_from(1 + i % 250).unwrap_or(250);
    IpAddr::V4(Ipv4Addr::new(127, hi, lo, fourth))
}

/// The proxy's address from a `ws://HOST:PORT/…` URL (HOST an IP literal).
pub fn target(url: &str) -> anyhow::Result<SocketAddr> {
    let uri: http::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
    let host = uri.host().context("URL without a host")?;
    let port = uri.port_u16().unwrap_or(80);
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .with_context(|| format!("the URL's host must be an IP address: {url}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// A TCP connection to `to` from `from` (any port), Nagle off as a browser.
pub async fn connect(from: Option<IpAddr>, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("creating a socket")?;
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding the source address {ip}"))?;
    }
    let stream = socket
        .connect(to)
        .await
        .with_context(|| format!("connecting to {to}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(stream)
}

/// How a ticket socket ended when no ticket came.
#[derive(Debug)]
pub enum NoTicket {
    /// The handshake was answered with this HTTP status (429, 403, …).
    Status(u16),
    /// The socket said this (`msg#…`) and closed.
    Closed(Option<String>),
    /// Anything else (connect, I/O, protocol).
    Failed(anyhow::Error),
}

impl std::fmt::Display for NoTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "handshake answered {s}"),
            Self::Closed(Some(m)) => write!(f, "closed without a ticket after {m:?}"),
            Self::Closed(None) => write!(f, "closed without a ticket"),
            Self::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

/// A ticket and when its socket saw what.
#[derive(Debug)]
pub struct Got {
    /// The ticket.
    pub ticket: Ticket,
    /// Connect start → `tkn#` received.
    pub elapsed: Duration,
    /// When the handshake completed (the user is in line from then).
    pub opened: Instant,
    /// When `tkn#` arrived.
    pub at: Instant,
    /// Whether the user waited in line (a `pos#` came first).
    pub queued: bool,
}

/// Opens the ticket WebSocket `url` from `from`, waits (through `msg#`
/// and `pos#`) for the ticket, and answers the server's close (bounded).
pub async fn ticket(url: &str, from: Option<IpAddr>) -> Result<Got, NoTicket> {
    let start = Instant::now();
    let to = target(url).map_err(NoTicket::Failed)?;
    let stream = connect(from, to).await.map_err(NoTicket::Failed)?;
    let (mut ws, _) = match tokio_tungstenite::client_async(url, stream).await {
        Ok(c) => c,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            return Err(NoTicket::Status(r.status().as_u16()));
        }
        Err(e) => return Err(NoTicket::Failed(anyhow::anyhow!("handshake: {e}"))),
    };
    let opened = Instant::now();
    let (mut last_msg, mut queued) = (None, false);
    let ticket = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let t = t.as_str();
                if let Some(ticket) = Ticket::parse(t) {
                    break ticket;
                }
                if t.starts_with("pos#") {
                    queued = true;
                } else if let Some(m) = t.strip_prefix("msg#") {
                    last_msg = Some(m.to_owned());
                }
            }
            Some(Ok(Message::Close(_))) | None => return Err(NoTicket::Closed(last_msg)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(NoTicket::Failed(anyhow::anyhow!("ticket socket: {e}"))),
        }
    };
    let at = Instant::now();
    // The server closes after the ticket; answer it so it sees a clean close.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok(Got {
        ticket,
        elapsed: at - start,
        opened,
        at,
        queued,
    })
}

/// The WebSocket `path` on the ticket's pod through the proxy at `to`
/// (`path` starts with the ticket's prefix), with the ticket cookie.
pub async fn pod_socket(
    to: SocketAddr,
    from: Option<IpAddr>,
    path: &str,
    ticket: &Ticket,
) -> anyhow::Result<Ws> {
    let stream = connect(from, to).await?;
    let mut req = format!("ws://{to}{path}")
        .into_client_request()
        .context("building the WebSocket request")?;
    req.headers_mut().insert(
        http::header::COOKIE,
        http::HeaderValue::from_str(&ticket.cookie()).context("cookie")?,
    );
    let (ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .with_context(|| format!("WebSocket {path} through the proxy"))?;
    Ok(ws)
}

/// Sends `text` and waits for the next text message (pings are answered
/// by tungstenite as they come).
pub async fn ask(ws: &mut Ws, text: &str) -> anyhow::Result<String> {
    ws.send(Message::text(text)).await.context("sending")?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(f))) => bail!("the pod socket closed: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("pod socket: {e}"),
            None => bail!("the pod socket ended"),
        }
    }
}

/// Closes a WebSocket cleanly: close frame, then the peer's (bounded).
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// A keep-alive HTTP/1.1 connection to the proxy.
pub struct Http {
    sender: http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Http {
    /// Opens the connection from `from`; its driver runs as its own task
    /// and ends when the connection does.
    pub async fn open(to: SocketAddr, from: Option<IpAddr>) -> anyhow::Result<Self> {
        let stream = connect(from, to).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1 handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: to.to_string(),
        })
    }

    /// Is the connection still usable?
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// GET `path` with the `cookie` (if any) and extra `headers`; the status
    /// and the whole body.
    pub async fn get(
        &mut self,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut req = http::Request::get(path).header(http::header::HOST, &self.host);
        if let Some(c) = cookie {
            req = req.header(http::header::COOKIE, c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).context("building a request")?;
        self.sender.ready().await.context("connection not ready")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the body")?
            .to_bytes();
        Ok((status, body))
    }
}

/// Resident set size (kB) and open file descriptors of process `pid`,
/// from /proc (None where it cannot be read: the process is gone).
pub fn proc_usage(pid: u32) -> (Option<u64>, Option<usize>) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count);
    (rss, fds)
}

/// Anonymous memory of process `pid` backed by transparent huge pages
/// (kB, from /proc/<pid>/smaps_rollup): a 2 MiB page counts whole in the
/// RSS however little of it is used, so this tells how much of an RSS is
/// the allocator's huge-page arenas rather than data.
pub fn huge_pages_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_distinct_loopback_addresses() {
        assert_eq!(source(1, 0).to_string(), "127.0.1.1");
        assert_eq!(source(1, 249).to_string(), "127.0.1.250");
        assert_eq!(source(1, 250).to_string(), "127.0.2.1");
        assert_eq!(source(1, 9_999).to_string(), "127.0.40.250");
        assert_eq!(source(255, 250).to_string(), "127.1.0.1");
        let all: std::collections::HashSet<_> = (0..10_000).map(|i| source(1, i)).collect();
        assert_eq!(all.len(), 10_000);
    }

    #[test]
    fn target_from_url() {
        assert_eq!(
            target("ws://127.0.0.1:9001/demo/ws").ok(),
            Some("127.0.0.1:9001".parse().expect("addr"))
        );
        assert!(target("ws://localhost:9001/demo/ws").is_err());
    }

    #[test]
    fn usage_of_this_process() {
        let (rss, fds) = proc_usage(std::process::id());
        assert!(rss.is_some_and(|r| r > 0));
        assert!(fds.is_some_and(|n| n >= 3));
        assert_eq!(proc_usage(u32::MAX), (None, None));
        assert!(huge_pages_kb(std::process::id()).is_some());
        assert_eq!(huge_pages_kb(u32::MAX), None);
    }
}
