//! The Kubernetes wing: watches Deployments, Pods and policy ConfigMaps and
//! turns them into apps, pod events and policy versions; creates and
//! deletes autoscaled pods; records Events. Nothing outside this folder
//! talks to the Kubernetes API.
//!
//! - [`annotations`]: k8sTicket's labels and annotations (pure).
//! - [`pods`]: what a Pod object means to an app (pure).
//! - [`controller`]: the state machine that applies watch events to the apps.
//! - [`provider`]: the pod provider (autoscaled pods from the Deployment's template).
//! - [`policies`]: policy components from ConfigMaps, validated and hot-swapped.
//! - [`policy_parts`]: a component too large for one ConfigMap, in parts (pure).
//! - [`events`]: Kubernetes Events, written in the background.
//! - [`health`]: what waits for the API during an outage (logged once).
//! - [`leader`]: the Lease that elects the one replica that scales.
//! - [`retry`]: which API errors to retry, and the backoffs.
//! - [`namespace`]: which namespaces to watch.

pub mod annotations;
pub mod controller;
pub mod events;
pub mod health;
pub mod leader;
pub mod namespace;
pub mod pods;
pub mod policies;
pub mod policy_parts;
pub mod provider;
pub mod retry;
