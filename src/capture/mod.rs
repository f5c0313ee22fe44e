//! Watches responses on their way to the caller and reports, once per exchange,
//! what happened: status, timings, text and usage. The audit log and metrics
//! consume these reports through an `ExchangeSink`; the bytes themselves are
//! forwarded untouched and undelayed.

mod extract;
mod observed_body;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use extract::{Captured, MAX_CAPTURED_BYTES, ResponseCapture, Usage};
pub use observed_body::{AnswerNotDurable, ObservedBody, release};

use promptgate_core::dialect::Endpoint;

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The whole response reached the caller.
    Completed,
    /// The caller went away before the end of the response.
    ClientDisconnected,
    /// The provider's body failed mid-way (connection dropped, protocol error).
    UpstreamBroken(String),
    /// The provider's total timeout (or a shadow call's own timeout) ran out mid-body.
    TimedOut,
    /// The gateway discarded this failed answer and tried something else
    /// (an experiment's fallback variant).
    Abandoned,
    /// A shadow call cut short by shutdown after its grace period.
    Cancelled,
}

impl Outcome {
    /// The audit record's `outcome` (and the span attribute).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::ClientDisconnected => "client_disconnected",
            Outcome::UpstreamBroken(_) => "upstream_broken",
            Outcome::TimedOut => "timed_out",
            Outcome::Abandoned => "abandoned",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The experiment a request belonged to.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentTag {
    pub experiment: Arc<str>,
    pub assigned_variant: Arc<str>,
    /// Differs from the assigned one after a fallback.
    pub served_variant: Arc<str>,
    /// The assigned variant's share of the weights (`None` for shadow calls).
    pub assigned_share: Option<f64>,
    pub variant_version: Arc<str>,
    pub reason: promptgate_core::experiments::decide::Reason,
    /// Raw; pseudonymise before writing anywhere.
    pub unit_key: String,
    pub sticky: bool,
    /// false: the audit record carries metadata only.
    pub log_bodies: bool,
    /// For a shadow call: the request id of the served request it copies.
    pub shadow_of: Option<Arc<str>>,
}

/// Facts known when the upstream response head arrives.
#[derive(Debug, Clone)]
pub struct ExchangeStart {
    pub request_id: Arc<str>,
    pub client_id: Option<Arc<str>>,
    /// The served request's `x-promptgate-tags` (shadow calls carry them too).
    pub tags: promptgate_core::tags::Tags,
    pub config_version: Arc<str>,
    pub endpoint: Endpoint,
    pub provider: Arc<str>,
    /// The model the caller named.
    pub model: String,
    /// The model named in `request_body`, which the provider was asked for
    /// (the audit record's `upstream_model`, its price), so nobody parses
    /// the body again to find it.
    pub upstream_model: String,
    /// The body as sent to the provider (after aliasing and template rendering).
    pub request_body: bytes::Bytes,
    pub stream: bool,
    pub status: u16,
    pub attempts: u32,
    pub started_at: SystemTime,
    pub started: Instant,
    /// Time until the upstream response head arrived.
    pub head_after: Duration,
    pub experiment: Option<ExperimentTag>,
    /// The request's trace (`None` when tracing is off).
    pub trace_id: Option<opentelemetry::trace::TraceId>,
}

/// One finished exchange.
#[derive(Debug, Clone)]
pub struct FinishedExchange {
    pub start: ExchangeStart,
    pub first_byte_after: Option<Duration>,
    pub duration: Duration,
    pub outcome: Outcome,
    pub captured: Captured,
}

impl FinishedExchange {
    /// The audit record's `error_class`: `None` for a complete 2xx answer.
    pub fn error_class(&self) -> Option<&'static str> {
        match (&self.outcome, self.start.status) {
            (Outcome::Completed, 200..=299) if self.captured.stream_error.is_none() => None,
            (Outcome::Completed, 200..=299) => Some("stream_error"),
            (Outcome::Completed | Outcome::Abandoned, 429) => Some("rate_limited"),
            (Outcome::Completed | Outcome::Abandoned, 400..=499) => Some("provider_client_error"),
            (Outcome::Completed | Outcome::Abandoned, _) => Some("provider_error"),
            (Outcome::ClientDisconnected, _) => Some("client_disconnected"),
            (Outcome::UpstreamBroken(_), _) => Some("upstream_broken"),
            (Outcome::TimedOut, _) => Some("timeout"),
            (Outcome::Cancelled, _) => Some("cancelled"),
        }
    }
}

/// A request that got no provider answer: a served request refused by the
/// gateway (bad input, auth, unknown model, unreachable provider, …), or a
/// shadow call that failed before an answer, was skipped or was cancelled.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub request_id: Arc<str>,
    pub client_id: Option<Arc<str>>,
    pub tags: promptgate_core::tags::Tags,
    pub config_version: Arc<str>,
    pub endpoint: Option<Endpoint>,
    pub dialect: promptgate_core::dialect::Dialect,
    pub model: Option<String>,
    pub stream: bool,
    pub experiment: Option<ExperimentTag>,
    /// The status the caller got; `None` for shadow calls (nobody got one).
    pub status: Option<u16>,
    pub kind: RefusalKind,
    pub message: String,
    pub started_at: SystemTime,
    pub duration: Duration,
    /// The provider that failed, for provider errors (unreachable, timeout…).
    pub provider: Option<String>,
    /// The request's trace (`None` when tracing is off, or for a skipped shadow call).
    pub trace_id: Option<opentelemetry::trace::TraceId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// A served request refused with an error of this class.
    Refused(promptgate_core::error::ErrorClass),
    /// A shadow call that failed before any answer arrived.
    ShadowFailed(promptgate_core::error::ErrorClass),
    /// A shadow call that was not made, and why.
    ShadowSkipped(SkipReason),
    /// A shadow call cancelled by shutdown before any answer arrived.
    ShadowCancelled,
}

impl RefusalKind {
    /// The audit record's `outcome`.
    pub fn outcome_label(self) -> &'static str {
        match self {
            RefusalKind::Refused(_) => "refused",
            RefusalKind::ShadowFailed(_) => "failed",
            RefusalKind::ShadowSkipped(_) => "skipped",
            RefusalKind::ShadowCancelled => "cancelled",
        }
    }

    /// The audit record's `error_class`.
    pub fn class_label(self) -> &'static str {
        match self {
            RefusalKind::Refused(class) | RefusalKind::ShadowFailed(class) => class.label(),
            RefusalKind::ShadowSkipped(reason) => reason.label(),
            RefusalKind::ShadowCancelled => "cancelled",
        }
    }
}

/// Why a sampled shadow call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The experiment's shadow calls in flight were at `max_concurrent`.
    Concurrency,
    /// A daily budget (requests, tokens or USD) is spent.
    Budget,
    /// The gateway is shutting down.
    ShuttingDown,
}

impl SkipReason {
    pub const ALL: [SkipReason; 3] = [
        SkipReason::Concurrency,
        SkipReason::Budget,
        SkipReason::ShuttingDown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SkipReason::Concurrency => "shadow_concurrency_limit",
            SkipReason::Budget => "shadow_budget_exhausted",
            SkipReason::ShuttingDown => "shutting_down",
        }
    }
}

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
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

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
