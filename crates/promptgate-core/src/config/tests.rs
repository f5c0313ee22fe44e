use std::collections::HashMap;
use std::path::Path;

use super::validate::Environment;
use super::*;

fn parse_with_env(
    source: &str,
    env: &[(&str, &str)],
    listen: Option<&str>,
) -> Result<Config, Vec<Problem>> {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let read_env = move |name: &str| vars.get(name).cloned();
    parse(
        source,
        &Environment {
            base_dir: Path::new("/nonexistent"),
            listen_override: listen.map(|l| l.parse().unwrap()),
            admin_listen_override: None,
            read_env: &read_env,
            read_prompt: &|name| super::read_local_prompt(Path::new("/nonexistent"), name),
        },
    )
}

fn problems(source: &str) -> Vec<(Option<usize>, String, String)> {
    parse_with_env(source, &[], None)
        .expect_err("config should be invalid")
        .into_iter()
        .map(|p| (p.line, p.path, p.message))
        .collect()
}

const OPEN_DEMO: &str = "[auth]\nopen = true\n[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n";

#[test]
fn the_shipped_configs_are_valid() {
    // Read from its place: its demo unit key file lies next to it.
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/quickstart.toml");
    let config = load_file(&quickstart, &LoadOptions::default()).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert!(matches!(config.auth, AuthConfig::Open));
    let secret = config.audit.and_then(|audit| audit.unit_key_secret);
    assert!(secret.is_some_and(|key| key.starts_with(b"promptgate-quickstart-demo-only")));

    let example = include_str!("../../../../config/example.toml");
    let config = parse_with_env(
        example,
        &[("OPENAI_API_KEY", "sk-1"), ("ANTHROPIC_API_KEY", "sk-2")],
        None,
    )
    .unwrap();
    assert_eq!(config.providers.len(), 4);
    assert_eq!(config.routes.len(), 4);
    let AuthConfig::Keys { keys, .. } = &config.auth else {
        panic!("example declares keys")
    };
    assert_eq!(&*keys[0].id, "checkout-service");
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = parse_with_env(OPEN_DEMO, &[], None).unwrap();
    assert_eq!(config.server.max_body_bytes, 8 * 1024 * 1024);
    assert_eq!(config.server.shutdown_grace.as_secs(), 30);
    assert_eq!(config.server.max_concurrent_requests, 2048);
    assert_eq!(config.version.len(), 12);
}

#[test]
fn a_concurrency_limit_that_admits_nothing_or_is_no_limit_is_refused_with_its_line() {
    for value in ["0", "1000001"] {
        let found = problems(&format!(
            "[server]\nmax_concurrent_requests = {value}\n{OPEN_DEMO}"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        let (line, path, message) = &found[0];
        assert_eq!(*line, Some(2));
        assert_eq!(path, "server.max_concurrent_requests");
        assert!(message.contains("between 1 and 1000000"), "{message}");
    }
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    let found =
        problems("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n[auth]\nopen = true\n");
    assert_eq!(found.len(), 1);
    let (line, path, message) = &found[0];
    assert_eq!(*line, Some(3));
    assert!(message.contains("unknown field `listen_port`"), "{message}");
    assert_eq!(path, "server.listen_port");
}

#[test]
fn wrong_types_and_bad_kinds_name_their_path() {
    let found = problems("[providers.x]\nkind = \"gemini\"\n");
    assert_eq!(found[0].0, Some(2));
    assert!(found[0].2.contains("unknown value `gemini`"), "{:?}", found);
    assert_eq!(found[0].1, "providers.x.kind");

    let found = problems("[server]\nmax_body_bytes = \"big\"\n");
    assert_eq!(found[0].0, Some(2));
    assert_eq!(found[0].1, "server.max_body_bytes");
}

#[test]
fn syntax_errors_have_a_line() {
    let found = problems("[server]\nlisten = \n");
    assert_eq!(found[0].0, Some(2));
}

#[test]
fn every_validation_error_is_listed_with_line_and_path() {
    let source = r#"
[server]
listen = "localhost"

[auth]
[[auth.clients]]
id = "a"
key_sha256 = "abc"

[[auth.clients]]
id = "a"
key_sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"

[providers.openai]
kind = "openai"
base_url = "ftp://example.com"
api_key_env = "MISSING_KEY"

[providers.anthropic]
kind = "anthropic"

[providers.demo]
kind = "demo"
base_url = "http://x"

[[routes]]
models = []
providers = ["nope"]
"#;
    let found = problems(source);
    let expect = [
        (3, "server.listen", "not an IP address and port"),
        (
            11,
            "auth.clients[1].id",
            "already the id of auth.clients[0]",
        ),
        (8, "auth.clients[0].key_sha256", "64 hexadecimal characters"),
        (
            16,
            "providers.openai.base_url",
            "invalid URL `ftp://example.com`",
        ),
        (
            17,
            "providers.openai.api_key_env",
            "environment variable MISSING_KEY is not set",
        ),
        (19, "providers.anthropic.base_url", "is required"),
        (24, "providers.demo.base_url", "takes no such setting"),
        (27, "routes[0].models", "at least one model"),
        (28, "routes[0].providers[0]", "unknown provider `nope`"),
    ];
    for (line, path, message) in expect {
        assert!(
            found
                .iter()
                .any(|(l, p, m)| *l == Some(line) && p == path && m.contains(message)),
            "missing {line} {path} {message} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn open_mode_only_on_loopback() {
    assert!(parse_with_env(OPEN_DEMO, &[], Some("127.0.0.1:0")).is_ok());
    assert!(parse_with_env(OPEN_DEMO, &[], Some("[::1]:0")).is_ok());
    let found = parse_with_env(OPEN_DEMO, &[], Some("0.0.0.0:8080")).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "auth.open");
    assert!(
        found[0]
            .message
            .contains("only allowed on a loopback address"),
        "{}",
        found[0].message
    );
    assert_eq!(found[0].line, Some(2));
}

#[test]
fn no_keys_and_not_open_is_an_error() {
    let found = problems("[providers.demo]\nkind = \"demo\"\n");
    assert_eq!(found[0].1, "auth.clients");
}

#[test]
fn duplicate_exact_model_names_across_routes() {
    let source =
        format!("{OPEN_DEMO}[[routes]]\nmodels = [\"a\", \"*\"]\nproviders = [\"demo\"]\n");
    let found = problems(&format!(
        "{source}[[routes]]\nmodels = [\"a\"]\nproviders = [\"demo\"]\n"
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "routes[2].models[0]");
    assert!(found[0].2.contains("already routed by routes[1]"));
}

#[test]
fn provider_keys_become_sensitive_headers_and_never_print() {
    let source = "[auth]\nopen = true\n[providers.o]\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1/\"\napi_key_env = \"K\"\n[providers.a]\nkind = \"anthropic\"\nbase_url = \"https://api.anthropic.com\"\napi_key_env = \"K\"\n[providers.az]\nkind = \"openai\"\nbase_url = \"https://r.openai.azure.com/openai/deployments/d\"\napi_key_env = \"K\"\napi_key_header = \"api-key\"\nquery = { \"api-version\" = \"2024-10-21\" }\n";
    let config = parse_with_env(source, &[("K", "sk-very-secret")], None).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("sk-very-secret"), "{debug}");
    let upstream = |name: &str| match &config
        .providers
        .iter()
        .find(|p| &*p.name == name)
        .unwrap()
        .kind
    {
        ProviderKind::OpenAi(u) | ProviderKind::Anthropic(u) => u,
        ProviderKind::Demo => unreachable!(),
    };
    let o = upstream("o");
    assert_eq!(o.path_prefix, "/v1");
    let credential = o.credential.as_ref().unwrap();
    assert_eq!(credential.header, "authorization");
    assert_eq!(credential.value, "Bearer sk-very-secret");
    assert!(credential.value.is_sensitive());
    assert_eq!(
        upstream("a").credential.as_ref().unwrap().header,
        "x-api-key"
    );
    assert_eq!(
        upstream("a").credential.as_ref().unwrap().value,
        "sk-very-secret"
    );
    let az = upstream("az");
    assert_eq!(az.credential.as_ref().unwrap().header, "api-key");
    assert_eq!(az.credential.as_ref().unwrap().value, "sk-very-secret");
    assert_eq!(az.query, "api-version=2024-10-21");
    assert_eq!(az.path_prefix, "/openai/deployments/d");
}

#[test]
fn timeouts_must_be_coherent() {
    let found = problems(
        "[auth]\nopen = true\n[providers.o]\nkind = \"openai\"\nbase_url = \"http://h/v1\"\nfirst_byte_timeout_ms = 5000\ntotal_timeout_ms = 1000\nconnect_timeout_ms = 0\n",
    );
    assert!(
        found
            .iter()
            .any(|(l, p, _)| p == "providers.o.total_timeout_ms" && *l == Some(7)),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(_, p, _)| p == "providers.o.connect_timeout_ms"),
        "{found:?}"
    );
}

#[test]
fn rendered_error_lists_file_line_and_path() {
    let error = ConfigError::Invalid {
        file: "config/x.toml".into(),
        problems: vec![
            Problem {
                line: Some(4),
                path: "providers.openai.base_url".into(),
                message: "invalid URL `x`".into(),
            },
            Problem {
                line: None,
                path: "auth.clients".into(),
                message: "no client keys declared".into(),
            },
        ],
    };
    assert_eq!(
        error.to_string(),
        "config/x.toml:4: providers.openai.base_url: invalid URL `x`\nconfig/x.toml: auth.clients: no client keys declared"
    );
}

#[test]
fn feedback_metrics_are_declared_with_a_type() {
    let config = parse_with_env(
        &format!("{OPEN_DEMO}[feedback.metrics]\nthumbs_up = \"boolean\"\nrating = \"float\"\n"),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        config.feedback.metrics.get("thumbs_up"),
        Some(&crate::config::feedback::MetricKind::Boolean)
    );
    let found = problems(&format!(
        "{OPEN_DEMO}[feedback.metrics]\n\"thumbs up\" = \"boolean\"\nrating = \"integer\"\n"
    ));
    // Both at once, in file order: the bad name, then the bad type.
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].1, "feedback.metrics.thumbs up");
    let (line, path, message) = &found[1];
    assert_eq!(*line, Some(10));
    assert_eq!(path, "feedback.metrics.rating");
    assert!(message.contains("unknown value `integer`"), "{message}");
    let found = problems(&format!(
        "{OPEN_DEMO}[feedback.metrics]\n\"thumbs up\" = \"boolean\"\n"
    ));
    let (line, path, message) = &found[0];
    assert_eq!(*line, Some(9));
    assert_eq!(path, "feedback.metrics.thumbs up");
    assert!(message.contains("1–64 characters"), "{message}");
}

#[test]
fn telemetry_is_off_unless_an_endpoint_is_known() {
    let config = parse_with_env(OPEN_DEMO, &[], None).unwrap();
    assert!(config.telemetry.traces.is_none());

    let with_file = format!(
        "{OPEN_DEMO}[telemetry]\notlp_endpoint = \"http://collector:4318/\"\nsample_ratio = 0.25\nexport_interval_ms = 100\n"
    );
    let traces = parse_with_env(&with_file, &[], None)
        .unwrap()
        .telemetry
        .traces
        .expect("configured");
    assert_eq!(
        traces.endpoint.to_string(),
        "http://collector:4318/v1/traces"
    );
    assert_eq!(traces.sample_ratio, 0.25);
    assert_eq!(traces.export_interval.as_millis(), 100);

    // The standard variables: the general one gets the signal path, the
    // signal-specific one is taken as is, and the file wins over both.
    let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318")];
    let from_env = |env: &[(&str, &str)], source: &str| {
        parse_with_env(source, env, None)
            .unwrap()
            .telemetry
            .traces
            .map(|t| t.endpoint.to_string())
    };
    assert_eq!(
        from_env(&base, OPEN_DEMO).as_deref(),
        Some("https://otel.example:4318/v1/traces")
    );
    let specific = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:4318/custom",
        ),
    ];
    assert_eq!(
        from_env(&specific, OPEN_DEMO).as_deref(),
        Some("http://traces:4318/custom")
    );
    assert_eq!(
        from_env(&base, &with_file).as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    let disabled = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318"),
        ("OTEL_SDK_DISABLED", "true"),
    ];
    assert_eq!(from_env(&disabled, OPEN_DEMO), None);
}

#[test]
fn the_access_log_sample_ratio_defaults_to_zero_and_is_checked() {
    let config = parse_with_env(OPEN_DEMO, &[], None).unwrap();
    assert_eq!(config.telemetry.access_log_sample_ratio, 0.0);
    // Without traces too: the access log does not need an exporter.
    let sampled = parse_with_env(
        &format!("{OPEN_DEMO}[telemetry]\naccess_log_sample_ratio = 0.1\n"),
        &[],
        None,
    )
    .unwrap();
    assert!(sampled.telemetry.traces.is_none());
    assert_eq!(sampled.telemetry.access_log_sample_ratio, 0.1);
    for bad in ["1.5", "-0.1", "nan"] {
        let found = problems(&format!(
            "{OPEN_DEMO}[telemetry]\naccess_log_sample_ratio = {bad}\n"
        ));
        let (line, path, message) = &found[0];
        assert_eq!(path, "telemetry.access_log_sample_ratio", "{found:?}");
        assert!(line.is_some(), "{found:?}");
        assert!(message.contains("between 0 and 1"), "{message}");
    }
}

#[test]
fn telemetry_settings_are_checked() {
    let found = problems(&format!(
        "{OPEN_DEMO}[telemetry]\notlp_endpoint = \"collector:4318\"\nsample_ratio = 1.5\nexport_interval_ms = 0\n"
    ));
    let paths: Vec<&str> = found.iter().map(|(_, path, _)| path.as_str()).collect();
    assert!(paths.contains(&"telemetry.otlp_endpoint"), "{found:?}");
    assert!(paths.contains(&"telemetry.sample_ratio"), "{found:?}");
    assert!(paths.contains(&"telemetry.export_interval_ms"), "{found:?}");
    let env_problem = parse_with_env(
        OPEN_DEMO,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")],
        None,
    )
    .expect_err("invalid endpoint");
    assert!(
        env_problem[0]
            .message
            .contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{env_problem:?}"
    );
}

#[test]
fn client_key_digests_and_the_audit_bucket_may_come_from_the_environment() {
    let digest = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    let source = "[[auth.clients]]\nid = \"app\"\nkey_sha256_env = \"APP_KEY_SHA256\"\n[providers.demo]\nkind = \"demo\"\n[audit]\nsink = \"s3\"\ns3_bucket_env = \"AUDIT_BUCKET\"\n";
    let config = parse_with_env(
        source,
        &[("APP_KEY_SHA256", digest), ("AUDIT_BUCKET", "audit-prod")],
        None,
    )
    .unwrap();
    let AuthConfig::Keys { keys, .. } = &config.auth else {
        panic!("keys declared")
    };
    assert_eq!(hex::encode(keys[0].sha256), digest);
    assert!(matches!(
        config.audit.map(|a| a.store),
        Some(crate::config::audit::StoreConfig::S3 { bucket, .. }) if bucket == "audit-prod"
    ));

    let found: Vec<(String, String)> = parse_with_env(source, &[], None)
        .unwrap_err()
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect();
    assert_eq!(
        found,
        [
            (
                "auth.clients[0].key_sha256_env".to_owned(),
                "environment variable APP_KEY_SHA256 is not set or empty".to_owned()
            ),
            (
                "audit.s3_bucket_env".to_owned(),
                "environment variable AUDIT_BUCKET is not set or empty".to_owned()
            ),
        ]
    );
    let both = source.replace(
        "id = \"app\"\n",
        &format!("id = \"app\"\nkey_sha256 = \"{digest}\"\n"),
    );
    let found = parse_with_env(
        &both,
        &[("APP_KEY_SHA256", digest), ("AUDIT_BUCKET", "b")],
        None,
    )
    .unwrap_err();
    assert_eq!(found[0].path, "auth.clients[0].key_sha256");
    assert!(found[0].message.contains("set one of key_sha256"));
}

#[test]
fn stream_and_retry_limits_of_a_provider_are_checked() {
    let found = problems(
        "[auth]\nopen = true\n[providers.o]\nkind = \"openai\"\nbase_url = \"http://h/v1\"\nmax_sse_event_bytes = 100\n[providers.d]\nkind = \"demo\"\nretry_on_dropped_after_send = false\n",
    );
    assert!(
        found
            .iter()
            .any(|(l, p, m)| p == "providers.o.max_sse_event_bytes"
                && *l == Some(6)
                && m.contains("1024..=268435456")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(l, p, _)| p == "providers.d.retry_on_dropped_after_send" && *l == Some(9)),
        "{found:?}"
    );
    let config = parse_with_env(
        "[auth]\nopen = true\n[providers.o]\nkind = \"openai\"\nbase_url = \"http://h/v1\"\nretry_on_dropped_after_send = false\nmax_sse_event_bytes = 1024\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"o\"]\n",
        &[],
        None,
    )
    .unwrap();
    assert!(!config.providers[0].retry.retry_on_dropped_after_send);
    assert_eq!(config.providers[0].max_sse_event_bytes, 1024);
    let defaults = parse_with_env(OPEN_DEMO, &[], None).unwrap();
    assert!(defaults.providers[0].retry.retry_on_dropped_after_send);
    assert_eq!(defaults.providers[0].max_sse_event_bytes, 4 << 20);
}

#[test]
fn tag_keys_and_values_are_declared_and_checked() {
    let config = parse_with_env(
        &format!(
            "{OPEN_DEMO}[tags]\nmax_value_bytes = 16\n[tags.keys.doc_type]\n[tags.keys.channel]\nvalues = [\"email\", \"web\"]\n"
        ),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(config.tags.max_value_bytes, 16);
    assert!(config.tags.keys["doc_type"].values.is_none());
    assert_eq!(
        config.tags.keys["channel"].values.as_deref(),
        Some(&["email".to_owned(), "web".to_owned()][..])
    );
    let found = problems(&format!(
        "{OPEN_DEMO}[tags]\nmax_value_bytes = 0\n[tags.keys.\"doc type\"]\n[tags.keys.channel]\nvalues = [\"e mail\"]\n[tags.keys.empty]\nvalues = []\n[tags.keys.open]\nmetric_label = true\n"
    ));
    let paths: Vec<&str> = found.iter().map(|(_, path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "tags.max_value_bytes",
            "tags.keys.doc type",
            "tags.keys.channel.values[0]",
            "tags.keys.empty.values",
            "tags.keys.open.metric_label"
        ],
        "{found:?}"
    );
}

#[test]
fn tls_tables_and_certificate_names_are_checked_with_their_line() {
    let source = "[server.tls]\ncert_file = \"missing.crt\"\nrequire_client_cert = true\n\
[admin.tls]\ncert_file = \"a.crt\"\nkey_file = \"a.key\"\nclient_ca_file = \"ca.pem\"\n\
[[auth.clients]]\nid = \"a\"\ncertificate_names = [\"svc.example\"]\n\
[[auth.clients]]\nid = \"b\"\ncertificate_names = [\"svc.example\"]\n\
[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n";
    let found = problems(source);
    let has = |line: usize, path: &str, text: &str| {
        found
            .iter()
            .any(|(l, p, m)| *l == Some(line) && p == path && m.contains(text))
    };
    assert!(
        has(
            2,
            "server.tls.cert_file",
            "cannot read /nonexistent/missing.crt"
        ),
        "{found:#?}"
    );
    assert!(has(1, "server.tls.key_file", "is required"), "{found:#?}");
    assert!(
        has(3, "server.tls.require_client_cert", "needs client_ca_file"),
        "{found:#?}"
    );
    assert!(
        has(
            7,
            "admin.tls.client_ca_file",
            "only offered on the client listener"
        ),
        "{found:#?}"
    );
    assert!(
        has(
            10,
            "auth.clients[0].certificate_names",
            "set server.tls.client_ca_file"
        ),
        "{found:#?}"
    );
    assert!(
        has(
            13,
            "auth.clients[1].certificate_names",
            "already a certificate name of auth.clients[0]"
        ),
        "{found:#?}"
    );
    // A client with certificate names needs no key; one without either still does.
    assert!(
        !found.iter().any(|(_, p, _)| p == "auth.clients[0]"),
        "{found:#?}"
    );
}
