//! The table of running apps, read lock-free (and by the proxy only when
//! a connection's remembered app is retired or another app is asked for).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::app::App;

/// Apps by name. Readers get a consistent snapshot; writers replace the table.
#[derive(Debug, Default)]
pub struct Apps {
    table: ArcSwap<HashMap<String, Arc<App>>>,
}

impl Apps {
    /// The app called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<App>> {
        self.table.load().get(name).cloned()
    }

    /// Adds or replaces an app; a replaced one is retired.
    pub fn insert(&self, app: Arc<App>) {
        let old = self.get(app.name());
        self.table.rcu(|t| {
            let mut t = HashMap::clone(t);
            t.insert(app.name().to_owned(), Arc::clone(&app));
            t
        });
        if let Some(old) = old.filter(|o| !Arc::ptr_eq(o, &app)) {
            old.retire();
        }
    }

    /// Removes an app, returning it (retired).
    pub fn remove(&self, name: &str) -> Option<Arc<App>> {
        let old = self.get(name);
        self.table.rcu(|t| {
            let mut t = HashMap::clone(t);
            t.remove(name);
            t
        });
        if let Some(old) = &old {
            old.retire();
        }
        old
    }

    /// Every app.
    pub fn all(&self) -> Vec<Arc<App>> {
        self.table.load().values().cloned().collect()
    }
}
