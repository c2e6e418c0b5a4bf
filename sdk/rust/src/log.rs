//! Log lines from a policy: into the host's log (tagged with the policy's
//! digest, rate-limited), or to stderr when the policy runs natively in a
//! test. Log sparingly: a line per call costs more than most decisions.

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// Fine-grained tracing.
    Debug,
    /// Normal events.
    Info,
    /// Something looks wrong (a config the policy cannot read, say).
    Warn,
}

/// Writes `message` at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(all(feature = "export", target_family = "wasm"))]
    crate::guest::log(level, message);
    #[cfg(not(all(feature = "export", target_family = "wasm")))]
    eprintln!("[{level:?}] {message}");
}

/// Writes `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
