//! The Redis store with `wicket run` on a REAL kube-apiserver and etcd
//! (scripts/cluster/, cached): hosts in this process, each with the
//! ServiceAccount's token, sharing one redis-server and one port
//! (SO_REUSEPORT). The test plays the kubelet (see tests/cluster).

#![allow(clippy::unwrap_used)] // tests

mod cluster;
mod common;
mod redis;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use cluster::*;
use common::{client, connect_ws, get, read_ticket};
use http::StatusCode;
use redis::RedisServer;
use wicket::config::{Config, StoreKind};
use wicket::kube::annotations as ann;

const APP: &str = "ha";

fn config(store_url: &str, listen: SocketAddr) -> Config {
    let mut c = host_config();
    c.proxy.listen = listen;
    c.proxy.ticket_expiry_ms = 30_000;
    c.store.kind = StoreKind::Redis;
    c.store.url = store_url.to_owned();
    c.store.refresh_ms = 100;
    c.store.response_timeout_ms = 300;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosts_on_a_real_control_plane_share_tickets_through_redis() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let server = RedisServer::start();
        let shared = SocketAddr::from(([127, 0, 0, 1], redis::free_port()));
        let mut env = Env::start(config(&server.url(), shared)).await;
        let sa = env
            .cluster
            .client_with_token(&env.cluster.service_account_token())
            .await;
        let second = wicket::run::start(config(&server.url(), shared), sa)
            .await
            .expect("a second host starts");
        env.deploy(
            APP,
            &[
                (ann::TICKETS_MAX, "2"),
                (ann::TICKETS_SPARE, "0"),
                (ann::PODS_MAX, "0"),
            ],
            &["ha-replica-0", "ha-replica-1"],
        )
        .await;
        wait_for(Duration::from_secs(20), || async {
            second
                .apps
                .get(APP)
                .is_some_and(|a| a.has_pod("ha-replica-0") && a.has_pod("ha-replica-1"))
        })
        .await;
        // Eight users at once through the shared port; four slots.
        let sockets = futures_util::future::join_all((0..8).map(|_| connect_ws(shared, APP))).await;
        let sessions =
            futures_util::future::join_all(sockets.into_iter().map(|mut ws| async move {
                let s = read_ticket(&mut ws, Duration::from_secs(8)).await;
                (s, ws)
            }))
            .await;
        let tickets: Vec<_> = sessions
            .iter()
            .filter_map(|(s, _)| s.ticket.clone())
            .collect();
        let mut per_pod: HashMap<&str, u32> = HashMap::new();
        for t in &tickets {
            *per_pod.entry(t.pod.as_str()).or_default() += 1;
        }
        assert_eq!(tickets.len(), 4, "{per_pod:?}");
        assert!(per_pod.values().all(|&n| n == 2), "{per_pod:?}");
        let unique: HashSet<(&str, &str)> = tickets
            .iter()
            .map(|t| (t.pod.as_str(), t.uid.as_str()))
            .collect();
        assert_eq!(unique.len(), 4, "no ticket issued twice");
        // Both hosts know every ticket.
        for host in [&env.host, &second] {
            let app = host.apps.get(APP).unwrap();
            wait_for(Duration::from_secs(2), || async {
                tickets.iter().all(|t| app.ticket(&t.pod, &t.uid).is_some())
            })
            .await;
        }
        // A host started now (as after a restart of every replica) loads
        // them as soon as it knows the pods, and lets their users in.
        let sa = env
            .cluster
            .client_with_token(&env.cluster.service_account_token())
            .await;
        let own = SocketAddr::from(([127, 0, 0, 1], 0));
        let third = wicket::run::start(config(&server.url(), own), sa)
            .await
            .expect("a third host starts");
        wait_for(Duration::from_secs(20), || async {
            third
                .apps
                .get(APP)
                .is_some_and(|a| tickets.iter().all(|t| a.ticket(&t.pod, &t.uid).is_some()))
        })
        .await;
        for t in &tickets {
            let r = get(
                &client(),
                third.proxy_addr,
                &t.prefix(APP),
                Some(&t.cookie()),
                &[],
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{t:?}: {}", r.body);
        }
        // The pods are full for the new host too.
        let mut ws = connect_ws(third.proxy_addr, APP).await;
        let s = read_ticket(&mut ws, Duration::from_millis(800)).await;
        assert!(
            s.ticket.is_none(),
            "four slots, four tickets: the next user waits"
        );
    })
    .await
    .expect("the test ends within its time bound");
}
