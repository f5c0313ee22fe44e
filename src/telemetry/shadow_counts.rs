//! Counters of one experiment's shadow activity, kept by the shadow runner
//! and read by the admin listener's `/metrics` under an `experiment` label.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::exchange::SkipReason;

#[derive(Default)]
pub struct ShadowMetrics {
    pub started: AtomicU64,
    /// Ended with a complete 2xx answer.
    pub completed: AtomicU64,
    /// Ended any other way: provider error, timeout, broken stream, cancelled.
    pub failed: AtomicU64,
    skipped: [AtomicU64; SkipReason::ALL.len()],
    pub in_flight: AtomicU64,
    pub cost_nano_usd: AtomicU64,
}

impl ShadowMetrics {
    pub fn skip(&self, reason: SkipReason) {
        self.skipped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[reason as usize].load(Ordering::Relaxed)
    }

    pub fn cost_usd(&self) -> f64 {
        self.cost_nano_usd.load(Ordering::Relaxed) as f64 / 1e9
    }
}
