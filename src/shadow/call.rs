//! One shadow call on its task: forward, consume the whole answer, record it.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::limits::{InFlight, add_usd};
use crate::exchange::{
    ExchangeSink, ExperimentTag, FinishedExchange, Outcome, Refusal, RefusalKind,
};
use crate::providers::{self, ForwardRequest, WhenExhausted};
use crate::snapshot::Snapshot;
use crate::telemetry::ShadowMetrics;
use crate::telemetry::trace::{self as telemetry, ShadowParent};
use crate::telemetry::{AccessLog, Metrics, RequestTrace, Role, Telemetry};
use promptgate_core::dialect::Endpoint;
use promptgate_core::error::{ErrorClass, GatewayError};
use promptgate_core::experiments::body::{BodyFields, Piece};
use promptgate_core::experiments::model::Experiment;
use promptgate_core::experiments::render::{self, Variables};

pub(super) struct ShadowCall {
    pub snapshot: Arc<Snapshot>,
    pub experiment: Arc<str>,
    pub variant: usize,
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    pub headers: HeaderMap,
    pub request_id: Arc<str>,
    pub client_id: Option<Arc<str>>,
    /// The served request's tags: a shadow is analysed in the same slices.
    pub tags: promptgate_core::tags::Tags,
    /// The served request's start: the shadow's latency is measured from the
    /// same instant, and its record lands in the same partition.
    pub started: Instant,
    pub started_at: SystemTime,
    /// The caller's body before any variant was rendered into it.
    pub source: Bytes,
    pub tag: ExperimentTag,
    pub timeout: Duration,
    pub price: Option<promptgate_core::config::audit::Price>,
}

/// Why a call was cut short; read by `ShadowSink` when the dropped body reports.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Ending {
    Running = 0,
    TimedOut = 1,
    Cancelled = 2,
}

impl ShadowCall {
    /// The call, to spawn. Not an `async fn`: the served request's span (the
    /// shadow span's link) is picked up here, while `ShadowRunner::launch`
    /// runs inside `telemetry::launching_shadows`.
    pub fn run(
        self,
        place: InFlight,
        sink: Arc<dyn ExchangeSink>,
        metrics: Arc<ShadowMetrics>,
        gateway_telemetry: Telemetry,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let parent = telemetry::shadow_parent();
        self.run_traced(parent, place, sink, metrics, gateway_telemetry, cancel)
    }

    async fn run_traced(
        self,
        parent: Option<ShadowParent>,
        place: InFlight,
        sink: Arc<dyn ExchangeSink>,
        metrics: Arc<ShadowMetrics>,
        gateway_telemetry: Telemetry,
        cancel: CancellationToken,
    ) {
        let Some(experiment) = self.snapshot.experiments.get(&self.experiment) else {
            return; // unreachable: the experiment comes from this very snapshot
        };
        let trace = parent.map(|parent| {
            RequestTrace::shadow(
                parent,
                self.endpoint,
                &self.request_id,
                &self.tag,
                &self.snapshot.version,
            )
        });
        let trace_id = trace.as_ref().and_then(RequestTrace::trace_id);
        let variant = &experiment.variants[self.variant];
        // The configured model of the variant, for the access log.
        let model = variant.route.upstream_model.clone();
        let access = gateway_telemetry.access_log().clone();
        let provider = variant
            .route
            .providers
            .first()
            .map(|&id| self.snapshot.upstreams.provider_name(id).to_owned());
        let body = match self.render(experiment) {
            Ok(body) => body,
            Err(error) => {
                metrics.failed.fetch_add(1, Ordering::Relaxed);
                let kind = RefusalKind::ShadowFailed(error.class());
                if let Some(trace) = &trace {
                    trace.end_here(None, Some(kind.class_label()));
                }
                let mut refusal = self.unanswered(kind, error.to_string());
                refusal.provider = provider;
                refusal.trace_id = trace_id;
                access.refusal(&refusal, Role::Shadow, model.as_deref(), error.detail());
                sink.record_refusal(refusal);
                return;
            }
        };
        let request_id_header = HeaderValue::from_str(&self.request_id)
            .unwrap_or_else(|_| HeaderValue::from_static("shadow"));
        let observer = Arc::new(ShadowSink {
            inner: sink.clone(),
            metrics: metrics.clone(),
            place: Mutex::new(Some(place)),
            price: self.price,
            ending: AtomicU8::new(Ending::Running as u8),
            reported: AtomicBool::new(false),
            span: trace.as_ref().map(RequestTrace::context),
            gateway_metrics: gateway_telemetry.metrics().clone(),
            access: access.clone(),
            model: model.clone(),
        });
        let observer_sink: Arc<dyn ExchangeSink> = observer.clone();
        let failure = {
            let call = pin!(async {
                let response = providers::forward(
                    &self.snapshot.upstreams,
                    &variant.route,
                    ForwardRequest {
                        endpoint: self.endpoint,
                        model: &self.model,
                        upstream_model: variant.model(),
                        stream: self.stream,
                        body,
                        caller_headers: &self.headers,
                        request_id: &self.request_id,
                        request_id_header: &request_id_header,
                        client_id: self.client_id.clone(),
                        tags: self.tags.clone(),
                        config_version: self.snapshot.version.clone(),
                        started: self.started,
                        started_at: self.started_at,
                        experiment: Some(self.tag.clone()),
                        when_exhausted: WhenExhausted::PassThrough,
                        trace: trace.as_ref(),
                        telemetry: &gateway_telemetry,
                        role: Role::Shadow,
                    },
                    &observer_sink,
                )
                .await?;
                let mut body = response.into_body();
                // The observed body records the exchange when it ends or breaks.
                while let Some(Ok(_)) = body.frame().await {}
                Ok::<(), GatewayError>(())
            });
            let ending = tokio::select! {
                result = call => match result {
                    Ok(()) => None,
                    Err(error) => Some((RefusalKind::ShadowFailed(error.class()), error.to_string(), error.detail().map(str::to_owned))),
                },
                () = tokio::time::sleep(self.timeout) => {
                    observer.ending.store(Ending::TimedOut as u8, Ordering::Release);
                    Some((RefusalKind::ShadowFailed(ErrorClass::Timeout), format!("the shadow call's timeout ({} ms) ran out", self.timeout.as_millis()), None))
                },
                () = cancel.cancelled() => {
                    observer.ending.store(Ending::Cancelled as u8, Ordering::Release);
                    Some((RefusalKind::ShadowCancelled, "cancelled at shutdown".to_owned(), None))
                },
            };
            ending
            // `call` is dropped here: a body in flight reports with the ending set.
        };
        let Some((kind, message, detail)) = failure else {
            if let Some(trace) = &trace {
                trace.end();
            }
            return;
        };
        if observer.reported.load(Ordering::Acquire) {
            // The exchange (with its real ending) is already on the span.
            if let Some(trace) = &trace {
                trace.end();
            }
            return;
        }
        metrics.failed.fetch_add(1, Ordering::Relaxed);
        observer.release();
        if let Some(trace) = &trace {
            trace.end_here(None, Some(kind.class_label()));
        }
        let mut refusal = self.unanswered(kind, message);
        refusal.provider = provider;
        refusal.trace_id = trace_id;
        access.refusal(&refusal, Role::Shadow, model.as_deref(), detail.as_deref());
        sink.record_refusal(refusal);
    }

    /// The record of this call when it got no answer (skipped, failed, cancelled).
    pub fn unanswered(&self, kind: RefusalKind, message: String) -> Refusal {
        Refusal {
            request_id: self.request_id.clone(),
            client_id: self.client_id.clone(),
            tags: self.tags.clone(),
            config_version: self.snapshot.version.clone(),
            endpoint: Some(self.endpoint),
            dialect: self.endpoint.dialect(),
            model: Some(self.model.clone()),
            stream: self.stream,
            experiment: Some(self.tag.clone()),
            status: None,
            kind,
            message,
            started_at: self.started_at,
            duration: self.started.elapsed(),
            provider: None,
            trace_id: None,
        }
    }

    /// The shadow variant rendered into the caller's body. OpenAI streams also
    /// ask for usage, which changes nothing for the caller (nobody reads this
    /// stream) and gives the shadow's record its tokens and cost.
    fn render(&self, experiment: &Experiment) -> Result<Bytes, GatewayError> {
        let fields = BodyFields::parse(&self.source)
            .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
        // The served request's variables, read again from the same body.
        let variables = Variables::of(&fields, self.endpoint)?;
        let mut body = render::apply(
            experiment,
            &experiment.variants[self.variant],
            self.endpoint,
            &fields,
            &variables,
        )?;
        if self.stream
            && matches!(
                self.endpoint,
                Endpoint::ChatCompletions | Endpoint::Completions
            )
        {
            let options = match body.caller_value("stream_options") {
                None => Some(Map::new()),
                Some(raw) => serde_json::from_str::<Map<String, Value>>(raw.get()).ok(),
            };
            // A caller's `stream_options` that is not an object is the
            // provider's to refuse, as it would be without the shadow.
            if let Some(mut options) = options {
                options.insert("include_usage".into(), Value::Bool(true));
                body.set("stream_options", Piece::owned(Value::Object(options)));
            }
        }
        body.to_vec()
            .map(Bytes::from)
            .map_err(|e| GatewayError::InvalidJson(e.to_string()))
    }
}

/// Sits between a shadow call's observed body and the audit log: names why a
/// cut-short body ended, counts completion, failure, tokens and cost, and
/// charges them to the experiment's daily budget.
struct ShadowSink {
    inner: Arc<dyn ExchangeSink>,
    metrics: Arc<ShadowMetrics>,
    place: Mutex<Option<InFlight>>,
    price: Option<promptgate_core::config::audit::Price>,
    ending: AtomicU8,
    reported: AtomicBool,
    /// The shadow call's span: gets the exchange's status, outcome and usage.
    span: Option<opentelemetry::Context>,
    /// Counts an answer that broke after its head, like a served one's, under `role = shadow`.
    gateway_metrics: Arc<Metrics>,
    access: Arc<AccessLog>,
    /// The variant's configured model.
    model: Option<Arc<str>>,
}

impl ShadowSink {
    /// Gives the call's place under the cap back.
    fn release(&self) -> Option<InFlight> {
        self.place
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl ExchangeSink for ShadowSink {
    fn record(&self, mut exchange: FinishedExchange) {
        self.reported.store(true, Ordering::Release);
        // Dropping the body is how a shadow call is cut short; the body takes
        // that for a caller who left.
        if exchange.outcome == Outcome::ClientDisconnected {
            let ending = self.ending.load(Ordering::Acquire);
            if ending == Ending::TimedOut as u8 {
                exchange.outcome = Outcome::TimedOut;
            } else if ending == Ending::Cancelled as u8 {
                exchange.outcome = Outcome::Cancelled;
            }
        }
        if let Some(span) = &self.span {
            telemetry::record_exchange(span, &exchange, false);
        }
        // Failures before the answer were counted per attempt by the forwarder.
        if let Some(class @ ("upstream_broken" | "timeout" | "stream_error")) =
            exchange.error_class()
        {
            self.gateway_metrics
                .provider_error(&exchange.start.provider, class, Role::Shadow);
        }
        self.access
            .exchange(&exchange, Role::Shadow, self.model.as_deref());
        let succeeded = exchange.outcome == Outcome::Completed
            && (200..300).contains(&exchange.start.status)
            && exchange.captured.stream_error.is_none();
        let counter = if succeeded {
            &self.metrics.completed
        } else {
            &self.metrics.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let usage = &exchange.captured.usage;
        let tokens = usage.input_tokens.unwrap_or(0) + usage.output_tokens.unwrap_or(0);
        let usd = self
            .price
            .and_then(|p| p.cost_usd(usage.input_tokens, usage.output_tokens))
            .unwrap_or(0.0);
        add_usd(&self.metrics.cost_nano_usd, usd);
        if let Some(place) = self.release() {
            place.spent(tokens, usd);
        }
        self.inner.record(exchange);
    }
}
