//! Hot swap under load: the policy file is replaced while users hold tickets
//! and make requests. Nothing fails, no ticket is lost, and the next
//! decisions come from the new policy. A broken version is refused and the
//! last good one stays.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use http::StatusCode;
use sha2::{Digest, Sha256};

const APP: &str = "demo";

fn install(src: &std::path::Path, dest: &std::path::Path) {
    // Write beside, then rename: the watcher never sees half a file.
    let tmp = dest.with_extension("tmp");
    std::fs::copy(src, &tmp).expect("copy policy");
    std::fs::rename(&tmp, dest).expect("rename policy");
}

async fn active_digest(demo: &wicket::demo::Demo) -> String {
    let body = get(&client(), demo.metrics_addr, "/metrics", None, &[])
        .await
        .body;
    body.lines()
        .find(|l| l.starts_with("wicket_policy_info{"))
        .and_then(|l| l.split("digest=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_load_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.wasm");
    install(&policy_path("spare-tickets"), &policy);
    let mut cfg = config();
    cfg.policy.file = Some(policy.clone());
    cfg.demo.replicas = 2;
    cfg.demo.tickets_max = 4;
    cfg.demo.tickets_spare = 0;
    cfg.demo.pods_max = 0;
    // Ignored by the default policy; the new one spreads users out with it.
    cfg.demo.policy_config = "spread".into();
    let demo = start(cfg, 8).await;
    let addr = demo.proxy_addr;

    // The default policy packs: the second user joins the first one's pod.
    let t1 = ticket(addr, APP, Duration::from_secs(5)).await;
    let t2 = ticket(addr, APP, Duration::from_secs(5)).await;
    assert_eq!(t1.pod, t2.pod, "packing");

    // Users keep making requests through the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for t in [&t1, &t2] {
        let (path, cookie) = (t.prefix(APP), t.cookie());
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let r = get(&c, addr, &format!("{path}hello"), Some(&cookie), &[]).await;
                let counter = if r.status == StatusCode::OK {
                    &ok
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let new = policy_path("faulty");
    let new_digest = hex::encode(Sha256::digest(std::fs::read(&new).expect("read")));
    install(&new, &policy);
    wait_for(Duration::from_secs(15), || async {
        active_digest(&demo).await == new_digest
    })
    .await;

    // The new policy decides now: the next user goes to the emptier pod.
    let t3 = ticket(addr, APP, Duration::from_secs(5)).await;
    assert_ne!(t3.pod, t1.pod, "spread by the new policy");

    // A broken version is refused; the last good one stays active.
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0 definitely not a component").expect("write");
    install(&broken, &policy);
    wait_for(Duration::from_secs(15), || async {
        metric(&demo, "wicket_policy_load_errors_total").await >= 1.0
    })
    .await;
    assert_eq!(active_digest(&demo).await, new_digest, "last good kept");
    let t4 = ticket(addr, APP, Duration::from_secs(5)).await;
    assert!(!t4.pod.is_empty());

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the swaps",
        ok + failed
    );
    assert!(ok > 50, "the load really ran ({ok} requests)");
    let c = client();
    for t in [&t1, &t2] {
        assert_eq!(
            get(&c, addr, &t.prefix(APP), Some(&t.cookie()), &[])
                .await
                .status,
            StatusCode::OK,
            "ticket kept"
        );
    }
    assert_eq!(metric(&demo, "wicket_policy_faults_total").await, 0.0);
}
