//! Which headers cross the gateway, in each direction.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1) never cross a proxy.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Caller headers that must not reach a provider: the caller's gateway key (in
/// any of the places SDKs put it), what the gateway sets itself, and account
/// selectors that belong to the gateway's provider key, not the caller's.
fn is_withheld_from_provider(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "authorization"
            | "x-api-key"
            | "api-key"
            | "cookie"
            | "accept-encoding"
            | "x-request-id"
            | "openai-organization"
            | "openai-project"
            | "upgrade"
    ) || name.as_str().starts_with("x-promptgate-")
}

/// Provider headers that must not reach the caller: ids that the gateway
/// replaces with its own, and what would reveal the gateway's provider account.
const WITHHELD_FROM_CALLER: [&str; 7] = [
    "x-request-id",
    "request-id",
    "set-cookie",
    "openai-organization",
    "openai-project",
    "anthropic-organization-id",
    "upgrade",
];

fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect()
}

/// Headers for the provider request: the caller's minus what is withheld.
pub fn to_provider(caller: &HeaderMap, request_id: &HeaderValue) -> HeaderMap {
    let listed = connection_listed(caller);
    let mut out = HeaderMap::with_capacity(caller.len() + 2);
    for (name, value) in caller {
        if HOP_BY_HOP.contains(name) || listed.contains(name) || is_withheld_from_provider(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(HeaderName::from_static("x-request-id"), request_id.clone());
    out
}

/// Makes the provider's headers the caller's, in place (no second map is
/// built): what is withheld is removed, and the provider's own request id is
/// kept under `x-upstream-request-id` for support cases.
pub fn to_caller(headers: &mut HeaderMap) {
    let upstream_id = headers
        .get("request-id")
        .or_else(|| headers.get("x-request-id"))
        .cloned();
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    for name in WITHHELD_FROM_CALLER {
        headers.remove(name);
    }
    if let Some(id) = upstream_id {
        headers.insert(HeaderName::from_static("x-upstream-request-id"), id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_keys_never_reach_the_provider() {
        let mut caller = HeaderMap::new();
        caller.insert(
            "authorization",
            HeaderValue::from_static("Bearer pg-secret"),
        );
        caller.insert("x-api-key", HeaderValue::from_static("pg-secret"));
        caller.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        caller.insert("anthropic-beta", HeaderValue::from_static("tools-2024"));
        caller.insert("x-promptgate-variant", HeaderValue::from_static("b"));
        caller.insert("connection", HeaderValue::from_static("keep-alive, x-hop"));
        caller.insert("x-hop", HeaderValue::from_static("1"));
        caller.insert("traceparent", HeaderValue::from_static("00-abc-def-01"));
        let out = to_provider(&caller, &HeaderValue::from_static("rid"));
        assert!(out.get("authorization").is_none());
        assert!(out.get("x-api-key").is_none());
        assert!(out.get("x-promptgate-variant").is_none());
        assert!(out.get("x-hop").is_none());
        assert!(out.get("connection").is_none());
        assert_eq!(out["anthropic-version"], "2023-06-01");
        assert_eq!(out["anthropic-beta"], "tools-2024");
        assert_eq!(out["traceparent"], "00-abc-def-01");
        assert_eq!(out["x-request-id"], "rid");
    }

    #[test]
    fn provider_ids_are_kept_aside() {
        let mut provider = HeaderMap::new();
        provider.insert("request-id", HeaderValue::from_static("req_1"));
        provider.insert(
            "openai-organization",
            HeaderValue::from_static("org-gateway"),
        );
        provider.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        provider.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        provider.insert("connection", HeaderValue::from_static("x-hop"));
        provider.insert("x-hop", HeaderValue::from_static("1"));
        provider.append("set-cookie", HeaderValue::from_static("a=1"));
        provider.append("set-cookie", HeaderValue::from_static("b=2"));
        to_caller(&mut provider);
        let out = provider;
        assert!(out.get("request-id").is_none());
        assert!(out.get("openai-organization").is_none());
        assert!(out.get("transfer-encoding").is_none());
        assert_eq!(out["x-upstream-request-id"], "req_1");
        assert_eq!(out["content-type"], "text/event-stream");
        for withheld in ["connection", "x-hop", "set-cookie", "x-request-id"] {
            assert!(out.get(withheld).is_none(), "{withheld}");
        }
        assert_eq!(out.len(), 2, "{out:?}");
    }
}
