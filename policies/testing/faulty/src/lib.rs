//! A deliberately misbehaving policy, for the host's fault tests.
//!
//! With an empty or unknown `settings.config` it answers exactly like the
//! default policy (`wicket-policy-spare-tickets`), whose logic it compiles
//! in. Otherwise `settings.config` names the fault to commit:
//!
//! - `trap`: panics, which traps (the `policy` profile aborts on panic).
//! - `loop`: loops forever.
//! - `alloc`: allocates until memory runs out.
//! - `leak`: leaks 64 KiB on every call, then answers sanely (as a
//!   componentize-py component leaks a little): a fresh instance now and
//!   then must keep it going under any memory cap.
//! - `log-spam`: logs 10 000 lines of 2 KB through the host, then answers
//!   sanely.
//! - `assign-full`, `assign` only: the id of the first full or non-ready pod,
//!   or if there is none, the lowest id no pod has.
//! - `assign-unknown`, `assign` only: 4 000 000 000, an id no pod has.
//! - `delete-busy`, `scale` only: deletes every pod holding tickets, or if
//!   none does, every Deployment replica (and creates what the default
//!   policy would).
//! - `overscale`, `scale` only: creates `pods_max + 5` pods.
//! - `spread`, not a fault: `assign` picks the ready pod with the most free
//!   slots (the opposite of the default's packing), so a test can tell which
//!   policy decided.
//!
//! The other call of the `assign`/`scale`-only faults answers sanely.
//!
//! Only WebAssembly builds have the exports (native linkers reject their
//! names); natively the crate is empty.

/// The default policy's decisions, compiled into this component as well.
/// A dependency on its crate would not do: whenever Cargo builds both
/// components in one go, the dependency is that very build, exports included,
/// and two sets of exports of one interface do not link.
#[cfg(target_family = "wasm")]
#[path = "../../../spare-tickets/src/logic.rs"]
mod logic;

#[cfg(target_family = "wasm")]
mod component {
    use crate::logic;
    use bindings::exports::wicket::policy::decide::Guest;
    use bindings::wicket::policy::host::log;
    use bindings::wicket::policy::types::{LogLevel, ScaleDecision, Snapshot};
    use std::hint::black_box;
    use wicket_policy_sdk::{Phase, Pod};

    #[allow(unsafe_code, reason = "wit-bindgen's generated ABI glue")]
    mod bindings {
        wit_bindgen::generate!({ path: "../../../wit/v0.1", world: "policy" });
        use super::Faulty;
        export!(Faulty);
    }

    /// The faults `settings.config` can ask for (see the crate documentation).
    #[derive(Clone, Copy)]
    enum Fault {
        Trap,
        Loop,
        Alloc,
        Leak,
        LogSpam,
        AssignFull,
        AssignUnknown,
        DeleteBusy,
        Overscale,
        Spread,
    }

    impl Fault {
        /// The fault `config` names, if any.
        fn named(config: &str) -> Option<Self> {
            Some(match config {
                "trap" => Self::Trap,
                "loop" => Self::Loop,
                "alloc" => Self::Alloc,
                "leak" => Self::Leak,
                "log-spam" => Self::LogSpam,
                "assign-full" => Self::AssignFull,
                "assign-unknown" => Self::AssignUnknown,
                "delete-busy" => Self::DeleteBusy,
                "overscale" => Self::Overscale,
                "spread" => Self::Spread,
                _ => return None,
            })
        }

        /// Commits the faults that both calls share (returning only from
        /// `log-spam`), then hands back the fault for the call to apply.
        fn commit(config: &str) -> Option<Self> {
            let fault = Self::named(config);
            match fault {
                Some(Self::Trap) => panic!("faulty policy: trap as configured"),
                // `black_box` keeps the optimizer from proving the loop
                // useless and removing it.
                Some(Self::Loop) => loop {
                    black_box(());
                },
                Some(Self::Alloc) => {
                    let mut hoard = Vec::new();
                    loop {
                        // Observed through `black_box`, so never elided.
                        hoard.push(black_box(vec![0xA5_u8; 1 << 20]));
                    }
                }
                Some(Self::Leak) => std::mem::forget(black_box(vec![0x5A_u8; 64 << 10])),
                Some(Self::LogSpam) => {
                    let line = format!("faulty policy: log-spam {}", "spam ".repeat(400));
                    for _ in 0..10_000 {
                        log(LogLevel::Info, &line);
                    }
                }
                _ => {}
            }
            fault
        }
    }

    struct Faulty;

    impl Guest for Faulty {
        fn assign(snapshot: Snapshot) -> Option<u32> {
            match Fault::commit(&snapshot.settings.config) {
                Some(Fault::AssignFull) => Some(unassignable_id(&pods(&snapshot))),
                Some(Fault::AssignUnknown) => Some(4_000_000_000),
                Some(Fault::Spread) => emptiest(&pods(&snapshot)),
                _ => logic::assign(&view(&snapshot)),
            }
        }

        fn scale(snapshot: Snapshot) -> ScaleDecision {
            let fault = Fault::commit(&snapshot.settings.config);
            let wicket_policy_sdk::ScaleDecision { create, delete } =
                logic::scale(&view(&snapshot));
            match fault {
                Some(Fault::DeleteBusy) => ScaleDecision {
                    create,
                    delete: busy_ids(&pods(&snapshot)),
                },
                Some(Fault::Overscale) => ScaleDecision {
                    create: snapshot.settings.pods_max.saturating_add(5),
                    delete: Vec::new(),
                },
                _ => ScaleDecision { create, delete },
            }
        }
    }

    /// The ready pod with the most free slots (first in name order on ties).
    fn emptiest(pods: &[Pod]) -> Option<u32> {
        pods.iter()
            .filter(|pod| pod.phase == Phase::Ready && pod.tickets < pod.capacity)
            .fold(None, |best: Option<&Pod>, pod| match best {
                Some(b) if b.capacity - b.tickets >= pod.capacity - pod.tickets => Some(b),
                _ => Some(pod),
            })
            .map(|pod| pod.id)
    }

    /// A full or non-ready pod's id, else the lowest id no pod has.
    fn unassignable_id(pods: &[Pod]) -> u32 {
        let closed = pods
            .iter()
            .find(|pod| pod.phase != Phase::Ready || pod.tickets >= pod.capacity);
        match closed {
            Some(pod) => pod.id,
            // There are fewer pods than ids, so one is always free.
            None => (0..=u32::MAX)
                .find(|&id| pods.iter().all(|pod| pod.id != id))
                .unwrap_or_default(),
        }
    }

    /// The ids of the pods holding tickets, or if none does, of the
    /// Deployment's replicas: pods no policy may delete.
    fn busy_ids(pods: &[Pod]) -> Vec<u32> {
        let any_busy = pods.iter().any(|pod| pod.tickets > 0);
        pods.iter()
            .filter(|pod| {
                if any_busy {
                    pod.tickets > 0
                } else {
                    !pod.autoscaled
                }
            })
            .map(|pod| pod.id)
            .collect()
    }

    /// The snapshot as the default policy's logic takes it (the SDK's).
    fn view(snapshot: &Snapshot) -> wicket_policy_sdk::Snapshot {
        let settings = &snapshot.settings;
        wicket_policy_sdk::Snapshot::from_0_1(
            wicket_policy_sdk::Settings {
                tickets_max: settings.tickets_max,
                tickets_spare: settings.tickets_spare,
                pods_max: settings.pods_max,
                cooldown_seconds: settings.cooldown_seconds,
                config: settings.config.clone(),
            },
            &snapshot.pods,
            snapshot.waiting,
        )
    }

    /// The pods, decoded (this test policy may allocate).
    fn pods(snapshot: &Snapshot) -> Vec<Pod> {
        view(snapshot).pods().collect()
    }
}
