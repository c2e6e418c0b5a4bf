//! The format of `cases.toml`, the default policy's table of states and
//! decisions. Shared by the policy's native test (`tests/table.rs`) and the
//! host's replay through the compiled component
//! (`host/tests/policy_table.rs`, via `#[path]`), so the two always read the
//! file the same way; it needs nothing but serde and toml, so neither crate
//! depends on the other.

use serde::Deserialize;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<Case>,
}

/// One state and the decisions the policy must take in it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique, says what the case shows.
    pub name: String,
    /// Users in the waiting queue.
    pub waiting: u32,
    /// The app's settings.
    pub settings: CaseSettings,
    /// Pods in name order.
    pub pods: Vec<CasePod>,
    /// The pod that gets the next ticket; left out when the user must wait.
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
    #[allow(
        dead_code,
        reason = "part of the format: the host passes it on, the native test of a policy that ignores it does not read it"
    )]
    pub config: String,
}

/// One pod of a case.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasePod {
    /// Stable id (deliberately not the pod's position).
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

/// The cases of `cases.toml`; panics with the offending line if the file
/// does not parse.
pub fn cases() -> Vec<Case> {
    match toml::from_str::<Table>(include_str!("../cases.toml")) {
        Ok(table) => table.case,
        // Display, unlike Debug, shows the offending line instead of the file.
        Err(error) => panic!("cases.toml: {error}"),
    }
}
