//! The SDK rewrite decides exactly as the 0.1 logic did
//! (`policies/testing/contract-0.1/src/logic.rs`, kept verbatim): both are run on many
//! generated snapshots, from tiny and extreme to a few hundred pods.

// The frozen 0.1 logic: the one copy, which the 0.1 test component builds.
#[path = "../../testing/contract-0.1/src/logic.rs"]
#[allow(dead_code, reason = "the baseline is kept verbatim")]
mod baseline;

mod against_0_1;

use against_0_1::{Pair, Settings};
use wicket_policy_sdk::{Phase, Pod};

/// A small deterministic generator (SplitMix64), so that a failure
/// reproduces; a test-only dependency would do no more.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Mostly small numbers, sometimes the extremes.
    fn small(&mut self, max: u32) -> u32 {
        match self.next() % 20 {
            0 => u32::MAX,
            1 => 0,
            _ => (self.next() % u64::from(max + 1)) as u32,
        }
    }
}

#[test]
fn the_sdk_logic_decides_as_the_0_1_logic_on_generated_snapshots() {
    let mut rng = Rng(18);
    for round in 0..5_000 {
        let pod_count = if round % 100 == 0 {
            300
        } else {
            (rng.next() % 12) as u32
        };
        let pods: Vec<Pod> = (0..pod_count)
            .map(|i| Pod {
                // Ids not in order and not positions, as a host sends them.
                id: i.wrapping_mul(7919) ^ 5,
                capacity: rng.small(4),
                tickets: rng.small(5),
                phase: Phase::from_word((rng.next() % 4) as u32),
                autoscaled: !rng.next().is_multiple_of(4),
                idle_seconds: rng.small(40),
                age_seconds: rng.small(100),
            })
            .collect();
        let settings = Settings {
            tickets_max: rng.small(4),
            tickets_spare: rng.small(6),
            pods_max: rng.small(20),
            cooldown_seconds: rng.small(30),
            waiting: rng.small(5),
        };
        Pair::new(settings, &pods).assert_same_decisions(&format!("round {round}"));
    }
}
