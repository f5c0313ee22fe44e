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

use super::disk;
use super::health::{DeathWatch, Incident};
use super::record::{self, RecordContext};
use super::spool::{self, Leftover, Segment, SpoolDirs};
use super::{AuditMetrics, Event};
use crate::exchange::RecordAck;
use promptgate_core::config::audit::{AuditConfig, Durability, SpoolFullPolicy};

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
        let ctx = RecordContext::new(&self.config, &self.unit_key);
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
            // A spool at its cap only shrinks once its open segment is
            // sealed and uploaded: sealing it then keeps refusals short.
            let spool_at_cap = self.metrics.spool_bytes.load(Relaxed)
                >= self.metrics.spool_cap_bytes.load(Relaxed);
            let due = state.segment.as_ref().is_some_and(|s| {
                s.records >= self.config.flush.records
                    || s.bytes >= self.config.flush.bytes
                    || s.opened.elapsed() >= self.config.flush.interval
                    || spool_at_cap
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
        // A record borrows its event: each is written where it is built.
        let (written, ack) = match event {
            Event::Exchange(exchange, ack) => {
                (record::from_exchange(&exchange, ctx).write_line(line), ack)
            }
            Event::Refusal(refusal) => (record::from_refusal(&refusal, ctx).write_line(line), None),
            Event::Feedback(feedback) => {
                (record::from_feedback(&feedback, ctx).write_line(line), None)
            }
            Event::Close => return,
        };
        if let Err(error) = written {
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

    fn seal(&self, mut segment: Segment, state: &mut State) {
        match segment.seal(&self.dirs) {
            Ok(_) => self.segment_sealed(),
            Err(error) => {
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::mpsc::SyncSender;
    use std::time::SystemTime;

    use super::*;
    use crate::audit::spool::Frames;
    use crate::exchange::{Captured, ExchangeStart, FinishedExchange, Outcome};
    use promptgate_core::dialect::Endpoint;

    struct Running {
        sender: SyncSender<Event>,
        thread: std::thread::JoinHandle<()>,
        metrics: Arc<AuditMetrics>,
        spool: PathBuf,
        _dir: tempfile::TempDir,
    }

    fn start(audit: &str) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let file = dir.path().join("gw.toml");
        let text = format!(
            "[auth]\nopen = true\n[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n[audit]\nspool_dir = {spool:?}\nlocal_dir = {store:?}\n{audit}\n",
            store = dir.path().join("store"),
        );
        std::fs::write(&file, text).unwrap();
        let config = promptgate_core::config::load_file(&file, &Default::default())
            .unwrap()
            .audit
            .unwrap();
        let metrics = Arc::new(AuditMetrics::default());
        metrics.spool_cap_bytes.store(u64::MAX, Relaxed);
        let writer = Writer {
            dirs: SpoolDirs::create(&spool).unwrap(),
            config,
            unit_key: b"test".to_vec(),
            metrics: metrics.clone(),
            sealed: Arc::new(Notify::new()),
            cap_warned: false,
        };
        let (sender, events) = std::sync::mpsc::sync_channel(64);
        let thread = std::thread::spawn(move || writer.run(events));
        Running {
            sender,
            thread,
            metrics,
            spool,
            _dir: dir,
        }
    }

    fn exchange(id: &str) -> FinishedExchange {
        FinishedExchange {
            start: ExchangeStart {
                request_id: id.into(),
                client_id: None,
                tags: Default::default(),
                config_version: "test".into(),
                endpoint: Endpoint::ChatCompletions,
                provider: "demo".into(),
                model: "demo".into(),
                upstream_model: "demo".into(),
                request_body: bytes::Bytes::from_static(b"{\"model\":\"demo\"}"),
                stream: false,
                status: 200,
                attempts: 1,
                started_at: SystemTime::now(),
                started: Instant::now(),
                head_after: Duration::ZERO,
                experiment: None,
                trace_id: None,
            },
            first_byte_after: None,
            duration: Duration::ZERO,
            outcome: Outcome::Completed,
            captured: Captured::default(),
        }
    }

    impl Running {
        /// Submits a record as `AuditLog::submit` does; with an ack in strict mode.
        fn send(&self, id: &str, strict: bool) -> Option<oneshot::Receiver<RecordAck>> {
            let (ack, acked) = oneshot::channel();
            self.metrics.queue_depth.fetch_add(1, Relaxed);
            let ack = strict.then_some(ack);
            self.sender
                .send(Event::Exchange(Box::new(exchange(id)), ack))
                .unwrap();
            strict.then_some(acked)
        }

        fn await_until(&self, what: &str, done: impl Fn(&AuditMetrics) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !done(&self.metrics) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        /// Closes the writer and returns the request ids in the spool's segments.
        fn stop(self) -> (Vec<String>, Arc<AuditMetrics>) {
            self.metrics.queue_depth.fetch_add(1, Relaxed);
            self.sender.send(Event::Close).unwrap();
            self.thread.join().unwrap();
            let mut ids = Vec::new();
            for dir in ["open", "sealed"] {
                for path in spool::segments_in(&self.spool.join(dir)).unwrap() {
                    ids.extend(request_ids(&path));
                }
            }
            ids.sort();
            (ids, self.metrics)
        }
    }

    fn request_ids(segment: &Path) -> Vec<String> {
        let mut frames = Frames::open(segment).unwrap();
        let mut ids = Vec::new();
        while let Some(payload) = frames.next_payload().unwrap() {
            let record: serde_json::Value = serde_json::from_slice(payload).unwrap();
            ids.push(record["request_id"].as_str().unwrap().to_owned());
        }
        assert!(frames.is_intact(), "{}", segment.display());
        ids
    }

    fn ack(acked: Option<oneshot::Receiver<RecordAck>>) -> RecordAck {
        acked
            .unwrap()
            .blocking_recv()
            .unwrap_or(RecordAck::NotDurable)
    }

    fn ids(names: &[&str]) -> Vec<String> {
        let mut ids: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn strict_acks_fail_while_the_spool_directory_is_gone_and_every_record_survives() {
        let run = start("durability = \"strict\"\non_spool_full = \"reject\"");
        for id in ["a1", "a2", "a3"] {
            assert_eq!(ack(run.send(id, true)), RecordAck::Durable);
        }
        std::fs::remove_dir_all(&run.spool).unwrap();
        // Its fsync succeeds on the unlinked file; the writer notices the
        // name is gone, reads the fsynced records back and holds them all.
        assert_eq!(ack(run.send("b1", true)), RecordAck::NotDurable);
        let reason = run.metrics.health.failure().unwrap_or_default();
        assert!(reason.contains("spool directory vanished"), "{reason}");
        // Within the incident: refused at once, kept in memory.
        let during = [run.send("b2", true), run.send("b3", true)];
        for acked in during {
            assert_eq!(ack(acked), RecordAck::NotDurable);
        }
        run.await_until("the writer to recreate the spool", |m| {
            !m.health.is_failing()
        });
        assert_eq!(ack(run.send("c1", true)), RecordAck::Durable);
        let (found, metrics) = run.stop();
        assert_eq!(found, ids(&["a1", "a2", "a3", "b1", "b2", "b3", "c1"]));
        assert_eq!(metrics.spool_failures.load(Relaxed), 1);
        assert_eq!(metrics.records_not_durable.load(Relaxed), 3);
        assert_eq!(metrics.dropped_io.load(Relaxed), 0);
        assert_eq!(metrics.records_held.load(Relaxed), 0);
        assert_eq!(metrics.records_written.load(Relaxed), 7);
    }

    #[test]
    fn buffered_with_reject_holds_what_the_failing_spool_refused_and_writes_it_later() {
        let run = start("on_spool_full = \"reject\"\ncommit_interval_ms = 10");
        run.send("a1", false);
        run.await_until("a1 written", |m| m.records_written.load(Relaxed) == 1);
        std::fs::remove_dir_all(&run.spool).unwrap();
        run.send("b1", false);
        run.await_until("the failure to be noticed", |m| {
            m.spool_failures.load(Relaxed) == 1
        });
        run.send("b2", false);
        run.await_until("the writer to recover", |m| !m.health.is_failing());
        let (found, metrics) = run.stop();
        assert_eq!(found, ids(&["a1", "b1", "b2"]));
        assert_eq!(metrics.dropped_io.load(Relaxed), 0);
    }

    #[test]
    fn buffered_with_drop_counts_every_record_it_loses_and_recovers() {
        let run = start("on_spool_full = \"drop\"\ncommit_interval_ms = 10");
        run.send("a1", false);
        run.await_until("a1 written", |m| m.records_written.load(Relaxed) == 1);
        std::fs::remove_dir_all(&run.spool).unwrap();
        run.send("b1", false);
        run.await_until("the failure to be noticed", |m| {
            m.spool_failures.load(Relaxed) == 1
        });
        run.await_until("the writer to recover", |m| !m.health.is_failing());
        run.send("c1", false);
        let (found, metrics) = run.stop();
        let lost = metrics.dropped_io.load(Relaxed);
        assert!(lost >= 1, "b1 was not fsynced when the directory went");
        assert!(found.contains(&"c1".to_owned()), "{found:?}");
        assert_eq!(found.len() as u64 + lost, 3, "found {found:?}, lost {lost}");
        assert_eq!(metrics.records_written.load(Relaxed), found.len() as u64);
    }
}
