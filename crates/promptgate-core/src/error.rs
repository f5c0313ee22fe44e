//! Everything that can fail a request, as one enum. It is turned into a
//! response in exactly one place (`api::error_response`), in the caller's
//! dialect. Messages never contain provider URLs, keys or upstream error text.

use std::time::Duration;

use crate::dialect::RequestError;
use crate::experiments::ExperimentError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid JSON in request body: {0}")]
    InvalidJson(String),
    #[error("invalid value for `{field}`: {message}")]
    InvalidField { field: String, message: String },
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("missing required field `model`")]
    MissingModel,
    #[error("missing required field `{field}`: expected {expected}")]
    MissingField {
        field: String,
        expected: &'static str,
    },
    #[error("the model `{0}` does not exist or is not routed by this gateway")]
    UnknownModel(String),
    #[error(
        "the model `{model}` is served by provider `{provider}`, which does not speak the {dialect} API"
    )]
    DialectNotSupported {
        model: String,
        provider: String,
        dialect: &'static str,
    },
    #[error("no experiment named `{0}`")]
    UnknownExperiment(String),
    /// A bad `x-promptgate-tags` header (the message names the key).
    #[error(transparent)]
    InvalidTags(#[from] crate::tags::TagsError),
    /// An experiment refused the request (its own error, mapped here).
    #[error(transparent)]
    Experiment(ExperimentError),
    #[error("missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    MissingKey,
    #[error("invalid API key")]
    InvalidKey,
    /// The key matched, but its `not_after` time has passed.
    #[error("this API key has expired; use the client's current key")]
    ExpiredKey,
    /// The client is authenticated but its allow-list leaves this out; the
    /// message names what was refused, never what the client may call.
    #[error("this client is not allowed to call {0}")]
    Forbidden(String),
    #[error("no such endpoint: {method} {path}")]
    NotFound { method: String, path: String },
    #[error("method not allowed on {path}; use {allowed}")]
    MethodNotAllowed { path: String, allowed: &'static str },
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("provider `{provider}` is unreachable")]
    ProviderUnreachable {
        provider: String,
        /// What the transport said (connection refused, DNS, TLS): for the
        /// operator's log only, never in the caller's message.
        detail: Option<String>,
    },
    #[error("provider `{provider}` did not respond within {} ms", timeout.as_millis())]
    ProviderTimeout { provider: String, timeout: Duration },
    #[error(
        "provider `{provider}` rejected the gateway's credentials; the gateway operator must fix its provider key"
    )]
    ProviderAuth { provider: String },
    #[error("provider `{provider}` failed with status {status}")]
    ProviderStatus { provider: String, status: u16 },
    #[error("the gateway's audit log is full (its storage is unavailable); retry later")]
    AuditBackpressure,
    /// Shed by the overload layer: `server.max_concurrent_requests` are in flight.
    #[error("the gateway is serving as many requests as it may at once; retry shortly")]
    Overloaded,
    /// The client is over one of its `[limits.<client>]` (this replica's
    /// count). The message names the limit: the audit record's
    /// `error_message` is how a refusal tells which one.
    #[error(
        "rate limit `{limit}` of client `{client}` reached on this gateway replica; retry in {} s",
        retry_after_seconds(*retry_after)
    )]
    RateLimited {
        client: std::sync::Arc<str>,
        limit: LimitName,
        /// Until the limiter would admit the client again.
        retry_after: Duration,
    },
    #[error(
        "feedback is stored in the audit log, and this gateway has none: add an [audit] section to its config"
    )]
    FeedbackWithoutAudit,
    #[error("provider `{provider}` sent an invalid response")]
    ProviderProtocol { provider: String },
    /// Only ever the last event of a stream already under way.
    #[error(transparent)]
    UpstreamEventTooLarge(#[from] crate::sse::EventTooLarge),
}

/// Which of a client's `[limits.<client>]` refused a request: its config name is its metric label and
/// what the refusal's message and audit record say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitName {
    RequestsPerMinute,
    TokensPerMinute,
    UsdPerDay,
}

impl LimitName {
    pub fn label(self) -> &'static str {
        match self {
            LimitName::RequestsPerMinute => "requests_per_minute",
            LimitName::TokensPerMinute => "tokens_per_minute",
            LimitName::UsdPerDay => "usd_per_day",
        }
    }
}

impl std::fmt::Display for LimitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What kind of failure, for metrics and audit labels (a fixed set, never user text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    BadRequest,
    Auth,
    Forbidden,
    NotFound,
    TooLarge,
    Upstream,
    Timeout,
    Unavailable,
    Overloaded,
    RateLimited,
}

impl ErrorClass {
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::Auth => "auth",
            ErrorClass::Forbidden => "forbidden",
            ErrorClass::NotFound => "not_found",
            ErrorClass::TooLarge => "too_large",
            ErrorClass::Upstream => "upstream",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::RateLimited => "rate_limited",
        }
    }
}

impl GatewayError {
    /// Detail for the operator's log that the caller's message leaves out.
    pub fn detail(&self) -> Option<&str> {
        match self {
            GatewayError::ProviderUnreachable { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// The provider a provider error is about.
    pub fn provider(&self) -> Option<&str> {
        use GatewayError::*;
        match self {
            ProviderUnreachable { provider, .. }
            | ProviderTimeout { provider, .. }
            | ProviderAuth { provider }
            | ProviderStatus { provider, .. }
            | ProviderProtocol { provider } => Some(provider),
            _ => None,
        }
    }

    pub fn class(&self) -> ErrorClass {
        use GatewayError::*;
        match self {
            Experiment(ExperimentError::OverrideForbidden { .. }) | Forbidden(_) => {
                ErrorClass::Forbidden
            }
            InvalidJson(_)
            | InvalidField { .. }
            | MissingModel
            | MissingField { .. }
            | DialectNotSupported { .. }
            | BodyRead(_)
            | MethodNotAllowed { .. }
            | InvalidTags(_)
            | Experiment(_) => ErrorClass::BadRequest,
            MissingKey | InvalidKey | ExpiredKey => ErrorClass::Auth,
            UnknownModel(_) | UnknownExperiment(_) | NotFound { .. } => ErrorClass::NotFound,
            BodyTooLarge { .. } => ErrorClass::TooLarge,
            ProviderUnreachable { .. }
            | ProviderAuth { .. }
            | ProviderProtocol { .. }
            | ProviderStatus { .. }
            | UpstreamEventTooLarge(_) => ErrorClass::Upstream,
            ProviderTimeout { .. } => ErrorClass::Timeout,
            AuditBackpressure | FeedbackWithoutAudit => ErrorClass::Unavailable,
            Overloaded => ErrorClass::Overloaded,
            RateLimited { .. } => ErrorClass::RateLimited,
        }
    }
}

/// Whole seconds a caller should wait, rounded up (`retry-after` has no
/// fractions), and at least 1 so that a retry is not immediate.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

/// The one place an experiment's error becomes a request's: a malformed
/// `promptgate.variables` is an invalid field like any other.
impl From<ExperimentError> for GatewayError {
    fn from(error: ExperimentError) -> GatewayError {
        match error {
            ExperimentError::InvalidVariables { field, message } => {
                GatewayError::InvalidField { field, message }
            }
            other => GatewayError::Experiment(other),
        }
    }
}

/// A refused request body keeps its kind and field.
impl From<RequestError> for GatewayError {
    fn from(error: RequestError) -> GatewayError {
        match error {
            RequestError::InvalidJson(message) => GatewayError::InvalidJson(message),
            RequestError::InvalidField { field, message } => {
                GatewayError::InvalidField { field, message }
            }
            RequestError::MissingModel => GatewayError::MissingModel,
            RequestError::MissingField { field, expected } => {
                GatewayError::MissingField { field, expected }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        for (wait, seconds) in [
            (Duration::ZERO, 1),
            (Duration::from_nanos(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_secs(86_400), 86_400),
        ] {
            assert_eq!(retry_after_seconds(wait), seconds, "{wait:?}");
        }
    }
}
