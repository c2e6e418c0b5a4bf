//! The controller: Deployment and Pod watches in, apps and pod events out.
//!
//! One task owns all of this and applies watch events in order (the one
//! writer); the proxy only reads the resulting [`Apps`] table. The
//! controller is a state machine: [`Controller::step`] takes one [`Input`]
//! at a time. Each watch event goes first into its namespace's reflector
//! store (kube-runtime's [`Writer::apply_watcher_event`]: a relist fills a
//! buffer from `Init` to `InitDone` and then replaces the store, so what
//! was deleted while a watch was down is simply gone from it); then the
//! objects the event touched are *reconciled*: the apps and what they were
//! told about their pods are brought in line with the stores.
//!
//! States, each a type below:
//! - a watch ([`WatchState`]): `New` → `Listing` (`Init`) → `Watching`
//!   (`InitDone`, the store now holds the list) → `Listing` again on a
//!   relist. Its health, healthy or stale since an error, goes to
//!   [`ApiHealth`].
//! - a namespace ([`Phase`]): `AwaitingPods` until its pods have been listed
//!   once (an app started before it knew its pods would scale up for
//!   capacity it already has; Deployments are only stored meanwhile), then
//!   `Live`.
//! - an app ([`AppState`]): `Serving` for the Deployment that enables it,
//!   `Draining` once that Deployment is disabled, renamed or deleted (no new
//!   users); removed when [`App::is_drained`]. Re-enabled while draining, it
//!   serves again (same app, same tickets).
//!
//! Transitions ([`Input`] → what happens):
//! - `Deployment` / `Pod` `Apply` or `Delete` in a `Live` namespace: that
//!   object is reconciled. `InitDone`: every object of the kind in the
//!   namespace (listed, or known from before) is reconciled; the pods'
//!   first `InitDone` makes the namespace `Live` and reconciles its
//!   Deployments. `Init`, `InitApply`: stored only (the list is acted on at
//!   its end).
//! - `WatchFailed`: the watch is stale (it retries with backoff; apps keep
//!   serving what they know).
//! - `Resync`: a pod the provider could not delete is told to its app again.
//! - `Tick`: drained apps are removed, refused app ports are tried again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, store::Writer};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use super::annotations::{self, AppSpec, Map, Warning};
use super::events::{self, EventSink, EventType, Record};
use super::health::ApiHealth;
use super::pods::{self, View};
use super::policies::PolicyStore;
use super::provider::{KubeProvider, Resync, Template};
use super::retry::RetrySettings;
use crate::app::{App, Routing};
use crate::app_ports::AppPorts;
use crate::apps::Apps;
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::policy::{LoadedPolicy, PolicyEngine, PolicyRunner, PolicySource};
use crate::provider::{PodEvent, PodProvider};
use crate::state::{AppSettings, PodInfo};
use crate::task::Task;

/// How often drained apps are checked for removal and refused app ports
/// are tried again.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// A failing watch reports an error at least this often beyond its longest
/// backoff (kube's client gives up connecting after 30 s).
const WATCH_ERROR_PERIOD: Duration = Duration::from_secs(35);

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
    /// The proxy's per-app ports; None when they are off.
    pub ports: Option<Arc<AppPorts>>,
    /// Metrics.
    pub metrics: Metrics,
    /// Events.
    pub events: EventSink,
    /// API retries.
    pub retry: RetrySettings,
    /// What waits for the API during an outage.
    pub health: Arc<ApiHealth>,
    /// Ticket expiry.
    pub expiry: Duration,
    /// Where the apps' tickets are kept.
    pub sharing: crate::store::Sharing,
    /// The time zone of apps without `wicket.dev/timezone` (`apps.timezone`).
    pub timezone: jiff::tz::TimeZone,
    /// Whether this replica scales (apps follow it).
    pub leadership: Leadership,
}

/// (namespace, name)
type NsName = (String, String);

/// The kinds the controller watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Deployments labelled `ipb-halle.de/k8sticket`.
    Deployments,
    /// Pods labelled with an app name.
    Pods,
}

impl Kind {
    fn watch_name(self, ns: &str) -> String {
        match self {
            Kind::Deployments => format!("deployments in {ns}"),
            Kind::Pods => format!("pods in {ns}"),
        }
    }
}

/// One input of the state machine.
pub enum Input {
    /// A Deployment watch event in a namespace.
    Deployment(String, Event<Deployment>),
    /// A Pod watch event in a namespace.
    Pod(String, Event<Pod>),
    /// A watch failed; it retries with backoff on its own.
    WatchFailed {
        /// Which watch.
        kind: Kind,
        /// Its namespace.
        namespace: String,
        /// What went wrong.
        error: String,
    },
    /// The provider could not delete a pod: tell its app about it again.
    Resync(Resync),
    /// Housekeeping time.
    Tick,
}

/// Where one watch stands, as its events show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchState {
    /// Nothing listed yet.
    New,
    /// A (re)list is under way: `Init` seen, not its `InitDone`. The store
    /// still holds the previous list.
    Listing,
    /// Listed; changes arrive one by one.
    Watching,
}

impl WatchState {
    /// The state after `event`, and whether the event belongs in the store
    /// (a list's `InitApply` or `InitDone` without its `Init` does not:
    /// applied, an `InitDone` would empty the store and drain live apps).
    fn next<K>(self, event: &Event<K>) -> (Self, bool) {
        match (self, event) {
            (_, Event::Init) => (Self::Listing, true),
            (Self::Listing, Event::InitApply(_)) => (Self::Listing, true),
            (Self::Listing, Event::InitDone) => (Self::Watching, true),
            (s, Event::InitApply(_) | Event::InitDone) => (s, false),
            (s, Event::Apply(_) | Event::Delete(_)) => (s, true),
        }
    }
}

/// Where a namespace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its pods have not been listed yet: Deployments are stored, not acted on.
    AwaitingPods,
    /// Pods listed: every change is acted on.
    Live,
}

/// One watched namespace: its reflector stores and where its watches stand.
struct Namespace {
    phase: Phase,
    deployments: Writer<Deployment>,
    deployments_watch: WatchState,
    pods: Writer<Pod>,
    pods_watch: WatchState,
}

impl Default for Namespace {
    fn default() -> Self {
        Self {
            phase: Phase::AwaitingPods,
            deployments: Writer::default(),
            deployments_watch: WatchState::New,
            pods: Writer::default(),
            pods_watch: WatchState::New,
        }
    }
}

/// Where an app stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppState {
    /// Enabled by this Deployment: takes new users.
    Serving {
        /// The Deployment's name.
        deployment: String,
    },
    /// No Deployment enables it any more: its users stay until they leave,
    /// nobody new gets in; removed once drained.
    Draining,
}

/// An app run by the controller.
struct AppEntry {
    app: Arc<App>,
    _task: Task,
    provider: Arc<KubeProvider>,
    state: AppState,
    spec: AppSpec,
    /// Pod template annotations (fallback for pod.port / pod.path).
    template_annotations: Option<Map>,
    /// A port that could not be opened (warned about once, tried again).
    port_refused: Option<u16>,
    /// What the app was last told about each pod.
    sent: HashMap<String, PodInfo>,
}

/// What the controller derived from one Deployment.
#[derive(Default)]
struct DeployState {
    /// The app this Deployment enables (by name), if any.
    app: Option<String>,
    /// Warnings last reported (so they are reported once per change).
    warned: BTreeSet<Warning>,
    conflict_warned: Option<String>,
}

/// The controller's state (owned by its task).
pub struct Controller {
    shared: Shared,
    resync_tx: mpsc::UnboundedSender<Resync>,
    namespaces: HashMap<String, Namespace>,
    apps: HashMap<NsName, AppEntry>,
    deployments: HashMap<NsName, DeployState>,
    /// Pods whose annotation warnings were reported.
    warned_pods: HashSet<NsName>,
}

/// The watch streams of one kind, as controller inputs.
trait IntoInputs<K>: Stream<Item = Result<Event<K>, watcher::Error>> + Sized {
    /// Tags events and errors with the namespace and kind they come from.
    fn into_inputs(
        self,
        ns: String,
        kind: Kind,
        event: fn(String, Event<K>) -> Input,
    ) -> impl Stream<Item = Input> {
        self.map(move |e| match e {
            Ok(e) => event(ns.clone(), e),
            Err(e) => Input::WatchFailed {
                kind,
                namespace: ns.clone(),
                error: e.to_string(),
            },
        })
    }
}

impl<K, S: Stream<Item = Result<Event<K>, watcher::Error>>> IntoInputs<K> for S {}

/// A watch of `api` with `labels`, retried with backoff, without the
/// fields nobody here reads.
fn watch<K>(
    api: Api<K>,
    labels: &str,
    retry: &RetrySettings,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watcher(api, watcher::Config::default().labels(labels))
        .modify(|o| o.meta_mut().managed_fields = None)
        .backoff(retry.watch())
}

impl Controller {
    /// A controller with nothing known yet.
    pub fn new(shared: Shared, resync_tx: mpsc::UnboundedSender<Resync>) -> Self {
        Self {
            shared,
            resync_tx,
            namespaces: HashMap::new(),
            apps: HashMap::new(),
            deployments: HashMap::new(),
            warned_pods: HashSet::new(),
        }
    }

    /// Runs the controller for `namespaces` until the task is aborted.
    pub async fn run(shared: Shared, namespaces: Vec<String>) {
        let (resync_tx, resync_rx) = mpsc::unbounded_channel();
        let mut inputs = Self::inputs(&shared, &namespaces, resync_rx);
        let mut c = Self::new(shared, resync_tx);
        while let Some(input) = inputs.next().await {
            c.step(input);
        }
        tracing::error!("all watches ended; the controller stops");
    }

    /// Every input, merged: the watches of each namespace, resync requests
    /// and the housekeeping tick.
    fn inputs(
        shared: &Shared,
        namespaces: &[String],
        resync: mpsc::UnboundedReceiver<Resync>,
    ) -> Pin<Box<dyn Stream<Item = Input> + Send>> {
        let mut all: Vec<Pin<Box<dyn Stream<Item = Input> + Send>>> = Vec::new();
        for ns in namespaces {
            let deployments = Api::<Deployment>::namespaced(shared.client.clone(), ns);
            all.push(
                watch(deployments, annotations::ENABLED_LABEL, &shared.retry)
                    .into_inputs(ns.clone(), Kind::Deployments, Input::Deployment)
                    .boxed(),
            );
            let pods = Api::<Pod>::namespaced(shared.client.clone(), ns);
            all.push(
                watch(pods, annotations::APP_NAME, &shared.retry)
                    .into_inputs(ns.clone(), Kind::Pods, Input::Pod)
                    .boxed(),
            );
        }
        all.push(
            stream::unfold(resync, |mut rx| async move {
                rx.recv().await.map(|r| (Input::Resync(r), rx))
            })
            .boxed(),
        );
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        all.push(
            stream::unfold(tick, |mut tick| async move {
                tick.tick().await;
                Some((Input::Tick, tick))
            })
            .boxed(),
        );
        stream::select_all(all).boxed()
    }

    /// The step function: applies one input.
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Deployment(ns, event) => {
                self.shared
                    .health
                    .watch_works(&Kind::Deployments.watch_name(&ns));
                let n = self.namespaces.entry(ns.clone()).or_default();
                let (next, store) = n.deployments_watch.next(&event);
                n.deployments_watch = next;
                if !store {
                    tracing::debug!(namespace = %ns, "a Deployment list event out of order, ignored");
                    return;
                }
                n.deployments.apply_watcher_event(&event);
                match (n.phase, &event) {
                    // Acted on once the pods are known.
                    (Phase::AwaitingPods, _) => {}
                    // The store changes at the list's end.
                    (Phase::Live, Event::Init | Event::InitApply(_)) => {}
                    (Phase::Live, Event::Apply(d) | Event::Delete(d)) => {
                        self.reconcile_deployment(&ns, &d.name_any());
                    }
                    (Phase::Live, Event::InitDone) => self.reconcile_deployments(&ns),
                }
            }
            Input::Pod(ns, event) => {
                self.shared.health.watch_works(&Kind::Pods.watch_name(&ns));
                let n = self.namespaces.entry(ns.clone()).or_default();
                let (next, store) = n.pods_watch.next(&event);
                n.pods_watch = next;
                if !store {
                    tracing::debug!(namespace = %ns, "a Pod list event out of order, ignored");
                    return;
                }
                n.pods.apply_watcher_event(&event);
                let phase = n.phase;
                match (phase, &event) {
                    (_, Event::Init | Event::InitApply(_)) => {}
                    (_, Event::Apply(p) | Event::Delete(p)) => {
                        self.reconcile_pod(&ns, &p.name_any());
                    }
                    (Phase::Live, Event::InitDone) => self.reconcile_pods(&ns),
                    (Phase::AwaitingPods, Event::InitDone) => {
                        if let Some(n) = self.namespaces.get_mut(&ns) {
                            n.phase = Phase::Live;
                        }
                        tracing::debug!(namespace = %ns, "pods listed; starting the apps");
                        self.reconcile_deployments(&ns);
                    }
                }
            }
            Input::WatchFailed {
                kind,
                namespace,
                error,
            } => {
                tracing::debug!(%namespace, "watching {kind:?} failed (retrying with backoff): {error}");
                self.shared
                    .health
                    .watch_failed(&kind.watch_name(&namespace));
            }
            Input::Resync(r) => self.resync(r),
            Input::Tick => self.housekeeping(),
        }
    }

    // ----- the stores ------------------------------------------------------

    fn stored_deployment(&self, ns: &str, name: &str) -> Option<Arc<Deployment>> {
        let n = self.namespaces.get(ns)?;
        n.deployments
            .as_reader()
            .get(&ObjectRef::new(name).within(ns))
    }

    fn stored_pod(&self, ns: &str, name: &str) -> Option<Arc<Pod>> {
        let n = self.namespaces.get(ns)?;
        n.pods.as_reader().get(&ObjectRef::new(name).within(ns))
    }

    fn stored_pods(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.namespaces
            .get(ns)
            .map(|n| n.pods.as_reader().state())
            .unwrap_or_default()
    }

    // ----- Deployments -----------------------------------------------------

    /// Every Deployment of `ns` in the store or known from before: the
    /// vanished ones first (their app names become free), then the others.
    fn reconcile_deployments(&mut self, ns: &str) {
        let stored: BTreeSet<String> = self
            .namespaces
            .get(ns)
            .map(|n| {
                n.deployments
                    .as_reader()
                    .state()
                    .iter()
                    .map(|d| d.name_any())
                    .collect()
            })
            .unwrap_or_default();
        let vanished: Vec<String> = self
            .deployments
            .keys()
            .filter(|(n, name)| n == ns && !stored.contains(name))
            .map(|(_, name)| name.clone())
            .collect();
        for name in vanished.iter().chain(&stored) {
            self.reconcile_deployment(ns, name);
        }
    }

    fn reconcile_deployment(&mut self, ns: &str, name: &str) {
        match self.stored_deployment(ns, name) {
            Some(d) => self.deployment_applied(ns, &d),
            None => self.deployment_deleted(ns, name),
        }
    }

    fn deployment_ref(ns: &str, d: &Deployment) -> ObjectReference {
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
                    regarding: events::annotation_reference(
                        Self::deployment_ref(ns, d),
                        &w.annotation,
                        d.metadata.resource_version.as_deref(),
                    ),
                    related: None,
                    type_: EventType::Warning,
                    reason: "InvalidAnnotation",
                    action: "ParseAnnotations",
                    note: w.to_string(),
                });
            }
            state.warned = warned;
        }
        let template = Template {
            deployment: dname.clone(),
            uid: d.metadata.uid.clone().unwrap_or_default(),
            template: d.spec.template.clone(),
        };
        let template_annotations = template
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone());
        let owned = state.app.clone();
        // The app this Deployment enabled until now drains if it changes
        // identity (name or DNS mode) or is disabled.
        if let Some(name) = &owned {
            let same = self
                .apps
                .get(&(ns.to_owned(), name.clone()))
                .is_some_and(|e| e.spec.name == spec.name && e.spec.dns == spec.dns);
            if enabled && same {
                self.update(ns, name, spec, Some(template), template_annotations);
                return;
            }
            tracing::info!(namespace = ns, deployment = %dname, app = %name, enabled, new_name = %spec.name, "app disabled or re-routed; draining it");
            self.drain(ns, name, true);
            if let Some(s) = self.deployments.get_mut(&key) {
                s.app = None;
            }
        }
        if enabled {
            self.attach(ns, d, spec, template, template_annotations);
        }
    }

    /// Enables the app `spec` for Deployment `d` (new, or revived if it drains).
    fn attach(
        &mut self,
        ns: &str,
        d: &Deployment,
        spec: AppSpec,
        template: Template,
        tpl_ann: Option<Map>,
    ) {
        let dname = d.name_any();
        let key = (ns.to_owned(), spec.name.clone());
        let conflict = match self.apps.get(&key) {
            Some(e) => match &e.state {
                AppState::Serving { deployment } if *deployment != dname => {
                    Some(format!("Deployment {deployment} in namespace {ns}"))
                }
                _ => None,
            },
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
                entry.state = AppState::Serving { deployment: dname };
            }
            existing => {
                if existing.is_some() {
                    tracing::warn!(namespace = ns, app = %name, "DNS mode changed: the app restarts (its current tickets end)");
                    self.remove_app(&key);
                }
                self.create_app(ns, &dname, &spec);
            }
        }
        self.update(ns, &name, spec, Some(template), tpl_ann);
        // Tell the (new or revived) app about its pods the store knows.
        self.replay_pods(&key);
    }

    fn create_app(&mut self, ns: &str, dname: &str, spec: &AppSpec) {
        let sh = &self.shared;
        let provider = Arc::new(KubeProvider::new(
            sh.client.clone(),
            ns,
            sh.events.clone(),
            sh.retry,
            Arc::clone(&sh.health),
            self.resync_tx.clone(),
        ));
        let source = self.policy_source(ns, spec);
        let runner = PolicyRunner::new(
            &spec.name,
            Arc::clone(&sh.engine),
            source,
            Arc::clone(&sh.default_policy),
            sh.metrics.policy.clone(),
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
        app.follow(&sh.leadership);
        // Tickets held before a restart are loaded by the app's loop, as
        // soon as the pods they are on are known.
        app.share(&sh.sharing);
        sh.apps.insert(Arc::clone(&app));
        tracing::info!(namespace = ns, app = %spec.name, deployment = dname, "app added");
        let entry = AppEntry {
            _task: Task::spawn(Arc::clone(&app).run()),
            app,
            provider,
            state: AppState::Serving {
                deployment: dname.to_owned(),
            },
            spec: spec.clone(),
            template_annotations: None,
            port_refused: None,
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
        self.open_port(&key);
        if repods {
            self.replay_pods(&key);
        }
    }

    /// The app stops taking new users; existing ones stay until they leave.
    fn drain(&mut self, ns: &str, name: &str, deployment_exists: bool) {
        let Some(entry) = self.apps.get_mut(&(ns.to_owned(), name.to_owned())) else {
            return;
        };
        entry.state = AppState::Draining;
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
            self.drain(ns, &name, false);
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
            if let Some(ports) = &self.shared.ports {
                ports.close(&key.1);
            }
        }
        tracing::info!(namespace = %key.0, app = %key.1, "app removed");
    }

    // ----- per-app ports ---------------------------------------------------

    /// Asks the proxy for the app's own port; a refusal is reported once
    /// per port and tried again at each tick.
    fn open_port(&mut self, key: &NsName) {
        let Some(ports) = &self.shared.ports else {
            return;
        };
        let Some(entry) = self.apps.get_mut(key) else {
            return;
        };
        let want = entry.spec.port;
        let e = match ports.open(&key.1, want) {
            Ok(_) => {
                entry.port_refused = None;
                return;
            }
            Err(e) => e,
        };
        if entry.port_refused == Some(want) {
            return;
        }
        entry.port_refused = Some(want);
        let note = format!(
            "cannot listen on port {want} for app {} ({e}); it is served on the shared port only until the port is free",
            key.1
        );
        tracing::warn!("{note}");
        if let AppState::Serving { deployment } = &entry.state {
            self.shared.events.publish(Record {
                regarding: events::reference("apps/v1", "Deployment", &key.0, deployment, None),
                related: None,
                type_: EventType::Warning,
                reason: "PortUnavailable",
                action: "OpenPort",
                note,
            });
        }
    }

    // ----- Pods ------------------------------------------------------------

    /// Every pod of `ns` in the store or known to an app.
    fn reconcile_pods(&mut self, ns: &str) {
        let mut names: BTreeSet<String> =
            self.stored_pods(ns).iter().map(|p| p.name_any()).collect();
        for ((n, _), e) in &self.apps {
            if n == ns {
                names.extend(e.sent.keys().cloned());
            }
        }
        for name in names {
            self.reconcile_pod(ns, &name);
        }
    }

    /// Tells each app what pod `name` is now: its own app the pod as
    /// stored, any other app it was told to that it is gone.
    fn reconcile_pod(&mut self, ns: &str, name: &str) {
        let pod = self.stored_pod(ns, name);
        let app = pod
            .as_ref()
            .and_then(|p| annotations::pod_app(p.metadata.labels.as_ref()))
            .map(str::to_owned);
        let stale: Vec<NsName> = self
            .apps
            .iter()
            .filter(|((n, a), e)| n == ns && Some(a) != app.as_ref() && e.sent.contains_key(name))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.tell(&key, name, View::Gone);
        }
        match app {
            Some(app) => self.sync_pod(&(ns.to_owned(), app), name),
            None => {
                self.warned_pods.remove(&(ns.to_owned(), name.to_owned()));
            }
        }
    }

    /// Tells app `key` what pod `name` is now (if it changed).
    fn sync_pod(&mut self, key: &NsName, name: &str) {
        let Some(entry) = self.apps.get(key) else {
            return;
        };
        let Some(pod) = self.stored_pod(&key.0, name) else {
            return;
        };
        let (view, warnings) = pods::view(&pod, entry.template_annotations.as_ref());
        if !warnings.is_empty() && self.warned_pods.insert((key.0.clone(), name.to_owned())) {
            for w in &warnings {
                tracing::warn!(namespace = %key.0, pod = name, "{w}");
                self.shared.events.publish(Record {
                    regarding: events::annotation_reference(
                        events::reference("v1", "Pod", &key.0, name, pod.metadata.uid.as_deref()),
                        &w.annotation,
                        pod.metadata.resource_version.as_deref(),
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

    /// Tells an app about every pod of it in the store.
    fn replay_pods(&mut self, key: &NsName) {
        let names: Vec<String> = self
            .stored_pods(&key.0)
            .iter()
            .filter(|p| annotations::pod_app(p.metadata.labels.as_ref()) == Some(key.1.as_str()))
            .map(|p| p.name_any())
            .collect();
        for name in names {
            self.sync_pod(key, &name);
        }
    }

    /// A deletion failed: the app dropped the pod, so tell it again.
    fn resync(&mut self, r: Resync) {
        let Some(pod) = self.stored_pod(&r.namespace, &r.pod) else {
            return;
        };
        let Some(app) = annotations::pod_app(pod.metadata.labels.as_ref()) else {
            return;
        };
        let key = (r.namespace, app.to_owned());
        if let Some(entry) = self.apps.get_mut(&key) {
            entry.sent.remove(&r.pod);
        }
        self.sync_pod(&key, &r.pod);
    }

    // ----- housekeeping ----------------------------------------------------

    fn housekeeping(&mut self) {
        self.shared
            .health
            .watches_quiet_for(self.shared.retry.max * 2 + WATCH_ERROR_PERIOD);
        let drained: Vec<NsName> = self
            .apps
            .iter()
            .filter(|(_, e)| e.state == AppState::Draining && e.app.is_drained())
            .map(|(k, _)| k.clone())
            .collect();
        for key in drained {
            tracing::info!(namespace = %key.0, app = %key.1, "drained app has no users left");
            self.remove_app(&key);
        }
        let refused: Vec<NsName> = self
            .apps
            .iter()
            .filter(|(_, e)| e.port_refused.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in refused {
            self.open_port(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The controller's rules, driven by synthetic watch events (no cluster:
    //! the client points nowhere and is never called on these paths).
    use super::*;
    use crate::kube::annotations as ann;
    use crate::proxy::Proxy;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::net::{IpAddr, Ipv4Addr};

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
        let proxy = Proxy::new(Arc::clone(&apps), config.proxy_settings());
        let shared = Shared {
            client,
            engine,
            default_policy: default,
            default_source: source,
            policies,
            apps,
            ports: app_ports.then(|| AppPorts::new(proxy, IpAddr::V4(Ipv4Addr::LOCALHOST), 1, 1)),
            metrics,
            events,
            retry: RetrySettings::default(),
            health: ApiHealth::new(),
            expiry: Duration::from_millis(500),
            sharing: crate::store::Sharing::memory(),
            timezone: jiff::tz::TimeZone::UTC,
            leadership: Leadership::alone(),
        };
        let (resync_tx, _rx) = mpsc::unbounded_channel();
        Controller::new(shared, resync_tx)
    }

    fn deployment(name: &str, enabled: &str, annotations: &[(&str, &str)]) -> Deployment {
        let ann: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": { ann::ENABLED_LABEL: enabled }, "annotations": ann },
            "spec": {
                "selector": {},
                "template": { "spec": { "containers": [{ "name": "c", "image": "i" }] } },
            },
        }))
        .expect("deployment")
    }

    fn pod(name: &str, app: &str, ip: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "ns", "labels": { ann::APP_NAME: app } },
            "status": { "phase": "Running", "podIP": ip, "conditions": [{ "type": "Ready", "status": "True" }] },
        }))
        .expect("pod")
    }

    fn dep(c: &mut Controller, e: Event<Deployment>) {
        c.step(Input::Deployment("ns".into(), e));
    }

    fn deps(c: &mut Controller, list: Vec<Deployment>) {
        dep(c, Event::Init);
        for d in list {
            dep(c, Event::InitApply(d));
        }
        dep(c, Event::InitDone);
    }

    fn pods(c: &mut Controller, list: Vec<Pod>) {
        c.step(Input::Pod("ns".into(), Event::Init));
        for p in list {
            c.step(Input::Pod("ns".into(), Event::InitApply(p)));
        }
        c.step(Input::Pod("ns".into(), Event::InitDone));
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
        c.step(Input::Tick);
        assert!(c.shared.apps.get("a").is_none(), "no users: removed");
    }

    /// Removal follows the app's own state (its tickets), not a metric.
    #[tokio::test]
    async fn a_draining_app_stays_while_a_ticket_is_held() {
        let mut c = controller(false).await;
        pods(&mut c, vec![pod("a-0", "a", "10.0.0.1")]);
        dep(
            &mut c,
            Event::Apply(deployment(
                "d",
                "true",
                &[(ann::APP_NAME, "a"), (ann::TICKETS_MAX, "2")],
            )),
        );
        let app = c.shared.apps.get("a").expect("app");
        let grant = match app.request_ticket().await {
            crate::app::TicketRequest::Granted(g) => g,
            _ => panic!("no ticket on the ready pod"),
        };
        dep(
            &mut c,
            Event::Delete(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        // The gauge the old rule read says nobody is on it.
        c.shared
            .metrics
            .current_users
            .with_label_values(&["a"])
            .set(0.0);
        c.step(Input::Tick);
        assert!(
            c.shared.apps.get("a").is_some(),
            "a user still holds a ticket"
        );
        app.release(&grant);
        c.step(Input::Tick);
        assert!(c.shared.apps.get("a").is_none(), "drained: removed");
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

    /// Two warnings about one Deployment are two Events, each with its note
    /// (the recorder would fold events about the same reference into one).
    #[tokio::test]
    async fn each_malformed_annotation_is_an_event_of_its_own() {
        let mut c = controller(false).await;
        let (sink, mut rx) = EventSink::channel();
        c.shared.events = sink;
        pods(&mut c, vec![]);
        dep(
            &mut c,
            Event::Apply(deployment(
                "d",
                "true",
                &[(ann::TICKETS_MAX, "lots"), (ann::RESUME_GRACE, "soon")],
            )),
        );
        let a = rx.try_recv().expect("first event");
        let b = rx.try_recv().expect("second event");
        assert_eq!(
            (a.reason, b.reason),
            ("InvalidAnnotation", "InvalidAnnotation")
        );
        assert_ne!(a.regarding, b.regarding);
        assert_eq!(a.regarding.name.as_deref(), Some("d"));
        assert!(rx.try_recv().is_err(), "once each");
    }

    #[tokio::test]
    async fn app_ports_follow_the_annotation() {
        let mut c = controller(true).await;
        pods(&mut c, vec![]);
        let ports = c.shared.ports.clone().expect("ports");
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .expect("bind")
                .local_addr()
                .expect("addr")
                .port()
        };
        let (p1, p2) = (free(), free());
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::PORT, &p1.to_string())])),
        );
        assert_eq!(ports.addr("d").map(|a| a.port()), Some(p1));
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::PORT, &p2.to_string())])),
        );
        assert_eq!(ports.addr("d").map(|a| a.port()), Some(p2));
        // A port in use: served on the shared port only, retried later.
        let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = busy.local_addr().expect("addr").port();
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::PORT, &port.to_string())])),
        );
        assert_eq!(ports.addr("d"), None);
        drop(busy);
        c.step(Input::Tick);
        assert_eq!(ports.addr("d").map(|a| a.port()), Some(port));
        // The app's removal closes its port.
        dep(
            &mut c,
            Event::Delete(deployment("d", "true", &[(ann::PORT, &port.to_string())])),
        );
        c.step(Input::Tick);
        assert_eq!(ports.addr("d"), None);
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
        c.step(Input::WatchFailed {
            kind: Kind::Pods,
            namespace: "ns".into(),
            error: "connection refused".into(),
        });
        assert!(c.shared.health.waiting(), "a stale watch is waited for");
        pods(&mut c, vec![pod("a-0", "a", "10.0.0.1")]);
        assert!(!c.shared.health.waiting(), "the watch works again");
        assert!(
            !app.has_pod("a-1"),
            "a-1 was deleted while the watch was down"
        );
        assert!(app.has_pod("a-0"));
        // A Deployment relist that misses it drains its app.
        deps(&mut c, vec![]);
        assert!(!app.accepting(), "deleted while the watch was down");
    }

    /// The race seen in the cluster test: the Deployment list starts before
    /// the pod list ends and finishes after it. The app starts once both
    /// lists are complete and survives the Deployment list's end.
    #[tokio::test]
    async fn a_deployment_relist_spanning_the_pod_sync_keeps_its_apps() {
        let mut c = controller(false).await;
        dep(&mut c, Event::Init);
        dep(
            &mut c,
            Event::InitApply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        pods(&mut c, vec![pod("a-0", "a", "10.0.0.1")]);
        dep(&mut c, Event::InitDone);
        let app = c
            .shared
            .apps
            .get("a")
            .expect("app once both lists are done");
        assert!(app.accepting(), "the Deployment was listed, not deleted");
        assert!(app.has_pod("a-0"));
        // A relist that finds it again keeps the same app.
        deps(
            &mut c,
            vec![deployment("d", "true", &[(ann::APP_NAME, "a")])],
        );
        assert!(Arc::ptr_eq(&app, &c.shared.apps.get("a").expect("a")));
        assert!(app.accepting());
        // A later relist that misses it does delete it.
        deps(&mut c, vec![]);
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
        c.step(Input::Pod("ns".into(), Event::InitDone));
        assert!(app.accepting());
        assert!(app.has_pod("a-0"));
    }

    #[tokio::test]
    async fn a_pod_relabelled_to_another_app_moves() {
        let mut c = controller(false).await;
        pods(&mut c, vec![pod("p", "a", "10.0.0.1")]);
        dep(
            &mut c,
            Event::Apply(deployment("d", "true", &[(ann::APP_NAME, "a")])),
        );
        dep(
            &mut c,
            Event::Apply(deployment("e", "true", &[(ann::APP_NAME, "b")])),
        );
        let (a, b) = (
            c.shared.apps.get("a").expect("a"),
            c.shared.apps.get("b").expect("b"),
        );
        assert!(a.has_pod("p") && !b.has_pod("p"));
        c.step(Input::Pod(
            "ns".into(),
            Event::Apply(pod("p", "b", "10.0.0.1")),
        ));
        assert!(!a.has_pod("p") && b.has_pod("p"));
        c.step(Input::Pod(
            "ns".into(),
            Event::Delete(pod("p", "b", "10.0.0.1")),
        ));
        assert!(!b.has_pod("p"));
    }

    #[test]
    fn watch_states_follow_the_list_protocol() {
        use WatchState::*;
        let e = |s: WatchState, ev: Event<()>| s.next(&ev);
        assert_eq!(e(New, Event::Init), (Listing, true));
        assert_eq!(e(Listing, Event::InitApply(())), (Listing, true));
        assert_eq!(e(Listing, Event::InitDone), (Watching, true));
        assert_eq!(e(Watching, Event::Apply(())), (Watching, true));
        assert_eq!(e(Watching, Event::Init), (Listing, true));
        assert_eq!(e(Watching, Event::InitDone), (Watching, false));
        assert_eq!(e(New, Event::InitApply(())), (New, false));
    }
}
