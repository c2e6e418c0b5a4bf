//! Policies that trap, loop, allocate without bound or answer nonsense: the
//! host keeps serving, keeps every ticket, answers from the last good
//! policy and counts the fault. Refused components never become active.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

const APP: &str = "demo";

/// Runs the demo with the faulty policy in `mode` and checks that users are
/// still served by the fallback.
async fn survives(mode: &str, kind: &str) {
    survives_with(mode, kind, |_| {}).await;
}

async fn survives_with(mode: &str, kind: &str, tune: impl FnOnce(&mut wicket::config::Config)) {
    let mut cfg = config();
    tune(&mut cfg);
    cfg.policy.file = Some(policy_path("faulty"));
    cfg.demo.policy_config = mode.to_owned();
    cfg.demo.tickets_max = 2;
    let demo = wicket::demo::start(cfg, exe())
        .await
        .expect("a policy that passes the dry run is accepted");
    let c = client();
    // Users get tickets and are served although the policy misbehaves.
    let mut tickets = Vec::new();
    for _ in 0..3 {
        let t = ticket(demo.proxy_addr, APP, Duration::from_secs(10)).await;
        assert_eq!(
            get(&c, demo.proxy_addr, &t.prefix(APP), Some(&t.cookie()), &[])
                .await
                .status,
            StatusCode::OK
        );
        tickets.push(t);
    }
    let faults = metric_at(
        demo.metrics_addr,
        "wicket_policy_faults_total",
        &format!("kind=\"{kind}\""),
    )
    .await;
    assert!(
        faults >= 1.0,
        "{mode}: fault of kind {kind} counted (got {faults})"
    );
    assert!(
        metric(&demo, "wicket_policy_fallbacks_total").await >= 1.0,
        "{mode}: fallback counted"
    );
    // The faulty policy is retired: the default answers now.
    let info = get(&c, demo.metrics_addr, "/metrics", None, &[]).await.body;
    assert!(
        info.contains("source=\"embedded:spare-tickets\""),
        "{mode}: default active after the fault"
    );
    // No ticket was lost.
    for t in &tickets {
        assert_eq!(
            get(&c, demo.proxy_addr, &t.prefix(APP), Some(&t.cookie()), &[])
                .await
                .status,
            StatusCode::OK,
            "{mode}"
        );
    }
    assert_eq!(
        metric(&demo, "k8sticket_current_users_total").await,
        3.0,
        "{mode}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap() {
    survives("trap", "trap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop() {
    survives("loop", "timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation() {
    // A generous deadline, so that only the memory cap can stop it (filling
    // 16 MiB can take longer than 10 ms on a loaded machine).
    survives_with("alloc", "memory", |c| c.policy.timeout_ms = 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_to_full_or_unready_pod() {
    survives("assign-full", "invariant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_to_unknown_pod() {
    survives("assign-unknown", "invariant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_busy_or_replica_pods() {
    survives("delete-busy", "invariant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceed_pods_max() {
    survives("overscale", "invariant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_spam_cannot_stall_the_host() {
    // 10 000 log lines per call: the host writes a few (rate limit) and the
    // call either finishes or hits its deadline (then the default answers).
    let mut cfg = config();
    cfg.policy.file = Some(policy_path("faulty"));
    cfg.demo.policy_config = "log-spam".into();
    let demo = start(cfg, 2).await;
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let t = ticket(demo.proxy_addr, APP, Duration::from_secs(10)).await;
        assert_eq!(
            get(
                &client(),
                demo.proxy_addr,
                &t.prefix(APP),
                Some(&t.cookie()),
                &[]
            )
            .await
            .status,
            StatusCode::OK
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "tickets were issued promptly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_major_version_is_refused_with_a_clear_message() {
    let mut cfg = config();
    cfg.policy.file = Some(policy_path("other-major"));
    let err = format!(
        "{:#}",
        wicket::demo::start(cfg, exe()).await.expect_err("refused")
    );
    // Names the component's version and both the host speaks.
    assert!(
        err.contains("@1.0.0") && err.contains("@0.2.0") && err.contains("@0.1.0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"\0asm this is not a component").expect("write");
    let mut cfg = config();
    cfg.policy.file = Some(path);
    let err = format!(
        "{:#}",
        wicket::demo::start(cfg, exe()).await.expect_err("refused")
    );
    assert!(err.contains("not a valid WebAssembly component"), "{err}");
}

/// A large component is announced on stderr before the seconds of
/// compression; stdout stays the YAML that is piped to kubectl.
#[test]
fn policy_configmap_cli_announces_a_large_component_on_stderr_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("big.wasm");
    // Only the magic is checked: a component-sized file of varied bytes.
    let mut bytes = b"\0asm".to_vec();
    bytes.extend((0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    std::fs::write(&file, &bytes).expect("write");
    let out = std::process::Command::new(exe())
        .args(["policy", "configmap", "--name", "big"])
        .arg(&file)
        .output()
        .expect("runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with(&format!("compressing {} (5.0 MB)", file.display())),
        "{stderr}"
    );
    assert!(!stdout.contains("compressing"));
    for doc in stdout.split("---\n").filter(|d| !d.is_empty()) {
        assert!(
            doc.starts_with("apiVersion: "),
            "not a ConfigMap: {doc:.80}"
        );
    }
}

#[test]
fn policy_check_cli() {
    let ok = std::process::Command::new(exe())
        .args(["policy", "check"])
        .arg(policy_path("spare-tickets"))
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The default speaks the host's own contract: the version, and what it
    // costs, line by line.
    for line in [
        "wicket:policy/decide@0.2.0 (the host's own version)",
        "size ",
        "compile ",
        "instantiate ",
        "sample \"100 pods\"",
        "   10 pods",
        "  100 pods",
        " 1000 pods",
        "peak memory",
        // Fits or not: the timings of a debug build on a busy machine say
        // little, so only the verdict's presence is checked.
        "limits: ",
    ] {
        assert!(out.contains(line), "{line:?} missing in:\n{out}");
    }

    // A component of the older contract loads through the adapter, and
    // says so.
    let v01 = std::process::Command::new(exe())
        .args(["policy", "check"])
        .arg(policy_path("contract-0.1"))
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&v01.stdout);
    assert!(v01.status.success(), "{out}");
    assert!(
        out.contains("wicket:policy/decide@0.1.0 (an older version"),
        "{out}"
    );

    let v02 = std::process::Command::new(exe())
        .args([
            "policy",
            "check",
            "--memory-mib",
            "64",
            "--timeout-ms",
            "500",
        ])
        .arg(policy_path("contract-0.2"))
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&v02.stdout);
    assert!(v02.status.success(), "{out}");
    assert!(
        out.contains("wicket:policy/decide@0.2.0 (the host's own version)")
            && out.contains("checked under timeout 500 ms, memory 64 MiB"),
        "{out}"
    );

    // Under a memory cap it cannot start in, it is refused, and says why.
    let small = std::process::Command::new(exe())
        .args(["policy", "check", "--memory-mib", "1"])
        .arg(policy_path("contract-0.2"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(!small.status.success());
    assert!(err.contains("memory limit of 1 MiB"), "{err}");

    let bad = std::process::Command::new(exe())
        .args(["policy", "check"])
        .arg(policy_path("other-major"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("@1.0.0") && err.contains("accepts 0.1.x and 0.2.x"),
        "{err}"
    );
}
