//! The access log: at most one structured line per request, on the tracing
//! target `promptgate::access`, written where the request ends (the response
//! body's end for an answer, the handler for a refusal) so it carries the
//! status, outcome, latency, time to first byte and tokens.
//!
//! Levels: every request's line at DEBUG; a sampled share
//! (`[telemetry] access_log_sample_ratio`) at INFO instead; a served request
//! that failed on the gateway's or a provider's side (5xx, provider error,
//! timeout, broken stream) at WARN, always. Shadow calls get a line of their
//! own marked `role = "shadow"`, at DEBUG or sampled INFO, never WARN: nobody
//! waited for them, and their failures are counted in the metrics.
//!
//! What a line never holds: keys (provider or client; the client's configured
//! id only), bodies, prompts, the caller's model string (the configured model
//! name is logged instead), the unit key, or a provider's error text.
//!
//! Cost: with the target off, a request pays level checks only; the sampler
//! (one relaxed atomic add) runs only when INFO is on for the target.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::trace::TraceId;
use tracing::Level;

use super::trace::Role;
use crate::exchange::{ExperimentTag, FinishedExchange, Outcome, Refusal, RefusalKind};
use promptgate_core::dialect::Endpoint;
use promptgate_core::error::ErrorClass;

/// The tracing target of access-log lines (`RUST_LOG=promptgate::access=debug`).
pub const TARGET: &str = "promptgate::access";

/// The access log's sampler; one per gateway.
#[derive(Debug)]
pub struct AccessLog {
    /// In [0, 1], validated with the config.
    sample_ratio: f64,
    /// Requests that were candidates for an INFO line.
    seen: AtomicU64,
}

impl AccessLog {
    pub fn new(sample_ratio: f64) -> AccessLog {
        AccessLog {
            sample_ratio: if sample_ratio.is_nan() {
                0.0
            } else {
                sample_ratio.clamp(0.0, 1.0)
            },
            seen: AtomicU64::new(0),
        }
    }

    /// The level of a request's line, `None` when none is written.
    fn level(&self, failed: bool) -> Option<Level> {
        if failed {
            return tracing::enabled!(target: TARGET, Level::WARN).then_some(Level::WARN);
        }
        if tracing::enabled!(target: TARGET, Level::INFO) && self.sampled() {
            return Some(Level::INFO);
        }
        tracing::enabled!(target: TARGET, Level::DEBUG).then_some(Level::DEBUG)
    }

    /// Counter-based sampling: the n-th candidate is kept when `n × ratio`
    /// crosses an integer, so exactly `ratio` of them are kept, evenly
    /// spread, with no lock, no RNG and no hashing.
    fn sampled(&self) -> bool {
        if self.sample_ratio <= 0.0 {
            return false;
        }
        if self.sample_ratio >= 1.0 {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.sample_ratio).floor() > (n * self.sample_ratio).floor()
    }

    /// A request answered with a provider's body, when that body ended.
    /// `model`: the configured model name (never the caller's string).
    pub fn exchange(&self, exchange: &FinishedExchange, role: Role, model: Option<&str>) {
        let error_class = exchange.error_class();
        let failed = role == Role::Served && answer_failed(error_class, exchange.start.status);
        let Some(level) = self.level(failed) else {
            return;
        };
        let start = &exchange.start;
        let error: Option<&dyn Display> = match &exchange.outcome {
            // The transport's words (connection reset, …): no URL, no key.
            Outcome::UpstreamBroken(detail) => Some(detail),
            _ => None,
        };
        Line {
            role,
            request_id: &start.request_id,
            trace_id: start.trace_id,
            endpoint: Some(start.endpoint),
            dialect: start.endpoint.dialect().label(),
            status: Some(start.status),
            outcome: exchange.outcome.label(),
            error_class,
            error,
            error_detail: None,
            experiment: start.experiment.as_ref(),
            provider: Some(&start.provider),
            model,
            attempts: Some(start.attempts),
            latency: exchange.duration,
            ttfb: exchange.first_byte_after,
            input_tokens: exchange.captured.usage.input_tokens,
            output_tokens: exchange.captured.usage.output_tokens,
            client_id: start.client_id.as_deref(),
        }
        .write(level);
    }

    /// A request that got no provider answer: refused by the gateway, or a
    /// shadow call that failed or was cancelled before an answer. Skipped
    /// shadow calls were never made and get no line (they are counted).
    /// `detail`: what the operator may know and the caller was not told
    /// (`GatewayError::detail`, e.g. why a provider was unreachable).
    pub fn refusal(
        &self,
        refusal: &Refusal,
        role: Role,
        model: Option<&str>,
        detail: Option<&str>,
    ) {
        let failed = match refusal.kind {
            RefusalKind::Refused(_) => role == Role::Served && refusal.status >= Some(500),
            RefusalKind::ShadowSkipped(_) => return,
            RefusalKind::ShadowFailed(_) | RefusalKind::ShadowCancelled => false,
        };
        let Some(level) = self.level(failed) else {
            return;
        };
        // The message of a failure on the gateway's side names providers and
        // limits from the config; a caller's mistake is told by its class
        // alone, since its message may quote what the caller sent.
        let error: Option<&dyn Display> = match refusal.kind {
            RefusalKind::Refused(
                ErrorClass::Upstream
                | ErrorClass::Timeout
                | ErrorClass::Unavailable
                | ErrorClass::Overloaded
                | ErrorClass::RateLimited,
            )
            | RefusalKind::ShadowFailed(_)
            | RefusalKind::ShadowCancelled => Some(&refusal.message),
            _ => None,
        };
        Line {
            role,
            request_id: &refusal.request_id,
            trace_id: refusal.trace_id,
            endpoint: refusal.endpoint,
            dialect: refusal.dialect.label(),
            status: refusal.status,
            outcome: refusal.kind.outcome_label(),
            error_class: Some(refusal.kind.class_label()),
            error,
            error_detail: detail,
            experiment: refusal.experiment.as_ref(),
            provider: refusal.provider.as_deref(),
            model,
            attempts: None,
            latency: refusal.duration,
            ttfb: None,
            input_tokens: None,
            output_tokens: None,
            client_id: refusal.client_id.as_deref(),
        }
        .write(level);
    }

    /// A request the gateway answered itself (the model list, feedback).
    pub fn answered_here(&self, answered: Answered<'_>) {
        let Some(level) = self.level(answered.status >= 500) else {
            return;
        };
        Line {
            role: Role::Served,
            request_id: answered.request_id,
            trace_id: answered.trace_id,
            endpoint: Some(answered.endpoint),
            dialect: answered.endpoint.dialect().label(),
            status: Some(answered.status),
            outcome: "completed",
            error_class: None,
            error: None,
            error_detail: None,
            experiment: None,
            provider: None,
            model: None,
            attempts: None,
            latency: answered.latency,
            ttfb: None,
            input_tokens: None,
            output_tokens: None,
            client_id: answered.client_id,
        }
        .write(level);
    }
}

/// A request answered by the gateway without a provider.
pub struct Answered<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<TraceId>,
    pub endpoint: Endpoint,
    pub status: u16,
    pub latency: Duration,
    pub client_id: Option<&'a str>,
}

/// A served answer that failed on the provider's side: its error status
/// passed through (5xx, 429 after the retries), or its body broke, timed out
/// or carried an error event. A provider's 4xx is the caller's mistake, a
/// caller who left is not a failure.
fn answer_failed(error_class: Option<&str>, status: u16) -> bool {
    status >= 500
        || matches!(
            error_class,
            Some(
                "provider_error" | "rate_limited" | "upstream_broken" | "timeout" | "stream_error"
            )
        )
}

/// The fields of one line. Optional ones are left out of the line when unknown.
struct Line<'a> {
    role: Role,
    request_id: &'a str,
    trace_id: Option<TraceId>,
    endpoint: Option<Endpoint>,
    dialect: &'static str,
    status: Option<u16>,
    outcome: &'static str,
    error_class: Option<&'static str>,
    error: Option<&'a dyn Display>,
    error_detail: Option<&'a str>,
    experiment: Option<&'a ExperimentTag>,
    provider: Option<&'a str>,
    model: Option<&'a str>,
    attempts: Option<u32>,
    latency: Duration,
    ttfb: Option<Duration>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    client_id: Option<&'a str>,
}

impl Line<'_> {
    fn write(&self, level: Level) {
        let tag = self.experiment;
        // `event!` needs its level at compile time: one call site per level,
        // the same fields in each.
        macro_rules! access_line {
            ($level:expr) => {
                tracing::event!(
                    target: TARGET,
                    $level,
                    role = self.role.label(),
                    request_id = self.request_id,
                    shadow_of = tag.and_then(|t| t.shadow_of.as_deref()),
                    trace_id = self.trace_id.map(tracing::field::display),
                    endpoint = self.endpoint.map(Endpoint::label),
                    dialect = self.dialect,
                    status = self.status,
                    outcome = self.outcome,
                    error_class = self.error_class,
                    error = self.error.map(tracing::field::display),
                    error_detail = self.error_detail,
                    experiment = tag.map(|t| &*t.experiment),
                    variant = tag.map(|t| &*t.served_variant),
                    assigned_variant = tag.map(|t| &*t.assigned_variant),
                    assignment_reason = tag.map(|t| tracing::field::display(&t.reason)),
                    provider = self.provider,
                    model = self.model,
                    attempts = self.attempts,
                    latency_ms = millis(self.latency),
                    ttfb_ms = self.ttfb.map(millis),
                    input_tokens = self.input_tokens,
                    output_tokens = self.output_tokens,
                    client_id = self.client_id,
                    "request finished"
                )
            };
        }
        match level {
            Level::WARN => access_line!(Level::WARN),
            Level::INFO => access_line!(Level::INFO),
            _ => access_line!(Level::DEBUG),
        }
    }
}

/// Milliseconds with microsecond precision.
fn millis(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(ratio: f64, n: usize) -> usize {
        let log = AccessLog::new(ratio);
        (0..n).filter(|_| log.sampled()).count()
    }

    #[test]
    fn the_sampler_keeps_exactly_its_share() {
        assert_eq!(kept(0.0, 1000), 0);
        assert_eq!(kept(1.0, 1000), 1000);
        assert_eq!(kept(0.25, 1000), 250);
        assert_eq!(kept(0.1, 1000), 100);
        assert_eq!(kept(0.5, 7), 3);
        assert_eq!(kept(f64::NAN, 10), 0);
    }

    #[test]
    fn provider_failures_are_warnings_caller_mistakes_are_not() {
        assert!(answer_failed(Some("provider_error"), 503));
        assert!(answer_failed(Some("rate_limited"), 429));
        assert!(answer_failed(Some("upstream_broken"), 200));
        assert!(answer_failed(Some("timeout"), 200));
        assert!(answer_failed(Some("stream_error"), 200));
        assert!(!answer_failed(None, 200));
        assert!(!answer_failed(Some("provider_client_error"), 400));
        assert!(!answer_failed(Some("client_disconnected"), 200));
    }
}
