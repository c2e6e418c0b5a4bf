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
//!
//! The ConfigMap's annotations `wicket.dev/policy-timeout-ms`,
//! `wicket.dev/policy-memory-mib` and `wicket.dev/policy-instantiate-timeout-ms`
//! set the limits of its policies (else the host's defaults); changing them
//! reloads the policies under the new limits (without compiling again).
//!
//! A key may also hold a manifest naming the parts of a component too large
//! for one ConfigMap ([`super::policy_parts`]): the version is assembled
//! once all its parts are there and their bytes hash to its digest.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::annotations::{self, PolicyRef};
use super::events::{self, EventSink, EventType, Record};
use super::policy_parts::{Incomplete, Manifest, Part, Parts};
use crate::metrics::Metrics;
use crate::policy::{Limits, LoadedPolicy, PolicyEngine, PolicySource};

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
    /// Validated policies by digest and limits.
    compiled: Mutex<HashMap<(String, Limits), Weak<LoadedPolicy>>>,
    /// Digests that failed validation under some limits, with the reason.
    refused: Mutex<HashMap<(String, Limits), String>>,
    /// Keys that have served a version of their own (not the placeholder).
    loaded: Mutex<HashSet<Key>>,
    /// The parts of policies in parts.
    parts: Mutex<Parts>,
    /// The policy ConfigMaps with keys in parts, by namespace and name
    /// (only those keys' manifests kept), tried again when a part arrives.
    heads: Mutex<HashMap<(String, String), ConfigMap>>,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("sources", &self.sources.lock().len())
            .finish_non_exhaustive()
    }
}

/// Most bytes a gzip-compressed key may unpack to: far above any real
/// component (Python's is ~18 MB), low enough that a small compressed
/// value cannot make the host allocate without bound.
pub const UNPACKED_MAX_BYTES: u64 = 256 << 20;

/// A ConfigMap holds at most 1 MiB, less than a JavaScript component
/// (~1.7 MB): a key may hold the component gzip-compressed (`gzip -9`,
/// ~0.6 MB for JavaScript), recognised by the gzip magic bytes and unpacked
/// off the async threads. Other bytes are the component itself. The error
/// carries the digest of the bytes and the reason.
async fn unpack(bytes: Vec<u8>) -> Result<Vec<u8>, (String, String)> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    // At most 1 MiB (the ConfigMap's limit): cheap to hash here.
    let raw_digest = hex::encode(Sha256::digest(&bytes));
    match tokio::task::spawn_blocking(move || gunzip(&bytes)).await {
        Ok(Ok(component)) => Ok(component),
        Ok(Err(reason)) => Err((raw_digest, reason)),
        Err(e) => Err((raw_digest, format!("the unpacking task failed: {e}"))),
    }
}

/// Unpacks a gzip stream of at most [`UNPACKED_MAX_BYTES`].
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(UNPACKED_MAX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the gzip-compressed component does not unpack: {e}"))?;
    if out.len() as u64 > UNPACKED_MAX_BYTES {
        return Err(format!(
            "the gzip-compressed component unpacks to more than {} MiB",
            UNPACKED_MAX_BYTES >> 20
        ));
    }
    Ok(out)
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
    /// A version in parts, not all of them applied (yet); the last good
    /// version stays.
    Waiting {
        /// Which parts are missing.
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
            parts: Mutex::default(),
            heads: Mutex::default(),
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

    /// Compiles and validates `bytes` to run under `limits` (cached by
    /// digest and limits; off the async threads).
    async fn load(
        &self,
        bytes: Vec<u8>,
        name: String,
        limits: Limits,
    ) -> Result<Arc<LoadedPolicy>, String> {
        let key = (hex::encode(Sha256::digest(&bytes)), limits);
        if let Some(p) = self.compiled.lock().get(&key).and_then(Weak::upgrade) {
            return Ok(p);
        }
        if let Some(reason) = self.refused.lock().get(&key) {
            return Err(reason.clone());
        }
        let engine = Arc::clone(&self.engine);
        let loaded = tokio::task::spawn_blocking(move || {
            LoadedPolicy::load_with(&engine, &bytes, &name, limits)
        })
        .await;
        match loaded {
            Ok(Ok(p)) => {
                let mut compiled = self.compiled.lock();
                compiled.retain(|_, w| w.strong_count() > 0);
                compiled.insert(key, Arc::downgrade(&p));
                Ok(p)
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                self.refused.lock().insert(key, reason.clone());
                Err(reason)
            }
            Err(e) => Err(format!("the policy loader task failed: {e}")),
        }
    }

    /// Takes in a ConfigMap (added, changed or re-listed): each `binaryData`
    /// key becomes a new version of its source if it is new and valid. A
    /// part of a policy in parts (see [`policy_parts`]) is kept, and its
    /// head's keys are tried again.
    pub async fn apply(&self, cm: &ConfigMap) -> Vec<(String, Outcome)> {
        let ns = cm.namespace().unwrap_or_default();
        let name = cm.name_any();
        let Some(part) = Part::read(cm) else {
            return self.apply_head(cm, true).await;
        };
        let kept = part.and_then(|p| {
            let head = p.head.clone();
            self.parts.lock().insert(&ns, &name, p).map(|()| head)
        });
        let head = match kept {
            Ok(head) => head,
            Err(reason) => {
                self.parts.lock().remove(&ns, &name);
                tracing::warn!(namespace = %ns, configmap = %name, "policy part refused: {reason}");
                self.events.publish(Record {
                    regarding: events::version_reference(cm),
                    related: None,
                    type_: EventType::Warning,
                    reason: "PolicyPartRejected",
                    action: "LoadPolicy",
                    note: format!("policy part {name} refused: {reason}"),
                });
                return Vec::new();
            }
        };
        let head = self.heads.lock().get(&(ns, head)).cloned();
        match head {
            Some(head) => self.apply_head(&head, false).await,
            None => Vec::new(),
        }
    }

    /// Publishes a refusal: a warning log, the load-error metric and a
    /// Warning Event on `cm`.
    fn refuse(
        &self,
        cm: &ConfigMap,
        r: &PolicyRef,
        source: &PolicySource,
        digest: &str,
        reason: &str,
    ) {
        let ns = cm.namespace().unwrap_or_default();
        self.metrics
            .policy
            .load_errors
            .with_label_values(&[source.name()])
            .inc();
        tracing::warn!(
            namespace = %ns, policy = %r, digest = &digest[..12.min(digest.len())],
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
                &digest[..12.min(digest.len())],
                source.current().short_digest()
            ),
        });
    }

    /// A policy ConfigMap's keys (`announce`: the ConfigMap itself changed,
    /// not one of its parts: its annotation warnings and missing parts are
    /// told again).
    async fn apply_head(&self, cm: &ConfigMap, announce: bool) -> Vec<(String, Outcome)> {
        let ns = cm.namespace().unwrap_or_default();
        let name = cm.name_any();
        let mut outcomes = Vec::new();
        let (overrides, warnings) = annotations::policy_limits(cm.metadata.annotations.as_ref());
        for w in warnings.iter().filter(|_| announce) {
            tracing::warn!(namespace = %ns, configmap = %name, "{w}");
            self.events.publish(Record {
                regarding: events::reference("v1", "ConfigMap", &ns, &name, cm.uid().as_deref()),
                related: None,
                type_: EventType::Warning,
                reason: "InvalidAnnotation",
                action: "ParseAnnotations",
                note: w.to_string(),
            });
        }
        let limits = overrides.apply(self.engine.limits());
        let data = cm.binary_data.clone().unwrap_or_default();
        if data.is_empty() {
            tracing::warn!(namespace = %ns, configmap = %name, "policy ConfigMap has no binaryData (put the .wasm component there)");
        }
        // Remember the keys that come in parts (only them: a part that
        // arrives later tries them again).
        let mut head = cm.clone();
        head.binary_data = Some(
            data.iter()
                .filter(|(_, b)| Manifest::read(&b.0).is_some())
                .map(|(k, b)| (k.clone(), b.clone()))
                .collect(),
        );
        if head.binary_data.as_ref().is_some_and(|d| !d.is_empty()) {
            self.heads.lock().insert((ns.clone(), name.clone()), head);
        } else {
            self.heads.lock().remove(&(ns.clone(), name.clone()));
        }
        for (key, bytes) in data {
            let r = PolicyRef {
                configmap: name.clone(),
                key: key.clone(),
            };
            let source = self.source(&ns, &r);
            let first = !self.loaded.lock().contains(&(ns.clone(), r.clone()));
            let current = source.current();
            let unchanged =
                |digest: &str| !first && current.digest == digest && current.limits == limits;
            // The digest is the component's (unpacked), as `wicket policy
            // check` and the metrics show it; a key that does not unpack is
            // known by the digest of its bytes.
            let (digest, component) = match Manifest::read(&bytes.0) {
                None => match unpack(bytes.0).await {
                    Ok(c) => (hex::encode(Sha256::digest(&c)), Ok(c)),
                    Err((raw_digest, reason)) => (raw_digest, Err(reason)),
                },
                Some(Err(reason)) => (hex::encode(Sha256::digest(&bytes.0)), Err(reason)),
                Some(Ok(manifest)) => {
                    // The version is known before it is assembled.
                    if unchanged(&manifest.sha256) {
                        outcomes.push((key, Outcome::Unchanged));
                        continue;
                    }
                    match self.assemble(&ns, &r, &manifest).await {
                        Ok(c) => (manifest.sha256, Ok(c)),
                        // Not cached as refused: the same version may
                        // still arrive whole.
                        Err(Incomplete::Missing(why)) => {
                            let reason = format!("waiting for its parts: {why}");
                            if announce {
                                tracing::warn!(namespace = %ns, policy = %r, "policy version not complete, the last good one serves: {why}");
                                self.events.publish(Record {
                                    regarding: events::version_reference(cm),
                                    related: None,
                                    type_: EventType::Warning,
                                    reason: "PolicyPartsMissing",
                                    action: "LoadPolicy",
                                    note: format!(
                                        "policy {r}: {why}; the last good version {} serves until every part of the new one is applied",
                                        source.current().short_digest()
                                    ),
                                });
                            } else {
                                tracing::info!(namespace = %ns, policy = %r, "policy version not complete yet: {why}");
                            }
                            outcomes.push((key, Outcome::Waiting { reason }));
                            continue;
                        }
                        Err(Incomplete::Bad(reason)) => {
                            self.refuse(cm, &r, &source, &manifest.sha256, &reason);
                            outcomes.push((key, Outcome::Refused { reason }));
                            continue;
                        }
                    }
                }
            };
            if unchanged(&digest) {
                outcomes.push((key, Outcome::Unchanged));
                continue;
            }
            let already_refused = self.refused.lock().contains_key(&(digest.clone(), limits));
            let loaded = match component {
                Ok(c) => self.load(c, source_name(&ns, &r), limits).await,
                Err(reason) => {
                    self.refused
                        .lock()
                        .insert((digest.clone(), limits), reason.clone());
                    Err(reason)
                }
            };
            match loaded {
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
                        self.refuse(cm, &r, &source, &digest, &reason);
                    }
                    outcomes.push((key, Outcome::Refused { reason }));
                }
            }
        }
        outcomes
    }

    /// The component `manifest` describes, from the parts of `ns/r`:
    /// assembled, unpacked (off the async threads) and checked against the
    /// manifest's digest. `Bad` if it does not match.
    async fn assemble(
        &self,
        ns: &str,
        r: &PolicyRef,
        manifest: &Manifest,
    ) -> Result<Vec<u8>, Incomplete> {
        let packed = self
            .parts
            .lock()
            .assemble(ns, &r.configmap, &r.key, manifest)?;
        let bad = |why: String| {
            Incomplete::Bad(format!(
                "the {} parts of version {} {why} (a part was changed by hand, or parts of two builds carry one digest)",
                manifest.parts,
                &manifest.sha256[..12]
            ))
        };
        let component = unpack(packed)
            .await
            .map_err(|(_, reason)| bad(format!("do not unpack: {reason}")))?;
        let digest = hex::encode(Sha256::digest(&component));
        if digest != manifest.sha256 {
            return Err(bad(format!(
                "assemble to a component of digest {}",
                &digest[..12]
            )));
        }
        Ok(component)
    }

    /// A ConfigMap (or its label) is gone: its sources keep their last good
    /// versions, so running apps are not disturbed.
    pub fn removed(&self, ns: &str, name: &str) {
        // A part gone makes its version incomplete: the version serving
        // stays, as for a ConfigMap removed.
        self.parts.lock().remove(ns, name);
        self.heads.lock().remove(&(ns.to_owned(), name.to_owned()));
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
    // Per namespace: the namespaces' lists interleave.
    let mut deferred: HashMap<String, Vec<ConfigMap>> = HashMap::new();
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
            Event::Init => {
                deferred.remove(&ns);
            }
            // A (re-)list comes in name order: `p` before `p-part-0`. The
            // policy ConfigMaps wait for the end of the list, so that their
            // parts are there (no spurious "missing part" warning).
            Event::InitApply(cm) if Part::read(&cm).is_none() => {
                deferred.entry(ns.clone()).or_default().push(cm);
            }
            Event::InitApply(cm) | Event::Apply(cm) => {
                store.apply(&cm).await;
            }
            Event::InitDone => {
                for cm in deferred.remove(&ns).unwrap_or_default() {
                    store.apply(&cm).await;
                }
                let after = names(writer);
                for gone in before.unwrap_or_default().difference(&after) {
                    store.removed(&ns, gone);
                }
            }
            Event::Delete(cm) => store.removed(&ns, &cm.name_any()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::policy::{DEFAULT_POLICY, Limits, load_default};

    fn configmap(annotations: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("policies".into()),
                namespace: Some("ns".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                "p.wasm".to_owned(),
                ByteString(DEFAULT_POLICY.to_vec()),
            )])),
            ..ConfigMap::default()
        }
    }

    #[tokio::test]
    async fn the_configmap_sets_its_policies_limits_and_a_change_reloads_without_compiling() {
        let (engine, store) = store(EventSink::discard());
        let r = PolicyRef {
            configmap: "policies".into(),
            key: "p.wasm".into(),
        };
        let cm = configmap(&[
            (annotations::POLICY_MEMORY_MIB, "64"),
            (annotations::POLICY_INSTANTIATE_TIMEOUT_MS, "2500"),
        ]);
        let out = store.apply(&cm).await;
        assert!(matches!(out[0].1, Outcome::Published { .. }), "{out:?}");
        let current = store.source("ns", &r).current();
        assert_eq!(current.limits.memory_bytes, 64 << 20);
        assert_eq!(
            current.limits.instantiate_timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(current.limits.timeout, Duration::from_secs(2), "the host's");
        // The same again: unchanged.
        assert_eq!(store.apply(&cm).await[0].1, Outcome::Unchanged);
        // New limits, same bytes: a new version, from the compiled cache.
        let cm = configmap(&[(annotations::POLICY_TIMEOUT_MS, "50")]);
        assert!(matches!(
            store.apply(&cm).await[0].1,
            Outcome::Published { .. }
        ));
        let current = store.source("ns", &r).current();
        assert_eq!(current.limits.timeout, Duration::from_millis(50));
        assert_eq!(current.limits.memory_bytes, 16 << 20, "back to the host's");
        assert_eq!(current.compile_time, Duration::ZERO, "not compiled again");
        // A malformed value is the host's default (and a warning).
        let cm = configmap(&[(annotations::POLICY_TIMEOUT_MS, "fast")]);
        store.apply(&cm).await;
        let current = store.source("ns", &r).current();
        assert_eq!(current.limits, engine.limits());
    }

    /// Packed as `wicket policy configmap` packs a component.
    fn gzip(bytes: &[u8]) -> Vec<u8> {
        crate::policy_configmap::gzip(bytes).expect("gzip")
    }

    /// A store whose policies get a deadline no debug build misses.
    fn store(events: EventSink) -> (Arc<PolicyEngine>, Arc<PolicyStore>) {
        let engine = PolicyEngine::new(Limits {
            timeout: Duration::from_secs(2),
            ..Limits::default()
        })
        .expect("engine");
        let default = load_default(&engine).expect("default");
        let store = PolicyStore::new(
            Arc::clone(&engine),
            default,
            Metrics::new().expect("metrics"),
            events,
        );
        (engine, store)
    }

    #[tokio::test]
    async fn a_gzip_compressed_key_serves_the_component_it_unpacks_to() {
        let (_engine, store) = store(EventSink::discard());
        let r = PolicyRef {
            configmap: "policies".into(),
            key: "p.wasm".into(),
        };
        let component_digest = hex::encode(Sha256::digest(DEFAULT_POLICY));
        let mut cm = configmap(&[]);
        let packed = gzip(DEFAULT_POLICY);
        assert!(packed.len() < DEFAULT_POLICY.len());
        cm.binary_data = Some(BTreeMap::from([("p.wasm".to_owned(), ByteString(packed))]));
        let out = store.apply(&cm).await;
        assert_eq!(
            out[0].1,
            Outcome::Published {
                digest: component_digest.clone()
            },
            "known by the component's digest"
        );
        assert_eq!(store.source("ns", &r).current().digest, component_digest);
        // The same component uncompressed: the same version.
        assert_eq!(store.apply(&configmap(&[])).await[0].1, Outcome::Unchanged);

        // A corrupt stream and one that unpacks past the cap: refused, the
        // last good one stays.
        let mut corrupt = gzip(DEFAULT_POLICY);
        corrupt.truncate(corrupt.len() / 2);
        let huge = gzip(&vec![
            0u8;
            usize::try_from(UNPACKED_MAX_BYTES).expect("fits") + 1
        ]);
        assert!(huge.len() < 1 << 20, "a small value ({} bytes)", huge.len());
        for (bad, why) in [(corrupt, "does not unpack"), (huge, "more than 256 MiB")] {
            cm.binary_data = Some(BTreeMap::from([("p.wasm".to_owned(), ByteString(bad))]));
            match &store.apply(&cm).await[0].1 {
                Outcome::Refused { reason } => assert!(reason.contains(why), "{reason}"),
                other => panic!("{why}: {other:?}"),
            }
            assert_eq!(store.source("ns", &r).current().digest, component_digest);
        }
    }
    /// The default policy with a custom section appended: a valid
    /// component of another digest.
    fn variant(tag: u8) -> Vec<u8> {
        let mut c = DEFAULT_POLICY.to_vec();
        c.extend_from_slice(&[0, 4, 1, b'x', b'v', tag]);
        c
    }

    /// The ConfigMaps `wicket policy configmap` makes for `component` in
    /// parts of 4 KiB, the policy ConfigMap last.
    fn in_parts(component: &[u8]) -> Vec<ConfigMap> {
        let mut cms = crate::policy_configmap::configmaps(
            component,
            "p.wasm",
            &crate::policy_configmap::Options {
                name: "policies".into(),
                namespace: Some("ns".into()),
                key: None,
                limits: crate::policy::LimitOverrides::default(),
                part_bytes: 4096,
            },
        )
        .expect("made");
        assert!(cms.len() > 3, "in parts");
        for cm in &mut cms {
            cm.metadata.resource_version = Some("1".into());
        }
        cms
    }

    #[tokio::test]
    async fn a_policy_in_parts_swaps_only_when_complete_and_whole() {
        let (sink, mut events) = EventSink::channel();
        let (_engine, store) = store(sink);
        let r = PolicyRef {
            configmap: "policies".into(),
            key: "p.wasm".into(),
        };
        let (v1, v2) = (variant(1), variant(2));
        let (d1, d2) = (
            hex::encode(Sha256::digest(&v1)),
            hex::encode(Sha256::digest(&v2)),
        );
        let mut drain = || {
            let mut got = Vec::new();
            while let Ok(e) = events.try_recv() {
                got.push((e.reason, e.note));
            }
            got
        };

        // Version 1, parts first as kubectl applies them: the head
        // completes it.
        let cms = in_parts(&v1);
        let (head1, parts1) = cms.split_last().expect("some");
        for p in parts1 {
            assert!(store.apply(p).await.is_empty(), "no head yet");
        }
        assert_eq!(
            store.apply(head1).await,
            [(
                "p.wasm".to_owned(),
                Outcome::Published { digest: d1.clone() }
            )]
        );
        assert_eq!(store.source("ns", &r).current().digest, d1);
        assert!(drain().iter().any(|(reason, _)| *reason == "PolicyLoaded"));

        // Version 2 half applied: part 1 missing (it still holds version
        // 1). Version 1 keeps serving; a Warning names the missing part.
        let cms = in_parts(&v2);
        let (head2, parts2) = cms.split_last().expect("some");
        for p in parts2
            .iter()
            .filter(|p| p.metadata.name.as_deref() != Some("policies-part-1"))
        {
            store.apply(p).await;
        }
        let out = store.apply(head2).await;
        assert!(
            matches!(&out[0].1, Outcome::Waiting { reason } if reason.contains("part 1 (policies-part-1 holds version")),
            "{out:?}"
        );
        assert_eq!(
            store.source("ns", &r).current().digest,
            d1,
            "last good kept"
        );
        let warned = drain();
        assert!(
            warned
                .iter()
                .any(|(reason, note)| *reason == "PolicyPartsMissing"
                    && note.contains("policies/p.wasm")
                    && note.contains(&format!("the last good version {} serves", &d1[..12]))),
            "{warned:?}"
        );
        // Part 1 arrives: version 2 serves.
        let out = store.apply(&parts2[1]).await;
        assert_eq!(
            out,
            [(
                "p.wasm".to_owned(),
                Outcome::Published { digest: d2.clone() }
            )]
        );
        assert_eq!(store.source("ns", &r).current().digest, d2);

        // Back to version 1, but one part's bytes changed by hand: the
        // assembled bytes do not hash to the digest; refused, 2 stays.
        for p in parts1 {
            store.apply(p).await;
        }
        let mut edited = parts1[0].clone();
        if let Some(b) = edited
            .binary_data
            .as_mut()
            .and_then(|d| d.get_mut("p.wasm"))
        {
            b.0[20] ^= 0xff;
        }
        store.apply(&edited).await;
        drain();
        let out = store.apply(head1).await;
        assert!(matches!(&out[0].1, Outcome::Refused { .. }), "{out:?}");
        assert_eq!(
            store.source("ns", &r).current().digest,
            d2,
            "last good kept"
        );
        assert!(
            drain()
                .iter()
                .any(|(reason, _)| *reason == "PolicyRejected")
        );
        // The part repaired: version 1 serves (the refusal was not cached).
        let out = store.apply(&parts1[0]).await;
        assert_eq!(
            out,
            [(
                "p.wasm".to_owned(),
                Outcome::Published { digest: d1.clone() }
            )]
        );

        // The policy ConfigMap holds a component again: the parts are
        // no longer tried.
        let mut whole = head1.clone();
        whole.binary_data = Some(BTreeMap::from([(
            "p.wasm".to_owned(),
            ByteString(v2.clone()),
        )]));
        assert_eq!(
            store.apply(&whole).await,
            [(
                "p.wasm".to_owned(),
                Outcome::Published { digest: d2.clone() }
            )]
        );
        assert!(store.apply(&parts1[1]).await.is_empty());
        assert_eq!(store.source("ns", &r).current().digest, d2);
    }
}
