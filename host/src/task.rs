//! A spawned task that ends with its owner.

use tokio::task::JoinHandle;

/// A task that is aborted when dropped: whoever holds it owns its lifetime.
#[derive(Debug)]
pub struct Task(JoinHandle<()>);

impl Task {
    /// Spawns `f` on the current runtime.
    pub fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(f))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}
