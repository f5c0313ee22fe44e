//! The one edge where a `GatewayError` becomes an HTTP response, shaped like the
//! errors of the API the caller speaks so its SDK raises the right exception.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use serde_json::json;

use promptgate_core::dialect::Dialect;
use promptgate_core::error::{GatewayError, LimitName, retry_after_seconds};
use promptgate_core::experiments::ExperimentError;

use crate::body::{GatewayBody, full};

/// A shed request's wait before retrying: requests in flight finish in
/// about that time, and SDKs add their own jitter.
const OVERLOADED_RETRY_AFTER_SECONDS: &str = "1";
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

pub fn error_response(dialect: Dialect, error: &GatewayError) -> Response<GatewayBody> {
    let (status, body) = error_body(dialect, error);
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match error {
        GatewayError::MethodNotAllowed { allowed, .. } => {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
        }
        // The SDKs of both dialects retry a 503 and honour `retry-after`.
        GatewayError::Overloaded => {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(OVERLOADED_RETRY_AFTER_SECONDS),
            );
        }
        // Both SDKs wait `retry-after-ms` when it is there (OpenAI's
        // header, which Anthropic's SDK reads too), else `retry-after`.
        GatewayError::RateLimited { retry_after, .. } => {
            let headers = response.headers_mut();
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(*retry_after)),
            );
            // Rounded up: a retry a millisecond early would be refused again.
            let millis = retry_after.as_nanos().div_ceil(1_000_000);
            let millis = u64::try_from(millis).unwrap_or(u64::MAX).max(1);
            headers.insert(RETRY_AFTER_MS, HeaderValue::from(millis));
        }
        _ => {}
    }
    response
}

/// The error as the last event of a stream whose head already went out:
/// OpenAI's SDK raises on a `data:` chunk holding `"error"`, Anthropic's on
/// an `error` event.
pub fn stream_error_event(dialect: Dialect, error: &GatewayError) -> Bytes {
    let (_, body) = error_body(dialect, error);
    Bytes::from(match dialect {
        Dialect::OpenAi => format!("data: {body}\n\n"),
        Dialect::Anthropic => format!("event: error\ndata: {body}\n\n"),
    })
}

fn error_body(dialect: Dialect, error: &GatewayError) -> (StatusCode, serde_json::Value) {
    use GatewayError::*;
    let (status, openai_type, code, anthropic_type) = match error {
        InvalidJson(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            "invalid_request_error",
        ),
        InvalidField { .. } | Experiment(ExperimentError::InvalidVariables { .. }) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_value",
            "invalid_request_error",
        ),
        InvalidTags(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_tags",
            "invalid_request_error",
        ),
        MissingModel => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_model",
            "invalid_request_error",
        ),
        MissingField { .. } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_required_parameter",
            "invalid_request_error",
        ),
        DialectNotSupported { .. } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "dialect_not_supported",
            "invalid_request_error",
        ),
        BodyRead(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body_unreadable",
            "invalid_request_error",
        ),
        BodyTooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            "request_too_large",
        ),
        UnknownExperiment(_) => (
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "experiment_not_found",
            "not_found_error",
        ),
        Experiment(ExperimentError::UnknownVariant { .. }) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "variant_not_found",
            "invalid_request_error",
        ),
        Experiment(ExperimentError::OverrideForbidden { .. }) => (
            StatusCode::FORBIDDEN,
            "permission_error",
            "override_forbidden",
            "permission_error",
        ),
        Experiment(ExperimentError::MissingVariable { .. }) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_variable",
            "invalid_request_error",
        ),
        Experiment(ExperimentError::ExperimentNotApplicable { .. }) => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "experiment_not_applicable",
            "invalid_request_error",
        ),
        UnknownModel(_) => (
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            "not_found_error",
        ),
        NotFound { .. } => (
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            "not_found_error",
        ),
        MethodNotAllowed { .. } => (
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "invalid_request_error",
        ),
        Forbidden(_) => (
            StatusCode::FORBIDDEN,
            "permission_error",
            "permission_denied",
            "permission_error",
        ),
        MissingKey | InvalidKey | ExpiredKey => (
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "authentication_error",
        ),
        ProviderUnreachable { .. } => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            "provider_unreachable",
            "api_error",
        ),
        ProviderAuth { .. } => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            "provider_auth_failed",
            "api_error",
        ),
        AuditBackpressure => (
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "audit_unavailable",
            "overloaded_error",
        ),
        Overloaded => (
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "overloaded",
            "overloaded_error",
        ),
        // OpenAI's and Anthropic's own 429 bodies: the SDKs raise
        // `RateLimitError` for the status, and callers read these codes.
        RateLimited { limit, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            match limit {
                LimitName::RequestsPerMinute => "requests",
                LimitName::TokensPerMinute | LimitName::UsdPerDay => "tokens",
            },
            "rate_limit_exceeded",
            "rate_limit_error",
        ),
        FeedbackWithoutAudit => (
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "feedback_unavailable",
            "api_error",
        ),
        ProviderStatus { .. } => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            "provider_error",
            "api_error",
        ),
        ProviderProtocol { .. } => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            "provider_protocol_error",
            "api_error",
        ),
        UpstreamEventTooLarge(_) => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_event_too_large",
            "api_error",
        ),
        ProviderTimeout { .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            "provider_timeout",
            "timeout_error",
        ),
    };
    let message = error.to_string();
    let body = match dialect {
        Dialect::OpenAi => json!({
            "error": {
                "message": message,
                "type": openai_type,
                "param": param_of(error),
                "code": code,
            }
        }),
        Dialect::Anthropic => json!({
            "type": "error",
            "error": { "type": anthropic_type, "message": message },
        }),
    };
    (status, body)
}

fn param_of(error: &GatewayError) -> Option<&str> {
    match error {
        GatewayError::InvalidField { field, .. } | GatewayError::MissingField { field, .. } => {
            Some(field)
        }
        GatewayError::MissingModel | GatewayError::UnknownModel(_) => Some("model"),
        GatewayError::InvalidTags(_) => Some("x-promptgate-tags"),
        _ => None,
    }
}
