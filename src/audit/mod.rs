//! The audit log: every request and its answer, tagged with experiment,
//! variant, latency, tokens, cost and status, written durably and uploaded as
//! gzip JSON Lines objects in a Hive layout that Athena, DuckDB and Spark read.
//!
//! Flow: request task → `AuditLog::record` (a non-blocking `try_send` into a
//! bounded channel) → writer thread (builds the record, appends it to the
//! write-ahead spool, fsyncs in group commits, seals full segments) →
//! uploader task (one object per partition of a sealed segment, streamed
//! through gzip files in the spool's `staging/`, stored create-if-absent,
//! segment deleted only after every object is stored).
//! The request path never waits on storage, except in strict mode for the
//! fsync of its own record.

mod disk;
pub mod health;
mod json_line;
mod objects;
pub mod record;
#[cfg(test)]
mod record_reference;
pub mod s3;
pub mod spool;
pub mod store;
mod uploader;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot, watch};

use crate::exchange::{ExchangeSink, FinishedExchange, RecordAck, Refusal};
use promptgate_core::config::audit::{
    AuditConfig, Durability, SpoolCap, SpoolFullPolicy, StoreConfig,
};
use store::{LocalStore, Store};

pub(crate) enum Event {
    /// With an acknowledgement to send once the record is fsynced, or could
    /// not be (strict mode).
    Exchange(Box<FinishedExchange>, Option<oneshot::Sender<RecordAck>>),
    Refusal(Box<Refusal>),
    Feedback(Box<crate::feedback::Feedback>),
    Close,
}

impl Event {
    /// What kind of record, for the log line of a dropped one.
    fn kind(&self) -> &'static str {
        match self {
            Event::Exchange(..) => "exchange",
            Event::Refusal(_) => "refusal",
            Event::Feedback(_) => "feedback",
            Event::Close => "close",
        }
    }

    /// The request a dropped record was about (feedback: the request it rates).
    fn request_id(&self) -> Option<&str> {
        match self {
            Event::Exchange(exchange, _) => Some(&exchange.start.request_id),
            Event::Refusal(refusal) => Some(&refusal.request_id),
            Event::Feedback(feedback) => Some(&feedback.request_id),
            Event::Close => None,
        }
    }
}

/// Counters for `/metrics` and `/readyz`.
#[derive(Default)]
pub struct AuditMetrics {
    pub queue_depth: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// Sealed segments waiting for upload.
    pub spool_segments: AtomicU64,
    pub records_written: AtomicU64,
    pub records_uploaded: AtomicU64,
    pub objects_uploaded: AtomicU64,
    pub upload_failures: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_spool_full: AtomicU64,
    pub dropped_io: AtomicU64,
    /// Records submitted after the writer thread died.
    pub dropped_writer_dead: AtomicU64,
    pub rejected_requests: AtomicU64,
    /// Free bytes on the spool's file system at the last disk check.
    pub spool_free_bytes: AtomicU64,
    /// The spool cap in force (`spool_max_bytes`, or its `auto` share).
    pub spool_cap_bytes: AtomicU64,
    /// Records kept in memory while the spool's disk refuses writes.
    pub records_held: AtomicU64,
    /// Spool incidents: times the disk started refusing writes.
    pub spool_failures: AtomicU64,
    /// Strict-mode answers turned into errors because their record could not be made durable.
    pub records_not_durable: AtomicU64,
    pub health: health::SpoolHealth,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditStartError {
    #[error("audit spool {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
    #[error("audit store {store}: {source}")]
    Store {
        store: String,
        source: store::StoreError,
    },
}

/// The request side of the audit log.
pub struct AuditLog {
    sender: SyncSender<Event>,
    metrics: Arc<AuditMetrics>,
    durability: Durability,
    on_spool_full: SpoolFullPolicy,
    queue_capacity: u64,
}

/// The background side, owned by the app and stopped by `shutdown`.
pub struct AuditTasks {
    sender: SyncSender<Event>,
    writer: Option<std::thread::JoinHandle<()>>,
    uploader: tokio::task::JoinHandle<()>,
    drain: watch::Sender<Option<Instant>>,
    /// Held for the process's life: one spool, one gateway.
    _lock: std::fs::File,
}

pub async fn start(config: &AuditConfig) -> Result<(Arc<AuditLog>, AuditTasks), AuditStartError> {
    let spool_error = |source| AuditStartError::Spool {
        path: config.spool_dir.display().to_string(),
        source,
    };
    let dirs = spool::SpoolDirs::create(&config.spool_dir).map_err(spool_error)?;
    let lock = spool::lock(&config.spool_dir).map_err(spool_error)?;
    let recovered = spool::recover_open_segments(&dirs).map_err(spool_error)?;
    if recovered > 0 {
        tracing::info!(
            records = recovered,
            "audit spool: recovered records from an unclean stop; they will be uploaded"
        );
    }
    let (store, key_prefix) = match &config.store {
        StoreConfig::Local { root } => (
            Store::Local(LocalStore { root: root.clone() }),
            String::new(),
        ),
        StoreConfig::S3 { prefix, .. } => (
            Store::S3(s3::S3Store::connect(&config.store).await),
            if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        ),
    };
    store
        .check()
        .await
        .map_err(|source| AuditStartError::Store {
            store: store.describe(),
            source,
        })?;
    let metrics = Arc::new(AuditMetrics::default());
    metrics
        .spool_bytes
        .store(spool::spool_bytes(&dirs), Ordering::Relaxed);
    if let SpoolCap::Bytes(cap) = config.spool_max {
        metrics.spool_cap_bytes.store(cap, Ordering::Relaxed);
    }
    let cap_warned = disk::check(config, &metrics, false);
    let sealed = Arc::new(Notify::new());
    let (sender, receiver) = std::sync::mpsc::sync_channel(config.queue_capacity);
    let unit_key = config.unit_key_secret.clone().unwrap_or_else(|| {
        tracing::warn!("audit.unit_key_secret_env/_file not set: unit keys are pseudonymised with a random key, so pseudonyms change at every restart and differ between replicas");
        uuid::Uuid::new_v4().as_bytes().to_vec()
    });
    let writer = writer::Writer {
        config: config.clone(),
        dirs: spool::SpoolDirs::create(&config.spool_dir).map_err(spool_error)?,
        unit_key,
        metrics: metrics.clone(),
        sealed: sealed.clone(),
        cap_warned,
    };
    let writer = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || writer.run(receiver))
        .map_err(spool_error)?;
    let (drain, drain_rx) = watch::channel(None);
    let uploader = uploader::Uploader {
        store,
        dirs,
        key_prefix,
        instance: config.instance.clone(),
        compression: config.compression,
        metrics: metrics.clone(),
        sealed: sealed.clone(),
        staging_thread: uploader::StagingThread::start().map_err(spool_error)?,
    };
    // Segments recovered or left over from the last run go first.
    sealed.notify_one();
    let uploader = tokio::spawn(uploader.run(drain_rx));
    let log = Arc::new(AuditLog {
        sender: sender.clone(),
        metrics,
        durability: config.durability,
        on_spool_full: config.on_spool_full,
        queue_capacity: config.queue_capacity as u64,
    });
    Ok((
        log,
        AuditTasks {
            sender,
            writer: Some(writer),
            uploader,
            drain,
            _lock: lock,
        },
    ))
}

impl AuditLog {
    pub fn metrics(&self) -> &AuditMetrics {
        &self.metrics
    }

    fn spool_full(&self) -> bool {
        self.metrics.spool_bytes.load(Ordering::Relaxed)
            >= self.metrics.spool_cap_bytes.load(Ordering::Relaxed)
    }

    /// Whether a new request may start: with the `reject` policy, not while
    /// the spool is at its cap, its disk refuses writes, the writer is dead
    /// or the queue nearly full, so no record of a served request ever has
    /// to be dropped.
    pub fn admits_requests(&self) -> bool {
        if self.on_spool_full == SpoolFullPolicy::Drop {
            return true;
        }
        let queue_nearly_full =
            self.metrics.queue_depth.load(Ordering::Relaxed) * 10 >= self.queue_capacity * 9;
        let health = &self.metrics.health;
        let admitted = !self.spool_full()
            && !queue_nearly_full
            && !health.is_failing()
            && !health.is_writer_dead();
        if !admitted {
            self.metrics
                .rejected_requests
                .fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    fn submit(&self, event: Event) {
        if self.on_spool_full == SpoolFullPolicy::Drop && self.spool_full() {
            self.metrics
                .dropped_spool_full
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                record = event.kind(),
                request_id = event.request_id(),
                "audit spool full (on_spool_full = \"drop\"): record dropped"
            );
            return;
        }
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(event) {
            Ok(()) => {}
            // Logged once, by the writer's `DeathWatch`.
            Err(TrySendError::Disconnected(_)) if self.metrics.health.is_writer_dead() => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                self.metrics
                    .dropped_writer_dead
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(event)) | Err(TrySendError::Disconnected(event)) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                self.metrics
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    record = event.kind(),
                    request_id = event.request_id(),
                    "audit queue full or closed: record dropped"
                );
            }
        }
    }
}

impl ExchangeSink for AuditLog {
    fn record(&self, exchange: FinishedExchange) {
        self.submit(Event::Exchange(Box::new(exchange), None));
    }

    fn promises_durability(&self) -> bool {
        self.durability == Durability::Strict
    }

    fn record_durably(&self, exchange: FinishedExchange) -> Option<oneshot::Receiver<RecordAck>> {
        if self.durability != Durability::Strict {
            self.record(exchange);
            return None;
        }
        let (ack, acked) = oneshot::channel();
        self.submit(Event::Exchange(Box::new(exchange), Some(ack)));
        Some(acked)
    }

    fn record_refusal(&self, refusal: Refusal) {
        self.submit(Event::Refusal(Box::new(refusal)));
    }

    fn record_feedback(&self, feedback: crate::feedback::Feedback) {
        self.submit(Event::Feedback(Box::new(feedback)));
    }
}

impl AuditTasks {
    /// Drains the queue into the spool, seals the open segment, and uploads
    /// what it can within `grace`; the rest stays in the spool for the next start.
    pub async fn shutdown(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let _ = self.sender.send(Event::Close);
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        let _ = self.drain.send(Some(deadline));
        // An upload in flight may hang (a server that accepts but never
        // answers): the grace period bounds it. Abandoning a PUT is safe, the
        // segment stays in the spool and its keys are create-if-absent.
        if tokio::time::timeout_at(deadline.into(), &mut self.uploader)
            .await
            .is_err()
        {
            self.uploader.abort();
            tracing::warn!(
                "audit upload still running at the end of the grace period: the rest stays in the spool for the next start"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_after_the_writer_died_are_counted_as_such_and_admission_stops() {
        let metrics = Arc::new(AuditMetrics::default());
        metrics.spool_cap_bytes.store(u64::MAX, Ordering::Relaxed);
        let (sender, events) = std::sync::mpsc::sync_channel(4);
        let log = AuditLog {
            sender,
            metrics: metrics.clone(),
            durability: Durability::Strict,
            on_spool_full: SpoolFullPolicy::Reject,
            queue_capacity: 4,
        };
        assert!(log.admits_requests());
        let watched = metrics.clone();
        let writer = std::thread::spawn(move || {
            let _watch = health::DeathWatch(&watched.health);
            let _events = events;
            panic!("a writer bug");
        });
        assert!(writer.join().is_err());
        log.record_feedback(crate::feedback::Feedback {
            feedback_id: "fb-1".into(),
            request_id: "req-1".into(),
            metric: "thumbs_up".into(),
            value: crate::feedback::FeedbackValue::Boolean(true),
            comment: None,
            metadata: None,
            client_id: None,
            config_version: "test".into(),
            received_at: std::time::SystemTime::now(),
        });
        assert_eq!(metrics.dropped_writer_dead.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.dropped_queue_full.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.queue_depth.load(Ordering::Relaxed), 0);
        assert!(!log.admits_requests());
    }
}
