//! The spool's health: whether its disk takes writes, and whether the writer
//! thread is alive. The writer sets it; admission control (`AuditLog`),
//! `/readyz` and `/metrics` read it.
//!
//! A failing spool (ENOSPC, EIO, EROFS, a vanished directory) is treated like
//! a full one: with `on_spool_full = "reject"` new requests are refused until
//! a write succeeds again, with `"drop"` they are served and the lost records
//! counted. The writer logs one ERROR when an incident starts and one WARN
//! with its totals when it ends, probing the disk meanwhile with back-off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// First probe after a failure; each failed probe doubles the wait up to `PROBE_MAX`.
pub(super) const PROBE_FIRST: Duration = Duration::from_millis(100);
pub(super) const PROBE_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct SpoolHealth {
    failing: AtomicBool,
    /// Why, while failing (the OS error), for `/readyz`.
    failure: Mutex<Option<String>>,
    writer_dead: AtomicBool,
}

impl SpoolHealth {
    /// Whether the spool's disk currently refuses writes.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// The OS error of the current incident.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn is_writer_dead(&self) -> bool {
        self.writer_dead.load(Ordering::Relaxed)
    }

    pub(crate) fn set_failing(&self, failure: Option<String>) {
        self.failing.store(failure.is_some(), Ordering::Relaxed);
        *self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
    }
}

/// Marks the writer dead if its thread unwinds: held by the thread for its life.
pub(super) struct DeathWatch<'a>(pub &'a SpoolHealth);

impl Drop for DeathWatch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.writer_dead.store(true, Ordering::Relaxed);
            tracing::error!(
                "the audit writer thread panicked: no record is written from now on (counted in promptgate_audit_records_dropped_writer_dead_total); requests are refused with on_spool_full = \"reject\"; restart the gateway"
            );
        }
    }
}

/// One period during which the spool's disk refused writes.
#[derive(Debug)]
pub(super) struct Incident {
    pub started: Instant,
    pub error: String,
    /// Records dropped during it (drop policy, or beyond the memory bound).
    pub lost: u64,
    /// Strict-mode callers answered with an error.
    pub failed_acks: u64,
    backoff: Duration,
    pub next_probe: Instant,
}

impl Incident {
    pub fn new(error: String, now: Instant) -> Incident {
        Incident {
            started: now,
            error,
            lost: 0,
            failed_acks: 0,
            backoff: PROBE_FIRST,
            next_probe: now + PROBE_FIRST,
        }
    }

    /// After a failed probe: wait twice as long, up to `PROBE_MAX`.
    pub fn probe_failed(&mut self, error: String, now: Instant) {
        self.backoff = (self.backoff * 2).min(PROBE_MAX);
        self.next_probe = now + self.backoff;
        self.error = error;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_back_off_from_100_ms_doubling_to_5_s() {
        let start = Instant::now();
        let mut incident = Incident::new("disk full".into(), start);
        assert_eq!(incident.next_probe - start, Duration::from_millis(100));
        let mut waits = Vec::new();
        for _ in 0..8 {
            incident.probe_failed("disk full".into(), start);
            waits.push((incident.next_probe - start).as_millis());
        }
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn a_panicking_writer_is_marked_dead_and_a_returning_one_is_not() {
        let health = std::sync::Arc::new(SpoolHealth::default());
        let watched = health.clone();
        std::thread::spawn(move || {
            let _watch = DeathWatch(&watched);
        })
        .join()
        .unwrap();
        assert!(!health.is_writer_dead());
        let watched = health.clone();
        let joined = std::thread::spawn(move || {
            let _watch = DeathWatch(&watched);
            panic!("writer bug");
        })
        .join();
        assert!(joined.is_err());
        assert!(health.is_writer_dead());
    }

    #[test]
    fn failing_carries_its_reason_until_cleared() {
        let health = SpoolHealth::default();
        assert!(!health.is_failing());
        health.set_failing(Some("No space left on device (os error 28)".into()));
        assert!(health.is_failing());
        assert_eq!(
            health.failure().as_deref(),
            Some("No space left on device (os error 28)")
        );
        health.set_failing(None);
        assert!(!health.is_failing());
        assert_eq!(health.failure(), None);
    }
}
