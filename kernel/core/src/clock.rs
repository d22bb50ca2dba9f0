//! The kernel's clock: wall time plus an offset that only a server started
//! with a development clock lets an admin move forward, so tests can make
//! time pass (timers, SLA breaches) without sleeping.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);
static ADJUSTABLE: AtomicBool = AtomicBool::new(false);

/// Milliseconds since the Unix epoch, as the kernel sees them.
pub fn now_ms() -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    wall + OFFSET_MS.load(Ordering::Relaxed)
}

/// Allows `advance` in this process (`crm serve --dev-clock`).
pub fn make_adjustable() {
    ADJUSTABLE.store(true, Ordering::Relaxed);
}

pub fn is_adjustable() -> bool {
    ADJUSTABLE.load(Ordering::Relaxed)
}

/// Moves the clock forward; refused unless the clock is adjustable.
pub fn advance(ms: i64) -> crate::Result<i64> {
    if !is_adjustable() {
        return Err(crate::Error::new(crate::ErrorKind::Forbidden, "the clock can only be moved on a server started with --dev-clock"));
    }
    if ms < 0 {
        return Err(crate::Error::invalid("the clock only moves forward"));
    }
    OFFSET_MS.fetch_add(ms, Ordering::Relaxed);
    Ok(now_ms())
}
