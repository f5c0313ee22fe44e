//! Authentication and endpoint authorization as a layer: the caller is
//! established once, before the phases, and handed to them as the request's
//! `Caller`. A refusal is a `GatewayError` like any phase's, so the
//! observation layer answers, counts, logs and records it exactly once; this
//! layer only adds the `promptgate_auth_failures_total` count of its reason.
//! Models and experiments are checked by the phases against the same
//! `Permissions`, once the body has named them.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::Response;
use tower::{BoxError, Layer, Service};

use super::Gateway;
use super::auth::{Caller, authenticate};
use super::observe::ObservedRequest;
use crate::body::GatewayBody;
use crate::tls::PeerIdentity;
use promptgate_core::error::GatewayError;

#[derive(Clone)]
pub(super) struct AuthLayer {
    pub gateway: Arc<Gateway>,
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            gateway: self.gateway.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub(super) struct Auth<S> {
    gateway: Arc<Gateway>,
    inner: S,
}

type AuthFuture<F> =
    futures_util::future::Either<F, std::future::Ready<Result<Response<GatewayBody>, BoxError>>>;

impl<S> Service<ObservedRequest> for Auth<S>
where
    S: Service<ObservedRequest, Response = Response<GatewayBody>, Error = BoxError>,
{
    type Response = Response<GatewayBody>;
    type Error = BoxError;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut observed: ObservedRequest) -> Self::Future {
        match self.admit(&observed) {
            Ok(caller) => {
                observed.caller = Some(caller);
                futures_util::future::Either::Left(self.inner.call(observed))
            }
            Err(error) => {
                futures_util::future::Either::Right(std::future::ready(Err(Box::new(error))))
            }
        }
    }
}

impl<S> Auth<S> {
    fn admit(&self, observed: &ObservedRequest) -> Result<Caller, GatewayError> {
        let context = &observed.context;
        // A path the gateway does not serve is answered 404 by the phases,
        // as before authentication was a layer: it reveals nothing.
        let Ok(endpoint) = context.endpoint else {
            return Ok(Caller::default());
        };
        let metrics = self.gateway.telemetry.metrics();
        let peer = observed.request.extensions().get::<Arc<PeerIdentity>>();
        let caller = authenticate(
            &context.snapshot.auth,
            observed.request.headers(),
            peer.map(|peer| &**peer),
            SystemTime::now(),
        )
        .inspect_err(|failure| metrics.auth_failure(failure.label()))?;
        context
            .notes
            .note(|n| n.client_id = caller.client_id.clone());
        caller.permissions().endpoint(endpoint).map_err(|denied| {
            metrics.auth_failure("forbidden");
            GatewayError::from(denied)
        })?;
        Ok(caller)
    }
}
