//! Traces through the real gateway into a real OTLP/HTTP receiver: a request's
//! server span and its client spans arrive with the GenAI attributes, retries
//! and fallbacks show one client span per attempt, a caller's `traceparent`
//! continues into the provider's request, the audit record carries the trace
//! id (refusals too), a shadow call's span links to its served request, and
//! buffered spans are flushed at shutdown.

use crate::support;
use crate::support::otlp;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otlp::{Collector, Received};
use promptgate::simulator::{Fault, SimConfig, Simulator};
use serde_json::Value;
use support::metrics::Metrics;
use support::{CLIENT_KEY, TestGateway, client, post, send, standard_config, wait_for_audit};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Trace me"}]}"#;
// OTLP span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;

/// The standard config with a local audit log, a fallback route (a dead
/// provider first) and traces sent to `collector` every `interval_ms`.
fn config(sim: &Simulator, collector: &Collector, interval_ms: u64) -> String {
    format!(
        r#"{standard}
[[routes]]
models = ["fallback-model"]
providers = ["dead", "sim_openai"]

[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100

[telemetry]
otlp_endpoint = "{endpoint}"
export_interval_ms = {interval_ms}
"#,
        standard = standard_config(sim),
        endpoint = collector.endpoint(),
    )
}

fn audit_dir(gw: &TestGateway) -> std::path::PathBuf {
    gw.dir.path().join("audit")
}

fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.name() == name).collect()
}

fn only<'a>(spans: &'a [Received], name: &str) -> &'a Received {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one `{name}` span expected in {spans:#?}");
    found[0]
}

async fn record_of(gw: &TestGateway, request_id: &str) -> Value {
    let records = wait_for_audit(&audit_dir(gw), |records| {
        records.iter().any(|r| r["request_id"] == request_id)
    })
    .await;
    records
        .into_iter()
        .find(|r| r["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no audit record for {request_id}"))
}

#[tokio::test]
async fn a_request_exports_its_server_and_client_spans_with_genai_attributes() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = Collector::start().await;
    let gw = TestGateway::start(&config(&sim, &collector, 50)).await;

    let reply = post(&client(), &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let version = reply.headers["x-promptgate-config-version"]
        .to_str()
        .unwrap()
        .to_owned();

    // Exported on the batch interval, while the gateway keeps running.
    let spans = collector.wait_for(|spans| spans.len() >= 2).await;
    let server = only(&spans, "POST /v1/chat/completions");
    let attempt = only(&spans, "chat gpt-4o-mini");
    assert_eq!(server.service.as_deref(), Some("promptgate"));
    assert_eq!(server.span.kind, SERVER);
    assert!(server.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(server.str("gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(
        server.str("gen_ai.request.model").as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(server.str("gen_ai.system").as_deref(), Some("openai"));
    assert_eq!(
        server.str("http.route").as_deref(),
        Some("/v1/chat/completions")
    );
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(
        server.str("promptgate.client.id").as_deref(),
        Some("test-app")
    );
    assert_eq!(server.str("promptgate.config.version"), Some(version));
    assert_eq!(
        server.str("promptgate.request.id"),
        Some(request_id.clone())
    );
    assert_eq!(server.str("promptgate.role").as_deref(), Some("served"));
    assert_eq!(
        server.str("promptgate.outcome").as_deref(),
        Some("completed")
    );
    assert_eq!(server.int("promptgate.attempts"), Some(1));
    assert!(!server.is_error());

    assert_eq!(attempt.span.kind, CLIENT);
    assert_eq!(attempt.trace_id(), server.trace_id());
    assert_eq!(attempt.parent_span_id(), server.span_id());
    assert_eq!(attempt.str("gen_ai.system").as_deref(), Some("openai"));
    assert_eq!(
        attempt.str("gen_ai.request.model").as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(
        attempt.str("promptgate.provider").as_deref(),
        Some("sim_openai")
    );
    assert_eq!(attempt.int("promptgate.attempt"), Some(1));
    assert_eq!(attempt.int("http.response.status_code"), Some(200));

    // Usage is known when the body ends, and recorded on both spans then.
    let answer = reply.json();
    let input = answer["usage"]["prompt_tokens"].as_i64().unwrap();
    let output = answer["usage"]["completion_tokens"].as_i64().unwrap();
    for span in [server, attempt] {
        assert_eq!(
            span.int("gen_ai.usage.input_tokens"),
            Some(input),
            "{span:#?}"
        );
        assert_eq!(
            span.int("gen_ai.usage.output_tokens"),
            Some(output),
            "{span:#?}"
        );
        // The model the answer names, as the provider wrote it.
        assert_eq!(
            span.str("gen_ai.response.model").as_deref(),
            answer["model"].as_str(),
            "{span:#?}"
        );
    }

    // The audit record names the trace.
    let record = record_of(&gw, &request_id).await;
    assert_eq!(record["trace_id"], server.trace_id().as_str());
}

#[tokio::test]
async fn the_server_span_ends_with_the_stream_not_with_the_head() {
    const CHUNK_DELAY: Duration = Duration::from_millis(40);
    let sim = Simulator::start(SimConfig {
        chunk_delay: CHUNK_DELAY,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let collector = Collector::start().await;
    let gw = TestGateway::start(&config(&sim, &collector, 50)).await;

    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Stream a few words to me please"}]}"#;
    let reply = post(&client(), &gw.url("/v1/chat/completions"), body).await;
    assert_eq!(reply.status, 200);
    // The simulator sends one event per frame and waits CHUNK_DELAY between
    // two frames, all after the server span started and before the stream
    // ended: a lower bound of the stream's length that no scheduling delay
    // can shift (the client's arrival times can: a late read of the last
    // chunk once made them longer than the span). The head comes at once.
    let events = reply.text().matches("data: ").count();
    assert!(events >= 3, "{}", reply.text());
    let streamed = CHUNK_DELAY * (events as u32 - 1);

    let spans = collector.wait_for(|spans| spans.len() >= 2).await;
    let server = only(&spans, "POST /v1/chat/completions");
    let lasted =
        Duration::from_nanos(server.span.end_time_unix_nano - server.span.start_time_unix_nano);
    assert!(
        lasted >= streamed,
        "the server span ({lasted:?}) must cover the whole stream ({events} events {CHUNK_DELAY:?} apart)"
    );
    assert!(
        server.int("gen_ai.usage.output_tokens").is_some(),
        "{server:#?}"
    );
}

#[tokio::test]
async fn retries_and_fallbacks_show_one_client_span_per_attempt() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = Collector::start().await;
    let gw = TestGateway::start(&config(&sim, &collector, 50)).await;
    let client = client();

    // A 503, then success from the same provider.
    sim.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
    });
    let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let spans = collector.wait_for(|spans| spans.len() >= 3).await;
    let server = only(&spans, "POST /v1/chat/completions");
    let mut attempts = named(&spans, "chat gpt-4o-mini");
    attempts.sort_by_key(|s| s.int("promptgate.attempt"));
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    for attempt in &attempts {
        assert_eq!(attempt.parent_span_id(), server.span_id());
        assert_eq!(
            attempt.str("promptgate.provider").as_deref(),
            Some("sim_openai")
        );
    }
    assert_eq!(attempts[0].int("promptgate.attempt"), Some(1));
    assert_eq!(attempts[0].int("http.response.status_code"), Some(503));
    assert_eq!(
        attempts[0].str("error.type").as_deref(),
        Some("provider_error")
    );
    assert!(attempts[0].is_error());
    assert_eq!(attempts[1].int("promptgate.attempt"), Some(2));
    assert_eq!(attempts[1].int("http.response.status_code"), Some(200));
    assert!(!attempts[1].is_error());
    assert_eq!(server.int("promptgate.attempts"), Some(2));

    // An unreachable provider, then the next one on the route.
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"fallback-model","messages":[{"role":"user","content":"Fall back"}]}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let spans = collector
        .wait_for(|spans| named(spans, "chat fallback-model").len() >= 2)
        .await;
    let mut attempts = named(&spans, "chat fallback-model");
    attempts.sort_by_key(|s| s.int("promptgate.attempt"));
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert_eq!(attempts[0].trace_id(), attempts[1].trace_id());
    assert_eq!(
        attempts[0].str("promptgate.provider").as_deref(),
        Some("dead")
    );
    assert_eq!(
        attempts[0].str("error.type").as_deref(),
        Some("unreachable")
    );
    assert!(attempts[0].is_error());
    assert_eq!(
        attempts[1].str("promptgate.provider").as_deref(),
        Some("sim_openai")
    );
    assert!(!attempts[1].is_error());
}

#[tokio::test]
async fn a_callers_traceparent_continues_through_the_gateway_to_the_provider() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = Collector::start().await;
    let gw = TestGateway::start(&config(&sim, &collector, 50)).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let reply = send(
        &client(),
        http::Method::POST,
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("traceparent", &format!("00-{trace_id}-{caller_span}-01")),
            ("tracestate", "vendor=abc"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();

    let spans = collector.wait_for(|spans| spans.len() >= 2).await;
    let server = only(&spans, "POST /v1/chat/completions");
    let attempt = only(&spans, "chat gpt-4o-mini");
    assert_eq!(server.trace_id(), trace_id);
    assert_eq!(server.parent_span_id(), caller_span);
    assert_eq!(attempt.trace_id(), trace_id);

    // The provider's parent is the gateway's client span, not the caller's span.
    let received = sim.received().last().unwrap().clone();
    assert_eq!(
        received.header("traceparent"),
        Some(format!("00-{trace_id}-{}-01", attempt.span_id()).as_str())
    );
    assert_eq!(received.header("tracestate"), Some("vendor=abc"));

    let record = record_of(&gw, &request_id).await;
    assert_eq!(record["trace_id"], trace_id);
}

#[tokio::test]
async fn a_refused_request_has_a_span_and_its_trace_id_in_the_audit_record() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = Collector::start().await;
    let gw = TestGateway::start(&config(&sim, &collector, 50)).await;

    let reply = post(
        &client(),
        &gw.url("/v1/chat/completions"),
        r#"{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, 404);
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();

    let spans = collector.wait_for(|spans| !spans.is_empty()).await;
    let server = only(&spans, "POST /v1/chat/completions");
    assert_eq!(server.int("http.response.status_code"), Some(404));
    assert_eq!(server.str("error.type").as_deref(), Some("not_found"));
    // The caller's mistake, not the server's failure.
    assert!(!server.is_error());
    assert_eq!(spans.len(), 1, "no provider was called: {spans:#?}");

    let record = record_of(&gw, &request_id).await;
    assert_eq!(record["outcome"], "refused");
    assert_eq!(record["trace_id"], server.trace_id().as_str());
}

#[tokio::test]
async fn a_shadow_call_has_its_own_span_linked_to_the_served_request() {
    let served = Simulator::start(SimConfig::default()).await.unwrap();
    let shadow = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = Collector::start().await;
    let gw = TestGateway::start(&format!(
        r#"
[auth]
open = true

[providers.served]
kind = "openai"
base_url = "{served}"
max_retries = 0

[providers.shadow]
kind = "openai"
base_url = "{shadow}"
max_retries = 0

[[routes]]
models = ["*"]
providers = ["served"]

[experiments.summarize]
unit_key = {{ header = "x-user-id" }}

[[experiments.summarize.variants]]
name = "control"
weight = 1
model = "model-control"
providers = ["served"]

[[experiments.summarize.variants]]
name = "candidate"
weight = 0
model = "model-candidate"
providers = ["shadow"]

[experiments.summarize.shadow]
variants = ["candidate"]
sample_percent = 100

[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100

[telemetry]
otlp_endpoint = "{endpoint}"
export_interval_ms = 50
"#,
        served = served.openai_base_url(),
        shadow = shadow.openai_base_url(),
        endpoint = collector.endpoint(),
    ))
    .await;

    let reply = send(
        &client(),
        http::Method::POST,
        &gw.url("/v1/chat/completions"),
        &[("content-type", "application/json"), ("x-user-id", "u-1")],
        r#"{"model":"summarize","messages":[{"role":"user","content":"Shadow me"}]}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let spans = collector.wait_for(|spans| spans.len() >= 4).await;
    let server = only(&spans, "POST /v1/chat/completions");
    let served_attempt = only(&spans, "chat model-control");
    let shadow_span = only(&spans, "shadow /v1/chat/completions");
    let shadow_attempt = only(&spans, "chat model-candidate");

    assert_eq!(
        server.str("promptgate.experiment").as_deref(),
        Some("summarize")
    );
    assert_eq!(
        server.str("promptgate.variant.assigned").as_deref(),
        Some("control")
    );
    assert_eq!(
        server.str("promptgate.variant.served").as_deref(),
        Some("control")
    );
    assert_eq!(
        server.str("promptgate.assignment.reason").as_deref(),
        Some("hash")
    );
    assert_eq!(served_attempt.parent_span_id(), server.span_id());

    // Its own trace, linked to the served request's span.
    assert_eq!(shadow_span.span.kind, INTERNAL);
    assert_ne!(shadow_span.trace_id(), server.trace_id());
    assert_eq!(
        shadow_span.str("promptgate.role").as_deref(),
        Some("shadow")
    );
    assert_eq!(
        shadow_span.str("promptgate.variant.served").as_deref(),
        Some("candidate")
    );
    let request_id = reply.headers["x-request-id"].to_str().unwrap();
    assert_eq!(
        shadow_span.str("promptgate.shadow_of").as_deref(),
        Some(request_id)
    );
    let links: Vec<(String, String)> = shadow_span
        .span
        .links
        .iter()
        .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
        .collect();
    assert_eq!(links, vec![(server.trace_id(), server.span_id())]);
    assert!(
        shadow_span.int("gen_ai.usage.output_tokens").is_some(),
        "{shadow_span:#?}"
    );

    assert_eq!(shadow_attempt.span.kind, CLIENT);
    assert_eq!(shadow_attempt.trace_id(), shadow_span.trace_id());
    assert_eq!(shadow_attempt.parent_span_id(), shadow_span.span_id());
    assert_eq!(
        shadow_attempt.str("promptgate.role").as_deref(),
        Some("shadow")
    );

    // The shadow's audit record carries its own trace id.
    let records = wait_for_audit(&audit_dir(&gw), |records| {
        records.iter().any(|r| r["role"] == "shadow")
    })
    .await;
    let shadow_record = records.iter().find(|r| r["role"] == "shadow").unwrap();
    assert_eq!(shadow_record["trace_id"], shadow_span.trace_id().as_str());
}

#[tokio::test]
async fn buffered_spans_are_flushed_at_shutdown() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = Collector::start().await;
    // Far longer than the test: only the shutdown flush can deliver them.
    let mut gw = TestGateway::start(&config(&sim, &collector, 600_000)).await;
    let client = client();
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
        assert_eq!(reply.status, 200);
        ids.insert(reply.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(collector.spans().is_empty(), "nothing before the interval");

    let started = SystemTime::now();
    gw.begin_shutdown().await.unwrap();
    let spans = collector.spans();
    let exported: HashSet<String> = spans
        .iter()
        .filter_map(|s| s.str("promptgate.request.id"))
        .collect();
    assert_eq!(exported, ids, "{spans:#?}");
    assert_eq!(named(&spans, "chat gpt-4o-mini").len(), 3);
    let ended = started.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    assert!(spans.iter().all(|s| s.span.end_time_unix_nano <= ended));
}

// ---------------------------------------------------------------------------
// Metrics (/metrics) and readiness (/readyz)
// ---------------------------------------------------------------------------

async fn scrape(gw: &TestGateway) -> String {
    let reply = send(
        &client(),
        http::Method::GET,
        &gw.admin_url("/metrics"),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, 200);
    reply.text()
}

#[tokio::test]
async fn metrics_count_requests_by_configured_labels_only() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = Collector::start().await;
    let text = format!(
        r#"{base}
[experiments.tone]
unit_key = {{ header = "x-user-id" }}
fallback_variant = "safe"

[[experiments.tone.variants]]
name = "bold"
weight = 1
model = "gpt-bold"
providers = ["dead"]

[[experiments.tone.variants]]
name = "safe"
weight = 0
model = "gpt-safe"
providers = ["sim_openai"]

[prices."gpt-4o-mini"]
input_per_million = 1000.0
output_per_million = 2000.0
"#,
        base = config(&sim, &collector, 50)
    );
    let gw = TestGateway::start(&text).await;
    let client = client();
    let chat = |model: &str| {
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Count me"}}]}}"#)
    };

    assert_eq!(
        post(&client, &gw.url("/v1/chat/completions"), CHAT)
            .await
            .status,
        200
    );
    sim.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
    });
    assert_eq!(
        post(&client, &gw.url("/v1/chat/completions"), CHAT)
            .await
            .status,
        200
    );
    // A caller's own string matching a pattern is counted under the pattern.
    let raw = "gpt-a-name-nobody-configured";
    assert_eq!(
        post(&client, &gw.url("/v1/chat/completions"), &chat(raw))
            .await
            .status,
        200
    );
    assert_eq!(
        post(
            &client,
            &gw.url("/v1/chat/completions"),
            &chat("fallback-model")
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post(
            &client,
            &gw.url("/v1/chat/completions"),
            &chat("no-such-model")
        )
        .await
        .status,
        404
    );
    let reply = send(
        &client,
        http::Method::POST,
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("x-user-id", "u-7"),
        ],
        chat("tone"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Requests are counted when their bodies end: all have.
    let text = scrape(&gw).await;
    assert!(
        !text.contains(raw),
        "a raw model string became a label:\n{text}"
    );
    assert!(
        !text.contains("otel_scope") && !text.contains("target_info"),
        "{text}"
    );
    let ok = [("endpoint", "chat_completions"), ("outcome", "ok")];
    let pattern = [ok[0], ok[1], ("model", "gpt-*"), ("provider", "sim_openai")];
    assert_eq!(
        Metrics::parse(&text).sum("promptgate_requests_total", &pattern),
        3.0,
        "{text}"
    );
    assert_eq!(
        Metrics::parse(&text).sum("promptgate_request_duration_seconds_count", &pattern),
        3.0
    );
    assert_eq!(
        Metrics::parse(&text).sum(
            "promptgate_requests_total",
            &[
                ("model", "fallback-model"),
                ("provider", "sim_openai"),
                ok[1]
            ]
        ),
        1.0
    );
    assert_eq!(
        Metrics::parse(&text).sum(
            "promptgate_requests_total",
            &[("outcome", "not_found"), ok[0]]
        ),
        1.0
    );
    assert_eq!(
        Metrics::parse(&text).sum(
            "promptgate_requests_total",
            &[
                ("experiment", "tone"),
                ("variant", "safe"),
                ("model", "gpt-safe"),
                ok[1]
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        Metrics::parse(&text).sum(
            "promptgate_variant_fallbacks_total",
            &[("experiment", "tone"), ("variant", "bold")]
        ),
        1.0
    );
    assert_eq!(
        Metrics::parse(&text).sum(
            "promptgate_provider_errors_total",
            &[
                ("provider", "sim_openai"),
                ("class", "provider_error"),
                ("role", "served")
            ]
        ),
        1.0
    );
    assert_eq!(
        Metrics::parse(&text).sum(
            "promptgate_provider_errors_total",
            &[("provider", "dead"), ("class", "unreachable")]
        ),
        2.0
    );
    assert_eq!(
        Metrics::parse(&text).sum(
            "promptgate_provider_retries_total",
            &[("provider", "sim_openai")]
        ),
        1.0
    );
    assert_eq!(
        Metrics::parse(&text).sum(
            "promptgate_provider_fallbacks_total",
            &[("provider", "dead")]
        ),
        1.0
    );
    assert!(
        Metrics::parse(&text).sum(
            "promptgate_request_ttfb_seconds_count",
            &[("model", "gpt-*"), ("provider", "sim_openai")]
        ) >= 3.0
    );
    assert!(
        Metrics::parse(&text).sum(
            "promptgate_tokens_total",
            &[("direction", "input"), ("model", "gpt-*")]
        ) > 0.0
    );
    assert!(Metrics::parse(&text).sum("promptgate_tokens_total", &[("direction", "output")]) > 0.0);
    // Priced by the model sent upstream: only the two gpt-4o-mini calls.
    assert!(Metrics::parse(&text).sum("promptgate_cost_usd_total", &[("model", "gpt-*")]) > 0.0);
    assert_eq!(
        Metrics::parse(&text).sum("promptgate_cost_usd_total", &[("model", "fallback-model")]),
        0.0
    );
    // The counters kept elsewhere keep their names.
    assert_eq!(
        Metrics::parse(&text).sum("promptgate_config_reloads_total", &[("outcome", "ok")]),
        0.0
    );
    assert!(
        text.contains("promptgate_audit_records_written_total "),
        "{text}"
    );
    assert!(text.contains("promptgate_audit_spool_bytes "), "{text}");
    // Shadow series exist per experiment with a shadow; this config has none.
    assert!(
        !text.contains("promptgate_shadow_calls_skipped_total{"),
        "{text}"
    );

    // After a reload, only the version in force is reported.
    let before = Metrics::parse(&text)
        .samples
        .into_iter()
        .find(|sample| sample.name == "promptgate_config_info")
        .and_then(|sample| sample.labels.get("version").cloned())
        .expect("config version");
    gw.write_config(&format!("{}\n# changed\n", config(&sim, &collector, 50)));
    let reloaded = send(
        &client,
        http::Method::POST,
        &gw.admin_url("/admin/reload"),
        &[],
        "",
    )
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    let text = scrape(&gw).await;
    assert_eq!(
        Metrics::parse(&text).sum("promptgate_config_reloads_total", &[("outcome", "ok")]),
        1.0
    );
    let versions: Vec<String> = Metrics::parse(&text)
        .samples
        .into_iter()
        .filter(|sample| sample.name == "promptgate_config_info")
        .filter_map(|sample| sample.labels.get("version").cloned())
        .collect();
    assert_eq!(versions.len(), 1, "{text}");
    assert_ne!(versions[0], before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_audit_uploads_keep_failing_and_recovers() {
    use support::process::{audit_config, spawn};
    use support::s3::{S3Server, SECRET_KEY};

    let mut s3 = S3Server::start();
    s3.create_bucket("audit").await;
    let gw = spawn(
        &audit_config(
            &s3.endpoint,
            "audit",
            "\n[admin]\nreadiness_audit_failure_ms = 1000\n",
        ),
        SECRET_KEY,
    )
    .unwrap();
    let client = client();
    let ready = || async {
        let reply = send(
            &client,
            http::Method::GET,
            &gw.admin_url("/readyz"),
            &[],
            "",
        )
        .await;
        (reply.status, reply.json())
    };
    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");

    s3.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        let reply = send(
            &client,
            http::Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", "u-1")],
            r#"{"model":"greeting","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "requests are still served: {}",
            reply.text()
        );
        let (status, body) = ready().await;
        if status == 503 {
            seen = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = seen.expect("/readyz never said not ready while S3 was down");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"].as_str().unwrap().contains("audit uploads"),
        "{body}"
    );

    s3.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut recovered = false;
    while std::time::Instant::now() < deadline {
        if ready().await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "/readyz stayed 503 after S3 came back");
    gw.stop();
}

#[tokio::test]
async fn readyz_is_ready_with_a_healthy_gateway() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = Collector::start().await;
    let gw = TestGateway::start(&config(&sim, &collector, 50)).await;
    let reply = send(
        &client(),
        http::Method::GET,
        &gw.admin_url("/readyz"),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "ready");
}
