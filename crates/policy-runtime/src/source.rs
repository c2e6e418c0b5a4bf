//! Where a policy comes from, and hot swap: a source publishes validated
//! versions atomically; runners pick the new version up on their next call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::engine::{Limits, PolicyEngine};
use super::loaded::{LoadError, LoadedPolicy};
use crate::PolicyMetrics;

/// The default policy (`policies/spare-tickets`), built by `build.rs`.
pub const DEFAULT_POLICY: &[u8] = include_bytes!(env!("WICKET_POLICY_SPARE_TICKETS"));

/// A named place policies come from, holding its latest good version.
#[derive(Debug)]
pub struct PolicySource {
    name: String,
    current: ArcSwap<LoadedPolicy>,
}

impl PolicySource {
    /// A source whose first version is `policy`.
    pub fn new(name: impl Into<String>, policy: Arc<LoadedPolicy>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            current: ArcSwap::new(policy),
        })
    }

    /// The source's name (file path, `embedded:…`, ConfigMap key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The latest good version.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// Publishes a validated version; calls in flight finish on the old one.
    pub fn publish(&self, policy: Arc<LoadedPolicy>) {
        self.current.store(policy);
    }
}

/// Loads the embedded default policy.
pub fn load_default(engine: &PolicyEngine) -> Result<Arc<LoadedPolicy>, LoadError> {
    LoadedPolicy::load(engine, DEFAULT_POLICY, "embedded:spare-tickets")
}

/// Errors reading a policy file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read policy file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("policy file {path} refused")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: LoadError,
    },
}

/// Loads a policy from a file to run under `limits` (blocking: compiles).
pub fn load_file(
    engine: &PolicyEngine,
    path: &Path,
    limits: Limits,
) -> Result<Arc<LoadedPolicy>, FileError> {
    let bytes = std::fs::read(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    LoadedPolicy::load_with(engine, &bytes, &path.display().to_string(), limits).map_err(|source| {
        FileError::Load {
            path: path.to_owned(),
            source,
        }
    })
}

#[derive(PartialEq, Eq, Clone, Copy)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// Watches `path` and publishes each new valid version (to run under
/// `limits`) into `source`. Invalid versions are logged and counted; the
/// last good one stays.
pub fn watch_file(
    engine: Arc<PolicyEngine>,
    source: Arc<PolicySource>,
    path: PathBuf,
    interval: Duration,
    limits: Limits,
    metrics: PolicyMetrics,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = stamp(&path);
        let mut refused: Option<String> = None;
        let mut changes = FileChanges::new(&path, interval);
        loop {
            changes.next().await;
            let now = stamp(&path);
            if now == last {
                continue;
            }
            last = now;
            let Ok(bytes) = tokio::fs::read(&path).await else {
                tracing::warn!(path = %path.display(), "policy file unreadable; keeping the last good policy");
                continue;
            };
            let digest = hex::encode(Sha256::digest(&bytes));
            if digest == source.current().digest || refused.as_deref() == Some(digest.as_str()) {
                continue;
            }
            let (eng, name) = (Arc::clone(&engine), path.display().to_string());
            let loaded = tokio::task::spawn_blocking(move || {
                LoadedPolicy::load_with(&eng, &bytes, &name, limits)
            })
            .await;
            match loaded {
                Ok(Ok(policy)) => {
                    tracing::info!(
                        path = %path.display(), digest = policy.short_digest(),
                        load_ms = policy.load_time.as_millis() as u64, "new policy version validated; swapping"
                    );
                    source.publish(policy);
                    refused = None;
                }
                Ok(Err(e)) => {
                    metrics
                        .load_errors
                        .with_label_values(&[source.name()])
                        .inc();
                    tracing::warn!(path = %path.display(), "policy version refused, keeping the last good one: {e}");
                    refused = Some(digest);
                }
                Err(e) => tracing::error!("policy loader task failed: {e}"),
            }
        }
    })
}

/// Signals that a file may have changed: the platform's notifications
/// (inotify on Linux) on the file's folder, so a file replaced by a rename
/// (as editors, `kubectl cp` and ConfigMap mounts do) is seen too; notify's
/// polling watcher where those are missing; a plain interval as the last
/// resort.
struct FileChanges {
    _watcher: Option<Box<dyn notify::Watcher + Send>>,
    rx: tokio::sync::mpsc::Receiver<()>,
    poll: Option<tokio::time::Interval>,
}

impl FileChanges {
    /// Changes of `path`; `interval` is the polling period where polling is
    /// needed.
    fn new(path: &Path, interval: Duration) -> Self {
        use notify::Watcher;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let signal = move |_: notify::Result<notify::Event>| {
            // Full: a signal is already pending, which is all this says.
            let _ = tx.try_send(());
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let watched: Result<Box<dyn notify::Watcher + Send>, notify::Error> =
            notify::recommended_watcher(signal.clone())
                .and_then(|mut w| w.watch(&dir, notify::RecursiveMode::NonRecursive).map(|()| w))
                .map(|w| Box::new(w) as Box<dyn notify::Watcher + Send>)
                .or_else(|e| {
                    tracing::info!(path = %path.display(), "no file change notifications ({e}); polling every {interval:?}");
                    let config = notify::Config::default().with_poll_interval(interval);
                    let mut w = notify::PollWatcher::new(signal, config)?;
                    w.watch(&dir, notify::RecursiveMode::NonRecursive)?;
                    Ok(Box::new(w))
                });
        match watched {
            Ok(w) => Self {
                _watcher: Some(w),
                rx,
                poll: None,
            },
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot watch the policy file's folder ({e}); checking it every {interval:?}");
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Self {
                    _watcher: None,
                    rx,
                    poll: Some(tick),
                }
            }
        }
    }

    /// Waits for the next possible change (a burst of writes is one).
    async fn next(&mut self) {
        match &mut self.poll {
            Some(tick) => {
                tick.tick().await;
            }
            None => {
                if self.rx.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                while self.rx.try_recv().is_ok() {}
            }
        }
    }
}

/// The policy set-up every host mode shares: the engine, the embedded
/// default, and the source apps follow unless told otherwise (the default,
/// or `policy.file` — watched and hot-swapped).
pub struct PolicySetup {
    /// The shared engine.
    pub engine: Arc<PolicyEngine>,
    /// The embedded default (the last resort of every app).
    pub default: Arc<LoadedPolicy>,
    /// What apps follow by default.
    pub source: Arc<PolicySource>,
    /// The file watcher, when `policy.file` is set.
    pub watcher: Option<tokio::task::JoinHandle<()>>,
}

/// A policy file that replaces the embedded default (`policy.file`).
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// The component.
    pub path: PathBuf,
    /// Its limits (the host's, with `[policy.file_limits]` applied).
    pub limits: Limits,
    /// How often the file is checked where change notifications are missing.
    pub watch_interval: Duration,
}

impl PolicySetup {
    /// The engine under the host's default `limits`, the embedded default,
    /// and the source apps follow: `file` (watched) if given, else the
    /// default. A bad file is an error.
    pub async fn start(
        limits: Limits,
        file: Option<PolicyFile>,
        metrics: &PolicyMetrics,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let engine = PolicyEngine::new(limits)?;
        let eng = Arc::clone(&engine);
        let default = tokio::task::spawn_blocking(move || load_default(&eng))
            .await?
            .context("the embedded default policy failed validation (a build problem)")?;
        let Some(PolicyFile {
            path,
            limits,
            watch_interval,
        }) = file
        else {
            let source = PolicySource::new("embedded:spare-tickets", Arc::clone(&default));
            return Ok(Self {
                engine,
                default,
                source,
                watcher: None,
            });
        };
        let (eng, p) = (Arc::clone(&engine), path.clone());
        let first = tokio::task::spawn_blocking(move || load_file(&eng, &p, limits)).await??;
        tracing::info!(path = %path.display(), digest = first.short_digest(), "policy loaded from file");
        let source = PolicySource::new(path.display().to_string(), first);
        let watcher = watch_file(
            Arc::clone(&engine),
            Arc::clone(&source),
            path,
            watch_interval,
            limits,
            metrics.clone(),
        );
        Ok(Self {
            engine,
            default,
            source,
            watcher: Some(watcher),
        })
    }
}
