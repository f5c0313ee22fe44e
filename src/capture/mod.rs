//! Watches responses on their way to the caller and reports, once per exchange,
//! what happened: status, timings, text and usage. The audit log and metrics
//! consume these reports through an `ExchangeSink`; the bytes themselves are
//! forwarded untouched and undelayed.

mod body;
mod extract;
pub mod sse;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use body::ObservedBody;
pub use extract::{Captured, MAX_CAPTURED_BYTES, ResponseCapture, Usage};

use crate::api::Endpoint;

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The whole response reached the caller.
    Completed,
    /// The caller went away before the end of the response.
    ClientDisconnected,
    /// The provider's body failed mid-way (connection dropped, protocol error).
    UpstreamBroken(String),
    /// The provider's total timeout ran out mid-body.
    TimedOut,
    /// The gateway discarded this failed answer and tried something else
    /// (an experiment's fallback variant).
    Abandoned,
}

/// The experiment a request belonged to.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentTag {
    pub experiment: Arc<str>,
    pub assigned_variant: Arc<str>,
    /// Differs from the assigned one after a fallback.
    pub served_variant: Arc<str>,
    pub variant_version: Arc<str>,
    pub reason: crate::experiments::decide::Reason,
    /// Raw; pseudonymise before writing anywhere.
    pub unit_key: String,
    pub sticky: bool,
}

/// Facts known when the upstream response head arrives.
#[derive(Debug, Clone)]
pub struct ExchangeStart {
    pub request_id: Arc<str>,
    pub client_id: Option<Arc<str>>,
    pub endpoint: Endpoint,
    pub provider: Arc<str>,
    pub model: String,
    pub stream: bool,
    pub status: u16,
    pub attempts: u32,
    pub started_at: SystemTime,
    pub started: Instant,
    /// Time until the upstream response head arrived.
    pub head_after: Duration,
    pub experiment: Option<ExperimentTag>,
}

/// One finished exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub start: ExchangeStart,
    pub first_byte_after: Option<Duration>,
    pub duration: Duration,
    pub outcome: Outcome,
    pub captured: Captured,
}

/// Receives finished exchanges. Implementations must not block: they are
/// called on the task that forwards the response.
pub trait ExchangeSink: Send + Sync + 'static {
    fn record(&self, exchange: Exchange);
}

/// Writes a debug line per exchange; the default until the audit log exists.
pub struct LogSink;

impl ExchangeSink for LogSink {
    fn record(&self, exchange: Exchange) {
        tracing::debug!(
            request_id = %exchange.start.request_id,
            endpoint = exchange.start.endpoint.label(),
            provider = %exchange.start.provider,
            status = exchange.start.status,
            attempts = exchange.start.attempts,
            duration_ms = exchange.duration.as_secs_f64() * 1e3,
            input_tokens = exchange.captured.usage.input_tokens,
            output_tokens = exchange.captured.usage.output_tokens,
            outcome = ?exchange.outcome,
            "exchange finished"
        );
    }
}
