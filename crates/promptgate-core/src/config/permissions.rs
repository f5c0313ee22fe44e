//! What one client may call: `[auth.clients.allow]`. The authentication
//! layer checks the endpoint (known before the body is read); the phases
//! check the model or experiment once the body is parsed. Both read this one
//! type, so the rules cannot drift apart.

use crate::dialect::Endpoint;
use crate::error::GatewayError;
use crate::routing::wildcard_match;

/// Every endpoint a client may be allowed, by the name written in the config
/// (the same label as in metrics and the audit log).
pub const ENDPOINTS: [Endpoint; 8] = [
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Responses,
    Endpoint::Models,
    Endpoint::Messages,
    Endpoint::CountTokens,
    Endpoint::Feedback,
];

/// `None` in a field: that dimension is not restricted (a client without an
/// `allow` section may call everything, as before allow-lists existed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub endpoints: Option<Vec<Endpoint>>,
    /// Model names or `*` patterns, matched against the name the caller sent.
    pub models: Option<Vec<String>>,
    /// Experiment ids or `*` patterns.
    pub experiments: Option<Vec<String>>,
}

/// What a client was refused: named in the 403, never the list of what it
/// may call instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    Endpoint(Endpoint),
    Model(String),
    Experiment(String),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Endpoint(endpoint) => write!(f, "the `{}` endpoint", endpoint.label()),
            Denied::Model(model) => write!(f, "the model `{model}`"),
            Denied::Experiment(id) => write!(f, "the experiment `{id}`"),
        }
    }
}

impl From<Denied> for GatewayError {
    fn from(denied: Denied) -> GatewayError {
        GatewayError::Forbidden(denied.to_string())
    }
}

impl Permissions {
    /// The permissions of a client without an allow-list.
    pub const UNRESTRICTED: Permissions = Permissions {
        endpoints: None,
        models: None,
        experiments: None,
    };

    pub fn endpoint(&self, endpoint: Endpoint) -> Result<(), Denied> {
        match &self.endpoints {
            Some(allowed) if !allowed.contains(&endpoint) => Err(Denied::Endpoint(endpoint)),
            _ => Ok(()),
        }
    }

    pub fn model(&self, model: &str) -> Result<(), Denied> {
        if matches_any(self.models.as_deref(), model) {
            Ok(())
        } else {
            Err(Denied::Model(model.to_owned()))
        }
    }

    pub fn experiment(&self, id: &str) -> Result<(), Denied> {
        if matches_any(self.experiments.as_deref(), id) {
            Ok(())
        } else {
            Err(Denied::Experiment(id.to_owned()))
        }
    }
}

fn matches_any(patterns: Option<&[String]>, name: &str) -> bool {
    patterns.is_none_or(|patterns| patterns.iter().any(|p| wildcard_match(p, name)))
}

/// The endpoint named `label` in an allow-list.
pub fn endpoint_named(label: &str) -> Option<Endpoint> {
    ENDPOINTS.into_iter().find(|e| e.label() == label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_omitted_list_allows_everything_and_an_empty_one_nothing() {
        let everything = Permissions::UNRESTRICTED;
        assert_eq!(everything.endpoint(Endpoint::Feedback), Ok(()));
        assert_eq!(everything.model("any-model"), Ok(()));
        let nothing = Permissions {
            endpoints: Some(vec![]),
            models: Some(vec![]),
            experiments: Some(vec![]),
        };
        assert_eq!(
            nothing.endpoint(Endpoint::Models),
            Err(Denied::Endpoint(Endpoint::Models))
        );
        assert_eq!(nothing.experiment("x"), Err(Denied::Experiment("x".into())));
    }

    #[test]
    fn patterns_match_like_routes() {
        let some = Permissions {
            endpoints: Some(vec![Endpoint::ChatCompletions]),
            models: Some(vec!["gpt-4o*".into(), "claude-haiku".into()]),
            experiments: None,
        };
        assert_eq!(some.model("gpt-4o-mini"), Ok(()));
        assert_eq!(some.model("claude-haiku"), Ok(()));
        assert_eq!(
            some.model("claude-opus"),
            Err(Denied::Model("claude-opus".into()))
        );
        assert_eq!(
            some.endpoint(Endpoint::Embeddings),
            Err(Denied::Endpoint(Endpoint::Embeddings))
        );
        assert_eq!(
            Denied::Endpoint(Endpoint::Embeddings).to_string(),
            "the `embeddings` endpoint"
        );
    }

    #[test]
    fn every_endpoint_is_named_by_its_label() {
        for endpoint in ENDPOINTS {
            assert_eq!(endpoint_named(endpoint.label()), Some(endpoint));
        }
        assert_eq!(endpoint_named("chat"), None);
    }
}
