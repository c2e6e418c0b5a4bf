//! Kubernetes Events (`events.k8s.io/v1`): what wicket did and what it
//! refused, visible in `kubectl describe` and `kubectl get events`.
//!
//! Publishing never blocks the caller: events go through a bounded queue to
//! one writer task that retries transient API errors (e.g. while the
//! apiserver restarts) and drops events when the queue is full.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::retry::{Backoff, RetrySettings, is_transient};

/// `reportingController` of every event.
pub const REPORTING_CONTROLLER: &str = "wicket.dev/wicket";
/// Events waiting to be written; more are dropped (and logged).
const QUEUE: usize = 1024;
/// An identical event within this time is not recorded again.
const DEDUP: Duration = Duration::from_secs(60);
/// Most bytes of a note (the API's limit is 1 kB).
const MAX_NOTE: usize = 1000;

/// Severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something wicket did.
    Normal,
    /// Something that needs a human.
    Warning,
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Record {
    /// The object it is about (its namespace is the event's).
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
    let (tx, mut rx) = mpsc::channel::<Record>(QUEUE);
    let task = tokio::spawn(async move {
        let mut recent: HashMap<String, Instant> = HashMap::new();
        while let Some(record) = rx.recv().await {
            // The same event again within a minute is noise: write it once.
            let key = format!(
                "{:?}/{}/{}",
                record
                    .regarding
                    .uid
                    .as_ref()
                    .or(record.regarding.name.as_ref()),
                record.reason,
                record.note
            );
            let now = Instant::now();
            recent.retain(|_, at| now.duration_since(*at) < DEDUP);
            if recent.contains_key(&key) {
                tracing::debug!(
                    reason = record.reason,
                    "repeated event not recorded again: {}",
                    record.note
                );
                continue;
            }
            recent.insert(key, now);
            write(&client, &instance, &retry, record).await;
        }
    });
    (EventSink { tx }, task)
}

/// Builds the API object.
pub fn to_event(record: &Record, instance: &str, now: Timestamp) -> Event {
    let ns = record.regarding.namespace.clone();
    let base = record.regarding.name.as_deref().unwrap_or("wicket");
    let mut note = record.note.clone();
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{base}.{:x}", now.as_nanosecond())),
            namespace: ns,
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(record.action.into()),
        reason: Some(record.reason.into()),
        note: Some(note),
        regarding: Some(record.regarding.clone()),
        related: record.related.clone(),
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(instance.chars().take(128).collect()),
        type_: Some(match record.type_ {
            EventType::Normal => "Normal".into(),
            EventType::Warning => "Warning".into(),
        }),
        ..Event::default()
    }
}

async fn write(client: &Client, instance: &str, retry: &RetrySettings, record: Record) {
    let ns = record
        .regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    let event = to_event(&record, instance, Timestamp::now());
    let mut backoff = Backoff::new(retry);
    loop {
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => return,
            Err(e) if is_transient(&e) => match backoff.next_delay() {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    tracing::warn!(reason = record.reason, "giving up recording an event: {e}");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!(reason = record.reason, "cannot record an event: {e}");
                return;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_are_valid_for_the_api() {
        let r = Record {
            regarding: reference("apps/v1", "Deployment", "ns", "shiny", Some("uid-1")),
            related: None,
            type_: EventType::Warning,
            reason: "InvalidAnnotation",
            action: "ParseAnnotations",
            note: "é".repeat(700),
        };
        let e = to_event(
            &r,
            "host-0",
            Timestamp::from_second(1_700_000_000).expect("time"),
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        assert!(
            e.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("shiny."))
        );
        assert!(e.note.as_ref().is_some_and(|n| n.len() <= MAX_NOTE));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(
            e.reporting_controller.as_deref(),
            Some(REPORTING_CONTROLLER)
        );
        assert_eq!(
            e.regarding.and_then(|r| r.kind).as_deref(),
            Some("Deployment")
        );
    }
}
