//! Replays `cases.toml`, the policy's table of states and decisions, against
//! the decision logic through the SDK's snapshot (pods packed into bytes and
//! decoded as the component decodes the host's). The host replays the same
//! file through the compiled component, so the file's format
//! (`table_format`, shared with the host's test) is part of the contract
//! between the two.

mod table_format;

use table_format::{Case, CasePhase, CasePod, cases};
use wicket_policy_sdk::{Phase, Pod, ScaleDecision, Snapshot};
use wicket_policy_spare_tickets::logic;

fn pod(pod: &CasePod) -> Pod {
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
        age_seconds: 0,
    }
}

fn snapshot(case: &Case) -> Snapshot {
    Snapshot::builder()
        .tickets_max(case.settings.tickets_max)
        .tickets_spare(case.settings.tickets_spare)
        .pods_max(case.settings.pods_max)
        .cooldown_seconds(case.settings.cooldown_seconds)
        .config(case.settings.config.as_str())
        .pods(case.pods.iter().map(pod))
        .waiting(case.waiting)
        .build()
}

#[test]
fn every_case_gets_its_expected_decisions() {
    let mut failures = Vec::new();
    for case in cases() {
        let snapshot = snapshot(&case);
        let assigned = logic::assign(&snapshot);
        let scaled = logic::scale(&snapshot);
        let expected = ScaleDecision {
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
