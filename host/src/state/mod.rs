//! Pure, synchronous state of one app: pods, tickets and the waiting queue.
//!
//! Nothing here does I/O, spawns tasks or reads the clock: callers pass `now`.
//! That keeps the rules testable with plain `#[test]`s over event sequences.

mod observed;
mod scaling;
mod serverlist;
mod settings;
mod snapshot;
mod ticket;

pub use observed::{Basis, Estimate, Observed, PRIOR_SESSION};
pub use scaling::ScaleActions;
pub use serverlist::{Backend, IssueError, PodId, PodInfo, Serverlist, Sweep, WaiterId};
pub use settings::{AppSettings, SettingsError};
pub use snapshot::{Phase, ScaleDecision, SnapPod, Snapshot};
pub use ticket::{Grant, Ticket, TicketGuard, Token, TokenParseError};
