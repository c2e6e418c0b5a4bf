//! The Kubernetes edge: watches Deployments, Pods and policy ConfigMaps and
//! turns them into apps, pod events and policy versions; records Events.
//!
//! - [`annotations`]: k8sTicket's labels and annotations (pure).
//! - [`pods`]: what a Pod object means to an app (pure).
//! - [`controller`]: the one writer that applies watch events to the apps.
//! - [`policies`]: policy components from ConfigMaps, validated and hot-swapped.
//! - [`events`]: Kubernetes Events, written in the background.
//! - [`retry`]: which API errors to retry, and the backoff.
//! - [`namespace`]: which namespaces to watch.

pub mod annotations;
pub mod controller;
pub mod events;
pub mod namespace;
pub mod pods;
pub mod policies;
pub mod retry;
