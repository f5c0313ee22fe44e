//! The validated configuration. Every value here has been checked: a `Config`
//! that exists can be served.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue};

#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
    pub providers: Vec<Arc<ProviderConfig>>,
    pub routes: Vec<RouteConfig>,
    pub experiments: Vec<crate::experiments::model::Experiment>,
    /// `None`: no audit log.
    pub audit: Option<crate::config::audit::AuditConfig>,
    pub feedback: crate::config::feedback::FeedbackConfig,
    pub tags: crate::tags::TagsConfig,
    pub telemetry: TelemetryConfig,
    /// `[limits.<client id>]`, per replica.
    pub limits: crate::config::limits::LimitsConfig,
    /// Short content hash of the config file and every prompt file it reads:
    /// the version every response and record carries.
    pub version: Arc<str>,
    /// Prompt files read, which a reload watches besides the config file.
    pub prompt_files: Vec<std::path::PathBuf>,
    /// Digest of the `[audit]` and `[prices]` sections, which apply only at
    /// start-up: a reload that changes them warns.
    pub startup_only_digest: Arc<str>,
}

/// `[telemetry]`, validated.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `None`: tracing is off (no endpoint configured, or `OTEL_SDK_DISABLED=true`).
    pub traces: Option<TraceExport>,
    /// In [0, 1]: the share of requests whose access-log line is written at
    /// INFO (the others' only at DEBUG). 0 unless configured.
    pub access_log_sample_ratio: f64,
}

#[derive(Debug, Clone)]
pub struct TraceExport {
    /// The full OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: http::Uri,
    /// In [0, 1]: the share of root traces sampled.
    pub sample_ratio: f64,
    pub export_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    /// Requests in flight (until their response head) beyond which new ones
    /// are shed with a 503. Read at start-up only.
    pub max_concurrent_requests: usize,
    /// `None`: the files are not watched.
    pub config_poll: Option<Duration>,
    /// `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// A listener's TLS files (paths resolved against the config file's
/// directory), read at start-up and again whenever they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Client certificates are verified against this bundle (client listener only).
    pub client_ca_file: Option<PathBuf>,
    /// Only with `client_ca_file`: a handshake without a client certificate fails.
    pub require_client_cert: bool,
}

#[derive(Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// SHA-256 of the admin token; `None` only on a loopback listener.
    pub token_sha256: Option<[u8; 32]>,
    /// How long audit uploads may fail before `/readyz` says not ready.
    pub readiness_audit_failure: Duration,
    /// `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token_sha256.map(|_| "[redacted]"))
            .field("readiness_audit_failure", &self.readiness_audit_failure)
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Debug)]
pub enum AuthConfig {
    /// Any caller is accepted; validation guarantees the listener is loopback.
    Open,
    Keys {
        keys: Vec<ClientKey>,
        /// The client each `certificate_names` entry authenticates over
        /// mutual TLS; empty without it.
        by_certificate_name: HashMap<String, CertifiedClient>,
    },
}

impl AuthConfig {
    /// Whether `id` is a declared client (by a key or a certificate name).
    pub fn declares(&self, id: &str) -> bool {
        match self {
            AuthConfig::Open => false,
            AuthConfig::Keys {
                keys,
                by_certificate_name,
            } => {
                keys.iter().any(|key| &*key.id == id)
                    || by_certificate_name.values().any(|client| &*client.id == id)
            }
        }
    }
}

/// The client a verified certificate name stands for.
#[derive(Debug, Clone)]
pub struct CertifiedClient {
    pub id: Arc<str>,
    pub permissions: Arc<super::permissions::Permissions>,
}

/// One accepted key; a client with several keys (rotation) has one entry
/// per key, sharing its id and permissions.
#[derive(Clone)]
pub struct ClientKey {
    pub id: Arc<str>,
    pub sha256: [u8; 32],
    /// After this the key is refused as expired.
    pub not_after: Option<std::time::SystemTime>,
    pub permissions: Arc<super::permissions::Permissions>,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

// Routes are the routing module's types; the config model names them too.
pub use crate::routing::{ModelPattern, ProviderId, RouteConfig};

#[derive(Debug)]
pub struct ProviderConfig {
    pub name: Arc<str>,
    pub kind: ProviderKind,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    /// Bounds the SSE decoder's memory per stream (`max_sse_event_bytes`).
    pub max_sse_event_bytes: usize,
}

#[derive(Debug)]
pub enum ProviderKind {
    OpenAi(HttpUpstream),
    Anthropic(HttpUpstream),
    /// Answers in-process with deterministic text: no network, no key.
    Demo,
}

impl ProviderKind {
    pub fn label(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi(_) => "openai",
            ProviderKind::Anthropic(_) => "anthropic",
            ProviderKind::Demo => "demo",
        }
    }
}

/// Where and how to reach an HTTP provider.
#[derive(Debug)]
pub struct HttpUpstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path of the base URL without a trailing slash (`/v1` for OpenAI).
    pub path_prefix: String,
    /// Pre-encoded query string without `?`, empty when none.
    pub query: String,
    pub credential: Option<Credential>,
}

/// The provider key as a ready header. The value is marked sensitive so hyper
/// never logs it, and `Debug` prints only the header name.
pub struct Credential {
    pub header: HeaderName,
    pub value: HeaderValue,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({}: [redacted])", self.header)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// Until the response head arrives.
    pub first_byte: Duration,
    /// For the whole exchange, body included.
    pub total: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Retry a request whose connection broke after it was sent.
    pub retry_on_dropped_after_send: bool,
}
