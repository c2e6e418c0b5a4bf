//! The real-control-plane tier: a kube-apiserver + etcd per test (started
//! with scripts/cluster/start.sh, stopped on drop), clients for the admin and
//! for wicket's ServiceAccount, and a fake kubelet: the test patches pod
//! status to Running/Ready with a podIP of 127.0.x.y and runs a real backend
//! (`wicket demo-app`) on that address.

#![allow(dead_code, missing_docs, clippy::unwrap_used)] // each test uses a subset; tests may unwrap

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command as TokioCommand};
use wicket::app::App;
use wicket::config::Config;
use wicket::kube::annotations as ann;

// The one polling helper of the integration tests; re-exported so the
// cluster tests get it with `use cluster::*`. A test binary that uses this
// module declares `mod common;` too.
pub use crate::common::wait_for;

/// The namespace deploy/ puts wicket in.
pub const NS: &str = "wicket";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn scripts() -> PathBuf {
    repo_root().join("scripts/cluster")
}

/// The cached control-plane binaries, or a loud failure with the command.
fn require_binaries() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}/common.sh' && binaries_cached && echo \"$BIN_DIR\"",
            scripts().display()
        ))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "\n\nThe test control plane (kube-apiserver, etcd, kubectl) is not built.\n\
         Build it once (cached in ~/.cache/wicket/control-plane; ~18 min cold on 2 cores):\n\n    \
         scripts/cluster/build.sh\n\nThese tests do not skip: they need a real apiserver.\n"
    );
}

/// One apiserver + etcd, stopped (and its directory removed) on drop.
pub struct Cluster {
    pub run_dir: PathBuf,
    pub env: HashMap<String, String>,
}

impl Cluster {
    pub fn start() -> Self {
        require_binaries();
        let started = Instant::now();
        let out = Command::new(scripts().join("start.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("start.sh runs");
        assert!(out.status.success(), "start.sh failed");
        let run_dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let text = std::fs::read_to_string(run_dir.join("cluster.env")).expect("cluster.env");
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        eprintln!(
            "cluster {} up in {:?}",
            run_dir.display(),
            started.elapsed()
        );
        Self { run_dir, env }
    }

    pub fn var(&self, k: &str) -> &str {
        self.env
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{k} missing in cluster.env"))
    }

    /// Runs kubectl (admin) and returns its output.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.var("KUBECTL"))
            .args(args)
            .env("KUBECONFIG", self.var("KUBECONFIG"))
            .current_dir(repo_root())
            .output()
            .expect("kubectl runs")
    }

    /// Runs kubectl and panics with its stderr if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply --server-side -f -` (admin) with `yaml` on stdin, as
    /// an operator applies `wicket policy configmap`'s output; off the
    /// async threads. Panics with kubectl's stderr if it fails.
    pub async fn kubectl_apply(&self, yaml: String) {
        use std::io::Write as _;
        let kubectl = self.var("KUBECTL").to_owned();
        let kubeconfig = self.var("KUBECONFIG").to_owned();
        let out = tokio::task::spawn_blocking(move || {
            let mut child = Command::new(kubectl)
                .args(["apply", "--server-side", "-f", "-"])
                .env("KUBECONFIG", kubeconfig)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubectl runs");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(yaml.as_bytes())
                .expect("writing to kubectl");
            child.wait_with_output().expect("kubectl runs")
        })
        .await
        .expect("kubectl task");
        assert!(
            out.status.success(),
            "kubectl apply failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `apiserver.sh <args>` (blocking).
    pub fn apiserver(&self, args: &[&str]) {
        let status = Command::new(scripts().join("apiserver.sh"))
            .args(args)
            .arg(&self.run_dir)
            .stdout(Stdio::null())
            .status()
            .expect("apiserver.sh runs");
        assert!(status.success(), "apiserver.sh {args:?} failed");
    }

    async fn client_from(&self, kubeconfig: Kubeconfig) -> Client {
        let cfg = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kube config");
        Client::try_from(cfg).expect("client")
    }

    pub async fn admin(&self) -> Client {
        self.client_from(Kubeconfig::read_from(self.var("KUBECONFIG")).expect("kubeconfig"))
            .await
    }

    /// A client that authenticates with `token` (same server and CA).
    pub async fn client_with_token(&self, token: &str) -> Client {
        let mut kc = Kubeconfig::read_from(self.var("KUBECONFIG")).expect("kubeconfig");
        for user in &mut kc.auth_infos {
            if let Some(auth) = user.auth_info.as_mut() {
                auth.token = Some(token.to_owned().into());
            }
        }
        // As in a pod, where the client's namespace is the ServiceAccount's:
        // the host's own namespace (where its leader Lease is).
        for ctx in &mut kc.contexts {
            if let Some(c) = ctx.context.as_mut() {
                c.namespace = Some(NS.to_owned());
            }
        }
        self.client_from(kc).await
    }

    /// A kubeconfig file at `path` that authenticates with `token`, in
    /// namespace `wicket`, for a `wicket run` process.
    pub fn write_kubeconfig(&self, token: &str, path: &Path) {
        let mut kc = Kubeconfig::read_from(self.var("KUBECONFIG")).expect("kubeconfig");
        for user in &mut kc.auth_infos {
            if let Some(auth) = user.auth_info.as_mut() {
                auth.token = Some(token.to_owned().into());
            }
        }
        for ctx in &mut kc.contexts {
            if let Some(c) = ctx.context.as_mut() {
                c.namespace = Some(NS.to_owned());
            }
        }
        // JSON is YAML: no YAML writer needed.
        std::fs::write(path, serde_json::to_vec(&kc).expect("kubeconfig json")).expect("write");
    }

    /// `kubectl create namespace wicket` + `kubectl apply -k deploy/`.
    pub fn apply_deploy(&self) {
        self.kubectl_ok(&["create", "namespace", NS]);
        self.kubectl_ok(&["apply", "-k", "deploy/"]);
    }

    /// A TokenRequest for wicket's ServiceAccount.
    pub fn service_account_token(&self) -> String {
        self.kubectl_ok(&["create", "token", "wicket", "-n", NS, "--duration", "1h"])
            .trim()
            .to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(scripts().join("stop.sh"))
            .arg(&self.run_dir)
            .stderr(Stdio::null())
            .status();
    }
}

/// Host config for the tests: free loopback ports, fast timings, namespace `wicket`.
pub fn host_config() -> Config {
    let mut c = Config::default();
    c.proxy.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.proxy.ticket_expiry_ms = 600;
    c.proxy.waiting_message_ms = 200;
    // Debug builds on a busy machine: loading (a dry run under the deadline)
    // must not fail for lack of time.
    c.policy.timeout_ms = 500;
    c.kubernetes.namespaces = vec![NS.to_owned()];
    c.kubernetes.retry_initial_ms = 100;
    c.kubernetes.retry_max_ms = 1000;
    // Apps' own ports default to 9001: only the test of per-app ports opens them.
    c.kubernetes.app_ports = false;
    c
}

/// A cluster with deploy/ applied and a host running with the
/// ServiceAccount's token, plus an admin client for the test's own moves.
pub struct Env {
    pub host: wicket::run::Running,
    pub admin: Client,
    pub kubelet: Kubelet,
    pub cluster: Cluster,
}

impl Env {
    pub async fn start(config: Config) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    // The controller's info lines (apps added, drained,
                    // removed) are few and are what a failure needs; the
                    // test writer shows them only for failing tests.
                    .unwrap_or_else(|_| "warn,wicket::kube=info".into()),
            )
            .with_test_writer()
            .try_init();
        let cluster = Cluster::start();
        cluster.apply_deploy();
        let token = cluster.service_account_token();
        let sa = cluster.client_with_token(&token).await;
        let host = wicket::run::start(config, sa).await.expect("host starts");
        let admin = cluster.admin().await;
        Self {
            host,
            kubelet: Kubelet::new(admin.clone()),
            admin,
            cluster,
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), NS)
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.admin.clone(), NS)
    }

    /// Waits until the app is served.
    pub async fn wait_app(&self, name: &str) -> Arc<App> {
        wait_for(Duration::from_secs(20), || async {
            self.host.apps.get(name).is_some()
        })
        .await;
        self.host.apps.get(name).unwrap()
    }

    /// Deploys app `name` as a k8sTicket user would: runs its `replicas`
    /// first (as after a host restart, the pods exist before the app), then
    /// creates its Deployment (see [`app_deployment`]) and waits until the
    /// app is served with every replica. Returns the Deployment as the
    /// apiserver stored it (with its uid) and the app.
    pub async fn deploy(
        &mut self,
        name: &str,
        annotations: &[(&str, &str)],
        replicas: &[&str],
    ) -> (Deployment, Arc<App>) {
        let d = app_deployment(name, annotations, pod_port());
        for r in replicas {
            self.kubelet.replica(&d, r).await;
        }
        let d = self
            .deployments()
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        let app = self.wait_app(name).await;
        wait_for(Duration::from_secs(20), || async {
            replicas.iter().all(|r| app.has_pod(r))
        })
        .await;
        (d, app)
    }

    /// Merge-patches Deployment `name` (labels, annotations) as an admin.
    pub async fn patch_deployment(&self, name: &str, patch: &serde_json::Value) {
        self.deployments()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
    }

    /// Autoscaled pods of `app` in the API, by name.
    pub async fn autoscaled(&self, app: &str) -> Vec<Pod> {
        let lp = ListParams::default().labels(&format!(
            "{}=true,{}={app}",
            ann::SCALED_LABEL,
            ann::APP_NAME
        ));
        let mut v = self.pods().list(&lp).await.unwrap().items;
        v.retain(|p| p.metadata.deletion_timestamp.is_none());
        v.sort_by_key(|p| p.name_any());
        v
    }

    /// Events (events.k8s.io/v1) in the namespace with `reason`.
    pub async fn events(&self, reason: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.admin.clone(), NS);
        let mut v = api.list(&ListParams::default()).await.unwrap().items;
        v.retain(|e| e.reason.as_deref() == Some(reason));
        v
    }

    /// Waits for an event with `reason` whose note contains every word.
    pub async fn wait_event(&self, reason: &str, words: &[&str]) -> Event {
        let start = Instant::now();
        loop {
            if let Some(e) = self.events(reason).await.into_iter().find(|e| {
                words
                    .iter()
                    .all(|w| e.note.as_deref().unwrap_or("").contains(w))
            }) {
                return e;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no {reason} event with {words:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An app Deployment as a k8sTicket user writes it. `pod_port`: the app's
/// port in the pods (pod.port template annotation).
pub fn app_deployment(name: &str, annotations: &[(&str, &str)], pod_port: u16) -> Deployment {
    let mut ann: BTreeMap<String, String> = [(ann::APP_NAME.to_owned(), name.to_owned())].into();
    for (k, v) in annotations {
        ann.insert((*k).to_owned(), (*v).to_owned());
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": format!("{name}-deploy"),
            "labels": { ann::ENABLED_LABEL: "true" },
            "annotations": ann,
        },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": {
                    "labels": { "app": name, ann::APP_NAME: name },
                    "annotations": { ann::POD_PORT: pod_port.to_string(), ann::POD_PATH: "/" },
                },
                "spec": { "containers": [{ "name": "app", "image": "wicket-demo-app:test" }] },
            },
        },
    }))
    .unwrap()
}

/// A Deployment replica, made from the template the way a ReplicaSet would
/// (no ownerReference needed: nothing here reads it).
pub fn replica_pod(d: &Deployment, name: &str) -> Pod {
    let t = &d.spec.template;
    let meta = t.metadata.clone().unwrap();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": meta.labels, "annotations": meta.annotations },
        "spec": t.spec,
    }))
    .unwrap()
}

static NEXT_SUBNET: AtomicU8 = AtomicU8::new(10);

/// The kubelet's part: runs a backend per pod and reports it Running/Ready.
pub struct Kubelet {
    admin: Client,
    subnet: u8,
    next_host: u8,
    procs: HashMap<String, Child>,
}

impl Kubelet {
    pub fn new(admin: Client) -> Self {
        Self {
            admin,
            subnet: NEXT_SUBNET.fetch_add(1, Ordering::Relaxed),
            next_host: 1,
            procs: HashMap::new(),
        }
    }

    /// Starts `wicket demo-app` for `pod` on a fresh 127.0.x.y at its pod.port
    /// and patches its status to Running/Ready with that podIP.
    pub async fn run(&mut self, pod: &str) -> SocketAddr {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), NS);
        let p = api.get(pod).await.unwrap();
        let port: u16 = p
            .annotations()
            .get(ann::POD_PORT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(80);
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, self.subnet, self.next_host));
        self.next_host += 1;
        let addr = SocketAddr::new(ip, port);
        let mut child = TokioCommand::new(env!("CARGO_BIN_EXE_wicket"))
            .args(["demo-app", "--listen", &addr.to_string(), "--pod", pod])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap_or_default();
        assert!(
            first.starts_with(wicket::demo_app::LISTENING),
            "backend for {pod}: {first}"
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.procs.insert(pod.to_owned(), child);
        self.set_ready(pod, &ip.to_string(), true).await;
        addr
    }

    /// Patches the pod's status (the status subresource, as a kubelet does).
    pub async fn set_ready(&self, pod: &str, ip: &str, ready: bool) {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), NS);
        let status = json!({
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{ "ip": ip }],
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            }
        });
        api.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    /// Creates a replica pod of `d` and runs it.
    pub async fn replica(&mut self, d: &Deployment, name: &str) -> SocketAddr {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), NS);
        api.create(&PostParams::default(), &replica_pod(d, name))
            .await
            .unwrap();
        self.run(name).await
    }
}

/// A free TCP port on 127.0.0.1 (for an app's own port annotation).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port for pod backends (bound on 127.0.x.y, so any value works that no
/// other listener on those addresses uses).
pub fn pod_port() -> u16 {
    free_port()
}

/// `wicket run` as a separate process (the binary), with its own config and
/// kubeconfig, killed on drop. Its log lines go to the test's stderr,
/// prefixed with its name.
pub struct WicketProcess {
    pub name: String,
    pub proxy_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    child: Child,
}

impl WicketProcess {
    /// Starts `wicket run --config <dir>/<name>.toml` with `extra_toml`
    /// appended to a config of free loopback ports, watching namespace
    /// `wicket`; `POD_NAME` is `name`. Returns once `/metrics` answers.
    pub async fn start(dir: &Path, kubeconfig: &Path, name: &str, extra_toml: &str) -> Self {
        let proxy_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            "[proxy]\nlisten = \"{proxy_addr}\"\n[metrics]\nlisten = \"{metrics_addr}\"\n\
             [policy]\ntimeout_ms = 500\n{extra_toml}"
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut child = TokioCommand::new(env!("CARGO_BIN_EXE_wicket"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", NS)
            .env("RUST_LOG", "warn,wicket::kube=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let prefix = name.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("[{prefix}] {l}");
            }
        });
        let client = crate::common::client();
        wait_for(Duration::from_secs(60), || async {
            let uri: http::Uri = format!("http://{metrics_addr}/healthz").parse().unwrap();
            client.get(uri).await.is_ok()
        })
        .await;
        Self {
            name: name.to_owned(),
            proxy_addr,
            metrics_addr,
            child,
        }
    }

    /// `wicket_leader` of this process (1 leads, 0 follows).
    pub async fn leader(&self) -> f64 {
        crate::common::metric_at(self.metrics_addr, "wicket_leader", "").await
    }

    /// SIGTERM, and the exit status (within 60 s).
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap()
    }

    /// SIGKILL: no goodbye, the Lease stays held until it expires.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}
