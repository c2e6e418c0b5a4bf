//! The shared wasmtime engine: configuration, linker (both contract
//! versions), the cache of compiled components, and the per-store host state
//! (deny-by-default WASI, rate-limited logging, memory cap). Limits belong to
//! each loaded policy; the engine only holds the host's defaults.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{v01, v02};

/// Log levels as the host handles them (0.2's; 0.1's are the same three).
type LogLevel = v02::LogLevel;

/// How often the epoch advances; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Longest log line a policy may write; longer ones are cut.
const MAX_LOG_LINE: usize = 512;

/// Compiled components kept by digest (each holds its machine code: a few
/// hundred KB for a Rust policy, tens of MB for a Python one).
const COMPILED_KEPT: usize = 16;

/// Limits of one policy: every call and instantiation runs under them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    pub timeout: Duration,
    /// Most linear memory one policy instance may use.
    pub memory_bytes: usize,
    /// Wall-clock deadline of one instantiation (a component's start-up
    /// code runs then: an interpreter's, for Python or JavaScript).
    pub instantiate_timeout: Duration,
    /// Log lines (from `log` or stdout/stderr) one call may write.
    pub log_lines_per_call: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(10),
            memory_bytes: 16 << 20,
            instantiate_timeout: Duration::from_millis(100),
            log_lines_per_call: 8,
        }
    }
}

/// Most a policy's call deadline may be, in milliseconds.
pub const TIMEOUT_MS_MAX: u64 = 10_000;
/// Most a policy's memory cap may be, in MiB.
pub const MEMORY_MIB_MAX: u64 = 4096;
/// Most a policy's instantiation budget may be, in milliseconds.
pub const INSTANTIATE_TIMEOUT_MS_MAX: u64 = 60_000;

/// Limits one policy sets for itself (TOML `policy.file_limits`, or the
/// annotations of its ConfigMap); what it leaves unset is the host's default.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Deadline of one call, in milliseconds (1 to 10000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Memory cap of one instance, in MiB (1 to 4096).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Deadline of one instantiation, in milliseconds (1 to 60000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instantiate_timeout_ms: Option<u64>,
}

impl LimitOverrides {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: Limits) -> Limits {
        Limits {
            timeout: self.timeout_ms.map_or(base.timeout, Duration::from_millis),
            memory_bytes: self
                .memory_mib
                .map_or(base.memory_bytes, |m| (m as usize) << 20),
            instantiate_timeout: self
                .instantiate_timeout_ms
                .map_or(base.instantiate_timeout, Duration::from_millis),
            log_lines_per_call: base.log_lines_per_call,
        }
    }

    /// The first value out of bounds, as (key, problem).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let within = |v: Option<u64>, max: u64| v.is_none_or(|v| (1..=max).contains(&v));
        if !within(self.timeout_ms, TIMEOUT_MS_MAX) {
            return Err(("timeout_ms", "must be between 1 and 10000"));
        }
        if !within(self.memory_mib, MEMORY_MIB_MAX) {
            return Err(("memory_mib", "must be between 1 and 4096"));
        }
        if !within(self.instantiate_timeout_ms, INSTANTIATE_TIMEOUT_MS_MAX) {
            return Err(("instantiate_timeout_ms", "must be between 1 and 60000"));
        }
        Ok(())
    }
}

// The messages of `LimitOverrides::validate` spell these bounds out.
const _: () = assert!(TIMEOUT_MS_MAX == 10_000);
const _: () = assert!(MEMORY_MIB_MAX == 4096);
const _: () = assert!(INSTANTIATE_TIMEOUT_MS_MAX == 60_000);

/// A deadline in epoch ticks; one extra tick because the first may be
/// nearly over when the call starts.
fn ticks(d: Duration) -> u64 {
    (d.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

impl Limits {
    /// The call deadline in epoch ticks.
    pub fn deadline_ticks(&self) -> u64 {
        ticks(self.timeout)
    }

    /// The instantiation deadline in epoch ticks.
    pub fn instantiate_ticks(&self) -> u64 {
        ticks(self.instantiate_timeout)
    }
}

/// Where a store's log lines go: the host's `tracing` log, tagged with the
/// policy, within a per-call budget shared by `log` and stdout/stderr.
#[derive(Debug, Clone)]
pub struct LogSink {
    policy: Arc<str>,
    budget: Arc<AtomicU32>,
    per_call: u32,
}

impl LogSink {
    fn new(policy: &str, per_call: u32) -> Self {
        Self {
            policy: policy.into(),
            budget: Arc::new(AtomicU32::new(per_call)),
            per_call,
        }
    }

    /// Restores the per-call budget (before each call).
    pub fn reset(&self) {
        self.budget.store(self.per_call, Ordering::Relaxed);
    }

    pub(super) fn emit(&self, level: LogLevel, message: &str) {
        let took = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
        if took.is_err() {
            return;
        }
        let message = truncate(message.trim_end(), MAX_LOG_LINE);
        let policy = &*self.policy;
        match level {
            LogLevel::Debug => {
                tracing::debug!(target: "wicket::policy::guest", policy, "{message}")
            }
            LogLevel::Info => tracing::info!(target: "wicket::policy::guest", policy, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "wicket::policy::guest", policy, "{message}"),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A guest's stdout or stderr: each line becomes a log line of the host.
#[derive(Debug, Clone)]
struct GuestOutput {
    sink: LogSink,
    level: LogLevel,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.3 guests use this path; the contract is WASI 0.2.
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        for line in String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            self.sink.emit(self.level, line);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

/// Per-store data: WASI context (nothing granted), resource table, memory
/// limiter and log sink.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_cap: usize,
    /// Epoch ticks each call may run.
    pub deadline_ticks: u64,
    /// Set when the memory cap refused a growth during the current call.
    pub memory_denied: bool,
    /// The most linear memory (bytes) the instance asked for so far.
    pub peak_memory: usize,
    /// Where guest logs go.
    pub log: LogSink,
    /// The deadline clock; a call holds [`Ticker::running`] while guest code runs.
    pub ticker: Arc<Ticker>,
}

impl HostState {
    /// The most linear memory the instance may have, in bytes.
    pub fn memory_cap(&self) -> usize {
        self.memory_cap
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_denied = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl v02::wicket::policy::types::Host for HostState {}

impl v02::wicket::policy::host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log.emit(level, &message);
    }
}

impl v01::wicket::policy::types::Host for HostState {}

impl v01::wicket::policy::host::Host for HostState {
    fn log(&mut self, level: v01::LogLevel, message: String) {
        let level = match level {
            v01::LogLevel::Debug => LogLevel::Debug,
            v01::LogLevel::Info => LogLevel::Info,
            v01::LogLevel::Warn => LogLevel::Warn,
        };
        self.log.emit(level, &message);
    }
}

/// The engine and linker shared by every policy, with the epoch ticker that
/// enforces call deadlines.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<HostState>,
    /// The host's default limits (a policy may have its own).
    limits: Limits,
    /// Compiled components by digest, oldest first.
    compiled: Mutex<VecDeque<(String, Component)>>,
    /// Jobs for the policy thread (see [`PolicyEngine::run_on_policy_thread`]).
    jobs: std::sync::mpsc::Sender<Job>,
    ticker: Arc<Ticker>,
}

type Job = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Creates the engine and starts its epoch ticker thread (which stops
    /// when the engine is dropped). `limits` are the host's defaults, for
    /// policies loaded without limits of their own.
    pub fn new(limits: Limits) -> anyhow::Result<Arc<Self>> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        v02::Policy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("linking the policy host interface (0.2): {e}"))?;
        v01::Policy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("linking the policy host interface (0.1): {e}"))?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("wicket-policy".into())
            .spawn(move || {
                // Ends when the engine (the only sender) is dropped.
                while let Ok(job) = queue.recv() {
                    job();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the policy thread: {e}"))?;
        let ticker = Arc::new(Ticker::default());
        let this = Arc::new(Self {
            engine,
            linker,
            limits,
            compiled: Mutex::new(VecDeque::new()),
            jobs,
            ticker: Arc::clone(&ticker),
        });
        start_ticker(Arc::downgrade(&this), ticker);
        Ok(this)
    }

    /// Runs `f` on the policy thread; the answer comes back through a
    /// oneshot the caller awaits, so no tokio worker blocks while the call
    /// runs or waits its turn. None if the thread is gone. The thread is
    /// outside any tokio runtime, where WASI's synchronous host functions
    /// may block on their own runtime.
    pub async fn run_on_policy_thread<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have given up (its task was dropped): then the
            // answer is simply not wanted.
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with WASI and the host interface.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// The deadline clock; hold [`Ticker::running`] while guest code runs.
    pub fn ticker(&self) -> &Ticker {
        &self.ticker
    }

    /// The host's default limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The component of `bytes` (whose sha256 is `digest`), compiled now or
    /// taken from the cache of recently compiled ones; true when cached.
    /// Compiling is slow (tens of ms for Rust, seconds for Python): a reload
    /// or hot swap of the same bytes, or the same bytes under other limits,
    /// does not pay it again. The lock is not held while compiling.
    pub fn compile(&self, digest: &str, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
        if let Some((_, c)) = self.compiled.lock().iter().find(|(d, _)| d == digest) {
            return Ok((c.clone(), true));
        }
        let component = Component::new(&self.engine, bytes)?;
        let mut compiled = self.compiled.lock();
        if !compiled.iter().any(|(d, _)| d == digest) {
            if compiled.len() == COMPILED_KEPT {
                compiled.pop_front();
            }
            compiled.push_back((digest.to_owned(), component.clone()));
        }
        Ok((component, false))
    }

    /// A fresh store for one instance of the policy `name`, under `limits`.
    pub fn new_store(&self, name: &str, limits: &Limits) -> Store<HostState> {
        let log = LogSink::new(name, limits.log_lines_per_call);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestOutput {
            sink: log.clone(),
            level: LogLevel::Info,
        })
        .stderr(GuestOutput {
            sink: log.clone(),
            level: LogLevel::Warn,
        });
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory_cap: limits.memory_bytes,
            deadline_ticks: limits.deadline_ticks(),
            memory_denied: false,
            peak_memory: 0,
            log,
            ticker: Arc::clone(&self.ticker),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store
    }
}

/// The deadline clock: advances the engine's epoch every [`EPOCH_TICK`]
/// while guest code runs, and sleeps otherwise, so an idle host does not
/// wake up a thousand times a second (each wake-up also preempts whatever
/// the core was doing: the proxy, under load).
#[derive(Debug, Default)]
pub struct Ticker {
    running: AtomicUsize,
    thread: OnceLock<std::thread::Thread>,
    ticks: AtomicU64,
}

impl Ticker {
    /// Marks guest code as running until the returned guard drops. Take it
    /// before guest code starts: the epoch only moves while some guard is
    /// held (and [`LINGER_TICKS`] after).
    pub fn running(&self) -> Running<'_> {
        if self.running.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
        Running(self)
    }

    /// Epoch increments so far (for tests and diagnostics).
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

/// Guest code is running (see [`Ticker::running`]).
#[derive(Debug)]
pub struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Release);
    }
}

/// How often an idle ticker checks whether its engine is gone.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// Ticks the clock keeps running after the last call ends: under a burst of
/// calls (ticket issues) it then ticks steadily instead of being woken by
/// every call.
const LINGER_TICKS: u32 = 10;

fn start_ticker(engine: Weak<PolicyEngine>, ticker: Arc<Ticker>) {
    let clock = Arc::clone(&ticker);
    let spawned = std::thread::Builder::new()
        .name("wicket-epoch".into())
        .spawn(move || {
            // Ticks since a guest last ran.
            let mut quiet = LINGER_TICKS;
            loop {
                if clock.running.load(Ordering::Acquire) > 0 {
                    quiet = 0;
                } else if quiet >= LINGER_TICKS {
                    // Woken by `Ticker::running` (an unpark before this park
                    // makes it return at once: no call is missed).
                    std::thread::park_timeout(IDLE_RECHECK);
                    if clock.running.load(Ordering::Acquire) == 0 {
                        continue;
                    }
                    quiet = 0;
                } else {
                    quiet += 1;
                }
                let Some(e) = engine.upgrade() else { return };
                e.engine.increment_epoch();
                clock.ticks.fetch_add(1, Ordering::Relaxed);
                drop(e);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    match spawned {
        Ok(handle) => {
            let _ = ticker.thread.set(handle.thread().clone());
        }
        Err(e) => {
            // Without the ticker a looping policy would hang its caller; there is
            // no safe way to run policies, so say so loudly.
            tracing::error!("cannot start the policy deadline thread: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Arc<PolicyEngine> {
        PolicyEngine::new(Limits::default()).expect("engine")
    }

    #[test]
    fn the_deadline_clock_sleeps_while_no_guest_runs() {
        let e = engine();
        std::thread::sleep(Duration::from_millis(50));
        let idle = e.ticker().ticks();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(e.ticker().ticks(), idle, "an idle engine must not tick");

        let running = e.ticker().running();
        std::thread::sleep(Duration::from_millis(100));
        let busy = e.ticker().ticks() - idle;
        // ≈ 100 ticks of 1 ms; a loaded machine sleeps longer than asked.
        assert!(busy >= 5, "only {busy} ticks while a guest ran");
        drop(running);

        // It lingers LINGER_TICKS ticks, then stops: two reads 100 ms apart
        // agree (a few tries, for a busy machine).
        let stopped = (0..20).any(|_| {
            let before = e.ticker().ticks();
            std::thread::sleep(Duration::from_millis(100));
            e.ticker().ticks() == before
        });
        assert!(stopped, "the clock did not stop after the guest ended");
    }
}
