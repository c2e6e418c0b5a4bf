//! Replays `cases.toml`, the policy's table of states and decisions, against
//! the decision logic. The host replays the same file through the compiled
//! component, so the file's format is part of the contract between the two.

use serde::Deserialize;
use wicket_policy_spare_tickets::logic::{self, Phase, Pod, Settings, Snapshot};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    waiting: u32,
    settings: CaseSettings,
    pods: Vec<CasePod>,
    expect_assign: Option<u32>,
    expect_create: u32,
    expect_delete: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSettings {
    tickets_max: u32,
    tickets_spare: u32,
    pods_max: u32,
    cooldown_seconds: u32,
    #[expect(dead_code, reason = "part of the format; this policy ignores it")]
    config: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePod {
    id: u32,
    capacity: u32,
    tickets: u32,
    phase: CasePhase,
    autoscaled: bool,
    idle_seconds: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum CasePhase {
    Starting,
    Ready,
    Draining,
}

impl From<&CasePod> for Pod {
    fn from(pod: &CasePod) -> Self {
        Pod {
            id: pod.id,
            capacity: pod.capacity,
            tickets: pod.tickets,
            phase: match pod.phase {
                CasePhase::Starting => Phase::Starting,
                CasePhase::Ready => Phase::Ready,
                CasePhase::Draining => Phase::Draining,
            },
            autoscaled: pod.autoscaled,
            idle_seconds: pod.idle_seconds,
        }
    }
}

fn cases() -> Vec<Case> {
    match toml::from_str::<Table>(include_str!("cases.toml")) {
        Ok(table) => table.case,
        // Display, unlike Debug, shows the offending line instead of the file.
        Err(error) => panic!("cases.toml: {error}"),
    }
}

#[test]
fn every_case_gets_its_expected_decisions() {
    let mut failures = Vec::new();
    for case in cases() {
        let pods: Vec<Pod> = case.pods.iter().map(Pod::from).collect();
        let snapshot = Snapshot {
            settings: Settings {
                tickets_max: case.settings.tickets_max,
                tickets_spare: case.settings.tickets_spare,
                pods_max: case.settings.pods_max,
                cooldown_seconds: case.settings.cooldown_seconds,
            },
            pods: &pods,
            waiting: case.waiting,
        };
        let assigned = logic::assign(&snapshot);
        let scaled = logic::scale(&snapshot);
        let expected = logic::ScaleDecision {
            create: case.expect_create,
            delete: case.expect_delete,
        };
        if assigned != case.expect_assign || scaled != expected {
            failures.push(format!(
                "{}: assign {assigned:?} (expected {:?}), scale {scaled:?} (expected {expected:?})",
                case.name, case.expect_assign,
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_is_substantial_and_its_names_are_unique() {
    let cases = cases();
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|case| case.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "duplicate case names");
}
