//! The request body's size limit as a layer: which limit applies (the
//! snapshot's `server.max_body_bytes`, and at most `feedback::MAX_BODY_BYTES`
//! for feedback) is decided here, once, and bound to the body. The limit is
//! enforced when the phases read the body (`LimitedBody::read`), so a request
//! is refused for its size only after its endpoint, key and audit admission
//! were checked, as before; the refusal is a `GatewayError` like any other,
//! written by the observation layer.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tower::{Layer, Service};

use super::observe::ObservedRequest;
use crate::feedback;
use promptgate_core::dialect::Endpoint;
use promptgate_core::error::GatewayError;

#[derive(Clone, Copy)]
pub(super) struct BodyLimitLayer;

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit { inner }
    }
}

#[derive(Clone)]
pub(super) struct BodyLimit<S> {
    inner: S,
}

impl<S> Service<ObservedRequest> for BodyLimit<S>
where
    S: Service<ObservedRequest<LimitedBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, observed: ObservedRequest) -> Self::Future {
        let ObservedRequest {
            context,
            request,
            caller,
        } = observed;
        let mut limit = context.snapshot.server.max_body_bytes;
        if matches!(context.endpoint, Ok(Endpoint::Feedback)) {
            limit = limit.min(feedback::MAX_BODY_BYTES);
        }
        let announced = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let request = request.map(|body| LimitedBody {
            body: Limited::new(body, limit),
            limit,
            announced,
        });
        self.inner.call(ObservedRequest {
            context,
            request,
            caller,
        })
    }
}

/// A request body with its limit.
pub(super) struct LimitedBody {
    body: Limited<Incoming>,
    limit: usize,
    /// The caller's `content-length`, if it sent a readable one.
    announced: Option<u64>,
}

impl LimitedBody {
    /// The whole body, or `BodyTooLarge` — at once when the caller announced
    /// an oversize body, else as soon as the bytes read pass the limit.
    pub(super) async fn read(self) -> Result<Bytes, GatewayError> {
        let limit = self.limit;
        if self.announced.is_some_and(|len| len > limit as u64) {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        match self.body.collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<LengthLimitError>() => {
                Err(GatewayError::BodyTooLarge { limit })
            }
            Err(error) => Err(GatewayError::BodyRead(error.to_string())),
        }
    }
}
