//! The request path as a tower stack, built once per listener and cloned per
//! connection. Each layer sits where it does for a reason given beside it;
//! the phases of a request (`handler.rs`) are the innermost service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{BoxError, Service, ServiceBuilder};

use super::Gateway;
use super::auth_layer::{Auth, AuthLayer};
use super::body_limit::{BodyLimit, BodyLimitLayer, LimitedBody};
use super::handler;
use super::observe::{Observe, ObserveLayer, ObservedRequest};
use crate::body::GatewayBody;

/// The stack: observation → load shedding → concurrency limit →
/// authentication → body limit → phases.
pub(super) type RequestStack =
    Observe<tower::load_shed::LoadShed<tower::limit::ConcurrencyLimit<Auth<BodyLimit<Phases>>>>>;

pub(super) fn request_stack(gateway: Arc<Gateway>, max_concurrent_requests: usize) -> RequestStack {
    ServiceBuilder::new()
        // Outermost, so that every way a request ends — a shed request
        // included — is seen once: its id and snapshot, its span, and for a
        // refusal the response in the caller's dialect, metrics, access log
        // and audit record.
        .layer(ObserveLayer {
            gateway: gateway.clone(),
        })
        // Over the limit a request is refused at once (503 with
        // `retry-after`, in the caller's dialect) instead of waiting: a queue
        // would only add latency to every request behind it, and callers'
        // SDKs retry with back-off.
        .layer(LoadShedLayer::new())
        // One semaphore shared by every connection's clone of the stack. A
        // permit is held from admission until the response head: the body
        // reading, parsing, rendering and the wait for the provider.
        .layer(ConcurrencyLimitLayer::new(max_concurrent_requests))
        // Below the limit, because a layer that refuses must not hold a
        // readiness it was granted without calling through (the permit is
        // taken in `poll_ready`); a refusal returns its permit at once. Its
        // refusals reach the observation layer as any phase's do.
        .layer(AuthLayer {
            gateway: gateway.clone(),
        })
        // Binds the endpoint's size limit to the body; innermost, since
        // authentication and the phases' admission come before the body is read.
        .layer(BodyLimitLayer)
        .service(Phases { gateway })
}

/// The phases of a request as a service.
#[derive(Clone)]
pub(super) struct Phases {
    gateway: Arc<Gateway>,
}

type PhasesFuture =
    Pin<Box<dyn Future<Output = Result<Response<GatewayBody>, BoxError>> + Send + 'static>>;

impl Service<ObservedRequest<LimitedBody>> for Phases {
    type Response = Response<GatewayBody>;
    type Error = BoxError;
    type Future = PhasesFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ObservedRequest<LimitedBody>) -> Self::Future {
        let gateway = self.gateway.clone();
        Box::pin(async move { Ok(handler::handle(gateway, request).await?) })
    }
}
