//! End-to-end tests against a REAL kube-apiserver and etcd (one per test,
//! from scripts/cluster/). No kubelet: the tests play it (pod status patched
//! through the status subresource, a real backend on 127.0.x.y). The host
//! runs in-process with the token of deploy/'s ServiceAccount, so every test
//! also proves that deploy/'s Role is enough.
//!
//! Needs the control-plane binaries: `scripts/cluster/build.sh` (cached).

#![allow(clippy::unwrap_used)] // tests

mod cluster;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cluster::*;
use common::{client, get, metric_at, ticket};
use http::StatusCode;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use wicket::kube::annotations as ann;

const LIMIT: Duration = Duration::from_secs(20);
/// deploy/'s leader Lease (kubernetes.lease_name).
const LEASE: &str = "wicket-leader";

/// A user who keeps using a ticket (every 100 ms) and counts the answers.
struct User {
    ticket: common::Ticket,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl User {
    fn start(addr: std::net::SocketAddr, app: &str, ticket: common::Ticket) -> Self {
        Self::start_every(addr, app, ticket, Duration::from_millis(100))
    }

    /// A user who sends a request every `period` (a busy browser tab).
    fn start_every(
        addr: std::net::SocketAddr,
        app: &str,
        ticket: common::Ticket,
        period: Duration,
    ) -> Self {
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (path, cookie) = (ticket.prefix(app), ticket.cookie());
        let (o, f) = (Arc::clone(&ok), Arc::clone(&failed));
        let pod = ticket.pod.clone();
        let task = tokio::spawn(async move {
            let c = client();
            loop {
                let r = get(&c, addr, &path, Some(&cookie), &[]).await;
                if r.status == StatusCode::OK && r.body.contains(&pod) {
                    o.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!(
                        "user on {pod}: {} {}",
                        r.status,
                        r.body.chars().take(200).collect::<String>()
                    );
                    f.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(period).await;
            }
        });
        Self {
            ticket,
            ok,
            failed,
            task,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The user leaves (stops using the ticket).
    fn leave(self) -> (u64, u64) {
        self.task.abort();
        (self.ok(), self.failed())
    }
}

/// (1) deploy/ and the examples are accepted by a real apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_apply_on_a_real_apiserver() {
    let c = Cluster::start();
    c.apply_deploy();
    for obj in [
        "serviceaccount/wicket",
        "role/wicket",
        "rolebinding/wicket",
        "configmap/wicket-config",
        "deployment/wicket",
        "service/wicket",
        "poddisruptionbudget/wicket",
    ] {
        c.kubectl_ok(&["get", "-n", NS, obj]);
    }
    // The shipped host config is a valid wicket config.
    let toml = c.kubectl_ok(&[
        "get",
        "-n",
        NS,
        "configmap/wicket-config",
        "-o",
        "jsonpath={.data.wicket\\.toml}",
    ]);
    let cfg = wicket::config::Config::parse(&toml, std::path::Path::new("deploy/configmap.yaml"))
        .unwrap();
    assert_eq!(cfg.proxy.listen.port(), 9001);
    assert_eq!(cfg.metrics.listen.port(), 9999);
    // Two replicas that roll one at a time and drain: the API kept it all.
    let spec = c.kubectl_ok(&[
        "get",
        "-n",
        NS,
        "deployment/wicket",
        "-o",
        "jsonpath={.spec.replicas} {.spec.strategy.type} {.spec.strategy.rollingUpdate.maxUnavailable} \
         {.spec.template.spec.terminationGracePeriodSeconds} \
         {.spec.template.spec.containers[0].lifecycle.preStop.sleep.seconds}",
    ]);
    assert_eq!(spec, "2 RollingUpdate 0 45 5");
    // The Lease the config names is the one the Role lets it renew.
    assert_eq!(cfg.kubernetes.lease_name, LEASE);
    let names = c.kubectl_ok(&[
        "get",
        "-n",
        NS,
        "role/wicket",
        "-o",
        "jsonpath={.rules[?(@.resourceNames)].resourceNames}",
    ]);
    assert!(names.contains(LEASE), "{names}");
    // The HA example (deploy/ + Redis) applies on top; the single-replica
    // one is accepted and its config (no [store]: in memory) is valid.
    c.kubectl_ok(&["apply", "-k", "examples/ha/"]);
    c.kubectl_ok(&[
        "get",
        "-n",
        NS,
        "deployment/wicket-redis",
        "service/wicket-redis",
    ]);
    let single = c.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-k",
        "examples/single-replica/",
        "-o",
        "jsonpath={.items[?(@.kind==\"ConfigMap\")].data.wicket\\.toml}",
    ]);
    let single =
        wicket::config::Config::parse(&single, std::path::Path::new("single-replica")).unwrap();
    assert!(!single.kubernetes.leader_election, "alone: no election");
    assert_eq!(single.proxy.listen.port(), 9001);
    // The monitoring kustomization builds (its CRDs are not in this cluster).
    let monitoring = c.kubectl_ok(&["kustomize", "deploy/monitoring/"]);
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(monitoring.contains(&format!("kind: {kind}")), "{kind}");
    }
    // The examples.
    c.kubectl_ok(&["apply", "-n", NS, "-f", "examples/k8s/simple.yaml"]);
    c.kubectl_ok(&["apply", "-n", NS, "-f", "examples/k8s/advanced.yaml"]);
    let dir = tempfile::tempdir().unwrap();
    for f in ["kustomization.yaml", "app.yaml"] {
        std::fs::copy(
            repo_root().join("examples/k8s/custom-policy").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    std::fs::copy(
        common::policy_path("spare-tickets"),
        dir.path().join("policy.wasm"),
    )
    .unwrap();
    c.kubectl_ok(&["apply", "-n", NS, "-k", dir.path().to_str().unwrap()]);
    let labels = c.kubectl_ok(&[
        "get",
        "-n",
        NS,
        "configmap/my-policy",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(labels.contains("wicket.dev/policy"), "{labels}");
    let names = c.kubectl_ok(&[
        "get",
        "-n",
        NS,
        "deployments",
        "-l",
        "ipb-halle.de/k8sticket=true",
        "-o",
        "name",
    ]);
    for d in ["shiny-app", "shiny-hello", "shiny-kmeans", "shiny-custom"] {
        assert!(names.contains(d), "{d} in {names}");
    }
    // A broken manifest is refused by the server (so the above was validated).
    let bad_file = dir.path().join("bad.yaml");
    std::fs::write(&bad_file, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  template:\n    spec:\n      containers: []\n").unwrap();
    let bad = c.kubectl(&[
        "apply",
        "-n",
        NS,
        "--dry-run=server",
        "-f",
        bad_file.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("Invalid") || err.contains("invalid"), "{err}");
}

/// (2) The ServiceAccount token (TokenRequest) bound by deploy/'s Role runs
/// the host, and is refused for Secrets, for writes to Deployments and for
/// another namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_is_sufficient_and_least_privilege() {
    let c = Cluster::start();
    c.apply_deploy();
    c.kubectl_ok(&["create", "namespace", "other"]);
    let token = c.service_account_token();
    let sa = c.client_with_token(&token).await;

    let forbidden = |r: Result<_, kube::Error>| match r {
        Err(kube::Error::Api(s)) => s.code == 403,
        _ => false,
    };
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), NS);
    assert!(
        forbidden(secrets.list(&ListParams::default()).await.map(|_| ())),
        "secrets must be forbidden"
    );
    assert!(forbidden(secrets.get("anything").await.map(|_| ())));
    let other: Api<Pod> = Api::namespaced(sa.clone(), "other");
    assert!(
        forbidden(other.list(&ListParams::default()).await.map(|_| ())),
        "another namespace must be forbidden"
    );
    let other_cm: Api<ConfigMap> = Api::namespaced(sa.clone(), "other");
    assert!(forbidden(
        other_cm.list(&ListParams::default()).await.map(|_| ())
    ));
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(sa.clone(), NS);
    assert!(
        forbidden(
            deployments
                .delete("wicket", &DeleteParams::default())
                .await
                .map(|_| ())
        ),
        "no writes to Deployments"
    );
    let pods: Api<Pod> = Api::namespaced(sa.clone(), NS);
    assert!(
        pods.list(&ListParams::default()).await.is_ok(),
        "own namespace pods are allowed"
    );
    let patch = json!({"metadata": {"labels": {"x": "y"}}});
    let r = pods
        .patch("nope", &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    assert!(forbidden(r.map(|_| ())), "no update/patch on pods");

    // The host runs with that token: watches, creates pods, records Events,
    // and takes the leader Lease.
    let host = wicket::run::start(host_config(), sa.clone()).await.unwrap();
    wait_for(LIMIT, || async { host.metrics.leader.get() == 1 }).await;
    assert!(host.leadership.is_leader());
    let leases: Api<Lease> = Api::namespaced(sa.clone(), NS);
    let lease = leases.get(LEASE).await.expect("its own Lease is readable");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(!holder.is_empty(), "the host holds the Lease");
    // ... and nothing else about Leases: no other Lease, no list, no delete,
    // no update (renewals are patches), none in another namespace.
    assert!(
        forbidden(leases.get("kube-scheduler").await.map(|_| ())),
        "other Leases"
    );
    assert!(
        forbidden(leases.list(&ListParams::default()).await.map(|_| ())),
        "list"
    );
    assert!(
        forbidden(
            leases
                .delete(LEASE, &DeleteParams::default())
                .await
                .map(|_| ())
        ),
        "delete"
    );
    let current = leases.get(LEASE).await.unwrap();
    assert!(
        forbidden(
            leases
                .replace(LEASE, &PostParams::default(), &current)
                .await
                .map(|_| ())
        ),
        "update"
    );
    let other_leases: Api<Lease> = Api::namespaced(sa.clone(), "other");
    let fresh: Lease = serde_json::from_value(json!({"metadata": {"name": LEASE}})).unwrap();
    assert!(
        forbidden(
            other_leases
                .create(&PostParams::default(), &fresh)
                .await
                .map(|_| ())
        ),
        "no Lease in another namespace"
    );
    assert!(forbidden(other_leases.get(LEASE).await.map(|_| ())));
    let admin = c.admin().await;
    let d = app_deployment(
        "rbac",
        &[(ann::TICKETS_SPARE, "1"), (ann::PODS_MAX, "1")],
        pod_port(),
    );
    Api::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_for(LIMIT, || async { host.apps.get("rbac").is_some() }).await;
    let admin_pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let lp = ListParams::default().labels(&format!("{}=true", ann::SCALED_LABEL));
    wait_for(LIMIT, || async {
        admin_pods.list(&lp).await.unwrap().items.len() == 1
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin, NS);
    wait_for(LIMIT, || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScaledUp"))
    })
    .await;
    let became = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("BecameLeader"))
        .expect("a BecameLeader Event");
    assert_eq!(
        became.regarding.and_then(|r| r.name).as_deref(),
        Some(LEASE),
        "the Event is about the Lease"
    );
}

/// (3) Annotated Deployment → app → tickets through the proxy → spare
/// shortfall → autoscaled pods (labels, ownerReference) → ready → more users
/// → users leave → pods deleted after cooldown; replicas never deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_and_spare_scaling_end_to_end() {
    let mut config = host_config();
    config.kubernetes.app_ports = true;
    let mut env = Env::start(config).await;
    let app_port = free_port();
    let (d, _app) = env
        .deploy(
            "shiny",
            &[
                (ann::TICKETS_MAX, "1"),
                (ann::TICKETS_SPARE, "1"),
                (ann::PODS_MAX, "2"),
                (ann::COOLDOWN, "2"),
                (ann::PORT, &app_port.to_string()),
            ],
            &["shiny-replica-0"],
        )
        .await;
    let addr = env.host.proxy_addr;
    let started = Instant::now();

    // User 1 on the replica, through the shared port.
    let t1 = ticket(addr, "shiny", LIMIT).await;
    assert_eq!(t1.pod, "shiny-replica-0");
    let r = get(
        &client(),
        addr,
        &t1.prefix("shiny"),
        Some(&t1.cookie()),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("shiny-replica-0"), "{}", r.body);
    let u1 = User::start(addr, "shiny", t1);

    // No free ticket left < spare 1: one autoscaled pod, from the template.
    wait_for(LIMIT, || async { env.autoscaled("shiny").await.len() == 1 }).await;
    let pod = env.autoscaled("shiny").await.remove(0);
    let name = pod.name_any();
    assert!(name.starts_with("shiny-k8sticket-autoscaled-"), "{name}");
    assert_eq!(
        pod.labels().get(ann::SCALED_LABEL).map(String::as_str),
        Some("true")
    );
    assert_eq!(
        pod.labels().get(ann::APP_NAME).map(String::as_str),
        Some("shiny")
    );
    assert_eq!(
        pod.labels().get("app").map(String::as_str),
        Some("shiny"),
        "template labels kept"
    );
    let owner = &pod.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "shiny-deploy")
    );
    assert_eq!(Some(&owner.uid), d.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    assert!(
        pod.annotations().contains_key(ann::POD_PORT),
        "template annotations kept"
    );
    eprintln!("scale-up seen after {:?}", started.elapsed());
    // Starting pods count: no second pod while the first boots.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        env.autoscaled("shiny").await.len(),
        1,
        "starting pods are counted"
    );
    env.kubelet.run(&name).await;
    wait_for(LIMIT, || async {
        metric_at(
            env.host.metrics_addr,
            "k8sticket_current_free_tickets_total",
            "shiny",
        )
        .await
            == 1.0
    })
    .await;

    // User 2 gets the new pod, through the app's own port as well.
    let app_addr = env
        .host
        .app_addr("shiny")
        .expect("the app's own port is open");
    assert_eq!(app_addr.port(), app_port);
    let t2 = ticket(app_addr, "shiny", LIMIT).await;
    assert_eq!(t2.pod, name);
    let u2 = User::start(app_addr, "shiny", t2);
    // Free 0 again: the second (last, pods.max 2) autoscaled pod.
    wait_for(LIMIT, || async { env.autoscaled("shiny").await.len() == 2 }).await;
    let second = env
        .autoscaled("shiny")
        .await
        .into_iter()
        .map(|p| p.name_any())
        .find(|n| *n != name)
        .unwrap();
    env.kubelet.run(&second).await;
    let t3 = ticket(addr, "shiny", LIMIT).await;
    assert_eq!(t3.pod, second);
    let u3 = User::start(addr, "shiny", t3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.autoscaled("shiny").await.len(),
        2,
        "never more than pods.max"
    );
    env.wait_event("ScaledUp", &["shiny-k8sticket-autoscaled-"])
        .await;

    // Everyone leaves: after cooldown the autoscaled pods go, the replica stays.
    for u in [u1, u2, u3] {
        let (ok, failed) = u.leave();
        assert!(ok > 0);
        assert_eq!(failed, 0);
    }
    let left = Instant::now();
    wait_for(Duration::from_secs(30), || async {
        env.autoscaled("shiny").await.is_empty()
    })
    .await;
    eprintln!("scale-down after {:?} (cooldown 2 s)", left.elapsed());
    assert!(
        left.elapsed() >= Duration::from_secs(2),
        "not before the cooldown"
    );
    env.pods()
        .get("shiny-replica-0")
        .await
        .expect("the Deployment's replica is never deleted");
    env.wait_event("ScaledDown", &["deleted idle autoscaled pod"])
        .await;

    // Deleting the Deployment removes the app (no users left).
    env.deployments()
        .delete("shiny-deploy", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(LIMIT, || async { env.host.apps.get("shiny").is_none() }).await;
}

/// (4) Live annotation change (spare 2 → 4, display name, resume grace)
/// applies without restart; a malformed annotation → default + Event naming
/// it; label false drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_annotation_changes() {
    let mut env = Env::start(host_config()).await;
    let (_, app) = env
        .deploy(
            "live",
            &[
                (ann::TICKETS_MAX, "1"),
                (ann::TICKETS_SPARE, "2"),
                (ann::PODS_MAX, "5"),
            ],
            &["live-replica-0"],
        )
        .await;
    // Free 1 (the replica) < spare 2: one autoscaled pod; ready → free 2.
    wait_for(LIMIT, || async { env.autoscaled("live").await.len() == 1 }).await;
    let first = env.autoscaled("live").await.remove(0).name_any();
    env.kubelet.run(&first).await;
    wait_for(LIMIT, || async {
        metric_at(
            env.host.metrics_addr,
            "k8sticket_current_free_tickets_total",
            "live",
        )
        .await
            == 2.0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.autoscaled("live").await.len(), 1);

    assert_eq!(
        &*app.display_name(),
        "live",
        "no display name: the app name"
    );
    assert_eq!(app.resume_grace(), Duration::from_secs(30));
    let patch = json!({"metadata": {"annotations": {
        ann::TICKETS_SPARE: "4",
        ann::DISPLAY_NAME: "Live Atlas",
        ann::RESUME_GRACE: "1m30s",
    }}});
    env.patch_deployment("live-deploy", &patch).await;
    wait_for(LIMIT, || async { env.autoscaled("live").await.len() == 3 }).await;
    assert!(
        Arc::ptr_eq(&app, &env.host.apps.get("live").unwrap()),
        "same app: no restart"
    );
    wait_for(LIMIT, || async {
        &*app.display_name() == "Live Atlas" && app.resume_grace() == Duration::from_secs(90)
    })
    .await;

    // Malformed: the defaults (1, 30 s) are used, a warning Event names each.
    let patch = json!({"metadata": {"annotations": {
        ann::TICKETS_MAX: "lots",
        ann::RESUME_GRACE: "soon",
    }}});
    env.patch_deployment("live-deploy", &patch).await;
    let e = env
        .wait_event("InvalidAnnotation", &[ann::TICKETS_MAX, "lots"])
        .await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("live-deploy")
    );
    let e = env
        .wait_event("InvalidAnnotation", &[ann::RESUME_GRACE, "soon", "30s"])
        .await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert!(Arc::ptr_eq(&app, &env.host.apps.get("live").unwrap()));
    // The Event is recorded just before the settings are applied.
    wait_for(LIMIT, || async {
        app.resume_grace() == Duration::from_secs(30)
    })
    .await;
    assert_eq!(&*app.display_name(), "Live Atlas", "the good one stays");

    // Label value other than "true": drain — a user keeps the ticket, new
    // users are refused; when the user leaves, the app goes.
    let t = ticket(env.host.proxy_addr, "live", LIMIT).await;
    let u = User::start(env.host.proxy_addr, "live", t);
    let patch = json!({"metadata": {"labels": {ann::ENABLED_LABEL: "false"}}});
    env.patch_deployment("live-deploy", &patch).await;
    wait_for(LIMIT, || async {
        let mut ws = common::connect_ws(env.host.proxy_addr, "live").await;
        common::read_ticket(&mut ws, Duration::from_millis(300))
            .await
            .ticket
            .is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        env.host.apps.get("live").is_some(),
        "kept while a user is on it"
    );
    let (ok, failed) = u.leave();
    assert!(ok > 0);
    assert_eq!(failed, 0, "the draining app kept serving its user");
    wait_for(LIMIT, || async { env.host.apps.get("live").is_none() }).await;
}

/// (5) Policies from a ConfigMap: create, select, swap under load with no
/// failed request, broken update refused with an Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_policy_swap_under_load() {
    let mut env = Env::start(host_config()).await;
    let spare = std::fs::read(common::policy_path("spare-tickets")).unwrap();
    let faulty = std::fs::read(common::policy_path("faulty")).unwrap();
    let other_major = std::fs::read(common::policy_path("other-major")).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.admin.clone(), NS);
    let cm = |bytes: &[u8]| -> ConfigMap {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "policies", "labels": { ann::POLICY_LABEL: "true" } },
            "binaryData": { "choice.wasm": k8s_openapi::ByteString(bytes.to_vec()) },
        }))
        .unwrap()
    };
    cms.create(&PostParams::default(), &cm(&spare))
        .await
        .unwrap();
    // The app packs users with the default logic; `spread` (read only by the
    // faulty test policy) spreads them: a visible change of behaviour.
    let (_, app) = env
        .deploy(
            "swap",
            &[
                (ann::TICKETS_MAX, "4"),
                (ann::TICKETS_SPARE, "0"),
                (ann::PODS_MAX, "0"),
                (ann::POLICY, "policies/choice.wasm"),
                (ann::POLICY_CONFIG, "spread"),
            ],
            &["swap-a", "swap-b"],
        )
        .await;
    let digest = |b: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    };
    wait_for(LIMIT, || async {
        app.policy().active().digest == digest(&spare)
    })
    .await;
    env.wait_event("PolicyLoaded", &["policies/choice.wasm"])
        .await;

    let addr = env.host.proxy_addr;
    let a = ticket(addr, "swap", LIMIT).await;
    let b = ticket(addr, "swap", LIMIT).await;
    assert_eq!(
        (a.pod.as_str(), b.pod.as_str()),
        ("swap-a", "swap-a"),
        "packing"
    );
    let mut users = vec![User::start(addr, "swap", a), User::start(addr, "swap", b)];

    // Swap to the spreading policy while the users keep going.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cms.replace("policies", &PostParams::default(), &cm(&faulty))
        .await
        .unwrap();
    wait_for(LIMIT, || async {
        app.policy().active().digest == digest(&faulty)
    })
    .await;
    let c = ticket(addr, "swap", LIMIT).await;
    assert_eq!(c.pod, "swap-b", "the new policy spreads");
    users.push(User::start(addr, "swap", c));

    // A broken version: refused, the last good stays, Warning Event.
    for broken in [other_major.clone(), b"not wasm at all".to_vec()] {
        cms.replace("policies", &PostParams::default(), &cm(&broken))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let e = env
        .wait_event(
            "PolicyRejected",
            &["policies/choice.wasm", "keeping the last good"],
        )
        .await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    env.wait_event("PolicyRejected", &["not a valid WebAssembly component"])
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.policy().active().digest,
        digest(&faulty),
        "last good kept"
    );
    let d2 = ticket(addr, "swap", LIMIT).await;
    assert_eq!(d2.pod, "swap-b", "still spreading (b has 1, a has 2)");
    users.push(User::start(addr, "swap", d2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut total = 0;
    for u in users {
        let (ok, failed) = u.leave();
        assert!(ok > 0);
        assert_eq!(failed, 0, "no failed request across the swaps");
        total += ok;
    }
    eprintln!("{total} requests, 0 failed, across 3 ConfigMap updates");
    assert!(metric_at(env.host.metrics_addr, "wicket_policy_load_errors_total", "").await >= 2.0);
}

/// (6) The apiserver is down for 20 s while users hold tickets: proxying
/// goes on, no ticket is lost, a pod requested meanwhile is created once
/// the apiserver is back, and the host reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_outage_keeps_users_served() {
    let mut env = Env::start(host_config()).await;
    let (_, app) = env
        .deploy(
            "outage",
            &[
                (ann::TICKETS_MAX, "3"),
                (ann::TICKETS_SPARE, "1"),
                (ann::PODS_MAX, "1"),
            ],
            &["outage-0"],
        )
        .await;
    let addr = env.host.proxy_addr;
    let u1 = User::start(addr, "outage", ticket(addr, "outage", LIMIT).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.autoscaled("outage").await.is_empty(),
        "free 2 >= spare 1"
    );

    let run_dir = env.cluster.run_dir.clone();
    let outage = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let ok = std::process::Command::new(repo_root().join("scripts/cluster/apiserver.sh"))
            .args(["restart"])
            .arg(&run_dir)
            .arg("20")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        (ok, started.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    // While the apiserver is down: a new user gets a ticket; the shortfall
    // (free 0 < spare 1) makes the host try to create a pod (it retries).
    let u2 = User::start(addr, "outage", ticket(addr, "outage", LIMIT).await);
    let u3 = User::start(addr, "outage", ticket(addr, "outage", LIMIT).await);
    // Its Lease renewal (every 10 s) fails during the outage: it stops
    // leading at once.
    wait_for(Duration::from_secs(25), || async {
        env.host.metrics.leader.get() == 0
    })
    .await;
    let (ok, took) = outage.await.unwrap();
    assert!(ok, "apiserver restart");
    eprintln!("apiserver was down for {took:?}");
    assert!(took >= Duration::from_secs(20));
    assert!(u1.ok() > 150, "served throughout: {}", u1.ok());

    // Back: the host leads again (a renewal failed during the outage: it
    // stopped leading, then ran again) ...
    wait_for(LIMIT, || async { env.host.metrics.leader.get() == 1 }).await;
    // ... and the retried creation lands, exactly once.
    wait_for(Duration::from_secs(30), || async {
        env.autoscaled("outage").await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.autoscaled("outage").await.len(),
        1,
        "no duplicate pod from the retries"
    );
    // The watches reconnected: a change made now reaches the app.
    let name = env.autoscaled("outage").await.remove(0).name_any();
    env.kubelet.run(&name).await;
    wait_for(LIMIT, || async {
        metric_at(
            env.host.metrics_addr,
            "k8sticket_current_free_tickets_total",
            "outage",
        )
        .await
            == 3.0
    })
    .await;
    let patch = json!({"metadata": {"annotations": {ann::TICKETS_MAX: "5"}}});
    env.patch_deployment("outage-deploy", &patch).await;
    wait_for(LIMIT, || async {
        metric_at(
            env.host.metrics_addr,
            "k8sticket_current_free_tickets_total",
            "outage",
        )
        .await
            == 7.0
    })
    .await;
    assert!(Arc::ptr_eq(&app, &env.host.apps.get("outage").unwrap()));
    for u in [u1, u2, u3] {
        let t = u.ticket.clone();
        let (ok, failed) = u.leave();
        assert!(ok > 0);
        assert_eq!(failed, 0, "ticket on {} kept through the outage", t.pod);
    }
}

/// A ConfigMap of policy components (labelled for wicket), one
/// `binaryData` key each, with the `wicket.dev/policy-*` limit annotations.
fn policy_configmap(name: &str, keys: &[(&str, &[u8])], limits: &[(&str, &str)]) -> ConfigMap {
    let data: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .map(|(k, bytes)| {
            (
                (*k).to_owned(),
                serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap(),
            )
        })
        .collect();
    let annotations: serde_json::Map<String, serde_json::Value> = limits
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": { ann::POLICY_LABEL: "true" },
            "annotations": annotations,
        },
        "binaryData": data,
    }))
    .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// (7) The scale-to-zero example (examples/policies/scale-to-zero) as an
/// operator deploys it: the component in a policy ConfigMap, selected by
/// the Deployment's annotation, the Deployment at `replicas: 0`. No pod
/// until the first user; that user waits ("starting a new instance"),
/// wicket creates a pod, the kubelet makes it Ready, the user is admitted;
/// once the user has left and the cooldown has passed, no pod again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_on_the_real_control_plane() {
    let mut env = Env::start(host_config()).await;
    let stz = std::fs::read(common::policy_path("scale-to-zero")).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.admin.clone(), NS);
    cms.create(
        &PostParams::default(),
        &policy_configmap("zero-policy", &[("policy.wasm", &stz)], &[]),
    )
    .await
    .unwrap();
    let mut d = serde_json::to_value(app_deployment(
        "zero",
        &[
            (ann::TICKETS_MAX, "1"),
            (ann::TICKETS_SPARE, "0"),
            (ann::PODS_MAX, "2"),
            (ann::COOLDOWN, "2"),
            (ann::POLICY, "zero-policy/policy.wasm"),
        ],
        pod_port(),
    ))
    .unwrap();
    d["spec"]["replicas"] = json!(0);
    let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(d).unwrap();
    env.deployments()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let app = env.wait_app("zero").await;
    wait_for(LIMIT, || async {
        app.policy().active().digest == sha256_hex(&stz)
    })
    .await;
    env.wait_event("PolicyLoaded", &["zero-policy/policy.wasm"])
        .await;

    // Nobody asks: no pod (several rounds of the app's scaling loop).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.autoscaled("zero").await.is_empty(),
        "no pod before a user"
    );
    let app_pods = ListParams::default().labels(&format!("{}=zero", ann::APP_NAME));
    assert!(env.pods().list(&app_pods).await.unwrap().items.is_empty());
    let metrics = env.host.metrics_addr;
    assert_eq!(
        metric_at(metrics, "k8sticket_current_free_tickets_total", "zero").await,
        0.0
    );

    // The first user waits on the waiting page's WebSocket.
    let addr = env.host.proxy_addr;
    let arrived = Instant::now();
    let waiter = tokio::spawn(async move {
        let mut ws = common::connect_ws(addr, "zero").await;
        common::read_ticket(&mut ws, Duration::from_secs(60)).await
    });
    wait_for(LIMIT, || async { env.autoscaled("zero").await.len() == 1 }).await;
    let pod = env.autoscaled("zero").await.remove(0).name_any();
    assert!(pod.starts_with("zero-k8sticket-autoscaled-"), "{pod}");
    eprintln!(
        "pod {pod} created {:?} after the user came",
        arrived.elapsed()
    );
    // The pod is not ready: the user keeps waiting, and no second pod comes
    // for the same user.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished(), "no ticket before a pod is ready");
    assert_eq!(
        env.autoscaled("zero").await.len(),
        1,
        "one pod per waiting user"
    );
    env.kubelet.run(&pod).await;
    let session = waiter.await.unwrap();
    assert!(
        session.messages.iter().any(|m| m == "pos#1"),
        "the first user waited first in line: {:?}",
        session.messages
    );
    assert!(
        session
            .messages
            .iter()
            .any(|m| m.starts_with("eta#") && m.ends_with("@starting")),
        "the waiting page said a new instance is starting: {:?}",
        session.messages
    );
    let t = session.ticket.expect("admitted once the pod is ready");
    assert_eq!(t.pod, pod);
    eprintln!("user admitted {:?} after arriving", arrived.elapsed());
    let user = User::start(addr, "zero", t);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The example decided throughout: no fault sent the app to the default.
    assert_eq!(
        metric_at(metrics, "wicket_policy_info", &sha256_hex(&stz)).await,
        1.0
    );
    assert_eq!(
        metric_at(metrics, "wicket_policy_faults_total", "zero").await,
        0.0
    );

    // The user leaves: the ticket expires, the pod idles for the cooldown
    // (2 s) and is deleted; nothing is kept warm.
    let (ok, failed) = user.leave();
    assert!(ok > 0);
    assert_eq!(failed, 0);
    let left = Instant::now();
    wait_for(Duration::from_secs(30), || async {
        env.autoscaled("zero").await.is_empty()
    })
    .await;
    eprintln!("back to no pods {:?} after the user left", left.elapsed());
    assert!(
        left.elapsed() >= Duration::from_secs(2),
        "not before the cooldown"
    );
    env.wait_event("ScaledDown", &[&pod]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(env.autoscaled("zero").await.is_empty(), "stays at zero");
    assert_eq!(
        metric_at(metrics, "wicket_policy_faults_total", "zero").await,
        0.0
    );
}

/// Users arriving one after another: each gets a ticket (through the
/// policy's `assign`), makes a few requests and leaves. Counts the users
/// served, the users who got no ticket and the failed requests.
struct Arrivals {
    served: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Arrivals {
    fn start(addr: std::net::SocketAddr, app: &'static str, every: Duration) -> Self {
        let counters: [Arc<AtomicU64>; 4] = Default::default();
        let [served, lost, ok, failed] = counters.clone();
        let task = tokio::spawn(async move {
            let c = client();
            loop {
                let mut ws = common::connect_ws(addr, app).await;
                match common::read_ticket(&mut ws, LIMIT).await.ticket {
                    Some(t) => {
                        served.fetch_add(1, Ordering::Relaxed);
                        let (path, cookie) = (t.prefix(app), t.cookie());
                        for _ in 0..5 {
                            let r = get(&c, addr, &path, Some(&cookie), &[]).await;
                            if r.status == StatusCode::OK && r.body.contains(&t.pod) {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                eprintln!("new user on {}: {}", t.pod, r.status);
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    None => {
                        eprintln!("a new user got no ticket within {LIMIT:?}");
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(ws);
                tokio::time::sleep(every).await;
            }
        });
        let [served, lost, ok, failed] = counters;
        Self {
            served,
            lost,
            ok,
            failed,
            task,
        }
    }

    /// Stops the arrivals: (served, lost, ok requests, failed requests).
    fn stop(self) -> (u64, u64, u64, u64) {
        self.task.abort();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            get(&self.served),
            get(&self.lost),
            get(&self.ok),
            get(&self.failed),
        )
    }
}

/// Writes `bytes` beside `dest`, then renames: the policy-file watcher
/// never sees half a component.
fn replace_file(dest: &std::path::Path, bytes: &[u8]) {
    let tmp = dest.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `wicket policy configmap FILE --namespace <NS> ARGS` (the real binary):
/// the YAML an operator pipes to `kubectl apply --server-side -f -`.
async fn policy_configmap_yaml(file: &std::path::Path, args: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wicket"));
    command
        .args(["policy", "configmap"])
        .arg(file)
        .args(["--namespace", NS])
        .args(args);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "wicket policy configmap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The YAML documents of `yaml`, each with its leading `---`.
fn yaml_docs(yaml: &str) -> Vec<String> {
    yaml.split("---\n")
        .filter(|d| !d.is_empty())
        .map(|d| format!("---\n{d}"))
        .collect()
}

/// (8) The Python (`schedule`) and JavaScript (`predictive`) examples,
/// built from source, hot-swapped into a serving app while users hold
/// tickets and send a few hundred requests per second and new users keep
/// arriving: the app annotated with a policy ConfigMap (holding the Rust
/// default), which is then updated to the Python policy, to the JavaScript
/// one and back to Rust. No failed request, no user without a ticket, and
/// each version serves in turn (metric `wicket_policy_info`, Event
/// `PolicyLoaded`), without a fault.
///
/// Every version is what `wicket policy configmap` prints, applied with
/// `kubectl apply --server-side -f -`, with its limits as annotations. A
/// ConfigMap holds at most 1 MiB: the JavaScript component (1.7 MB) fits
/// gzip-compressed (0.6 MB); the Python one (18 MB, 6 MB gzipped) comes in
/// parts, ConfigMaps of < 1 MiB each, assembled by the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_policies_hot_swapped_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_owned();
    let (schedule_path, predictive_path) = tokio::task::spawn_blocking(move || {
        (
            common::build_example("schedule", &out),
            common::build_example("predictive", &out),
        )
    })
    .await
    .unwrap();
    let (schedule, predictive) = (
        std::fs::read(&schedule_path).unwrap(),
        std::fs::read(&predictive_path).unwrap(),
    );
    let spare_path = common::policy_path("spare-tickets");
    let spare = std::fs::read(&spare_path).unwrap();
    let policy_file = dir.path().join("policy.wasm");
    replace_file(&policy_file, &spare);

    let mut config = host_config();
    // A ticket unused for this long expires: generous, so that a test
    // client starved of CPU while the host compiles 18 MB of Python cannot
    // lose its ticket (what is tested is the swap, not the expiry).
    config.proxy.ticket_expiry_ms = 5000;
    config.policy.file = Some(policy_file.clone());
    let mut env = Env::start(config).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.admin.clone(), NS);
    // Why Python comes in parts: the apiserver refuses it in one
    // ConfigMap, even gzip-compressed.
    let too_big = cms
        .create(
            &PostParams::default(),
            &policy_configmap("python", &[("schedule.wasm", &gzip(&schedule))], &[]),
        )
        .await;
    assert!(too_big.is_err(), "a 6 MB ConfigMap was accepted");
    let tool = |file: std::path::PathBuf, limits: &'static [&'static str]| async move {
        let mut args = vec!["--name", "polyglot", "--key", "active.wasm"];
        args.extend_from_slice(limits);
        policy_configmap_yaml(&file, &args).await
    };
    env.cluster
        .kubectl_apply(tool(spare_path.clone(), &[]).await)
        .await;

    // `schedule` reads the config as windows (here: the whole week, spare
    // 50 free tickets, so it creates a pod where the default, with
    // tickets.spare 0, does not); `predictive` warns and uses its defaults.
    let (_, app) = env
        .deploy(
            "hot",
            &[
                (ann::TICKETS_MAX, "20"),
                (ann::TICKETS_SPARE, "0"),
                (ann::PODS_MAX, "1"),
                (
                    ann::POLICY_CONFIG,
                    "daily 00:00-12:00 spare=50; daily 12:00-00:00 spare=50",
                ),
            ],
            &["hot-a", "hot-b"],
        )
        .await;
    wait_for(LIMIT, || async {
        app.policy().active().digest == sha256_hex(&spare)
    })
    .await;

    // The load: 6 users with a request every 20 ms each (≤ 300/s) and a new
    // user every 300 ms.
    let addr = env.host.proxy_addr;
    let metrics = env.host.metrics_addr;
    let mut users = Vec::new();
    for _ in 0..6 {
        let t = ticket(addr, "hot", LIMIT).await;
        users.push(User::start_every(addr, "hot", t, Duration::from_millis(20)));
    }
    let arrivals = Arrivals::start(addr, "hot", Duration::from_millis(300));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.autoscaled("hot").await.is_empty(),
        "the default keeps tickets.spare 0: no pod"
    );

    /// How a version comes in: the app annotated with the ConfigMap's key,
    /// or the ConfigMaps `wicket policy configmap` prints for this file
    /// with these limits applied (how many ConfigMaps that makes).
    enum Swap {
        Annotate,
        Apply(std::path::PathBuf, &'static [&'static str], usize),
    }
    // Python needs more memory than the default cap (16 MiB) and, on a
    // debug host, more time to instantiate and decide.
    const PYTHON_LIMITS: &[&str] = &[
        "--memory-mib",
        "64",
        "--timeout-ms",
        "1000",
        "--instantiate-timeout-ms",
        "30000",
    ];
    const JS_LIMITS: &[&str] = &[
        "--memory-mib",
        "16",
        "--timeout-ms",
        "1000",
        "--instantiate-timeout-ms",
        "5000",
    ];
    // 6 MB gzipped in parts of 900 KiB, and the policy ConfigMap.
    let python_configmaps = schedule_path.metadata().unwrap().len() as usize / 3 / (900 << 10) + 2;
    for (name, bytes, how) in [
        (
            "spare-tickets (Rust), app annotated with the ConfigMap",
            &spare,
            Swap::Annotate,
        ),
        (
            "schedule (Python), ConfigMap update in parts",
            &schedule,
            Swap::Apply(schedule_path.clone(), PYTHON_LIMITS, python_configmaps),
        ),
        (
            "predictive (JavaScript), ConfigMap update (gzip)",
            &predictive,
            Swap::Apply(predictive_path.clone(), JS_LIMITS, 1),
        ),
        (
            "spare-tickets (Rust), ConfigMap update",
            &spare,
            Swap::Apply(spare_path.clone(), &[], 1),
        ),
    ] {
        let digest = sha256_hex(bytes);
        let asked = Instant::now();
        match &how {
            Swap::Annotate => {
                let patch =
                    json!({"metadata": {"annotations": {ann::POLICY: "polyglot/active.wasm"}}});
                env.patch_deployment("hot-deploy", &patch).await;
            }
            Swap::Apply(file, limits, configmaps) => {
                let yaml = tool(file.clone(), limits).await;
                let docs = yaml_docs(&yaml).len();
                eprintln!("{name}: {docs} ConfigMaps, {} bytes of YAML", yaml.len());
                // Python: one more or less if its size is near a multiple.
                assert!(
                    docs.abs_diff(*configmaps) <= 1 && (docs > 1) == (*configmaps > 1),
                    "{docs} ConfigMaps, expected about {configmaps}"
                );
                env.cluster.kubectl_apply(yaml).await;
            }
        }
        wait_for(Duration::from_secs(180), || async {
            app.policy().active().digest == digest
        })
        .await;
        let took = asked.elapsed();
        wait_for(LIMIT, || async {
            metric_at(metrics, "wicket_policy_info", &digest).await == 1.0
        })
        .await;
        env.wait_event("PolicyLoaded", &["polyglot/active.wasm", &digest[..12]])
            .await;
        eprintln!("{name}: serving {took:?} after the swap");
        if std::ptr::eq(bytes, &schedule) {
            // Python decides: its window's spare makes it create a pod.
            wait_for(LIMIT, || async { env.autoscaled("hot").await.len() == 1 }).await;
        }
        // Serve under this version for a while.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(app.policy().active().digest, digest, "{name} still serves");
        assert_eq!(
            metric_at(metrics, "wicket_policy_faults_total", "hot").await,
            0.0,
            "{name} decided without a fault"
        );
    }

    let elapsed = started.elapsed();
    let (served, lost, new_ok, new_failed) = arrivals.stop();
    let (mut ok, mut failed) = (new_ok, new_failed);
    for u in users {
        let (o, f) = u.leave();
        assert!(o > 0);
        ok += o;
        failed += f;
    }
    eprintln!(
        "{ok} requests ({:.0}/s) over {elapsed:?}, {failed} failed; {served} new users served, {lost} without a ticket",
        ok as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(failed, 0, "no failed request across the swaps");
    assert_eq!(lost, 0, "every new user got a ticket");
    assert!(served > 10, "users kept arriving: {served}");
    assert_eq!(
        metric_at(metrics, "wicket_policy_load_errors_total", "").await,
        0.0,
        "every version was accepted"
    );
}

/// (9) A policy in parts (`wicket policy configmap`, parts of 8 KiB) updated
/// under load with one part of the new version not applied: the last good
/// version keeps serving, a Warning Event names the missing part; once it
/// is applied, the new version serves. No failed request. A host started
/// afterwards assembles the version from its parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_in_parts_half_applied_keeps_the_last_good_version() {
    let mut env = Env::start(host_config()).await;
    let (spare, faulty) = (
        common::policy_path("spare-tickets"),
        common::policy_path("faulty"),
    );
    let (spare_digest, faulty_digest) = (
        sha256_hex(&std::fs::read(&spare).unwrap()),
        sha256_hex(&std::fs::read(&faulty).unwrap()),
    );
    let args = [
        "--name",
        "policies",
        "--key",
        "choice.wasm",
        "--part-bytes",
        "8192",
    ];
    let first = policy_configmap_yaml(&spare, &args).await;
    assert!(yaml_docs(&first).len() >= 3, "in parts");
    env.cluster.kubectl_apply(first).await;
    // `spread` (read only by the faulty test policy) spreads users; the
    // default packs them: a visible change of behaviour.
    let (_, app) = env
        .deploy(
            "parts",
            &[
                (ann::TICKETS_MAX, "4"),
                (ann::TICKETS_SPARE, "0"),
                (ann::PODS_MAX, "0"),
                (ann::POLICY, "policies/choice.wasm"),
                (ann::POLICY_CONFIG, "spread"),
            ],
            &["parts-a", "parts-b"],
        )
        .await;
    wait_for(LIMIT, || async {
        app.policy().active().digest == spare_digest
    })
    .await;
    let addr = env.host.proxy_addr;
    let a = ticket(addr, "parts", LIMIT).await;
    let b = ticket(addr, "parts", LIMIT).await;
    assert_eq!((a.pod.as_str(), b.pod.as_str()), ("parts-a", "parts-a"));
    let mut users = vec![User::start(addr, "parts", a), User::start(addr, "parts", b)];

    // The new version without its part 1 (that ConfigMap still holds the
    // old version's part 1).
    let docs = yaml_docs(&policy_configmap_yaml(&faulty, &args).await);
    assert!(docs.len() >= 3, "in parts");
    let (missing, applied): (Vec<String>, Vec<String>) = docs
        .into_iter()
        .partition(|d| d.contains("  name: \"policies-part-1\"\n"));
    assert_eq!(missing.len(), 1);
    env.cluster.kubectl_apply(applied.concat()).await;
    let e = env
        .wait_event(
            "PolicyPartsMissing",
            &[
                "policies/choice.wasm",
                &format!(
                    "part 1 (policies-part-1 holds version {})",
                    &spare_digest[..12]
                ),
                &format!("the last good version {} serves", &spare_digest[..12]),
            ],
        )
        .await;
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.policy().active().digest, spare_digest, "last good kept");
    let c = ticket(addr, "parts", LIMIT).await;
    assert_eq!(c.pod, "parts-a", "still packing");
    users.push(User::start(addr, "parts", c));

    // The missing part applied: the new version serves.
    env.cluster.kubectl_apply(missing.concat()).await;
    wait_for(LIMIT, || async {
        app.policy().active().digest == faulty_digest
    })
    .await;
    env.wait_event(
        "PolicyLoaded",
        &["policies/choice.wasm", &faulty_digest[..12]],
    )
    .await;
    let d = ticket(addr, "parts", LIMIT).await;
    assert_eq!(d.pod, "parts-b", "the new policy spreads");
    users.push(User::start(addr, "parts", d));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for u in users {
        let (ok, failed) = u.leave();
        assert!(ok > 0);
        assert_eq!(failed, 0, "no failed request across the update");
    }
    assert_eq!(
        metric_at(env.host.metrics_addr, "wicket_policy_load_errors_total", "").await,
        0.0
    );

    // Another host (as after a restart) lists the ConfigMaps, the policy
    // ConfigMap before its parts: it assembles the serving version from
    // them, without a "missing part" warning of its own.
    let token = env.cluster.service_account_token();
    let sa = env.cluster.client_with_token(&token).await;
    let second = wicket::run::start(host_config(), sa).await.unwrap();
    wait_for(LIMIT, || async {
        second
            .apps
            .get("parts")
            .is_some_and(|a| a.policy().active().digest == faulty_digest)
    })
    .await;
    assert_eq!(
        env.events("PolicyPartsMissing").await.len(),
        1,
        "only the half-applied update's"
    );
    drop(second);
}

/// (7) Two `wicket run` processes (with the ServiceAccount's token) against
/// one cluster: exactly one leads and scales, the other serves only. The
/// leader is killed (SIGKILL: its Lease stays held until it expires): the
/// other takes over and scales within the lease duration (+ 3 s); pods.max
/// is never exceeded and no pod is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_another_replica_takes_over_scaling() {
    const LEASE_SECONDS: u64 = 4;
    let cluster = Cluster::start();
    cluster.apply_deploy();
    let admin = cluster.admin().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&cluster.service_account_token(), &kubeconfig);
    let toml = format!(
        "[kubernetes]\nnamespaces = [\"{NS}\"]\napp_ports = false\n\
         retry_initial_ms = 100\nretry_max_ms = 1000\n\
         lease_duration_seconds = {LEASE_SECONDS}\nlease_renew_before_seconds = 1\n"
    );
    // a starts first and leads; b follows.
    let a = WicketProcess::start(dir.path(), &kubeconfig, "wicket-a", &toml).await;
    wait_for(LIMIT, || async { a.leader().await == 1.0 }).await;
    let b = WicketProcess::start(dir.path(), &kubeconfig, "wicket-b", &toml).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        (a.leader().await, b.leader().await),
        (1.0, 0.0),
        "exactly one leads"
    );

    // Every autoscaled pod the API ever held, and the most at once.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let seen = Arc::new(parking_lot::Mutex::new((
        std::collections::BTreeSet::<String>::new(),
        0usize,
    )));
    let watcher = {
        let (pods, seen) = (pods.clone(), Arc::clone(&seen));
        let lp = ListParams::default().labels(&format!("{}=true", ann::SCALED_LABEL));
        tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&lp).await {
                    let mut s = seen.lock();
                    s.1 = s.1.max(list.items.len());
                    s.0.extend(list.items.iter().map(|p| p.name_any()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let autoscaled = || async {
        let lp = ListParams::default().labels(&format!("{}=true", ann::SCALED_LABEL));
        let mut v: Vec<String> = pods
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        v.sort();
        v
    };

    // An app with no pods yet and spare 1: both replicas see the shortfall;
    // only the leader creates the pod (two would make two).
    let d = app_deployment(
        "ha",
        &[
            (ann::TICKETS_MAX, "1"),
            (ann::TICKETS_SPARE, "1"),
            (ann::PODS_MAX, "2"),
        ],
        pod_port(),
    );
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_for(LIMIT, || async { autoscaled().await.len() == 1 }).await;
    let first = autoscaled().await.remove(0);
    let mut kubelet = Kubelet::new(admin.clone());
    kubelet.run(&first).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(autoscaled().await.len(), 1, "one pod: one leader scaled");

    // A user takes the free ticket through b: b now lacks a spare ticket,
    // but b follows, and a does not know b's users (tickets in memory).
    let t = ticket(b.proxy_addr, "ha", LIMIT).await;
    assert_eq!(t.pod, first);
    let user = User::start(b.proxy_addr, "ha", t);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(autoscaled().await.len(), 1, "the follower does not scale");

    // The leader dies without releasing the Lease.
    let killed = Instant::now();
    a.kill().await;
    wait_for(Duration::from_secs(LEASE_SECONDS + 10), || async {
        autoscaled().await.len() == 2
    })
    .await;
    let took = killed.elapsed();
    eprintln!("leader killed: the other replica scaled after {took:?} (lease {LEASE_SECONDS} s)");
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 3),
        "failover took {took:?}, bound {LEASE_SECONDS} s + 3 s"
    );
    assert_eq!(b.leader().await, 1.0, "b leads");
    let holder = Api::<Lease>::namespaced(admin.clone(), NS)
        .get(LEASE)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(holder.starts_with("wicket-b-"), "{holder}");

    // More demand than pods.max allows: b asks for no third pod.
    let second = autoscaled()
        .await
        .into_iter()
        .find(|p| *p != first)
        .unwrap();
    kubelet.run(&second).await;
    let t2 = ticket(b.proxy_addr, "ha", LIMIT).await;
    assert_eq!(t2.pod, second);
    let user2 = User::start(b.proxy_addr, "ha", t2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    watcher.abort();
    let (names, most) = seen.lock().clone();
    assert_eq!(most, 2, "pods.max 2 never exceeded");
    assert_eq!(names.len(), 2, "no pod created twice: {names:?}");
    for u in [user, user2] {
        let (ok, failed) = u.leave();
        assert!(ok > 0);
        assert_eq!(failed, 0, "the follower served its users throughout");
    }

    // SIGTERM on the leader: it frees the Lease before it exits (0), and
    // the next replica leads within the same bound.
    let c = WicketProcess::start(dir.path(), &kubeconfig, "wicket-c", &toml).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((b.leader().await, c.leader().await), (1.0, 0.0));
    let stopped = Instant::now();
    let status = b.terminate().await;
    assert!(status.success(), "{status}");
    let holder = Api::<Lease>::namespaced(admin.clone(), NS)
        .get(LEASE)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        !holder.starts_with("wicket-b-"),
        "released on SIGTERM: {holder:?}"
    );
    wait_for(Duration::from_secs(LEASE_SECONDS + 10), || async {
        c.leader().await == 1.0
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("leader stopped (SIGTERM): the next one led after {took:?}");
    assert!(took <= Duration::from_secs(LEASE_SECONDS + 3), "{took:?}");
}

/// (8) A Role without the Lease rules (deploy/ before leader election): the
/// host serves but never scales (two hosts might both scale otherwise; it
/// logs the missing rule); once the Role has them, it leads and scales
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_lease_rights_the_host_serves_but_does_not_scale() {
    let c = Cluster::start();
    c.apply_deploy();
    let rules = c.kubectl_ok(&[
        "get",
        "-n",
        NS,
        "role/wicket",
        "-o",
        "jsonpath={.rules[4].resources} {.rules[5].resources}",
    ]);
    assert_eq!(
        rules, r#"["leases"] ["leases"]"#,
        "rules 4 and 5 are the Lease's"
    );
    c.kubectl_ok(&[
        "patch",
        "-n",
        NS,
        "role/wicket",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/rules/5"},{"op":"remove","path":"/rules/4"}]"#,
    ]);
    let sa = c.client_with_token(&c.service_account_token()).await;
    let host = wicket::run::start(host_config(), sa).await.unwrap();
    let admin = c.admin().await;
    let d = app_deployment(
        "nolease",
        &[(ann::TICKETS_SPARE, "1"), (ann::PODS_MAX, "1")],
        pod_port(),
    );
    Api::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    wait_for(LIMIT, || async { host.apps.get("nolease").is_some() }).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let lp = ListParams::default().labels(&format!("{}=true", ann::SCALED_LABEL));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(host.metrics.leader.get(), 0, "no Lease, no leader");
    assert!(
        pods.list(&lp).await.unwrap().items.is_empty(),
        "no leader, no pods"
    );

    // The Role again as deploy/ ships it: the host leads and scales.
    c.kubectl_ok(&["apply", "-k", "deploy/"]);
    wait_for(LIMIT, || async { host.metrics.leader.get() == 1 }).await;
    wait_for(LIMIT, || async {
        pods.list(&lp).await.unwrap().items.len() == 1
    })
    .await;
}
