//! Sending a request to the providers of a route: retries with backoff before
//! the first byte, then fallback along the route's provider list. The response
//! that is delivered streams through an `ObservedBody` so the exchange is
//! reported once it ends.

pub mod demo;
mod headers;
pub mod retry;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::{BoxError, GatewayBody};
use crate::capture::{self, ObservedBody, ResponseCapture};
use crate::exchange::{ExchangeSink, ExchangeStart, ExperimentTag};
use crate::telemetry::metrics::{RequestLabels, model_label};
use crate::telemetry::{
    AttemptSpan, ExchangeSpans, ExchangeTelemetry, RequestMetrics, RequestTrace, Role, Telemetry,
};
use promptgate_core::config::{Config, HttpUpstream, ProviderConfig, ProviderKind, RouteConfig};
use promptgate_core::dialect::{Dialect, Endpoint};
use promptgate_core::error::GatewayError;
use retry::{NextStep, StatusVerdict};

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One connection pool per HTTP provider, built with its connect timeout.
pub struct Upstreams {
    providers: Vec<Arc<ProviderConfig>>,
    clients: Vec<Option<HttpClient>>,
}

impl Upstreams {
    pub fn new(config: &Config) -> Upstreams {
        let clients = config
            .providers
            .iter()
            .map(|provider| match provider.kind {
                ProviderKind::Demo => None,
                _ => Some(http_client(provider.timeouts.connect)),
            })
            .collect();
        Upstreams {
            providers: config.providers.clone(),
            clients,
        }
    }
}

fn http_client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    // Without it, Nagle + delayed ACK stall every pooled request by ~40 ms.
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        // Fails only if ring lacked every TLS version, which it never does.
        .unwrap_or_else(|_| hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https)
}

/// What the forwarder needs to know about the caller's request.
pub struct ForwardRequest<'a> {
    pub endpoint: Endpoint,
    /// The model as the caller named it.
    pub model: &'a str,
    /// The model the provider is asked for (an alias's target, a variant's model).
    pub upstream_model: &'a str,
    pub stream: bool,
    /// The body to send (with the model already rewritten for an alias).
    pub body: Bytes,
    pub caller_headers: &'a HeaderMap,
    pub request_id: &'a Arc<str>,
    pub request_id_header: &'a HeaderValue,
    pub client_id: Option<Arc<str>>,
    pub tags: promptgate_core::tags::Tags,
    pub config_version: Arc<str>,
    pub started: Instant,
    pub started_at: SystemTime,
    pub experiment: Option<ExperimentTag>,
    pub when_exhausted: WhenExhausted,
    /// The request's span, parent of one client span per attempt (`None`: tracing off).
    pub trace: Option<&'a RequestTrace>,
    /// Where attempts are counted (both roles) and, for served requests, the
    /// request itself and its access-log line (shadow calls have their own).
    pub telemetry: &'a Telemetry,
    pub role: Role,
}

/// What to do when every provider of the route failed with a retryable
/// status (429, 5xx): hand that last answer to the caller, or report failure
/// so the caller can try something else (an experiment's fallback variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenExhausted {
    PassThrough,
    Fail,
}

fn speaks(kind: &ProviderKind, dialect: Dialect) -> bool {
    match kind {
        ProviderKind::Demo => true,
        ProviderKind::OpenAi(_) => dialect == Dialect::OpenAi,
        ProviderKind::Anthropic(_) => dialect == Dialect::Anthropic,
    }
}

/// An attempt that got no response head.
struct NoAnswer {
    error: GatewayError,
    /// The connection broke after the request was sent: the provider may have
    /// run (and billed) it, so another attempt is up to
    /// `retry_on_dropped_after_send`.
    dropped_after_send: bool,
}

impl From<GatewayError> for NoAnswer {
    fn from(error: GatewayError) -> NoAnswer {
        NoAnswer {
            error,
            dropped_after_send: false,
        }
    }
}

/// A failed attempt: what the caller gets if nothing better comes.
enum Failure {
    Error(GatewayError),
    Response(Response<GatewayBody>),
}

/// An attempt that got no answer the caller should have.
enum FailedAttempt {
    /// A retryable status (429, 5xx): this answer reaches the caller if
    /// nothing better comes.
    Status(Response<GatewayBody>),
    /// The provider refused the gateway's key.
    CredentialsRejected {
        status: u16,
    },
    NoAnswer(NoAnswer),
}

impl FailedAttempt {
    fn for_policy(&self) -> retry::AttemptFailure<'_> {
        match self {
            FailedAttempt::Status(response) => retry::AttemptFailure::Status(response.headers()),
            FailedAttempt::CredentialsRejected { .. } => retry::AttemptFailure::CredentialsRejected,
            FailedAttempt::NoAnswer(no_answer) => retry::AttemptFailure::NoAnswer {
                dropped_after_send: no_answer.dropped_after_send,
            },
        }
    }

    /// The status (if any) and the `error.type` it is observed under (the audit's classes).
    fn status_and_class(&self) -> (Option<u16>, &'static str) {
        match self {
            FailedAttempt::Status(response) => {
                let status = response.status().as_u16();
                (Some(status), status_class(status))
            }
            FailedAttempt::CredentialsRejected { status } => (Some(*status), "provider_auth"),
            FailedAttempt::NoAnswer(no_answer) => (None, error_class(&no_answer.error)),
        }
    }

    fn into_failure(self, provider: &ProviderConfig) -> Failure {
        match self {
            FailedAttempt::Status(response) => Failure::Response(response),
            FailedAttempt::CredentialsRejected { .. } => {
                Failure::Error(GatewayError::ProviderAuth {
                    provider: provider.name.to_string(),
                })
            }
            FailedAttempt::NoAnswer(no_answer) => Failure::Error(no_answer.error),
        }
    }
}

/// One attempt: the request built and sent, the answer classified.
async fn send(
    provider: &ProviderConfig,
    client: Option<&HttpClient>,
    request: &ForwardRequest<'_>,
    span: Option<&AttemptSpan>,
) -> Result<Response<GatewayBody>, FailedAttempt> {
    let response = match (&provider.kind, client) {
        (ProviderKind::OpenAi(upstream) | ProviderKind::Anthropic(upstream), Some(client)) => {
            send_http(client, provider, upstream, request, span)
                .await
                .map_err(FailedAttempt::NoAnswer)?
        }
        _ => demo_response(request.endpoint, &request.body, request.stream),
    };
    match retry::classify(response.status()) {
        StatusVerdict::Deliver => Ok(response),
        StatusVerdict::Retry => Err(FailedAttempt::Status(response)),
        StatusVerdict::CredentialsRejected => Err(FailedAttempt::CredentialsRejected {
            status: response.status().as_u16(),
        }),
    }
}

pub async fn forward(
    upstreams: &Upstreams,
    route: &RouteConfig,
    request: ForwardRequest<'_>,
    sink: &Arc<dyn ExchangeSink>,
) -> Result<Response<GatewayBody>, GatewayError> {
    let dialect = request.endpoint.dialect();
    let candidates: Vec<usize> = route
        .providers
        .iter()
        .copied()
        .filter(|&id| speaks(&upstreams.providers[id].kind, dialect))
        .collect();
    let Some(&last_candidate) = candidates.last() else {
        let first = route.providers.first().map(|&id| &upstreams.providers[id]);
        return Err(GatewayError::DialectNotSupported {
            model: request.model.to_owned(),
            provider: first.map_or_else(String::new, |p| p.name.to_string()),
            dialect: match dialect {
                Dialect::OpenAi => "OpenAI",
                Dialect::Anthropic => "Anthropic Messages",
            },
        });
    };

    let metrics = request.telemetry.metrics();
    let mut attempts = 0u32;
    let mut failure = None;
    'providers: for id in candidates {
        let provider = &upstreams.providers[id];
        let client = upstreams.clients[id].as_ref();
        let policy =
            retry::Attempts::new(&provider.retry, request.started + provider.timeouts.total);
        for attempt in 0..=provider.retry.max_retries {
            attempts += 1;
            let attempt_started = Instant::now();
            let span = request.trace.map(|trace| {
                trace.attempt(
                    request.endpoint,
                    provider,
                    request.upstream_model,
                    request.experiment.as_ref(),
                    attempts,
                )
            });
            let failed = match send(provider, client, &request, span.as_ref()).await {
                Ok(response) => {
                    let telemetry = exchange_telemetry(span, route, provider, &request);
                    let response = deliver(
                        response,
                        provider,
                        &request,
                        attempts,
                        attempt_started,
                        sink,
                    )
                    .map(|body| body.with_telemetry(telemetry));
                    return release(response, provider).await;
                }
                Err(failed) => failed,
            };
            observe_failed_attempt(span, &request, provider, attempts, &failed);
            let next = policy.after(attempt, failed.for_policy());
            failure = Some(failed.into_failure(provider));
            match next {
                NextStep::RetryAfter(delay) => {
                    // Release the failed response's connection before waiting:
                    // the next attempt replaces it.
                    if matches!(failure, Some(Failure::Response(_))) {
                        failure = None;
                    }
                    metrics.retry(&provider.name, request.role);
                    tokio::time::sleep(delay).await;
                }
                NextStep::NextProvider => break,
                NextStep::Stop => break 'providers,
            }
        }
        if id != last_candidate {
            // Counted; the request's line names the provider that answered
            // and the attempts made.
            metrics.fallback(&provider.name, request.role);
            if matches!(failure, Some(Failure::Response(_))) {
                failure = None;
            }
        }
    }
    match failure {
        // The last provider's own error status and body reach the caller unchanged.
        Some(Failure::Response(response)) => {
            let provider = &upstreams.providers[last_candidate];
            let status = response.status().as_u16();
            let response = deliver(response, provider, &request, attempts, Instant::now(), sink);
            match request.when_exhausted {
                WhenExhausted::PassThrough => {
                    // The attempt's span ended with its status; the request's
                    // goes with this body, which the caller gets.
                    let telemetry = exchange_telemetry(None, route, provider, &request);
                    release(
                        response.map(|body| body.with_telemetry(telemetry)),
                        provider,
                    )
                    .await
                }
                WhenExhausted::Fail => {
                    response.into_body().abandon();
                    Err(GatewayError::ProviderStatus {
                        provider: provider.name.to_string(),
                        status,
                    })
                }
            }
        }
        Some(Failure::Error(error)) => Err(error),
        None => Err(GatewayError::ProviderUnreachable {
            provider: upstreams.providers[last_candidate].name.to_string(),
            detail: None,
        }),
    }
}

/// Hands the answer on: in strict audit mode a JSON answer first waits,
/// whole, for its record to be durable (`capture::release`).
async fn release(
    response: Response<ObservedBody>,
    provider: &ProviderConfig,
) -> Result<Response<GatewayBody>, GatewayError> {
    capture::release(response, &provider.name, provider.timeouts.total).await
}

fn upstream_uri(upstream: &HttpUpstream, endpoint: Endpoint) -> Result<Uri, http::Error> {
    let mut path = String::with_capacity(upstream.path_prefix.len() + 40 + upstream.query.len());
    path.push_str(&upstream.path_prefix);
    path.push_str(endpoint.upstream_path());
    if !upstream.query.is_empty() {
        path.push('?');
        path.push_str(&upstream.query);
    }
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(path)
        .build()
}

async fn send_http(
    client: &HttpClient,
    provider: &ProviderConfig,
    upstream: &HttpUpstream,
    request: &ForwardRequest<'_>,
    span: Option<&AttemptSpan>,
) -> Result<Response<GatewayBody>, NoAnswer> {
    let unreachable = |detail: Option<String>| GatewayError::ProviderUnreachable {
        provider: provider.name.to_string(),
        detail,
    };
    let uri = upstream_uri(upstream, request.endpoint)
        .map_err(|_| unreachable(Some("the provider's URL could not be built".to_owned())))
        .map_err(NoAnswer::from)?;
    let mut headers = headers::to_provider(request.caller_headers, request.request_id_header);
    if let Some(credential) = &upstream.credential {
        headers.insert(credential.header.clone(), credential.value.clone());
    }
    headers
        .entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    if let Some(span) = span {
        span.inject(&mut headers);
    }
    let mut outgoing = Request::new(Full::new(request.body.clone()));
    *outgoing.method_mut() = Method::POST;
    *outgoing.uri_mut() = uri;
    *outgoing.headers_mut() = headers;
    match tokio::time::timeout(provider.timeouts.first_byte, client.request(outgoing)).await {
        Err(_) => Err(GatewayError::ProviderTimeout {
            provider: provider.name.to_string(),
            timeout: provider.timeouts.first_byte,
        }
        .into()),
        Ok(Err(error)) => {
            // The detail stays in the operator's log; the caller learns only
            // which provider. DEBUG: a request's one WARN line is its access
            // line, and an outage must not write one line per attempt.
            let detail = ErrorChain(&error).to_string();
            tracing::debug!(
                request_id = %request.request_id,
                role = request.role.label(),
                provider = %provider.name,
                connect = error.is_connect(),
                error = %detail,
                "provider request failed"
            );
            Err(NoAnswer {
                error: unreachable(Some(detail)),
                // A connect error means nothing was sent; any other (reset,
                // closed before the answer) came after the request was written.
                dropped_after_send: !error.is_connect(),
            })
        }
        Ok(Ok(response)) => Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync())),
    }
}

fn demo_response(endpoint: Endpoint, body: &Bytes, stream: bool) -> Response<GatewayBody> {
    let request = match demo::read_request(endpoint, body) {
        Ok(request) => request,
        Err(error) => {
            let mut response = Response::new(crate::body::full(error.to_string()));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return response;
        }
    };
    let answer = demo::answer(endpoint, &request);
    let (content_type, body) = if stream && demo::streams(endpoint) {
        let frames = demo::sse_frames(endpoint, &answer, &request);
        let stream = futures_util::stream::iter(
            frames
                .into_iter()
                .map(|frame| Ok::<_, BoxError>(http_body::Frame::data(frame))),
        );
        ("text/event-stream", StreamBody::new(stream).boxed_unsync())
    } else {
        (
            "application/json",
            crate::body::full(demo::json_body(endpoint, &answer).to_string()),
        )
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn deliver(
    response: Response<GatewayBody>,
    provider: &ProviderConfig,
    request: &ForwardRequest<'_>,
    attempts: u32,
    attempt_started: Instant,
    sink: &Arc<dyn ExchangeSink>,
) -> Response<ObservedBody> {
    let (mut parts, body) = response.into_parts();
    let event_stream = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let start = ExchangeStart {
        request_id: request.request_id.clone(),
        client_id: request.client_id.clone(),
        tags: request.tags.clone(),
        config_version: request.config_version.clone(),
        endpoint: request.endpoint,
        provider: provider.name.clone(),
        model: request.model.to_owned(),
        upstream_model: request.upstream_model.to_owned(),
        request_body: request.body.clone(),
        stream: request.stream,
        status: parts.status.as_u16(),
        attempts,
        started_at: request.started_at,
        started: request.started,
        head_after: request.started.elapsed(),
        experiment: request.experiment.clone(),
        trace_id: request.trace.and_then(RequestTrace::trace_id),
    };
    let deadline = match provider.kind {
        ProviderKind::Demo => None,
        _ => Some(Box::pin(tokio::time::sleep_until(
            (attempt_started + provider.timeouts.total).into(),
        ))),
    };
    let capture = ResponseCapture::with_event_limit(
        request.endpoint,
        event_stream,
        provider.max_sse_event_bytes,
    );
    let capture = match sink.reads_answers() {
        true => capture,
        false => capture.usage_only(),
    };
    let body = ObservedBody::new(body, start, capture, deadline, sink.clone());
    headers::to_caller(&mut parts.headers);
    Response::from_parts(parts, body)
}

/// The labels a served request is counted and logged under when its body
/// ends; shadow calls count and log theirs in their own sink.
fn request_metrics(
    route: &RouteConfig,
    provider: &ProviderConfig,
    request: &ForwardRequest<'_>,
) -> Option<RequestMetrics> {
    if request.role != Role::Served {
        return None;
    }
    let metrics = request.telemetry.metrics();
    let tag = request.experiment.as_ref();
    let labels = RequestLabels {
        endpoint: request.endpoint.label(),
        provider: provider.name.clone(),
        model: model_label(route, request.model),
        experiment: tag.map(|t| t.experiment.clone()),
        variant: tag.map(|t| t.served_variant.clone()),
    };
    Some(RequestMetrics {
        metrics: metrics.clone(),
        access: request.telemetry.access_log().clone(),
        series: metrics.series(&labels),
        labels,
        price: metrics.price_of(request.upstream_model),
    })
}

/// An error and its sources, `a: b: c`: hyper's own message ("client error
/// (Connect)") says little without them. They name no URL or header.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// A failed attempt, observed in one place: its span ends with the status
/// and class, the provider's error counter counts it, and a rejected key
/// gets a DEBUG line (the request's access-log line reports the request, at
/// WARN when served; this is the per-attempt detail).
fn observe_failed_attempt(
    span: Option<AttemptSpan>,
    request: &ForwardRequest<'_>,
    provider: &ProviderConfig,
    attempt: u32,
    failed: &FailedAttempt,
) {
    let (status, class) = failed.status_and_class();
    if let Some(span) = span {
        span.failed(status, class);
    }
    request
        .telemetry
        .metrics()
        .provider_error(&provider.name, class, request.role);
    if let FailedAttempt::CredentialsRejected { status } = failed {
        tracing::debug!(
            request_id = %request.request_id,
            role = request.role.label(),
            provider = %provider.name,
            attempt,
            status,
            "provider rejected the gateway's credentials"
        );
    }
}

/// What ends with the delivered body: the attempt's span (`None` when it
/// already ended), the request's span, and a served request's metrics and
/// access-log line.
fn exchange_telemetry(
    attempt: Option<AttemptSpan>,
    route: &RouteConfig,
    provider: &ProviderConfig,
    request: &ForwardRequest<'_>,
) -> ExchangeTelemetry {
    ExchangeTelemetry {
        spans: ExchangeSpans {
            attempt: attempt.map(AttemptSpan::into_context),
            request: request.trace.and_then(|t| t.hand_off(provider)),
        },
        metrics: request_metrics(route, provider, request),
    }
}

/// `error.type` of an attempt answered with a retryable status (the audit's classes).
fn status_class(status: u16) -> &'static str {
    match status {
        429 => "rate_limited",
        400..=499 => "provider_client_error",
        _ => "provider_error",
    }
}

/// `error.type` of an attempt that got no answer.
fn error_class(error: &GatewayError) -> &'static str {
    match error {
        GatewayError::ProviderTimeout { .. } => "timeout",
        GatewayError::ProviderUnreachable { .. } => "unreachable",
        other => other.class().label(),
    }
}

impl Upstreams {
    pub fn provider_name(&self, id: usize) -> &str {
        self.providers.get(id).map_or("", |p| &p.name)
    }

    /// What kind of provider `id` is (`None` for an unknown id).
    pub fn provider_kind(&self, id: usize) -> Option<&ProviderKind> {
        self.providers.get(id).map(|p| &p.kind)
    }
}
