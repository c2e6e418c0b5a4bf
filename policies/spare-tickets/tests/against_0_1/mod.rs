//! One snapshot in both forms, the SDK's (what this policy's logic reads)
//! and the frozen 0.1 logic's (`[u32; 6]` words per pod, no age), and the
//! check that both decide alike. Shared by `tests/baseline.rs` and
//! `benches/decide.rs`, each of which declares the `baseline` module (the
//! 0.1 logic) at its root.

use wicket_policy_sdk::{Pod, Snapshot};
use wicket_policy_spare_tickets::logic;

use crate::baseline;

/// The settings and the queue length that both forms carry.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub tickets_max: u32,
    pub tickets_spare: u32,
    pub pods_max: u32,
    pub cooldown_seconds: u32,
    pub waiting: u32,
}

/// The same pods and settings for both logics.
pub struct Pair {
    /// The SDK's snapshot.
    pub sdk: Snapshot,
    words: Vec<[u32; 6]>,
    settings: Settings,
}

impl Pair {
    /// Both forms of `pods` under `settings`.
    pub fn new(settings: Settings, pods: &[Pod]) -> Self {
        let sdk = Snapshot::builder()
            .tickets_max(settings.tickets_max)
            .tickets_spare(settings.tickets_spare)
            .pods_max(settings.pods_max)
            .cooldown_seconds(settings.cooldown_seconds)
            .pods(pods.iter().copied())
            .waiting(settings.waiting)
            .build();
        // 0.1's six words are the first six of 0.2's seven (no age).
        let words = pods
            .iter()
            .map(|pod| {
                let [id, capacity, tickets, phase, autoscaled, idle, _age] = pod.to_words();
                [id, capacity, tickets, phase, autoscaled, idle]
            })
            .collect();
        Self {
            sdk,
            words,
            settings,
        }
    }

    /// The 0.1 logic's snapshot (it borrows the pods' words).
    pub fn old(&self) -> baseline::Snapshot<'_, [u32; 6]> {
        let s = &self.settings;
        baseline::Snapshot {
            settings: baseline::Settings {
                tickets_max: s.tickets_max,
                tickets_spare: s.tickets_spare,
                pods_max: s.pods_max,
                cooldown_seconds: s.cooldown_seconds,
            },
            pods: &self.words,
            waiting: s.waiting,
        }
    }

    /// Panics, naming `what`, unless both logics assign and scale alike.
    pub fn assert_same_decisions(&self, what: &str) {
        let old = self.old();
        assert_eq!(
            logic::assign(&self.sdk),
            baseline::assign(&old),
            "{what}: assign"
        );
        let (new, was) = (logic::scale(&self.sdk), baseline::scale(&old));
        assert_eq!(
            (new.create, &new.delete),
            (was.create, &was.delete),
            "{what}: scale"
        );
    }
}
