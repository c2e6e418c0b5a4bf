//! The Redis store: tickets shared by every replica of the host.
//!
//! Per app, four keys under one hash tag (so a Redis Cluster keeps them in
//! one slot and the scripts may use them together):
//! - `{<prefix><app>}:tickets`: hash, field `<pod>/<uid>` → hex SHA-256 of
//!   the token (never the token: the proxy finds a ticket by the pod and
//!   uid of its cookie's name, then checks the token against the digest);
//! - `{<prefix><app>}:counts`: hash, pod → tickets it holds;
//! - `{<prefix><app>}:last`: hash, `<pod>/<uid>` → last use (unix ms);
//! - `{<prefix><app>}:version`: integer, incremented whenever a ticket is
//!   claimed or freed (replicas reload the tickets when it changes);
//! - `{<prefix><app>}:replicas`: sorted set, replica id → when last heard;
//! - `{<prefix><app>}:queue:<replica id>`: sorted set, that replica's
//!   connected waiting users → when each asked (unix ms): together, one
//!   first-come-first-served queue. Expires when its replica stops
//!   writing it.
//!
//! Claims, frees and expiries are Lua scripts (atomic on the server).

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::{Claim, QueueReport, Store, StoreError, StoredTicket, Synced, Touch};
use crate::config::StoreConfig;
use crate::provider::BoxFuture;

/// Tickets in Redis (`[store] kind = "redis"`).
#[derive(Clone)]
pub struct RedisStore {
    pub(super) con: ConnectionManager,
    prefix: String,
    claim: Script,
    free: Script,
    sync: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: not shown.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The keys of one app.
struct Keys {
    tickets: String,
    counts: String,
    last: String,
    version: String,
    replicas: String,
    queue: String,
}

fn field(pod: &str, uid: &str) -> String {
    format!("{pod}/{uid}")
}

fn failed(op: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |e| StoreError {
        op,
        reason: e.to_string(),
    }
}

fn unexpected(op: &'static str, what: &str) -> StoreError {
    StoreError {
        op,
        reason: format!("unexpected answer: {what}"),
    }
}

impl RedisStore {
    /// Connects to `config.url` (one round trip, a PING) within the
    /// connect timeout. Errors name `store.url`.
    pub async fn connect(config: &StoreConfig) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.url.as_str())
            .context("store.url is not a usable Redis URL (redis://[user:password@]host[:port][/db] or rediss:// for TLS)")?;
        let connect = Duration::from_millis(config.connect_timeout_ms);
        let response = Duration::from_millis(config.response_timeout_ms);
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(response))
            // Reconnection is retried by the next call (the next interval):
            // a call never waits through a long series of attempts.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let con = tokio::time::timeout(
            connect + response,
            ConnectionManager::new_with_config(client, settings),
        )
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {connect:?}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .context("store.url: the Redis server does not answer")?;
        let mut store = Self {
            con,
            prefix: config.key_prefix.clone(),
            claim: Script::new(include_str!("lua/claim.lua")),
            free: Script::new(include_str!("lua/free.lua")),
            sync: Script::new(include_str!("lua/sync.lua")),
        };
        let pong: String = redis::cmd("PING")
            .query_async(&mut store.con)
            .await
            .context("store.url: the Redis server does not answer PING")?;
        anyhow::ensure!(pong == "PONG", "store.url: PING answered {pong:?}");
        Ok(store)
    }

    fn keys(&self, app: &str) -> Keys {
        let tag = format!("{{{}{app}}}", self.prefix);
        Keys {
            tickets: format!("{tag}:tickets"),
            counts: format!("{tag}:counts"),
            last: format!("{tag}:last"),
            version: format!("{tag}:version"),
            replicas: format!("{tag}:replicas"),
            queue: format!("{tag}:queue"),
        }
    }

    async fn run_free(
        &self,
        op: &'static str,
        app: &str,
        tickets: &[(String, String)],
        cutoff: Option<i64>,
    ) -> Result<u32, StoreError> {
        if tickets.is_empty() {
            return Ok(0);
        }
        let k = self.keys(app);
        let mut inv = self.free.prepare_invoke();
        inv.key(&k.tickets)
            .key(&k.counts)
            .key(&k.last)
            .key(&k.version)
            .arg(cutoff.map(|c| c.to_string()).unwrap_or_default());
        for (pod, uid) in tickets {
            inv.arg(pod).arg(field(pod, uid));
        }
        let mut con = self.con.clone();
        let n: i64 = inv.invoke_async(&mut con).await.map_err(failed(op))?;
        Ok(u32::try_from(n).unwrap_or(0))
    }
}

/// Reads the pairs of an HGETALL answer.
fn pairs(v: &Value) -> Option<Vec<(String, String)>> {
    let Value::Array(items) = v else {
        return None;
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    items
        .chunks(2)
        .map(|c| Some((text(c.first()?)?, text(c.get(1)?)?)))
        .collect()
}

/// The tickets of a sync answer: `tickets` and `last` are HGETALL pairs.
/// Entries that do not parse (written by something else) are skipped.
fn tickets_of(tickets: &[(String, String)], last: &[(String, String)]) -> Vec<StoredTicket> {
    let last: std::collections::HashMap<&str, i64> = last
        .iter()
        .filter_map(|(f, ms)| Some((f.as_str(), ms.parse().ok()?)))
        .collect();
    tickets
        .iter()
        .filter_map(|(f, d)| {
            let (pod, uid) = f.split_once('/')?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(d, &mut digest).ok()?;
            Some(StoredTicket {
                pod: pod.to_owned(),
                uid: uid.to_owned(),
                digest,
                last_use_ms: last.get(f.as_str()).copied().unwrap_or(0),
            })
        })
        .collect()
}

impl Store for RedisStore {
    fn is_shared(&self) -> bool {
        true
    }

    fn claim<'a>(
        &'a self,
        app: &'a str,
        ticket: &'a StoredTicket,
        capacity: u32,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        Box::pin(async move {
            let k = self.keys(app);
            let mut con = self.con.clone();
            let (claimed, held): (i64, i64) = self
                .claim
                .key(&k.tickets)
                .key(&k.counts)
                .key(&k.last)
                .key(&k.version)
                .arg(&ticket.pod)
                .arg(field(&ticket.pod, &ticket.uid))
                .arg(hex::encode(ticket.digest))
                .arg(capacity)
                .arg(ticket.last_use_ms)
                .invoke_async(&mut con)
                .await
                .map_err(failed("claim"))?;
            Ok(match claimed {
                1 => Claim::Granted,
                0 => Claim::Full {
                    held: u32::try_from(held).unwrap_or(0),
                },
                _ => Claim::Taken,
            })
        })
    }

    fn free<'a>(
        &'a self,
        app: &'a str,
        tickets: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<u32, StoreError>> {
        Box::pin(self.run_free("free", app, tickets, None))
    }

    fn expire<'a>(
        &'a self,
        app: &'a str,
        tickets: &'a [(String, String)],
        cutoff_ms: i64,
    ) -> BoxFuture<'a, Result<u32, StoreError>> {
        Box::pin(self.run_free("expire", app, tickets, Some(cutoff_ms)))
    }

    fn sync<'a>(
        &'a self,
        app: &'a str,
        touches: &'a [Touch],
        queue: &'a QueueReport,
        known: Option<i64>,
    ) -> BoxFuture<'a, Result<Synced, StoreError>> {
        Box::pin(async move {
            let k = self.keys(app);
            let mut inv = self.sync.prepare_invoke();
            inv.key(&k.tickets)
                .key(&k.last)
                .key(&k.version)
                .key(&k.replicas)
                .key(&k.queue)
                .arg(known.map(|v| v.to_string()).unwrap_or_default())
                .arg(&queue.replica)
                .arg(queue.now_ms)
                .arg(queue.stale_ms)
                .arg(queue.waiters.len());
            for (id, at) in &queue.waiters {
                inv.arg(*id).arg(*at);
            }
            for t in touches {
                inv.arg(field(&t.pod, &t.uid)).arg(t.at_ms);
            }
            let mut con = self.con.clone();
            let answer: Value = inv.invoke_async(&mut con).await.map_err(failed("sync"))?;
            let Value::Array(parts) = answer else {
                return Err(unexpected("sync", "not an array"));
            };
            let version = match parts.first() {
                Some(Value::Int(v)) => *v,
                _ => return Err(unexpected("sync", "no version")),
            };
            let ahead = match parts.get(1) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        Value::Int(n) => u64::try_from(*n).unwrap_or(0),
                        _ => 0,
                    })
                    .collect(),
                _ => return Err(unexpected("sync", "no queue places")),
            };
            let others_waiting = match parts.get(2) {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => return Err(unexpected("sync", "no queue length")),
            };
            let tickets = match (parts.get(3), parts.get(4)) {
                (Some(t), Some(l)) => {
                    let t = pairs(t).ok_or_else(|| unexpected("sync", "tickets"))?;
                    let l = pairs(l).ok_or_else(|| unexpected("sync", "last uses"))?;
                    Some(tickets_of(&t, &l))
                }
                _ => None,
            };
            Ok(Synced {
                ahead,
                others_waiting,
                version,
                tickets,
            })
        })
    }
}
