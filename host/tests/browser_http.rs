//! The user's path as plain HTTP clients and the waiting page's socket see
//! it, on loopback: `curl -L` with a cookie jar reaching the app (the
//! no-JavaScript path), the resumable ticket socket (`rid#`, `pos#`, `eta#`,
//! `sta#`), and expired sessions sending browsers back with a word while
//! API clients keep k8sTicket's 403 texts. The real-browser tier is
//! `browser_chromium.rs`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

const APP: &str = "demo";
const HTML: (&str, &str) = (
    "accept",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
);
const DEMO_PAGE: &str = "You are on the demo app";

/// What `curl` ended with.
struct Curl {
    body: String,
    /// `%{url_effective}`: where the redirects ended.
    url: String,
    status: u16,
}

/// Runs `curl -sS -L -c jar -b jar <extra> <url>` (the command the
/// no-JavaScript path promises to work with).
fn curl(jar: &Path, url: &str, extra: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "-L", "-c"])
        .arg(jar)
        .arg("-b")
        .arg(jar)
        .args(["--max-time", "30", "-w", "\n%{http_code} %{url_effective}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl ({e}); install it: apt-get install -y curl"));
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').expect("curl -w line");
    let (status, url) = last.split_once(' ').expect("status and url");
    Curl {
        body: body.to_owned(),
        url: url.to_owned(),
        status: status.parse().expect("status"),
    }
}

fn curl_async(
    jar: &Path,
    url: String,
    extra: Vec<String>,
) -> impl std::future::Future<Output = Curl> + 'static {
    let jar = jar.to_owned();
    async move {
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            curl(&jar, &url, &extra)
        })
        .await
        .expect("curl task")
    }
}

fn full_app() -> wicket::config::Config {
    let mut cfg = config();
    cfg.demo.tickets_max = 1;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 0;
    cfg
}

/// The value after `w=` in the no-JS page's refresh URL.
fn resume_id(page: &str) -> String {
    let at = page
        .find("poll?w=")
        .expect("a refresh to the poll endpoint")
        + "poll?w=".len();
    page[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

/// The text of the element with `id` (first text node).
fn element_text<'a>(page: &'a str, id: &str) -> &'a str {
    let at = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in the page"));
    let start = at + page[at..].find('>').expect("tag end") + 1;
    let end = start + page[start..].find('<').expect("text end");
    &page[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_cookie_jar_reaches_the_app() {
    let demo = start(config(), 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jar = dir.path().join("jar");
    let r = curl_async(&jar, format!("http://{}/{APP}/", demo.proxy_addr), vec![]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(DEMO_PAGE),
        "ended on the app's page: {}",
        r.body
    );
    let path = r
        .url
        .strip_prefix(&format!("http://{}", demo.proxy_addr))
        .expect("same host");
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    assert_eq!(parts.len(), 3, "landed on /<app>/<pod>/<uid>/: {path}");
    // curl writes HttpOnly cookies with this prefix.
    let jar_text = std::fs::read_to_string(&jar).expect("jar");
    let line = jar_text
        .lines()
        .find(|l| l.contains("-stoken"))
        .expect("the ticket cookie in the jar");
    assert!(line.starts_with("#HttpOnly_"), "HttpOnly: {line}");
    assert!(
        line.contains(&format!("/{APP}/{}/{}/", parts[1], parts[2])),
        "scoped to the ticket: {line}"
    );
    // The same jar keeps working: the session (and its counter) continue.
    let again = curl_async(&jar, r.url.clone(), vec![]).await;
    assert!(again.body.contains(DEMO_PAGE));
    assert_eq!(
        metric(&demo, "k8sticket_current_users_total").await,
        1.0,
        "one user, one ticket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_a_waiting_user_keeps_the_place_and_gets_in() {
    let demo = start(full_app(), 1).await;
    let addr = demo.proxy_addr;
    // Each poll holds up to half the grace period (3 s here).
    demo.apps
        .get(APP)
        .expect("app")
        .set_resume_grace(Duration::from_secs(6));
    let first = ticket(addr, APP, Duration::from_secs(5)).await;
    let keeper = keep_alive(addr, APP, &first);
    let dir = tempfile::tempdir().expect("tempdir");
    let jar = dir.path().join("jar");

    // The first poll holds a few seconds, then shows the place in line.
    let started = Instant::now();
    let page = curl_async(&jar, format!("http://{addr}/{APP}/"), vec![]).await;
    assert_eq!(page.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "the poll waited for a slot first"
    );
    assert_eq!(element_text(&page.body, "position"), "1");
    assert!(
        element_text(&page.body, "eta").starts_with("about "),
        "{}",
        element_text(&page.body, "eta")
    );
    assert!(!page.body.contains("<script"));
    let rid = resume_id(&page.body);
    assert_eq!(rid.len(), 32, "a 128-bit resume id");

    // Someone with a live page joins behind: the no-JS user keeps place 1.
    let mut behind = connect_ws(addr, APP).await;
    let s = read_ticket(&mut behind, Duration::from_millis(600)).await;
    assert!(s.messages.iter().any(|m| m == "pos#2"), "{:?}", s.messages);
    // An unknown resume id is just a new user, at the back.
    let other = curl_async(
        &jar,
        format!("http://{addr}/{APP}/.wicket/poll?w={}", "0".repeat(32)),
        vec![],
    )
    .await;
    assert_eq!(element_text(&other.body, "position"), "3");
    assert_ne!(resume_id(&other.body), rid);

    // The first user leaves while the no-JS user's next poll waits: in.
    let poll = format!("http://{addr}/{APP}/.wicket/poll?w={rid}");
    let next = tokio::spawn(curl_async(&jar, poll, vec![]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(keeper);
    let r = next.await.expect("poll");
    assert!(r.body.contains(DEMO_PAGE), "admitted: {}", r.body);
    assert!(
        r.url.contains(&format!("/{APP}/{}/", first.pod)),
        "{}",
        r.url
    );
    let s = read_ticket(&mut behind, Duration::from_millis(300)).await;
    assert!(s.ticket.is_none(), "the user behind still waits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_mode_without_javascript() {
    let mut cfg = config();
    cfg.demo.dns = true;
    let demo = start(cfg, 2).await;
    let port = demo.proxy_addr.port();
    let dir = tempfile::tempdir().expect("tempdir");
    let jar = dir.path().join("jar");
    // Every *.wicket.test name goes to the proxy.
    let extra = vec!["--connect-to".to_owned(), format!("::127.0.0.1:{port}")];
    let r = curl_async(&jar, format!("http://wicket.test:{port}/{APP}/"), extra).await;
    assert!(r.body.contains(DEMO_PAGE), "{}", r.body);
    let host = r
        .url
        .strip_prefix("http://")
        .and_then(|u| u.split('/').next())
        .expect("host");
    assert!(
        host.ends_with(&format!(".wicket.test:{port}")) && host.split('.').count() == 4,
        "{host}"
    );
    let jar_text = std::fs::read_to_string(&jar).expect("jar");
    let line = jar_text
        .lines()
        .find(|l| l.contains("-stoken"))
        .expect("cookie");
    assert!(
        line.starts_with("#HttpOnly_.wicket.test\tTRUE\t/demo/"),
        "domain cookie for the subdomains: {line}"
    );
}

async fn ws_messages(ws: &mut WsStream, limit: Duration) -> Vec<String> {
    read_ticket(ws, limit).await.messages
}

async fn connect_resumable(addr: SocketAddr, rid: Option<&str>) -> WsStream {
    let q = rid.map_or("resume".to_owned(), |r| format!("resume={r}"));
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/{APP}/ws?{q}"))
        .await
        .expect("ws");
    ws
}

fn value<'m>(messages: &'m [String], kind: &str) -> Option<&'m str> {
    messages.iter().rev().find_map(|m| m.strip_prefix(kind))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_comes_back_to_its_place() {
    let demo = start(full_app(), 1).await;
    let addr = demo.proxy_addr;
    let app = demo.apps.get(APP).expect("app");
    let first = ticket(addr, APP, Duration::from_secs(5)).await;
    let keeper = keep_alive(addr, APP, &first);

    let mut a = connect_resumable(addr, None).await;
    let m = ws_messages(&mut a, Duration::from_millis(1500)).await;
    let rid = value(&m, "rid#").expect("a resume id").to_owned();
    assert_eq!(value(&m, "pos#"), Some("1"));
    let eta = value(&m, "eta#").expect("an estimate");
    assert!(
        eta.ends_with("@queue")
            && eta
                .split('@')
                .next()
                .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{eta}"
    );
    assert!(
        m.iter().any(|x| x.starts_with("msg#Waiting")),
        "k8sTicket's message still comes: {m:?}"
    );

    let mut b = connect_ws(addr, APP).await;
    assert_eq!(
        value(
            &ws_messages(&mut b, Duration::from_millis(1500)).await,
            "pos#"
        ),
        Some("2")
    );

    // A's network drops: the place is kept, B stays second.
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metric(&demo, "wicket_waiting_users").await, 2.0);
    let mut a2 = connect_resumable(addr, Some(&rid)).await;
    let m = ws_messages(&mut a2, Duration::from_millis(1500)).await;
    assert_eq!(
        value(&m, "rid#"),
        Some(rid.as_str()),
        "the same place: {m:?}"
    );
    assert_eq!(value(&m, "pos#"), Some("1"));
    // A duplicated tab presenting the same id while A is connected queues anew.
    let mut dup = connect_resumable(addr, Some(&rid)).await;
    let m = ws_messages(&mut dup, Duration::from_millis(1500)).await;
    assert_ne!(value(&m, "rid#"), Some(rid.as_str()));
    assert_eq!(value(&m, "pos#"), Some("3"));
    drop(dup);

    // The slot frees: A (back at place 1) gets it, not B.
    drop(keeper);
    let t = read_ticket(&mut a2, Duration::from_secs(5))
        .await
        .ticket
        .expect("A admitted");
    assert_eq!(t.pod, first.pod);
    let _a_uses_it = keep_alive(addr, APP, &t);
    assert!(
        read_ticket(&mut b, Duration::from_millis(300))
            .await
            .ticket
            .is_none()
    );

    // Away longer than the grace period: the place is gone.
    app.set_resume_grace(Duration::from_millis(400));
    let mut c = connect_resumable(addr, None).await;
    let m = ws_messages(&mut c, Duration::from_millis(1500)).await;
    let rid_c = value(&m, "rid#").expect("rid").to_owned();
    drop(c);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut c2 = connect_resumable(addr, Some(&rid_c)).await;
    let m = ws_messages(&mut c2, Duration::from_millis(1500)).await;
    assert_ne!(
        value(&m, "rid#"),
        Some(rid_c.as_str()),
        "a new place: {m:?}"
    );
    assert_eq!(value(&m, "pos#"), Some("2"), "behind B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_says_a_new_instance_is_starting() {
    let mut cfg = config();
    cfg.demo.tickets_max = 1;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 1;
    cfg.demo.pod_start_delay_ms = 2500;
    let demo = start(cfg, 1).await;
    let addr = demo.proxy_addr;
    let first = ticket(addr, APP, Duration::from_secs(5)).await;
    let _keeper = keep_alive(addr, APP, &first);
    let mut ws = connect_resumable(addr, None).await;
    let m = ws_messages(&mut ws, Duration::from_millis(1800)).await;
    let eta = value(&m, "eta#").expect("an estimate");
    let (secs, basis) = eta.split_once('@').expect("secs@basis");
    assert_eq!(basis, "starting", "{m:?}");
    // The replica's own start (2.5 s) was observed, so there is a number.
    let secs: u64 = secs
        .parse()
        .expect("seconds known from the replica's start");
    assert!(secs <= 3, "{secs}");
    let t = read_ticket(&mut ws, Duration::from_secs(10))
        .await
        .ticket
        .expect("admitted on the new pod");
    assert_ne!(t.pod, first.pod);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_send_browsers_back_and_api_clients_get_403() {
    let demo = start(config(), 2).await;
    let addr = demo.proxy_addr;
    let c = client();
    let app = demo.apps.get(APP).expect("app");
    app.set_display_name(Some("Shiny <Demo>"));
    let t = ticket(addr, APP, Duration::from_secs(5)).await;

    // A live ticket, but this browser has no cookie for it.
    let r = get(&c, addr, &t.prefix(APP), None, &[HTML]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/demo/?ended=denied");

    wait_for(Duration::from_secs(5), || async {
        metric(&demo, "k8sticket_current_users_total").await == 0.0
    })
    .await;
    // A browser navigating after expiry: back to the waiting room.
    let r = get(
        &c,
        addr,
        &t.prefix(APP),
        Some(&t.cookie()),
        &[HTML, ("sec-fetch-mode", "navigate")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/demo/?ended=expired");
    let page = get(&c, addr, "/demo/?ended=expired", None, &[HTML]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Your session has ended")
            && page.body.contains("Open Shiny &lt;Demo&gt; again")
    );
    assert!(
        !page.body.contains("<script"),
        "no new session without a click"
    );

    // Scripts and API clients: k8sTicket's texts.
    for headers in [
        vec![HTML, ("x-requested-with", "XMLHttpRequest")],
        vec![("accept", "application/json")],
        vec![HTML, ("sec-fetch-mode", "cors")],
        vec![],
    ] {
        let r = get(&c, addr, &t.prefix(APP), Some(&t.cookie()), &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(r.body, wicket::proxy::pages::NO_ACCESS);
        let r = get(&c, addr, &t.prefix(APP), None, &headers).await;
        assert_eq!(r.body, wicket::proxy::pages::SESSION_EXPIRED, "{headers:?}");
    }
    // A pod that is gone.
    let r = get(
        &c,
        addr,
        &format!("/{APP}/gone-pod/{}/", t.uid),
        None,
        &[HTML],
    )
    .await;
    assert_eq!(r.headers["location"], "/demo/?ended=expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_app_says_so() {
    let demo = start(config(), 2).await;
    let addr = demo.proxy_addr;
    let app = demo.apps.get(APP).expect("app");
    app.set_accepting(false);
    let mut ws = connect_resumable(addr, None).await;
    let m = ws_messages(&mut ws, Duration::from_secs(2)).await;
    assert_eq!(m.first().map(String::as_str), Some("sta#closed"), "{m:?}");
    assert!(
        m.iter()
            .any(|x| x == &format!("msg#{}", wicket::proxy::ticket_ws::CLOSED_MESSAGE))
    );
    let c = client();
    let r = get(&c, addr, "/demo/", None, &[("accept", "*/*")]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("not available right now"), "{}", r.body);
    assert_eq!(r.headers["retry-after"], "30");
    // Reopened: the same request gets in.
    app.set_accepting(true);
    let r = get(&c, addr, "/demo/", None, &[("accept", "*/*")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .is_ok_and(|s| s.contains("HttpOnly"))
    );
}
