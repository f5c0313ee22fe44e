//! OpenTelemetry for the gateway: one server span per request, a client span
//! per provider attempt, a linked span per shadow call, W3C `traceparent` in
//! and out, and OTLP/HTTP export. Off unless an endpoint is configured; when
//! off, a request pays one `Option` check and nothing else. Also the metrics
//! and the access log (one line per request, `access`).
//!
//! The tracer is held here, not installed globally: tests run several gateways
//! in one process, each with its own collector.

pub mod access;
mod export;
pub mod metrics;
pub mod ready;
mod shadow_counts;
pub mod trace;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use access::AccessLog;
pub use metrics::{Metrics, RequestLabels};
pub use shadow_counts::ShadowMetrics;
pub use trace::{AttemptSpan, ExchangeSpans, RequestTrace, Role};

use crate::exchange::FinishedExchange;
use promptgate_core::config::TelemetryConfig;
use promptgate_core::config::audit::Price;

/// Instrumentation scope of every span.
const SCOPE: &str = "promptgate";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP trace exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// The gateway's telemetry handle; cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    traces: Option<Traces>,
    metrics: Arc<Metrics>,
    access: Arc<AccessLog>,
}

#[derive(Clone)]
struct Traces {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts the exporter when traces are configured. Needs a tokio runtime
    /// only for the HTTP client's connections; the batch processor brings its own.
    /// `prices`: `[prices]` as the audit log uses them, for the cost counter.
    pub fn start(
        config: &TelemetryConfig,
        prices: HashMap<String, Price>,
    ) -> Result<Telemetry, TelemetryError> {
        let metrics = Arc::new(Metrics::new(prices)?);
        let access = Arc::new(AccessLog::new(config.access_log_sample_ratio));
        let Some(export) = &config.traces else {
            return Ok(Telemetry {
                traces: None,
                metrics,
                access,
            });
        };
        let provider = export::tracer_provider(export)?;
        // Host and path only: a collector URL may carry credentials in its
        // user-info or query.
        tracing::info!(
            collector = %export.endpoint.host().unwrap_or_default(),
            port = export.endpoint.port_u16(),
            path = export.endpoint.path(),
            sample_ratio = export.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
        Ok(Telemetry {
            traces: Some(Traces {
                tracer: provider.tracer(SCOPE),
                provider,
            }),
            metrics,
            access,
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn access_log(&self) -> &Arc<AccessLog> {
        &self.access
    }

    pub fn tracing_enabled(&self) -> bool {
        self.traces.is_some()
    }

    /// The server span of a request that just arrived (`None` when tracing is off).
    pub fn server_trace(
        &self,
        request: &http::Request<hyper::body::Incoming>,
        request_id: &std::sync::Arc<str>,
        config_version: &std::sync::Arc<str>,
    ) -> Option<RequestTrace> {
        let traces = self.traces.as_ref()?;
        Some(RequestTrace::served(
            traces.tracer.clone(),
            request.method(),
            request.uri().path(),
            request.headers(),
            request_id,
            config_version,
        ))
    }

    /// Exports the spans still buffered and stops the exporter, within `grace`.
    /// The SDK blocks its caller until the batch thread answers, so this runs
    /// on a blocking thread; past `grace` the rest is abandoned.
    pub async fn shutdown(&self, grace: Duration) {
        self.metrics.shutdown();
        let Some(traces) = &self.traces else {
            return;
        };
        let provider = traces.provider.clone();
        let flush = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(grace, flush).await {
            Ok(Ok(Ok(()))) => tracing::debug!("traces flushed"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "flushing traces failed"),
            Ok(Err(_)) => tracing::warn!("the trace flush task failed"),
            Err(_) => tracing::warn!("traces not flushed within the grace period"),
        }
    }
}

/// What ends with a response body: its spans and, for the body the caller
/// gets, the request's metrics and access-log line.
#[derive(Default)]
pub struct ExchangeTelemetry {
    pub spans: ExchangeSpans,
    pub metrics: Option<RequestMetrics>,
}

/// A served request's metric labels, recorded when its body ends.
pub struct RequestMetrics {
    pub metrics: Arc<Metrics>,
    pub labels: RequestLabels,
    /// The series `labels` name, resolved when the request was sent.
    pub series: Arc<metrics::Series>,
    /// The price of the model sent upstream, if `[prices]` has it.
    pub price: Option<Price>,
    /// Writes the request's line, labelled like its metrics.
    pub access: Arc<AccessLog>,
}

impl ExchangeTelemetry {
    pub fn finish(self, exchange: &FinishedExchange) {
        if !self.spans.is_empty() {
            self.spans.finish(exchange);
        }
        if let Some(request) = self.metrics {
            request
                .metrics
                .answered(&request.labels, &request.series, request.price, exchange);
            request
                .access
                .exchange(exchange, Role::Served, Some(&request.labels.model));
        }
    }
}
