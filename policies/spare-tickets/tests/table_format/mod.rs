//! Reads `cases.toml`, the default policy's table of states and decisions,
//! for the policy's native test (`tests/table.rs`).
//!
//! The file is written in the case format of `wicket policy test`
//! (documented in `examples/policy-cases.toml`, parsed by the host in
//! `crates/policy-runtime/src/cases.rs`). This module reads the subset the table uses
//! — settings, waiting, pods by name with phase, tickets, capacity,
//! autoscaled and idle time, and the expected decisions — and gives the pods
//! ids the way the host does (neither positions nor in list order), so that
//! the native test needs nothing but serde and toml and does not depend on
//! the host. Keys it does not know (clock, arrivals, …) are refused: this
//! policy's table does not use them.

use serde::Deserialize;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<CaseDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDef {
    name: String,
    #[serde(default)]
    waiting: u32,
    settings: CaseSettings,
    pods: Vec<PodDef>,
    expect_assign: String,
    expect_create: u32,
    expect_delete: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodDef {
    name: String,
    phase: CasePhase,
    #[serde(default)]
    tickets: u32,
    capacity: u32,
    #[serde(default)]
    autoscaled: bool,
    /// Whole seconds written like `"60s"` (the table uses seconds only).
    idle: Option<String>,
}

/// One state and the decisions the policy must take in it.
pub struct Case {
    /// Unique, says what the case shows.
    pub name: String,
    /// Users in the waiting queue.
    pub waiting: u32,
    /// The app's settings.
    pub settings: CaseSettings,
    /// Pods in the order the host sends them.
    pub pods: Vec<CasePod>,
    /// The pod that gets the next ticket; None when the user must wait.
    pub expect_assign: Option<u32>,
    /// Pods to create.
    pub expect_create: u32,
    /// Ids to delete, in the order the policy returns them.
    pub expect_delete: Vec<u32>,
}

/// An app's settings as the snapshot carries them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSettings {
    /// tickets.max
    pub tickets_max: u32,
    /// tickets.spare
    pub tickets_spare: u32,
    /// pods.max
    pub pods_max: u32,
    /// pods.cooldown in seconds
    pub cooldown_seconds: u32,
    /// The opaque policy configuration.
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "part of the format: the host passes it on, the native test of a policy that ignores it does not read it"
    )]
    pub config: String,
}

/// One pod of a case.
pub struct CasePod {
    /// The id the host would give it.
    pub id: u32,
    /// Tickets the pod can hold.
    pub capacity: u32,
    /// Tickets held.
    pub tickets: u32,
    /// `starting`, `ready` or `draining`.
    pub phase: CasePhase,
    /// Created by wicket.
    pub autoscaled: bool,
    /// Whole seconds since the pod last held a ticket.
    pub idle_seconds: u32,
}

/// A pod's phase; any other word is a parse error.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CasePhase {
    /// Being created or booting.
    Starting,
    /// Ready for tickets.
    Ready,
    /// No new tickets.
    Draining,
}

fn case(def: CaseDef) -> Case {
    let n = def.pods.len() as u32;
    // The host's ids (crates/policy-runtime/src/cases.rs): descending from the first.
    let id_of = |i: usize| 100 + 10 * (n - 1 - i as u32);
    let by_name = |name: &str| -> u32 {
        match def.pods.iter().position(|p| p.name == name) {
            Some(i) => id_of(i),
            None => panic!("case {:?}: no pod is named {name:?}", def.name),
        }
    };
    let pods = def
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| CasePod {
            id: id_of(i),
            capacity: p.capacity,
            tickets: p.tickets,
            phase: p.phase,
            autoscaled: p.autoscaled,
            idle_seconds: p.idle.as_deref().map_or(0, |t| {
                match t.strip_suffix('s').and_then(|s| s.parse().ok()) {
                    Some(s) => s,
                    None => panic!("case {:?}: idle {t:?} is not like \"60s\"", def.name),
                }
            }),
        })
        .collect();
    let expect_assign = (def.expect_assign != "none").then(|| by_name(&def.expect_assign));
    let expect_delete = def.expect_delete.iter().map(|n| by_name(n)).collect();
    Case {
        name: def.name.clone(),
        waiting: def.waiting,
        pods,
        expect_assign,
        expect_create: def.expect_create,
        expect_delete,
        settings: def.settings,
    }
}

/// The cases of `cases.toml`; panics with the offending line if the file
/// does not parse.
pub fn cases() -> Vec<Case> {
    match toml::from_str::<Table>(include_str!("../cases.toml")) {
        Ok(table) => table.case.into_iter().map(case).collect(),
        // Display, unlike Debug, shows the offending line instead of the file.
        Err(error) => panic!("cases.toml: {error}"),
    }
}
