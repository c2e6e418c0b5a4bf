//! `wicket demo` (what `scripts/demo.sh` runs, the README's first command)
//! as a user runs it: the built binary on free ports. It prints its URLs,
//! serves the waiting page, a ticket and the app behind it, and stops
//! cleanly (exit status 0, within seconds) on SIGINT and on SIGTERM.

#![allow(clippy::unwrap_used)] // tests

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{client, get, ticket};
use http::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const APP: &str = "demo";

/// A running `wicket demo` and the addresses it printed.
struct Running {
    child: Child,
    app: SocketAddr,
    metrics: SocketAddr,
}

/// `http://ADDR/...` → ADDR.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").expect("an http URL");
    rest[..rest.find('/').expect("a path")]
        .parse()
        .expect("an address")
}

/// Starts `wicket demo` on free ports and reads its stdout up to "Press
/// Ctrl-C to stop.", taking the app and metrics URLs from it.
async fn start() -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wicket"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut app, mut metrics) = (None, None);
    let printed = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["app", url] => app = Some((*url).to_owned()),
                ["metrics", url] => metrics = Some((*url).to_owned()),
                _ if line.contains("Press Ctrl-C to stop") => return,
                _ => {}
            }
        }
        panic!("stdout ended before the demo said it runs");
    })
    .await;
    assert!(printed.is_ok(), "no \"Press Ctrl-C\" line within 60 s");
    // Keep reading stdout so the demo never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let app = app.expect("an app URL");
    assert!(app.ends_with(&format!("/{APP}/")), "{app}");
    let metrics = metrics.expect("a metrics URL");
    assert!(metrics.ends_with("/metrics"), "{metrics}");
    Running {
        child,
        app: addr_of(&app),
        metrics: addr_of(&metrics),
    }
}

/// The user's path: the waiting page, a ticket, the app behind it, the
/// metrics.
async fn serves(d: &Running) {
    let c = client();
    let page = get(&c, d.app, &format!("/{APP}/"), None, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    assert!(
        page.body.contains("/ws?resume") && page.body.contains(&format!("/{APP}/.wicket/poll")),
        "the waiting page asks for a ticket (script and no-script): {}",
        page.body
    );
    let t = ticket(d.app, APP, Duration::from_secs(30)).await;
    let r = get(&c, d.app, &t.prefix(APP), Some(&t.cookie()), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(&t.pod), "the app shows its pod: {}", r.body);
    let m = get(&c, d.metrics, "/metrics", None, &[]).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.body.contains("k8sticket_users_total"), "{}", m.body);
}

/// Sends `signal` and waits for a clean exit.
async fn stops_on(mut d: Running, signal: &str) {
    let pid = d.child.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
    let status = tokio::time::timeout(Duration::from_secs(10), d.child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running 10 s after SIG{signal}"))
        .unwrap();
    assert!(status.success(), "exit after SIG{signal}: {status}");
    assert!(
        tokio::net::TcpStream::connect(d.app).await.is_err(),
        "the proxy port is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_a_ticket_and_stops_on_sigint() {
    let d = start().await;
    serves(&d).await;
    stops_on(d, "INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_a_ticket_and_stops_on_sigterm() {
    let d = start().await;
    serves(&d).await;
    stops_on(d, "TERM").await;
}
