//! `/readyz`: ready while the client listener accepts and the audit log is not
//! failing beyond what the operator tolerates. (A config is always loaded once
//! the gateway runs: a failed reload leaves the previous one serving, and a
//! config source that cannot be read — an S3 outage — leaves the replica
//! ready: `/readyz` names the failing source in its `config_source` detail.)
//!
//! The audit log is unready when its writer thread died, when the spool's
//! disk refuses writes (full, failing, read-only, directory gone: whatever
//! `on_spool_full` says, records are then not being written), when admission
//! control refuses requests (the spool is at its cap or the queue nearly
//! full, with `on_spool_full = "reject"`), or when uploads have been failing, with nothing stored and
//! segments waiting, for longer than `admin.readiness_audit_failure_ms`. A
//! load balancer then sends traffic to replicas that can record it.

use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::audit::AuditMetrics;
use promptgate_core::config::audit::{AuditConfig, SpoolFullPolicy};

/// The audit log's limits, as admission control applies them.
#[derive(Debug, Clone, Copy)]
struct AuditLimits {
    queue_capacity: u64,
    refuses_when_full: bool,
}

/// Upload progress as last seen, to tell a failing store from a slow one.
#[derive(Debug, Default)]
struct UploadWatch {
    failures: u64,
    stored: u64,
    failing_since: Option<Instant>,
}

#[derive(Debug)]
pub struct Readiness {
    audit: Option<AuditLimits>,
    uploads: Mutex<UploadWatch>,
}

impl Readiness {
    pub fn new(audit: Option<&AuditConfig>) -> Readiness {
        Readiness {
            audit: audit.map(|audit| AuditLimits {
                queue_capacity: audit.queue_capacity as u64,
                refuses_when_full: audit.on_spool_full == SpoolFullPolicy::Reject,
            }),
            uploads: Mutex::default(),
        }
    }

    /// `Err(reason)` when not ready.
    pub fn check(
        &self,
        accepting: bool,
        audit: Option<&AuditMetrics>,
        tolerated: Duration,
    ) -> Result<(), String> {
        if !accepting {
            return Err("the client listener is not accepting connections".into());
        }
        let (Some(limits), Some(metrics)) = (self.audit, audit) else {
            return Ok(());
        };
        if metrics.health.is_writer_dead() {
            return Err("the audit writer thread died: no record is written".into());
        }
        if let Some(failure) = metrics.health.failure() {
            return Err(failure);
        }
        let spool_bytes = metrics.spool_bytes.load(Relaxed);
        if limits.refuses_when_full {
            let cap = metrics.spool_cap_bytes.load(Relaxed);
            if spool_bytes >= cap {
                return Err(format!(
                    "the audit spool is full ({spool_bytes} of {cap} bytes): requests are refused"
                ));
            }
            if metrics.queue_depth.load(Relaxed) * 10 >= limits.queue_capacity * 9 {
                return Err("the audit queue is nearly full: requests are refused".into());
            }
        }
        let failing_for = self.upload_failing_for(metrics, Instant::now());
        match failing_for {
            Some(failing) if failing >= tolerated => Err(format!(
                "audit uploads have been failing for {} s ({spool_bytes} bytes spooled)",
                failing.as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// How long uploads have failed without storing anything while segments
    /// wait. Advanced by each check (probes come every few seconds); any
    /// stored object, or an empty backlog, clears it.
    fn upload_failing_for(&self, metrics: &AuditMetrics, now: Instant) -> Option<Duration> {
        let failures = metrics.upload_failures.load(Relaxed);
        let stored = metrics.objects_uploaded.load(Relaxed);
        let backlog = metrics.spool_segments.load(Relaxed);
        let mut watch = self
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stored > watch.stored || backlog == 0 {
            watch.failing_since = None;
        } else if failures > watch.failures && watch.failing_since.is_none() {
            watch.failing_since = Some(now);
        }
        watch.failures = failures;
        watch.stored = stored;
        watch.failing_since.map(|since| now.duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Readiness {
        Readiness {
            audit: Some(AuditLimits {
                queue_capacity: 100,
                refuses_when_full: true,
            }),
            uploads: Mutex::default(),
        }
    }

    #[test]
    fn unready_while_admission_refuses() {
        let ready = limits();
        let metrics = AuditMetrics::default();
        metrics.spool_cap_bytes.store(1_000, Relaxed);
        assert_eq!(
            ready.check(true, Some(&metrics), Duration::from_secs(60)),
            Ok(())
        );
        assert!(
            ready
                .check(false, Some(&metrics), Duration::from_secs(60))
                .is_err()
        );
        metrics.spool_bytes.store(1_000, Relaxed);
        let reason = ready
            .check(true, Some(&metrics), Duration::from_secs(60))
            .unwrap_err();
        assert!(reason.contains("spool is full"), "{reason}");
        metrics.spool_bytes.store(0, Relaxed);
        metrics.queue_depth.store(95, Relaxed);
        assert!(
            ready
                .check(true, Some(&metrics), Duration::from_secs(60))
                .is_err()
        );
    }

    #[test]
    fn failing_uploads_count_from_the_first_failure_seen_until_one_succeeds() {
        let ready = limits();
        let metrics = AuditMetrics::default();
        let start = Instant::now();
        metrics.spool_segments.store(2, Relaxed);
        assert_eq!(ready.upload_failing_for(&metrics, start), None);
        metrics.upload_failures.store(3, Relaxed);
        assert_eq!(
            ready.upload_failing_for(&metrics, start),
            Some(Duration::ZERO)
        );
        let later = start + Duration::from_secs(90);
        metrics.upload_failures.store(9, Relaxed);
        assert_eq!(
            ready.upload_failing_for(&metrics, later),
            Some(Duration::from_secs(90))
        );
        // One object stored: the store works again.
        metrics.objects_uploaded.store(1, Relaxed);
        assert_eq!(ready.upload_failing_for(&metrics, later), None);
        // Failures with nothing waiting are not a backlog.
        metrics.spool_segments.store(0, Relaxed);
        metrics.upload_failures.store(12, Relaxed);
        assert_eq!(ready.upload_failing_for(&metrics, later), None);
    }

    #[test]
    fn unready_while_the_spool_fails_or_the_writer_is_dead_under_either_policy() {
        for refuses_when_full in [true, false] {
            let ready = Readiness {
                audit: Some(AuditLimits {
                    queue_capacity: 100,
                    refuses_when_full,
                }),
                uploads: Mutex::default(),
            };
            let metrics = AuditMetrics::default();
            metrics.spool_cap_bytes.store(1_000, Relaxed);
            let check = || ready.check(true, Some(&metrics), Duration::from_secs(60));
            assert_eq!(check(), Ok(()));
            metrics.health.set_failing(Some(
                "audit spool failing: No space left on device (os error 28)".into(),
            ));
            assert_eq!(
                check(),
                Err("audit spool failing: No space left on device (os error 28)".into())
            );
            metrics.health.set_failing(None);
            assert_eq!(check(), Ok(()));
        }
    }
}
