//! The Redis store's scripts against a real redis-server.

use std::collections::HashSet;

use super::redis_server::{RedisServer, free_port};
use super::*;
use crate::config::{StoreConfig, StoreKind};
use crate::state::Token;

fn config(url: String) -> StoreConfig {
    StoreConfig {
        kind: StoreKind::Redis,
        url,
        ..StoreConfig::default()
    }
}

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&config(server.url()))
        .await
        .expect("connects")
}

fn ticket(pod: &str, uid: &str, token: &Token) -> StoredTicket {
    StoredTicket {
        pod: pod.into(),
        uid: uid.into(),
        digest: token.digest(),
        last_use_ms: 1_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_from_two_replicas_never_overfill_a_pod() {
    let server = RedisServer::start();
    let (a, b) = (store(&server).await, store(&server).await);
    let tickets: Vec<StoredTicket> = (0..60)
        .map(|i| ticket("p", &format!("u{i}"), &Token::generate()))
        .collect();
    let claims = tickets.iter().enumerate().map(|(i, t)| {
        let s = if i % 2 == 0 { &a } else { &b };
        s.claim("app", t, 7)
    });
    let answers = futures_util::future::join_all(claims).await;
    let granted = answers
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Granted)))
        .count();
    assert_eq!(granted, 7, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|c| matches!(c, Ok(Claim::Granted | Claim::Full { held: 7 }))),
        "every other claim sees the pod full: {answers:?}"
    );
    let synced = a
        .sync("app", &[], &QueueReport::default(), None)
        .await
        .expect("sync");
    let held = synced.tickets.expect("every ticket");
    assert_eq!(held.len(), 7);
    assert_eq!(synced.version, 7, "one version per claim");
    // Another pod has its own count.
    let other = ticket("q", "u0", &Token::generate());
    assert_eq!(
        b.claim("app", &other, 1).await.expect("claim"),
        Claim::Granted
    );
    // And another app its own keys.
    assert_eq!(
        b.claim("other", &tickets[59], 7).await.expect("claim"),
        Claim::Granted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_is_claimed_once_and_a_freed_slot_is_claimable_again() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let t = ticket("p", "u", &Token::generate());
    assert_eq!(s.claim("app", &t, 2).await.expect("claim"), Claim::Granted);
    let same_uid = ticket("p", "u", &Token::generate());
    assert_eq!(
        s.claim("app", &same_uid, 2).await.expect("claim"),
        Claim::Taken
    );
    let t2 = ticket("p", "v", &Token::generate());
    assert_eq!(s.claim("app", &t2, 2).await.expect("claim"), Claim::Granted);
    let t3 = ticket("p", "w", &Token::generate());
    assert_eq!(
        s.claim("app", &t3, 2).await.expect("claim"),
        Claim::Full { held: 2 }
    );
    let freed = s
        .free(
            "app",
            &[("p".into(), "u".into()), ("p".into(), "nope".into())],
        )
        .await
        .expect("free");
    assert_eq!(freed, 1, "only tickets that exist are freed");
    assert_eq!(s.claim("app", &t3, 2).await.expect("claim"), Claim::Granted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_reads_tickets_only_when_the_version_changed_and_never_the_token() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let token = Token::generate();
    s.claim("app", &ticket("p", "u", &token), 3)
        .await
        .expect("claim");
    let first = s
        .sync("app", &[], &QueueReport::default(), None)
        .await
        .expect("sync");
    let tickets = first.tickets.expect("no known version: everything");
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].digest, token.digest());
    assert_eq!(
        (tickets[0].pod.as_str(), tickets[0].uid.as_str()),
        ("p", "u")
    );
    let same = s
        .sync("app", &[], &QueueReport::default(), Some(first.version))
        .await
        .expect("sync");
    assert_eq!(same.tickets, None, "nothing changed: only the version");
    // Nothing in the store holds the token.
    let mut con = s.con.clone();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .expect("keys");
    for k in ["tickets", "counts", "last", "version"] {
        assert!(
            keys.contains(&format!("{{wicket:app}}:{k}")),
            "{k}: {keys:?}"
        );
    }
    for k in &keys {
        assert!(k.starts_with("{wicket:app}:"), "one hash tag: {k}");
        let dump: ::redis::Value = ::redis::cmd("DUMP")
            .arg(k)
            .query_async(&mut con)
            .await
            .expect("dump");
        assert!(!format!("{dump:?}").contains(&token.to_string()), "{k}");
    }
    s.free("app", &[("p".into(), "u".into())])
        .await
        .expect("free");
    let after = s
        .sync("app", &[], &QueueReport::default(), Some(first.version))
        .await
        .expect("sync");
    assert_eq!(after.tickets, Some(vec![]), "the freed ticket is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_frees_only_tickets_idle_on_every_replica() {
    let server = RedisServer::start();
    let (a, b) = (store(&server).await, store(&server).await);
    for uid in ["idle", "used"] {
        a.claim("app", &ticket("p", uid, &Token::generate()), 5)
            .await
            .expect("claim");
    }
    // Replica b used "used" at 5000; an older use does not go back.
    let touch = |uid: &str, at_ms| Touch {
        pod: "p".into(),
        uid: uid.into(),
        at_ms,
    };
    b.sync(
        "app",
        &[touch("used", 5_000)],
        &QueueReport::default(),
        None,
    )
    .await
    .expect("sync");
    a.sync(
        "app",
        &[touch("used", 2_000), touch("gone", 9_000)],
        &QueueReport::default(),
        None,
    )
    .await
    .expect("sync");
    let all = [
        ("p".to_owned(), "idle".to_owned()),
        ("p".into(), "used".into()),
    ];
    let expired = a.expire("app", &all, 4_000).await.expect("expire");
    assert_eq!(expired, 1, "only the ticket idle since before the cutoff");
    let left = a
        .sync("app", &[], &QueueReport::default(), None)
        .await
        .expect("sync");
    let left = left.tickets.expect("tickets");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].uid, "used");
    assert_eq!(left[0].last_use_ms, 5_000, "the later use won");
    let uids: HashSet<&str> = left.iter().map(|t| t.uid.as_str()).collect();
    assert!(
        !uids.contains("gone"),
        "a touch does not bring a ticket back"
    );
    // The count went down with the expiry: four more fit in five.
    for i in 0..4 {
        let t = ticket("p", &format!("n{i}"), &Token::generate());
        assert_eq!(a.claim("app", &t, 5).await.expect("claim"), Claim::Granted);
    }
    let t = ticket("p", "over", &Token::generate());
    assert_eq!(
        a.claim("app", &t, 5).await.expect("claim"),
        Claim::Full { held: 5 }
    );
}

#[tokio::test]
async fn a_bad_or_unreachable_url_is_an_error_naming_store_url() {
    for url in [
        "http://localhost/".to_owned(),
        "redis://".to_owned() + "%zz",
    ] {
        let e = RedisStore::connect(&config(url.clone()))
            .await
            .expect_err("not a Redis URL");
        assert!(format!("{e:#}").contains("store.url"), "{url}: {e:#}");
    }
    let mut c = config(format!("redis://127.0.0.1:{}/", free_port()));
    c.connect_timeout_ms = 300;
    let started = std::time::Instant::now();
    let e = RedisStore::connect(&c).await.expect_err("nobody listens");
    let msg = format!("{e:#}");
    assert!(msg.contains("store.url"), "{msg}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{msg}"
    );
}

#[tokio::test]
async fn a_paused_server_fails_calls_within_the_response_timeout_and_recovers() {
    let server = RedisServer::start();
    let mut c = config(server.url());
    c.response_timeout_ms = 200;
    let s = RedisStore::connect(&c).await.expect("connects");
    server.pause();
    let started = std::time::Instant::now();
    let e = s
        .sync("app", &[], &QueueReport::default(), None)
        .await
        .expect_err("paused");
    assert_eq!(e.op, "sync");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    server.resume();
    let mut ok = false;
    for _ in 0..50 {
        if s.sync("app", &[], &QueueReport::default(), None)
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ok, "calls succeed again once the server answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_of_every_replica_is_one_order_by_arrival() {
    let server = RedisServer::start();
    let (a, b) = (store(&server).await, store(&server).await);
    let report = |replica: &str, waiters: &[(u64, i64)], now_ms| QueueReport {
        replica: replica.into(),
        waiters: waiters.to_vec(),
        now_ms,
        stale_ms: 1_000,
    };
    // a's users asked at 100 and 300, b's at 200 and 400.
    let ra = report("a", &[(1, 100), (2, 300)], 10_000);
    let rb = report("b", &[(7, 200), (8, 400)], 10_000);
    a.sync("app", &[], &ra, None).await.expect("sync");
    let sb = b.sync("app", &[], &rb, None).await.expect("sync");
    assert_eq!((sb.ahead, sb.others_waiting), (vec![1, 2], 2));
    let sa = a.sync("app", &[], &ra, None).await.expect("sync");
    assert_eq!((sa.ahead, sa.others_waiting), (vec![0, 1], 2));
    // a served its first user: b's first is now at the front.
    let ra = report("a", &[(2, 300)], 10_100);
    a.sync("app", &[], &ra, None).await.expect("sync");
    let sb = b
        .sync("app", &[], &rb, Some(sb.version))
        .await
        .expect("sync");
    assert_eq!((sb.ahead, sb.others_waiting), (vec![0, 1], 1));
    // a goes silent: after the staleness bound its users no longer count.
    let rb = report("b", &[(7, 200), (8, 400)], 11_200);
    let sb = b.sync("app", &[], &rb, None).await.expect("sync");
    assert_eq!((sb.ahead, sb.others_waiting), (vec![0, 0], 0));
}
