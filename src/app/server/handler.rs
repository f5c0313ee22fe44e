//! One request, in phases: match endpoint → audit admission → read body →
//! parse → authorize the model or experiment → route (or the experiment
//! phase) → forward. The caller was authenticated, and its endpoint
//! authorized, by the layer above (`auth_layer.rs`). Every
//! failure returns a `GatewayError`, turned into a response by the
//! observation layer (`observe.rs`) in the caller's dialect; nothing here
//! writes an error response by hand.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response};
use serde_json::{Value, json};

use super::Gateway;
use super::auth::Caller;
use super::body_limit::LimitedBody;
use super::observe::{ObservedRequest, RequestContext, RequestNotes};
use super::variant;
use crate::body::{GatewayBody, full};
use crate::exchange::ExperimentTag;
use crate::feedback::{self, Feedback};
use crate::providers::{self, ForwardRequest, WhenExhausted};
use crate::snapshot::Snapshot;
use crate::telemetry::{RequestTrace, Role};
use promptgate_core::config::RouteConfig;
use promptgate_core::dialect::{self, Endpoint, EndpointMismatch};
use promptgate_core::error::GatewayError;
use promptgate_core::experiments::model::Experiment;

pub(super) const EXPERIMENT_HEADER: HeaderName = HeaderName::from_static("x-promptgate-experiment");

/// The phases, after the observation and overload layers (`stack.rs`).
/// Every failure is a `GatewayError`, which the observation layer turns
/// into the response and the record.
pub(super) async fn handle(
    gateway: Arc<Gateway>,
    observed: ObservedRequest<LimitedBody>,
) -> Result<Response<GatewayBody>, GatewayError> {
    let ObservedRequest {
        context,
        request,
        caller,
    } = observed;
    // Without the authentication layer there is no caller, and the request
    // is refused rather than trusted.
    let caller = caller.ok_or(GatewayError::MissingKey)?;
    serve(&gateway, &context, request, caller).await
}

async fn serve(
    gateway: &Gateway,
    context: &RequestContext,
    request: Request<LimitedBody>,
    caller: Caller,
) -> Result<Response<GatewayBody>, GatewayError> {
    let endpoint = context.endpoint.map_err(|mismatch| match mismatch {
        EndpointMismatch::NotFound => GatewayError::NotFound {
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
        },
        EndpointMismatch::MethodNotAllowed { allowed } => GatewayError::MethodNotAllowed {
            path: request.uri().path().to_owned(),
            allowed,
        },
    })?;
    let snapshot = &context.snapshot;
    let client_id = caller.client_id.clone();
    if gateway
        .audit
        .as_ref()
        .is_some_and(|audit| !audit.admits_requests())
    {
        return Err(GatewayError::AuditBackpressure);
    }
    if endpoint == Endpoint::Models {
        return Ok(list_models(snapshot, &caller));
    }

    let (parts, body) = request.into_parts();
    if endpoint == Endpoint::Feedback {
        return accept_feedback(gateway, snapshot, body, client_id).await;
    }
    let tags = promptgate_core::tags::parse(&parts.headers, &snapshot.tags)?;
    if !tags.is_empty() {
        context.notes.note(|n| n.tags = tags.clone());
    }
    let body = body.read().await?;
    let head = dialect::parse_head(endpoint, &body)?;
    context.notes.note(|n| {
        n.model = Some(head.model.clone());
        n.stream = head.stream;
    });
    if let Some(trace) = &context.trace {
        trace.note_request(client_id.as_ref(), &head.model, head.stream);
    }
    // After the parse so that a refusal's record names the model, and the
    // connection stays usable (the body has been read).
    gateway.limits.admit(&snapshot.limits, client_id.as_ref())?;
    let exchange = ParsedRequest {
        notes: &context.notes,
        gateway,
        snapshot,
        endpoint,
        headers: &parts.headers,
        model: &head.model,
        stream: head.stream,
        request_id: &context.request_id,
        request_id_header: &context.request_id_header,
        client_id,
        tags,
        started: context.started,
        started_at: context.started_at,
        trace: context.trace.as_ref(),
    };
    if let Some(experiment) = experiment_of(snapshot, &parts.headers, &head.model)? {
        caller.permissions().experiment(&experiment.id)?;
        return variant::serve(&exchange, experiment, body).await;
    }
    caller.permissions().model(&head.model)?;
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
    body: LimitedBody,
    client_id: Option<Arc<str>>,
) -> Result<Response<GatewayBody>, GatewayError> {
    if gateway.audit.is_none() {
        return Err(GatewayError::FeedbackWithoutAudit);
    }
    let body = body.read().await?;
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

/// A parsed request's facts, shared by the routing and experiment phases.
pub(super) struct ParsedRequest<'a> {
    pub notes: &'a RequestNotes,
    pub gateway: &'a Gateway,
    pub snapshot: &'a Arc<Snapshot>,
    pub endpoint: Endpoint,
    pub headers: &'a http::HeaderMap,
    pub model: &'a str,
    pub stream: bool,
    pub request_id: &'a Arc<str>,
    pub request_id_header: &'a HeaderValue,
    pub client_id: Option<Arc<str>>,
    pub tags: promptgate_core::tags::Tags,
    pub started: Instant,
    pub started_at: SystemTime,
    pub trace: Option<&'a RequestTrace>,
}

impl ParsedRequest<'_> {
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
                tags: self.tags.clone(),
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

/// `GET /v1/models`: the names this caller can use, in OpenAI's list shape.
fn list_models(snapshot: &Snapshot, caller: &Caller) -> Response<GatewayBody> {
    let data: Vec<Value> = snapshot
        .routes
        .listable_models()
        .filter(|(model, _)| caller.permissions().model(model).is_ok())
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
