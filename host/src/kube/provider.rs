//! The Kubernetes pod provider: autoscaled pods made from the app's
//! Deployment pod template, owned by the Deployment (so deleting the app
//! garbage-collects them), recorded as Events. API errors are retried with
//! backoff (and reported to [`ApiHealth`] while they last); nothing here
//! panics.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use backon::Retryable;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use tokio::sync::mpsc;

use super::annotations::{self, APP_NAME, SCALED_LABEL};
use super::events::{self, EventSink, EventType, Record};
use super::health::{ActionWaiting, ApiHealth};
use super::retry::{RetrySettings, is_transient, status_code};
use crate::provider::{BoxFuture, PodProvider, ProviderError};
use crate::state::PodInfo;

/// Label of a creation attempt, so a retried create can find a pod whose
/// first request succeeded although its answer was lost.
pub const CREATE_ID_LABEL: &str = "wicket.dev/create-id";

/// The Deployment an app's pods are made from.
#[derive(Debug, Clone)]
pub struct Template {
    /// Deployment name.
    pub deployment: String,
    /// Deployment uid (for the ownerReference).
    pub uid: String,
    /// `spec.template`.
    pub template: PodTemplateSpec,
}

/// A pod the provider could not delete, for the pod source to report again
/// (the app dropped it from its list when it asked for the deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
}

/// Creates and deletes one app's autoscaled pods in one namespace.
pub struct KubeProvider {
    api: Api<Pod>,
    namespace: String,
    template: ArcSwapOption<Template>,
    events: EventSink,
    retry: RetrySettings,
    health: Arc<ApiHealth>,
    resync: mpsc::UnboundedSender<Resync>,
}

impl std::fmt::Debug for KubeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeProvider")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Lower-case DNS-safe `generateName` prefix of an app's autoscaled pods.
pub fn generate_name(app: &str) -> String {
    let mut base: String = app
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    // Pod names are at most 253 characters, generateName adds 5.
    base.truncate(200);
    format!("{base}-k8sticket-autoscaled-")
}

/// The pod to create for `app` from `t` (pure).
pub fn pod_from_template(
    app: &str,
    namespace: &str,
    t: &Template,
    create_id: &str,
) -> Result<Pod, String> {
    let spec = t
        .template
        .spec
        .clone()
        .ok_or("the Deployment's pod template has no spec")?;
    let meta = t.template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(SCALED_LABEL.into(), "true".into());
    labels.insert(APP_NAME.into(), app.into());
    labels.insert(CREATE_ID_LABEL.into(), create_id.into());
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name(app)),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: t.deployment.clone(),
                uid: t.uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

impl KubeProvider {
    /// A provider for pods in `namespace`; `resync` hears of pods it failed to delete.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        events: EventSink,
        retry: RetrySettings,
        health: Arc<ApiHealth>,
        resync: mpsc::UnboundedSender<Resync>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            template: ArcSwapOption::empty(),
            events,
            retry,
            health,
            resync,
        }
    }

    /// Sets the Deployment new pods are made from (None: the Deployment is gone).
    pub fn set_template(&self, template: Option<Template>) {
        self.template.store(template.map(Arc::new));
    }

    fn deployment_ref(&self, t: &Template) -> k8s_openapi::api::core::v1::ObjectReference {
        events::reference(
            "apps/v1",
            "Deployment",
            &self.namespace,
            &t.deployment,
            Some(&t.uid),
        )
    }

    fn record(
        &self,
        type_: EventType,
        reason: &'static str,
        action: &'static str,
        pod: Option<&str>,
        note: String,
    ) {
        let Some(t) = self.template.load_full() else {
            return;
        };
        let related = pod.map(|p| events::reference("v1", "Pod", &self.namespace, p, None));
        self.events.publish(Record {
            regarding: self.deployment_ref(&t),
            related,
            type_,
            reason,
            action,
            note,
        });
    }

    async fn find_created(&self, create_id: &str) -> Option<Pod> {
        let lp = ListParams::default().labels(&format!("{CREATE_ID_LABEL}={create_id}"));
        self.api.list(&lp).await.ok()?.items.into_iter().next()
    }

    async fn create_pod(&self, app: &str) -> Result<PodInfo, ProviderError> {
        let fail = |reason: String| ProviderError {
            action: "create pod".into(),
            app: app.into(),
            reason,
        };
        let t = self
            .template
            .load_full()
            .ok_or_else(|| fail("the app's Deployment is gone".into()))?;
        let create_id = hex::encode(rand::random::<[u8; 8]>());
        let pod = pod_from_template(app, &self.namespace, &t, &create_id).map_err(&fail)?;
        // After a transient error the pod may exist although the answer was
        // lost: look for it by its creation id before asking again.
        let uncertain = std::sync::atomic::AtomicBool::new(false);
        let mut waiting: Option<ActionWaiting> = None;
        let attempt = || async {
            if uncertain.load(std::sync::atomic::Ordering::Relaxed)
                && let Some(p) = self.find_created(&create_id).await
            {
                return Ok(p);
            }
            self.api
                .create(&PostParams::default(), &pod)
                .await
                .inspect_err(|e| {
                    if is_transient(e) {
                        uncertain.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                })
        };
        let created = attempt
            .retry(self.retry.action())
            // 409: a generated name collided; a retry draws another.
            .when(|e| is_transient(e) || status_code(e) == 409)
            .notify(|e, d| {
                tracing::debug!(%app, "creating a pod failed, retrying in {d:?}: {e}");
                if is_transient(e) && waiting.is_none() {
                    waiting = Some(
                        self.health
                            .action_waiting(format!("a pod creation for app {app}")),
                    );
                }
            })
            .await;
        drop(waiting);
        let created = match created {
            Ok(p) => p,
            Err(e) if is_transient(&e) || status_code(&e) == 409 => {
                let reason = format!(
                    "the API kept failing for {}: {e}",
                    crate::duration::format(self.retry.deadline)
                );
                self.record(
                    EventType::Warning,
                    "FailedCreate",
                    "CreatePod",
                    None,
                    reason.clone(),
                );
                return Err(fail(reason));
            }
            Err(e) => {
                let reason = format!("refused by the API: {e}");
                self.record(
                    EventType::Warning,
                    "FailedCreate",
                    "CreatePod",
                    None,
                    reason.clone(),
                );
                // The app asks again as soon as this returns: hold the
                // request (it counts as a pod being created) so that a
                // lasting refusal (RBAC, quota) is not hammered.
                tokio::time::sleep(self.retry.max).await;
                return Err(fail(reason));
            }
        };
        let name = created.metadata.name.clone().unwrap_or_default();
        self.record(
            EventType::Normal,
            "ScaledUp",
            "CreatePod",
            Some(&name),
            format!(
                "created autoscaled pod {name} for app {app} (spare tickets below tickets.spare)"
            ),
        );
        Ok(PodInfo {
            name,
            backend: None,
            ready: false,
            autoscaled: true,
        })
    }

    async fn delete_pod(&self, app: &str, name: &str) -> Result<(), ProviderError> {
        let fail = |reason: String| ProviderError {
            action: format!("delete pod {name}"),
            app: app.into(),
            reason,
        };
        /// Why a deletion did not happen.
        enum NotDeleted {
            AlreadyGone,
            NotOurs,
        }
        let attempt = || async {
            let Some(pod) = self.api.get_opt(name).await? else {
                return Ok(Err(NotDeleted::AlreadyGone));
            };
            let labels = pod.metadata.labels.as_ref();
            if !annotations::autoscaled(labels) || annotations::pod_app(labels) != Some(app) {
                return Ok(Err(NotDeleted::NotOurs));
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            self.api.delete(name, &dp).await.map(|_| Ok(()))
        };
        let mut waiting: Option<ActionWaiting> = None;
        let outcome = attempt
            .retry(self.retry.action())
            .when(is_transient)
            .notify(|_, _| {
                if waiting.is_none() {
                    waiting = Some(
                        self.health
                            .action_waiting(format!("deleting pod {name} of app {app}")),
                    );
                }
            })
            .await;
        drop(waiting);
        let result: Result<(), &'static str> = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(NotDeleted::AlreadyGone)) => Err("already gone"),
            Ok(Err(NotDeleted::NotOurs)) => Err("refused: not an autoscaled pod of this app"),
            Err(e) if status_code(&e) == 404 => Err("already gone"),
            Err(e) if is_transient(&e) => Err("the API kept failing"),
            Err(e) => {
                let reason = format!("refused by the API: {e}");
                self.record(
                    EventType::Warning,
                    "FailedDelete",
                    "DeletePod",
                    Some(name),
                    reason.clone(),
                );
                let _ = self.resync.send(Resync {
                    namespace: self.namespace.clone(),
                    pod: name.into(),
                });
                return Err(fail(reason));
            }
        };
        match result {
            Ok(()) => {
                self.record(
                    EventType::Normal,
                    "ScaledDown",
                    "DeletePod",
                    Some(name),
                    format!("deleted idle autoscaled pod {name} of app {app}"),
                );
                Ok(())
            }
            Err("already gone") => Ok(()),
            Err(why) => {
                if why.starts_with("refused") {
                    tracing::error!(%app, pod = %name, "{why}");
                } else {
                    self.record(
                        EventType::Warning,
                        "FailedDelete",
                        "DeletePod",
                        Some(name),
                        why.into(),
                    );
                }
                let _ = self.resync.send(Resync {
                    namespace: self.namespace.clone(),
                    pod: name.into(),
                });
                Err(fail(why.into()))
            }
        }
    }
}

impl PodProvider for KubeProvider {
    fn create<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<PodInfo, ProviderError>> {
        Box::pin(self.create_pod(app))
    }

    fn delete<'a>(
        &'a self,
        app: &'a str,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.delete_pod(app, pod))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template() -> Template {
        let labels: BTreeMap<String, String> = [
            ("app".to_owned(), "shiny".to_owned()),
            (APP_NAME.to_owned(), "Shiny".to_owned()),
        ]
        .into();
        Template {
            deployment: "shiny-deploy".into(),
            uid: "1234".into(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(
                        [(annotations::POD_PORT.to_owned(), "3838".to_owned())].into(),
                    ),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("shiny".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
        }
    }

    #[test]
    fn pods_carry_labels_owner_and_template() {
        let pod = pod_from_template("Shiny", "ns", &template(), "abc").expect("pod");
        let m = &pod.metadata;
        assert_eq!(
            m.generate_name.as_deref(),
            Some("shiny-k8sticket-autoscaled-")
        );
        assert_eq!(m.name, None);
        let labels = m.labels.as_ref().expect("labels");
        assert_eq!(labels.get(SCALED_LABEL).map(String::as_str), Some("true"));
        assert_eq!(labels.get("app").map(String::as_str), Some("shiny"));
        assert_eq!(labels.get(APP_NAME).map(String::as_str), Some("Shiny"));
        assert_eq!(labels.get(CREATE_ID_LABEL).map(String::as_str), Some("abc"));
        assert_eq!(
            m.annotations
                .as_ref()
                .and_then(|a| a.get(annotations::POD_PORT))
                .map(String::as_str),
            Some("3838")
        );
        let owner = &m.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Deployment", "shiny-deploy", "1234")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(pod.spec.expect("spec").containers[0].name, "app");
    }

    #[test]
    fn template_without_spec_is_an_error() {
        let mut t = template();
        t.template.spec = None;
        assert!(pod_from_template("a", "ns", &t, "x").is_err());
    }

    #[test]
    fn generate_names_are_dns_safe() {
        assert_eq!(generate_name("My_App"), "my-app-k8sticket-autoscaled-");
    }
}
