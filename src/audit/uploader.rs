//! The uploader: turns each sealed segment into gzip JSON Lines objects, one
//! per table and (date, hour) partition of its records (`objects.rs`, streamed
//! through staging files), stores them create-if-absent, and deletes the
//! segment only when every object is stored. Object keys are derived from the
//! segment, so an upload repeated after a crash finds its objects already
//! there: each record lands exactly once.
//!
//! Reading and compressing a segment is the uploader's only CPU-heavy work;
//! it runs on a thread of its own at a lower scheduling priority
//! (`StagingThread`), so on a busy machine the request threads go first and
//! a burst of uploads does not show in the served tail latency.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot, watch};

use promptgate_core::config::audit::ObjectCompression;

use super::AuditMetrics;
use super::objects::{self, Naming};
use super::spool::{self, SpoolDirs};
use super::store::{PutOutcome, Store};

const RETRY_BASE: Duration = Duration::from_millis(200);
// Short enough that a spool that refused requests while the store was down
// drains soon after the store is back.
const RETRY_MAX: Duration = Duration::from_secs(5);

pub(super) struct Uploader {
    pub store: Store,
    pub dirs: SpoolDirs,
    /// `""` or `"some/prefix/"`.
    pub key_prefix: String,
    pub instance: String,
    pub compression: ObjectCompression,
    pub metrics: Arc<AuditMetrics>,
    pub sealed: Arc<Notify>,
    pub staging_thread: StagingThread,
}

/// How much lower than the gateway's the staging thread's priority is (a
/// nice value: +10 gives it about a tenth of a core's share against a busy
/// request thread, and the whole of an idle one).
const STAGING_NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The thread that turns segments into compressed objects, one job at a
/// time. It ends when its handle is dropped (with the uploader), after the
/// job it is running. Its own thread rather than tokio's blocking pool: a
/// pool thread's priority cannot be lowered for one job and raised again
/// (an unprivileged process may only lower it), and the pool runs the local
/// store's file work too.
pub(super) struct StagingThread {
    jobs: mpsc::Sender<Job>,
}

impl StagingThread {
    pub fn start() -> io::Result<StagingThread> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("audit-compress".into())
            .spawn(move || {
                lower_this_threads_priority();
                for job in queue {
                    // A job that panics fails its own upload attempt (its
                    // result is never sent) and the thread goes on with the
                    // next, as tokio's blocking pool did.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("staging an audit segment panicked; will retry");
                    }
                }
            })?;
        Ok(StagingThread { jobs })
    }

    /// Runs `work` on the staging thread; `None` if it panicked (or the
    /// thread is gone), which the caller treats as a failed attempt.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .ok()?;
        result.await.ok()
    }
}

/// Linux: a thread is a task with its own nice value (`setpriority` on its
/// thread id). Elsewhere the same call would renice the whole process, so the
/// thread keeps the gateway's priority there.
#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    use rustix::process::{getpriority_process, setpriority_process};
    let thread = Some(rustix::thread::gettid());
    let lowered = getpriority_process(thread)
        .and_then(|nice| setpriority_process(thread, (nice + STAGING_NICENESS).min(19)));
    if let Err(error) = lowered {
        tracing::warn!(%error, "cannot lower the audit compression thread's priority; it competes with request threads as an equal");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

impl Uploader {
    /// Uploads sealed segments until `shutdown` is set; then makes a last pass
    /// bounded by `drain_deadline` (what is left stays for the next start).
    pub async fn run(self, mut shutdown: watch::Receiver<Option<Instant>>) {
        let mut failures = 0u32;
        loop {
            let drain_deadline = *shutdown.borrow();
            let all_done = self.upload_pending(drain_deadline).await;
            if drain_deadline.is_some() {
                if !all_done {
                    tracing::warn!(
                        "audit upload did not finish within the grace period: the rest stays in the spool for the next start"
                    );
                }
                return;
            }
            let pause = if all_done {
                failures = 0;
                Duration::from_secs(3600)
            } else {
                failures = failures.saturating_add(1);
                RETRY_BASE
                    .saturating_mul(1 << failures.min(8))
                    .min(RETRY_MAX)
            };
            tokio::select! {
                () = self.sealed.notified() => {}
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Returns true when the spool had nothing left to upload.
    async fn upload_pending(&self, deadline: Option<Instant>) -> bool {
        let segments = match spool::segments_in(&self.dirs.sealed) {
            Ok(segments) => segments,
            Err(error) => {
                tracing::error!(%error, "cannot list the audit spool");
                return false;
            }
        };
        for segment in segments {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let upload = self.upload_segment(&segment);
            let result = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), upload)
                    .await
                    .unwrap_or(Err(())),
                None => upload.await,
            };
            if result.is_err() {
                return false;
            }
        }
        true
    }

    async fn upload_segment(&self, path: &Path) -> Result<(), ()> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (prefix, instance, owned_path) = (
            self.key_prefix.clone(),
            self.instance.clone(),
            path.to_owned(),
        );
        let (staging, quarantine) = (self.dirs.staging.clone(), self.dirs.quarantine.clone());
        let compression = self.compression;
        let built = self
            .staging_thread
            .run(move || {
                let naming = Naming {
                    key_prefix: &prefix,
                    instance: &instance,
                    segment: &name,
                    compression,
                };
                objects::stage_segment(&owned_path, &staging, &quarantine, &naming)
            })
            .await;
        let staged = match built {
            Some(Ok(staged)) => staged,
            Some(Err(error)) => {
                // A full spool disk (no room to stage) is an upload failure
                // like any other: retried, the segment stays.
                self.metrics.upload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, segment = %path.display(), "cannot read an audit spool segment or stage its objects; will retry");
                return Err(());
            }
            None => return Err(()),
        };
        for object in &staged.objects {
            let key = &object.key;
            match self.store.put_file_if_absent(key, &object.path).await {
                Ok(PutOutcome::Created) => {
                    self.metrics
                        .objects_uploaded
                        .fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .records_uploaded
                        .fetch_add(object.records, Ordering::Relaxed);
                }
                Ok(PutOutcome::AlreadyExists) => {
                    tracing::info!(%key, "audit object already stored by an earlier attempt");
                }
                Err(error) => {
                    self.metrics.upload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, %key, "audit upload failed; will retry");
                    return Err(());
                }
            }
        }
        if let Err(error) = std::fs::remove_file(path) {
            tracing::error!(%error, segment = %path.display(), "cannot delete an uploaded audit segment");
            return Err(());
        }
        objects::remove_staged(&staged);
        let _ =
            self.metrics
                .spool_segments
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        // Saturating: the writer adds concurrently, and a recovered segment's
        // size may differ from what was counted at start-up.
        let _ = self
            .metrics
            .spool_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(staged.segment_bytes))
            });
        Ok(())
    }
}
