//! The simulator and the host run the same serverlist, policy runner and
//! invariant checks (crates/state and crates/policy-runtime): the same
//! scenario through `wicket simulate` and through a live [`App`] on tokio
//! must end the same way.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use wicket::app::{App, Routing, TicketRequest};
use wicket::metrics::Metrics;
use wicket::policy::{Limits, PolicyEngine, PolicyRunner, PolicySource, load_default};
use wicket::provider::{BoxFuture, PodEvent, PodProvider, ProviderError};
use wicket::simulate::{Arrival, Scenario, SimSettings, load_policy, run_policy};
use wicket::state::{AppSettings, Backend, PodInfo};

/// Five users at once on one replica of two slots, spare 1, pods.max 2:
/// two get slots at once, three wait for the two pods the policy creates.
/// The simulator and the live app (the real loop on tokio, pods made ready
/// by hand) must agree on who waits, what is created and where it ends.
#[test]
fn the_simulation_matches_the_live_app() {
    // A deadline no debug build on a busy machine misses.
    let engine = PolicyEngine::new(Limits {
        timeout: Duration::from_secs(2),
        ..Limits::default()
    })
    .expect("engine");
    let default = load_default(&engine).expect("default policy");
    let app_settings = AppSettings {
        tickets_max: 2,
        tickets_spare: 1,
        pods_max: 2,
        cooldown: Duration::from_secs(60),
        policy_config: String::new(),
    };
    let scenario = Scenario {
        arrivals: vec![
            Arrival {
                at_ms: 0,
                session_ms: 3_600_000
            };
            5
        ],
        start_unix_ms: 0,
        end_ms: 120_000,
        settings: SimSettings {
            app: app_settings.clone(),
            ..SimSettings::default()
        },
        seed: 1,
    };
    let policy = load_policy(&engine, &default, "default").expect("default");
    let sim =
        run_policy(&engine, &default, &scenario, &policy, &mut |_, _| {}).expect("simulation runs");
    let at_once = sim.waits_ms.iter().filter(|&&w| w == 0).count();
    let last = *sim.timeline.points.last().expect("points");

    /// Creates pods that are not ready yet and remembers them.
    #[derive(Default)]
    struct Pods(Mutex<Vec<String>>);
    impl PodProvider for Pods {
        fn create<'a>(&'a self, _app: &'a str) -> BoxFuture<'a, Result<PodInfo, ProviderError>> {
            Box::pin(async move {
                let mut pods = self.0.lock();
                let name = format!("pod-{:06}", pods.len() + 1);
                pods.push(name.clone());
                Ok(pod(&name, false, true))
            })
        }
        fn delete<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<(), ProviderError>> {
            Box::pin(async { Ok(()) })
        }
    }
    fn pod(name: &str, ready: bool, autoscaled: bool) -> PodInfo {
        PodInfo {
            name: name.into(),
            backend: Some(Backend::new(([127, 0, 0, 1], 9).into(), "/")),
            ready,
            autoscaled,
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (live_at_once, live_created, tickets, waiting, scaled) = rt.block_on(async {
        let metrics = Metrics::new().expect("metrics");
        let source = PolicySource::new("default", Arc::clone(&default));
        let runner = PolicyRunner::new(
            "t",
            Arc::clone(&engine),
            source,
            Arc::clone(&default),
            metrics.policy.clone(),
        );
        let provider = Arc::new(Pods::default());
        let routing = Routing {
            name: "t".into(),
            dns: false,
        };
        let app = App::new(
            routing,
            app_settings,
            Duration::from_secs(3),
            runner,
            Arc::clone(&provider) as Arc<dyn PodProvider>,
            metrics.clone(),
        );
        app.apply(PodEvent::Upsert {
            app: "t".into(),
            pod: pod("replica-000", true, false),
        });
        let mut at_once = 0;
        let mut queued = Vec::new();
        for _ in 0..5 {
            match app.request_ticket().await {
                TicketRequest::Granted(_) => at_once += 1,
                TicketRequest::Queued { rx, .. } => queued.push(rx),
                TicketRequest::Closed | TicketRequest::Full => panic!("the app accepts users"),
            }
        }
        let looping = tokio::spawn(Arc::clone(&app).run());
        let created = loop {
            let n = provider.0.lock().clone();
            if n.len() >= 2 {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Let any further (wrong) creation show before comparing.
        tokio::time::sleep(Duration::from_millis(600)).await;
        for name in &created {
            app.apply(PodEvent::Upsert {
                app: "t".into(),
                pod: pod(name, true, true),
            });
        }
        for rx in queued {
            tokio::time::timeout(Duration::from_secs(10), rx)
                .await
                .expect("served in time")
                .expect("granted");
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        looping.abort();
        let app_label = ["t"];
        (
            at_once,
            provider.0.lock().len() as u64,
            metrics.current_users.with_label_values(&app_label).get() as u32,
            metrics.waiting_users.with_label_values(&app_label).get() as u32,
            metrics.scaled_pods.with_label_values(&app_label).get() as u32,
        )
    });
    assert_eq!((at_once, live_at_once), (2, 2), "granted at once");
    assert_eq!(
        (sim.summary.pods_created, live_created),
        (2, 2),
        "pods created"
    );
    assert_eq!((last.tickets, tickets), (5, 5), "tickets in use");
    assert_eq!((last.waiting, waiting), (0, 0), "nobody waits");
    assert_eq!(
        (last.ready - 1, scaled),
        (2, 2),
        "autoscaled pods (the replica aside)"
    );
    assert_eq!(
        sim.summary.wait_max_s, 20.0,
        "the waiters waited for the start-up"
    );
}
