//! The in-memory store: nothing shared. The app's serverlist is the only
//! copy of the tickets (one replica), so every call agrees with it and the
//! app does not even make them ([`Store::is_shared`] is false).

use super::{Claim, QueueReport, Store, StoreError, StoredTicket, Synced, Touch};
use crate::provider::BoxFuture;

/// Tickets in this process only (the default, `[store] kind = "memory"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn is_shared(&self) -> bool {
        false
    }

    fn claim<'a>(
        &'a self,
        _app: &'a str,
        _ticket: &'a StoredTicket,
        _capacity: u32,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        // The serverlist already checked the pod's capacity under its lock.
        Box::pin(async { Ok(Claim::Granted) })
    }

    fn free<'a>(
        &'a self,
        _app: &'a str,
        tickets: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<u32, StoreError>> {
        Box::pin(async move { Ok(tickets.len() as u32) })
    }

    fn expire<'a>(
        &'a self,
        _app: &'a str,
        _tickets: &'a [(String, String)],
        _cutoff_ms: i64,
    ) -> BoxFuture<'a, Result<u32, StoreError>> {
        // The serverlist's own sweep expires tickets.
        Box::pin(async { Ok(0) })
    }

    fn sync<'a>(
        &'a self,
        _app: &'a str,
        _touches: &'a [Touch],
        queue: &'a QueueReport,
        _known: Option<i64>,
    ) -> BoxFuture<'a, Result<Synced, StoreError>> {
        Box::pin(async move {
            Ok(Synced {
                ahead: vec![0; queue.waiters.len()],
                others_waiting: 0,
                version: 0,
                tickets: None,
            })
        })
    }
}
