//! Applying an approved scale decision to the serverlist: the one place
//! that turns "create n, delete these" into placeholders and removals, for
//! the live app and the simulator alike.

use std::time::Instant;

use super::serverlist::{PodId, Serverlist};
use super::snapshot::ScaleDecision;

/// What a scale decision became once applied to the current state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScaleActions {
    /// Placeholders of pods to create now (see [`Serverlist::end_create`]).
    pub creates: Vec<PodId>,
    /// Names of pods removed from the list, to delete now.
    pub deletes: Vec<String>,
}

impl Serverlist {
    /// Starts the actions of `decision` that the state at `now` still
    /// allows. The decision was checked against the snapshot it was made
    /// from; the state may have moved on since (pods created meanwhile,
    /// a pod took a ticket), so pods.max and every deletion are checked
    /// again here.
    pub fn apply_scale(&mut self, decision: &ScaleDecision, now: Instant) -> ScaleActions {
        let room = self
            .settings()
            .pods_max
            .saturating_sub(self.autoscaled_pods());
        let creates = (0..decision.create.min(room))
            .map(|_| self.begin_create_at(now))
            .collect();
        // `begin_delete` checks that each pod is autoscaled, idle and not
        // starting.
        let deletes = decision
            .delete
            .iter()
            .filter_map(|&id| self.begin_delete(id))
            .collect();
        ScaleActions { creates, deletes }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{AppSettings, Backend, PodInfo};

    fn pod(name: &str, ready: bool) -> PodInfo {
        PodInfo {
            name: name.into(),
            backend: Some(Backend::new(([127, 0, 0, 1], 1).into(), "/")),
            ready,
            autoscaled: true,
        }
    }

    #[test]
    fn creations_stop_at_pods_max_and_busy_pods_stay() {
        let t0 = Instant::now();
        let settings = AppSettings {
            tickets_max: 1,
            pods_max: 3,
            ..AppSettings::default()
        };
        let mut list = Serverlist::new(settings, t0);
        list.upsert_pod(pod("a", true), t0);
        list.upsert_pod(pod("b", true), t0);
        let ids: Vec<u32> = list
            .snapshot(t0, Default::default())
            .pods
            .iter()
            .map(|p| p.id)
            .collect();
        let _busy = list.issue(ids[0], t0).expect("ticket on a");
        let decision = ScaleDecision {
            create: 5,
            delete: ids.clone(),
        };
        let actions = list.apply_scale(&decision, t0 + Duration::from_secs(1));
        assert_eq!(actions.creates.len(), 1, "two pods exist, pods.max 3");
        assert_eq!(actions.deletes, vec!["b".to_string()], "a holds a ticket");
        assert_eq!(list.autoscaled_pods(), 2);
    }
}
