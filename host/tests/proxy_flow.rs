//! The user flow on loopback: real WebSocket and HTTP clients, real demo-app
//! backend processes, the k8sTicket URL and cookie scheme.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

const APP: &str = "demo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_then_proxied_request_with_cookie_checks() {
    let demo = start(config(), 2).await;
    let c = client();
    let addr = demo.proxy_addr;

    let page = get(&c, addr, "/demo/", None, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("/ws"),
        "waiting page opens the ticket socket"
    );
    assert_eq!(
        get(&c, addr, "/demo", None, &[]).await.status,
        StatusCode::OK
    );

    let t = ticket(addr, APP, Duration::from_secs(5)).await;
    assert_eq!(t.token.len(), 32, "128-bit token in hex");

    // k8sTicket's JavaScript cookie scheme.
    let ok = get(
        &c,
        addr,
        &t.prefix(APP),
        Some(&t.cookie()),
        &[("host", "users.example")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(
        ok.body.contains(&t.pod),
        "the demo page names the pod that served it"
    );
    assert!(
        ok.body.contains(&format!("/{APP}/{}/{}", t.pod, t.uid)),
        "X-Forwarded-Prefix reached the backend"
    );
    let hello = get(
        &c,
        addr,
        &format!("{}hello?x=1", t.prefix(APP)),
        Some(&t.cookie()),
        &[],
    )
    .await;
    assert_eq!(
        hello.body, "hello, world\n",
        "prefix stripped and path forwarded"
    );

    // Missing cookie, forged token, wrong uid, unknown pod.
    let none = get(&c, addr, &t.prefix(APP), None, &[]).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    assert!(none.body.contains("Session expired!"));
    let forged = format!("{}-{}-stoken={}", t.pod, t.uid, "0".repeat(32));
    let r = get(&c, addr, &t.prefix(APP), Some(&forged), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("You do not have access"));
    let garbage = format!("{}-{}-stoken=%00%zz<script>", t.pod, t.uid);
    assert_eq!(
        get(&c, addr, &t.prefix(APP), Some(&garbage), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let wrong_uid = format!("/{APP}/{}/ffffffffffff/", t.pod);
    let cookie_for_wrong = format!("{}-ffffffffffff-stoken={}", t.pod, t.token);
    assert_eq!(
        get(&c, addr, &wrong_uid, Some(&cookie_for_wrong), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let unknown_pod = get(
        &c,
        addr,
        &format!("/{APP}/no-such-pod/{}/", t.uid),
        Some(&t.cookie()),
        &[],
    )
    .await;
    assert_eq!(unknown_pod.status, StatusCode::FOUND);
    assert_eq!(unknown_pod.headers["location"], "/demo/");

    // Malformed and hostile paths: clear 4xx, never a 5xx.
    for (path, want) in [
        (
            format!("{}..%2f..%2fetc/passwd", t.prefix(APP)),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{}%2e%2e/secret", t.prefix(APP)),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/{APP}/{}/{}/", "p".repeat(300), t.uid),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/{APP}/{}", "x/".repeat(5000)),
            StatusCode::URI_TOO_LONG,
        ),
        ("/no-such-app/".to_owned(), StatusCode::NOT_FOUND),
        ("/".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let r = get(&c, addr, &path, Some(&t.cookie()), &[]).await;
        assert_eq!(r.status, want, "{path}");
    }
    let huge_cookie = format!("{}; pad={}", t.cookie(), "x".repeat(20_000));
    let r = get(&c, addr, &t.prefix(APP), Some(&huge_cookie), &[]).await;
    assert!(
        r.status.is_client_error(),
        "oversized cookie header: {}",
        r.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_sets_http_only_cookie() {
    let demo = start(config(), 2).await;
    let c = client();
    let bind = bind_cookie(demo.proxy_addr, APP).await;
    let (t, proof) = ticket_with_cookie(demo.proxy_addr, APP, &bind, Duration::from_secs(5)).await;
    let proof = proof.expect("a claim proof comes with the ticket");
    let claim = format!("{}.wicket/claim?token={}&c={proof}", t.prefix(APP), t.token);
    let r = get(&c, demo.proxy_addr, &claim, Some(&bind), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers["location"], t.prefix(APP));
    let set = r.headers["set-cookie"].to_str().expect("ascii");
    assert!(set.starts_with(&t.cookie()), "{set}");
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Lax")
            && set.contains(&format!("Path={}", t.prefix(APP)))
    );
    let bad = format!(
        "{}.wicket/claim?token={}&c={proof}",
        t.prefix(APP),
        "1".repeat(32)
    );
    assert_eq!(
        get(&c, demo.proxy_addr, &bad, Some(&bind), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_link_works_only_in_the_browser_the_ticket_went_to() {
    let demo = start(config(), 2).await;
    let c = client();
    // The old form of the link (the token alone) plants nothing.
    let t = ticket(demo.proxy_addr, APP, Duration::from_secs(5)).await;
    let old = format!("{}.wicket/claim?token={}", t.prefix(APP), t.token);
    let r = get(&c, demo.proxy_addr, &old, None, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.headers.get("set-cookie").is_none());
    // The attacker's own ticket, claimed properly in the attacker's browser.
    let attacker = bind_cookie(demo.proxy_addr, APP).await;
    let (t, proof) =
        ticket_with_cookie(demo.proxy_addr, APP, &attacker, Duration::from_secs(5)).await;
    let proof = proof.expect("proof");
    let link = format!("{}.wicket/claim?token={}&c={proof}", t.prefix(APP), t.token);
    // The victim opens the attacker's link: with their own binding, or
    // none, the ticket is not planted.
    let victim = bind_cookie(demo.proxy_addr, APP).await;
    assert_ne!(victim, attacker, "every browser gets its own binding");
    for cookie in [Some(victim.as_str()), None] {
        let r = get(&c, demo.proxy_addr, &link, cookie, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{cookie:?}");
        assert!(r.headers.get("set-cookie").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_ticket_expires_and_frees_its_slot() {
    let demo = start(config(), 2).await;
    let c = client();
    let t = ticket(demo.proxy_addr, APP, Duration::from_secs(5)).await;
    assert_eq!(metric(&demo, "k8sticket_current_users_total").await, 1.0);
    // Used now and then: stays.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            get(&c, demo.proxy_addr, &t.prefix(APP), Some(&t.cookie()), &[])
                .await
                .status,
            StatusCode::OK
        );
    }
    // Unused for longer than the expiry (600 ms here): gone.
    wait_for(Duration::from_secs(5), || async {
        metric(&demo, "k8sticket_current_users_total").await == 0.0
    })
    .await;
    let r = get(&c, demo.proxy_addr, &t.prefix(APP), Some(&t.cookie()), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(metric(&demo, "k8sticket_users_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_proxy_keeps_ticket_alive() {
    let demo = start(config(), 2).await;
    let t = ticket(demo.proxy_addr, APP, Duration::from_secs(5)).await;
    let url = format!("ws://{}{}counter", demo.proxy_addr, t.prefix(APP));
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("request");
    req.headers_mut()
        .insert("cookie", t.cookie().parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket through the proxy");
    // Three expiry periods with an open socket and sparse traffic.
    for expected in 1..=3u64 {
        ws.send(Message::text("inc")).await.expect("send");
        let reply = ws.next().await.expect("reply").expect("frame");
        assert_eq!(
            reply.to_text().expect("text"),
            expected.to_string(),
            "the backend session counter"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(
        metric(&demo, "k8sticket_current_users_total").await,
        1.0,
        "open socket keeps the ticket"
    );
    let c = client();
    assert_eq!(
        get(&c, demo.proxy_addr, &t.prefix(APP), Some(&t.cookie()), &[])
            .await
            .status,
        StatusCode::OK
    );
    drop(ws);
    wait_for(Duration::from_secs(5), || async {
        metric(&demo, "k8sticket_current_users_total").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_mode_cookies_never_take_their_domain_from_the_client() {
    let mut cfg = config();
    cfg.demo.dns = true;
    cfg.proxy.dns_domain = "wicket.test".into();
    let demo = start(cfg, 2).await;
    let c = client();
    let t = ticket(demo.proxy_addr, APP, Duration::from_secs(5)).await;
    // A host under another domain is no DNS-mode host: nothing is set
    // for it, whatever the request carries.
    let evil = format!("{}.{}.evil.test", t.pod, t.uid);
    let claim = format!("/demo/.wicket/claim?token={}", t.token);
    let r = get(&c, demo.proxy_addr, &claim, None, &[("host", &evil)]).await;
    assert!(r.headers.get("set-cookie").is_none(), "{:?}", r.headers);
    let r = get(
        &c,
        demo.proxy_addr,
        "/demo/hello",
        Some(&t.cookie()),
        &[("host", &evil)],
    )
    .await;
    assert_ne!(
        r.body, "hello, world\n",
        "not forwarded under a foreign domain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_mode_routes_by_host() {
    let mut cfg = config();
    cfg.demo.dns = true;
    cfg.proxy.dns_domain = "wicket.test".into();
    let demo = start(cfg, 2).await;
    let c = client();
    let bind = bind_cookie(demo.proxy_addr, APP).await;
    let (t, proof) = ticket_with_cookie(demo.proxy_addr, APP, &bind, Duration::from_secs(5)).await;
    let proof = proof.expect("proof");
    let host = format!("{}.{}.wicket.test", t.pod, t.uid);
    let r = get(
        &c,
        demo.proxy_addr,
        "/demo/hello",
        Some(&t.cookie()),
        &[("host", &host)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, "hello, world\n");
    let claim = format!("/demo/.wicket/claim?token={}&c={proof}", t.token);
    let r = get(&c, demo.proxy_addr, &claim, Some(&bind), &[("host", &host)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let set = r.headers["set-cookie"].to_str().expect("ascii");
    assert!(
        set.contains("Domain=wicket.test") && set.contains("Path=/demo/"),
        "{set}"
    );

    // The base host still serves the waiting page.
    assert_eq!(
        get(
            &c,
            demo.proxy_addr,
            "/demo/",
            None,
            &[("host", "wicket.test")]
        )
        .await
        .status,
        StatusCode::OK
    );
}
