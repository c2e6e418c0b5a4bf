//! `wicket run`: the host as a Kubernetes controller (the drop-in
//! replacement for k8sTicket). Wires the policy engine, the ConfigMap
//! policies, the controller (Deployments and Pods → apps), the shared proxy
//! port and the admin endpoint, the way [`crate::demo`] wires the local mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::app_ports::AppPorts;
use crate::apps::Apps;
use crate::config::Config;
use crate::kube::controller::{Controller, Shared};
use crate::kube::health::ApiHealth;
use crate::kube::leader::{Leader, LeaseSettings};
use crate::kube::policies::{self, PolicyStore};
use crate::kube::retry::RetrySettings;
use crate::kube::{events, namespace};
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::policy::{PolicySetup, PolicySource};
use crate::proxy::{self, Proxy};
use crate::task::Task;

/// A running Kubernetes-mode host. Dropping it stops everything (the pods
/// it created stay; they are adopted by the next host).
#[derive(Debug)]
pub struct Running {
    /// The shared port: every app at `/<app>/`.
    pub proxy_addr: SocketAddr,
    /// `/metrics` and `/healthz`.
    pub metrics_addr: SocketAddr,
    /// The apps (read by the proxy).
    pub apps: Arc<Apps>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// The watched namespaces.
    pub namespaces: Vec<String>,
    /// What apps without a `wicket.dev/policy` annotation follow.
    pub default_source: Arc<PolicySource>,
    /// The ConfigMap policies.
    pub policies: Arc<PolicyStore>,
    /// What waits for the API while it cannot be reached.
    pub health: Arc<ApiHealth>,
    /// Whether this replica scales.
    pub leadership: Leadership,
    /// The Lease election (None with `leader_election = false`).
    leader: Option<Leader>,
    /// The proxy (for a graceful [`Proxy::shutdown`] before the drop).
    pub proxy: Arc<Proxy>,
    ports: Option<Arc<AppPorts>>,
    _tasks: Vec<Task>,
}

impl Running {
    /// Where app `name`'s own port (deployment.port) listens, if open.
    pub fn app_addr(&self, name: &str) -> Option<SocketAddr> {
        self.ports.as_ref()?.addr(name)
    }

    /// Stops scaling and releases the leader Lease for the next leader (on
    /// SIGTERM, before the drain).
    pub async fn step_down(&mut self) {
        if let Some(leader) = self.leader.take() {
            leader.step_down().await;
        }
    }
}

/// The leader election from `[kubernetes]`: this replica's identity is its
/// instance name with a random suffix (two processes never share one).
fn lease_settings(config: &Config, namespace: String) -> LeaseSettings {
    let k = &config.kubernetes;
    LeaseSettings {
        name: k.lease_name.clone(),
        namespace,
        identity: format!("{}-{:08x}", instance(), rand::random::<u32>()),
        duration: Duration::from_secs(k.lease_duration_seconds),
        renew_before: Duration::from_secs(k.lease_renew_before_seconds),
    }
}

/// API retry settings from `[kubernetes]`.
pub fn retry_settings(config: &Config) -> RetrySettings {
    let k = &config.kubernetes;
    RetrySettings {
        initial: Duration::from_millis(k.retry_initial_ms),
        max: Duration::from_millis(k.retry_max_ms),
        deadline: Duration::from_millis(k.action_timeout_ms),
    }
}

/// The name events are reported under: the pod name (`POD_NAME`, from the
/// downward API), else the host name, else `wicket`.
fn instance() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "wicket".into())
}

/// Starts the host against the cluster `client` talks to. Returns once the
/// ports are bound; apps appear as the watches deliver their Deployments.
pub async fn start(config: Config, client: ::kube::Client) -> anyhow::Result<Running> {
    let metrics = Metrics::new().context("creating metrics")?;
    // First: a wrong or unreachable store stops the start at once.
    let sharing = crate::store::Sharing::open(&config.store).await?;
    let PolicySetup {
        engine,
        default,
        source: default_source,
        watcher,
    } = PolicySetup::start(config.limits(), config.policy_file(), &metrics.policy).await?;
    let mut tasks = Vec::new();
    if let Some(watch) = watcher {
        tasks.push(Task::spawn(async move {
            let _ = watch.await;
        }));
    }
    let namespaces =
        namespace::from_environment(&config.kubernetes.namespaces, client.default_namespace());
    tracing::info!(?namespaces, "watching namespaces");
    let retry = retry_settings(&config);

    let (event_sink, event_task) = events::start(client.clone(), instance(), retry);
    tasks.push(Task::spawn(async move {
        let _ = event_task.await;
    }));
    let store = PolicyStore::new(
        Arc::clone(&engine),
        Arc::clone(&default),
        metrics.clone(),
        event_sink.clone(),
    );
    tasks.push(Task::spawn(policies::watch(
        Arc::clone(&store),
        client.clone(),
        namespaces.clone(),
        retry,
    )));

    let threads = proxy::edge::thread_count(config.proxy.threads);
    let listeners = proxy::edge::bind(config.proxy.listen, threads)
        .with_context(|| format!("binding proxy.listen {}", config.proxy.listen))?;
    let proxy_addr = listeners.local_addr();
    let apps = Arc::new(Apps::default());
    let proxy = Proxy::new(Arc::clone(&apps), config.proxy_settings());
    tasks.push(Task::spawn(proxy::edge::serve(
        listeners,
        Arc::clone(&proxy),
        None,
    )));

    let admin = TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| format!("binding metrics.listen {}", config.metrics.listen))?;
    let metrics_addr = admin.local_addr()?;
    tasks.push(Task::spawn(crate::admin::serve(
        admin,
        metrics.clone(),
        Arc::clone(&apps),
    )));

    let ports = config.kubernetes.app_ports.then(|| {
        AppPorts::new(
            Arc::clone(&proxy),
            config.proxy.listen.ip(),
            threads,
            proxy_addr.port(),
        )
    });
    let (leadership, leader) = if config.kubernetes.leader_election {
        // The Lease lives in the host's own namespace, whatever it watches.
        let own = namespace::from_environment(&[], client.default_namespace()).remove(0);
        let leader = Leader::start(
            client.clone(),
            lease_settings(&config, own),
            Leadership::follower(),
            metrics.clone(),
            event_sink.clone(),
            retry,
        );
        (leader.leadership().clone(), Some(leader))
    } else {
        metrics.leader.set(1);
        (Leadership::alone(), None)
    };
    let health = ApiHealth::new();
    let shared = Shared {
        client,
        engine,
        default_policy: default,
        default_source: Arc::clone(&default_source),
        policies: Arc::clone(&store),
        apps: Arc::clone(&apps),
        ports: ports.clone(),
        metrics: metrics.clone(),
        events: event_sink,
        retry,
        health: Arc::clone(&health),
        expiry: Duration::from_millis(config.proxy.ticket_expiry_ms),
        sharing,
        timezone: config.timezone(),
        leadership: leadership.clone(),
    };
    tasks.push(Task::spawn(Controller::run(shared, namespaces.clone())));

    Ok(Running {
        proxy_addr,
        metrics_addr,
        apps,
        metrics,
        namespaces,
        default_source,
        policies: store,
        health,
        leadership,
        leader,
        proxy,
        ports,
        _tasks: tasks,
    })
}
