//! Real headless Chromium for the browser tests, driven over WebDriver
//! (`fantoccini` → a `chromedriver` started per test on a free port).
//!
//! Chromium and ChromeDriver come from Debian (`scripts/browser-deps.sh`).
//! When they are missing the tests fail with the install command; they are
//! never skipped.

#![allow(dead_code, missing_docs)] // each test binary uses a subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Browser tests share a 2-core machine with the rest of the suite: one at a time.
pub static ONE_BROWSER_TEST_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How to install what the browser tests need.
pub const INSTALL: &str =
    "scripts/browser-deps.sh   (installs Debian's chromium and chromium-driver)";

/// Finds `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn required(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("`{name}` was not found on PATH. The browser tests need Chromium and ChromeDriver; install them with:\n    {INSTALL}")
    })
}

/// A chromedriver process in its own process group; dropping it kills the
/// group (chromedriver and every Chromium it started).
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group leader's pid is the group id.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = self.child.start_kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts chromedriver on a free port and waits until it answers.
pub async fn chromedriver() -> Driver {
    let exe = required("chromedriver");
    required("chromium");
    let port = free_port();
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; reinstall with:\n    {INSTALL}",
                exe.display()
            )
        });
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return driver;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen on {port} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How a browser is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// JavaScript on (false: Chrome's content setting blocks it everywhere).
    pub javascript: bool,
    /// `--host-resolver-rules`, e.g. for DNS mode.
    pub host_rules: Option<String>,
    /// Window size.
    pub window: (u32, u32),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            javascript: true,
            host_rules: None,
            window: (1100, 820),
        }
    }
}

/// One browser (its own profile: cookies and storage are its own).
pub struct Browser {
    pub client: Client,
    _profile: tempfile::TempDir,
}

/// Starts headless Chromium with a fresh profile through `driver`.
pub async fn browser(driver: &Driver, opts: Options) -> Browser {
    let chromium = required("chromium");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-quic".to_owned(),
        // Plain http to the test hosts, as typed (no https-first attempt).
        "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable".to_owned(),
        format!("--window-size={},{}", opts.window.0, opts.window.1),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    if let Some(rules) = &opts.host_rules {
        args.push(format!("--host-resolver-rules={rules}"));
    }
    let mut prefs = serde_json::Map::new();
    if !opts.javascript {
        prefs.insert(
            "profile.managed_default_content_settings.javascript".into(),
            json!(2),
        );
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium.display().to_string(), "args": args, "prefs": Value::Object(prefs) }),
    );
    let client = tokio::time::timeout(
        Duration::from_secs(40),
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url),
    )
    .await
    .expect("Chromium started within 40 s")
    .unwrap_or_else(|e| {
        panic!("starting Chromium through chromedriver failed: {e}\nreinstall with:\n    {INSTALL}")
    });
    Browser {
        client,
        _profile: profile,
    }
}

impl Browser {
    /// Ends the WebDriver session (Chromium quits).
    pub async fn quit(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.close()).await;
    }

    /// Navigates to `url` (a WebDriver failure fails the test, naming the URL).
    pub async fn open(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("opening {url} failed: {e}");
        }
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .to_string()
    }

    /// The text of element `#id`, if it exists.
    pub async fn text(&self, id: &str) -> Option<String> {
        let e = self.client.find(Locator::Id(id)).await.ok()?;
        e.text().await.ok()
    }

    /// The text of the page's `<h1>` (on the waiting page: the app's
    /// display name); empty when there is none.
    pub async fn heading(&self) -> String {
        match self.client.find(Locator::Css("h1")).await {
            Ok(h) => h.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Evaluates `script` (a function body) and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .expect("script runs")
    }

    /// Waits until `cond` holds, or panics with `what`, the URL and the page.
    pub async fn until<F, Fut>(&self, limit: Duration, what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !cond().await {
            if started.elapsed() > limit {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                let source = self.client.source().await.unwrap_or_default();
                panic!(
                    "{what}: not within {limit:?}; at {url}\n{}",
                    &source[..source.len().min(3000)]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the waiting page shows place `place` in line and an
    /// estimated wait ("about …").
    pub async fn until_waiting_at(&self, limit: Duration, place: u32) {
        let want = place.to_string();
        let what = format!("place {place} with an estimate");
        self.until(limit, &what, || async {
            self.text("position").await.as_deref() == Some(want.as_str())
                && self
                    .text("eta")
                    .await
                    .is_some_and(|e| e.starts_with("about "))
        })
        .await;
    }

    /// The session counter the demo app shows (its WebSocket counts up).
    pub async fn counter(&self) -> u64 {
        self.text("count")
            .await
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Saves a PNG screenshot as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

/// `target/screenshots` of the workspace.
pub fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("screenshots")
}

/// The host (with port) of an absolute URL.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

/// The path segments of an absolute URL, without empty ones (query dropped).
pub fn segments(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Is `url` a page of the app on a ticket (`/<app>/<pod>/<uid>/…`)?
pub fn on_ticket(url: &str) -> bool {
    let s = segments(url);
    s.len() >= 3 && !s[1].starts_with('.')
}
