//! Request bodies with a missing or ill-typed field the gateway reads are
//! refused with a 400 in the caller's dialect that names the field path, on
//! experiment and passthrough routes, on every endpoint with messages or
//! input; the refusal reaches no provider and the audit log records it as a
//! 400 refusal. What only the provider refuses (the demo provider and the
//! simulator standing in for OpenAI and Anthropic) comes back as those APIs
//! write it.

use crate::support;

use http::{Method, StatusCode};
use promptgate::server;
use promptgate::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};
use support::*;

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const RESPONSES: &str = "/v1/responses";

/// The simulator as an OpenAI- and an Anthropic-kind provider, the demo
/// provider, an experiment `greeting` whose one variant serves both
/// dialects, and a local audit log.
fn config(sim: &Simulator) -> String {
    format!(
        r#"
[auth]
[[auth.clients]]
id = "test-app"
key_sha256 = "{key_hash}"

[providers.sim_openai]
kind = "openai"
base_url = "{openai}"
api_key_file = "{{dir}}/provider.key"
max_retries = 0

[providers.sim_anthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key_file = "{{dir}}/provider.key"
max_retries = 0

[providers.demo]
kind = "demo"

[[routes]]
models = ["gpt-*", "claude-*"]
providers = ["sim_openai", "sim_anthropic"]

[[routes]]
models = ["demo-*"]
providers = ["demo"]

[experiments.greeting]
unit_key = {{ header = "x-user-id" }}

[[experiments.greeting.variants]]
name = "warm"
weight = 100
model = "gpt-4o-mini"
providers = ["sim_openai", "sim_anthropic"]
system = "Be warm."

[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100
"#,
        key_hash = server::hash_key(CLIENT_KEY),
        openai = sim.openai_base_url(),
        anthropic = sim.anthropic_base_url(),
    )
}

/// A body the gateway must refuse: where it is sent, the field its 400 names
/// and what the message says was expected.
struct Bad {
    path: &'static str,
    /// The body without `model` (the test adds the passthrough or experiment model).
    body: Value,
    field: &'static str,
    expected: &'static str,
}

fn bad_bodies() -> Vec<Bad> {
    let user = json!({"role": "user", "content": "hi"});
    let bad = |path, body, field, expected| Bad {
        path,
        body,
        field,
        expected,
    };
    let mut cases = Vec::new();
    for path in [CHAT, MESSAGES] {
        cases.extend([
            bad(
                path,
                json!({"messages": "not-a-list", "max_tokens": 5}),
                "messages",
                "expected an array of message objects, got string \"not-a-list\"",
            ),
            bad(
                path,
                json!({"a": 1, "max_tokens": 5}),
                "messages",
                "missing required field `messages`: expected an array of message objects",
            ),
            bad(
                path,
                json!({"max_tokens": 5, "messages": [user, {"role": "assistant", "content": "ok"}, {"role": "user", "content": 7}]}),
                "messages[2].content",
                "expected a string or an array of content parts, got integer `7`",
            ),
            bad(
                path,
                json!({"max_tokens": 5, "messages": [{"content": "hi"}]}),
                "messages[0].role",
                "missing required field `messages[0].role`",
            ),
            bad(
                path,
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
                "messages[0].content[0].text",
                "expected a string, got integer `1`",
            ),
            bad(
                path,
                json!({"max_tokens": "5", "messages": [user]}),
                "max_tokens",
                "expected a whole number ≥ 0, got string \"5\"",
            ),
            bad(
                path,
                json!({"max_tokens": 5, "temperature": "hot", "messages": [user]}),
                "temperature",
                "expected a number, got string \"hot\"",
            ),
            bad(
                path,
                json!({"max_tokens": 5, "top_p": [1], "messages": [user]}),
                "top_p",
                "expected a number",
            ),
            bad(
                path,
                json!({"max_tokens": 5, "stream": "yes", "messages": [user]}),
                "stream",
                "expected a boolean",
            ),
        ]);
    }
    cases.extend([
        bad(
            CHAT,
            json!({"max_completion_tokens": -1, "messages": [user]}),
            "max_completion_tokens",
            "expected a whole number ≥ 0, got integer `-1`",
        ),
        bad(
            MESSAGES,
            json!({"max_tokens": 5, "system": {"text": "x"}, "messages": [user]}),
            "system",
            "expected a string or an array of text blocks",
        ),
        bad(
            RESPONSES,
            json!({"input": 42}),
            "input",
            "expected a string or an array of input items, got integer `42`",
        ),
        bad(
            RESPONSES,
            json!({"input": [{"role": "user", "content": false}]}),
            "input[0].content",
            "expected a string or an array of content parts",
        ),
        bad(
            RESPONSES,
            json!({"input": "hi", "max_output_tokens": 1.5}),
            "max_output_tokens",
            "expected a whole number ≥ 0, got floating point `1.5`",
        ),
        bad(
            RESPONSES,
            json!({"input": "hi", "instructions": ["x"]}),
            "instructions",
            "expected a string",
        ),
    ]);
    cases
}

/// The field a 400 names and its message, read from either dialect's shape.
fn field_and_message(path: &str, reply: &Reply) -> (Option<String>, String) {
    let body = reply.json();
    if path == MESSAGES {
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        (None, body["error"]["message"].as_str().unwrap().to_owned())
    } else {
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        (
            body["error"]["param"].as_str().map(str::to_owned),
            body["error"]["message"].as_str().unwrap().to_owned(),
        )
    }
}

#[tokio::test]
async fn ill_typed_fields_are_a_400_naming_the_field_on_passthrough_and_experiment_routes() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::start(&config(&sim)).await;
    let client = client();
    let mut refused = Vec::new();
    for (n, case) in bad_bodies().into_iter().enumerate() {
        let passthrough = if case.path == MESSAGES {
            "claude-x"
        } else {
            "gpt-x"
        };
        for (route, model) in [("passthrough", passthrough), ("experiment", "greeting")] {
            let mut body = case.body.clone();
            body["model"] = json!(model);
            let request_id = format!("bad-{n}-{route}");
            let reply = send(
                &client,
                Method::POST,
                &gw.url(case.path),
                &[
                    ("authorization", &format!("Bearer {CLIENT_KEY}")),
                    ("x-user-id", "u-1"),
                    ("x-request-id", &request_id),
                ],
                body.to_string(),
            )
            .await;
            let what = format!("{body} on {} ({route})", case.path);
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{what}: {}",
                reply.text()
            );
            let (param, message) = field_and_message(case.path, &reply);
            if case.path != MESSAGES {
                assert_eq!(param.as_deref(), Some(case.field), "{what}");
            }
            assert!(
                message.contains(&format!("`{}`", case.field)),
                "{what}: `{message}` does not name `{}`",
                case.field
            );
            assert!(
                message.contains(case.expected),
                "{what}: `{message}` lacks `{}`",
                case.expected
            );
            refused.push(request_id);
        }
    }
    assert!(
        sim.received().is_empty(),
        "refused bodies reached the provider: {:?}",
        sim.received()
    );
    let audit = gw.dir.path().join("audit");
    let records = wait_for_audit(&audit, |records| records.len() >= refused.len()).await;
    for request_id in &refused {
        let record = records
            .iter()
            .find(|r| r["request_id"] == request_id.as_str())
            .unwrap_or_else(|| panic!("no audit record for {request_id}"));
        assert_eq!(record["status"], 400, "{record}");
        assert_eq!(record["outcome"], "refused", "{record}");
        assert_eq!(record["error_class"], "bad_request", "{record}");
    }
}

#[tokio::test]
async fn valid_bodies_pass_with_unknown_fields_untouched() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::start(&config(&sim)).await;
    let client = client();
    let bodies = [
        (
            CHAT,
            r#"{"model":"gpt-x","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":null,"tool_calls":[]},{"role":"user","content":"again"}],"max_tokens":null,"temperature":0.5,"a_field_from_next_year":{"nested":[1,"two"]}}"#,
        ),
        (
            MESSAGES,
            r#"{"model":"claude-x","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"enabled","budget_tokens":1024}}"#,
        ),
        (
            RESPONSES,
            r#"{"model":"gpt-x","input":[{"role":"user","content":"hi"},{"type":"function_call_output","call_id":"c1","output":"{}"}],"max_output_tokens":20,"reasoning":{"effort":"low"}}"#,
        ),
    ];
    for (path, body) in bodies {
        let reply = post(&client, &gw.url(path), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{body}: {}", reply.text());
        let received = sim.received();
        assert_eq!(
            received.last().map(|r| r.body.as_str()),
            Some(body),
            "the passthrough body must reach the provider byte for byte"
        );
    }
}

/// What the gateway lets through but OpenAI or Anthropic refuse is refused
/// by the simulator and the demo provider as those APIs do, and reaches the
/// caller unchanged; the audit log records the provider's 400.
#[tokio::test]
async fn the_simulator_and_the_demo_refuse_what_the_real_apis_refuse() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::start(&config(&sim)).await;
    let client = client();
    let user = json!({"role": "user", "content": "hi"});
    let cases = [
        (
            MESSAGES,
            json!({"messages": [user]}),
            "max_tokens: Field required",
        ),
        (
            MESSAGES,
            json!({"max_tokens": 5, "messages": []}),
            "messages: at least one message is required",
        ),
        (
            MESSAGES,
            json!({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "messages: Unexpected role \"system\"",
        ),
        (
            CHAT,
            json!({"messages": []}),
            "Invalid 'messages': empty array.",
        ),
        (
            CHAT,
            json!({"messages": [{"role": "robot", "content": "beep"}]}),
            "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
        ),
        (
            RESPONSES,
            json!({"input": [{"role": "tool", "content": "x"}]}),
            "Invalid value: 'tool'.",
        ),
    ];
    for (provider, model_of) in [("simulator", "sim"), ("demo", "demo")] {
        for (n, (path, body, message)) in cases.iter().enumerate() {
            let mut body = body.clone();
            body["model"] = json!(match (model_of, *path) {
                ("sim", MESSAGES) => "claude-x",
                ("sim", _) => "gpt-x",
                _ => "demo-x",
            });
            let request_id = format!("provider-refused-{provider}-{n}");
            let reply = send(
                &client,
                Method::POST,
                &gw.url(path),
                &[
                    ("authorization", &format!("Bearer {CLIENT_KEY}")),
                    ("x-request-id", &request_id),
                ],
                body.to_string(),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{body} on {path} ({provider}): {}",
                reply.text()
            );
            let (_, text) = field_and_message(path, &reply);
            assert!(
                text.starts_with(message),
                "{body} on {path} ({provider}): `{text}`"
            );
            let records = wait_for_audit(&gw.dir.path().join("audit"), |records| {
                records
                    .iter()
                    .any(|r| r["request_id"] == request_id.as_str())
            })
            .await;
            let record = records
                .iter()
                .find(|r| r["request_id"] == request_id.as_str())
                .unwrap_or_else(|| panic!("no audit record for {request_id}"));
            assert_eq!(record["status"], 400, "{record}");
            assert_eq!(record["error_class"], "provider_client_error", "{record}");
        }
    }
    assert_eq!(
        sim.received().len(),
        cases.len(),
        "each simulator case reached it"
    );
}
