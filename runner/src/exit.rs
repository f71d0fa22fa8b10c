//! Exit codes shared by every command (decisions.md). The CLI is the only place that exits;
//! everything else returns data that maps to one of these.

/// The work succeeded.
pub const SUCCESS: u8 = 0;
/// The work ran and failed: a run failed or was partly cancelled, `validate` found problems, a
/// scan or gate policy failed, a promotion was denied.
pub const FAILURE: u8 = 1;
/// Usage error or invalid input, nothing ran: bad flags, invalid workflow, unreadable or missing
/// input file.
pub const USAGE: u8 = 2;
/// Infrastructure error: Docker unreachable, store corrupt, disk full, advisory database missing
/// or stale. For `promote`: pending (approvals, soak, window or queue).
pub const INFRA: u8 = 3;
/// Integrity error: ledger verification failed.
pub const INTEGRITY: u8 = 4;
/// Interrupted by SIGINT.
pub const SIGINT: u8 = 130;
/// Interrupted by SIGTERM.
pub const SIGTERM: u8 = 143;
