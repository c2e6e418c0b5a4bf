//! The controller: Deployment and Pod watches in, apps and pod events out.
//!
//! One task owns all of this state and applies watch events in order (the
//! one writer); the proxy only reads the resulting [`Apps`] table. Watches
//! reconnect on their own with backoff; after a re-list, objects that were
//! deleted while the watch was down are treated as deleted.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::annotations::{self, AppSpec, Map, Warning};
use super::events::{self, EventSink, EventType, Record};
use super::pods::{self, View};
use super::policies::PolicyStore;
use super::retry::{RetrySettings, WatchBackoff};
use crate::app::{App, Routing};
use crate::apps::Apps;
use crate::metrics::Metrics;
use crate::policy::{LoadedPolicy, PolicyEngine, PolicyRunner, PolicySource};
use crate::provider::kube::{KubeProvider, Resync, Template};
use crate::provider::{PodEvent, PodProvider};
use crate::proxy::{self, Proxy};
use crate::state::{AppSettings, PodInfo};

/// How often drained apps are checked for removal and failed app ports are
/// tried again.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// A task that is aborted when dropped.
#[derive(Debug)]
pub struct Task(JoinHandle<()>);

impl Task {
    /// Spawns `f`.
    pub fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(f))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything the controller needs from the host.
#[derive(Clone)]
pub struct Shared {
    /// The API client.
    pub client: Client,
    /// Policy engine and the embedded default policy.
    pub engine: Arc<PolicyEngine>,
    /// The last-resort policy.
    pub default_policy: Arc<LoadedPolicy>,
    /// What apps without a `wicket.dev/policy` annotation follow.
    pub default_source: Arc<PolicySource>,
    /// ConfigMap policies.
    pub policies: Arc<PolicyStore>,
    /// The table the proxy reads.
    pub apps: Arc<Apps>,
    /// The proxy (for per-app listeners).
    pub proxy: Arc<Proxy>,
    /// Metrics.
    pub metrics: Metrics,
    /// Events.
    pub events: EventSink,
    /// API retries.
    pub retry: RetrySettings,
    /// Ticket expiry.
    pub expiry: Duration,
    /// Per-app ports: the address their listeners bind (port replaced), or
    /// None when per-app ports are off.
    pub app_listen: Option<SocketAddr>,
    /// Edge threads (and sockets) per listener.
    pub edge_threads: usize,
    /// The shared port (an app on this port needs no listener of its own).
    pub shared_port: u16,
    /// Bound per-app listeners, by app name (for status and tests).
    pub ports: Arc<Mutex<HashMap<String, SocketAddr>>>,
    /// The time zone of apps without `wicket.dev/timezone` (`apps.timezone`).
    pub timezone: jiff::tz::TimeZone,
}

type NsName = (String, String);

/// An app run by the controller.
struct AppEntry {
    app: Arc<App>,
    _task: Task,
    provider: Arc<KubeProvider>,
    /// The Deployment that enables it; None while it drains.
    owner: Option<String>,
    spec: AppSpec,
    /// Pod template annotations (fallback for pod.port / pod.path).
    template_annotations: Option<Map>,
    listener: Option<(u16, Task)>,
    port_warned: Option<u16>,
    /// What the app was last told about each pod.
    sent: HashMap<String, PodInfo>,
}

#[derive(Default)]
struct DeployState {
    /// The app this Deployment enables (by name), if any.
    app: Option<String>,
    /// Warnings last reported (so they are reported once per change).
    warned: BTreeSet<Warning>,
    conflict_warned: Option<String>,
}

struct PodRecord {
    app: Option<String>,
    pod: Pod,
    warned: bool,
}

/// Watch input, tagged with its namespace.
enum Input {
    Deployment(String, Result<Event<Deployment>, watcher::Error>),
    Pod(String, Result<Event<Pod>, watcher::Error>),
}

/// The controller's state (owned by its task).
pub struct Controller {
    shared: Shared,
    resync_tx: mpsc::UnboundedSender<Resync>,
    apps: HashMap<NsName, AppEntry>,
    deployments: HashMap<NsName, DeployState>,
    pods: HashMap<NsName, PodRecord>,
    /// Names listed since the last `Init`, per (kind, namespace).
    relisting: HashMap<(&'static str, String), HashSet<String>>,
    /// A watch error was logged and the watch has not recovered yet.
    failing: HashSet<(&'static str, String)>,
    /// Namespaces whose pods have been listed once. Until then their
    /// Deployments wait in `pending`: an app that started before it knew its
    /// pods would scale up for capacity it already has.
    pods_synced: HashSet<String>,
    pending: HashMap<NsName, Deployment>,
}

/// The names in namespace `ns` among `known` that a relist did not return
/// (`seen`): the objects vanished while the watch was down.
fn vanished<'a>(
    known: impl Iterator<Item = &'a NsName>,
    seen: &HashSet<String>,
    ns: &str,
) -> Vec<String> {
    known
        .filter(|(n, name)| n == ns && !seen.contains(name))
        .map(|(_, name)| name.clone())
        .collect()
}

fn strip<K: kube::Resource>(mut obj: K) -> K {
    obj.meta_mut().managed_fields = None;
    obj
}

impl Controller {
    /// Runs the controller for `namespaces` until the task is aborted.
    pub async fn run(shared: Shared, namespaces: Vec<String>) {
        let (resync_tx, mut resync_rx) = mpsc::unbounded_channel();
        let mut c = Controller {
            shared,
            resync_tx,
            apps: HashMap::new(),
            deployments: HashMap::new(),
            pods: HashMap::new(),
            relisting: HashMap::new(),
            failing: HashSet::new(),
            pods_synced: HashSet::new(),
            pending: HashMap::new(),
        };
        let mut inputs = c.watches(&namespaces);
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.next() => match input {
                    Some(input) => c.handle(input),
                    None => {
                        tracing::error!("all watches ended; the controller stops");
                        return;
                    }
                },
                Some(r) = resync_rx.recv() => c.resync(r),
                _ = tick.tick() => c.housekeeping(),
            }
        }
    }

    fn watches(&self, namespaces: &[String]) -> Pin<Box<dyn Stream<Item = Input> + Send>> {
        let mut all: Vec<Pin<Box<dyn Stream<Item = Input> + Send>>> = Vec::new();
        for ns in namespaces {
            let client = self.shared.client.clone();
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            let cfg = watcher::Config::default().labels(annotations::ENABLED_LABEL);
            let n = ns.clone();
            all.push(
                watcher(deployments, cfg)
                    .backoff(WatchBackoff::new(&self.shared.retry))
                    .map(move |e| Input::Deployment(n.clone(), e.map(|e| e.map_strip())))
                    .boxed(),
            );
            let pods: Api<Pod> = Api::namespaced(client, ns);
            let cfg = watcher::Config::default().labels(annotations::APP_NAME);
            let n = ns.clone();
            all.push(
                watcher(pods, cfg)
                    .backoff(WatchBackoff::new(&self.shared.retry))
                    .map(move |e| Input::Pod(n.clone(), e.map(|e| e.map_strip())))
                    .boxed(),
            );
        }
        stream::select_all(all).boxed()
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Deployment(ns, Ok(e)) => {
                self.recovered("deployments", &ns);
                self.deployment_event(&ns, e);
            }
            Input::Pod(ns, Ok(e)) => {
                self.recovered("pods", &ns);
                self.pod_event(&ns, e);
            }
            Input::Deployment(ns, Err(e)) => self.watch_failed("deployments", &ns, &e),
            Input::Pod(ns, Err(e)) => self.watch_failed("pods", &ns, &e),
        }
    }

    fn watch_failed(&mut self, kind: &'static str, ns: &str, e: &watcher::Error) {
        if self.failing.insert((kind, ns.to_owned())) {
            tracing::warn!(
                namespace = ns,
                "watching {kind} failed (retrying with backoff; apps keep serving): {e}"
            );
        } else {
            tracing::debug!(namespace = ns, "watching {kind} still failing: {e}");
        }
    }

    fn recovered(&mut self, kind: &'static str, ns: &str) {
        if self.failing.remove(&(kind, ns.to_owned())) {
            tracing::info!(namespace = ns, "watching {kind} works again; reconciling");
        }
    }

    /// Notes what the relist `relist` (kind, namespace) has listed so far:
    /// `Init` starts an empty set, `InitApply` adds a name. Its `InitDone`
    /// takes the set to find what vanished while the watch was down.
    fn track_relist<K: kube::Resource>(&mut self, relist: &(&'static str, String), e: &Event<K>) {
        match e {
            Event::Init => {
                self.relisting.insert(relist.clone(), HashSet::new());
            }
            Event::InitApply(o) => {
                if let Some(seen) = self.relisting.get_mut(relist) {
                    seen.insert(o.name_any());
                }
            }
            _ => {}
        }
    }

    // ----- Deployments ---------------------------------------------------

    fn deployment_event(&mut self, ns: &str, e: Event<Deployment>) {
        // The relist is tracked whether or not the pods are synced yet: a
        // relist can begin before the pod list ends and finish after it,
        // and its `InitDone` must know what it saw.
        let relist = ("deployments", ns.to_owned());
        self.track_relist(&relist, &e);
        if !self.pods_synced.contains(ns) {
            match e {
                Event::Apply(d) | Event::InitApply(d) => {
                    self.pending.insert((ns.to_owned(), d.name_any()), d);
                }
                Event::Delete(d) => {
                    self.pending.remove(&(ns.to_owned(), d.name_any()));
                }
                Event::Init => self.pending.retain(|(n, _), _| n != ns),
                // Nothing of this namespace is applied yet, so nothing
                // can have vanished.
                Event::InitDone => {
                    self.relisting.remove(&relist);
                }
            }
            return;
        }
        match e {
            Event::Init => {}
            Event::InitApply(d) | Event::Apply(d) => self.deployment_applied(ns, &d),
            Event::InitDone => {
                // Without its `Init` there is no list to compare against;
                // deleting everything known would drain live apps.
                let Some(seen) = self.relisting.remove(&relist) else {
                    return;
                };
                for d in vanished(self.deployments.keys(), &seen, ns) {
                    self.deployment_deleted(ns, &d);
                }
            }
            Event::Delete(d) => self.deployment_deleted(ns, &d.name_any()),
        }
    }

    fn deployment_ref(ns: &str, d: &Deployment) -> k8s_openapi::api::core::v1::ObjectReference {
        events::reference(
            "apps/v1",
            "Deployment",
            ns,
            &d.name_any(),
            d.metadata.uid.as_deref(),
        )
    }

    fn deployment_applied(&mut self, ns: &str, d: &Deployment) {
        let dname = d.name_any();
        let key = (ns.to_owned(), dname.clone());
        let enabled = annotations::enabled(d.metadata.labels.as_ref());
        let (spec, warnings) = annotations::app_spec(&dname, d.metadata.annotations.as_ref());
        let state = self.deployments.entry(key.clone()).or_default();
        let warned: BTreeSet<Warning> = warnings.into_iter().collect();
        if warned != state.warned {
            for w in warned.difference(&state.warned) {
                tracing::warn!(namespace = ns, deployment = %dname, "{w}");
                self.shared.events.publish(Record {
                    regarding: Self::deployment_ref(ns, d),
                    related: None,
                    type_: EventType::Warning,
                    reason: "InvalidAnnotation",
                    action: "ParseAnnotations",
                    note: w.to_string(),
                });
            }
            state.warned = warned;
        }
        let template = Some(Template {
            deployment: dname.clone(),
            uid: d.metadata.uid.clone().unwrap_or_default(),
            template: d.spec.template.clone(),
        });
        let template_annotations = template
            .as_ref()
            .and_then(|t| t.template.metadata.as_ref()?.annotations.clone());
        let owned = state.app.clone();
        // The app this Deployment enabled until now, if it changes identity
        // (name or DNS mode) or is disabled, drains.
        if let Some(name) = &owned {
            let same = self
                .apps
                .get(&(ns.to_owned(), name.clone()))
                .is_some_and(|e| e.spec.name == spec.name && e.spec.dns == spec.dns);
            if enabled && same {
                self.update(ns, name, spec, template, template_annotations);
                return;
            }
            tracing::info!(namespace = ns, deployment = %dname, app = %name, enabled, new_name = %spec.name, "app disabled or re-routed; draining it");
            self.release(ns, name, true);
            if let Some(s) = self.deployments.get_mut(&key) {
                s.app = None;
            }
        }
        if !enabled {
            return;
        }
        self.attach(ns, d, spec, template, template_annotations);
    }

    /// Enables the app `spec` for Deployment `d` (new, or revived if it drains).
    fn attach(
        &mut self,
        ns: &str,
        d: &Deployment,
        spec: AppSpec,
        template: Option<Template>,
        tpl_ann: Option<Map>,
    ) {
        let dname = d.name_any();
        let key = (ns.to_owned(), spec.name.clone());
        let conflict = match self.apps.get(&key) {
            Some(e) => e
                .owner
                .as_ref()
                .filter(|o| **o != dname)
                .map(|o| format!("Deployment {o} in namespace {ns}")),
            None => self
                .shared
                .apps
                .get(&spec.name)
                .map(|_| "an app in another namespace".to_owned()),
        };
        if let Some(other) = conflict {
            let state = self
                .deployments
                .entry((ns.to_owned(), dname.clone()))
                .or_default();
            if state.conflict_warned.as_deref() != Some(spec.name.as_str()) {
                state.conflict_warned = Some(spec.name.clone());
                let note = format!(
                    "app name {:?} is already used by {other}; this Deployment is not served",
                    spec.name
                );
                tracing::warn!(namespace = ns, deployment = %dname, "{note}");
                self.shared.events.publish(Record {
                    regarding: Self::deployment_ref(ns, d),
                    related: None,
                    type_: EventType::Warning,
                    reason: "AppNameConflict",
                    action: "EnableApp",
                    note,
                });
            }
            return;
        }
        if let Some(state) = self.deployments.get_mut(&(ns.to_owned(), dname.clone())) {
            state.conflict_warned = None;
            state.app = Some(spec.name.clone());
        }
        let name = spec.name.clone();
        match self.apps.get_mut(&key) {
            Some(entry) if entry.spec.dns == spec.dns => {
                tracing::info!(namespace = ns, app = %name, deployment = %dname, "draining app enabled again");
                entry.owner = Some(dname);
            }
            existing => {
                if existing.is_some() {
                    tracing::warn!(namespace = ns, app = %name, "DNS mode changed: the app restarts (its current tickets end)");
                    self.remove_app(&key);
                }
                self.create_app(ns, &dname, &spec);
            }
        }
        self.update(ns, &name, spec, template, tpl_ann);
        // Tell the (new or revived) app about its pods the watch already knows.
        self.replay_pods(&key);
    }

    fn create_app(&mut self, ns: &str, dname: &str, spec: &AppSpec) {
        let sh = &self.shared;
        let provider = Arc::new(KubeProvider::new(
            sh.client.clone(),
            ns,
            sh.events.clone(),
            sh.retry,
            self.resync_tx.clone(),
        ));
        let source = self.policy_source(ns, spec);
        let runner = PolicyRunner::new(
            &spec.name,
            Arc::clone(&sh.engine),
            source,
            Arc::clone(&sh.default_policy),
            sh.metrics.clone(),
        );
        let app = App::new(
            Routing {
                name: spec.name.clone(),
                dns: spec.dns,
            },
            spec.settings.clone(),
            sh.expiry,
            runner,
            Arc::clone(&provider) as Arc<dyn PodProvider>,
            sh.metrics.clone(),
        );
        sh.apps.insert(Arc::clone(&app));
        tracing::info!(namespace = ns, app = %spec.name, deployment = dname, "app added");
        let entry = AppEntry {
            _task: Task::spawn(Arc::clone(&app).run()),
            app,
            provider,
            owner: Some(dname.to_owned()),
            spec: spec.clone(),
            template_annotations: None,
            listener: None,
            port_warned: None,
            sent: HashMap::new(),
        };
        self.apps.insert((ns.to_owned(), spec.name.clone()), entry);
    }

    fn policy_source(&self, ns: &str, spec: &AppSpec) -> Arc<PolicySource> {
        match &spec.policy {
            None => Arc::clone(&self.shared.default_source),
            Some(r) => self.shared.policies.source(ns, r),
        }
    }

    /// Applies a Deployment's current settings to its (enabled) app.
    fn update(
        &mut self,
        ns: &str,
        name: &str,
        spec: AppSpec,
        template: Option<Template>,
        tpl_ann: Option<Map>,
    ) {
        let source = self.policy_source(ns, &spec);
        let key = (ns.to_owned(), name.to_owned());
        let Some(entry) = self.apps.get_mut(&key) else {
            return;
        };
        if entry.spec.settings != spec.settings {
            tracing::info!(namespace = ns, app = name, settings = ?spec.settings, "settings applied");
        }
        entry.app.set_settings(spec.settings.clone());
        entry.app.set_display_name(spec.display_name.as_deref());
        entry.app.set_resume_grace(spec.resume_grace);
        // A bad name was reported (Event, log) and reads as UTC.
        let zone = match &spec.timezone {
            Some(name) => crate::state::zone(name).unwrap_or(jiff::tz::TimeZone::UTC),
            None => self.shared.timezone.clone(),
        };
        entry.app.set_timezone(zone);
        entry.app.set_accepting(true);
        entry.app.policy().set_source(source);
        entry.provider.set_template(template);
        let repods = entry.template_annotations != tpl_ann;
        entry.template_annotations = tpl_ann;
        entry.spec = spec;
        self.ensure_listener(&key);
        if repods {
            self.replay_pods(&key);
        }
    }

    /// The app stops taking new users; existing ones stay until they leave.
    fn release(&mut self, ns: &str, name: &str, deployment_exists: bool) {
        let Some(entry) = self.apps.get_mut(&(ns.to_owned(), name.to_owned())) else {
            return;
        };
        entry.owner = None;
        entry.app.set_accepting(false);
        // No spare tickets for an app nobody may join: idle autoscaled pods go.
        entry.app.set_settings(AppSettings {
            tickets_spare: 0,
            ..entry.spec.settings.clone()
        });
        if !deployment_exists {
            entry.provider.set_template(None);
        }
    }

    fn deployment_deleted(&mut self, ns: &str, dname: &str) {
        let Some(state) = self.deployments.remove(&(ns.to_owned(), dname.to_owned())) else {
            return;
        };
        if let Some(name) = state.app {
            tracing::info!(namespace = ns, deployment = dname, app = %name, "Deployment deleted; draining its app");
            self.release(ns, &name, false);
        }
    }

    fn remove_app(&mut self, key: &NsName) {
        let Some(entry) = self.apps.remove(key) else {
            return;
        };
        if self
            .shared
            .apps
            .get(&key.1)
            .is_some_and(|a| Arc::ptr_eq(&a, &entry.app))
        {
            self.shared.apps.remove(&key.1);
        }
        if entry.listener.is_some() {
            self.shared.ports.lock().remove(&key.1);
        }
        tracing::info!(namespace = %key.0, app = %key.1, "app removed");
    }

    // ----- per-app ports -------------------------------------------------

    fn ensure_listener(&mut self, key: &NsName) {
        let Some(listen) = self.shared.app_listen else {
            return;
        };
        let shared_port = self.shared.shared_port;
        let Some(entry) = self.apps.get_mut(key) else {
            return;
        };
        let want = entry.spec.port;
        if entry.listener.as_ref().is_some_and(|(p, _)| *p == want) {
            return;
        }
        if entry.listener.take().is_some() {
            self.shared.ports.lock().remove(&key.1);
        }
        if want == shared_port {
            return;
        }
        let addr = SocketAddr::new(listen.ip(), want);
        match proxy::edge::bind(addr, self.shared.edge_threads) {
            Ok(l) => {
                let local = l.local_addr();
                tracing::info!(app = %key.1, %local, "app port open");
                let scope: Arc<str> = Arc::from(key.1.as_str());
                entry.listener = Some((
                    want,
                    Task::spawn(proxy::edge::serve(
                        l,
                        Arc::clone(&self.shared.proxy),
                        Some(scope),
                    )),
                ));
                entry.port_warned = None;
                self.shared.ports.lock().insert(key.1.clone(), local);
            }
            Err(e) => {
                if entry.port_warned != Some(want) {
                    entry.port_warned = Some(want);
                    let note = format!(
                        "cannot listen on {addr} for app {} ({e}); it is served on the shared port only until the port is free",
                        key.1
                    );
                    tracing::warn!("{note}");
                    if let Some(owner) = &entry.owner {
                        self.shared.events.publish(Record {
                            regarding: events::reference(
                                "apps/v1",
                                "Deployment",
                                &key.0,
                                owner,
                                None,
                            ),
                            related: None,
                            type_: EventType::Warning,
                            reason: "PortUnavailable",
                            action: "OpenPort",
                            note,
                        });
                    }
                }
            }
        }
    }

    // ----- Pods ----------------------------------------------------------

    fn pod_event(&mut self, ns: &str, e: Event<Pod>) {
        let relist = ("pods", ns.to_owned());
        self.track_relist(&relist, &e);
        match e {
            Event::Init => {}
            Event::InitApply(p) | Event::Apply(p) => self.pod_applied(ns, p),
            Event::InitDone => {
                if let Some(seen) = self.relisting.remove(&relist) {
                    for p in vanished(self.pods.keys(), &seen, ns) {
                        self.pod_deleted(ns, &p);
                    }
                }
                if self.pods_synced.insert(ns.to_owned()) {
                    let ready: Vec<NsName> = self
                        .pending
                        .keys()
                        .filter(|(n, _)| n == ns)
                        .cloned()
                        .collect();
                    for key in ready {
                        if let Some(d) = self.pending.remove(&key) {
                            self.deployment_applied(ns, &d);
                        }
                    }
                }
            }
            Event::Delete(p) => self.pod_deleted(ns, &p.name_any()),
        }
    }

    fn pod_applied(&mut self, ns: &str, pod: Pod) {
        let name = pod.name_any();
        let app = annotations::pod_app(pod.metadata.labels.as_ref()).map(str::to_owned);
        let key = (ns.to_owned(), name.clone());
        let previous = self.pods.insert(
            key.clone(),
            PodRecord {
                app: app.clone(),
                pod,
                warned: false,
            },
        );
        if let Some(prev) = previous {
            if let Some(r) = self.pods.get_mut(&key) {
                r.warned = prev.warned;
            }
            if prev.app != app
                && let Some(old) = prev.app
            {
                self.tell(&(ns.to_owned(), old), &name, View::Gone);
            }
        }
        if let Some(app) = app {
            self.sync_pod(&(ns.to_owned(), app), &name);
        }
    }

    fn pod_deleted(&mut self, ns: &str, name: &str) {
        let Some(record) = self.pods.remove(&(ns.to_owned(), name.to_owned())) else {
            return;
        };
        if let Some(app) = record.app {
            self.tell(&(ns.to_owned(), app), name, View::Gone);
        }
    }

    /// Tells app `key` what pod `name` is now (if it changed).
    fn sync_pod(&mut self, key: &NsName, name: &str) {
        let Some(entry) = self.apps.get(key) else {
            return;
        };
        let Some(record) = self.pods.get_mut(&(key.0.clone(), name.to_owned())) else {
            return;
        };
        let (view, warnings) = pods::view(&record.pod, entry.template_annotations.as_ref());
        if !warnings.is_empty() && !record.warned {
            record.warned = true;
            for w in &warnings {
                tracing::warn!(namespace = %key.0, pod = name, "{w}");
                self.shared.events.publish(Record {
                    regarding: events::reference(
                        "v1",
                        "Pod",
                        &key.0,
                        name,
                        record.pod.metadata.uid.as_deref(),
                    ),
                    related: None,
                    type_: EventType::Warning,
                    reason: "InvalidAnnotation",
                    action: "ParseAnnotations",
                    note: w.to_string(),
                });
            }
        }
        self.tell(key, name, view);
    }

    fn tell(&mut self, key: &NsName, name: &str, view: View) {
        let Some(entry) = self.apps.get_mut(key) else {
            return;
        };
        match view {
            View::Present(info) => {
                if entry.sent.get(name) == Some(&info) {
                    return;
                }
                entry.sent.insert(name.to_owned(), info.clone());
                entry.app.apply(PodEvent::Upsert {
                    app: key.1.clone(),
                    pod: info,
                });
            }
            View::Gone => {
                if entry.sent.remove(name).is_some() {
                    entry.app.apply(PodEvent::Gone {
                        app: key.1.clone(),
                        name: name.to_owned(),
                    });
                }
            }
        }
    }

    /// Tells a (new) app about every pod of it that is known.
    fn replay_pods(&mut self, key: &NsName) {
        let names: Vec<String> = self
            .pods
            .iter()
            .filter(|((ns, _), r)| *ns == key.0 && r.app.as_deref() == Some(key.1.as_str()))
            .map(|((_, p), _)| p.clone())
            .collect();
        for name in names {
            self.sync_pod(key, &name);
        }
    }

    /// A deletion failed: the app dropped the pod, so tell it again.
    fn resync(&mut self, r: Resync) {
        let Some(record) = self.pods.get(&(r.namespace.clone(), r.pod.clone())) else {
            return;
        };
        let Some(app) = record.app.clone() else {
            return;
        };
        let key = (r.namespace, app);
        if let Some(entry) = self.apps.get_mut(&key) {
            entry.sent.remove(&r.pod);
        }
        self.sync_pod(&key, &r.pod);
    }

    // ----- housekeeping --------------------------------------------------

    fn housekeeping(&mut self) {
        let metrics = &self.shared.metrics;
        let done: Vec<NsName> = self
            .apps
            .iter()
            .filter(|(_, e)| e.owner.is_none())
            .filter(|(k, _)| {
                metrics
                    .current_users
                    .with_label_values(&[k.1.as_str()])
                    .get()
                    == 0.0
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            tracing::info!(namespace = %key.0, app = %key.1, "drained app has no users left");
            self.remove_app(&key);
        }
        let retry: Vec<NsName> = self
            .apps
            .iter()
            .filter(|(_, e)| e.port_warned.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in retry {
            self.ensure_listener(&key);
        }
    }
}

/// Drops fields nobody reads from watched objects.
trait Strip {
    fn map_strip(self) -> Self;
}

impl<K: kube::Resource> Strip for Event<K> {
    fn map_strip(self) -> Self {
        match self {
            Event::Apply(o) => Event::Apply(strip(o)),
            Event::InitApply(o) => Event::InitApply(strip(o)),
            Event::Delete(o) => Event::Delete(strip(o)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The controller's rules, driven by synthetic watch events (no cluster:
    //! the client points nowhere and is never called on these paths).
    use super::*;
    use crate::demo::proxy_settings;
    use crate::kube::annotations as ann;
    use serde_json::json;
    use std::collections::BTreeMap;

    async fn controller(app_ports: bool) -> Controller {
        let mut config = crate::config::Config::default();
        // Debug builds, tests in parallel: no deadline trouble while loading.
        config.policy.timeout_ms = 2000;
        let metrics = Metrics::new().expect("metrics");
        let engine = PolicyEngine::new(config.limits()).expect("engine");
        let default = crate::policy::load_default(&engine).expect("default policy");
        let source = PolicySource::new("embedded:spare-tickets", Arc::clone(&default));
        let kcfg = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(kcfg).expect("client");
        let events = EventSink::discard();
        let policies = PolicyStore::new(
            Arc::clone(&engine),
            Arc::clone(&default),
            metrics.clone(),
            events.clone(),
        );
        let apps = Arc::new(Apps::default());
        let proxy = Proxy::new(Arc::clone(&apps), proxy_settings(&config));
        let shared = Shared {
            client,
            engine,
            default_policy: default,
            default_source: source,
            policies,
            apps,
            proxy,
            metrics,
            events,
            retry: RetrySettings::default(),
            expiry: Duration::from_millis(500),
            app_listen: app_ports.then(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            edge_threads: 1,
            shared_port: 1,
            ports: Arc::default(),
            timezone: jiff::tz::TimeZone::UTC,
        };
        let (resync_tx, _rx) = mpsc::unbounded_channel();
        Controller {
            shared,
            resync_tx,
            apps: HashMap::new(),
            deployments: HashMap::new(),
            pods: HashMap::new(),
            relisting: HashMap::new(),
            failing: HashSet::new(),
            pods_synced: HashSet::new(),
            pending: HashMap::new(),
        }
    }

    fn deployment(name: &str, enabled: &str, annotations: &[(&str, &str)]) -> Deployment {
        let ann: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        serde_json::from_value(json!({
            "metadata": { "name": name, "uid": format!("uid-{name}"), "labels": { ann::ENABLED_LABEL: enabled }, "annotations": ann },
            "spec": {
                "selector": {},
                "template": { "spec": { "containers": [{ "name": "c", "image": "i" }] } },
            },
        }))
        .expect("deployment")
    }

    fn pod(name: &str, app: &str, ip: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { ann::APP_NAME: app } },
            "status": { "phase": "Running", "podIP": ip, "conditions": [{ "type": "Ready", "status": "True" }] },
        }))
        .expect("pod")
    }

    fn dep(c: &mut Controller, e: Event<Deployment>) {
        c.handle(Input::Deployment("ns".into(), Ok(e)));
    }

    fn pods(c: &mut Controller, list: Vec<Pod>) {
        c.handle(Input::Pod("ns".into(), Ok(Event::Init)));
        for p in list {
            c.handle(Input::Pod("ns".into(), Ok(Event::InitApply(p))));
        }
        c.handle(Input::Pod("ns".into(), Ok(Event::InitDone)));
    }

    #[tokio::test]
    async fn apps_wait_until_their_pods_are_known() {
        let mut c = controller(false).await;
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        assert!(
            c.shared.apps.get("a").is_none(),
            "no app before the pods are listed"
        );
        pods(
            &mut c,
            vec![
                pod("a-0", "a", "10.0.0.1"),
                pod("other-0", "other", "10.0.0.2"),
            ],
        );
        let app = c.shared.apps.get("a").expect("app after the pod list");
        assert!(app.has_pod("a-0"));
        assert!(!app.has_pod("other-0"));
        // A pod of an app that appears later is replayed to it.
        dep(
            &mut c,
            Event::Apply(deployment("o", "true", &[(ann::APP_NAME, "other")])),
        );
        assert!(
            c.shared
                .apps
                .get("other")
                .expect("other")
                .has_pod("other-0")
        );
    }

    #[tokio::test]
    async fn disable_drains_and_removes_when_empty_and_reenable_revives() {
        let mut c = controller(false).await;
        pods(&mut c, vec![pod("a-0", "a", "10.0.0.1")]);
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        let app = c.shared.apps.get("a").expect("app");
        assert!(app.accepting());
        dep(
            &mut c,
            Event::Apply(deployment("d", "false", &[(ann::APP_NAME, "a")])),
        );
        assert!(!app.accepting(), "label false drains");
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        assert!(
            Arc::ptr_eq(&app, &c.shared.apps.get("a").expect("app")),
            "revived, not replaced"
        );
        assert!(app.accepting());
        dep(
            &mut c,
            Event::Delete(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        assert!(!app.accepting());
        c.housekeeping();
        assert!(c.shared.apps.get("a").is_none(), "no users: removed");
    }

    #[tokio::test]
    async fn renaming_drains_the_old_app_and_starts_the_new_one() {
        let mut c = controller(false).await;
        pods(
            &mut c,
            vec![pod("a-0", "a", "10.0.0.1"), pod("b-0", "b", "10.0.0.2")],
        );
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        let old = c.shared.apps.get("a").expect("a");
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::APP_NAME, "b")])),
        );
        assert!(!old.accepting(), "old name drains");
        assert!(c.shared.apps.get("b").expect("b").has_pod("b-0"));
        // A second Deployment may not take a name in use.
        dep(
            &mut c,
            Event::Apply(deployment("e", "true", &[(ann::APP_NAME, "b")])),
        );
        assert_eq!(
            c.deployments[&("ns".to_owned(), "e".to_owned())]
                .conflict_warned
                .as_deref(),
            Some("b")
        );
    }

    #[tokio::test]
    async fn malformed_annotations_are_remembered_once_and_live_settings_apply() {
        let mut c = controller(false).await;
        pods(&mut c, vec![]);
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::TICKETS_MAX, "lots")])),
        );
        let key = ("ns".to_owned(), "d".to_owned());
        assert_eq!(c.deployments[&key].warned.len(), 1);
        assert_eq!(
            c.apps[&("ns".to_owned(), "d".to_owned())]
                .spec
                .settings
                .tickets_max,
            1
        );
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::TICKETS_MAX, "3")])),
        );
        assert!(c.deployments[&key].warned.is_empty());
        assert_eq!(c.apps[&key].spec.settings.tickets_max, 3);
    }

    #[tokio::test]
    async fn app_ports_follow_the_annotation() {
        let mut c = controller(true).await;
        pods(&mut c, vec![]);
        let p1 = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let p2 = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::PORT, &p1.to_string())])),
        );
        assert_eq!(c.shared.ports.lock().get("d").map(|a| a.port()), Some(p1));
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::PORT, &p2.to_string())])),
        );
        assert_eq!(c.shared.ports.lock().get("d").map(|a| a.port()), Some(p2));
        // A port in use: served on the shared port only, retried later.
        let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = busy.local_addr().expect("addr").port();
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::PORT, &port.to_string())])),
        );
        assert_eq!(c.shared.ports.lock().get("d"), None);
        drop(busy);
        c.housekeeping();
        assert_eq!(c.shared.ports.lock().get("d").map(|a| a.port()), Some(port));
    }

    #[tokio::test]
    async fn relist_removes_what_vanished_during_an_outage() {
        let mut c = controller(false).await;
        pods(
            &mut c,
            vec![pod("a-0", "a", "10.0.0.1"), pod("a-1", "a", "10.0.0.2")],
        );
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        let app = c.shared.apps.get("a").expect("a");
        assert!(app.has_pod("a-1"));
        pods(&mut c, vec![pod("a-0", "a", "10.0.0.1")]);
        assert!(
            !app.has_pod("a-1"),
            "a-1 was deleted while the watch was down"
        );
        assert!(app.has_pod("a-0"));
    }

    /// The race seen in the cluster test: the Deployment list starts before
    /// the pod list ends and finishes after it. The app must survive the
    /// Deployment list's end.
    #[tokio::test]
    async fn a_deployment_relist_spanning_the_pod_sync_keeps_its_apps() {
        let mut c = controller(false).await;
        dep(&mut c, Event::Init);
        dep(
            &mut c,
            Event::InitApply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        pods(&mut c, vec![pod("a-0", "a", "10.0.0.1")]);
        let app = c.shared.apps.get("a").expect("app once the pods are known");
        dep(&mut c, Event::InitDone);
        assert!(app.accepting(), "the Deployment was listed, not deleted");
        assert!(Arc::ptr_eq(&app, &c.shared.apps.get("a").expect("a")));
        // A later relist that misses it does delete it.
        dep(&mut c, Event::Init);
        dep(&mut c, Event::InitDone);
        assert!(!app.accepting(), "vanished from the relist: drained");
    }

    #[tokio::test]
    async fn a_list_end_without_its_start_deletes_nothing() {
        let mut c = controller(false).await;
        pods(&mut c, vec![pod("a-0", "a", "10.0.0.1")]);
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        let app = c.shared.apps.get("a").expect("a");
        dep(&mut c, Event::InitDone);
        c.handle(Input::Pod("ns".into(), Ok(Event::InitDone)));
        assert!(app.accepting());
        assert!(app.has_pod("a-0"));
    }

    #[test]
    fn vanished_is_what_the_relist_of_that_namespace_missed() {
        let key = |ns: &str, name: &str| (ns.to_owned(), name.to_owned());
        let known = [key("ns", "a"), key("ns", "b"), key("other", "c")];
        let seen: HashSet<String> = ["a".to_owned(), "x".to_owned()].into();
        assert_eq!(vanished(known.iter(), &seen, "ns"), vec!["b".to_owned()]);
        let mut all = vanished(known.iter(), &HashSet::new(), "ns");
        all.sort();
        assert_eq!(all, ["a", "b"]);
        assert!(vanished(known.iter(), &seen, "none").is_empty());
    }
}
