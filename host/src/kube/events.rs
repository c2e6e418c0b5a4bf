//! Kubernetes Events (`events.k8s.io/v1`): what wicket did and what it
//! refused, visible in `kubectl describe` and `kubectl get events`.
//!
//! Written through kube-runtime's [`Recorder`], which turns a repeat of the
//! same event (same object, reason, action and related object within a few
//! minutes) into a count on the first one. Publishing never blocks the
//! caller: events go through a bounded queue to one writer task that
//! retries transient API errors (e.g. while the apiserver restarts) and
//! drops events when the queue is full.

use backon::Retryable;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};
use tokio::sync::mpsc;

pub use kube::runtime::events::EventType;

use super::retry::{RetrySettings, is_transient};

/// `reportingController` of every event.
pub const REPORTING_CONTROLLER: &str = "wicket.dev/wicket";
/// Events waiting to be written; more are dropped (and logged).
const QUEUE: usize = 1024;
/// Most bytes of a note (the API's limit is 1 kB).
const MAX_NOTE: usize = 1000;

/// One event to record.
#[derive(Debug, Clone)]
pub struct Record {
    /// The object it is about (its namespace is the event's). Two events
    /// about references that differ (e.g. in `resourceVersion` or
    /// `fieldPath`) are recorded apart; the same one again only counts.
    pub regarding: ObjectReference,
    /// Another object involved (e.g. the pod a scale action touched).
    pub related: Option<ObjectReference>,
    /// Severity.
    pub type_: EventType,
    /// Short CamelCase reason (`ScaledUp`, `InvalidAnnotation`, …).
    pub reason: &'static str,
    /// CamelCase action (`CreatePod`, `ParseAnnotations`, …).
    pub action: &'static str,
    /// Human-readable detail.
    pub note: String,
}

impl Record {
    /// The recorder's event (the note cut to the API's limit).
    fn event(&self) -> Event {
        Event {
            type_: self.type_,
            reason: self.reason.into(),
            note: Some(truncate(&self.note, MAX_NOTE).to_owned()),
            action: self.action.into(),
            secondary: self.related.clone(),
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Where events are sent; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Record>,
}

impl EventSink {
    /// A sink whose events are dropped (for tests without a cluster).
    pub fn discard() -> Self {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        Self { tx }
    }

    /// A sink and the receiving end of its queue (for tests that check
    /// which events are published).
    pub fn channel() -> (Self, mpsc::Receiver<Record>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, rx)
    }

    /// Queues an event; never waits.
    pub fn publish(&self, record: Record) {
        if let Err(e) = self.tx.try_send(record) {
            tracing::warn!("event queue full or closed, dropping an event: {e}");
        }
    }
}

/// Starts the writer task; events are written as `instance` (the host's pod
/// name or hostname).
pub fn start(
    client: Client,
    instance: String,
    retry: RetrySettings,
) -> (EventSink, tokio::task::JoinHandle<()>) {
    let (sink, mut rx) = EventSink::channel();
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: REPORTING_CONTROLLER.into(),
            instance: Some(instance.chars().take(128).collect()),
        },
    );
    let task = tokio::spawn(async move {
        while let Some(record) = rx.recv().await {
            let event = record.event();
            let written = (|| recorder.publish(&event, &record.regarding))
                .retry(retry.action())
                .when(is_transient)
                .await;
            match written {
                Ok(()) => {
                    tracing::debug!(reason = record.reason, note = %record.note, "event recorded")
                }
                Err(e) => tracing::warn!(reason = record.reason, "cannot record an event: {e}"),
            }
        }
    });
    (sink, task)
}

/// A reference to a namespaced object, for events.
pub fn reference(
    api_version: &str,
    kind: &str,
    ns: &str,
    name: &str,
    uid: Option<&str>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid: uid.map(Into::into),
        ..ObjectReference::default()
    }
}

/// The reference of `object` in its current version (with its
/// `resourceVersion`): events about different versions are recorded apart.
pub fn version_reference<K: kube::Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        resource_version: object.meta().resource_version.clone(),
        ..object.object_ref(&())
    }
}

/// The reference of an object's annotation `key` in its version
/// `resource_version`: warnings about different annotations or versions are
/// different events, not repeats of one.
pub fn annotation_reference(
    mut object: ObjectReference,
    key: &str,
    resource_version: Option<&str>,
) -> ObjectReference {
    object.field_path = Some(format!("metadata.annotations['{key}']"));
    object.resource_version = resource_version.map(Into::into);
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_to_the_api_limit_on_a_character_boundary() {
        let r = Record {
            regarding: reference("apps/v1", "Deployment", "ns", "shiny", Some("uid-1")),
            related: None,
            type_: EventType::Warning,
            reason: "InvalidAnnotation",
            action: "ParseAnnotations",
            note: "é".repeat(700),
        };
        let e = r.event();
        let note = e.note.expect("note");
        assert!(note.len() <= MAX_NOTE && note.len() >= MAX_NOTE - 1);
        assert!(note.chars().all(|c| c == 'é'));
        assert_eq!(
            (e.reason.as_str(), e.action.as_str()),
            ("InvalidAnnotation", "ParseAnnotations")
        );
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn version_references_tell_versions_apart() {
        let cm = |rv: &str| k8s_openapi::api::core::v1::ConfigMap {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("policies".into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let a = version_reference(&cm("1"));
        assert_eq!(
            (
                a.kind.as_deref(),
                a.name.as_deref(),
                a.resource_version.as_deref()
            ),
            (Some("ConfigMap"), Some("policies"), Some("1"))
        );
        assert_ne!(a, version_reference(&cm("2")));
    }

    #[test]
    fn annotation_references_tell_annotations_and_versions_apart() {
        let d = reference("apps/v1", "Deployment", "ns", "shiny", Some("uid-1"));
        let a = annotation_reference(d.clone(), "x/tickets.max", Some("7"));
        assert_eq!(
            a.field_path.as_deref(),
            Some("metadata.annotations['x/tickets.max']")
        );
        assert_ne!(
            a,
            annotation_reference(d.clone(), "x/resume-grace", Some("7"))
        );
        assert_ne!(a, annotation_reference(d, "x/tickets.max", Some("8")));
    }
}
