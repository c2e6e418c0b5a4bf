//! The local provider: each "pod" is a real process of the built-in demo app
//! on loopback. Used by `wicket demo`; behaves like Kubernetes would (pods
//! start, become ready after a delay, exit), so the same policy → actions
//! path runs without a cluster.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::{BoxFuture, PodEvent, PodProvider, ProviderError};
use crate::demo_app::LISTENING;
use crate::state::{Backend, PodInfo};

/// How long a new process may take to print its address.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs demo-app processes as pods.
pub struct LocalProvider {
    exe: PathBuf,
    start_delay: Duration,
    events: mpsc::UnboundedSender<PodEvent>,
    /// Kill switches of running pods, by pod name.
    running: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("exe", &self.exe)
            .finish_non_exhaustive()
    }
}

fn suffix(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(|c| (c as char).to_ascii_lowercase())
        .collect()
}

impl LocalProvider {
    /// A provider that starts `exe demo-app …` processes, reports them ready
    /// `start_delay` after they listen, and sends pod events to `events`.
    pub fn new(
        exe: PathBuf,
        start_delay: Duration,
        events: mpsc::UnboundedSender<PodEvent>,
    ) -> Self {
        Self {
            exe,
            start_delay,
            events,
            running: Arc::default(),
        }
    }

    /// Starts a pod that belongs to the app's own replicas (never deleted by
    /// the policy).
    pub async fn start_replica(&self, app: &str) -> Result<PodInfo, ProviderError> {
        let name = format!("{app}-{}", suffix(5));
        self.spawn(app, name, false).await
    }

    async fn spawn(
        &self,
        app: &str,
        name: String,
        autoscaled: bool,
    ) -> Result<PodInfo, ProviderError> {
        let fail = |reason: String| ProviderError {
            action: "create pod".into(),
            app: app.into(),
            reason,
        };
        let mut child = Command::new(&self.exe)
            .args(["demo-app", "--listen", "127.0.0.1:0", "--pod", &name])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", self.exe.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(SPAWN_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| fail("the pod process did not report its address in time".into()))?
            .map_err(|e| fail(format!("reading the pod's address: {e}")))?
            .unwrap_or_default();
        let addr: SocketAddr = first
            .strip_prefix(LISTENING)
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| fail(format!("unexpected first line from the pod: {first:?}")))?;
        let info = PodInfo {
            name: name.clone(),
            backend: Some(Backend::new(addr, "/")),
            ready: false,
            autoscaled,
        };

        let (kill_tx, kill_rx) = oneshot::channel();
        self.running.lock().insert(name.clone(), kill_tx);
        let (events, running, delay, app) = (
            self.events.clone(),
            Arc::clone(&self.running),
            self.start_delay,
            app.to_owned(),
        );
        let ready = PodInfo {
            ready: true,
            ..info.clone()
        };
        tokio::spawn(async move {
            // Keep draining stdout so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let mut kill_rx = kill_rx;
            let ready_at = tokio::time::sleep(delay);
            tokio::pin!(ready_at);
            let mut announced = false;
            loop {
                tokio::select! {
                    _ = &mut ready_at, if !announced => {
                        announced = true;
                        let _ = events.send(PodEvent::Upsert { app: app.clone(), pod: ready.clone() });
                    }
                    _ = &mut kill_rx => {
                        let _ = child.kill().await;
                        break;
                    }
                    status = child.wait() => {
                        tracing::warn!(%app, pod = %name, "pod process exited: {status:?}");
                        break;
                    }
                }
            }
            running.lock().remove(&name);
            let _ = events.send(PodEvent::Gone { app, name });
        });
        Ok(info)
    }
}

impl PodProvider for LocalProvider {
    fn create<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Result<PodInfo, ProviderError>> {
        Box::pin(async move {
            let name = format!("{app}-k8sticket-autoscaled-{}", suffix(5));
            self.spawn(app, name, true).await
        })
    }

    fn delete<'a>(
        &'a self,
        app: &'a str,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            match self.running.lock().remove(pod) {
                Some(kill) => {
                    let _ = kill.send(());
                    Ok(())
                }
                None => Err(ProviderError {
                    action: format!("delete pod {pod}"),
                    app: app.into(),
                    reason: "no such pod process".into(),
                }),
            }
        })
    }
}
