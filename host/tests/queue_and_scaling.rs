//! Waiting queue, draining and spare-ticket scaling in demo mode, with real
//! backend processes created and deleted by the policy's decisions.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use wicket::provider::PodEvent;

const APP: &str = "demo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_app_queues_first_come_first_served() {
    let mut cfg = config();
    cfg.demo.tickets_max = 1;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 0;
    let demo = start(cfg, 1).await;
    let addr = demo.proxy_addr;
    let c = client();

    let first = ticket(addr, APP, Duration::from_secs(5)).await;
    let keeper = keep_alive(addr, APP, &first);
    let mut second = connect_ws(addr, APP).await;
    let s = read_ticket(&mut second, Duration::from_millis(400)).await;
    assert!(s.ticket.is_none(), "the only slot is taken");
    assert!(
        s.messages
            .iter()
            .any(|m| m.starts_with("msg#Waiting for a free application slot")),
        "{:?}",
        s.messages
    );
    assert!(s.messages.iter().any(|m| m == "pos#1"), "{:?}", s.messages);
    let mut third = connect_ws(addr, APP).await;
    let s = read_ticket(&mut third, Duration::from_millis(400)).await;
    assert!(s.messages.iter().any(|m| m == "pos#2"), "{:?}", s.messages);
    assert_eq!(metric(&demo, "wicket_waiting_users").await, 2.0);
    assert_eq!(
        metric(&demo, "wicket_leader").await,
        1.0,
        "alone, outside Kubernetes: its own leader"
    );

    // While the first user is active nobody is admitted.
    assert!(
        read_ticket(&mut second, Duration::from_secs(1))
            .await
            .ticket
            .is_none()
    );
    drop(keeper);
    // The first user leaves (stops using the ticket): the second is served, not the third.
    let s2 = read_ticket(&mut second, Duration::from_secs(5)).await;
    let t2 = s2.ticket.expect("second user admitted when the slot frees");
    let s3 = read_ticket(&mut third, Duration::from_millis(200)).await;
    assert!(s3.ticket.is_none(), "third still waits");
    assert_eq!(
        get(&c, addr, &t2.prefix(APP), Some(&t2.cookie()), &[])
            .await
            .status,
        StatusCode::OK
    );
    let t3 = read_ticket(&mut third, Duration::from_secs(5))
        .await
        .ticket
        .expect("third admitted later");
    assert_eq!(t3.pod, first.pod);
    assert_eq!(metric(&demo, "wicket_waiting_users").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_user_who_leaves_loses_the_place() {
    let mut cfg = config();
    cfg.demo.tickets_max = 1;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 0;
    let demo = start(cfg, 1).await;
    let _first = ticket(demo.proxy_addr, APP, Duration::from_secs(5)).await;
    let mut second = connect_ws(demo.proxy_addr, APP).await;
    let _ = read_ticket(&mut second, Duration::from_millis(300)).await;
    assert_eq!(metric(&demo, "wicket_waiting_users").await, 1.0);
    drop(second);
    wait_for(Duration::from_secs(5), || async {
        metric(&demo, "wicket_waiting_users").await == 0.0
    })
    .await;
    // The freed slot goes to the next user, not to the one who left.
    let third = ticket(demo.proxy_addr, APP, Duration::from_secs(5)).await;
    assert!(!third.pod.is_empty());
    assert_eq!(metric(&demo, "k8sticket_users_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_pod_serves_its_users_but_takes_no_new_ones() {
    let mut cfg = config();
    cfg.demo.tickets_max = 2;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 0;
    let demo = start(cfg, 2).await;
    let c = client();
    let app = demo.apps.get(APP).expect("app");
    let t = ticket(demo.proxy_addr, APP, Duration::from_secs(5)).await;
    app.apply(PodEvent::Gone {
        app: APP.into(),
        name: t.pod.clone(),
    });
    assert_eq!(
        metric(&demo, "k8sticket_current_free_tickets_total").await,
        0.0
    );
    // The user on the draining pod keeps being served.
    for _ in 0..3 {
        assert_eq!(
            get(&c, demo.proxy_addr, &t.prefix(APP), Some(&t.cookie()), &[])
                .await
                .status,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A new user gets nothing from it.
    let mut other = connect_ws(demo.proxy_addr, APP).await;
    assert!(
        read_ticket(&mut other, Duration::from_millis(500))
            .await
            .ticket
            .is_none()
    );
    // When the last ticket ends the pod leaves the list.
    wait_for(Duration::from_secs(5), || async { !app.has_pod(&t.pod) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_tickets_scale_up_and_idle_pods_scale_down() {
    let mut cfg = config();
    cfg.demo.tickets_max = 1;
    cfg.demo.tickets_spare = 1;
    cfg.demo.pods_max = 2;
    cfg.demo.cooldown_seconds = 1;
    cfg.demo.pod_start_delay_ms = 300;
    let demo = start(cfg, 1).await;
    let addr = demo.proxy_addr;
    let c = client();
    let scaled = || async { metric(&demo, "k8sticket_scaled_pods_total").await };
    let free = || async { metric(&demo, "k8sticket_current_free_tickets_total").await };
    wait_for(Duration::from_secs(10), || async {
        scaled().await == 0.0 && free().await == 1.0
    })
    .await;

    // One user takes the replica's slot: the spare is gone, a pod is created.
    let a = ticket(addr, APP, Duration::from_secs(5)).await;
    let _ka = keep_alive(addr, APP, &a);
    wait_for(Duration::from_secs(10), || async {
        scaled().await == 1.0 && free().await == 1.0
    })
    .await;
    let b = ticket(addr, APP, Duration::from_secs(5)).await;
    let _kb = keep_alive(addr, APP, &b);
    assert_ne!(a.pod, b.pod, "one ticket per pod");
    assert!(b.pod.contains("-k8sticket-autoscaled-"), "{}", b.pod);
    // pods.max = 2 is the ceiling, whatever the demand.
    wait_for(Duration::from_secs(10), || async {
        scaled().await == 2.0 && free().await == 1.0
    })
    .await;
    let c3 = ticket(addr, APP, Duration::from_secs(5)).await;
    let _kc = keep_alive(addr, APP, &c3);
    let mut d = connect_ws(addr, APP).await;
    assert!(
        read_ticket(&mut d, Duration::from_millis(700))
            .await
            .ticket
            .is_none(),
        "full at pods.max"
    );
    assert_eq!(scaled().await, 2.0);
    drop(d);
    assert_eq!(
        get(&c, addr, &b.prefix(APP), Some(&b.cookie()), &[])
            .await
            .status,
        StatusCode::OK
    );

    // Everyone leaves: idle autoscaled pods go after the cooldown, the
    // replica stays.
    drop((_ka, _kb, _kc));
    wait_for(Duration::from_secs(15), || async { scaled().await == 0.0 }).await;
    assert_eq!(free().await, 1.0, "the replica is never deleted");
    assert_eq!(metric(&demo, "k8sticket_current_users_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_requests_never_overfill_and_the_rest_wait_their_turn() {
    // Two slots on one pod, eight users at once: decisions made in parallel
    // pick the same pod, and only the state at issue time may decide.
    let mut cfg = config();
    cfg.demo.tickets_max = 2;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 0;
    cfg.proxy.ticket_expiry_ms = 1500;
    let demo = start(cfg, 2).await;
    let addr = demo.proxy_addr;
    let mut sockets = futures_util::future::join_all((0..8).map(|_| connect_ws(addr, APP))).await;
    let first = futures_util::future::join_all(
        sockets
            .iter_mut()
            .map(|ws| read_ticket(ws, Duration::from_millis(500))),
    )
    .await;
    let admitted = first.iter().filter(|s| s.ticket.is_some()).count();
    assert_eq!(admitted, 2, "exactly the two slots are given out");
    assert_eq!(metric(&demo, "k8sticket_users_total").await, 2.0);
    assert_eq!(metric(&demo, "wicket_waiting_users").await, 6.0);

    // The others wait, each at a place of their own.
    let mut waiting: Vec<(usize, WsStream)> = Vec::new();
    for (session, ws) in first.iter().zip(sockets) {
        if session.ticket.is_some() {
            continue;
        }
        let place = session
            .messages
            .iter()
            .rev()
            .find_map(|m| m.strip_prefix("pos#")?.parse().ok())
            .expect("a waiting user is told their place");
        waiting.push((place, ws));
    }
    waiting.sort_by_key(|(place, _)| *place);
    let places: Vec<usize> = waiting.iter().map(|(p, _)| *p).collect();
    assert_eq!(places, [1, 2, 3, 4, 5, 6]);

    // Unused tickets expire, two at a time: everyone is served, in order.
    let started = tokio::time::Instant::now();
    let served = futures_util::future::join_all(waiting.iter_mut().map(|(_, ws)| async {
        let s = read_ticket(ws, Duration::from_secs(15)).await;
        (s.ticket.is_some(), started.elapsed())
    }))
    .await;
    assert!(
        served.iter().all(|(got, _)| *got),
        "nobody is lost: {served:?}"
    );
    // Rounds are an expiry (1.5 s) apart; within one, order may jitter.
    for pair in served.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1 + Duration::from_millis(500),
            "served out of order: {served:?}"
        );
    }
    assert_eq!(metric(&demo, "k8sticket_users_total").await, 8.0);
    assert_eq!(metric(&demo, "wicket_waiting_users").await, 0.0);
}

/// The shipped scale-to-zero example (examples/policies/scale-to-zero) as
/// the app's policy: no pods until the first user asks; that user waits
/// while a pod starts, is admitted when it is ready, and the app goes back
/// to no pods once the user has left and the pod was idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_starts_a_pod_for_the_first_user_and_returns_to_none() {
    let mut cfg = config();
    cfg.demo.replicas = 0;
    cfg.demo.tickets_max = 1;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 2;
    cfg.demo.cooldown_seconds = 1;
    cfg.demo.pod_start_delay_ms = 500;
    cfg.policy.file = Some(policy_path("scale-to-zero"));
    let demo = wicket::demo::start(cfg, exe()).await.expect("demo starts");
    let addr = demo.proxy_addr;
    // Nothing runs while nobody asks (a few rounds of the app's loop).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(metric(&demo, "k8sticket_scaled_pods_total").await, 0.0);
    assert_eq!(
        metric(&demo, "k8sticket_current_free_tickets_total").await,
        0.0
    );

    let mut ws = connect_ws(addr, APP).await;
    let s = read_ticket(&mut ws, Duration::from_secs(15)).await;
    assert!(
        s.messages.iter().any(|m| m == "pos#1"),
        "the first user waits for the pod: {:?}",
        s.messages
    );
    let t = s.ticket.expect("admitted once the new pod is ready");
    let r = get(&client(), addr, &t.prefix(APP), Some(&t.cookie()), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(metric(&demo, "k8sticket_scaled_pods_total").await, 1.0);
    // It was the example that decided (no fault sent the app to the default).
    assert_eq!(
        metric_at(demo.metrics_addr, "wicket_policy_info", "scale_to_zero").await,
        1.0
    );
    assert_eq!(metric(&demo, "wicket_policy_faults_total").await, 0.0);

    // The user leaves: the ticket expires, the pod idles for the cooldown
    // and goes; nothing is kept warm.
    wait_for(Duration::from_secs(20), || async {
        metric(&demo, "k8sticket_scaled_pods_total").await == 0.0
    })
    .await;
}
