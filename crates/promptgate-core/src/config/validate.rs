//! Raw → validated config. Every problem is collected (not just the first) with
//! the dotted path of the field it concerns, so `check-config` can list them all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Scheme, Uri};
use http::{HeaderName, HeaderValue};
use sha2::Digest;

use super::model::*;
use super::raw::*;
use super::validate_audit::validate_audit;
use super::validate_auth::validate_auth;
use super::validate_experiments::{Context, validate_experiments};
use super::validate_tls::{Listener, validate_tls};
use crate::config::feedback::{FeedbackConfig, LABEL_RULE, MetricKind, is_label};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
const DEFAULT_CONFIG_POLL_MS: u64 = 1_000;
const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// Requests in flight before shedding: far above what one replica's cores
/// parse and forward at once (each waits mostly on its provider), low enough
/// that a flood is refused before its bodies exhaust memory (8 MiB each at
/// most).
const DEFAULT_MAX_CONCURRENT_REQUESTS: u64 = 2048;
/// A million requests in flight is no limit; beyond it the semaphore's own
/// ceiling would be near.
const MAX_CONCURRENT_REQUESTS_CEILING: u64 = 1_000_000;
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
// A non-streaming completion sends its first byte only when generation ends.
const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 120_000;
const DEFAULT_TOTAL_TIMEOUT_MS: u64 = 600_000;
const DEFAULT_MAX_RETRIES: u32 = 2;
const DEFAULT_RETRY_BASE_MS: u64 = 200;
const DEFAULT_RETRY_MAX_MS: u64 = 5_000;
/// Far above any real event (a long answer's final chunk is a few KiB); one
/// hostile stream may hold about twice this (the decoder and the held event).
const DEFAULT_MAX_SSE_EVENT_BYTES: u64 = crate::sse::DEFAULT_MAX_EVENT_BYTES as u64;
const MAX_SSE_EVENT_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=(256 << 20);

/// One problem in the config, at a dotted field path such as
/// `providers.openai.base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Reads a prompt file by the name the config gives it: its identity (hashed
/// into the config version, watched for reloads) and its text, or why not.
pub type ReadPrompt<'a> = dyn Fn(&str) -> Result<(std::path::PathBuf, String), String> + 'a;

/// What validation needs from outside the file.
pub struct Environment<'a> {
    /// Directory that relative `api_key_file` paths are resolved against.
    pub base_dir: &'a Path,
    pub listen_override: Option<SocketAddr>,
    pub admin_listen_override: Option<SocketAddr>,
    pub read_env: &'a dyn Fn(&str) -> Option<String>,
    /// Reads `system_file` / `user_file` templates.
    pub read_prompt: &'a ReadPrompt<'a>,
}

/// Validates `raw`; `source` is the config text, hashed with every prompt file
/// read into the config version.
pub fn validate(
    raw: RawConfig,
    source: &str,
    env: &Environment<'_>,
) -> Result<Config, Vec<FieldError>> {
    let mut errors = Errors::default();
    let mut server = validate_server(&raw.server, env.listen_override, &mut errors);
    let server_tls = validate_tls(
        "server.tls",
        raw.server.tls.as_ref(),
        Listener::Client,
        env,
        &mut errors,
    );
    if let Some(server) = &mut server {
        server.tls = server_tls;
    }
    let auth = validate_auth(
        &raw.auth,
        server.as_ref().map(|s| s.listen),
        raw.server.tls.as_ref(),
        env,
        &mut errors,
    );
    let admin = validate_admin(&raw.admin, env, &mut errors);
    super::validate_auth::validate_trusted_clients(&raw.auth, &raw.feedback, &mut errors);

    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut provider_ids = HashMap::new();
    for (name, provider) in &raw.providers {
        if let Some(provider) = validate_provider(name, provider, env, &mut errors) {
            provider_ids.insert(name.as_str(), providers.len());
            providers.push(Arc::new(provider));
        }
    }
    let routes = validate_routes(&raw.routes, &raw.providers, &provider_ids, &mut errors);
    let exact_models: HashSet<String> = raw
        .routes
        .iter()
        .flat_map(|r| r.models.iter())
        .filter(|m| !m.contains('*'))
        .cloned()
        .collect();
    let mut files = Vec::new();
    let experiments = validate_experiments(
        &raw.experiments,
        &mut Context {
            env,
            provider_ids: &provider_ids,
            raw_providers: &raw.providers,
            exact_models: &exact_models,
            prices: &raw.prices,
            files: &mut files,
        },
        &mut errors,
    );

    let audit = validate_audit(raw.audit.as_ref(), &raw.prices, env, &mut errors);
    let feedback = validate_feedback(&raw.feedback, &mut errors);
    let tags = super::validate_tags::validate_tags(&raw.tags, &mut errors);
    let telemetry = validate_telemetry(&raw.telemetry, env, &mut errors);
    let limits = super::limits::validate_limits(
        &raw.limits,
        auth.as_ref(),
        !raw.prices.is_empty(),
        &mut errors,
    );
    if raw.audit.is_none() && !raw.prices.is_empty() {
        errors.push(
            "prices",
            "prices are used by the audit log: add an [audit] section",
        );
    }

    match (server, auth, admin, errors.list.is_empty()) {
        (Some(server), Some(auth), Some(admin), true) => Ok(Config {
            server,
            auth,
            admin,
            providers,
            routes,
            experiments,
            audit,
            feedback,
            tags,
            telemetry,
            limits,
            startup_only_digest: super::config_version(
                &format!(
                    "{:?}{:?}{:?}{:?}{:?}",
                    raw.audit, raw.prices, raw.telemetry, raw.server.tls, raw.admin.tls
                ),
                &[],
            ),
            version: super::config_version(source, &files),
            prompt_files: files.into_iter().map(|(path, _)| path).collect(),
        }),
        _ => Err(errors.list),
    }
}

fn validate_feedback(raw: &RawFeedback, errors: &mut Errors) -> FeedbackConfig {
    let mut metrics = BTreeMap::new();
    for (name, kind) in &raw.metrics {
        if !is_label(name) {
            errors.push(
                super::location::child_path("feedback.metrics", name),
                format!("the metric name `{name}` {LABEL_RULE}"),
            );
        }
        let kind = match kind {
            RawMetricKind::Boolean => MetricKind::Boolean,
            RawMetricKind::Float => MetricKind::Float,
        };
        metrics.insert(name.clone(), kind);
    }
    FeedbackConfig {
        metrics,
        trusted_clients: raw.trusted_clients.clone(),
    }
}

const DEFAULT_EXPORT_INTERVAL_MS: u64 = 5_000;
const DEFAULT_READINESS_AUDIT_FAILURE_MS: u64 = 60_000;

/// The trace exporter's endpoint: the file's `otlp_endpoint` (a base URL), else
/// the standard environment variables, resolved as the OTLP exporter
/// specification says (the signal-specific one is used as is, the general one
/// gets `/v1/traces`).
fn validate_telemetry(
    raw: &RawTelemetry,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> TelemetryConfig {
    let ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        errors.push("telemetry.sample_ratio", "must be between 0 and 1");
    }
    let interval = raw.export_interval_ms.unwrap_or(DEFAULT_EXPORT_INTERVAL_MS);
    if interval == 0 {
        errors.push("telemetry.export_interval_ms", "must be greater than 0");
    }
    let access_ratio = raw.access_log_sample_ratio.unwrap_or(0.0);
    // `contains` is false for NaN too.
    if !(0.0..=1.0).contains(&access_ratio) {
        errors.push(
            "telemetry.access_log_sample_ratio",
            "must be between 0 and 1",
        );
    }
    let access_log_sample_ratio = access_ratio.clamp(0.0, 1.0);
    let off = TelemetryConfig {
        traces: None,
        access_log_sample_ratio,
    };
    let disabled =
        (env.read_env)("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let from_env = |name: &str| (env.read_env)(name).filter(|v| !v.trim().is_empty());
    let (text, source, full) = match (&raw.otlp_endpoint, disabled) {
        (_, true) => return off,
        (Some(base), false) => (base.clone(), "telemetry.otlp_endpoint".to_owned(), false),
        (None, false) => match from_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => (url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_owned(), true),
            None => match from_env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => (base, "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), false),
                None => return off,
            },
        },
    };
    let text = text.trim();
    let url = if full {
        text.to_owned()
    } else {
        format!("{}/v1/traces", text.trim_end_matches('/'))
    };
    let endpoint = match url.parse::<Uri>() {
        Ok(uri)
            if uri.authority().is_some()
                && matches!(uri.scheme_str(), Some("http") | Some("https")) =>
        {
            uri
        }
        _ => {
            errors.push(
                "telemetry.otlp_endpoint",
                format!("`{text}` (from {source}) is not an http:// or https:// URL"),
            );
            return off;
        }
    };
    TelemetryConfig {
        traces: Some(TraceExport {
            endpoint,
            sample_ratio: ratio.clamp(0.0, 1.0),
            export_interval: Duration::from_millis(interval.max(1)),
        }),
        access_log_sample_ratio,
    }
}

#[derive(Default)]
pub(super) struct Errors {
    list: Vec<FieldError>,
}

impl Errors {
    pub(super) fn push(&mut self, path: impl AsRef<str>, message: impl Into<String>) {
        self.list.push(FieldError {
            path: path.as_ref().to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }
}

fn validate_server(
    raw: &RawServer,
    listen_override: Option<SocketAddr>,
    errors: &mut Errors,
) -> Option<ServerConfig> {
    let listen = match listen_override {
        Some(addr) => Some(addr),
        None => {
            let text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
            match text.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    errors.push(
                        "server.listen",
                        format!("`{text}` is not an IP address and port such as 127.0.0.1:8080"),
                    );
                    None
                }
            }
        }
    };
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        errors.push("server.max_body_bytes", "must be greater than 0");
    }
    let max_body_bytes = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    let max_concurrent_requests = raw
        .max_concurrent_requests
        .unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS);
    if !(1..=MAX_CONCURRENT_REQUESTS_CEILING).contains(&max_concurrent_requests) {
        errors.push(
            "server.max_concurrent_requests",
            format!("must be between 1 and {MAX_CONCURRENT_REQUESTS_CEILING}"),
        );
    }
    let max_concurrent_requests =
        usize::try_from(max_concurrent_requests.min(MAX_CONCURRENT_REQUESTS_CEILING)).unwrap_or(1);
    let poll = raw.config_poll_ms.unwrap_or(DEFAULT_CONFIG_POLL_MS);
    Some(ServerConfig {
        listen: listen?,
        max_body_bytes,
        max_concurrent_requests,
        shutdown_grace: Duration::from_millis(
            raw.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS),
        ),
        config_poll: (poll > 0).then(|| Duration::from_millis(poll)),
        tls: None,
    })
}

fn validate_admin(
    raw: &RawAdmin,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<AdminConfig> {
    let listen = match env.admin_listen_override {
        Some(addr) => addr,
        None => {
            let text = raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
            let Ok(addr) = text.parse::<SocketAddr>() else {
                errors.push(
                    "admin.listen",
                    format!("`{text}` is not an IP address and port such as 127.0.0.1:9090"),
                );
                return None;
            };
            addr
        }
    };
    let token = read_secret(
        "admin",
        ("token_env", raw.token_env.as_deref()),
        ("token_file", raw.token_file.as_deref()),
        env,
        errors,
    )?;
    if token.is_none() && !listen.ip().is_loopback() {
        errors.push(
            "admin",
            format!("the admin listener on {listen} is not loopback: set token_env or token_file"),
        );
        return None;
    }
    let tolerated = raw
        .readiness_audit_failure_ms
        .unwrap_or(DEFAULT_READINESS_AUDIT_FAILURE_MS);
    Some(AdminConfig {
        listen,
        token_sha256: token.map(|t| sha2::Sha256::digest(t.as_bytes()).into()),
        readiness_audit_failure: Duration::from_millis(tolerated),
        tls: validate_tls("admin.tls", raw.tls.as_ref(), Listener::Admin, env, errors),
    })
}

fn validate_provider(
    name: &str,
    raw: &RawProvider,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<ProviderConfig> {
    let path = super::location::child_path("providers", name);
    let before = errors.list.len();
    let kind = match raw.kind {
        RawProviderKind::Demo => {
            for (field, set) in [
                ("base_url", raw.base_url.is_some()),
                ("api_key_env", raw.api_key_env.is_some()),
                ("api_key_file", raw.api_key_file.is_some()),
                ("api_key_header", raw.api_key_header.is_some()),
                ("query", !raw.query.is_empty()),
                (
                    "retry_on_dropped_after_send",
                    raw.retry_on_dropped_after_send.is_some(),
                ),
                ("max_sse_event_bytes", raw.max_sse_event_bytes.is_some()),
            ] {
                if set {
                    errors.push(
                        format!("{path}.{field}"),
                        "the demo provider answers in-process and takes no such setting",
                    );
                }
            }
            ProviderKind::Demo
        }
        RawProviderKind::Openai | RawProviderKind::Anthropic => {
            let upstream = validate_upstream(&path, raw, env, errors);
            match (raw.kind, upstream) {
                (RawProviderKind::Openai, Some(up)) => ProviderKind::OpenAi(up),
                (_, Some(up)) => ProviderKind::Anthropic(up),
                (_, None) => return None,
            }
        }
    };
    let connect = raw.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS);
    let first_byte = raw
        .first_byte_timeout_ms
        .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT_MS);
    let total = raw.total_timeout_ms.unwrap_or(DEFAULT_TOTAL_TIMEOUT_MS);
    for (field, value) in [
        ("connect_timeout_ms", connect),
        ("first_byte_timeout_ms", first_byte),
        ("total_timeout_ms", total),
    ] {
        if value == 0 {
            errors.push(format!("{path}.{field}"), "must be greater than 0");
        }
    }
    if total < first_byte {
        errors.push(
            format!("{path}.total_timeout_ms"),
            format!("{total} ms is shorter than first_byte_timeout_ms ({first_byte} ms)"),
        );
    }
    let base = raw.retry_base_ms.unwrap_or(DEFAULT_RETRY_BASE_MS);
    let max = raw.retry_max_ms.unwrap_or(DEFAULT_RETRY_MAX_MS);
    if max < base {
        errors.push(
            format!("{path}.retry_max_ms"),
            format!("{max} ms is shorter than retry_base_ms ({base} ms)"),
        );
    }
    let max_sse_event_bytes = raw
        .max_sse_event_bytes
        .unwrap_or(DEFAULT_MAX_SSE_EVENT_BYTES);
    if !MAX_SSE_EVENT_BYTES_RANGE.contains(&max_sse_event_bytes) {
        errors.push(
            format!("{path}.max_sse_event_bytes"),
            format!(
                "{max_sse_event_bytes} is outside {}..={} bytes",
                MAX_SSE_EVENT_BYTES_RANGE.start(),
                MAX_SSE_EVENT_BYTES_RANGE.end()
            ),
        );
    }
    if errors.list.len() > before {
        return None;
    }
    Some(ProviderConfig {
        name: name.into(),
        kind,
        timeouts: Timeouts {
            connect: Duration::from_millis(connect),
            first_byte: Duration::from_millis(first_byte),
            total: Duration::from_millis(total),
        },
        retry: RetryPolicy {
            max_retries: raw.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            base_delay: Duration::from_millis(base),
            max_delay: Duration::from_millis(max),
            retry_on_dropped_after_send: raw.retry_on_dropped_after_send.unwrap_or(true),
        },
        // In range, so it fits a usize.
        max_sse_event_bytes: max_sse_event_bytes as usize,
    })
}

fn validate_upstream(
    path: &str,
    raw: &RawProvider,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<HttpUpstream> {
    let Some(base_url) = raw.base_url.as_deref() else {
        errors.push(
            format!("{path}.base_url"),
            "is required for this kind (e.g. https://api.openai.com/v1 or https://api.anthropic.com)",
        );
        return None;
    };
    let parsed = parse_base_url(base_url);
    if let Err(message) = &parsed {
        errors.push(format!("{path}.base_url"), message.clone());
    }
    let credential = read_credential(path, raw, env, errors);
    let query = encode_query(&raw.query);
    let (scheme, authority, path_prefix) = parsed.ok()?;
    Some(HttpUpstream {
        scheme,
        authority,
        path_prefix,
        query,
        credential: credential?,
    })
}

fn parse_base_url(text: &str) -> Result<(Scheme, http::uri::Authority, String), String> {
    let uri: Uri = text.parse().map_err(|_| format!("invalid URL `{text}`"))?;
    let scheme = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
        _ => {
            return Err(format!(
                "invalid URL `{text}`: must start with http:// or https://"
            ));
        }
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("invalid URL `{text}`: no host"))?;
    if uri.query().is_some() {
        return Err(format!(
            "invalid URL `{text}`: put query parameters under `query` instead"
        ));
    }
    let path_prefix = uri.path().trim_end_matches('/').to_owned();
    Ok((scheme, authority, path_prefix))
}

/// `Some(None)`: no key configured (a local vLLM, say). `None`: an error was recorded.
fn read_credential(
    path: &str,
    raw: &RawProvider,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<Option<Credential>> {
    let Some(secret) = read_secret(
        path,
        ("api_key_env", raw.api_key_env.as_deref()),
        ("api_key_file", raw.api_key_file.as_deref()),
        env,
        errors,
    )?
    else {
        return Some(None);
    };
    let (default_header, prefix) = match raw.kind {
        RawProviderKind::Anthropic => ("x-api-key", ""),
        _ => ("authorization", "Bearer "),
    };
    let header_text = raw.api_key_header.as_deref().unwrap_or(default_header);
    let Ok(header) = HeaderName::try_from(header_text.to_ascii_lowercase()) else {
        errors.push(
            format!("{path}.api_key_header"),
            format!("`{header_text}` is not a valid header name"),
        );
        return None;
    };
    // A custom header (Azure's `api-key`) carries the bare key.
    let prefix = if raw.api_key_header.is_some() && header != http::header::AUTHORIZATION {
        ""
    } else {
        prefix
    };
    match HeaderValue::try_from(format!("{prefix}{secret}")) {
        Ok(mut value) => {
            value.set_sensitive(true);
            Some(Some(Credential { header, value }))
        }
        Err(_) => {
            // Never echo the secret itself.
            errors.push(
                format!("{path}.api_key_env"),
                "the provider key contains characters that cannot be sent in a header",
            );
            None
        }
    }
}

/// A secret named by an environment variable or a file, each given as
/// (field name, value). `Some(None)`: none configured; `None`: an error was recorded.
pub(super) fn read_secret(
    path: &str,
    (env_field, env_var): (&str, Option<&str>),
    (file_field, file): (&str, Option<&str>),
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<Option<String>> {
    let (field, result) = match (env_var, file) {
        (Some(_), Some(_)) => {
            errors.push(
                format!("{path}.{file_field}"),
                format!("set either {env_field} or {file_field}, not both"),
            );
            return None;
        }
        (Some(var), None) => (
            env_field,
            (env.read_env)(var)
                .ok_or_else(|| format!("environment variable {var} is not set or empty")),
        ),
        (None, Some(file)) => {
            let file_path = env.base_dir.join(file);
            (
                file_field,
                std::fs::read_to_string(&file_path)
                    .map_err(|err| format!("cannot read {}: {err}", file_path.display())),
            )
        }
        (None, None) => return Some(None),
    };
    match result.map(|value| value.trim().to_owned()) {
        Ok(value) if !value.is_empty() => Some(Some(value)),
        Ok(_) => {
            errors.push(
                format!("{path}.{field}"),
                format!("the {field} secret is empty"),
            );
            None
        }
        Err(message) => {
            errors.push(format!("{path}.{field}"), message);
            None
        }
    }
}

fn encode_query(query: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, value) in query {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode_into(key, &mut out);
        out.push('=');
        percent_encode_into(value, &mut out);
    }
    out
}

fn percent_encode_into(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

fn validate_routes(
    raw: &[RawRoute],
    raw_providers: &BTreeMap<String, RawProvider>,
    provider_ids: &HashMap<&str, ProviderId>,
    errors: &mut Errors,
) -> Vec<RouteConfig> {
    let mut routes = Vec::with_capacity(raw.len());
    let mut exact_seen: HashMap<&str, usize> = HashMap::new();
    for (index, route) in raw.iter().enumerate() {
        let path = format!("routes[{index}]");
        if route.models.is_empty() {
            errors.push(format!("{path}.models"), "must name at least one model");
        }
        let mut patterns = Vec::with_capacity(route.models.len());
        for (m, model) in route.models.iter().enumerate() {
            if model.trim().is_empty() {
                errors.push(format!("{path}.models[{m}]"), "must not be empty");
                continue;
            }
            let pattern = ModelPattern::parse(model);
            if let ModelPattern::Exact(name) = &pattern
                && let Some(first) = exact_seen.insert(model.as_str(), index)
            {
                errors.push(
                    format!("{path}.models[{m}]"),
                    format!("`{name}` is already routed by routes[{first}]"),
                );
            }
            patterns.push(pattern);
        }
        if route.providers.is_empty() {
            errors.push(
                format!("{path}.providers"),
                "must name at least one provider",
            );
        }
        let mut providers = Vec::with_capacity(route.providers.len());
        for (p, name) in route.providers.iter().enumerate() {
            match provider_ids.get(name.as_str()) {
                Some(id) => providers.push(*id),
                // Invalid providers already have their own error.
                None if raw_providers.contains_key(name) => {}
                None => {
                    let known: Vec<&str> = raw_providers.keys().map(String::as_str).collect();
                    errors.push(
                        format!("{path}.providers[{p}]"),
                        format!(
                            "unknown provider `{name}` (declared: {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
        }
        if route
            .upstream_model
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            errors.push(format!("{path}.upstream_model"), "must not be empty");
        }
        routes.push(RouteConfig {
            patterns,
            upstream_model: route.upstream_model.as_deref().map(Arc::from),
            providers,
        });
    }
    routes
}
