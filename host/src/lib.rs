//! wicket: a ticket proxy for stateful web apps with WebAssembly policies.
//!
//! Data flows one way: pod events and user requests change the per-app
//! [`state`]; the state is summarised into a snapshot; the [`policy`] turns it
//! into a decision; the [`app`] checks it and acts through a [`provider`].
//! The [`proxy`] serves users and never talks to Kubernetes.
//!
//! The pure state and the policy runtime are crates of their own
//! (`crates/state`, `crates/policy-runtime`), shared with the simulator
//! (`crates/simulator`, behind `wicket simulate`); they are re-exported here
//! under the names the host's modules use.

pub mod admin;
pub mod app;
pub mod app_ports;
pub mod apps;
pub mod config;
pub mod demo;
pub mod demo_app;
pub mod html;
pub mod kube;
pub mod leadership;
pub mod metrics;
pub mod policy_check;
pub mod policy_configmap;
pub mod policy_new;
pub mod policy_test;
pub mod provider;
pub mod proxy;
pub mod rules;
pub mod run;
pub mod session_log;
pub mod store;
pub mod task;

pub use wicket_policy_runtime as policy;
pub use wicket_simulator as simulate;
pub use wicket_state as state;
pub use wicket_state::duration;
