//! The gateway as a drop-in proxy: both dialects, JSON and SSE, what reaches
//! the provider, what comes back, retries and fallback.

use crate::support;

use std::time::Duration;

use http::{Method, StatusCode};
use promptgate::exchange::Outcome;
use promptgate::simulator::{Fault, SimConfig, Simulator};
use serde_json::json;
use support::*;

async fn setup() -> (Simulator, TestGateway, TestClient) {
    let sim = Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gateway = TestGateway::start(&standard_config(&sim)).await;
    (sim, gateway, client())
}

/// A simulator that spaces its SSE frames by `chunk_delay`, behind a gateway in
/// open mode routing every model to it; `server` and `provider` are extra
/// lines for `[server]` and for the provider's table.
async fn spaced_stream_setup(
    chunk_delay: Duration,
    server: &str,
    provider: &str,
) -> (Simulator, TestGateway) {
    let sim = Simulator::start(SimConfig {
        chunk_delay,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let config = format!(
        "[server]\n{server}\n[auth]\nopen = true\n[providers.s]\nkind = \"openai\"\nbase_url = \"{}\"\n{provider}\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"s\"]\n",
        sim.openai_base_url()
    );
    let gw = TestGateway::start(&config).await;
    (sim, gw)
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"ping"}]}"#;

#[tokio::test]
async fn chat_json_injects_the_provider_key_and_never_forwards_the_callers() {
    let (sim, gw, client) = setup().await;
    let reply = send(
        &client,
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("x-api-key", CLIENT_KEY),
            ("x-request-id", "caller-id-1"),
            ("openai-organization", "org-caller"),
        ],
        CHAT,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the promptgate demo provider (gpt-4o). You said: \"ping\""
    );
    assert_eq!(reply.headers["x-request-id"], "caller-id-1");
    assert!(reply.headers.get("x-promptgate-config-version").is_some());
    // The provider's own id is kept aside, not mistaken for ours.
    assert_eq!(reply.headers["x-upstream-request-id"], "sim-request");

    let received = sim.received();
    assert_eq!(received.len(), 1);
    let upstream = &received[0];
    assert_eq!(upstream.path, "/v1/chat/completions");
    assert_eq!(
        upstream.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(upstream.header("x-request-id"), Some("caller-id-1"));
    assert_eq!(upstream.header("openai-organization"), None);
    assert_eq!(upstream.header("x-api-key"), None);
    for (name, value) in &upstream.headers {
        assert!(
            !value.contains(CLIENT_KEY),
            "client key leaked upstream in {name}"
        );
    }
    assert_eq!(
        upstream.json(),
        serde_json::from_str::<serde_json::Value>(CHAT).unwrap()
    );

    let exchanges = gw.sink.wait_for(1).await;
    let exchange = &exchanges[0];
    assert_eq!(exchange.outcome, Outcome::Completed);
    assert_eq!(exchange.start.client_id.as_deref(), Some("test-app"));
    assert_eq!(&*exchange.start.provider, "sim_openai");
    assert_eq!(
        exchange.captured.text,
        body["choices"][0]["message"]["content"]
    );
    assert_eq!(
        exchange.captured.usage.output_tokens,
        body["usage"]["completion_tokens"].as_u64()
    );
}

#[tokio::test]
async fn chat_stream_is_forwarded_byte_for_byte_with_usage_captured() {
    let (sim, gw, client) = setup().await;
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream please"}]}"#;
    let through = post(&client, &gw.url("/v1/chat/completions"), body).await;
    let direct = send(
        &client,
        Method::POST,
        &format!("{}/chat/completions", sim.openai_base_url()),
        &[("authorization", &format!("Bearer {PROVIDER_KEY}"))],
        body.to_owned(),
    )
    .await;
    assert_eq!(through.status, StatusCode::OK);
    assert_eq!(through.headers["content-type"], "text/event-stream");
    assert_eq!(through.body, direct.body, "the stream must pass unchanged");
    assert!(through.text().ends_with("data: [DONE]\n\n"));

    let exchange = &gw.sink.wait_for(1).await[0];
    assert!(exchange.start.stream);
    assert_eq!(exchange.outcome, Outcome::Completed);
    assert_eq!(
        exchange.captured.text,
        "Hello from the promptgate demo provider (gpt-4o-mini). You said: \"stream please\""
    );
    assert!(exchange.captured.usage.input_tokens.is_some());
    assert!(exchange.captured.usage.output_tokens.is_some());
    assert!(exchange.first_byte_after.is_some());
}

#[tokio::test]
async fn stream_chunks_arrive_as_the_provider_sends_them() {
    let sim = Simulator::start(SimConfig {
        chunk_delay: Duration::from_millis(40),
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = TestGateway::start(&standard_config(&sim)).await;
    let client = client();
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"one two three"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    // Not buffered: the pieces are spread over time, and the first arrives
    // long before the last was sent.
    assert!(
        reply.chunks.len() >= 10,
        "only {} pieces",
        reply.chunks.len()
    );
    let first = reply.chunks.first().unwrap().0;
    let last = reply.chunks.last().unwrap().0;
    assert!(
        last - first >= Duration::from_millis(300),
        "stream was buffered: {:?}",
        last - first
    );
}

#[tokio::test]
async fn the_sim_chunk_ms_header_paces_one_request_through_the_gateway() {
    // An instant simulator: only the request carrying `x-sim-chunk-ms` is paced
    // (the load tests' stream probe relies on it, through the gateway).
    let (_sim, gw, client) = setup().await;
    let stream = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"one two three"}]}"#;
    let auth = format!("Bearer {CLIENT_KEY}");
    let plain = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    let paced = [plain[0], plain[1], ("x-sim-chunk-ms", "20")];
    let spread = |reply: &Reply| reply.chunks.last().unwrap().0 - reply.chunks.first().unwrap().0;
    let url = gw.url("/v1/chat/completions");
    let paced_reply = send(&client, Method::POST, &url, &paced, stream).await;
    assert_eq!(paced_reply.status, StatusCode::OK);
    assert!(
        paced_reply.chunks.len() >= 10,
        "only {} pieces",
        paced_reply.chunks.len()
    );
    // At least 9 gaps of 20 ms between the first and the last piece.
    assert!(
        spread(&paced_reply) >= Duration::from_millis(180),
        "{:?}",
        spread(&paced_reply)
    );
    let instant = send(&client, Method::POST, &url, &plain, stream).await;
    assert_eq!(instant.status, StatusCode::OK);
    assert!(
        spread(&instant) < Duration::from_millis(150),
        "{:?}",
        spread(&instant)
    );
}

#[tokio::test]
async fn anthropic_messages_json_and_stream_with_named_events_unchanged() {
    let (sim, gw, client) = setup().await;
    let json_body = r#"{"model":"claude-sonnet-4","max_tokens":64,"system":"Be kind.","messages":[{"role":"user","content":"hi"}]}"#;
    let reply = send(
        &client,
        Method::POST,
        &gw.url("/v1/messages"),
        &[
            ("x-api-key", CLIENT_KEY),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
            ("content-type", "application/json"),
        ],
        json_body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["content"][0]["type"], "text");
    let id = reply.headers["x-request-id"].clone();
    assert_eq!(
        reply.headers["request-id"], id,
        "Anthropic SDKs read `request-id`"
    );
    let upstream = &sim.received()[0];
    assert_eq!(upstream.path, "/v1/messages");
    assert_eq!(upstream.header("x-api-key"), Some(PROVIDER_KEY));
    assert_eq!(upstream.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        upstream.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(upstream.header("authorization"), None);

    let stream_body = r#"{"model":"claude-sonnet-4","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let through = send(
        &client,
        Method::POST,
        &gw.url("/v1/messages"),
        &[
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("anthropic-version", "2023-06-01"),
        ],
        stream_body,
    )
    .await;
    let direct = send(
        &client,
        Method::POST,
        &format!("{}/v1/messages", sim.anthropic_base_url()),
        &[("x-api-key", PROVIDER_KEY)],
        stream_body,
    )
    .await;
    assert_eq!(through.status, StatusCode::OK);
    assert_eq!(through.body, direct.body);
    let text = through.text();
    for event in [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "message_delta",
        "message_stop",
    ] {
        assert!(
            text.contains(&format!("event: {event}\n")),
            "missing {event}"
        );
    }
    let exchanges = gw.sink.wait_for(2).await;
    let streamed = exchanges.iter().find(|e| e.start.stream).unwrap();
    assert_eq!(
        streamed.captured.text,
        "Hello from the promptgate demo provider (claude-sonnet-4). You said: \"hi\""
    );
}

#[tokio::test]
async fn every_passthrough_endpoint_reaches_its_upstream_path() {
    let (sim, gw, client) = setup().await;
    let cases = [
        (
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi"}"#,
            "/v1/completions",
        ),
        (
            "/v1/embeddings",
            r#"{"model":"gpt-embed","input":"hello"}"#,
            "/v1/embeddings",
        ),
        (
            "/v1/responses",
            r#"{"model":"gpt-4.1","input":"hello"}"#,
            "/v1/responses",
        ),
        (
            "/v1/messages/count_tokens",
            r#"{"model":"claude-x","messages":[{"role":"user","content":"count me"}]}"#,
            "/v1/messages/count_tokens",
        ),
    ];
    for (path, body, upstream_path) in cases {
        let reply = post(&client, &gw.url(path), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_eq!(sim.received().last().unwrap().path, upstream_path);
    }
    assert!(
        post(&client, &gw.url("/v1/embeddings"), cases[1].1)
            .await
            .json()["data"][0]["embedding"]
            .is_array()
    );
    assert!(
        post(&client, &gw.url("/v1/messages/count_tokens"), cases[3].1)
            .await
            .json()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn aliases_rewrite_the_model_and_models_lists_exact_names() {
    let (sim, gw, client) = setup().await;
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"fast","messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(sim.received()[0].json()["model"], "gpt-4o-mini");
    assert_eq!(sim.received()[0].json()["messages"][0]["content"], "x");

    let models = send(
        &client,
        Method::GET,
        &gw.url("/v1/models"),
        &[("authorization", &format!("Bearer {CLIENT_KEY}"))],
        "",
    )
    .await;
    assert_eq!(models.status, StatusCode::OK);
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["fast", "dead-model"]);
}

#[tokio::test]
async fn demo_provider_answers_both_dialects_without_network() {
    let (sim, gw, client) = setup().await;
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"demo-1","stream":true,"messages":[{"role":"user","content":"yo"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("data: [DONE]"));
    let reply = post(
        &client,
        &gw.url("/v1/messages"),
        r#"{"model":"demo-1","max_tokens":9,"messages":[{"role":"user","content":"yo"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["type"], "message");
    assert!(sim.received().is_empty());
}

#[tokio::test]
async fn retries_before_the_first_byte_then_succeeds() {
    let (sim, gw, client) = setup().await;
    sim.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
    });
    sim.push_fault(Fault::Status {
        status: 429,
        retry_after: None,
    });
    let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(sim.received().len(), 3);
    assert_eq!(gw.sink.wait_for(1).await[0].start.attempts, 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (sim, gw, client) = setup().await;
    sim.push_fault(Fault::Status {
        status: 429,
        retry_after: Some(1),
    });
    let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.sent_at.elapsed() >= Duration::from_millis(950),
        "{:?}",
        reply.sent_at.elapsed()
    );
    assert_eq!(sim.received().len(), 2);
}

#[tokio::test]
async fn exhausted_retries_pass_the_provider_error_through() {
    let (sim, gw, client) = setup().await;
    for _ in 0..3 {
        sim.push_fault(Fault::Status {
            status: 500,
            retry_after: None,
        });
    }
    let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json()["error"]["message"], "simulated error 500");
    assert_eq!(sim.received().len(), 3, "1 try + 2 retries");
    // A caller mistake is not retried.
    sim.push_fault(Fault::Status {
        status: 400,
        retry_after: None,
    });
    let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(sim.received().len(), 4);
}

#[tokio::test]
async fn no_retry_once_bytes_reached_the_caller() {
    // Spaced frames, so the head and first frames reach the caller before the drop.
    let sim = Simulator::start(SimConfig {
        chunk_delay: Duration::from_millis(20),
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = TestGateway::start(&standard_config(&sim)).await;
    let client = client();
    sim.push_fault(Fault::DropAfter(2));
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"a b c d e"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.error.is_some(),
        "the caller must see the stream break: {:?} {}",
        reply.status,
        reply.text()
    );
    assert!(!reply.text().contains("[DONE]"));
    assert_eq!(sim.received().len(), 1, "a started stream is never retried");
    let exchange = &gw.sink.wait_for(1).await[0];
    assert!(
        matches!(exchange.outcome, Outcome::UpstreamBroken(_)),
        "{:?}",
        exchange.outcome
    );
}

#[tokio::test]
async fn falls_back_to_the_next_provider() {
    let primary = Simulator::start(SimConfig::default()).await.unwrap();
    let backup = Simulator::start(SimConfig::default()).await.unwrap();
    let config = format!(
        r#"
[auth]
open = true
[providers.primary]
kind = "openai"
base_url = "{}"
max_retries = 1
retry_base_ms = 1
[providers.backup]
kind = "openai"
base_url = "{}"
[providers.unreachable]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
max_retries = 0
[[routes]]
models = ["m"]
providers = ["primary", "backup"]
[[routes]]
models = ["u"]
providers = ["unreachable", "backup"]
"#,
        primary.openai_base_url(),
        backup.openai_base_url()
    );
    let gw = TestGateway::start(&config).await;
    let client = client();
    primary.push_fault(Fault::Status {
        status: 502,
        retry_after: None,
    });
    primary.push_fault(Fault::Close);
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(primary.received().len(), 2);
    assert_eq!(backup.received().len(), 1);
    assert_eq!(&*gw.sink.wait_for(1).await[0].start.provider, "backup");

    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"u","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(backup.received().len(), 2);
}

#[tokio::test]
async fn provider_rejecting_the_gateway_key_is_a_502_not_a_401() {
    let sim = Simulator::start(SimConfig {
        required_key: Some("another-key".into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = TestGateway::start(&standard_config(&sim)).await;
    let reply = post(&client(), &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.json()["error"]["code"], "provider_auth_failed");
    assert!(!reply.text().contains(PROVIDER_KEY));
    assert_eq!(
        sim.received().len(),
        1,
        "credential failures are not retried"
    );
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_reported() {
    let (_sim, gw) = spaced_stream_setup(Duration::from_millis(50), "", "").await;
    let client = client();
    let request = http::Request::post(gw.url("/v1/chat/completions"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"model":"x","stream":true,"messages":[{"role":"user","content":"a b c d e f g h"}]}"#,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let mut body = response.into_body();
    use http_body_util::BodyExt;
    let _first = body.frame().await.unwrap().unwrap();
    drop(body);
    drop(client);
    let exchanges = gw.sink.wait_for(1).await;
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].outcome, Outcome::ClientDisconnected);
}

#[tokio::test]
async fn sequential_requests_on_one_keep_alive_connection_do_not_stall() {
    // Nagle + delayed ACK would add ~40 ms to every request after the first.
    let (_sim, gw, _) = setup().await;
    let client = client(); // one pooled connection, reused sequentially
    let mut timings = Vec::new();
    for _ in 0..60 {
        let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
        assert_eq!(reply.status, StatusCode::OK);
        timings.push(reply.sent_at.elapsed());
    }
    timings.sort();
    let median = timings[timings.len() / 2];
    let stalled = timings
        .iter()
        .filter(|t| **t >= Duration::from_millis(38))
        .count();
    assert!(median < Duration::from_millis(20), "median {median:?}");
    assert!(
        stalled <= 3,
        "{stalled} of 60 requests took 38 ms or more: {timings:?}"
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_a_running_stream_finish() {
    let (sim, mut gw) =
        spaced_stream_setup(Duration::from_millis(30), "shutdown_grace_ms = 5000", "").await;
    let url = gw.url("/v1/chat/completions");
    let stream = tokio::spawn(async move {
        post(&client(), &url, r#"{"model":"x","stream":true,"messages":[{"role":"user","content":"a b c d e f g h i j"}]}"#).await
    });
    // Ten chunks 30 ms apart: the stream is still running when this returns.
    support::wait::until(
        "the stream's request to reach the provider",
        Duration::from_secs(5),
        || !sim.received().is_empty(),
    )
    .await;
    let server = gw.begin_shutdown();
    let reply = stream.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert!(reply.text().ends_with("data: [DONE]\n\n"));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    // The listener is closed now.
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
    assert_eq!(json!(gw.sink.all().len()), json!(1));
}

#[tokio::test]
async fn total_timeout_cuts_a_stream_that_runs_too_long() {
    let (_sim, gw) = spaced_stream_setup(
        Duration::from_millis(100),
        "",
        "first_byte_timeout_ms = 300\ntotal_timeout_ms = 400",
    )
    .await;
    let reply = post(&client(), &gw.url("/v1/chat/completions"), r#"{"model":"x","stream":true,"messages":[{"role":"user","content":"a b c d e f g h i j"}]}"#).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.error.is_some(), "the stream should be cut");
    assert!(reply.sent_at.elapsed() < Duration::from_millis(900));
    assert_eq!(gw.sink.wait_for(1).await[0].outcome, Outcome::TimedOut);
}

#[tokio::test]
async fn azure_style_paths_query_and_key_header() {
    let sim = Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let config = format!(
        "[auth]\nopen = true\n[providers.azure]\nkind = \"openai\"\nbase_url = \"http://{}/openai/deployments/gpt4o\"\napi_key_file = \"{{dir}}/provider.key\"\napi_key_header = \"api-key\"\nquery = {{ \"api-version\" = \"2024-10-21\" }}\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"azure\"]\n",
        sim.addr()
    );
    let gw = TestGateway::start(&config).await;
    let reply = post(&client(), &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{} {:?}",
        reply.text(),
        sim.received()
    );
    let upstream = &sim.received()[0];
    assert_eq!(upstream.path, "/openai/deployments/gpt4o/chat/completions");
    assert_eq!(upstream.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(upstream.header("api-key"), Some(PROVIDER_KEY));
    assert_eq!(upstream.header("authorization"), None);
}
