//! Clock helpers: wall-clock timestamps for the hub's events, and the monotonic clock that
//! connection ages are measured on.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An RFC 3339 timestamp with milliseconds, e.g. `2026-11-21T23:53:53.123Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Now on Tokio's monotonic clock, as a `std` instant: the same as `Instant::now()` in
/// production, but under a paused Tokio clock (tests: `tokio::time::pause`/`advance`) it moves
/// only with that clock. Connection ages (`opened_at`, the sweep's `connection_timeout`) are
/// measured on it, so that they agree with the timers of the hub's background loops.
pub(crate) fn monotonic_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
