//! The outermost layer of the request stack: it gives a request its id, its
//! snapshot and its server span, and observes how it ends — once, for every
//! way it can end. A refusal (a phase's `GatewayError` or a request shed by
//! the overload layer) becomes the response in the caller's dialect and is
//! counted, written to the access log and recorded in the audit log here; an
//! answer of the gateway's own (model list, feedback) ends its span and its
//! access-log line here; a provider's answer carries both in its body, which
//! ends them when it ends (`capture::ObservedBody`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use http::header::{CONNECTION, HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use tower::{BoxError, Layer, Service};

use super::Gateway;
use super::auth::Caller;
use crate::body::GatewayBody;
use crate::exchange::{ExperimentTag, Refusal, RefusalKind};
use crate::respond;
use crate::snapshot::Snapshot;
use crate::telemetry::access::Answered;
use crate::telemetry::metrics::RefusedRequest;
use crate::telemetry::{RequestTrace, Role};
use promptgate_core::dialect::{Dialect, Endpoint, EndpointMismatch};
use promptgate_core::error::GatewayError;

pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const CONFIG_VERSION: HeaderName = HeaderName::from_static("x-promptgate-config-version");
const MAX_CALLER_REQUEST_ID_LEN: usize = 128;

/// What the observation layer knows of a request before it goes in, shared
/// with the phases (which note what they learn in `notes`).
pub(super) struct RequestContext {
    pub request_id: Arc<str>,
    pub request_id_header: HeaderValue,
    pub started: Instant,
    pub started_at: SystemTime,
    /// The config in force for the whole request, shadow calls included.
    pub snapshot: Arc<Snapshot>,
    pub dialect: Dialect,
    pub endpoint: Result<Endpoint, EndpointMismatch>,
    /// `None` when tracing is off: nothing below pays for it then.
    pub trace: Option<RequestTrace>,
    pub notes: RequestNotes,
}

/// The request as the layers below the observation layer see it (the
/// phases see its body with its size limit: `body_limit.rs`).
pub(super) struct ObservedRequest<B = Incoming> {
    pub context: Arc<RequestContext>,
    pub request: Request<B>,
    /// Who is calling, once the authentication layer established it. A
    /// field rather than a request extension: the extension map is a heap
    /// allocation per request that nothing else on this path needs.
    pub caller: Option<Caller>,
}

/// What the phases learned about a request so far (its client, model,
/// experiment…): what its refusal record, metrics and access-log line say.
#[derive(Default)]
pub(super) struct RequestNotes(Mutex<Noted>);

#[derive(Default)]
pub(super) struct Noted {
    pub client_id: Option<Arc<str>>,
    pub tags: promptgate_core::tags::Tags,
    pub model: Option<String>,
    pub stream: bool,
    pub experiment: Option<ExperimentTag>,
}

impl RequestNotes {
    pub fn note(&self, update: impl FnOnce(&mut Noted)) {
        update(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn take(&self) -> Noted {
        std::mem::take(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[derive(Clone)]
pub(super) struct ObserveLayer {
    pub gateway: Arc<Gateway>,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            gateway: self.gateway.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub(super) struct Observe<S> {
    gateway: Arc<Gateway>,
    inner: S,
}

impl<S> Service<Request<Incoming>> for Observe<S>
where
    S: Service<ObservedRequest, Response = Response<GatewayBody>, Error = BoxError>,
{
    type Response = Response<GatewayBody>;
    type Error = std::convert::Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Nothing below refuses readiness with an error: the overload layer
        // turns "not ready" into a refusal of the call instead.
        let _ = ready!(self.inner.poll_ready(cx));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let (request_id, request_id_header) = request_id(request.headers());
        let snapshot = self.gateway.snapshots.load();
        let trace = self
            .gateway
            .telemetry
            .server_trace(&request, &request_id, &snapshot.version);
        let context = Arc::new(RequestContext {
            dialect: Dialect::of_path(request.uri().path()),
            endpoint: Endpoint::from_request(request.method(), request.uri().path()),
            request_id,
            request_id_header,
            started,
            started_at,
            snapshot,
            trace,
            notes: RequestNotes::default(),
        });
        ObserveFuture {
            inner: self.inner.call(ObservedRequest {
                context: context.clone(),
                request,
                caller: None,
            }),
            context,
            gateway: self.gateway.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    pub(super) struct ObserveFuture<F> {
        #[pin]
        inner: F,
        context: Arc<RequestContext>,
        gateway: Arc<Gateway>,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<GatewayBody>, BoxError>>,
{
    type Output = Result<Response<GatewayBody>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let (gateway, context) = (&**this.gateway, &**this.context);
        let mut response = match result {
            Ok(response) => answered(gateway, context, response),
            Err(error) => refused(gateway, context, refusal_of(error)),
        };
        let headers = response.headers_mut();
        headers.insert(REQUEST_ID, context.request_id_header.clone());
        if context.dialect == Dialect::Anthropic {
            headers.insert(ANTHROPIC_REQUEST_ID, context.request_id_header.clone());
        }
        if let Some(version) = &context.snapshot.version_header {
            headers.insert(CONFIG_VERSION, version.clone());
        }
        Poll::Ready(Ok(response))
    }
}

/// The phases fail with a `GatewayError`; the only other error in the stack
/// is the overload layer's (`tower::load_shed::error::Overloaded`).
fn refusal_of(error: BoxError) -> GatewayError {
    match error.downcast::<GatewayError>() {
        Ok(error) => *error,
        Err(_) => GatewayError::Overloaded,
    }
}

fn answered(
    gateway: &Gateway,
    context: &RequestContext,
    response: Response<GatewayBody>,
) -> Response<GatewayBody> {
    // A body from a provider carries the span and ends it; any other answer
    // (the model list, feedback) ends it here.
    if let Some(trace) = &context.trace {
        trace.end_here(Some(response.status().as_u16()), None);
    }
    // Likewise the access-log line: a provider's body writes it when it
    // ends; the gateway's own answers are written here.
    if let Ok(endpoint @ (Endpoint::Models | Endpoint::Feedback)) = context.endpoint {
        gateway.telemetry.access_log().answered_here(Answered {
            request_id: &context.request_id,
            trace_id: context.trace.as_ref().and_then(RequestTrace::trace_id),
            endpoint,
            status: response.status().as_u16(),
            latency: context.started.elapsed(),
            client_id: context.notes.take().client_id.as_deref(),
        });
    }
    response
}

/// A request that ends without an answer from a provider: the response in
/// the caller's dialect, its metrics, its access-log line and its record.
fn refused(
    gateway: &Gateway,
    context: &RequestContext,
    error: GatewayError,
) -> Response<GatewayBody> {
    let mut response = respond::error_response(context.dialect, &error);
    let status = response.status().as_u16();
    if let Some(trace) = &context.trace {
        trace.end_here(Some(status), Some(error.class().label()));
    }
    let notes = context.notes.take();
    let endpoint = context.endpoint.ok();
    let model = refused_model_label(&context.snapshot, &notes);
    gateway.telemetry.metrics().refused(RefusedRequest {
        endpoint: endpoint.map(Endpoint::label),
        provider: error.provider(),
        model: model.clone(),
        experiment: notes.experiment.as_ref(),
        class: error.class().label(),
        duration: context.started.elapsed(),
        tags: &notes.tags,
    });
    let refusal = Refusal {
        request_id: context.request_id.clone(),
        client_id: notes.client_id,
        tags: notes.tags,
        config_version: context.snapshot.version.clone(),
        endpoint,
        dialect: context.dialect,
        model: notes.model,
        stream: notes.stream,
        experiment: notes.experiment,
        status: Some(status),
        kind: RefusalKind::Refused(error.class()),
        message: error.to_string(),
        started_at: context.started_at,
        duration: context.started.elapsed(),
        provider: error.provider().map(str::to_owned),
        trace_id: context.trace.as_ref().and_then(RequestTrace::trace_id),
    };
    gateway.telemetry.access_log().refusal(
        &refusal,
        Role::Served,
        model.as_deref(),
        error.detail(),
    );
    // A request refused because the audit spool is full is counted
    // (promptgate_audit_requests_rejected_total), not spooled: writing it
    // would grow the spool past its cap.
    if !matches!(error, GatewayError::AuditBackpressure) {
        gateway.sink.record_refusal(refusal);
    }
    if refused_before_reading_the_body(&error) {
        // The unread body is still on the wire: the connection cannot carry
        // another request, and the client must know not to try.
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The configured model a refused request was for, when it got that far.
fn refused_model_label(snapshot: &Snapshot, notes: &Noted) -> Option<Arc<str>> {
    if let Some(tag) = &notes.experiment {
        let experiment = snapshot.experiments.get(&tag.experiment)?;
        let variant = experiment
            .variants
            .iter()
            .find(|v| v.name == tag.served_variant)?;
        return variant.route.upstream_model.clone();
    }
    let model = notes.model.as_deref()?;
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
            | GatewayError::ExpiredKey
            | GatewayError::Forbidden(_)
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::AuditBackpressure
            | GatewayError::Overloaded
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
    // Formatted on the stack: the id's two owned forms are its only allocations.
    let text = crate::exchange::fresh_request_id();
    let id = text.as_str();
    let header = HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    (Arc::from(id), header)
}
