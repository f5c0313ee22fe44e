//! The config file exactly as written: serde types that only check syntax and
//! field names (`deny_unknown_fields`). Meaning is checked in `validate.rs`, which
//! turns these into the types of `model.rs`, which cannot hold invalid states.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Accept any caller without a key. Only allowed when listening on loopback.
    #[serde(default)]
    pub open: bool,
    #[serde(default)]
    pub clients: Vec<RawClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub id: String,
    /// Hex SHA-256 of the client's secret key (`promptgate hash-key`).
    pub key_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProviderKind {
    Openai,
    Anthropic,
    Demo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: RawProviderKind,
    pub base_url: Option<String>,
    /// Name of the environment variable holding the provider key.
    pub api_key_env: Option<String>,
    /// Path of a file holding the provider key (e.g. a mounted Kubernetes secret).
    pub api_key_file: Option<String>,
    /// Header that carries the key; defaults to the kind's own (`authorization` /
    /// `x-api-key`). Azure OpenAI uses `api-key`.
    pub api_key_header: Option<String>,
    /// Query parameters added to every upstream URL (Azure's `api-version`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    pub connect_timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub total_timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
    pub retry_base_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Model names this route answers for: exact names or patterns with `*`.
    pub models: Vec<String>,
    /// Model name sent upstream instead of the caller's (makes the route an alias).
    pub upstream_model: Option<String>,
    /// Providers in fallback order.
    pub providers: Vec<String>,
}
