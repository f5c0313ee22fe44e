//! The gateway's metrics on an OpenTelemetry meter, read in the Prometheus
//! text format by the admin listener's `/metrics`.
//!
//! Names follow `promptgate_<noun>_<unit>[_total]` and are given in full: the
//! exporter's unit and `_total` suffixes and its scope labels are turned off,
//! so a name here is the name scraped. Labels come only from the config
//! (provider, configured model, experiment, variant) or fixed enums
//! (endpoint, outcome, error class, direction); a caller's model string is a
//! label only when a route names it exactly, else the matching pattern is.
//!
//! Requests are recorded where they end: an answered request when its body
//! ends (`ExchangeTelemetry`), a refused one in the handler. Counters kept as
//! atomics elsewhere (audit pipeline, shadow calls, reloads) are read by
//! observable instruments at scrape time.
//!
//! The five series every answered request adds to (requests, duration, time
//! to first byte, tokens, cost) are `prometheus` vectors in the same registry
//! rather than OpenTelemetry instruments: their children for one label set
//! are resolved once and kept (`Series`), so an answer costs a few atomic
//! adds. Through the OpenTelemetry API each add looked its attribute set up
//! again, six times a request: the largest share of an exchange's end in the
//! profile (`loadtest/RESULTS.md`, session 8).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts};
use promptgate_core::tags::Tags;

use crate::audit::AuditLog;
use crate::exchange::{ExperimentTag, FinishedExchange, SkipReason};
use crate::telemetry::{Role, ShadowMetrics};
use promptgate_core::config::audit::Price;
use promptgate_core::config::{ModelPattern, RouteConfig};
use promptgate_core::error::LimitName;

/// Seconds; from a cached answer to a long generation.
const LATENCY_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
/// Seconds to the first byte: streams answer in tens of milliseconds.
const TTFB_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Prometheus exporter: {0}")]
pub struct MetricsError(String);

/// Where a request went, as metric labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub provider: Arc<str>,
    /// The configured model (see `model_label`).
    pub model: Arc<str>,
    pub experiment: Option<Arc<str>>,
    /// The served variant.
    pub variant: Option<Arc<str>>,
}

impl RequestLabels {
    /// The label values in the order of `REQUEST_LABELS`, and `extra` last.
    fn values<'a>(&'a self, extra: &'a str) -> [&'a str; 6] {
        let [endpoint, provider, model, experiment, variant] = self.base();
        [endpoint, provider, model, experiment, variant, extra]
    }

    fn base(&self) -> [&str; 5] {
        [
            self.endpoint,
            &self.provider,
            &self.model,
            self.experiment.as_deref().unwrap_or_default(),
            self.variant.as_deref().unwrap_or_default(),
        ]
    }
}

/// The labels every per-request series has; `request_labels_and` adds the
/// sixth some of them have.
const REQUEST_LABELS: [&str; 5] = ["endpoint", "provider", "model", "experiment", "variant"];

fn request_labels_and(extra: &'static str) -> [&'static str; 6] {
    let [endpoint, provider, model, experiment, variant] = REQUEST_LABELS;
    [endpoint, provider, model, experiment, variant, extra]
}

/// The series a served request of one label set adds to, resolved once
/// (`Metrics::series`): recording its answer is then atomic adds.
pub struct Series {
    requests_ok: prometheus::IntCounter,
    duration_ok: prometheus::Histogram,
    first_byte: prometheus::Histogram,
    input_tokens: prometheus::IntCounter,
    output_tokens: prometheus::IntCounter,
    /// Resolved on the first priced answer: a model without a price shows
    /// no cost series rather than a cost of 0.
    cost: std::sync::OnceLock<prometheus::Counter>,
}

/// What a refused request is counted under.
pub struct RefusedRequest<'a> {
    pub endpoint: Option<&'static str>,
    pub provider: Option<&'a str>,
    pub model: Option<Arc<str>>,
    pub experiment: Option<&'a ExperimentTag>,
    /// The error class: the `outcome` label.
    pub class: &'static str,
    pub duration: Duration,
    pub tags: &'a Tags,
}

/// The model label of a request on `route`: the model the route sends
/// (an alias's or a variant's), else the caller's name when the route lists it
/// exactly, else the route's pattern it matched: never an unbounded string.
pub fn model_label(route: &RouteConfig, caller_model: &str) -> Arc<str> {
    if let Some(model) = &route.upstream_model {
        return model.clone();
    }
    let mut matched = None;
    for pattern in &route.patterns {
        match pattern {
            ModelPattern::Exact(name) if **name == *caller_model => return name.clone(),
            ModelPattern::Wildcard(glob)
                if matched.is_none()
                    && promptgate_core::routing::wildcard_match(glob, caller_model) =>
            {
                matched = Some(glob.clone());
            }
            _ => {}
        }
    }
    matched.unwrap_or_else(|| Arc::from("other"))
}

pub struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    meter: Meter,
    requests: IntCounterVec,
    duration: HistogramVec,
    first_byte: HistogramVec,
    tokens: IntCounterVec,
    cost: CounterVec,
    /// `Series` by label set: read on every request, written once per new
    /// label set (bounded by the config: see `model_label`).
    series: ArcSwap<HashMap<RequestLabels, Arc<Series>>>,
    provider_errors: Counter<u64>,
    retries: Counter<u64>,
    fallbacks: Counter<u64>,
    variant_fallbacks: Counter<u64>,
    limit_refusals: Counter<u64>,
    tagged_requests: Counter<u64>,
    tls_certificate_reloads: Counter<u64>,
    auth_failures: Counter<u64>,
    /// USD per million tokens by the model sent upstream (`[prices]`, at start-up).
    prices: HashMap<String, Price>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(prices: HashMap<String, Price>) -> Result<Metrics, MetricsError> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_units()
            .without_counter_suffixes()
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .map_err(|e| MetricsError(e.to_string()))?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("promptgate");
        let counter = |name: &'static str, help: &'static str| {
            meter.u64_counter(name).with_description(help).build()
        };
        let failed = |e: prometheus::Error| MetricsError(e.to_string());
        let requests = IntCounterVec::new(
            Opts::new(
                "promptgate_requests_total",
                "Requests by endpoint, provider, configured model, experiment, served variant and outcome (`ok` or the error class).",
            ),
            &request_labels_and("outcome"),
        )
        .map_err(failed)?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "promptgate_request_duration_seconds",
                "Time from a request's arrival to the end of its response body.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &request_labels_and("outcome"),
        )
        .map_err(failed)?;
        let first_byte = HistogramVec::new(
            HistogramOpts::new(
                "promptgate_request_ttfb_seconds",
                "Time from a request's arrival to the first byte of the provider's body.",
            )
            .buckets(TTFB_BUCKETS.to_vec()),
            &REQUEST_LABELS,
        )
        .map_err(failed)?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "promptgate_tokens_total",
                "Tokens reported by providers for served requests, by direction (input, output).",
            ),
            &request_labels_and("direction"),
        )
        .map_err(failed)?;
        let cost = CounterVec::new(
            Opts::new(
                "promptgate_cost_usd_total",
                "Priced cost of served requests ([prices]).",
            ),
            &REQUEST_LABELS,
        )
        .map_err(failed)?;
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(first_byte.clone()),
            Box::new(tokens.clone()),
            Box::new(cost.clone()),
        ] {
            registry.register(collector).map_err(failed)?;
        }
        Ok(Metrics {
            requests,
            duration,
            first_byte,
            tokens,
            cost,
            series: ArcSwap::default(),
            provider_errors: counter(
                "promptgate_provider_errors_total",
                "Failed provider attempts and answers broken mid-body, by provider, error class and role (served, shadow).",
            ),
            retries: counter(
                "promptgate_provider_retries_total",
                "Attempts repeated at the same provider, by role (served, shadow).",
            ),
            fallbacks: counter(
                "promptgate_provider_fallbacks_total",
                "Requests passed from this provider to the next one of their route, by role (served, shadow).",
            ),
            variant_fallbacks: counter(
                "promptgate_variant_fallbacks_total",
                "Requests served by the experiment's fallback variant after the assigned one failed.",
            ),
            limit_refusals: counter(
                "promptgate_limit_refusals_total",
                "Requests refused by a client's [limits] on this replica, by client and limit.",
            ),
            tagged_requests: counter(
                "promptgate_tagged_requests_total",
                "Served requests by the value of each x-promptgate-tags key declared `metric_label = true`, and outcome (`ok` or the error class).",
            ),
            tls_certificate_reloads: counter(
                "promptgate_tls_certificate_reloads_total",
                "Changed TLS certificate files read, by listener (client, admin) and outcome (ok, failed: the previous certificate stays).",
            ),
            auth_failures: counter(
                "promptgate_auth_failures_total",
                "Requests refused by authentication or endpoint authorization, by reason (missing, unknown, expired, forbidden); never labelled with a key or its digest.",
            ),
            registry,
            provider,
            meter,
            prices,
        })
    }

    /// A request refused by one of its client's limits. Client ids come from
    /// the config (`[limits.<client>]` names declared clients only).
    pub fn limit_refused(&self, client: &Arc<str>, limit: LimitName) {
        self.limit_refusals.add(
            1,
            &[
                KeyValue::new("client", client.clone()),
                KeyValue::new("limit", limit.label()),
            ],
        );
    }

    /// The price of a model as sent upstream.
    pub fn price_of(&self, upstream_model: &str) -> Option<Price> {
        self.prices.get(upstream_model).copied()
    }

    /// The series of requests labelled `labels`, resolved on their first
    /// request and kept.
    pub fn series(&self, labels: &RequestLabels) -> Arc<Series> {
        if let Some(series) = self.series.load().get(labels) {
            return series.clone();
        }
        let base = labels.base();
        let series = Arc::new(Series {
            requests_ok: self.requests.with_label_values(&labels.values("ok")),
            duration_ok: self.duration.with_label_values(&labels.values("ok")),
            first_byte: self.first_byte.with_label_values(&base),
            input_tokens: self.tokens.with_label_values(&labels.values("input")),
            output_tokens: self.tokens.with_label_values(&labels.values("output")),
            cost: std::sync::OnceLock::new(),
        });
        self.series.rcu(|known| {
            let mut known = HashMap::clone(known);
            known.insert(labels.clone(), series.clone());
            known
        });
        series
    }

    /// A served request whose response body ended.
    pub fn answered(
        &self,
        labels: &RequestLabels,
        series: &Series,
        price: Option<Price>,
        exchange: &FinishedExchange,
    ) {
        let seconds = exchange.duration.as_secs_f64();
        let outcome = exchange.error_class();
        self.tagged(&exchange.start.tags, outcome.unwrap_or("ok"));
        match outcome {
            None => {
                series.requests_ok.inc();
                series.duration_ok.observe(seconds);
            }
            // Errors are rare: their series are looked up when they happen.
            Some(outcome) => {
                let with_outcome = labels.values(outcome);
                self.requests.with_label_values(&with_outcome).inc();
                self.duration
                    .with_label_values(&with_outcome)
                    .observe(seconds);
            }
        }
        if let Some(first_byte) = exchange.first_byte_after {
            series.first_byte.observe(first_byte.as_secs_f64());
        }
        let usage = &exchange.captured.usage;
        if let Some(tokens) = usage.input_tokens {
            series.input_tokens.inc_by(tokens);
        }
        if let Some(tokens) = usage.output_tokens {
            series.output_tokens.inc_by(tokens);
        }
        if let Some(usd) =
            price.and_then(|price| price.cost_usd(usage.input_tokens, usage.output_tokens))
        {
            series
                .cost
                .get_or_init(|| self.cost.with_label_values(&labels.base()))
                .inc_by(usd);
        }
        // Failures before the answer were counted per attempt; these broke after it.
        if let Some(class @ ("upstream_broken" | "timeout" | "stream_error")) =
            exchange.error_class()
        {
            self.provider_error(&labels.provider, class, Role::Served);
        }
    }

    /// A request the gateway answered with an error.
    pub fn refused(&self, refused: RefusedRequest<'_>) {
        let experiment = refused.experiment;
        let labels = [
            refused.endpoint.unwrap_or("unknown"),
            refused.provider.unwrap_or_default(),
            refused.model.as_deref().unwrap_or_default(),
            experiment.map_or("", |t| &t.experiment),
            experiment.map_or("", |t| &t.served_variant),
            refused.class,
        ];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(refused.duration.as_secs_f64());
        self.tagged(refused.tags, refused.class);
    }

    /// One count per metric-label tag of a request (declared keys with a
    /// closed, short list of values: bounded series). Nothing without tags.
    fn tagged(&self, tags: &Tags, outcome: &'static str) {
        for (key, value) in tags.metric_labels() {
            self.tagged_requests.add(
                1,
                &[
                    KeyValue::new("tag", key.to_owned()),
                    KeyValue::new("value", value.to_owned()),
                    KeyValue::new("outcome", outcome),
                ],
            );
        }
    }

    /// A provider attempt that failed (`class`: unreachable, timeout,
    /// rate_limited, …), a served request's or a shadow call's (`role`).
    pub fn provider_error(&self, provider: &Arc<str>, class: &'static str, role: Role) {
        self.provider_errors.add(
            1,
            &[
                KeyValue::new("provider", provider.clone()),
                KeyValue::new("class", class),
                KeyValue::new("role", role.label()),
            ],
        );
    }

    pub fn retry(&self, provider: &Arc<str>, role: Role) {
        self.retries.add(
            1,
            &[
                KeyValue::new("provider", provider.clone()),
                KeyValue::new("role", role.label()),
            ],
        );
    }

    pub fn fallback(&self, provider: &Arc<str>, role: Role) {
        self.fallbacks.add(
            1,
            &[
                KeyValue::new("provider", provider.clone()),
                KeyValue::new("role", role.label()),
            ],
        );
    }

    /// A request refused before its phases: `reason` is a fixed label.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// The assigned `variant` of `experiment` failed and the fallback variant served.
    pub fn variant_fallback(&self, experiment: &Arc<str>, variant: &Arc<str>) {
        self.variant_fallbacks.add(
            1,
            &[
                KeyValue::new("experiment", experiment.clone()),
                KeyValue::new("variant", variant.clone()),
            ],
        );
    }

    /// A listener's TLS certificate files changed and were read (`outcome`:
    /// ok, or failed and the previous certificate stays).
    pub fn tls_certificate_reload(&self, listener: &'static str, outcome: &'static str) {
        self.tls_certificate_reloads.add(
            1,
            &[
                KeyValue::new("listener", listener),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// The config reloads, read at each scrape (`None`: nothing to report).
    pub fn observe_reloads(&self, read: impl Fn() -> Option<ReloadCounts> + Send + Sync + 'static) {
        observe_reloads(&self.meter, Arc::new(read));
    }

    /// The audit pipeline's counters, read at each scrape. Weak: the
    /// metrics must not keep the audit log alive.
    pub fn observe_audit(&self, audit: Weak<AuditLog>) {
        observe_audit(&self.meter, audit);
    }

    /// Each experiment's shadow counters, listed at each scrape.
    pub fn observe_shadows(
        &self,
        by_experiment: impl Fn() -> Vec<(Arc<str>, Arc<ShadowMetrics>)> + Send + Sync + 'static,
    ) {
        observe_shadows(&self.meter, Arc::new(by_experiment));
    }

    /// The Prometheus text exposition of every series.
    pub fn prometheus_text(&self) -> String {
        use prometheus::Encoder;
        let mut text = Vec::new();
        if let Err(error) =
            prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut text)
        {
            tracing::warn!(%error, "encoding metrics failed");
        }
        String::from_utf8(text).unwrap_or_default()
    }

    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// What the reloader reports at a scrape.
pub struct ReloadCounts {
    pub ok: u64,
    pub failed: u64,
    /// The config version in force.
    pub version: Arc<str>,
    /// Failed reads of the config source (file or S3).
    pub source_errors: u64,
    /// When the config source was last read.
    pub source_last_success: std::time::SystemTime,
}

type ReadReloads = Arc<dyn Fn() -> Option<ReloadCounts> + Send + Sync>;
type ListShadows = Arc<dyn Fn() -> Vec<(Arc<str>, Arc<ShadowMetrics>)> + Send + Sync>;

fn observe_reloads(meter: &Meter, read: ReadReloads) {
    let counted = read.clone();
    meter
        .u64_observable_counter("promptgate_config_reloads_total")
        .with_description("Config reloads by outcome.")
        .with_callback(move |observer| {
            if let Some(counts) = counted() {
                observer.observe(counts.ok, &[KeyValue::new("outcome", "ok")]);
                observer.observe(counts.failed, &[KeyValue::new("outcome", "failed")]);
            }
        })
        .build();
    meter
        .u64_observable_gauge("promptgate_config_info")
        .with_description("The config version in force (always 1).")
        .with_callback({
            let read = read.clone();
            move |observer| {
                if let Some(counts) = read() {
                    observer.observe(1, &[KeyValue::new("version", counts.version)]);
                }
            }
        })
        .build();
    let errors = read.clone();
    meter
        .u64_observable_counter("promptgate_config_source_errors_total")
        .with_description("Failed reads (loads and polls) of the config file or S3 object.")
        .with_callback(move |observer| {
            if let Some(counts) = errors() {
                observer.observe(counts.source_errors, &[]);
            }
        })
        .build();
    meter
        .f64_observable_gauge("promptgate_config_source_last_success_timestamp_seconds")
        .with_description("When the config source was last read (Unix time).")
        .with_callback(move |observer| {
            if let Some(counts) = read() {
                let at = counts
                    .source_last_success
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|since| since.as_secs_f64())
                    .unwrap_or(0.0);
                observer.observe(at, &[]);
            }
        })
        .build();
}

fn observe_audit(meter: &Meter, audit: Weak<AuditLog>) {
    use std::sync::atomic::Ordering::Relaxed;

    use crate::audit::AuditMetrics;
    type Read = fn(&AuditMetrics) -> u64;
    let gauges: [(&'static str, &'static str, Read); 8] = [
        (
            "promptgate_audit_spool_segments",
            "Sealed spool segments waiting for upload.",
            |m| m.spool_segments.load(Relaxed),
        ),
        (
            "promptgate_audit_queue_depth",
            "Records waiting for the spool writer.",
            |m| m.queue_depth.load(Relaxed),
        ),
        (
            "promptgate_audit_spool_bytes",
            "Bytes held in the audit spool.",
            |m| m.spool_bytes.load(Relaxed),
        ),
        (
            "promptgate_audit_spool_free_bytes",
            "Free bytes on the audit spool's file system (checked every 10 s).",
            |m| m.spool_free_bytes.load(Relaxed),
        ),
        (
            "promptgate_audit_spool_cap_bytes",
            "The audit spool's cap in force: spool_max_bytes, or its \"auto\" share of the volume.",
            |m| m.spool_cap_bytes.load(Relaxed),
        ),
        (
            "promptgate_audit_spool_failing",
            "1 while the audit spool's disk refuses writes (full, failing, read-only, directory gone).",
            |m| u64::from(m.health.is_failing()),
        ),
        (
            "promptgate_audit_writer_dead",
            "1 once the audit writer thread has died.",
            |m| u64::from(m.health.is_writer_dead()),
        ),
        (
            "promptgate_audit_records_held",
            "Records kept in memory while the audit spool fails, written once it recovers.",
            |m| m.records_held.load(Relaxed),
        ),
    ];
    let counters: [(&'static str, &'static str, Read); 11] = [
        (
            "promptgate_audit_records_written_total",
            "Records written to the spool.",
            |m| m.records_written.load(Relaxed),
        ),
        (
            "promptgate_audit_records_uploaded_total",
            "Records stored in audit objects.",
            |m| m.records_uploaded.load(Relaxed),
        ),
        (
            "promptgate_audit_objects_uploaded_total",
            "Audit objects stored.",
            |m| m.objects_uploaded.load(Relaxed),
        ),
        (
            "promptgate_audit_upload_failures_total",
            "Failed audit object uploads (each is retried).",
            |m| m.upload_failures.load(Relaxed),
        ),
        (
            "promptgate_audit_requests_rejected_total",
            "Requests refused with 503 because the audit spool was full or failing.",
            |m| m.rejected_requests.load(Relaxed),
        ),
        (
            "promptgate_audit_records_dropped_queue_full_total",
            "Records dropped: queue full.",
            |m| m.dropped_queue_full.load(Relaxed),
        ),
        (
            "promptgate_audit_records_dropped_spool_full_total",
            "Records dropped by on_spool_full = drop.",
            |m| m.dropped_spool_full.load(Relaxed),
        ),
        (
            "promptgate_audit_records_dropped_io_total",
            "Records lost to spool write errors.",
            |m| m.dropped_io.load(Relaxed),
        ),
        (
            "promptgate_audit_records_dropped_writer_dead_total",
            "Records dropped because the audit writer thread had died.",
            |m| m.dropped_writer_dead.load(Relaxed),
        ),
        (
            "promptgate_audit_spool_failures_total",
            "Times the audit spool's disk started refusing writes (incidents).",
            |m| m.spool_failures.load(Relaxed),
        ),
        (
            "promptgate_audit_records_not_durable_total",
            "Strict-mode answers turned into errors because their record could not be made durable (the record is kept and written later).",
            |m| m.records_not_durable.load(Relaxed),
        ),
    ];
    let audit_metrics =
        move |audit: &Weak<AuditLog>, read: Read| Some(read(audit.upgrade()?.metrics()));
    for (name, help, read) in gauges {
        let audit = audit.clone();
        meter
            .u64_observable_gauge(name)
            .with_description(help)
            .with_callback(move |observer| {
                if let Some(value) = audit_metrics(&audit, read) {
                    observer.observe(value, &[]);
                }
            })
            .build();
    }
    for (name, help, read) in counters {
        let audit = audit.clone();
        meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |observer| {
                if let Some(value) = audit_metrics(&audit, read) {
                    observer.observe(value, &[]);
                }
            })
            .build();
    }
}

fn observe_shadows(meter: &Meter, shadow_metrics: ListShadows) {
    use std::sync::atomic::Ordering::Relaxed;

    type Read = fn(&ShadowMetrics) -> u64;
    let counters: [(&'static str, &'static str, Read); 3] = [
        (
            "promptgate_shadow_calls_started_total",
            "Shadow calls started, by experiment.",
            |m| m.started.load(Relaxed),
        ),
        (
            "promptgate_shadow_calls_completed_total",
            "Shadow calls that ended with a complete 2xx answer, by experiment.",
            |m| m.completed.load(Relaxed),
        ),
        (
            "promptgate_shadow_calls_failed_total",
            "Shadow calls that failed, timed out or were cancelled, by experiment.",
            |m| m.failed.load(Relaxed),
        ),
    ];
    for (name, help, read) in counters {
        let shadow_metrics = shadow_metrics.clone();
        meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |observer| {
                for (experiment, metrics) in shadow_metrics() {
                    observer.observe(read(&metrics), &[KeyValue::new("experiment", experiment)]);
                }
            })
            .build();
    }
    let in_flight = shadow_metrics.clone();
    meter
        .u64_observable_gauge("promptgate_shadow_calls_in_flight")
        .with_description("Shadow calls running now, by experiment.")
        .with_callback(move |observer| {
            for (experiment, metrics) in in_flight() {
                observer.observe(
                    metrics.in_flight.load(Relaxed),
                    &[KeyValue::new("experiment", experiment)],
                );
            }
        })
        .build();
    let skipped = shadow_metrics.clone();
    meter
        .u64_observable_counter("promptgate_shadow_calls_skipped_total")
        .with_description("Sampled shadow calls not made, by experiment and reason.")
        .with_callback(move |observer| {
            for (experiment, metrics) in skipped() {
                for reason in SkipReason::ALL {
                    observer.observe(
                        metrics.skipped(reason),
                        &[
                            KeyValue::new("experiment", experiment.clone()),
                            KeyValue::new("reason", reason.label()),
                        ],
                    );
                }
            }
        })
        .build();
    meter
        .f64_observable_counter("promptgate_shadow_cost_usd_total")
        .with_description("Priced cost of shadow calls, by experiment.")
        .with_callback(move |observer| {
            for (experiment, metrics) in shadow_metrics() {
                observer.observe(
                    metrics.cost_usd(),
                    &[KeyValue::new("experiment", experiment)],
                );
            }
        })
        .build();
}
