//! What the gateway reports about one exchange (a request and its answer, or
//! its refusal), and the `ExchangeSink` that receives the reports. A leaf:
//! capture produces these reports, the audit log, telemetry and shadow calls
//! consume them, and none of those is imported from here.

mod id;
mod sink;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use id::{RequestIdText, fresh_request_id};
pub use sink::{ExchangeSink, Fanout, NoSink, RecordAck};

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
    pub unit_key: Arc<str>,
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

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// What was seen of one response.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    /// The generated text: reassembled from the deltas of a stream, or read
    /// from the JSON body.
    pub text: String,
    pub usage: Usage,
    /// The raw body of a non-streamed response (up to `MAX_CAPTURED_BYTES`).
    pub body: Vec<u8>,
    /// The body exceeded `MAX_CAPTURED_BYTES` and was cut in the capture.
    pub truncated: bool,
    /// An `error` event seen inside a stream that began with 200.
    pub stream_error: Option<String>,
    /// The model the provider says answered (its response's `model`, cut to
    /// `MAX_MODEL_BYTES`): a span attribute only, never a metric label.
    pub model: Option<String>,
}
