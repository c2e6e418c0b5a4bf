//! Host bindings of both contract versions the host speaks, generated from
//! `wit/policy.wit` (0.2, native) and `wit/v0.1/policy.wit` (0.1, through
//! this adapter), and the conversions from the host's pure snapshot into
//! each version's guest snapshot.
//!
//! The guest-snapshot types are buffers: each running instance keeps one of
//! its version and refills it call after call ([`v02::Snapshot::fill_from`],
//! [`v01::Snapshot::fill_from`]), so the fast path reuses its allocations.

use wicket_state as state;

/// What the two versions share: their `settings` record and `scale-decision`
/// are the same in both WIT files, but bindgen makes a distinct Rust type
/// of each per version, with no trait in common to write one generic
/// function over; so this writes the one piece of code into each version's
/// module (the names resolve to that module's types).
macro_rules! same_in_both_versions {
    () => {
        impl Settings {
            /// Settings with zeros and no config, to be refilled.
            fn empty() -> Self {
                Settings {
                    tickets_max: 0,
                    tickets_spare: 0,
                    pods_max: 0,
                    cooldown_seconds: 0,
                    config: String::new(),
                }
            }

            /// Refills `self` from the host's snapshot; the config string
            /// is copied only when it changed (it rarely does).
            fn fill_from(&mut self, s: &wicket_state::Snapshot) {
                self.tickets_max = s.tickets_max;
                self.tickets_spare = s.tickets_spare;
                self.pods_max = s.pods_max;
                self.cooldown_seconds = s.cooldown_seconds;
                if self.config != s.config {
                    self.config.clone_from(&s.config);
                }
            }
        }

        impl From<ScaleDecision> for wicket_state::ScaleDecision {
            fn from(d: ScaleDecision) -> Self {
                wicket_state::ScaleDecision {
                    create: d.create,
                    delete: d.delete,
                }
            }
        }
    };
}

/// Contract `wicket:policy@0.2.0`, the one the host speaks natively.
pub mod v02 {
    mod generated {
        // Generated code documents itself from the WIT file's comments only
        // partially.
        #![allow(missing_docs)]
        wasmtime::component::bindgen!({
            path: "../../wit",
            world: "policy",
        });
    }

    pub use generated::wicket::policy::types::{
        Arrivals, Clock, LogLevel, Observed, ScaleDecision, Settings, Snapshot, Totals,
    };
    pub use generated::{Policy, PolicyPre, wicket};

    /// Words per pod in the packed `snapshot.pods` bytes.
    pub const POD_WORDS: usize = 7;

    /// Bytes per pod in the packed `snapshot.pods` bytes.
    const POD_BYTES: usize = POD_WORDS * 4;

    impl Snapshot {
        /// An empty snapshot whose buffers can be refilled call after call.
        pub fn empty() -> Self {
            Snapshot {
                settings: Settings::empty(),
                clock: Clock {
                    unix_seconds: 0,
                    utc_offset_seconds: 0,
                },
                pod_words: POD_WORDS as u32,
                pods: Vec::new(),
                totals: Totals {
                    ready_pods: 0,
                    starting_pods: 0,
                    draining_pods: 0,
                    autoscaled_pods: 0,
                    tickets_in_use: 0,
                    free_tickets: 0,
                    starting_tickets: 0,
                },
                waiting: 0,
                arrivals: Arrivals {
                    per_minute: Vec::new(),
                    per_hour: Vec::new(),
                },
                observed: Observed {
                    startup_median_ms: None,
                    startup_p90_ms: None,
                    session_median_seconds: None,
                    session_p90_seconds: None,
                    longest_wait_ms: 0,
                },
            }
        }

        /// Refills `self` from the host's snapshot, reusing allocations.
        pub fn fill_from(&mut self, s: &wicket_state::Snapshot) {
            self.settings.fill_from(s);
            self.clock.unix_seconds = s.clock.unix_seconds;
            self.clock.utc_offset_seconds = s.clock.utc_offset_seconds;
            self.waiting = s.waiting;
            self.pod_words = POD_WORDS as u32;
            // Packed as the contract says: 7 little-endian words per pod,
            // copied into the guest in one go; the totals in the same pass.
            let mut totals = wicket_state::Totals::default();
            // Sized once, then written in place: no capacity check per pod.
            self.pods.clear();
            self.pods.resize(s.pods.len() * POD_BYTES, 0);
            let (chunks, _) = self.pods.as_chunks_mut::<POD_BYTES>();
            for (bytes, p) in chunks.iter_mut().zip(&s.pods) {
                totals.add(p);
                let words = [
                    p.id,
                    p.capacity,
                    p.tickets,
                    super::phase_number(p.phase),
                    u32::from(p.autoscaled),
                    p.idle_seconds,
                    p.age_seconds,
                ];
                for (chunk, w) in bytes.as_chunks_mut::<4>().0.iter_mut().zip(words) {
                    *chunk = w.to_le_bytes();
                }
            }
            self.totals = Totals {
                ready_pods: totals.ready_pods,
                starting_pods: totals.starting_pods,
                draining_pods: totals.draining_pods,
                autoscaled_pods: totals.autoscaled_pods,
                tickets_in_use: totals.tickets_in_use,
                free_tickets: totals.free_tickets,
                starting_tickets: totals.starting_tickets,
            };
            refill(&mut self.arrivals.per_minute, &s.arrivals_per_minute);
            refill(&mut self.arrivals.per_hour, &s.arrivals_per_hour);
            let o = &s.observed;
            self.observed = Observed {
                startup_median_ms: o.startup_median_ms,
                startup_p90_ms: o.startup_p90_ms,
                session_median_seconds: o.session_median_seconds,
                session_p90_seconds: o.session_p90_seconds,
                longest_wait_ms: o.longest_wait_ms,
            };
        }
    }

    /// Copies `from` into `to` in `to`'s allocation.
    fn refill(to: &mut Vec<u32>, from: &[u32]) {
        to.clear();
        to.extend_from_slice(from);
    }

    same_in_both_versions!();
}

/// Contract `wicket:policy@0.1.0`, spoken through this adapter: the 0.2
/// snapshot without what 0.1 does not know (clock, arrivals, observed times,
/// totals, pod ages), pods packed as a list of 6 words.
pub mod v01 {
    mod generated {
        // Generated code documents itself from the WIT file's comments only
        // partially.
        #![allow(missing_docs)]
        wasmtime::component::bindgen!({
            path: "../../wit/v0.1",
            world: "policy",
        });
    }

    pub use generated::wicket::policy::types::{LogLevel, ScaleDecision, Settings, Snapshot};
    pub use generated::{Policy, PolicyPre, wicket};

    /// Words per pod in the packed `snapshot.pods` list.
    pub const POD_WORDS: usize = 6;

    impl Snapshot {
        /// An empty snapshot whose buffers can be refilled call after call.
        pub fn empty() -> Self {
            Snapshot {
                settings: Settings::empty(),
                pods: Vec::new(),
                waiting: 0,
            }
        }

        /// Refills `self` from the host's snapshot, reusing allocations.
        pub fn fill_from(&mut self, s: &wicket_state::Snapshot) {
            self.settings.fill_from(s);
            self.waiting = s.waiting;
            // Packed as the 0.1 contract says: 6 words per pod.
            self.pods.clear();
            self.pods.reserve(s.pods.len() * POD_WORDS);
            for p in &s.pods {
                self.pods.extend_from_slice(&[
                    p.id,
                    p.capacity,
                    p.tickets,
                    super::phase_number(p.phase),
                    u32::from(p.autoscaled),
                    p.idle_seconds,
                ]);
            }
        }
    }

    same_in_both_versions!();
}

/// The numbers of `pod-phase` in both WIT files.
fn phase_number(phase: state::Phase) -> u32 {
    match phase {
        state::Phase::Starting => 0,
        state::Phase::Ready => 1,
        state::Phase::Draining => 2,
    }
}

/// A contract version the host speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `wicket:policy@0.1.x`, through the adapter.
    V0_1,
    /// `wicket:policy@0.2.x`, natively.
    V0_2,
}

impl Contract {
    /// The version the host's WIT file has (`0.1.0`, `0.2.0`).
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => LEGACY_CONTRACT_VERSION,
            Contract::V0_2 => CONTRACT_VERSION,
        }
    }

    /// The version a component exporting `found` speaks, if the host speaks
    /// it (same major; for 0.x the same minor).
    pub fn for_version(found: &str) -> Option<Self> {
        [Contract::V0_2, Contract::V0_1]
            .into_iter()
            .find(|c| compatible(found, c.version()))
    }
}

/// Semver compatibility: same major, and for 0.x the same minor.
pub fn compatible(found: &str, ours: &str) -> bool {
    match (semver::Version::parse(found), semver::Version::parse(ours)) {
        (Ok(f), Ok(o)) => f.major == o.major && (o.major != 0 || f.minor == o.minor),
        _ => false,
    }
}

/// The contract version the host speaks natively.
pub const CONTRACT_VERSION: &str = "0.2.0";
/// The older contract version the host still speaks, through an adapter.
pub const LEGACY_CONTRACT_VERSION: &str = "0.1.0";
/// The package the contract lives in.
pub const CONTRACT_PACKAGE: &str = "wicket:policy";
/// The exported interface a policy must provide.
pub const DECIDE_INTERFACE: &str = "wicket:policy/decide";

#[cfg(test)]
mod tests {
    use super::*;
    use wicket_state::{Clock, ObservedTimes, Phase, SnapPod, Snapshot};

    #[test]
    fn version_compatibility() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("garbage", "0.1.0"));
        assert_eq!(Contract::for_version("0.2.3"), Some(Contract::V0_2));
        assert_eq!(Contract::for_version("0.1.0"), Some(Contract::V0_1));
        assert_eq!(Contract::for_version("0.3.0"), None);
        assert_eq!(Contract::for_version("1.0.0"), None);
    }

    fn snapshot() -> Snapshot {
        let pod = |id, tickets, phase, age_seconds| SnapPod {
            id,
            capacity: 2,
            tickets,
            phase,
            autoscaled: id != 0,
            idle_seconds: 7,
            age_seconds,
        };
        Snapshot {
            tickets_max: 2,
            tickets_spare: 1,
            pods_max: 3,
            cooldown_seconds: 10,
            config: "x".into(),
            pods: vec![
                pod(0, 1, Phase::Ready, 100),
                pod(4, 0, Phase::Starting, 3),
                pod(9, 2, Phase::Draining, 0x0102_0304),
            ],
            waiting: 5,
            clock: Clock {
                unix_seconds: 1_796_378_430,
                utc_offset_seconds: -18_000,
            },
            arrivals_per_minute: (0..60).collect(),
            arrivals_per_hour: (0..168).collect(),
            observed: ObservedTimes {
                startup_median_ms: Some(1500),
                startup_p90_ms: Some(4000),
                session_median_seconds: None,
                session_p90_seconds: None,
                longest_wait_ms: 250,
            },
        }
    }

    #[test]
    fn the_02_snapshot_packs_seven_little_endian_words_per_pod() {
        let mut buf = v02::Snapshot::empty();
        buf.fill_from(&snapshot());
        assert_eq!(buf.pod_words, 7);
        assert_eq!(buf.pods.len(), 3 * 7 * 4);
        let words: Vec<u32> = buf
            .pods
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(&words[..7], &[0, 2, 1, 1, 0, 7, 100]);
        assert_eq!(&words[7..14], &[4, 2, 0, 0, 1, 7, 3]);
        assert_eq!(&words[14..], &[9, 2, 2, 2, 1, 7, 0x0102_0304]);
        // Little-endian on every host.
        assert_eq!(&buf.pods[14 * 4 + 24..], &[4, 3, 2, 1]);
        assert_eq!(buf.clock.unix_seconds, 1_796_378_430);
        assert_eq!(buf.clock.utc_offset_seconds, -18_000);
        assert_eq!(buf.arrivals.per_minute.len(), 60);
        assert_eq!(buf.arrivals.per_hour[167], 167);
        assert_eq!(buf.observed.startup_p90_ms, Some(4000));
        assert_eq!(buf.observed.session_median_seconds, None);
        assert_eq!(buf.observed.longest_wait_ms, 250);
        let t = &buf.totals;
        assert_eq!(
            (
                t.ready_pods,
                t.starting_pods,
                t.draining_pods,
                t.autoscaled_pods
            ),
            (1, 1, 1, 2)
        );
        assert_eq!(
            (t.tickets_in_use, t.free_tickets, t.starting_tickets),
            (3, 1, 2)
        );
        assert_eq!(buf.settings.config, "x");
        assert_eq!(buf.waiting, 5);
        // Refilling with fewer pods leaves nothing of the old ones.
        let mut fewer = snapshot();
        fewer.pods.truncate(1);
        buf.fill_from(&fewer);
        assert_eq!(buf.pods.len(), 28);
        assert_eq!(buf.totals.starting_pods, 0);
    }

    #[test]
    fn the_01_snapshot_packs_six_words_per_pod() {
        let mut buf = v01::Snapshot::empty();
        buf.fill_from(&snapshot());
        assert_eq!(
            buf.pods,
            [0, 2, 1, 1, 0, 7, 4, 2, 0, 0, 1, 7, 9, 2, 2, 2, 1, 7]
        );
        assert_eq!(buf.waiting, 5);
        assert_eq!(buf.settings.tickets_spare, 1);
    }

    /// Both versions' settings (written by one macro) carry every field,
    /// and a refill with another config and limits replaces them; both
    /// versions' decisions convert whole.
    #[test]
    fn both_versions_refill_every_setting_and_convert_decisions() {
        let mut s = snapshot();
        let (mut b2, mut b1) = (v02::Snapshot::empty(), v01::Snapshot::empty());
        b2.fill_from(&s);
        b1.fill_from(&s);
        s.config = "y = 1".into();
        s.pods_max = 4;
        s.cooldown_seconds = 0;
        b2.fill_from(&s);
        b1.fill_from(&s);
        let (v2, v1) = (&b2.settings, &b1.settings);
        let want = (2, 1, 4, 0, "y = 1");
        assert_eq!(
            (
                v2.tickets_max,
                v2.tickets_spare,
                v2.pods_max,
                v2.cooldown_seconds,
                v2.config.as_str()
            ),
            want
        );
        assert_eq!(
            (
                v1.tickets_max,
                v1.tickets_spare,
                v1.pods_max,
                v1.cooldown_seconds,
                v1.config.as_str()
            ),
            want
        );
        let want = wicket_state::ScaleDecision {
            create: 2,
            delete: vec![4, 9],
        };
        let d2 = v02::ScaleDecision {
            create: 2,
            delete: vec![4, 9],
        };
        let d1 = v01::ScaleDecision {
            create: 2,
            delete: vec![4, 9],
        };
        assert_eq!(wicket_state::ScaleDecision::from(d2), want);
        assert_eq!(wicket_state::ScaleDecision::from(d1), want);
    }
}
