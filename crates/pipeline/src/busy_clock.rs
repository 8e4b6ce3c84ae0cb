//! [`BusyClock`]: the busy seconds of one stage, added from its thread and read at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Busy nanoseconds, shared with a stage's thread.
#[derive(Debug, Default, Clone)]
pub(crate) struct BusyClock(Arc<AtomicU64>);

impl BusyClock {
    /// Adds `d`.
    pub(crate) fn add(&self, d: Duration) {
        self.0.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// Seconds so far.
    pub(crate) fn seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 * 1e-9
    }
}
