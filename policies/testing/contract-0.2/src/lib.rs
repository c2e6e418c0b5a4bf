//! A test policy built against contract `wicket:policy@0.2.0` (`wit/`) with
//! plain wit-bindgen, for the host's tests of the 0.2 contract.
//!
//! With an empty or unknown `settings.config` it decides exactly like the
//! default policy (the frozen copy in `../contract-0.1`, whose logic it
//! compiles in), reading the packed little-endian pod bytes with the stride
//! the host sends. Otherwise `settings.config` names a mode:
//!
//! - `strict`: decides like the default, but traps unless the snapshot is
//!   complete: a clock after 2001, 60 per-minute and 168 per-hour arrival
//!   counts, at least 7 words per pod, whole pods, and totals that agree
//!   with the pods.
//! - `echo`: `assign` decides like the default; `scale` creates nothing and
//!   "deletes" the values it received, so a test can read what arrived in the
//!   guest: unix seconds (low, high word), UTC offset (as u32), pod words,
//!   arrival list lengths, sums and newest counts, the observed times
//!   (`u32::MAX` for none), the longest wait, the seven totals, waiting, and
//!   then every pod's age. (The host's invariants would refuse this; tests
//!   call the instance directly.)
//!
//! Only WebAssembly builds have the exports (native linkers reject their
//! names); natively the crate is empty.

/// The default policy's decisions (see `contract-0.1`).
#[cfg(target_family = "wasm")]
#[path = "../../contract-0.1/src/logic.rs"]
mod logic;

#[cfg(target_family = "wasm")]
mod component {
    use crate::logic::{self, Phase, Pod, ToPod};
    use bindings::exports::wicket::policy::decide::Guest;
    use bindings::wicket::policy::types::{ScaleDecision, Snapshot};

    #[allow(unsafe_code, reason = "wit-bindgen's generated ABI glue")]
    mod bindings {
        wit_bindgen::generate!({ path: "../../../wit", world: "policy" });
        use super::Contract02;
        export!(Contract02);
    }

    struct Contract02;

    /// One packed pod: its first seven little-endian words.
    #[derive(Clone, Copy)]
    struct Packed([u32; 7]);

    impl ToPod for Packed {
        fn to_pod(&self) -> Pod {
            let [id, capacity, tickets, phase, autoscaled, idle_seconds, _age] = self.0;
            Pod {
                id,
                capacity,
                tickets,
                phase: match phase {
                    0 => Phase::Starting,
                    1 => Phase::Ready,
                    _ => Phase::Draining,
                },
                autoscaled: autoscaled != 0,
                idle_seconds,
            }
        }
    }

    /// A pod as 0.2 packs it when the stride is 7 words: read in place.
    impl ToPod for [u8; 28] {
        fn to_pod(&self) -> Pod {
            let mut w = [0u32; 7];
            for (word, b) in w.iter_mut().zip(self.as_chunks::<4>().0) {
                *word = u32::from_le_bytes(*b);
            }
            Packed(w).to_pod()
        }
    }

    /// The pods, read with the host's stride (extra words ignored).
    fn pods(s: &Snapshot) -> Vec<Packed> {
        let stride = (s.pod_words as usize).max(7) * 4;
        s.pods
            .chunks_exact(stride)
            .map(|b| {
                let mut w = [0u32; 7];
                for (i, word) in w.iter_mut().enumerate() {
                    *word = u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
                }
                Packed(w)
            })
            .collect()
    }

    fn decide_on<'a, P: ToPod>(s: &Snapshot, pods: &'a [P]) -> logic::Snapshot<'a, P> {
        logic::Snapshot {
            settings: logic::Settings {
                tickets_max: s.settings.tickets_max,
                tickets_spare: s.settings.tickets_spare,
                pods_max: s.settings.pods_max,
                cooldown_seconds: s.settings.cooldown_seconds,
            },
            pods,
            waiting: s.waiting,
        }
    }

    /// Traps (panics) unless the snapshot is complete and consistent.
    fn check(s: &Snapshot, pods: &[Packed]) {
        assert!(s.clock.unix_seconds > 1_000_000_000, "no clock");
        assert_eq!(s.arrivals.per_minute.len(), 60, "per-minute arrivals");
        assert_eq!(s.arrivals.per_hour.len(), 168, "per-hour arrivals");
        assert!(s.pod_words >= 7, "pod words");
        assert_eq!(s.pods.len(), pods.len() * s.pod_words as usize * 4, "whole pods");
        let t = &s.totals;
        let count = |f: &dyn Fn(&Pod) -> bool| pods.iter().filter(|p| f(&p.to_pod())).count() as u32;
        assert_eq!(t.ready_pods, count(&|p| p.phase == Phase::Ready), "ready");
        assert_eq!(t.starting_pods, count(&|p| p.phase == Phase::Starting), "starting");
        assert_eq!(t.draining_pods, count(&|p| p.phase == Phase::Draining), "draining");
        assert_eq!(t.autoscaled_pods, count(&|p| p.autoscaled), "autoscaled");
        let sum = |f: &dyn Fn(&Pod) -> u32| pods.iter().map(|p| f(&p.to_pod())).sum::<u32>();
        assert_eq!(t.tickets_in_use, sum(&|p| p.tickets), "tickets");
        assert_eq!(
            t.free_tickets,
            sum(&|p| if p.phase == Phase::Ready { p.capacity.saturating_sub(p.tickets) } else { 0 }),
            "free"
        );
        assert_eq!(
            t.starting_tickets,
            sum(&|p| if p.phase == Phase::Starting { p.capacity } else { 0 }),
            "starting tickets"
        );
    }

    fn echo(s: &Snapshot, pods: &[Packed]) -> Vec<u32> {
        let none = |v: Option<u32>| v.unwrap_or(u32::MAX);
        let (m, h) = (&s.arrivals.per_minute, &s.arrivals.per_hour);
        let o = &s.observed;
        let t = &s.totals;
        let mut out = vec![
            s.clock.unix_seconds as u32,
            (s.clock.unix_seconds >> 32) as u32,
            s.clock.utc_offset_seconds as u32,
            s.pod_words,
            m.len() as u32,
            h.len() as u32,
            m.iter().sum(),
            h.iter().sum(),
            m.last().copied().unwrap_or(u32::MAX),
            h.last().copied().unwrap_or(u32::MAX),
            none(o.startup_median_ms),
            none(o.startup_p90_ms),
            none(o.session_median_seconds),
            none(o.session_p90_seconds),
            o.longest_wait_ms,
            t.ready_pods,
            t.starting_pods,
            t.draining_pods,
            t.autoscaled_pods,
            t.tickets_in_use,
            t.free_tickets,
            t.starting_tickets,
            s.waiting,
        ];
        out.extend(pods.iter().map(|p| p.0[6]));
        out
    }

    impl Guest for Contract02 {
        fn assign(snapshot: Snapshot) -> Option<u32> {
            // The fast path: 7 words per pod, read in place (no copy).
            if snapshot.pod_words == 7 && snapshot.settings.config.is_empty() {
                let in_place = snapshot.pods.as_chunks::<28>().0;
                return logic::assign(&decide_on(&snapshot, in_place));
            }
            let pods = pods(&snapshot);
            if snapshot.settings.config == "strict" {
                check(&snapshot, &pods);
            }
            logic::assign(&decide_on(&snapshot, &pods))
        }

        fn scale(snapshot: Snapshot) -> ScaleDecision {
            if snapshot.pod_words == 7 && snapshot.settings.config.is_empty() {
                let in_place = snapshot.pods.as_chunks::<28>().0;
                let logic::ScaleDecision { create, delete } =
                    logic::scale(&decide_on(&snapshot, in_place));
                return ScaleDecision { create, delete };
            }
            let pods = pods(&snapshot);
            match snapshot.settings.config.as_str() {
                "echo" => {
                    return ScaleDecision {
                        create: 0,
                        delete: echo(&snapshot, &pods),
                    };
                }
                "strict" => check(&snapshot, &pods),
                _ => {}
            }
            let logic::ScaleDecision { create, delete } = logic::scale(&decide_on(&snapshot, &pods));
            ScaleDecision { create, delete }
        }
    }
}
