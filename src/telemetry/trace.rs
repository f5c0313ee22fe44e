//! The spans of one request. A `RequestTrace` holds the server span (or a
//! shadow call's root span) and makes one client span per provider attempt.
//! The server span ends when the response body ends, because token usage is
//! known only then: the forwarder hands it, with the delivered attempt's span,
//! to the `ObservedBody` (`ExchangeSpans`), which ends both when it reports
//! the exchange. A request answered without a provider body ends it in the
//! handler. Attribute names follow the OpenTelemetry GenAI and HTTP semantic
//! conventions where they exist; promptgate's own are under `promptgate.`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Link, SpanContext, SpanKind, Status, TraceContextExt, TraceId, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

use crate::exchange::{ExperimentTag, FinishedExchange};
use promptgate_core::config::ProviderConfig;
use promptgate_core::dialect::Endpoint;

/// Attribute keys.
pub mod attr {
    pub const OPERATION: &str = "gen_ai.operation.name";
    /// The provider's kind; `gen_ai.provider.name` is its newer name, sent too.
    pub const SYSTEM: &str = "gen_ai.system";
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// The model the provider's answer names (never a metric label).
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const HTTP_METHOD: &str = "http.request.method";
    pub const HTTP_ROUTE: &str = "http.route";
    pub const HTTP_STATUS: &str = "http.response.status_code";
    pub const ERROR_TYPE: &str = "error.type";
    pub const REQUEST_ID: &str = "promptgate.request.id";
    /// `served` or `shadow`.
    pub const ROLE: &str = "promptgate.role";
    pub const CONFIG_VERSION: &str = "promptgate.config.version";
    pub const CLIENT_ID: &str = "promptgate.client.id";
    pub const STREAM: &str = "promptgate.stream";
    pub const EXPERIMENT: &str = "promptgate.experiment";
    pub const VARIANT_ASSIGNED: &str = "promptgate.variant.assigned";
    pub const VARIANT_SERVED: &str = "promptgate.variant.served";
    pub const ASSIGNMENT_REASON: &str = "promptgate.assignment.reason";
    /// The configured provider name (`gen_ai.system` is its kind).
    pub const PROVIDER: &str = "promptgate.provider";
    /// 1 for the first attempt of a request, counting retries and fallbacks.
    pub const ATTEMPT: &str = "promptgate.attempt";
    pub const ATTEMPTS: &str = "promptgate.attempts";
    /// How the exchange ended (the audit record's `outcome`).
    pub const OUTCOME: &str = "promptgate.outcome";
    pub const SHADOW_OF: &str = "promptgate.shadow_of";
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// Caller-chosen strings (model names) are cut to this many bytes in spans.
const MAX_ATTRIBUTE_BYTES: usize = 256;

/// Whether a request's answer went to a caller or was a shadow call's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Served,
    Shadow,
}

impl Role {
    /// The `promptgate.role` attribute, the metrics' `role` label and the access log's `role`.
    pub fn label(self) -> &'static str {
        match self {
            Role::Served => "served",
            Role::Shadow => "shadow",
        }
    }
}

/// The span of one request (served or shadow) and the means to start its attempts' spans.
pub struct RequestTrace {
    tracer: SdkTracer,
    /// Holds the request's span; client spans are its children.
    cx: Context,
    role: Role,
    /// Set once the span went with the response body, which ends it.
    handed_off: AtomicBool,
}

impl RequestTrace {
    /// The server span of a request, a child of the caller's `traceparent` when valid.
    pub(super) fn served(
        tracer: SdkTracer,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        request_id: &Arc<str>,
        config_version: &Arc<str>,
    ) -> RequestTrace {
        let parent =
            TraceContextPropagator::new().extract_with_context(&Context::new(), &Extract(headers));
        let endpoint = Endpoint::from_request(method, path).ok();
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new(attr::HTTP_METHOD, method_label(method)));
        attributes.push(KeyValue::new(attr::ROLE, "served"));
        attributes.push(KeyValue::new(attr::REQUEST_ID, request_id.clone()));
        attributes.push(KeyValue::new(attr::CONFIG_VERSION, config_version.clone()));
        let name: Cow<'static, str> = match endpoint {
            Some(endpoint) => {
                attributes.push(KeyValue::new(attr::HTTP_ROUTE, route(endpoint)));
                if let Some(operation) = operation(endpoint) {
                    attributes.push(KeyValue::new(attr::OPERATION, operation));
                }
                Cow::Owned(format!("{} {}", method_label(method), route(endpoint)))
            }
            None => Cow::Borrowed(method_label(method)),
        };
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        RequestTrace {
            cx: parent.with_span(span),
            tracer,
            role: Role::Served,
            handed_off: AtomicBool::new(false),
        }
    }

    /// A shadow call's root span: a trace of its own, linked to the served
    /// request's span (which usually ends first).
    pub fn shadow(
        parent: ShadowParent,
        endpoint: Endpoint,
        request_id: &Arc<str>,
        tag: &ExperimentTag,
        config_version: &Arc<str>,
    ) -> RequestTrace {
        let ShadowParent { tracer, served } = parent;
        let mut attributes = vec![
            KeyValue::new(attr::ROLE, "shadow"),
            KeyValue::new(attr::REQUEST_ID, request_id.clone()),
            KeyValue::new(attr::CONFIG_VERSION, config_version.clone()),
        ];
        if let Some(operation) = operation(endpoint) {
            attributes.push(KeyValue::new(attr::OPERATION, operation));
        }
        if let Some(served) = &tag.shadow_of {
            attributes.push(KeyValue::new(attr::SHADOW_OF, served.clone()));
        }
        attributes.extend(experiment_attributes(tag));
        let root = Context::new();
        let span = tracer
            .span_builder(format!("shadow {}", route(endpoint)))
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .with_links(vec![Link::with_context(served)])
            .start_with_context(&tracer, &root);
        RequestTrace {
            cx: root.with_span(span),
            tracer,
            role: Role::Shadow,
            handed_off: AtomicBool::new(false),
        }
    }

    /// The trace id, for the audit record (set whether or not the trace is sampled:
    /// it is also the id the provider received).
    pub fn trace_id(&self) -> Option<TraceId> {
        let span = self.cx.span();
        let context = span.span_context();
        context.is_valid().then(|| context.trace_id())
    }

    pub fn span_context(&self) -> SpanContext {
        self.cx.span().span_context().clone()
    }

    /// The request's span, for attributes known later (shadow usage).
    pub fn context(&self) -> Context {
        self.cx.clone()
    }

    /// What the handler learns after authentication and parsing.
    pub fn note_request(&self, client_id: Option<&Arc<str>>, model: &str, stream: bool) {
        let span = self.cx.span();
        if let Some(client) = client_id {
            span.set_attribute(KeyValue::new(attr::CLIENT_ID, client.clone()));
        }
        span.set_attribute(KeyValue::new(attr::REQUEST_MODEL, bounded(model)));
        span.set_attribute(KeyValue::new(attr::STREAM, stream));
    }

    /// The experiment, assigned and served variant, and why.
    pub fn note_experiment(&self, tag: &ExperimentTag) {
        self.cx.span().set_attributes(experiment_attributes(tag));
    }

    /// Starts the client span of one attempt at a provider.
    pub fn attempt(
        &self,
        endpoint: Endpoint,
        provider: &ProviderConfig,
        upstream_model: &str,
        experiment: Option<&ExperimentTag>,
        attempt: u32,
    ) -> AttemptSpan {
        let model = bounded(upstream_model);
        let name = match operation(endpoint) {
            Some(operation) => format!("{operation} {model}"),
            None => format!("{} {model}", endpoint.label()),
        };
        let mut attributes = Vec::with_capacity(14);
        if let Some(operation) = operation(endpoint) {
            attributes.push(KeyValue::new(attr::OPERATION, operation));
        }
        attributes.push(KeyValue::new(attr::SYSTEM, provider.kind.label()));
        attributes.push(KeyValue::new(attr::PROVIDER_NAME, provider.kind.label()));
        attributes.push(KeyValue::new(attr::PROVIDER, provider.name.clone()));
        attributes.push(KeyValue::new(attr::REQUEST_MODEL, model));
        attributes.push(KeyValue::new(attr::ATTEMPT, i64::from(attempt)));
        attributes.push(KeyValue::new(attr::HTTP_METHOD, "POST"));
        attributes.push(KeyValue::new(attr::ROLE, self.role.label()));
        if let Some(tag) = experiment {
            attributes.extend(experiment_attributes(tag));
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.cx);
        AttemptSpan {
            cx: self.cx.with_span(span),
        }
    }

    /// The served request's span goes with the body the caller gets (which
    /// ends it); a shadow's stays with its call. Notes the serving provider.
    pub fn hand_off(&self, provider: &ProviderConfig) -> Option<Context> {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(attr::SYSTEM, provider.kind.label()));
        span.set_attribute(KeyValue::new(attr::PROVIDER, provider.name.clone()));
        if self.role == Role::Shadow {
            return None;
        }
        self.handed_off.store(true, Ordering::Release);
        Some(self.cx.clone())
    }

    /// Ends the span of a request answered without a provider body (a refusal,
    /// the model list, feedback); does nothing once the span went with a body.
    pub fn end_here(&self, status: Option<u16>, error: Option<&'static str>) {
        if self.handed_off.load(Ordering::Acquire) {
            return;
        }
        let span = self.cx.span();
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(attr::HTTP_STATUS, i64::from(status)));
        }
        if let Some(error) = error {
            span.set_attribute(KeyValue::new(attr::ERROR_TYPE, error));
            // A server span is in error for its own failures (5xx), not the
            // caller's (4xx); a shadow has no caller, so any failure counts.
            if self.role == Role::Shadow || status.is_none_or(|s| s >= 500) {
                span.set_status(Status::error(error));
            }
        }
        span.end();
    }

    /// Ends a shadow call's span after its exchange was recorded on it.
    pub fn end(&self) {
        self.cx.span().end();
    }
}

/// A client span: one attempt at one provider.
pub struct AttemptSpan {
    cx: Context,
}

impl AttemptSpan {
    /// Puts this span's context in the provider request, replacing whatever
    /// trace context the caller sent: the provider's parent is this attempt.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.remove(TRACEPARENT);
        headers.remove(TRACESTATE);
        TraceContextPropagator::new().inject_context(&self.cx, &mut Inject(headers));
    }

    /// Ends an attempt that failed before an answer was delivered.
    pub fn failed(self, status: Option<u16>, error: &'static str) {
        let span = self.cx.span();
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(attr::HTTP_STATUS, i64::from(status)));
        }
        span.set_attribute(KeyValue::new(attr::ERROR_TYPE, error));
        span.set_status(Status::error(error));
        span.end();
    }

    pub fn into_context(self) -> Context {
        self.cx
    }
}

/// The spans that end with a response body: the delivered attempt's and, for
/// the body the caller gets, the server span.
#[derive(Default)]
pub struct ExchangeSpans {
    pub attempt: Option<Context>,
    pub request: Option<Context>,
}

impl ExchangeSpans {
    pub fn is_empty(&self) -> bool {
        self.attempt.is_none() && self.request.is_none()
    }

    pub fn finish(self, exchange: &FinishedExchange) {
        if let Some(cx) = self.attempt {
            record_exchange(&cx, exchange, true);
            cx.span().end();
        }
        if let Some(cx) = self.request {
            record_exchange(&cx, exchange, false);
            cx.span().end();
        }
    }
}

/// Status, outcome, usage and error of a finished exchange on a span.
pub fn record_exchange(cx: &Context, exchange: &FinishedExchange, client: bool) {
    let span = cx.span();
    let usage = &exchange.captured.usage;
    let mut attributes = Vec::with_capacity(7);
    attributes.push(KeyValue::new(
        attr::HTTP_STATUS,
        i64::from(exchange.start.status),
    ));
    attributes.push(KeyValue::new(attr::OUTCOME, exchange.outcome.label()));
    if !client {
        attributes.push(KeyValue::new(
            attr::ATTEMPTS,
            i64::from(exchange.start.attempts),
        ));
    }
    if let Some(tokens) = usage.input_tokens {
        attributes.push(KeyValue::new(attr::INPUT_TOKENS, saturating_i64(tokens)));
    }
    if let Some(tokens) = usage.output_tokens {
        attributes.push(KeyValue::new(attr::OUTPUT_TOKENS, saturating_i64(tokens)));
    }
    // Already cut to a bounded length by the capture.
    if let Some(model) = &exchange.captured.model {
        attributes.push(KeyValue::new(attr::RESPONSE_MODEL, model.clone()));
    }
    let error = exchange.error_class();
    if let Some(error) = error {
        attributes.push(KeyValue::new(attr::ERROR_TYPE, error));
    }
    span.set_attributes(attributes);
    // The caller's own mistakes and departures are not the server's errors;
    // for a client span any failed answer is.
    let failed = match error {
        None | Some("client_disconnected") => false,
        Some("rate_limited" | "provider_client_error") => client,
        Some(_) => true,
    };
    if let Some(error) = error.filter(|_| failed) {
        span.set_status(Status::error(error));
    }
}

/// The served request's trace, for the shadow calls it launches.
#[derive(Clone)]
pub struct ShadowParent {
    tracer: SdkTracer,
    served: SpanContext,
}

thread_local! {
    /// Set while a served request launches its shadow calls. The shadow
    /// runner's API carries no trace, so a call picks its parent up when it
    /// is created, synchronously inside `launch` — as OpenTelemetry's own
    /// current context would be picked up.
    static LAUNCHING: RefCell<Option<ShadowParent>> = const { RefCell::new(None) };
}

/// Runs `launch` with the served request's span as the parent of the shadow
/// calls it creates.
pub fn launching_shadows<R>(served: Option<&RequestTrace>, launch: impl FnOnce() -> R) -> R {
    let Some(served) = served else {
        return launch();
    };
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            LAUNCHING.with(|slot| slot.borrow_mut().take());
        }
    }
    LAUNCHING.with(|slot| {
        *slot.borrow_mut() = Some(ShadowParent {
            tracer: served.tracer.clone(),
            served: served.span_context(),
        })
    });
    let _reset = Reset;
    launch()
}

/// The parent set by `launching_shadows` on this thread, if any.
pub fn shadow_parent() -> Option<ShadowParent> {
    LAUNCHING.with(|slot| slot.borrow().clone())
}

fn experiment_attributes(tag: &ExperimentTag) -> [KeyValue; 4] {
    [
        KeyValue::new(attr::EXPERIMENT, tag.experiment.clone()),
        KeyValue::new(attr::VARIANT_ASSIGNED, tag.assigned_variant.clone()),
        KeyValue::new(attr::VARIANT_SERVED, tag.served_variant.clone()),
        KeyValue::new(attr::ASSIGNMENT_REASON, tag.reason.to_string()),
    ]
}

/// GenAI's `gen_ai.operation.name` of an endpoint.
pub fn operation(endpoint: Endpoint) -> Option<&'static str> {
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => Some("chat"),
        Endpoint::Completions => Some("text_completion"),
        Endpoint::Embeddings => Some("embeddings"),
        Endpoint::CountTokens => Some("count_tokens"),
        Endpoint::Models | Endpoint::Feedback => None,
    }
}

/// The path callers use (`http.route`).
fn route(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "/v1/chat/completions",
        Endpoint::Completions => "/v1/completions",
        Endpoint::Embeddings => "/v1/embeddings",
        Endpoint::Responses => "/v1/responses",
        Endpoint::Models => "/v1/models",
        Endpoint::Messages => "/v1/messages",
        Endpoint::CountTokens => "/v1/messages/count_tokens",
        Endpoint::Feedback => "/v1/feedback",
    }
}

/// Known methods by name, anything else as `_OTHER` (HTTP conventions).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

fn bounded(text: &str) -> String {
    if text.len() <= MAX_ATTRIBUTE_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_ATTRIBUTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        let name = match key {
            "traceparent" => TRACEPARENT,
            "tracestate" => TRACESTATE,
            _ => return,
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_caller_strings_are_cut_on_a_character_boundary() {
        let text = "é".repeat(200);
        let cut = bounded(&text);
        assert!(cut.len() <= MAX_ATTRIBUTE_BYTES);
        assert!(text.starts_with(&cut));
        assert_eq!(bounded("gpt-4o"), "gpt-4o");
    }

    #[test]
    fn operations_follow_the_genai_conventions() {
        assert_eq!(operation(Endpoint::ChatCompletions), Some("chat"));
        assert_eq!(operation(Endpoint::Messages), Some("chat"));
        assert_eq!(operation(Endpoint::Embeddings), Some("embeddings"));
        assert_eq!(operation(Endpoint::Completions), Some("text_completion"));
        assert_eq!(operation(Endpoint::Models), None);
    }
}
