//! The spool's file system: how much it can still hold, checked at start-up
//! and every `CHECK_EVERY` on the writer thread (never on the request path).
//! `statvfs` comes from `rustix` (safe bindings, already in the build through
//! `tempfile`), so no `unsafe` libc call is needed.

use std::path::Path;
use std::time::Duration;

use std::sync::atomic::Ordering::Relaxed;

use super::AuditMetrics;
use promptgate_core::config::audit::{AuditConfig, SpoolCap};

pub(super) const CHECK_EVERY: Duration = Duration::from_secs(10);

/// With `spool_max_bytes = "auto"`, the spool may take this share (in
/// percent) of what its file system can give it; the rest is room for the
/// uploader's staged objects and anything else on the volume.
const AUTO_SHARE_PERCENT: u64 = 80;

/// Staged objects are gzip JSON Lines, a fraction of the segment they come
/// from (JSON records compress several times); a quarter is a safe bound.
const STAGED_SHARE_DIVISOR: u64 = 4;

/// Bytes an unprivileged writer can still allocate on `path`'s file system.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(path)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// What the spool was measured against at one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskView {
    /// Free bytes on the spool's file system.
    pub free: u64,
    /// The spool's own bytes, which it could free by uploading.
    pub spool: u64,
    /// The cap in force: the auto share, or the configured bytes but never
    /// more than the volume holds with room left for staging (a spool that
    /// filled its disk could not stage its objects to upload them, and would
    /// stay full for good).
    pub cap: u64,
    /// The configured cap plus room for one segment's staged objects is more
    /// than the volume can hold (and the cap in force is lower).
    pub cap_exceeds_volume: bool,
}

impl DiskView {
    /// `segment_bytes`: how large a segment grows before it is sealed (`flush_bytes`).
    pub fn measure(configured: SpoolCap, free: u64, spool: u64, segment_bytes: u64) -> DiskView {
        let room = free.saturating_add(spool);
        let staging = |cap: u64| segment_bytes.min(cap) / STAGED_SHARE_DIVISOR;
        match configured {
            SpoolCap::Bytes(bytes) => DiskView {
                free,
                spool,
                cap: bytes.min(room - staging(room)),
                cap_exceeds_volume: bytes.saturating_add(staging(bytes)) > room,
            },
            SpoolCap::Auto => DiskView {
                free,
                spool,
                cap: room / 100 * AUTO_SHARE_PERCENT,
                cap_exceeds_volume: false,
            },
        }
    }
}

/// Measures the spool's file system, publishes free bytes and the cap in
/// force, and warns when the cap no longer fits the volume (once per change:
/// `warned` is whether the last check warned; the result is this one's).
pub(super) fn check(config: &AuditConfig, metrics: &AuditMetrics, warned: bool) -> bool {
    let free = match free_bytes(&config.spool_dir) {
        Ok(free) => free,
        // A vanished or failing spool is the writer's incident to report.
        Err(error) => {
            tracing::debug!(%error, "cannot measure the audit spool's file system");
            return warned;
        }
    };
    let spool = metrics.spool_bytes.load(Relaxed);
    let view = DiskView::measure(config.spool_max, free, spool, config.flush.bytes);
    metrics.spool_free_bytes.store(free, Relaxed);
    metrics.spool_cap_bytes.store(view.cap, Relaxed);
    if view.cap_exceeds_volume && !warned {
        tracing::warn!(
            spool = %config.spool_dir.display(),
            spool_cap_bytes = view.cap,
            free_bytes = free,
            spool_bytes = spool,
            "audit.spool_max_bytes plus room for one segment's staged objects is more than the spool's file system can hold: the spool is capped at what fits instead (spool_cap_bytes); lower spool_max_bytes (or set it to \"auto\") or give the spool a larger volume"
        );
    }
    view.cap_exceeds_volume
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_fixed_cap_larger_than_the_volume_is_flagged_and_held_to_what_fits() {
        // The case: the default 1 GiB cap on a 3 MiB tmpfs. The spool
        // stops at three quarters, leaving a quarter to stage its objects.
        let view = DiskView::measure(SpoolCap::Bytes(1 << 30), 3 * MIB, 0, 64 * MIB);
        assert_eq!(view.cap, 3 * MIB - 3 * MIB / 4);
        assert!(view.cap_exceeds_volume);
        let view = DiskView::measure(SpoolCap::Bytes(MIB), 3 * MIB, 0, 64 * MIB);
        assert_eq!(view.cap, MIB);
        assert!(!view.cap_exceeds_volume);
    }

    #[test]
    fn the_spools_own_bytes_count_as_room() {
        // 2 MiB spooled, 1 MiB free: a 2.5 MiB cap still fits with its staging room.
        let view = DiskView::measure(SpoolCap::Bytes(5 * MIB / 2), MIB, 2 * MIB, MIB);
        assert!(!view.cap_exceeds_volume, "{view:?}");
    }

    #[test]
    fn auto_takes_80_percent_of_the_room_and_leaves_the_rest_for_staging() {
        let view = DiskView::measure(SpoolCap::Auto, 8 * MIB, 2 * MIB, 64 * MIB);
        assert_eq!(view.cap, 10 * MIB / 100 * 80);
        assert!(!view.cap_exceeds_volume);
        // Recomputed as the volume fills with other data.
        let view = DiskView::measure(SpoolCap::Auto, 0, 0, 64 * MIB);
        assert_eq!(view.cap, 0);
    }

    #[test]
    fn free_bytes_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
