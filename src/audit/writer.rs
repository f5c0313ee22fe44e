//! The spool writer: a dedicated thread (fsync blocks) that turns events into
//! records, appends them to the open segment, fsyncs in group commits, acks
//! strict-mode waiters after their fsync, and seals segments when they are
//! full or old enough.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::config::{AuditConfig, Durability};
use super::record::{self, RecordContext};
use super::spool::{Segment, SpoolDirs};
use super::{AuditMetrics, Event};

pub(super) struct Writer {
    pub config: AuditConfig,
    pub dirs: SpoolDirs,
    pub unit_key: Vec<u8>,
    pub metrics: Arc<AuditMetrics>,
    pub sealed: Arc<Notify>,
}

/// Short against the commit interval (tens of milliseconds) that bounds how
/// long a buffered record may wait for its fsync anyway.
const GATHER_PAUSE: Duration = Duration::from_millis(2);

impl Writer {
    pub fn run(self, events: Receiver<Event>) {
        let mut segment: Option<Segment> = None;
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        let mut last_sync = Instant::now();
        let ctx = RecordContext {
            config: &self.config,
            unit_key: &self.unit_key,
        };
        let mut line = Vec::with_capacity(4096);
        loop {
            let wait = self.next_wakeup(segment.as_ref(), last_sync, !waiting.is_empty());
            let mut closing = false;
            let mut gathered = false;
            match events.recv_timeout(wait) {
                Ok(event) => {
                    gathered = true;
                    let mut next = Some(event);
                    // Drain what is queued, so one fsync covers it all.
                    while let Some(event) = next.take() {
                        self.metrics
                            .queue_depth
                            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        match event {
                            Event::Close => closing = true,
                            event => {
                                line.clear();
                                let record = match &event {
                                    Event::Exchange(exchange, _) => {
                                        record::from_exchange(exchange, &ctx)
                                    }
                                    Event::Refusal(refusal) => record::from_refusal(refusal, &ctx),
                                    Event::Feedback(feedback) => {
                                        record::from_feedback(feedback, &ctx)
                                    }
                                    Event::Close => unreachable!("handled above"),
                                };
                                if serde_json::to_writer(&mut line, &record).is_ok() {
                                    self.append(&mut segment, &line);
                                }
                                if let Event::Exchange(_, Some(ack)) = event {
                                    waiting.push(ack);
                                }
                            }
                        }
                        if closing {
                            break;
                        }
                        next = events.try_recv().ok();
                    }
                    // A killed process then loses only what is still queued.
                    if let Some(Err(error)) = segment.as_mut().map(Segment::write_through) {
                        tracing::error!(%error, "audit spool write failed");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            let strict_waiting =
                self.config.durability == Durability::Strict && !waiting.is_empty();
            if closing || strict_waiting || last_sync.elapsed() >= self.config.commit_interval {
                if let Some(open) = segment.as_mut()
                    && let Err(error) = open.sync()
                {
                    tracing::error!(%error, "audit spool fsync failed");
                }
                last_sync = Instant::now();
                for ack in waiting.drain(..) {
                    let _ = ack.send(());
                }
            }
            let due = segment.as_ref().is_some_and(|s| {
                s.records >= self.config.flush.records
                    || s.bytes >= self.config.flush.bytes
                    || s.opened.elapsed() >= self.config.flush.interval
            });
            if (closing || due)
                && let Some(open) = segment.take()
            {
                self.seal(open);
            }
            if closing {
                return;
            }
            // In buffered mode nobody waits for the spool, so the writer lets
            // records gather for a moment instead of being woken for each:
            // at thousands of requests a second every wake-up was a futex
            // call on a request's thread and a context switch here.
            if gathered && self.config.durability == Durability::Buffered {
                std::thread::sleep(GATHER_PAUSE);
            }
        }
    }

    fn next_wakeup(
        &self,
        segment: Option<&Segment>,
        last_sync: Instant,
        acks_waiting: bool,
    ) -> Duration {
        if acks_waiting {
            return Duration::ZERO;
        }
        let commit = self
            .config
            .commit_interval
            .saturating_sub(last_sync.elapsed());
        match segment {
            Some(s) => commit.min(
                self.config
                    .flush
                    .interval
                    .saturating_sub(s.opened.elapsed()),
            ),
            None => Duration::from_secs(3600),
        }
        .max(Duration::from_millis(1))
    }

    fn append(&self, segment: &mut Option<Segment>, line: &[u8]) {
        if segment.is_none() {
            match Segment::create(&self.dirs) {
                Ok(created) => *segment = Some(created),
                Err(error) => {
                    tracing::error!(%error, "cannot create an audit spool segment: record lost");
                    self.metrics
                        .dropped_io
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }
        if let Some(open) = segment.as_mut() {
            match open.append(line) {
                Ok(()) => {
                    self.metrics
                        .records_written
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.metrics
                        .spool_bytes
                        .fetch_add(line.len() as u64 + 8, std::sync::atomic::Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::error!(%error, "audit spool write failed: record lost");
                    self.metrics
                        .dropped_io
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    fn seal(&self, segment: Segment) {
        let name = segment.name.clone();
        match segment.seal(&self.dirs) {
            Ok(_) => {
                self.metrics
                    .spool_segments
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.sealed.notify_one();
            }
            Err(error) => {
                tracing::error!(%error, segment = %name, "cannot seal an audit spool segment; it will be recovered at the next start")
            }
        }
    }
}
