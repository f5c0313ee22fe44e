//! Per-client limits (`[limits.<client>]`) through real HTTP: a burst at and
//! over requests_per_minute, tokens and USD charged from the usage the
//! capture reports (JSON and streams, both dialects), the refusal as a 429
//! in the caller's dialect with `retry-after`, counted by client and limit
//! and recorded in the audit log naming the limit; reloads keep or change
//! the state; the official SDKs' retries honour `retry-after`
//! (`tests/sdk_limits/`).

use crate::support;

use http::{Method, StatusCode};
use promptgate::app::server::hash_key;
use promptgate::simulator::{SimConfig, Simulator};
use support::metrics::Metrics;
use support::{PROVIDER_KEY, Reply, TestClient, TestGateway, client, send, wait_for_audit};

const CHAT: &str =
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"count these words please"}]}"#;
const CHAT_STREAM_USAGE: &str = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"count these words please"}]}"#;
const CHAT_STREAM: &str = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"count these words please"}]}"#;
const MESSAGES: &str = r#"{"model":"claude-x","max_tokens":50,"messages":[{"role":"user","content":"count these words please"}]}"#;
const MESSAGES_STREAM: &str = r#"{"model":"claude-x","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"count these words please"}]}"#;

/// The standard config with one more client per id in `clients` (its key is
/// `key-<id>`), `limits` appended, prices of one USD per token for the
/// simulator's models, and a local audit log.
fn config(sim: &Simulator, clients: &[&str], limits: &str) -> String {
    let mut text = support::standard_config(sim);
    let declared: String = clients
        .iter()
        .map(|id| {
            format!(
                "[[auth.clients]]\nid = \"{id}\"\nkey_sha256 = \"{}\"\n",
                hash_key(&key(id))
            )
        })
        .collect();
    text = text.replace(
        "[providers.sim_openai]",
        &format!("{declared}\n[providers.sim_openai]"),
    );
    format!(
        r#"{text}
[prices.gpt-4o]
input_per_million = 1000000.0
output_per_million = 1000000.0
[prices.claude-x]
input_per_million = 1000000.0
output_per_million = 1000000.0

[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100

{limits}
"#
    )
}

fn key(client: &str) -> String {
    format!("key-{client}")
}

async fn start_sim() -> Simulator {
    Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn ask(http: &TestClient, gw: &TestGateway, client: &str, path: &str, body: &str) -> Reply {
    let auth = format!("Bearer {}", key(client));
    send(
        http,
        Method::POST,
        &gw.url(path),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("anthropic-version", "2023-06-01"),
        ],
        body.to_owned(),
    )
    .await
}

fn header(reply: &Reply, name: &str) -> u64 {
    reply.headers[name]
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_requests_per_minute_gets_429s_in_each_dialect_counted_and_recorded() {
    let sim = start_sim().await;
    let limits = "[limits.burst-openai]\nrequests_per_minute = 3\n[limits.burst-claude]\nrequests_per_minute = 3\n";
    let gw = TestGateway::start(&config(
        &sim,
        &["burst-openai", "burst-claude", "free"],
        limits,
    ))
    .await;
    let http = client();

    let mut refused = Vec::new();
    for (client, path, body) in [
        ("burst-openai", "/v1/chat/completions", CHAT),
        ("burst-claude", "/v1/messages", MESSAGES),
    ] {
        // At the limit: the whole burst is served.
        for n in 0..3 {
            let reply = ask(&http, &gw, client, path, body).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{client} request {n}: {}",
                reply.text()
            );
        }
        // Over it: a 429 that says when to come back (GCRA frees one
        // request every 20 s at 3 a minute).
        let reply = ask(&http, &gw, client, path, body).await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            reply.text()
        );
        let seconds = header(&reply, "retry-after");
        assert!((19..=20).contains(&seconds), "retry-after {seconds}");
        let millis = header(&reply, "retry-after-ms");
        assert!(
            millis <= seconds * 1000 && millis > (seconds - 1) * 1000,
            "{millis} ms"
        );
        // The connection stays usable (the body was read before the check).
        assert!(reply.headers.get("connection").is_none());
        refused.push((client, reply));
    }
    let openai = refused[0].1.json();
    assert_eq!(openai["error"]["code"], "rate_limit_exceeded", "{openai}");
    assert_eq!(openai["error"]["type"], "requests", "{openai}");
    let message = openai["error"]["message"].as_str().unwrap();
    assert!(message.contains("requests_per_minute"), "{message}");
    let anthropic = refused[1].1.json();
    assert_eq!(anthropic["type"], "error", "{anthropic}");
    assert_eq!(
        anthropic["error"]["type"], "rate_limit_error",
        "{anthropic}"
    );

    // A client without limits, and the provider, are untouched.
    for _ in 0..5 {
        let reply = ask(&http, &gw, "free", "/v1/chat/completions", CHAT).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let metrics = Metrics::scrape(&gw.admin_url("/metrics")).await;
    for client in ["burst-openai", "burst-claude"] {
        assert_eq!(
            metrics.value(
                "promptgate_limit_refusals_total",
                &[("client", client), ("limit", "requests_per_minute")]
            ),
            1.0,
            "{client}"
        );
    }
    assert_eq!(
        metrics.sum("promptgate_requests_total", &[("outcome", "rate_limited")]),
        2.0
    );
    assert_eq!(
        sim.received().len(),
        11,
        "refused requests never reach the provider"
    );

    let ids: Vec<String> = refused
        .iter()
        .map(|(_, r)| r.headers["x-request-id"].to_str().unwrap().to_owned())
        .collect();
    let records = wait_for_audit(&gw.dir.path().join("audit"), |records| {
        ids.iter()
            .all(|id| records.iter().any(|r| r["request_id"] == id.as_str()))
    })
    .await;
    for ((client, _), id) in refused.iter().zip(&ids) {
        let record = records
            .iter()
            .find(|r| r["request_id"] == id.as_str())
            .unwrap();
        assert_eq!(record["outcome"], "refused", "{record}");
        assert_eq!(record["error_class"], "rate_limited", "{record}");
        assert_eq!(record["status"], 429, "{record}");
        assert_eq!(record["client_id"], *client, "{record}");
        let message = record["error_message"].as_str().unwrap();
        assert!(message.contains("`requests_per_minute`"), "{record}");
    }
}

/// Tokens (input + output) the capture reported for the `n`th exchange.
async fn tokens_of(gw: &TestGateway, n: usize) -> u64 {
    let exchanges = gw.sink.wait_for(n + 1).await;
    let usage = &exchanges[n].captured.usage;
    usage.input_tokens.expect("input tokens reported")
        + usage.output_tokens.expect("output tokens reported")
}

/// `retry-after-ms` of a refusal issued at most a few seconds after a charge
/// that left `over` units past a limit freeing at `per_unit_ms`.
fn assert_waits_for(reply: &Reply, over: u64, per_unit_ms: u64) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text()
    );
    let expected = over * per_unit_ms;
    let millis = header(reply, "retry-after-ms");
    assert!(
        millis <= expected && millis + 5_000 > expected,
        "retry-after-ms {millis}, expected just under {expected}: {}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_usd_are_charged_from_the_reported_usage_of_json_and_streams() {
    let sim = start_sim().await;
    let cases = [
        ("tok-chat", "/v1/chat/completions", CHAT),
        ("tok-chat-stream", "/v1/chat/completions", CHAT_STREAM_USAGE),
        ("tok-messages", "/v1/messages", MESSAGES),
        ("tok-messages-stream", "/v1/messages", MESSAGES_STREAM),
    ];
    // One token a minute: a request that used N tokens keeps its client
    // out for N - 1 minutes, so the wait tells exactly what was charged.
    // One USD a day at one USD a token: N - 1 days.
    let mut limits = String::new();
    for (client, _, _) in cases {
        limits += &format!("[limits.{client}]\ntokens_per_minute = 1\n");
        limits += &format!("[limits.usd-{client}]\nusd_per_day = 1.0\n");
    }
    let mut clients: Vec<String> = cases.iter().map(|(c, _, _)| c.to_string()).collect();
    clients.extend(cases.iter().map(|(c, _, _)| format!("usd-{c}")));
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    let gw = TestGateway::start(&config(&sim, &clients, &limits)).await;
    let http = client();

    let mut exchanges = 0;
    for (client, path, body) in cases {
        for (client, limit, per_unit_ms) in [
            (client.to_owned(), "tokens_per_minute", 60_000),
            (format!("usd-{client}"), "usd_per_day", 86_400_000),
        ] {
            let first = ask(&http, &gw, &client, path, body).await;
            assert_eq!(first.status, StatusCode::OK, "{}", first.text());
            // Charged when the exchange finished (reported to the sinks).
            let tokens = tokens_of(&gw, exchanges).await;
            exchanges += 1;
            assert!(tokens > 1, "{client}: {tokens} tokens");
            let refused = ask(&http, &gw, &client, path, body).await;
            assert_waits_for(&refused, tokens - 1, per_unit_ms);
            let message = refused.json().to_string();
            assert!(message.contains(limit), "{client}: {message}");
        }
    }
    let metrics = Metrics::scrape(&gw.admin_url("/metrics")).await;
    assert_eq!(
        metrics.sum(
            "promptgate_limit_refusals_total",
            &[("limit", "tokens_per_minute")]
        ),
        4.0
    );
    assert_eq!(
        metrics.sum(
            "promptgate_limit_refusals_total",
            &[("limit", "usd_per_day")]
        ),
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_stream_without_include_usage_charges_no_tokens() {
    // Documented: OpenAI streams report usage only when the caller asks.
    let sim = start_sim().await;
    let gw = TestGateway::start(&config(
        &sim,
        &["tok"],
        "[limits.tok]\ntokens_per_minute = 1\n",
    ))
    .await;
    let http = client();
    for n in 0..3 {
        let reply = ask(&http, &gw, "tok", "/v1/chat/completions", CHAT_STREAM).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "request {n}: {}",
            reply.text()
        );
        let exchanges = gw.sink.wait_for(n + 1).await;
        assert_eq!(exchanges[n].captured.usage.output_tokens, None);
    }
}

async fn chat_status(http: &TestClient, gw: &TestGateway) -> StatusCode {
    ask(http, gw, "reloaded", "/v1/chat/completions", CHAT)
        .await
        .status
}

async fn reload(http: &TestClient, gw: &TestGateway, text: &str) {
    gw.write_config(text);
    let reply = send(http, Method::POST, &gw.admin_url("/admin/reload"), &[], "").await;
    assert_eq!(reply.json()["status"], "reloaded", "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_limits_and_applies_changed_ones() {
    let sim = start_sim().await;
    let clients = ["reloaded"];
    let two = "[limits.reloaded]\nrequests_per_minute = 2\n";
    let gw = TestGateway::start(&config(&sim, &clients, two)).await;
    let http = client();
    assert_eq!(chat_status(&http, &gw).await, StatusCode::OK);
    assert_eq!(chat_status(&http, &gw).await, StatusCode::OK);
    assert_eq!(chat_status(&http, &gw).await, StatusCode::TOO_MANY_REQUESTS);

    // Another part of the config changes; the client's limit does not: its
    // window is kept, not reset by the reload.
    let other_change =
        config(&sim, &clients, two).replace("max_body_bytes = 65536", "max_body_bytes = 65537");
    reload(&http, &gw, &other_change).await;
    assert_eq!(chat_status(&http, &gw).await, StatusCode::TOO_MANY_REQUESTS);
    // A changed limit takes effect at once.
    reload(
        &http,
        &gw,
        &config(
            &sim,
            &clients,
            "[limits.reloaded]\nrequests_per_minute = 5\n",
        ),
    )
    .await;
    assert_eq!(chat_status(&http, &gw).await, StatusCode::OK);
    // Removed: the client is no longer limited.
    reload(&http, &gw, &config(&sim, &clients, "")).await;
    for _ in 0..6 {
        assert_eq!(chat_status(&http, &gw).await, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_raise_rate_limit_error_and_their_retries_honour_retry_after() {
    let sim = start_sim().await;
    let limits = "[limits.sdk-openai]\nrequests_per_minute = 60\n[limits.sdk-anthropic]\nrequests_per_minute = 60\n";
    let gw = TestGateway::start(&config(&sim, &["sdk-openai", "sdk-anthropic"], limits)).await;
    support::pytest::run(
        "sdk_limits",
        "the pinned openai/anthropic/pytest packages",
        vec![
            ("PROMPTGATE_BASE_URL", format!("http://{}", gw.addr)),
            ("PROMPTGATE_METRICS_URL", gw.admin_url("/metrics")),
            ("PROMPTGATE_OPENAI_KEY", key("sdk-openai")),
            ("PROMPTGATE_ANTHROPIC_KEY", key("sdk-anthropic")),
        ],
    )
    .await;
}
