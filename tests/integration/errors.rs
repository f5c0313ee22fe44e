//! Bad input gets a precise error in the caller's dialect, never leaks provider
//! details, and the gateway keeps serving afterwards.

use crate::support;

use http::{Method, StatusCode};
use promptgate::simulator::{SimConfig, Simulator};
use support::*;

/// Sends a bad request on both dialect paths and checks status and shape.
struct Case {
    name: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
    status: StatusCode,
    /// Substring the message must contain.
    message: &'static str,
    openai_code: &'static str,
    anthropic_type: &'static str,
}

fn auth() -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {CLIENT_KEY}"))]
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "malformed JSON",
            body: r#"{"model": "gpt-4o", "messages": [}"#.into(),
            headers: auth(),
            status: StatusCode::BAD_REQUEST,
            message: "invalid JSON in request body",
            openai_code: "invalid_json",
            anthropic_type: "invalid_request_error",
        },
        Case {
            name: "empty body",
            body: String::new(),
            headers: auth(),
            status: StatusCode::BAD_REQUEST,
            message: "empty",
            openai_code: "invalid_json",
            anthropic_type: "invalid_request_error",
        },
        Case {
            name: "wrong type",
            body: r#"{"model": ["gpt-4o"]}"#.into(),
            headers: auth(),
            status: StatusCode::BAD_REQUEST,
            message: "`model`",
            openai_code: "invalid_value",
            anthropic_type: "invalid_request_error",
        },
        Case {
            name: "wrong type of stream",
            body: r#"{"model": "gpt-4o", "stream": "yes"}"#.into(),
            headers: auth(),
            status: StatusCode::BAD_REQUEST,
            message: "`stream`",
            openai_code: "invalid_value",
            anthropic_type: "invalid_request_error",
        },
        Case {
            name: "not an object",
            body: "[1, 2]".into(),
            headers: auth(),
            status: StatusCode::BAD_REQUEST,
            message: "JSON object",
            openai_code: "invalid_value",
            anthropic_type: "invalid_request_error",
        },
        Case {
            name: "missing model",
            body: r#"{"messages": [{"role": "user", "content": "hi"}]}"#.into(),
            headers: auth(),
            status: StatusCode::BAD_REQUEST,
            message: "missing required field `model`",
            openai_code: "missing_model",
            anthropic_type: "invalid_request_error",
        },
        Case {
            name: "unknown model",
            body: r#"{"model": "nope-1", "messages": [{"role": "user", "content": "hi"}]}"#.into(),
            headers: auth(),
            status: StatusCode::NOT_FOUND,
            message: "`nope-1`",
            openai_code: "model_not_found",
            anthropic_type: "not_found_error",
        },
        Case {
            name: "body too large",
            body: format!(r#"{{"model": "gpt-4o", "pad": "{}"}}"#, "x".repeat(70_000)),
            headers: auth(),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "65536 bytes",
            openai_code: "request_too_large",
            anthropic_type: "request_too_large",
        },
        Case {
            name: "missing key",
            body: r#"{"model": "gpt-4o"}"#.into(),
            headers: vec![],
            status: StatusCode::UNAUTHORIZED,
            message: "missing API key",
            openai_code: "invalid_api_key",
            anthropic_type: "authentication_error",
        },
        Case {
            name: "wrong key",
            body: r#"{"model": "gpt-4o"}"#.into(),
            headers: vec![("x-api-key", "pg-wrong".into())],
            status: StatusCode::UNAUTHORIZED,
            message: "invalid API key",
            openai_code: "invalid_api_key",
            anthropic_type: "authentication_error",
        },
        Case {
            name: "provider unreachable",
            body: r#"{"model": "dead-model", "messages": [{"role": "user", "content": "hi"}]}"#
                .into(),
            headers: auth(),
            status: StatusCode::BAD_GATEWAY,
            message: "`dead` is unreachable",
            openai_code: "provider_unreachable",
            anthropic_type: "api_error",
        },
    ]
}

#[tokio::test]
async fn each_bad_input_gets_its_status_and_shape_in_both_dialects() {
    let sim = Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // The demo provider serves both dialects for the model names used here.
    let config = standard_config(&sim).replace(
        "models = [\"gpt-*\"]\nproviders = [\"sim_openai\"]",
        "models = [\"gpt-*\"]\nproviders = [\"demo\"]",
    );
    let gw = TestGateway::start(&config).await;
    let client = client();
    for case in cases() {
        for (path, anthropic) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
            if anthropic && case.name == "provider unreachable" {
                continue; // `dead` is an OpenAI-kind provider; covered below
            }
            let headers: Vec<(&str, &str)> =
                case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let reply = send(
                &client,
                Method::POST,
                &gw.url(path),
                &headers,
                case.body.clone(),
            )
            .await;
            assert_eq!(
                reply.status,
                case.status,
                "{} on {path}: {}",
                case.name,
                reply.text()
            );
            let body = reply.json();
            let message = if anthropic {
                assert_eq!(body["type"], "error", "{}", case.name);
                assert_eq!(body["error"]["type"], case.anthropic_type, "{}", case.name);
                assert!(reply.headers.get("request-id").is_some());
                body["error"]["message"].as_str().unwrap().to_owned()
            } else {
                assert_eq!(body["error"]["code"], case.openai_code, "{}", case.name);
                assert!(body["error"]["type"].is_string());
                body["error"]["message"].as_str().unwrap().to_owned()
            };
            assert!(
                message.contains(case.message),
                "{} on {path}: message `{message}` lacks `{}`",
                case.name,
                case.message
            );
            assert!(
                !reply.text().contains("127.0.0.1"),
                "provider address leaked: {}",
                reply.text()
            );
            assert!(!reply.text().contains(PROVIDER_KEY));
            assert!(reply.headers.get("x-request-id").is_some());
        }
    }
    // Still serving, in both dialects.
    assert_eq!(
        post(
            &client,
            &gw.url("/v1/chat/completions"),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        post(
            &client,
            &gw.url("/v1/messages"),
            r#"{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#
        )
        .await
        .status,
        StatusCode::OK
    );
    // Rejected requests never reached the provider.
    assert!(sim.received().is_empty());
}

#[tokio::test]
async fn wrong_type_names_the_field_in_openai_param() {
    let (_sim, gw) = {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let gw = TestGateway::start(&standard_config(&sim)).await;
        (sim, gw)
    };
    let reply = post(
        &client(),
        &gw.url("/v1/chat/completions"),
        r#"{"model": 12}"#,
    )
    .await;
    assert_eq!(reply.json()["error"]["param"], "model");
    assert_eq!(
        reply.json()["error"]["message"],
        "invalid value for `model`: expected a string, got integer `12`"
    );
}

#[tokio::test]
async fn provider_timeout_is_a_504_and_unknown_paths_404_in_dialect() {
    let sim = Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw =
        TestGateway::start(&standard_config(&sim).replace("max_retries = 2", "max_retries = 0"))
            .await;
    let client = client();
    let started = std::time::Instant::now();
    let reply = send(
        &client,
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("x-sim-fault", "hang"),
        ],
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert_eq!(reply.json()["error"]["code"], "provider_timeout");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1000 ms")
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    let reply = send(
        &client,
        Method::POST,
        &gw.url("/v1/messages"),
        &[
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("x-sim-fault", "status=529"),
        ],
        r#"{"model":"claude-3","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status.as_u16(), 529, "provider status passes through");
    assert_eq!(reply.json()["error"]["message"], "simulated error 529");

    let reply = send(&client, Method::GET, &gw.url("/v1/nothing"), &[], "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"]["code"], "not_found");
    let reply = send(&client, Method::GET, &gw.url("/v1/messages"), &[], "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.headers["allow"], "POST");
}

#[tokio::test]
async fn a_model_served_by_a_provider_of_the_other_dialect_is_a_clear_400() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::start(&standard_config(&sim)).await;
    let reply = post(
        &client(),
        &gw.url("/v1/messages"),
        r#"{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json()["error"]["message"],
        "the model `gpt-4o` is served by provider `sim_openai`, which does not speak the Anthropic Messages API"
    );
}

/// A body sent without `content-length` (chunked) is refused once it passes
/// `server.max_body_bytes` while it is read (the body-limit layer), as the
/// dialect's 413, counted once per request.
#[tokio::test]
async fn a_chunked_body_over_the_limit_is_a_413_counted_once_in_both_dialects() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::start(&standard_config(&sim)).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    for (path, anthropic) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
        // 70 pieces of 1,000 bytes: past the 65,536-byte limit, no length announced.
        let pieces = std::iter::once(Bytes::from_static(br#"{"model": "gpt-4o", "pad": ""#))
            .chain(std::iter::repeat_n(Bytes::from(vec![b'x'; 1000]), 70))
            .map(|piece| Ok::<_, std::convert::Infallible>(http_body::Frame::data(piece)));
        let request = http::Request::post(gw.url(path))
            .header("authorization", format!("Bearer {CLIENT_KEY}"))
            .header("content-type", "application/json")
            .body(StreamBody::new(futures_util::stream::iter(pieces)).boxed())
            .unwrap();
        assert!(request.headers().get("content-length").is_none());
        let response = client.request(request).await.expect("request failed");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        let (kind, message) = if anthropic {
            (&body["error"]["type"], &body["error"]["message"])
        } else {
            (&body["error"]["code"], &body["error"]["message"])
        };
        assert_eq!(kind, "request_too_large", "{path}: {body}");
        assert!(
            message.as_str().unwrap().contains("65536 bytes"),
            "{path}: {body}"
        );
    }
    let metrics = support::metrics::Metrics::scrape(&gw.admin_url("/metrics")).await;
    for endpoint in ["chat_completions", "messages"] {
        assert_eq!(
            metrics.value(
                "promptgate_requests_total",
                &[("endpoint", endpoint), ("outcome", "too_large")]
            ),
            1.0,
            "{endpoint}"
        );
    }
}
