//! The user's path in a real browser: headless Chromium driven over
//! WebDriver against `wicket demo` (real proxy, real policy, real demo-app
//! processes). Needs Debian's chromium and chromium-driver
//! (`scripts/browser-deps.sh`); without them these tests fail and say how
//! to install them.
//!
//! Screenshots of what users see land in `target/screenshots/`.

mod browser_support;
mod common;

use std::time::{Duration, Instant};

use browser_support::*;
use common::*;
use fantoccini::Locator;

const APP: &str = "demo";

/// Each browser test is bounded; a stuck browser fails the test.
async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(150), test)
        .await
        .expect("the browser test finished within 150 s");
}

fn full_app() -> wicket::config::Config {
    let mut cfg = config();
    cfg.demo.tickets_max = 1;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 0;
    cfg
}

/// The ticket cookie the browser holds for the current page: (name, domain, httpOnly).
async fn ticket_cookie(b: &Browser) -> (String, Option<String>, Option<bool>) {
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    let c = cookies
        .iter()
        .find(|c| c.name().ends_with("-stoken"))
        .expect("a ticket cookie");
    (
        c.name().to_owned(),
        c.domain().map(str::to_owned),
        c.http_only(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reaches_the_app_and_keeps_a_stateful_session() {
    let _one = ONE_BROWSER_TEST_AT_A_TIME.lock().await;
    bounded(async {
        let demo = start(config(), 2).await;
        let base = format!("http://{}", demo.proxy_addr);
        let driver = chromedriver().await;
        let b = browser(&driver, Options::default()).await;

        // Opens /demo/, is sent to a pod, the page comes through the proxy.
        b.open(&format!("{base}/{APP}/")).await;
        b.until(
            Duration::from_secs(20),
            "redirected to /demo/<pod>/<uid>/",
            || async { on_ticket(&b.url().await) },
        )
        .await;
        let first = segments(&b.url().await);
        assert_eq!(first[0], APP);
        assert_eq!(
            b.text("pod").await.as_deref(),
            Some(first[1].as_str()),
            "served by the pod in the URL"
        );
        // The app's WebSocket (through the proxy) counts up: a stateful session.
        b.until(
            Duration::from_secs(10),
            "the session counter increments",
            || async { b.counter().await >= 2 },
        )
        .await;
        b.screenshot("app").await;

        // The ticket cookie is HttpOnly: scripts cannot read it.
        let visible = b.js("return document.cookie").await;
        assert!(
            !visible.as_str().unwrap_or("").contains("stoken"),
            "document.cookie: {visible}"
        );
        let (name, _, http_only) = ticket_cookie(&b).await;
        assert_eq!(name, format!("{}-{}-stoken", first[1], first[2]));
        assert_eq!(http_only, Some(true), "the ticket cookie is HttpOnly");

        // A second tab of the same browser gets a ticket of its own.
        let tab1 = b.client.window().await.expect("window");
        let tab2 = b.client.new_window(true).await.expect("new tab").handle;
        b.client.switch_to_window(tab2).await.expect("switch");
        b.open(&format!("{base}/{APP}/")).await;
        b.until(Duration::from_secs(20), "tab 2 on a ticket", || async {
            on_ticket(&b.url().await)
        })
        .await;
        let second = segments(&b.url().await);
        assert_ne!(second[2], first[2], "a uid of its own");
        b.until(Duration::from_secs(10), "tab 2's counter", || async {
            b.counter().await >= 1
        })
        .await;
        assert_eq!(metric(&demo, "k8sticket_current_users_total").await, 2.0);

        // Closing the tab frees its slot after the expiry.
        b.client.close_window().await.expect("close tab 2");
        b.client
            .switch_to_window(tab1)
            .await
            .expect("back to tab 1");
        wait_for(Duration::from_secs(10), || async {
            metric(&demo, "k8sticket_current_users_total").await == 1.0
        })
        .await;
        // Tab 1's session went on meanwhile.
        let before = b.counter().await;
        b.until(Duration::from_secs(10), "tab 1 still counting", || async {
            b.counter().await > before
        })
        .await;

        // Leaving: the user closes the last tab of the session (closing, not
        // navigating away: Chromium keeps a page it may go back to, and its
        // WebSocket, open in the back/forward cache). After the expiry the
        // old address sends the user back with a word.
        let old = b.url().await;
        let tab3 = b.client.new_window(true).await.expect("new tab").handle;
        b.client.close_window().await.expect("close tab 1");
        b.client.switch_to_window(tab3).await.expect("switch");
        wait_for(Duration::from_secs(10), || async {
            metric(&demo, "k8sticket_current_users_total").await == 0.0
        })
        .await;
        b.open(&old).await;
        b.until(
            Duration::from_secs(10),
            "back at the waiting room",
            || async { b.url().await.ends_with("/demo/?ended=expired") },
        )
        .await;
        assert_eq!(
            b.text("state").await.as_deref(),
            Some("Your session has ended.")
        );
        b.screenshot("ended").await;
        b.client
            .find(Locator::LinkText("Open demo again"))
            .await
            .expect("the button")
            .click()
            .await
            .expect("click");
        b.until(Duration::from_secs(20), "a new session", || async {
            on_ticket(&b.url().await)
        })
        .await;
        assert_ne!(segments(&b.url().await)[2], first[2]);
        b.quit().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_app_shows_the_place_in_line_and_admits_when_a_tab_closes() {
    let _one = ONE_BROWSER_TEST_AT_A_TIME.lock().await;
    bounded(async {
        let demo = start(full_app(), 1).await;
        let base = format!("http://{}", demo.proxy_addr);
        let driver = chromedriver().await;
        let first = browser(&driver, Options::default()).await;
        first.open(&format!("{base}/{APP}/")).await;
        first
            .until(Duration::from_secs(20), "first user in", || async {
                on_ticket(&first.url().await)
            })
            .await;
        first
            .until(Duration::from_secs(10), "first user's counter", || async {
                first.counter().await >= 1
            })
            .await;

        // A second browser (own profile) waits: place 1 and an estimate.
        let second = browser(&driver, Options::default()).await;
        second.open(&format!("{base}/{APP}/")).await;
        second.until_waiting_at(Duration::from_secs(15), 1).await;
        assert_eq!(
            segments(&second.url().await),
            vec![APP.to_owned()],
            "still on the waiting page"
        );
        let state = second.text("state").await.unwrap_or_default();
        assert!(state.starts_with("Waiting for a free slot"), "{state}");
        let role = second
            .client
            .find(Locator::Id("live"))
            .await
            .expect("live region")
            .attr("role")
            .await;
        assert_eq!(role.ok().flatten().as_deref(), Some("status"));
        second.screenshot("waiting").await;
        second
            .client
            .set_window_size(390, 844)
            .await
            .expect("phone size");
        second.screenshot("waiting-phone").await;

        // Someone joins behind; a reload keeps the second user's place.
        let mut behind = connect_ws(demo.proxy_addr, APP).await;
        let s = read_ticket(&mut behind, Duration::from_millis(800)).await;
        assert!(s.messages.iter().any(|m| m == "pos#2"), "{:?}", s.messages);
        second.client.refresh().await.expect("reload");
        second
            .until(
                Duration::from_secs(10),
                "place 1 after a reload",
                || async { second.text("position").await.as_deref() == Some("1") },
            )
            .await;

        // The first user closes the tab: the second is admitted within seconds.
        let closed_at = Instant::now();
        first
            .client
            .close_window()
            .await
            .expect("close the first user's tab");
        second
            .until(
                Duration::from_secs(15),
                "the second user admitted",
                || async { on_ticket(&second.url().await) },
            )
            .await;
        let waited = closed_at.elapsed();
        assert!(
            waited < Duration::from_secs(8),
            "admitted {waited:?} after the tab closed"
        );
        second
            .until(Duration::from_secs(10), "second user's counter", || async {
                second.counter().await >= 1
            })
            .await;
        assert!(
            read_ticket(&mut behind, Duration::from_millis(300))
                .await
                .ticket
                .is_none(),
            "behind still waits"
        );
        first.quit().await;
        second.quit().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_browser_still_gets_in() {
    let _one = ONE_BROWSER_TEST_AT_A_TIME.lock().await;
    bounded(async {
        let mut cfg = full_app();
        // Polls hold up to half the grace period (2 s here).
        cfg.demo.resume_grace = Duration::from_secs(4);
        cfg.demo.display_name = "Demo <no script>".into();
        let demo = start(cfg, 1).await;
        let addr = demo.proxy_addr;
        let app = demo.apps.get(APP).expect("app");
        assert_eq!(app.resume_grace(), Duration::from_secs(4), "from [demo]");
        let holder = ticket(addr, APP, Duration::from_secs(5)).await;
        let keeper = keep_alive(addr, APP, &holder);

        let driver = chromedriver().await;
        let b = browser(
            &driver,
            Options {
                javascript: false,
                ..Options::default()
            },
        )
        .await;
        b.open(&format!("http://{addr}/{APP}/")).await;
        b.until(
            Duration::from_secs(15),
            "the no-script page shows place 1",
            || async {
                b.url().await.contains("/.wicket/poll")
                    && b.text("position").await.as_deref() == Some("1")
            },
        )
        .await;
        assert!(b.text("eta").await.is_some_and(|e| e.starts_with("about ")));
        assert_eq!(
            b.heading().await,
            "Demo <no script>",
            "from [demo], escaped"
        );
        b.screenshot("waiting-nojs").await;

        drop(keeper);
        b.until(
            Duration::from_secs(20),
            "on the app without JavaScript",
            || async { on_ticket(&b.url().await) },
        )
        .await;
        assert_eq!(b.text("pod").await.as_deref(), Some(holder.pod.as_str()));
        assert_eq!(
            b.text("ws-state").await.as_deref(),
            Some("connecting…"),
            "no script ran"
        );
        let (_, _, http_only) = ticket_cookie(&b).await;
        assert_eq!(http_only, Some(true));
        b.quit().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_mode_sends_the_browser_to_the_pods_subdomain() {
    let _one = ONE_BROWSER_TEST_AT_A_TIME.lock().await;
    bounded(async {
        let mut cfg = config();
        cfg.demo.dns = true;
        let demo = start(cfg, 2).await;
        let port = demo.proxy_addr.port();
        let driver = chromedriver().await;
        let rules = "MAP *.wicket.test 127.0.0.1, MAP wicket.test 127.0.0.1".to_owned();
        let b = browser(
            &driver,
            Options {
                host_rules: Some(rules),
                ..Options::default()
            },
        )
        .await;
        b.open(&format!("http://wicket.test:{port}/{APP}/")).await;
        let suffix = format!(".wicket.test:{port}");
        b.until(
            Duration::from_secs(20),
            "on <pod>.<uid>.wicket.test",
            || async {
                let url = b.url().await;
                host_of(&url).ends_with(&suffix) && host_of(&url).split('.').count() == 4
            },
        )
        .await;
        let url = b.url().await;
        assert_eq!(
            segments(&url),
            vec![APP.to_owned()],
            "the app at /<app>/ on the pod's host: {url}"
        );
        let pod = host_of(&url)
            .split('.')
            .next()
            .expect("pod label")
            .to_owned();
        assert_eq!(b.text("pod").await.as_deref(), Some(pod.as_str()));
        b.until(
            Duration::from_secs(10),
            "the counter over the subdomain",
            || async { b.counter().await >= 2 },
        )
        .await;
        let (_, domain, http_only) = ticket_cookie(&b).await;
        assert_eq!(
            domain.as_deref().map(|d| d.trim_start_matches('.')),
            Some("wicket.test"),
            "sent to every subdomain"
        );
        assert_eq!(http_only, Some(true));
        b.screenshot("app-dns").await;
        b.quit().await;
    })
    .await;
}
