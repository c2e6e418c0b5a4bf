//! A sane policy built against `wicket:policy@1.0.0` (the copy of the
//! contract in `wit/`), so that the host's version check refuses it.
//!
//! It gives a ticket to the first ready pod with a free slot and never
//! scales. Only WebAssembly builds have the exports (native linkers reject
//! their names).

#[cfg(target_family = "wasm")]
mod component {
    use bindings::exports::wicket::policy::decide::Guest;
    use bindings::wicket::policy::types::{PodPhase, ScaleDecision, Snapshot};

    #[allow(unsafe_code, reason = "wit-bindgen's generated ABI glue")]
    mod bindings {
        wit_bindgen::generate!({ path: "wit", world: "policy" });
        use super::OtherMajor;
        export!(OtherMajor);
    }

    struct OtherMajor;

    impl Guest for OtherMajor {
        fn assign(snapshot: Snapshot) -> Option<u32> {
            snapshot
                .pods
                .iter()
                .find(|pod| pod.phase == PodPhase::Ready && pod.tickets < pod.capacity)
                .map(|pod| pod.id)
        }

        fn scale(_: Snapshot) -> ScaleDecision {
            ScaleDecision {
                create: 0,
                delete: Vec::new(),
            }
        }
    }
}
