//! Pure, synchronous state of one app: pods, tickets and the waiting queue.
//!
//! Nothing here does I/O, spawns tasks or reads the clock: callers pass `now`.
//! That keeps the rules testable with plain `#[test]`s over event sequences.

pub mod arrival_gate;
pub mod arrivals;
mod backend;
pub mod clock;
pub mod duration;
mod observed;
mod scaling;
mod serverlist;
mod settings;
mod snapshot;
mod ticket;

pub use arrival_gate::ArrivalGate;
pub use arrivals::Arrivals;
pub use backend::Backend;
pub use clock::{Clock, UnknownZone, zone};
pub use observed::{Basis, Estimate, Observed, PRIOR_SESSION, Percentiles};
pub use scaling::ScaleActions;
pub use serverlist::{
    IssueError, MirrorChange, Mirrored, PodId, PodInfo, Serverlist, Sweep, WaiterId,
};
pub use settings::{AppSettings, SettingsError};
pub use snapshot::{ObservedTimes, Phase, ScaleDecision, SnapPod, Snapshot, Totals};
pub use ticket::{Grant, Ticket, TicketGuard, Token, TokenDigest, TokenParseError};
