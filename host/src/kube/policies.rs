//! Policies from ConfigMaps labelled `wicket.dev/policy=true`: each
//! `binaryData` key is a policy component. An app selects one with the
//! annotation `wicket.dev/policy: <configmap>/<key>`.
//!
//! Every key is a [`PolicySource`]; a new version is compiled and validated
//! off the async threads, then published, so the apps that follow the source
//! switch on their next call. A version that fails validation is refused:
//! the last good one stays, with a warning log and a Warning Event on the
//! ConfigMap. Compiled policies are cached by digest, so a re-list or a
//! roll-back does not compile again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::annotations::PolicyRef;
use super::events::{self, EventSink, EventType, Record};
use crate::metrics::Metrics;
use crate::policy::{LoadedPolicy, PolicyEngine, PolicySource};

/// Name of the source of `<ns>/<configmap>/<key>` (in logs and metrics).
pub fn source_name(ns: &str, r: &PolicyRef) -> String {
    format!("configmap:{ns}/{}/{}", r.configmap, r.key)
}

type Key = (String, PolicyRef);

/// The policies of the watched namespaces.
pub struct PolicyStore {
    engine: Arc<PolicyEngine>,
    default: Arc<LoadedPolicy>,
    metrics: Metrics,
    events: EventSink,
    sources: Mutex<HashMap<Key, Arc<PolicySource>>>,
    compiled: Mutex<HashMap<String, Weak<LoadedPolicy>>>,
    /// Digests that failed validation, with the reason.
    refused: Mutex<HashMap<String, String>>,
    /// Keys that have served a version of their own (not the placeholder).
    loaded: Mutex<HashSet<Key>>,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("sources", &self.sources.lock().len())
            .finish_non_exhaustive()
    }
}

/// What happened to one key of a ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Same version as before.
    Unchanged,
    /// A new version now serves.
    Published {
        /// Its digest.
        digest: String,
    },
    /// Refused; the last good version stays.
    Refused {
        /// Why.
        reason: String,
    },
}

impl PolicyStore {
    /// An empty store; `default` serves keys that have no good version yet.
    pub fn new(
        engine: Arc<PolicyEngine>,
        default: Arc<LoadedPolicy>,
        metrics: Metrics,
        events: EventSink,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            default,
            metrics,
            events,
            sources: Mutex::default(),
            compiled: Mutex::default(),
            refused: Mutex::default(),
            loaded: Mutex::default(),
        })
    }

    /// The source of `<ns>/<configmap>/<key>`. If the ConfigMap has not been
    /// seen (yet), the source serves the embedded default until it is.
    pub fn source(&self, ns: &str, r: &PolicyRef) -> Arc<PolicySource> {
        let mut sources = self.sources.lock();
        let key = (ns.to_owned(), r.clone());
        Arc::clone(sources.entry(key).or_insert_with(|| {
            tracing::info!(namespace = ns, policy = %r, "policy not loaded (yet): the embedded default serves until it is");
            PolicySource::new(source_name(ns, r), Arc::clone(&self.default))
        }))
    }

    /// Compiles and validates `bytes` (cached by digest; off the async threads).
    async fn load(&self, bytes: Vec<u8>, name: String) -> Result<Arc<LoadedPolicy>, String> {
        let digest = hex::encode(Sha256::digest(&bytes));
        if let Some(p) = self.compiled.lock().get(&digest).and_then(Weak::upgrade) {
            return Ok(p);
        }
        if let Some(reason) = self.refused.lock().get(&digest) {
            return Err(reason.clone());
        }
        let engine = Arc::clone(&self.engine);
        let loaded =
            tokio::task::spawn_blocking(move || LoadedPolicy::load(&engine, &bytes, &name)).await;
        match loaded {
            Ok(Ok(p)) => {
                let mut compiled = self.compiled.lock();
                compiled.retain(|_, w| w.strong_count() > 0);
                compiled.insert(digest, Arc::downgrade(&p));
                Ok(p)
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                self.refused.lock().insert(digest, reason.clone());
                Err(reason)
            }
            Err(e) => Err(format!("the policy loader task failed: {e}")),
        }
    }

    /// Takes in a ConfigMap (added, changed or re-listed): each `binaryData`
    /// key becomes a new version of its source if it is new and valid.
    pub async fn apply(&self, cm: &ConfigMap) -> Vec<(String, Outcome)> {
        let ns = cm.namespace().unwrap_or_default();
        let name = cm.name_any();
        let mut outcomes = Vec::new();
        let data = cm.binary_data.clone().unwrap_or_default();
        if data.is_empty() {
            tracing::warn!(namespace = %ns, configmap = %name, "policy ConfigMap has no binaryData (put the .wasm component there)");
        }
        for (key, bytes) in data {
            let r = PolicyRef {
                configmap: name.clone(),
                key: key.clone(),
            };
            let digest = hex::encode(Sha256::digest(&bytes.0));
            let source = self.source(&ns, &r);
            let first = !self.loaded.lock().contains(&(ns.clone(), r.clone()));
            if !first && source.current().digest == digest {
                outcomes.push((key, Outcome::Unchanged));
                continue;
            }
            let already_refused = self.refused.lock().contains_key(&digest);
            match self.load(bytes.0, source_name(&ns, &r)).await {
                Ok(p) => {
                    tracing::info!(
                        namespace = %ns, policy = %r, digest = p.short_digest(),
                        load_ms = p.load_time.as_millis() as u64, "policy version validated; swapping"
                    );
                    source.publish(Arc::clone(&p));
                    self.loaded.lock().insert((ns.clone(), r.clone()));
                    self.events.publish(Record {
                        // With its resourceVersion: each version is an
                        // event of its own, not a repeat.
                        regarding: events::version_reference(cm),
                        related: None,
                        type_: EventType::Normal,
                        reason: "PolicyLoaded",
                        action: "LoadPolicy",
                        note: format!(
                            "policy {r} version {} validated and serving",
                            p.short_digest()
                        ),
                    });
                    outcomes.push((key, Outcome::Published { digest }));
                }
                Err(reason) => {
                    if !already_refused {
                        self.metrics
                            .policy_load_errors
                            .with_label_values(&[source.name()])
                            .inc();
                        tracing::warn!(
                            namespace = %ns, policy = %r, digest = &digest[..12],
                            "policy version refused, keeping the last good one: {reason}"
                        );
                        self.events.publish(Record {
                            regarding: events::version_reference(cm),
                            related: None,
                            type_: EventType::Warning,
                            reason: "PolicyRejected",
                            action: "LoadPolicy",
                            note: format!(
                                "policy {r} version {} refused, keeping the last good version {}: {reason}",
                                &digest[..12],
                                source.current().short_digest()
                            ),
                        });
                    }
                    outcomes.push((key, Outcome::Refused { reason }));
                }
            }
        }
        outcomes
    }

    /// A ConfigMap (or its label) is gone: its sources keep their last good
    /// versions, so running apps are not disturbed.
    pub fn removed(&self, ns: &str, name: &str) {
        let keys: HashSet<String> = self
            .sources
            .lock()
            .keys()
            .filter(|(n, r)| n == ns && r.configmap == name)
            .map(|(_, r)| r.key.clone())
            .collect();
        if !keys.is_empty() {
            tracing::warn!(
                namespace = ns,
                configmap = name,
                ?keys,
                "policy ConfigMap removed; apps keep its last good versions"
            );
        }
    }
}

/// Watches the policy ConfigMaps of `namespaces` and feeds them to `store`
/// until the task is aborted. Watches reconnect with backoff.
pub async fn watch(
    store: Arc<PolicyStore>,
    client: kube::Client,
    namespaces: Vec<String>,
    retry: super::retry::RetrySettings,
) {
    use futures_util::StreamExt;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::{self, Event};

    let label = format!("{}=true", super::annotations::POLICY_LABEL);
    let streams = namespaces.iter().map(|ns| {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), ns);
        let ns = ns.clone();
        watcher::watcher(api, watcher::Config::default().labels(&label))
            .backoff(retry.watch())
            .map(move |e| (ns.clone(), e))
            .boxed()
    });
    let mut all = futures_util::stream::select_all(streams);
    // One reflector store per namespace: a relist replaces it at its end,
    // so what it no longer holds was deleted while the watch was down.
    let mut stores: HashMap<String, Writer<ConfigMap>> = HashMap::new();
    let mut failing: HashSet<String> = HashSet::new();
    while let Some((ns, event)) = all.next().await {
        let event = match event {
            Ok(e) => {
                if failing.remove(&ns) {
                    tracing::info!(namespace = %ns, "watching policy ConfigMaps works again");
                }
                e
            }
            Err(e) => {
                if failing.insert(ns.clone()) {
                    tracing::warn!(namespace = %ns, "watching policy ConfigMaps failed (retrying; policies stay as they are): {e}");
                }
                continue;
            }
        };
        let writer = stores.entry(ns.clone()).or_default();
        let names = |w: &Writer<ConfigMap>| -> HashSet<String> {
            w.as_reader()
                .state()
                .iter()
                .map(|cm| cm.name_any())
                .collect()
        };
        let before = matches!(event, Event::InitDone).then(|| names(writer));
        // The store only tells which ConfigMaps exist: the components stay out.
        writer.apply_watcher_event(&event.clone().modify(|cm| cm.binary_data = None));
        match event {
            Event::Init => {}
            Event::InitApply(cm) | Event::Apply(cm) => {
                store.apply(&cm).await;
            }
            Event::InitDone => {
                let after = names(writer);
                for gone in before.unwrap_or_default().difference(&after) {
                    store.removed(&ns, gone);
                }
            }
            Event::Delete(cm) => store.removed(&ns, &cm.name_any()),
        }
    }
}
