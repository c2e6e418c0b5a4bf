//! Where pods come from. The policy → actions path is the same for every
//! provider: the local one (processes on loopback, for `wicket demo`) and
//! the Kubernetes one (in the Kubernetes wing, [`crate::kube::provider`]).

pub mod local;

use std::future::Future;
use std::pin::Pin;

use crate::state::PodInfo;

/// A boxed future, so providers can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A provider operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} for app {app}: {reason}")]
pub struct ProviderError {
    /// What was attempted (`create pod`, `delete pod x`).
    pub action: String,
    /// The app.
    pub app: String,
    /// Why it failed.
    pub reason: String,
}

/// A change to a pod, reported by the provider's pod source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEvent {
    /// A pod appeared or changed.
    Upsert {
        /// The app it belongs to.
        app: String,
        /// What is known about it.
        pod: PodInfo,
    },
    /// A pod is gone (or must not be used any more).
    Gone {
        /// The app it belonged to.
        app: String,
        /// The pod's name.
        name: String,
    },
}

/// Creates and deletes an app's autoscaled pods.
pub trait PodProvider: Send + Sync + 'static {
    /// Creates one autoscaled pod and returns it (usually still starting).
    fn create<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<PodInfo, ProviderError>>;

    /// Deletes an autoscaled pod this provider created.
    fn delete<'a>(&'a self, app: &'a str, pod: &'a str)
    -> BoxFuture<'a, Result<(), ProviderError>>;
}
