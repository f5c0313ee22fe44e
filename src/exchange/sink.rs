//! The receiving end of exchange reports: the audit log, a test recorder,
//! several of them at once (`Fanout`), or none (`NoSink`).

use std::sync::Arc;

use super::{FinishedExchange, Refusal};

/// Whether a record the caller's answer waits for (strict audit mode) is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAck {
    Durable,
    /// The write or fsync failed (the record is kept and written again
    /// later), or the writer is gone: the caller must not see a success.
    NotDurable,
}

/// Receives finished exchanges and refusals. Implementations must not block:
/// they are called on the task that serves the request.
pub trait ExchangeSink: Send + Sync + 'static {
    fn record(&self, exchange: FinishedExchange);

    /// Like `record`, but when the sink promises durability (the audit log's
    /// strict mode) returns a signal that says, once the write is settled,
    /// whether the record is on disk; the response's end waits for it (a
    /// dropped sender means not durable).
    fn record_durably(
        &self,
        exchange: FinishedExchange,
    ) -> Option<tokio::sync::oneshot::Receiver<RecordAck>> {
        self.record(exchange);
        None
    }

    /// Whether `record_durably` returns a signal: then a JSON answer is held
    /// whole until its record is durable, so a failure can still become an
    /// error response (`release`).
    fn promises_durability(&self) -> bool {
        false
    }

    /// An outcome posted for an earlier request (`POST /v1/feedback`).
    /// Ignored by default; the request's access-log line is written anyway.
    fn record_feedback(&self, _feedback: crate::feedback::Feedback) {}

    /// Ignored by default; the request's access-log line is written anyway.
    fn record_refusal(&self, _refusal: Refusal) {}

    /// True for a sink that drops everything: `Fanout::of` leaves it out, so
    /// no exchange (request and response bodies included) is copied for it.
    fn records_nothing(&self) -> bool {
        false
    }

    /// Whether anything behind this sink reads an answer's text or body
    /// (the audit log does; a sink that charges usage does not): without,
    /// the capture reads only usage, model and stream errors.
    fn reads_answers(&self) -> bool {
        !self.records_nothing()
    }
}

/// Hands every report to several sinks (the audit log and, say, a test recorder).
pub struct Fanout(Vec<Arc<dyn ExchangeSink>>);

impl Fanout {
    /// One sink for `sinks`, without those that record nothing: with one
    /// left, that sink itself, so an exchange is moved to it, never cloned.
    pub fn of(sinks: Vec<Arc<dyn ExchangeSink>>) -> Arc<dyn ExchangeSink> {
        let mut sinks: Vec<_> = sinks
            .into_iter()
            .filter(|sink| !sink.records_nothing())
            .collect();
        match sinks.len() {
            0 => Arc::new(NoSink),
            1 => sinks.remove(0),
            _ => Arc::new(Fanout(sinks)),
        }
    }
}

impl ExchangeSink for Fanout {
    fn record(&self, exchange: FinishedExchange) {
        if let Some((last, others)) = self.0.split_last() {
            for sink in others {
                sink.record(exchange.clone());
            }
            last.record(exchange);
        }
    }

    /// Durable as the first sink that promises durability (only the audit log
    /// does). The last sink gets the exchange itself, not a copy.
    fn record_durably(
        &self,
        exchange: FinishedExchange,
    ) -> Option<tokio::sync::oneshot::Receiver<RecordAck>> {
        let (last, others) = self.0.split_last()?;
        let mut durable = None;
        for sink in others {
            if durable.is_none() {
                durable = sink.record_durably(exchange.clone());
            } else {
                sink.record(exchange.clone());
            }
        }
        match durable {
            None => last.record_durably(exchange),
            Some(_) => {
                last.record(exchange);
                durable
            }
        }
    }

    fn promises_durability(&self) -> bool {
        self.0.iter().any(|sink| sink.promises_durability())
    }

    fn reads_answers(&self) -> bool {
        self.0.iter().any(|sink| sink.reads_answers())
    }

    fn record_refusal(&self, refusal: Refusal) {
        for sink in &self.0 {
            sink.record_refusal(refusal.clone());
        }
    }

    fn record_feedback(&self, feedback: crate::feedback::Feedback) {
        for sink in &self.0 {
            sink.record_feedback(feedback.clone());
        }
    }
}

/// Records nothing: the binary's sink beside the audit log. Each request's
/// line is the access log's (`telemetry::access`), written by the telemetry
/// that ends with the request, so a sink that logged too would double it.
pub struct NoSink;

impl ExchangeSink for NoSink {
    fn record(&self, _exchange: FinishedExchange) {}

    fn records_nothing(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Captured, ExchangeStart, Outcome};
    use promptgate_core::dialect::Endpoint;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::time::{Duration, Instant, SystemTime};

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl ExchangeSink for Counting {
        fn record(&self, _exchange: FinishedExchange) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    fn exchange() -> FinishedExchange {
        FinishedExchange {
            start: ExchangeStart {
                request_id: "r".into(),
                client_id: None,
                tags: Default::default(),
                config_version: "v".into(),
                endpoint: Endpoint::ChatCompletions,
                provider: "p".into(),
                model: "m".into(),
                upstream_model: "m".into(),
                request_body: bytes::Bytes::from_static(b"{}"),
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

    #[test]
    fn a_sink_that_records_nothing_is_left_out_of_the_fanout() {
        let audit: Arc<dyn ExchangeSink> = Arc::new(Counting::default());
        // The audit log beside the binary's NoSink: the log itself, no
        // Fanout, so no exchange is cloned for a sink that drops it.
        let sink = Fanout::of(vec![audit.clone(), Arc::new(NoSink)]);
        assert!(std::ptr::addr_eq(Arc::as_ptr(&sink), Arc::as_ptr(&audit)));
        assert!(Fanout::of(vec![Arc::new(NoSink)]).records_nothing());
    }

    #[test]
    fn answers_are_read_when_any_sink_records() {
        assert!(!NoSink.reads_answers());
        assert!(Counting::default().reads_answers());
        let both: Arc<dyn ExchangeSink> = Arc::new(Fanout(vec![
            Arc::new(NoSink),
            Arc::new(Counting::default()),
        ]));
        assert!(both.reads_answers());
    }

    #[test]
    fn every_recording_sink_gets_each_exchange() {
        let first = Arc::new(Counting::default());
        let second = Arc::new(Counting::default());
        let sink = Fanout::of(vec![first.clone(), Arc::new(NoSink), second.clone()]);
        sink.record(exchange());
        assert!(sink.record_durably(exchange()).is_none());
        assert_eq!(first.0.load(Relaxed), 2);
        assert_eq!(second.0.load(Relaxed), 2);
    }
}
