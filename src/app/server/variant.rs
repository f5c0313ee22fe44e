//! The experiment phase of a request: decide the variant, render it into the
//! body, forward it, and fall back to the experiment's fallback variant when
//! the assigned one's providers all fail before the first byte.

use bytes::Bytes;
use http::Response;
use http::header::{HeaderName, HeaderValue};

use super::handler::{EXPERIMENT_HEADER, ParsedRequest};
use crate::body::GatewayBody;
use crate::exchange::ExperimentTag;
use crate::providers::WhenExhausted;
use crate::shadow::ServedRequest;
use crate::telemetry::trace as telemetry;
use promptgate_core::error::{ErrorClass, GatewayError};
use promptgate_core::experiments::body::BodyFields;
use promptgate_core::experiments::decide::{self, RequestFacts};
use promptgate_core::experiments::model::Experiment;
use promptgate_core::experiments::render::{self, Variables};

const VARIANT_HEADER: HeaderName = HeaderName::from_static("x-promptgate-variant");
const REASON_HEADER: HeaderName = HeaderName::from_static("x-promptgate-assignment");

pub(super) async fn serve(
    exchange: &ParsedRequest<'_>,
    experiment: &Experiment,
    body: Bytes,
) -> Result<Response<GatewayBody>, GatewayError> {
    let fields = BodyFields::parse(&body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let assignment = decide::decide(
        experiment,
        &RequestFacts {
            headers: exchange.headers,
            client_id: exchange.client_id.as_deref(),
            model: exchange.model,
            body: &fields,
            request_id: exchange.request_id,
        },
    )?;
    let variables = Variables::of(&fields, exchange.endpoint)?;
    let fallback = experiment
        .fallback_variant
        .filter(|&fallback| fallback != assignment.variant);
    let tag = |served: usize| {
        let assigned = &experiment.variants[assignment.variant];
        let served = &experiment.variants[served];
        ExperimentTag {
            experiment: experiment.id.clone(),
            assigned_variant: assigned.name.clone(),
            served_variant: served.name.clone(),
            assigned_share: Some(experiment.share(assignment.variant)),
            variant_version: served.version.clone(),
            reason: assignment.reason.clone(),
            unit_key: assignment.unit_key.clone(),
            sticky: assignment.sticky,
            log_bodies: experiment.log_bodies,
            shadow_of: None,
        }
    };
    let render_for = |index: usize| {
        render::apply(
            experiment,
            &experiment.variants[index],
            exchange.endpoint,
            &fields,
            &variables,
        )?
        .to_vec()
        .map(Bytes::from)
        .map_err(|e| GatewayError::InvalidJson(e.to_string()))
    };

    let assigned_tag = tag(assignment.variant);
    exchange
        .notes
        .note(|n| n.experiment = Some(assigned_tag.clone()));
    if let Some(trace) = exchange.trace {
        trace.note_experiment(&assigned_tag);
    }
    let assigned = &experiment.variants[assignment.variant];
    let first_body = render_for(assignment.variant)?;
    // Once the served body rendered (a refused request gets no shadow), and
    // before the served call, so the shadow runs beside it rather than after.
    // Each shadow call links its span to this request's, picked up as it is created.
    telemetry::launching_shadows(exchange.trace, || {
        exchange.gateway.shadows.launch(ServedRequest {
            snapshot: exchange.snapshot,
            experiment,
            assigned_variant: assignment.variant,
            tag: &assigned_tag,
            endpoint: exchange.endpoint,
            model: exchange.model,
            stream: exchange.stream,
            headers: exchange.headers,
            request_id: exchange.request_id,
            client_id: exchange.client_id.as_ref(),
            tags: &exchange.tags,
            started: exchange.started,
            started_at: exchange.started_at,
            body: &body,
        })
    });
    let when_exhausted = if fallback.is_some() {
        WhenExhausted::Fail
    } else {
        WhenExhausted::PassThrough
    };
    let first = exchange
        .forward(
            &assigned.route,
            assigned.model(),
            first_body,
            Some(assigned_tag),
            when_exhausted,
        )
        .await;
    let (response, served) = match (first, fallback) {
        (Err(error), Some(fallback))
            if matches!(error.class(), ErrorClass::Upstream | ErrorClass::Timeout) =>
        {
            // A failure's detail at DEBUG; the request's one line at INFO and
            // above is its access-log line, which names both variants.
            tracing::debug!(
                request_id = %exchange.request_id,
                experiment = %experiment.id,
                variant = %experiment.variants[assignment.variant].name,
                %error,
                "assigned variant failed; serving the fallback variant"
            );
            exchange.gateway.telemetry.metrics().variant_fallback(
                &experiment.id,
                &experiment.variants[assignment.variant].name,
            );
            exchange.notes.note(|n| n.experiment = Some(tag(fallback)));
            if let Some(trace) = exchange.trace {
                trace.note_experiment(&tag(fallback));
            }
            let variant = &experiment.variants[fallback];
            let response = exchange
                .forward(
                    &variant.route,
                    variant.model(),
                    render_for(fallback)?,
                    Some(tag(fallback)),
                    WhenExhausted::PassThrough,
                )
                .await?;
            (response, fallback)
        }
        (result, _) => (result?, assignment.variant),
    };
    let mut response = response;
    let headers = response.headers_mut();
    let reason = match assignment.reason.fixed_label() {
        Some(label) => Some(HeaderValue::from_static(label)),
        None => HeaderValue::from_str(&assignment.reason.to_string()).ok(),
    };
    for (name, value) in [
        (EXPERIMENT_HEADER, experiment.id_header.clone()),
        (
            VARIANT_HEADER,
            experiment.variants[served].name_header.clone(),
        ),
        (REASON_HEADER, reason),
    ] {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
    Ok(response)
}
