//! `wicket demo`: the whole host with the local provider — real proxy, real
//! policy, real backend processes — and no cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::{App, Routing};
use crate::apps::Apps;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{PolicyRunner, PolicySetup, PolicySource};
use crate::provider::local::LocalProvider;
use crate::provider::{PodEvent, PodProvider};
use crate::proxy::{self, Proxy};
use crate::state::{Backend, PodInfo};

/// A running demo host. Dropping it stops everything, pods included.
#[derive(Debug)]
pub struct Demo {
    /// Where users connect.
    pub proxy_addr: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// The apps (one: the demo app).
    pub apps: Arc<Apps>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// The policy source the app follows.
    pub source: Arc<PolicySource>,
    /// The proxy (for a graceful [`Proxy::shutdown`] before the drop).
    pub proxy: Arc<Proxy>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the demo host. `exe` is the wicket binary (pods run `exe demo-app`).
pub async fn start(config: Config, exe: PathBuf) -> anyhow::Result<Demo> {
    let metrics = Metrics::new().context("creating metrics")?;
    // Alone, outside Kubernetes: the host is its own leader (no Lease).
    metrics.leader.set(1);
    // First: a wrong or unreachable store stops the start at once.
    let sharing = crate::store::Sharing::open(&config.store).await?;
    let PolicySetup {
        engine,
        default,
        source,
        watcher,
    } = PolicySetup::start(config.limits(), config.policy_file(), &metrics.policy).await?;
    let mut tasks: Vec<JoinHandle<()>> = watcher.into_iter().collect();

    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let delay = Duration::from_millis(config.demo.pod_start_delay_ms);
    let provider = Arc::new(LocalProvider::new(exe, delay, events_tx));
    let name = config.demo.app.clone();
    let runner = PolicyRunner::new(
        &name,
        Arc::clone(&engine),
        Arc::clone(&source),
        default,
        metrics.policy.clone(),
    );
    let app = App::new(
        Routing {
            name: name.clone(),
            dns: config.demo.dns,
        },
        config.demo_settings(),
        Duration::from_millis(config.proxy.ticket_expiry_ms),
        runner,
        Arc::clone(&provider) as Arc<dyn PodProvider>,
        metrics.clone(),
    );
    app.set_display_name(Some(&config.demo.display_name));
    app.set_resume_grace(config.demo.resume_grace);
    app.set_timezone(config.timezone());
    let apps = Arc::new(Apps::default());
    apps.insert(Arc::clone(&app));

    for _ in 0..config.demo.replicas {
        let pod = provider
            .start_replica(&name)
            .await
            .context("starting a demo replica")?;
        app.apply(PodEvent::Upsert {
            app: name.clone(),
            pod,
        });
    }
    for (i, addr) in config.demo.static_backends.iter().enumerate() {
        let pod = PodInfo {
            name: format!("{name}-static-{i}"),
            backend: Some(Backend::new(*addr, "/")),
            ready: true,
            autoscaled: false,
        };
        app.apply(PodEvent::Upsert {
            app: name.clone(),
            pod,
        });
    }
    app.share(&sharing);
    // Tickets held before a restart open again before anyone connects.
    app.load_shared()
        .await
        .context("loading the tickets from the store (store.url)")?;
    let table = Arc::clone(&apps);
    tasks.push(tokio::spawn(async move {
        // One writer applies pod events to the apps' state.
        while let Some(event) = events_rx.recv().await {
            let app_name = match &event {
                PodEvent::Upsert { app, .. } | PodEvent::Gone { app, .. } => app.clone(),
            };
            if let Some(app) = table.get(&app_name) {
                app.apply(event);
            }
        }
    }));
    tasks.push(tokio::spawn(Arc::clone(&app).run()));
    // Keep the provider (and so the pod processes) alive as long as the demo.
    let keep = Arc::clone(&provider);
    tasks.push(tokio::spawn(async move {
        std::future::pending::<()>().await;
        drop(keep);
    }));

    let listeners = proxy::edge::bind(
        config.proxy.listen,
        proxy::edge::thread_count(config.proxy.threads),
    )
    .with_context(|| format!("binding proxy.listen {}", config.proxy.listen))?;
    let proxy_addr = listeners.local_addr();
    let proxy = Proxy::new(Arc::clone(&apps), config.proxy_settings());
    tasks.push(tokio::spawn(proxy::edge::serve(
        listeners,
        Arc::clone(&proxy),
        None,
    )));

    let admin = TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| format!("binding metrics.listen {}", config.metrics.listen))?;
    let metrics_addr = admin.local_addr()?;
    tasks.push(tokio::spawn(crate::admin::serve(
        admin,
        metrics.clone(),
        Arc::clone(&apps),
    )));

    Ok(Demo {
        proxy_addr,
        metrics_addr,
        apps,
        metrics,
        source,
        proxy,
        tasks,
    })
}
