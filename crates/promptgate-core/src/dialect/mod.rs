//! The two client-facing API dialects: which endpoints exist and how a
//! request body is read. How a failure is written back to the caller is the
//! gateway's (`promptgate::respond`).

mod request;
mod shape;

pub use request::{RequestError, RequestHead, parse_head};

use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// The dialect a path belongs to, also for paths the gateway does not serve,
    /// so even a 404 comes back in a shape the caller's SDK understands.
    pub fn of_path(path: &str) -> Dialect {
        if path.starts_with("/v1/messages") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Models,
    Messages,
    CountTokens,
    /// Answered by the gateway itself (outcomes for the audit log), never forwarded.
    Feedback,
}

/// Why a method and path are not an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointMismatch {
    NotFound,
    MethodNotAllowed { allowed: &'static str },
}

impl Endpoint {
    pub fn from_request(method: &Method, path: &str) -> Result<Endpoint, EndpointMismatch> {
        let (endpoint, allowed) = match path.strip_suffix('/').unwrap_or(path) {
            "/v1/chat/completions" => (Endpoint::ChatCompletions, Method::POST),
            "/v1/completions" => (Endpoint::Completions, Method::POST),
            "/v1/embeddings" => (Endpoint::Embeddings, Method::POST),
            "/v1/responses" => (Endpoint::Responses, Method::POST),
            "/v1/models" => (Endpoint::Models, Method::GET),
            "/v1/messages" => (Endpoint::Messages, Method::POST),
            "/v1/messages/count_tokens" => (Endpoint::CountTokens, Method::POST),
            "/v1/feedback" => (Endpoint::Feedback, Method::POST),
            _ => return Err(EndpointMismatch::NotFound),
        };
        if *method == allowed {
            Ok(endpoint)
        } else {
            Err(EndpointMismatch::MethodNotAllowed {
                allowed: if allowed == Method::GET {
                    "GET"
                } else {
                    "POST"
                },
            })
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// Path below the provider's base URL. OpenAI-style base URLs end in `/v1`
    /// (as the OpenAI SDK's do); Anthropic's do not (as its SDK's do not).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Models => "/models",
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
            Endpoint::Feedback => "/v1/feedback",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Models => "models",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
            Endpoint::Feedback => "feedback",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_method_and_path() {
        assert_eq!(
            Endpoint::from_request(&Method::POST, "/v1/chat/completions"),
            Ok(Endpoint::ChatCompletions)
        );
        assert_eq!(
            Endpoint::from_request(&Method::POST, "/v1/messages/count_tokens/"),
            Ok(Endpoint::CountTokens)
        );
        assert_eq!(
            Endpoint::from_request(&Method::GET, "/v1/messages"),
            Err(EndpointMismatch::MethodNotAllowed { allowed: "POST" })
        );
        assert_eq!(
            Endpoint::from_request(&Method::POST, "/v2/nothing"),
            Err(EndpointMismatch::NotFound)
        );
        assert_eq!(Dialect::of_path("/v1/messages/other"), Dialect::Anthropic);
        assert_eq!(Dialect::of_path("/v1/other"), Dialect::OpenAi);
    }
}
