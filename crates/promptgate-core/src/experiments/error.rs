//! How an experiment can refuse a request: decided (`decide`) or rendered
//! (`render`) without knowing about HTTP; `promptgate_core::error` maps it
//! into the request's `GatewayError`, which the gateway writes back in the
//! caller's dialect.

use super::template::MissingVariable;

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("experiment `{experiment}` has no variant `{variant}`")]
    UnknownVariant { experiment: String, variant: String },
    #[error(
        "this client key may not choose the variant of experiment `{experiment}` (x-promptgate-variant); ask for it to be listed in the experiment's override_clients"
    )]
    OverrideForbidden { experiment: String },
    #[error(
        "variant `{variant}` of experiment `{experiment}`: {missing}; send it in the body as \"promptgate\": {{\"variables\": {{...}}}}"
    )]
    MissingVariable {
        experiment: String,
        variant: String,
        missing: MissingVariable,
    },
    #[error(
        "experiment `{experiment}` cannot be used on {endpoint}: experiments apply to chat completions, responses and messages"
    )]
    ExperimentNotApplicable {
        experiment: String,
        endpoint: &'static str,
    },
    /// `promptgate.variables` in the body is not an object of strings.
    #[error("invalid value for `{field}`: {message}")]
    InvalidVariables { field: String, message: String },
}
