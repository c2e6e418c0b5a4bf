//! wicket: a ticket proxy for stateful web apps with WebAssembly policies.
//!
//! Data flows one way: pod events and user requests change the per-app
//! [`state`]; the state is summarised into a snapshot; the [`policy`] turns it
//! into a decision; the [`app`] checks it and acts through a [`provider`].
//! The [`proxy`] serves users and never talks to Kubernetes.

pub mod admin;
pub mod app;
pub mod app_ports;
pub mod apps;
pub mod config;
pub mod demo;
pub mod demo_app;
pub mod duration;
pub mod html;
pub mod kube;
pub mod metrics;
pub mod policy;
pub mod policy_check;
pub mod policy_new;
pub mod policy_test;
pub mod provider;
pub mod proxy;
pub mod rules;
pub mod run;
pub mod session_log;
pub mod simulate;
pub mod state;
pub mod store;
pub mod task;
