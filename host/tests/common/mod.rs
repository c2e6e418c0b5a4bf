//! Shared helpers for the loopback integration tests: a demo host on free
//! ports, a real WebSocket ticket client and a real HTTP client.

#![allow(dead_code, missing_docs)] // each test binary uses a subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::Message;
use wicket::config::Config;
use wicket::demo::Demo;

/// The wicket binary (pods run `wicket demo-app`).
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wicket"))
}

/// A component built by crates/policy-runtime/build.rs.
pub fn policy_path(var: &str) -> PathBuf {
    use wicket::policy::built;
    let p = match var {
        "faulty" => built::FAULTY,
        "other-major" => built::OTHER_MAJOR,
        "contract-0.1" => built::CONTRACT_0_1,
        "contract-0.2" => built::CONTRACT_0_2,
        "scale-to-zero" => built::SCALE_TO_ZERO,
        _ => built::SPARE_TICKETS,
    };
    PathBuf::from(p)
}

/// Builds the Python or JavaScript example policy `example`
/// (examples/policies/<example>) with its own build script into `out`;
/// the scripts install componentize-py / jco through
/// scripts/policy-tools.sh (cached after the first run).
pub fn build_example(example: &str, out: &std::path::Path) -> PathBuf {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository holds host/");
    let wasm = out.join(format!("{example}.wasm"));
    let script = repo
        .join("examples/policies")
        .join(example)
        .join("build.sh");
    let status = std::process::Command::new(&script)
        .arg(&wasm)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
    wasm
}

/// A demo config on free loopback ports with fast timings.
pub fn config() -> Config {
    let mut c = Config::default();
    c.proxy.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.proxy.ticket_expiry_ms = 600;
    c.proxy.waiting_message_ms = 200;
    c.demo.pod_start_delay_ms = 100;
    c.policy.watch_interval_ms = 100;
    // The deadline is wall-clock: on a loaded 2-core CI machine a thread can
    // be descheduled for longer than the 10 ms default. The endless-loop
    // test still proves the deadline works.
    c.policy.timeout_ms = 100;
    c
}

/// [`config`] with one fixed pod (`pod`, listening; it answers only if the
/// test makes it) of `tickets` slots and no autoscaling.
pub fn one_pod(pod: &tokio::net::TcpListener, tickets: u32) -> Config {
    let mut c = config();
    c.demo.replicas = 0;
    c.demo.pods_max = 0;
    c.demo.tickets_spare = 0;
    c.demo.tickets_max = tickets;
    c.demo.static_backends = vec![pod.local_addr().expect("addr")];
    c
}

/// Starts a demo host and waits until `ready_pods` pods serve.
pub async fn start(config: Config, free_tickets: u32) -> Demo {
    let demo = wicket::demo::start(config, exe())
        .await
        .expect("demo starts");
    wait_for(Duration::from_secs(20), || async {
        metric(&demo, "k8sticket_current_free_tickets_total").await >= f64::from(free_tickets)
    })
    .await;
    demo
}

/// Polls `cond` until it holds or `limit` passes (then panics).
pub async fn wait_for<F, Fut>(limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A ticket as the server sent it.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub token: String,
    pub pod: String,
    pub uid: String,
}

impl Ticket {
    pub fn cookie(&self) -> String {
        format!("{}-{}-stoken={}", self.pod, self.uid, self.token)
    }

    pub fn prefix(&self, app: &str) -> String {
        format!("/{app}/{}/{}/", self.pod, self.uid)
    }
}

/// What a ticket WebSocket said before it closed.
#[derive(Debug, Default)]
pub struct Session {
    pub messages: Vec<String>,
    pub ticket: Option<Ticket>,
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the ticket WebSocket.
pub async fn connect_ws(addr: SocketAddr, app: &str) -> WsStream {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/{app}/ws"))
        .await
        .expect("ws connects");
    ws
}

/// Reads messages until a ticket arrives or the socket closes.
pub async fn read_ticket(ws: &mut WsStream, limit: Duration) -> Session {
    let mut s = Session::default();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        let Ok(Some(Ok(msg))) = next else { return s };
        if let Message::Text(t) = msg {
            let t = t.to_string();
            if let Some(rest) = t.strip_prefix("tkn#") {
                let parts: Vec<&str> = rest.split('@').collect();
                assert_eq!(parts.len(), 3, "ticket message {t:?}");
                s.ticket = Some(Ticket {
                    token: parts[0].into(),
                    pod: parts[1].into(),
                    uid: parts[2].into(),
                });
            }
            s.messages.push(t);
            if s.ticket.is_some() {
                return s;
            }
        }
    }
}

/// Gets a ticket (panics if none within `limit`).
pub async fn ticket(addr: SocketAddr, app: &str, limit: Duration) -> Ticket {
    let mut ws = connect_ws(addr, app).await;
    read_ticket(&mut ws, limit).await.ticket.expect("a ticket")
}

/// A plain HTTP/1 client.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// GET `path` on `addr` with optional Cookie and extra headers.
pub async fn get(
    c: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut b = Request::get(format!("http://{addr}{path}"));
    if let Some(ck) = cookie {
        b = b.header("cookie", ck);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c
        .request(b.body(Empty::new()).expect("request"))
        .await
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sum of a metric's samples (all label sets) from /metrics.
pub async fn metric(demo: &Demo, name: &str) -> f64 {
    metric_at(demo.metrics_addr, name, "").await
}

/// Sum of samples of `name` whose labels contain `label_filter`.
pub async fn metric_at(addr: SocketAddr, name: &str, label_filter: &str) -> f64 {
    let r = get(&client(), addr, "/metrics", None, &[]).await;
    r.body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Uses the ticket every 150 ms (like an active user) until the handle is
/// aborted or dropped via [`Keeper`].
pub fn keep_alive(addr: SocketAddr, app: &str, t: &Ticket) -> Keeper {
    let (path, cookie) = (t.prefix(app), t.cookie());
    Keeper(tokio::spawn(async move {
        let c = client();
        loop {
            let r = get(&c, addr, &path, Some(&cookie), &[]).await;
            assert_eq!(r.status, StatusCode::OK, "kept ticket refused: {}", r.body);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }))
}

/// Stops its keep-alive task when dropped (the user leaves).
pub struct Keeper(tokio::task::JoinHandle<()>);

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The claim-binding cookie (`wicket-bind=<value>`) the waiting page of
/// `app` gives a browser.
pub async fn bind_cookie(addr: SocketAddr, app: &str) -> String {
    let r = get(
        &client(),
        addr,
        &format!("/{app}/"),
        None,
        &[("accept", "text/html")],
    )
    .await;
    let set = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("wicket-bind="))
        .expect("the waiting page sets the claim binding")
        .to_owned();
    set.split(';').next().expect("name=value").to_owned()
}

/// Gets a ticket on a ticket socket opened with `cookie`; returns it with
/// the claim proof (`clm#`) sent before it, if any.
pub async fn ticket_with_cookie(
    addr: SocketAddr,
    app: &str,
    cookie: &str,
    limit: Duration,
) -> (Ticket, Option<String>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/{app}/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("cookie value"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connects");
    let s = read_ticket(&mut ws, limit).await;
    let proof = s
        .messages
        .iter()
        .find_map(|m| m.strip_prefix("clm#"))
        .map(str::to_owned);
    (s.ticket.expect("a ticket"), proof)
}
