//! Replays the default policy's decision table
//! (`policies/spare-tickets/tests/cases.toml`, also checked natively) through
//! the compiled component, as the host runs it.

// The table's format, shared with the policy's own native test.
#[path = "../../policies/spare-tickets/tests/table_format/mod.rs"]
mod table_format;

use table_format::{Case, CasePhase, cases};
use wicket::policy::bindings::Snapshot as WitSnapshot;
use wicket::policy::{self, Limits, PolicyEngine, invariants};
use wicket::state::{Phase, SnapPod, Snapshot};

fn snapshot(c: &Case) -> Snapshot {
    Snapshot {
        tickets_max: c.settings.tickets_max,
        tickets_spare: c.settings.tickets_spare,
        pods_max: c.settings.pods_max,
        cooldown_seconds: c.settings.cooldown_seconds,
        config: c.settings.config.clone(),
        waiting: c.waiting,
        pods: c
            .pods
            .iter()
            .map(|p| SnapPod {
                id: p.id,
                capacity: p.capacity,
                tickets: p.tickets,
                phase: match p.phase {
                    CasePhase::Starting => Phase::Starting,
                    CasePhase::Ready => Phase::Ready,
                    CasePhase::Draining => Phase::Draining,
                },
                autoscaled: p.autoscaled,
                idle_seconds: p.idle_seconds,
            })
            .collect(),
    }
}

#[test]
fn compiled_default_policy_matches_the_table() {
    let cases = cases();
    assert!(cases.len() >= 20, "the table should cover the behaviour");
    let engine = PolicyEngine::new(Limits::default()).expect("engine");
    let default = policy::load_default(&engine).expect("the embedded default loads");
    let mut live = default.instantiate(&engine).expect("instance");
    let mut buf = WitSnapshot::empty();
    let mut failures = Vec::new();
    for case in &cases {
        let snap = snapshot(case);
        buf.fill_from(&snap);
        let assign = live.assign(&buf).expect("assign answers");
        let scale = live.scale(&buf).expect("scale answers");
        if assign != case.expect_assign
            || scale.create != case.expect_create
            || scale.delete != case.expect_delete
        {
            failures.push(format!(
                "{:?}: got assign {assign:?}, create {}, delete {:?}; want {:?}, {}, {:?}",
                case.name,
                scale.create,
                scale.delete,
                case.expect_assign,
                case.expect_create,
                case.expect_delete
            ));
        }
        // Whatever the table says, the host's invariants must hold.
        invariants::check_assign(&snap, assign).unwrap_or_else(|v| panic!("{:?}: {v}", case.name));
        invariants::check_scale(&snap, &scale).unwrap_or_else(|v| panic!("{:?}: {v}", case.name));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
