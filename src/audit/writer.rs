//! The spool writer: a dedicated thread (fsync blocks) that turns events into
//! records, appends them to the open segment, fsyncs in group commits, acks
//! strict-mode waiters after their fsync, and seals segments when they are
//! full or old enough.
//!
//! When the spool's disk refuses a write or an fsync (full, failing,
//! read-only, directory gone) the writer enters an incident (`health.rs`):
//! the frames that were not fsynced are kept in memory with every record that
//! arrives meanwhile (bounded by `MAX_HELD_BYTES`; with `on_spool_full =
//! "drop"` in buffered mode they are dropped and counted instead), strict
//! callers are told their record is not durable, and the disk is probed with
//! back-off until it takes writes again; then the held records are written
//! first.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::config::{AuditConfig, Durability, SpoolFullPolicy};
use super::disk;
use super::health::{DeathWatch, Incident};
use super::record::{self, RecordContext};
use super::spool::{self, Leftover, Segment, SpoolDirs};
use super::{AuditMetrics, Event};
use crate::capture::RecordAck;

pub(super) struct Writer {
    pub config: AuditConfig,
    pub dirs: SpoolDirs,
    pub unit_key: Vec<u8>,
    pub metrics: Arc<AuditMetrics>,
    pub sealed: Arc<Notify>,
    /// Whether the start-up disk check already warned that the cap exceeds the volume.
    pub cap_warned: bool,
}

/// Short against the commit interval (tens of milliseconds) that bounds how
/// long a buffered record may wait for its fsync anyway.
const GATHER_PAUSE: Duration = Duration::from_millis(2);

/// Records held in memory while the spool's disk refuses writes. Beyond it
/// they are dropped and counted: memory must not grow with an outage.
const MAX_HELD_BYTES: usize = 64 << 20;

type Ack = oneshot::Sender<RecordAck>;

/// Frames waiting in memory for the disk to take writes again.
#[derive(Default)]
struct Held {
    frames: Vec<u8>,
    records: u64,
}

struct State {
    segment: Option<Segment>,
    /// Strict-mode callers waiting for the next fsync.
    waiting: Vec<Ack>,
    held: Held,
    incident: Option<Incident>,
    /// Abandoned segment files still to cut and seal.
    leftovers: Vec<Leftover>,
    last_sync: Instant,
    next_disk_check: Instant,
    cap_warned: bool,
}

impl Writer {
    pub fn run(self, events: Receiver<Event>) {
        let _watch = DeathWatch(&self.metrics.health);
        let now = Instant::now();
        let mut state = State {
            segment: None,
            waiting: Vec::new(),
            held: Held::default(),
            incident: None,
            leftovers: Vec::new(),
            last_sync: now,
            next_disk_check: now + disk::CHECK_EVERY,
            cap_warned: self.cap_warned,
        };
        let ctx = RecordContext {
            config: &self.config,
            unit_key: &self.unit_key,
        };
        let mut line = Vec::with_capacity(4096);
        loop {
            let wait = self.next_wakeup(&state);
            let mut closing = false;
            let mut gathered = false;
            match events.recv_timeout(wait) {
                Ok(event) => {
                    gathered = true;
                    let mut next = Some(event);
                    // Drain what is queued, so one fsync covers it all.
                    while let Some(event) = next.take() {
                        self.metrics.queue_depth.fetch_sub(1, Relaxed);
                        if let Event::Close = event {
                            closing = true;
                            break;
                        }
                        self.take(event, &ctx, &mut line, &mut state);
                        next = events.try_recv().ok();
                    }
                    // A killed process then loses only what is still queued.
                    if let Some(Err(error)) = state.segment.as_mut().map(Segment::write_through) {
                        self.fail(&mut state, &error);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            if state
                .incident
                .as_ref()
                .is_some_and(|incident| closing || Instant::now() >= incident.next_probe)
            {
                self.probe(&mut state);
            }
            // `waiting` holds strict-mode acks only.
            if closing
                || !state.waiting.is_empty()
                || state.last_sync.elapsed() >= self.config.commit_interval
            {
                self.commit(&mut state);
            }
            let due = state.segment.as_ref().is_some_and(|s| {
                s.records >= self.config.flush.records
                    || s.bytes >= self.config.flush.bytes
                    || s.opened.elapsed() >= self.config.flush.interval
            });
            if (closing || due)
                && let Some(open) = state.segment.take()
            {
                self.seal(open, &mut state);
            }
            if Instant::now() >= state.next_disk_check {
                state.next_disk_check = Instant::now() + disk::CHECK_EVERY;
                state.cap_warned = disk::check(&self.config, &self.metrics, state.cap_warned);
            }
            if closing {
                self.close(&state);
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

    /// Whether records are kept in memory while the disk fails: strict mode
    /// promises them, and the reject policy promises that no record of a
    /// served request is dropped.
    fn holds_records(&self) -> bool {
        self.config.durability == Durability::Strict
            || self.config.on_spool_full == SpoolFullPolicy::Reject
    }

    fn take(&self, event: Event, ctx: &RecordContext<'_>, line: &mut Vec<u8>, state: &mut State) {
        line.clear();
        let (record, ack) = match event {
            Event::Exchange(exchange, ack) => (record::from_exchange(&exchange, ctx), ack),
            Event::Refusal(refusal) => (record::from_refusal(&refusal, ctx), None),
            Event::Feedback(feedback) => (record::from_feedback(&feedback, ctx), None),
            Event::Close => return,
        };
        if let Err(error) = serde_json::to_writer(&mut *line, &record) {
            tracing::error!(%error, "audit record could not be serialised: record lost");
            self.metrics.dropped_io.fetch_add(1, Relaxed);
            if let Some(ack) = ack {
                let _ = ack.send(RecordAck::NotDurable);
            }
            return;
        }
        if state.incident.is_none() {
            match self.append(&mut state.segment, line) {
                Ok(()) => {
                    state.waiting.extend(ack);
                    return;
                }
                Err(error) => self.fail(state, &error),
            }
        }
        let mut frame = Vec::with_capacity(line.len() + 8);
        if spool::frame_into(&mut frame, line).is_ok() {
            self.hold(state, &frame, 1);
        }
        if let Some(ack) = ack {
            self.not_durable(state, ack);
        }
    }

    fn append(&self, segment: &mut Option<Segment>, line: &[u8]) -> io::Result<()> {
        let open = match segment {
            Some(open) => open,
            None => segment.insert(Segment::create(&self.dirs)?),
        };
        let before = open.bytes;
        open.append(line)?;
        self.metrics.records_written.fetch_add(1, Relaxed);
        self.metrics
            .spool_bytes
            .fetch_add(open.bytes - before, Relaxed);
        Ok(())
    }

    /// Keeps frames for the end of the incident, or drops and counts them.
    fn hold(&self, state: &mut State, frames: &[u8], records: u64) {
        if records == 0 {
            return;
        }
        let fits = state.held.frames.len() + frames.len() <= MAX_HELD_BYTES;
        if self.holds_records() && fits {
            state.held.frames.extend_from_slice(frames);
            state.held.records += records;
            self.metrics.records_held.store(state.held.records, Relaxed);
        } else {
            self.metrics.dropped_io.fetch_add(records, Relaxed);
            if let Some(incident) = state.incident.as_mut() {
                incident.lost += records;
            }
        }
    }

    fn not_durable(&self, state: &mut State, ack: Ack) {
        let _ = ack.send(RecordAck::NotDurable);
        self.metrics.records_not_durable.fetch_add(1, Relaxed);
        if let Some(incident) = state.incident.as_mut() {
            incident.failed_acks += 1;
        }
    }

    /// A write, fsync or seal failed: abandon the segment, keep what was not
    /// durable, fail the strict waiters, and start (or extend) the incident.
    fn fail(&self, state: &mut State, error: &io::Error) {
        let now = Instant::now();
        let started = match state.incident.as_mut() {
            Some(incident) => {
                incident.probe_failed(error.to_string(), now);
                false
            }
            None => {
                state.incident = Some(Incident::new(error.to_string(), now));
                self.metrics
                    .health
                    .set_failing(Some(format!("audit spool failing: {error}")));
                self.metrics.spool_failures.fetch_add(1, Relaxed);
                true
            }
        };
        if let Some(segment) = state.segment.take() {
            let abandoned = segment.abandon(&self.dirs);
            let _ = self
                .metrics
                .spool_bytes
                .fetch_update(Relaxed, Relaxed, |n| {
                    Some(n.saturating_sub(abandoned.frames.len() as u64))
                });
            let _ = self
                .metrics
                .records_written
                .fetch_update(Relaxed, Relaxed, |n| {
                    Some(n.saturating_sub(abandoned.records))
                });
            if abandoned.sealed {
                self.segment_sealed();
            }
            state.leftovers.extend(abandoned.leftover);
            self.hold(state, &abandoned.frames, abandoned.records);
        }
        for ack in std::mem::take(&mut state.waiting) {
            self.not_durable(state, ack);
        }
        if started && let Some(incident) = &state.incident {
            let policy = match (self.config.durability, self.config.on_spool_full) {
                (_, SpoolFullPolicy::Reject) => {
                    "new requests are refused with 503 until a write succeeds"
                }
                (Durability::Strict, SpoolFullPolicy::Drop) => {
                    "requests are answered with 503 while their records cannot be made durable"
                }
                (Durability::Buffered, SpoolFullPolicy::Drop) => {
                    "requests are served and their records dropped and counted"
                }
            };
            tracing::error!(
                %error,
                spool = %self.config.spool_dir.display(),
                records_held = state.held.records,
                records_lost = incident.lost,
                "audit spool failing: {policy}; probing the disk with back-off"
            );
        }
    }

    /// Whether the disk takes writes again: recreates the spool's
    /// directories if they vanished, settles abandoned files, writes a probe
    /// file, then the held records into a new segment.
    fn probe(&self, state: &mut State) {
        match self.try_recover(state) {
            Ok(()) => {
                if let Some(incident) = state.incident.take() {
                    self.metrics.health.set_failing(None);
                    tracing::warn!(
                        spool = %self.config.spool_dir.display(),
                        failed_for_ms = incident.started.elapsed().as_millis() as u64,
                        last_error = %incident.error,
                        records_lost = incident.lost,
                        strict_answers_failed = incident.failed_acks,
                        "audit spool recovered: writes succeed again, held records written"
                    );
                }
            }
            Err(error) => {
                if let Some(incident) = state.incident.as_mut() {
                    incident.probe_failed(error.to_string(), Instant::now());
                    self.metrics
                        .health
                        .set_failing(Some(format!("audit spool failing: {error}")));
                }
            }
        }
    }

    fn try_recover(&self, state: &mut State) -> io::Result<()> {
        SpoolDirs::create(&self.config.spool_dir)?;
        while let Some(leftover) = state.leftovers.last() {
            if leftover.settle(&self.dirs)? {
                self.segment_sealed();
            }
            state.leftovers.pop();
        }
        spool::probe_write(&self.dirs)?;
        if state.held.records > 0 {
            let mut segment = Segment::create(&self.dirs)?;
            segment.append_frames(&state.held.frames, state.held.records);
            if let Err(error) = segment.sync() {
                // The held frames stay held; the copy in the segment goes.
                let abandoned = segment.abandon(&self.dirs);
                state.leftovers.extend(abandoned.leftover);
                return Err(error);
            }
            let held = std::mem::take(&mut state.held);
            self.metrics.records_held.store(0, Relaxed);
            self.metrics
                .records_written
                .fetch_add(held.records, Relaxed);
            self.metrics
                .spool_bytes
                .fetch_add(held.frames.len() as u64, Relaxed);
            state.segment = Some(segment);
        }
        Ok(())
    }

    fn commit(&self, state: &mut State) {
        state.last_sync = Instant::now();
        let Some(open) = state.segment.as_mut() else {
            return;
        };
        match open.sync() {
            Ok(_) => {
                for ack in state.waiting.drain(..) {
                    let _ = ack.send(RecordAck::Durable);
                }
            }
            Err(error) => self.fail(state, &error),
        }
    }

    fn seal(&self, segment: Segment, state: &mut State) {
        match segment.seal(&self.dirs) {
            Ok(_) => self.segment_sealed(),
            Err((segment, error)) => {
                state.segment = Some(segment);
                self.fail(state, &error);
            }
        }
    }

    fn segment_sealed(&self) {
        self.metrics.spool_segments.fetch_add(1, Relaxed);
        self.sealed.notify_one();
    }

    /// At shutdown, after a last probe: what the disk never took is lost.
    fn close(&self, state: &State) {
        if let Some(incident) = &state.incident {
            self.metrics
                .dropped_io
                .fetch_add(state.held.records, Relaxed);
            tracing::error!(
                error = %incident.error,
                records_lost = incident.lost + state.held.records,
                "audit writer stopping while the spool still fails: the records held in memory are lost"
            );
        }
    }

    fn next_wakeup(&self, state: &State) -> Duration {
        if !state.waiting.is_empty() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut wake = state.next_disk_check.saturating_duration_since(now);
        if let Some(s) = &state.segment {
            let commit = self
                .config
                .commit_interval
                .saturating_sub(state.last_sync.elapsed());
            let seal = self
                .config
                .flush
                .interval
                .saturating_sub(s.opened.elapsed());
            wake = wake.min(commit).min(seal);
        }
        if let Some(incident) = &state.incident {
            wake = wake.min(incident.next_probe.saturating_duration_since(now));
        }
        wake.max(Duration::from_millis(1))
    }
}
