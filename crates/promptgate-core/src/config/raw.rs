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
    pub admin: RawAdmin,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub experiments: BTreeMap<String, RawExperiment>,
    /// Absent: no audit log.
    pub audit: Option<RawAudit>,
    /// USD per million tokens, by the model name sent to the provider.
    #[serde(default)]
    pub prices: BTreeMap<String, RawPrice>,
    #[serde(default)]
    pub feedback: RawFeedback,
    #[serde(default)]
    pub tags: RawTags,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// `[limits.<client id>]`: per-client limits, per replica.
    #[serde(default)]
    pub limits: BTreeMap<String, RawClientLimits>,
}

/// `[limits.<client id>]`: each limit is kept by every replica on its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u64>,
    pub usd_per_day: Option<f64>,
}

/// `[telemetry]`: OpenTelemetry traces and the access log. Applies at start-up only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP/HTTP base URL of a collector (`/v1/traces` is appended), e.g.
    /// `http://otel-collector:4318`. Unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// or `OTEL_EXPORTER_OTLP_ENDPOINT`; none of them: no traces.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded (0–1, default 1). A caller's `traceparent`
    /// decision is followed.
    pub sample_ratio: Option<f64>,
    /// How long finished spans wait before they are sent in a batch (default 5000).
    pub export_interval_ms: Option<u64>,
    /// Share of requests whose access-log line (target `promptgate::access`)
    /// is written at INFO (0–1, default 0). Every request's line is written
    /// at DEBUG, and failed requests' at WARN, whatever this says.
    pub access_log_sample_ratio: Option<f64>,
}

/// `[feedback]`: which metrics `POST /v1/feedback` accepts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedback {
    /// Metric name → `"boolean"` or `"float"`. Empty: any plain metric name.
    #[serde(default)]
    pub metrics: BTreeMap<String, RawMetricKind>,
    /// Clients whose feedback `promptgate analyze` counts on any client's
    /// request (outcome reporters); others count only on their own.
    #[serde(default)]
    pub trusted_clients: Vec<String>,
}

/// `[tags]`: the keys applications may send in `x-promptgate-tags`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTags {
    /// Longest value accepted, in bytes (1–256, default 64).
    pub max_value_bytes: Option<usize>,
    /// Key → its declaration. A key not here is refused with a 400.
    #[serde(default)]
    pub keys: BTreeMap<String, RawTagKey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTagKey {
    /// The only values accepted; absent: any value.
    pub values: Option<Vec<String>>,
    /// Also count requests by this key's value in
    /// `promptgate_tagged_requests_total` (needs a short `values` list).
    #[serde(default)]
    pub metric_label: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMetricKind {
    Boolean,
    Float,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAuditSink {
    Local,
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSpoolFull {
    Reject,
    Drop,
}

/// `spool_max_bytes`: a number of bytes, or `"auto"` (a share of the spool's
/// file system).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a whole number of bytes or \"auto\"")]
pub enum RawSpoolMax {
    Bytes(u64),
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawDurability {
    Buffered,
    Strict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawCompression {
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawRedaction {
    Marker,
    Hash,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Where objects go: `local` (a directory) or `s3`.
    pub sink: Option<RawAuditSink>,
    /// The local sink's root, relative to the working directory.
    pub local_dir: Option<String>,
    pub s3_bucket: Option<String>,
    /// The bucket named by an environment variable instead.
    pub s3_bucket_env: Option<String>,
    pub s3_prefix: Option<String>,
    /// For S3-compatible servers; AWS_ENDPOINT_URL_S3 works too.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_force_path_style: Option<bool>,
    /// Write-ahead spool, relative to the working directory.
    pub spool_dir: Option<String>,
    pub spool_max_bytes: Option<RawSpoolMax>,
    pub on_spool_full: Option<RawSpoolFull>,
    pub durability: Option<RawDurability>,
    /// Group-commit window: how long records wait for their fsync at most.
    pub commit_interval_ms: Option<u64>,
    pub flush_records: Option<u64>,
    pub flush_bytes: Option<u64>,
    pub flush_interval_ms: Option<u64>,
    pub queue_capacity: Option<usize>,
    /// Names this replica in object keys; default: $HOSTNAME, else a random id.
    pub instance: Option<String>,
    /// HMAC key for pseudonymising unit keys.
    pub unit_key_secret_env: Option<String>,
    pub unit_key_secret_file: Option<String>,
    /// false: records carry metadata only, no request or response bodies.
    pub log_bodies: Option<bool>,
    /// Paths into the record to redact, e.g. `request.messages[*].content`.
    #[serde(default)]
    pub redact_json_paths: Vec<String>,
    pub redaction: Option<RawRedaction>,
    /// Of the uploaded objects: `gzip` (default) or `zstd`.
    pub compression: Option<RawCompression>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    /// Requests served at once; more are refused with 503 (load shedding).
    pub max_concurrent_requests: Option<u64>,
    /// How often the config and prompt files are checked for changes (0: never;
    /// SIGHUP and the admin endpoint still reload).
    pub config_poll_ms: Option<u64>,
    /// HTTPS on the client listener (and mutual TLS with `client_ca_file`).
    pub tls: Option<RawTls>,
}

/// `[server.tls]` and `[admin.tls]`: PEM files, paths relative to the config
/// file, re-read when they change (certificate rotation without restart).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// CA bundle that client certificates must chain to (client listener only).
    pub client_ca_file: Option<String>,
    /// Refuse the handshake without a client certificate (needs `client_ca_file`).
    #[serde(default)]
    pub require_client_cert: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Default 127.0.0.1:9090. Health, readiness, reload and experiment views.
    pub listen: Option<String>,
    /// Bearer token for /admin/* (health checks need none). Required unless
    /// the admin listener is on loopback.
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    /// `/readyz` answers 503 once audit uploads have failed, with segments
    /// waiting and nothing stored, for this long (default 60000).
    pub readiness_audit_failure_ms: Option<u64>,
    /// HTTPS on the admin listener (`cert_file` and `key_file` only).
    pub tls: Option<RawTls>,
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
    pub key_sha256: Option<String>,
    /// The same digest from an environment variable or a file (a container
    /// whose config is baked into the image).
    pub key_sha256_env: Option<String>,
    pub key_sha256_file: Option<String>,
    /// Subject CN or SAN (DNS name or URI) of client certificates that
    /// authenticate as this client over mutual TLS, instead of a key.
    #[serde(default)]
    pub certificate_names: Vec<String>,
    /// Several keys at once, for rotation without downtime (besides or
    /// instead of the single `key_sha256` forms above).
    #[serde(default)]
    pub keys: Vec<RawClientKey>,
    /// What the client may call; absent: everything.
    pub allow: Option<RawAllow>,
}

/// One of a client's keys in `[[auth.clients.keys]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientKey {
    pub sha256: Option<String>,
    pub sha256_env: Option<String>,
    pub sha256_file: Option<String>,
    /// RFC 3339 time after which the key is refused (`2027-01-31T00:00:00Z`).
    pub not_after: Option<String>,
}

/// `[auth.clients.allow]`: an omitted list does not restrict, an empty one
/// allows nothing of its kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    /// Endpoint labels: `chat_completions`, `completions`, `embeddings`,
    /// `responses`, `models`, `messages`, `count_tokens`, `feedback`.
    pub endpoints: Option<Vec<String>>,
    /// Model names or `*` patterns (the name the caller sends).
    pub models: Option<Vec<String>>,
    /// Experiment ids or `*` patterns.
    pub experiments: Option<Vec<String>>,
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
    /// Retry when the connection broke after the request was sent (the
    /// provider may have run it, and bill it twice). Default true.
    pub retry_on_dropped_after_send: Option<bool>,
    /// Largest SSE event (bytes between blank lines) accepted from this
    /// provider's streams; a longer one ends the stream with an error event.
    pub max_sse_event_bytes: Option<u64>,
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

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExperiment {
    /// Off: everyone gets the default variant (reason `disabled`).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Defaults to the experiment id; changing it re-randomises every unit.
    pub salt: Option<String>,
    pub unit_key: RawUnitKey,
    /// Share of units in the experiment (0–100); the rest get the default variant.
    pub enrolment_percent: Option<f64>,
    /// For units not enrolled and disabled experiments; defaults to the first variant.
    pub default_variant: Option<String>,
    /// Served when the assigned variant's providers all fail before the first byte.
    pub fallback_variant: Option<String>,
    /// Sends everyone to this variant (an emergency stop for a bad variant).
    pub killswitch: Option<String>,
    /// Client ids allowed to force a variant with `x-promptgate-variant`
    /// (`"*"`: every caller, including open mode).
    #[serde(default)]
    pub override_clients: Vec<String>,
    pub variants: Vec<RawVariant>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// false: this experiment's audit records carry metadata only.
    pub log_bodies: Option<bool>,
    /// Candidate variants that also run on a sample of requests, never served.
    pub shadow: Option<RawShadow>,
}

/// `[experiments.<id>.shadow]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    /// Variant names (of this experiment) to run in shadow.
    pub variants: Vec<String>,
    /// Share of the experiment's requests that also run the shadows (0–100).
    pub sample_percent: f64,
    /// true (default): sampled by unit key, so a unit is always or never
    /// shadowed; false: by request id.
    pub sticky: Option<bool>,
    /// Shadow calls of this experiment in flight at once, per replica (default 16).
    pub max_concurrent: Option<usize>,
    /// A shadow call's own deadline, head and body (default 60000).
    pub timeout_ms: Option<u64>,
    /// Daily budgets per replica (UTC days); a spent budget skips shadows.
    pub max_requests_per_day: Option<u64>,
    pub max_tokens_per_day: Option<u64>,
    /// Needs a `[prices]` entry for every shadow variant's model.
    pub max_usd_per_day: Option<f64>,
}

/// Where the unit key comes from: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnitKey {
    /// A request header, e.g. `x-user-id`.
    pub header: Option<String>,
    /// A dotted path into the JSON body, e.g. `user` or `metadata.user_id`.
    pub body: Option<String>,
    /// The authenticated client key's id.
    pub client_id: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawMessagesMode {
    Keep,
    Prepend,
    Replace,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    pub name: String,
    pub weight: f64,
    /// A label analysts see; defaults to a hash of the variant's definition.
    pub version: Option<String>,
    pub model: String,
    /// Providers in fallback order.
    pub providers: Vec<String>,
    pub system: Option<String>,
    /// File holding the system template, relative to the config file.
    pub system_file: Option<String>,
    pub user: Option<String>,
    pub user_file: Option<String>,
    /// What happens to the caller's own messages.
    pub messages: Option<RawMessagesMode>,
    /// Request parameters set by the variant (temperature, max_tokens, …).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub variant: String,
    /// `header:<name>`, `client_id`, `model` or `metadata:<field>`.
    pub attribute: String,
    pub equals: Option<String>,
    #[serde(rename = "in")]
    pub one_of: Option<Vec<String>>,
    pub prefix: Option<String>,
}
