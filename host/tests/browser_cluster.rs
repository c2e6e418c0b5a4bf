//! The user's path in a real browser against the Kubernetes mode: headless
//! Chromium over WebDriver against `wicket run` (in-process, with the token
//! of deploy/'s ServiceAccount) on a REAL kube-apiserver and etcd. The test
//! plays kubelet: it runs the pod wicket creates as a real `wicket
//! demo-app` on 127.0.x.y and reports it Running/Ready.
//!
//! Needs the control plane (`scripts/cluster/build.sh`) and Debian's
//! chromium and chromium-driver (`scripts/browser-deps.sh`); without either
//! the test fails and says how to install it. Screenshots land in
//! `target/screenshots/cluster-*.png`.

#![allow(clippy::unwrap_used)] // tests

mod browser_support;
mod cluster;
mod common;

use std::time::{Duration, Instant};

use browser_support::*;
use cluster::*;
use common::metric_at;
use kube::ResourceExt;
use wicket::kube::annotations as ann;

const APP: &str = "atlas";
/// Shown instead of the URL name; the `<…>` checks that it is escaped, not
/// parsed as markup.
const TITLE: &str = "Gene Atlas <beta> — Lab 3";
const LIMIT: Duration = Duration::from_secs(20);

/// A cluster, a host and two browsers: bounded, so a stuck browser or
/// apiserver fails the test instead of hanging the suite.
async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(240), test)
        .await
        .expect("the browser test finished within 240 s");
}

/// One pod of one slot (tickets.max 1, pods.max 1, no replicas): the first
/// user waits while wicket's pod starts, is admitted onto it through the
/// ticket and keeps a stateful WebSocket session through the proxy; a
/// second user (another browser) waits at place 1 under the display name
/// and is admitted when the first closes the tab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_users_get_a_pod_of_a_kubernetes_app_and_wait_in_line() {
    bounded(async {
        let mut env = Env::start(host_config()).await;
        let (_, app) = env
            .deploy(
                APP,
                &[
                    (ann::TICKETS_MAX, "1"),
                    (ann::TICKETS_SPARE, "1"),
                    (ann::PODS_MAX, "1"),
                    (ann::DISPLAY_NAME, TITLE),
                    (ann::RESUME_GRACE, "5s"),
                ],
                &[],
            )
            .await;
        // The controller publishes the app a moment before it applies the
        // settings, so wait for them rather than assert at once.
        wait_for(LIMIT, || async {
            &*app.display_name() == TITLE && app.resume_grace() == Duration::from_secs(5)
        })
        .await;
        let base = format!("http://{}", env.host.proxy_addr);
        // Free 0 < spare 1: wicket asks the apiserver for a pod at once.
        wait_for(LIMIT, || async { env.autoscaled(APP).await.len() == 1 }).await;
        let pod = env.autoscaled(APP).await.remove(0).name_any();

        let driver = chromedriver().await;
        let first = browser(&driver, Options::default()).await;
        first.open(&format!("{base}/{APP}/")).await;
        // The pod is not running yet: the waiting page, under the display
        // name, says an instance is starting for this user.
        first
            .until(LIMIT, "the first user sees the pod starting", || async {
                first.text("state").await.as_deref() == Some("Starting a new instance for you…")
            })
            .await;
        assert_eq!(first.heading().await, TITLE);
        let title = first.client.title().await.expect("title");
        assert!(title.starts_with(TITLE), "document title {title:?}");
        first.screenshot("cluster-waiting-starting").await;

        // The kubelet's part: the pod runs and is Ready → the ticket → the pod.
        env.kubelet.run(&pod).await;
        first
            .until(LIMIT, "the first user on /atlas/<pod>/<uid>/", || async {
                on_ticket(&first.url().await)
            })
            .await;
        let url = segments(&first.url().await);
        assert_eq!((url[0].as_str(), url[1].as_str()), (APP, pod.as_str()));
        assert_eq!(
            first.text("pod").await.as_deref(),
            Some(pod.as_str()),
            "served by the pod through the proxy"
        );
        first
            .until(LIMIT, "the session counter increments", || async {
                first.counter().await >= 2
            })
            .await;
        first.screenshot("cluster-app").await;

        // A second browser (own profile): the one slot is taken and pods.max
        // is reached, so it waits at place 1 with an estimate.
        let second = browser(&driver, Options::default()).await;
        second.open(&format!("{base}/{APP}/")).await;
        second.until_waiting_at(LIMIT, 1).await;
        assert_eq!(second.heading().await, TITLE);
        assert_eq!(segments(&second.url().await), vec![APP.to_owned()]);
        let state = second.text("state").await.unwrap_or_default();
        assert!(state.starts_with("Waiting for a free slot"), "{state}");
        second.screenshot("cluster-waiting").await;
        assert_eq!(
            env.autoscaled(APP).await.len(),
            1,
            "never more than pods.max"
        );

        // The first user closes the tab: the second is admitted within
        // seconds, onto the same pod.
        let closed_at = Instant::now();
        first.client.close_window().await.expect("close the tab");
        second
            .until(LIMIT, "the second user admitted", || async {
                on_ticket(&second.url().await)
            })
            .await;
        let waited = closed_at.elapsed();
        assert!(
            waited < Duration::from_secs(8),
            "admitted {waited:?} after the tab closed"
        );
        assert_eq!(segments(&second.url().await)[1], pod);
        assert_ne!(segments(&second.url().await)[2], url[2], "a uid of its own");
        second
            .until(LIMIT, "the second user's counter", || async {
                second.counter().await >= 1
            })
            .await;
        assert_eq!(
            metric_at(env.host.metrics_addr, "k8sticket_current_users_total", APP).await,
            1.0
        );
        first.quit().await;
        second.quit().await;
    })
    .await;
}
