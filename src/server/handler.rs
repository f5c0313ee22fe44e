//! One request, in phases: identify → load snapshot → match endpoint →
//! authenticate → read body → parse → route → forward → decorate response.
//! Every failure returns a `GatewayError`, turned into a response at the end
//! in the caller's dialect; nothing here writes a response by hand.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::Gateway;
use super::auth::authenticate;
use super::variant;
use crate::api::{self, Dialect, Endpoint, EndpointMismatch};
use crate::body::{GatewayBody, full};
use crate::capture::{ExperimentTag, Refusal, RefusalKind};
use crate::config::RouteConfig;
use crate::error::GatewayError;
use crate::experiments::model::Experiment;
use crate::feedback::{self, Feedback};
use crate::providers::{self, ForwardRequest, WhenExhausted};
use crate::snapshot::Snapshot;
use crate::telemetry::access::Answered;
use crate::telemetry::{RequestTrace, Role};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
pub(super) const EXPERIMENT_HEADER: HeaderName = HeaderName::from_static("x-promptgate-experiment");
const CONFIG_VERSION: HeaderName = HeaderName::from_static("x-promptgate-config-version");
const MAX_CALLER_REQUEST_ID_LEN: usize = 128;

pub async fn handle(gateway: Arc<Gateway>, request: Request<Incoming>) -> Response<GatewayBody> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let (request_id, request_id_header) = request_id(request.headers());
    let snapshot = gateway.snapshots.load();
    let dialect = Dialect::of_path(request.uri().path());
    // `None` when tracing is off: nothing below pays for it then.
    let trace = gateway
        .telemetry
        .server_trace(&request, &request_id, &snapshot.version);

    let trail = Trail::default();
    let mut response = match serve(
        &gateway,
        &snapshot,
        request,
        &request_id,
        &request_id_header,
        started,
        started_at,
        &trail,
        trace.as_ref(),
    )
    .await
    {
        Ok(response) => {
            // A body from a provider carries the span and ends it; any other
            // answer (the model list, feedback) ends it here.
            if let Some(trace) = &trace {
                trace.end_here(Some(response.status().as_u16()), None);
            }
            // Likewise the access-log line: a provider's body writes it when
            // it ends; the gateway's own answers are written here.
            let trail = trail.into_inner();
            if let Some(endpoint @ (Endpoint::Models | Endpoint::Feedback)) = trail.endpoint {
                gateway.telemetry.access_log().answered_here(Answered {
                    request_id: &request_id,
                    trace_id: trace.as_ref().and_then(RequestTrace::trace_id),
                    endpoint,
                    status: response.status().as_u16(),
                    latency: started.elapsed(),
                    client_id: trail.client_id.as_deref(),
                });
            }
            response
        }
        Err(error) => {
            let mut response = api::error_response(dialect, &error);
            if let Some(trace) = &trace {
                trace.end_here(
                    Some(response.status().as_u16()),
                    Some(error.class().label()),
                );
            }
            let trail = trail.into_inner();
            let model = refused_model_label(&snapshot, &trail);
            gateway.telemetry.metrics().refused(
                trail.endpoint.map(Endpoint::label),
                error.provider(),
                model.clone(),
                trail.experiment.as_ref(),
                error.class().label(),
                started.elapsed(),
            );
            let refusal = Refusal {
                request_id: request_id.clone(),
                client_id: trail.client_id,
                config_version: snapshot.version.clone(),
                endpoint: trail.endpoint,
                dialect,
                model: trail.model,
                stream: trail.stream,
                experiment: trail.experiment,
                status: Some(response.status().as_u16()),
                kind: RefusalKind::Refused(error.class()),
                message: error.to_string(),
                started_at,
                duration: started.elapsed(),
                provider: error.provider().map(str::to_owned),
                trace_id: trace.as_ref().and_then(RequestTrace::trace_id),
            };
            gateway.telemetry.access_log().refusal(
                &refusal,
                Role::Served,
                model.as_deref(),
                error.detail(),
            );
            // A request refused because the audit spool is full is counted
            // (promptgate_audit_requests_rejected_total), not spooled: writing
            // it would grow the spool past its cap.
            if !matches!(error, GatewayError::AuditBackpressure) {
                gateway.sink.record_refusal(refusal);
            }
            if refused_before_reading_the_body(&error) {
                // The unread body is still on the wire: the connection cannot
                // carry another request, and the client must know not to try.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id_header.clone());
    if dialect == Dialect::Anthropic {
        headers.insert(ANTHROPIC_REQUEST_ID, request_id_header);
    }
    if let Ok(version) = HeaderValue::from_str(&snapshot.version) {
        headers.insert(CONFIG_VERSION, version);
    }
    response
}

/// What is known about a request so far, for the record of a refusal.
#[derive(Default)]
pub(super) struct Trail(std::sync::Mutex<TrailData>);

#[derive(Default)]
pub(super) struct TrailData {
    pub endpoint: Option<Endpoint>,
    pub client_id: Option<Arc<str>>,
    pub model: Option<String>,
    pub stream: bool,
    pub experiment: Option<ExperimentTag>,
}

impl Trail {
    pub fn note(&self, update: impl FnOnce(&mut TrailData)) {
        update(
            &mut self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    fn into_inner(self) -> TrailData {
        self.0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The configured model a refused request was for, when it got that far.
fn refused_model_label(snapshot: &Snapshot, trail: &TrailData) -> Option<Arc<str>> {
    if let Some(tag) = &trail.experiment {
        let experiment = snapshot.experiments.get(&tag.experiment)?;
        let variant = experiment
            .variants
            .iter()
            .find(|v| v.name == tag.served_variant)?;
        return variant.route.upstream_model.clone();
    }
    let model = trail.model.as_deref()?;
    let route = snapshot.routes.resolve(model)?;
    Some(crate::telemetry::metrics::model_label(route, model))
}

fn refused_before_reading_the_body(error: &GatewayError) -> bool {
    matches!(
        error,
        GatewayError::NotFound { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::MissingKey
            | GatewayError::InvalidKey
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::AuditBackpressure
    )
}

/// The caller's `x-request-id` when it is a sane token, else a fresh UUIDv7
/// (time-ordered, so ids sort like the log).
fn request_id(headers: &http::HeaderMap) -> (Arc<str>, HeaderValue) {
    if let Some(value) = headers.get(&REQUEST_ID)
        && let Ok(text) = value.to_str()
    {
        let valid = !text.is_empty()
            && text.len() <= MAX_CALLER_REQUEST_ID_LEN
            && text.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            return (Arc::from(text), value.clone());
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let header = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    (Arc::from(id), header)
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    gateway: &Gateway,
    snapshot: &Arc<Snapshot>,
    request: Request<Incoming>,
    request_id: &Arc<str>,
    request_id_header: &HeaderValue,
    started: Instant,
    started_at: SystemTime,
    trail: &Trail,
    trace: Option<&RequestTrace>,
) -> Result<Response<GatewayBody>, GatewayError> {
    let endpoint =
        Endpoint::from_request(request.method(), request.uri().path()).map_err(|mismatch| {
            match mismatch {
                EndpointMismatch::NotFound => GatewayError::NotFound {
                    method: request.method().to_string(),
                    path: request.uri().path().to_owned(),
                },
                EndpointMismatch::MethodNotAllowed { allowed } => GatewayError::MethodNotAllowed {
                    path: request.uri().path().to_owned(),
                    allowed,
                },
            }
        })?;
    trail.note(|t| t.endpoint = Some(endpoint));
    let client_id = authenticate(&snapshot.auth, request.headers())?;
    trail.note(|t| t.client_id = client_id.clone());
    if gateway
        .audit
        .as_ref()
        .is_some_and(|audit| !audit.admits_requests())
    {
        return Err(GatewayError::AuditBackpressure);
    }
    if endpoint == Endpoint::Models {
        return Ok(list_models(snapshot));
    }

    let (parts, body) = request.into_parts();
    if endpoint == Endpoint::Feedback {
        return accept_feedback(gateway, snapshot, body, &parts.headers, client_id).await;
    }
    let body = read_body(body, &parts.headers, snapshot.server.max_body_bytes).await?;
    let head = api::parse_head(endpoint, &body)?;
    trail.note(|t| {
        t.model = Some(head.model.clone());
        t.stream = head.stream;
    });
    if let Some(trace) = trace {
        trace.note_request(client_id.as_ref(), &head.model, head.stream);
    }
    let exchange = RequestContext {
        trail,
        gateway,
        snapshot,
        endpoint,
        headers: &parts.headers,
        model: &head.model,
        stream: head.stream,
        request_id,
        request_id_header,
        client_id,
        started,
        started_at,
        trace,
    };
    if let Some(experiment) = experiment_of(snapshot, &parts.headers, &head.model)? {
        return variant::serve(&exchange, experiment, body).await;
    }
    let route = snapshot
        .routes
        .resolve(&head.model)
        .ok_or_else(|| GatewayError::UnknownModel(head.model.clone()))?;
    let (body, upstream_model) = match &route.upstream_model {
        Some(upstream_model) => (rewrite_model(&body, upstream_model)?, &**upstream_model),
        None => (body, head.model.as_str()),
    };
    exchange
        .forward(
            route,
            upstream_model,
            body,
            None,
            WhenExhausted::PassThrough,
        )
        .await
}

/// `POST /v1/feedback`: checked, handed to the audit log, 202 with its id.
async fn accept_feedback(
    gateway: &Gateway,
    snapshot: &Snapshot,
    body: Incoming,
    headers: &http::HeaderMap,
    client_id: Option<Arc<str>>,
) -> Result<Response<GatewayBody>, GatewayError> {
    if gateway.audit.is_none() {
        return Err(GatewayError::FeedbackWithoutAudit);
    }
    let limit = snapshot.server.max_body_bytes.min(feedback::MAX_BODY_BYTES);
    let body = read_body(body, headers, limit).await?;
    let posted = feedback::parse(&body, &snapshot.feedback)?;
    let feedback_id: Arc<str> = uuid::Uuid::now_v7().to_string().into();
    let answer = json!({
        "object": "feedback",
        "id": &*feedback_id,
        "request_id": posted.request_id,
        "metric": posted.metric,
        "status": "accepted",
    });
    gateway.sink.record_feedback(Feedback {
        feedback_id,
        request_id: posted.request_id,
        metric: posted.metric,
        value: posted.value,
        comment: posted.comment,
        metadata: posted.metadata,
        client_id,
        config_version: snapshot.version.clone(),
        received_at: SystemTime::now(),
    });
    let mut response = Response::new(full(answer.to_string()));
    *response.status_mut() = http::StatusCode::ACCEPTED;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// A request opts into an experiment by the `x-promptgate-experiment` header
/// or by naming the experiment as its model.
fn experiment_of<'s>(
    snapshot: &'s Snapshot,
    headers: &http::HeaderMap,
    model: &str,
) -> Result<Option<&'s Experiment>, GatewayError> {
    if let Some(requested) = headers.get(&EXPERIMENT_HEADER) {
        let id = requested.to_str().unwrap_or_default().trim();
        return snapshot
            .experiments
            .get(id)
            .map(Some)
            .ok_or_else(|| GatewayError::UnknownExperiment(id.to_owned()));
    }
    Ok(snapshot.experiments.get(model))
}

/// One request's facts, shared by the routing and experiment phases.
pub(super) struct RequestContext<'a> {
    pub trail: &'a Trail,
    pub gateway: &'a Gateway,
    pub snapshot: &'a Arc<Snapshot>,
    pub endpoint: Endpoint,
    pub headers: &'a http::HeaderMap,
    pub model: &'a str,
    pub stream: bool,
    pub request_id: &'a Arc<str>,
    pub request_id_header: &'a HeaderValue,
    pub client_id: Option<Arc<str>>,
    pub started: Instant,
    pub started_at: SystemTime,
    pub trace: Option<&'a RequestTrace>,
}

impl RequestContext<'_> {
    /// `upstream_model`: the model named in `body`, which the provider gets.
    pub async fn forward(
        &self,
        route: &RouteConfig,
        upstream_model: &str,
        body: Bytes,
        experiment: Option<ExperimentTag>,
        when_exhausted: WhenExhausted,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        providers::forward(
            &self.snapshot.upstreams,
            route,
            ForwardRequest {
                endpoint: self.endpoint,
                model: self.model,
                upstream_model,
                stream: self.stream,
                body,
                caller_headers: self.headers,
                request_id: self.request_id,
                request_id_header: self.request_id_header,
                client_id: self.client_id.clone(),
                config_version: self.snapshot.version.clone(),
                started: self.started,
                started_at: self.started_at,
                experiment,
                when_exhausted,
                trace: self.trace,
                telemetry: &self.gateway.telemetry,
                role: Role::Served,
            },
            &self.gateway.sink,
        )
        .await
    }
}

async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    // Refuse early when the caller announces an oversize body.
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(error) => Err(GatewayError::BodyRead(error.to_string())),
    }
}

/// Sends the route's upstream model name instead of the alias the caller used.
fn rewrite_model(body: &[u8], upstream_model: &str) -> Result<Bytes, GatewayError> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("model".into(), Value::String(upstream_model.to_owned()));
    }
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::InvalidJson(e.to_string()))
}

/// `GET /v1/models`: the names callers can use, in OpenAI's list shape.
fn list_models(snapshot: &Snapshot) -> Response<GatewayBody> {
    let data: Vec<Value> = snapshot
        .routes
        .listable_models()
        .map(|(model, route)| {
            let owner = route
                .providers
                .first()
                .map(|&id| snapshot.upstreams.provider_name(id))
                .unwrap_or("promptgate");
            json!({"id": model, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    let mut response = Response::new(full(json!({"object": "list", "data": data}).to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
