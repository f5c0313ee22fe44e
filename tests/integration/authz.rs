//! Authorization as a matrix, through real HTTP in both dialects: every
//! endpoint × client permission × credential state, with the expected status
//! and error shape; then model and experiment allow-lists, and the
//! `promptgate_auth_failures_total` count per reason.

use crate::support;

use http::{Method, StatusCode};
use promptgate::server::hash_key;
use serde_json::Value;
use support::metrics::Metrics;
use support::{TestGateway, client, send};

/// Each client has one key in the single `key_sha256` form, a rotated-out
/// key still valid until next year, its new key, and an expired key.
const CLIENTS: [Client; 2] = [
    Client {
        id: "unrestricted",
        allow: "",
    },
    Client {
        id: "chat-only",
        allow: r#"
[auth.clients.allow]
endpoints = ["chat_completions", "models"]
models = ["demo-allowed*"]
experiments = []
"#,
    },
];

struct Client {
    id: &'static str,
    allow: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    None,
    Wrong,
    Expired,
    RotatedOld,
    RotatedNew,
    Valid,
}

const CREDENTIALS: [Credential; 6] = [
    Credential::None,
    Credential::Wrong,
    Credential::Expired,
    Credential::RotatedOld,
    Credential::RotatedNew,
    Credential::Valid,
];

impl Credential {
    fn key(self, client: &str) -> Option<String> {
        match self {
            Credential::None => None,
            Credential::Wrong => Some("pg-nobody".to_owned()),
            Credential::Expired => Some(format!("pg-{client}-expired")),
            Credential::RotatedOld => Some(format!("pg-{client}-old")),
            Credential::RotatedNew => Some(format!("pg-{client}-new")),
            Credential::Valid => Some(format!("pg-{client}")),
        }
    }

    /// The reason label a refused credential is counted under.
    fn failure(self) -> Option<&'static str> {
        match self {
            Credential::None => Some("missing"),
            Credential::Wrong => Some("unknown"),
            Credential::Expired => Some("expired"),
            _ => None,
        }
    }
}

struct EndpointCase {
    label: &'static str,
    method: Method,
    path: &'static str,
    body: &'static str,
    ok: StatusCode,
}

fn endpoints() -> Vec<EndpointCase> {
    let post = |label, path, body, ok| EndpointCase {
        label,
        method: Method::POST,
        path,
        body,
        ok,
    };
    vec![
        post(
            "chat_completions",
            "/v1/chat/completions",
            r#"{"model":"demo-allowed","messages":[{"role":"user","content":"hi"}]}"#,
            StatusCode::OK,
        ),
        post(
            "responses",
            "/v1/responses",
            r#"{"model":"demo-allowed","input":"hi"}"#,
            StatusCode::OK,
        ),
        post(
            "embeddings",
            "/v1/embeddings",
            r#"{"model":"demo-allowed","input":"hi"}"#,
            StatusCode::OK,
        ),
        post(
            "messages",
            "/v1/messages",
            r#"{"model":"demo-allowed","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#,
            StatusCode::OK,
        ),
        post(
            "count_tokens",
            "/v1/messages/count_tokens",
            r#"{"model":"demo-allowed","messages":[{"role":"user","content":"hi"}]}"#,
            StatusCode::OK,
        ),
        post(
            "feedback",
            "/v1/feedback",
            r#"{"request_id":"req-1","metric":"thumbs_up","value":true}"#,
            StatusCode::ACCEPTED,
        ),
        EndpointCase {
            label: "models",
            method: Method::GET,
            path: "/v1/models",
            body: "",
            ok: StatusCode::OK,
        },
    ]
}

fn config() -> String {
    let mut text = String::from(
        r#"
[providers.demo]
kind = "demo"

[[routes]]
models = ["demo-allowed", "demo-other"]
providers = ["demo"]

[[routes]]
models = ["demo-*"]
providers = ["demo"]

[experiments.tone]
unit_key = { header = "x-user-id" }

[[experiments.tone.variants]]
name = "a"
weight = 50
model = "demo-allowed"
providers = ["demo"]

[[experiments.tone.variants]]
name = "b"
weight = 50
model = "demo-other"
providers = ["demo"]

[feedback.metrics]
thumbs_up = "boolean"

[audit]
sink = "local"
local_dir = "{dir}/audit"
spool_dir = "{dir}/spool"
flush_interval_ms = 100

[auth]
"#,
    );
    for client in CLIENTS {
        let id = client.id;
        text.push_str(&format!(
            r#"
[[auth.clients]]
id = "{id}"
key_sha256 = "{valid}"

[[auth.clients.keys]]
sha256 = "{old}"
not_after = "2099-01-01T00:00:00Z"

[[auth.clients.keys]]
sha256 = "{new}"

[[auth.clients.keys]]
sha256 = "{expired}"
not_after = "2020-01-01T00:00:00+01:00"
{allow}"#,
            valid = hash_key(&format!("pg-{id}")),
            old = hash_key(&format!("pg-{id}-old")),
            new = hash_key(&format!("pg-{id}-new")),
            expired = hash_key(&format!("pg-{id}-expired")),
            allow = client.allow,
        ));
    }
    text
}

/// `(type, message)` of an error body in the dialect of `path`.
fn error_of(path: &str, body: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    if path.starts_with("/v1/messages") {
        assert_eq!(body["type"], "error", "{body}");
        (
            text(&body["error"]["type"]),
            text(&body["error"]["message"]),
        )
    } else {
        (
            text(&body["error"]["type"]),
            text(&body["error"]["message"]),
        )
    }
}

async fn call(
    gw: &TestGateway,
    method: Method,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> support::Reply {
    let auth = key.map(|key| format!("Bearer {key}"));
    let mut all = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        all.push(("authorization", auth.as_str()));
    }
    all.extend_from_slice(headers);
    send(&client(), method, &gw.url(path), &all, body.to_owned()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_by_permission_and_credential_state() {
    let gw = TestGateway::start(&config()).await;
    let mut cases = 0;
    let mut refused = std::collections::BTreeMap::<&str, f64>::new();
    for endpoint in endpoints() {
        for client in CLIENTS {
            let allowed =
                client.allow.is_empty() || matches!(endpoint.label, "chat_completions" | "models");
            for credential in CREDENTIALS {
                cases += 1;
                let key = credential.key(client.id);
                let reply = call(
                    &gw,
                    endpoint.method.clone(),
                    endpoint.path,
                    key.as_deref(),
                    &[],
                    endpoint.body,
                )
                .await;
                let case = format!(
                    "{} × {} × {credential:?}: {}",
                    endpoint.label,
                    client.id,
                    reply.text()
                );
                let (status, kind) = match (credential.failure(), allowed) {
                    (Some(reason), _) => {
                        *refused.entry(reason).or_default() += 1.0;
                        (StatusCode::UNAUTHORIZED, "authentication_error")
                    }
                    (None, false) => {
                        *refused.entry("forbidden").or_default() += 1.0;
                        (StatusCode::FORBIDDEN, "permission_error")
                    }
                    (None, true) => (endpoint.ok, ""),
                };
                assert_eq!(reply.status, status, "{case}");
                if kind.is_empty() {
                    continue;
                }
                let (error_type, message) = error_of(endpoint.path, &reply.json());
                assert_eq!(error_type, kind, "{case}");
                match credential {
                    Credential::Expired => assert!(message.contains("expired"), "{case}"),
                    Credential::None => assert!(message.contains("missing API key"), "{case}"),
                    Credential::Wrong => assert_eq!(message, "invalid API key", "{case}"),
                    _ => {
                        assert!(
                            message.contains(&format!("the `{}` endpoint", endpoint.label)),
                            "{case}"
                        );
                        // What was refused, never what is allowed instead.
                        assert!(!message.contains("chat_completions"), "{case}");
                    }
                }
            }
        }
    }
    assert_eq!(cases, 7 * 2 * 6);
    let metrics = Metrics::scrape(&gw.admin_url("/metrics")).await;
    for (reason, count) in refused {
        assert_eq!(
            metrics.value("promptgate_auth_failures_total", &[("reason", reason)]),
            count,
            "{reason}"
        );
    }
    let text = support::send(
        &client(),
        Method::GET,
        &gw.admin_url("/metrics"),
        &[],
        Vec::new(),
    )
    .await
    .text();
    assert!(
        !text.contains("pg-nobody") && !text.contains(&hash_key("pg-nobody")),
        "a presented key or its digest must never reach /metrics"
    );

    // The config view shows each client's keys by fingerprint and expiry,
    // and its allow-list; never a whole digest.
    let view = send(
        &client(),
        Method::GET,
        &gw.admin_url("/admin/config"),
        &[],
        Vec::new(),
    )
    .await;
    let view_text = view.text();
    let chat_only = &view.json()["auth"]["clients"][0];
    assert_eq!(chat_only["id"], "chat-only", "{view_text}");
    assert_eq!(chat_only["allow"]["models"][0], "demo-allowed*");
    let keys = chat_only["keys"].as_array().unwrap();
    let expired: Vec<bool> = keys
        .iter()
        .map(|k| k["expired"].as_bool().unwrap())
        .collect();
    assert_eq!(expired, [false, false, false, true]);
    assert_eq!(keys[3]["not_after"], "2019-12-31T23:00:00.000Z");
    let digest = hash_key("pg-chat-only");
    assert_eq!(keys[0]["sha256_prefix"], &digest[..12]);
    assert!(!view_text.contains(&digest), "{view_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_experiments_outside_the_allow_list_are_refused_by_name() {
    let gw = TestGateway::start(&config()).await;
    let chat = |model: &str| {
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
    };
    // (client, model, experiment header, expected status, refused name)
    let cases: [(&str, &str, Option<&str>, StatusCode, &str); 6] = [
        ("chat-only", "demo-allowed-2", None, StatusCode::OK, ""),
        (
            "chat-only",
            "demo-other",
            None,
            StatusCode::FORBIDDEN,
            "the model `demo-other`",
        ),
        (
            "chat-only",
            "demo-allowed",
            Some("tone"),
            StatusCode::FORBIDDEN,
            "the experiment `tone`",
        ),
        (
            "chat-only",
            "tone",
            None,
            StatusCode::FORBIDDEN,
            "the experiment `tone`",
        ),
        ("unrestricted", "demo-other", None, StatusCode::OK, ""),
        ("unrestricted", "tone", None, StatusCode::OK, ""),
    ];
    for (id, model, experiment, status, refused) in cases {
        let key = format!("pg-{id}");
        let mut headers = vec![("x-user-id", "u1")];
        if let Some(experiment) = experiment {
            headers.push(("x-promptgate-experiment", experiment));
        }
        let reply = call(
            &gw,
            Method::POST,
            "/v1/chat/completions",
            Some(&key),
            &headers,
            &chat(model),
        )
        .await;
        let case = format!("{id} {model} {experiment:?}: {}", reply.text());
        assert_eq!(reply.status, status, "{case}");
        if status == StatusCode::FORBIDDEN {
            let (kind, message) = error_of("/v1/chat/completions", &reply.json());
            assert_eq!(kind, "permission_error", "{case}");
            assert_eq!(
                message,
                format!("this client is not allowed to call {refused}")
            );
        }
    }
    // The model list shows a restricted client only what it may call.
    let listed = call(
        &gw,
        Method::GET,
        "/v1/models",
        Some("pg-chat-only"),
        &[],
        "",
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let names: Vec<String> = listed.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["demo-allowed"]);
}

/// Clients `a` and `b` both send `x-request-id`s `r1` and `r2`; `a` also
/// sends `r3` and `r4`. Feedback from `b` on `a`'s `r3` (poisoning) and from
/// the trusted reporter on the shared `r1` (ambiguous) must not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_from_another_client_is_excluded_and_shared_request_ids_stay_apart() {
    let mut config = String::from(
        r#"
[providers.demo]
kind = "demo"
[[routes]]
models = ["demo-*"]
providers = ["demo"]
[experiments.exp]
unit_key = { header = "x-user-id" }
[[experiments.exp.variants]]
name = "control"
weight = 1
model = "demo-a"
providers = ["demo"]
[[experiments.exp.variants]]
name = "other"
weight = 0
model = "demo-b"
providers = ["demo"]
[feedback]
trusted_clients = ["reporter"]
[feedback.metrics]
thumbs_up = "boolean"
[audit]
sink = "local"
local_dir = "{dir}/audit"
spool_dir = "{dir}/spool"
flush_interval_ms = 100
[auth]
"#,
    );
    for id in ["a", "b", "reporter"] {
        config.push_str(&format!(
            "[[auth.clients]]\nid = \"{id}\"\nkey_sha256 = \"{}\"\n",
            hash_key(&format!("pg-{id}"))
        ));
    }
    let mut gw = TestGateway::start(&config).await;
    let requests = [
        ("a", "r1"),
        ("a", "r2"),
        ("a", "r3"),
        ("a", "r4"),
        ("b", "r1"),
        ("b", "r2"),
    ];
    for (client_id, request_id) in requests {
        let reply = call(
            &gw,
            Method::POST,
            "/v1/chat/completions",
            Some(&format!("pg-{client_id}")),
            &[("x-request-id", request_id), ("x-user-id", client_id)],
            r#"{"model":"exp","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.headers["x-request-id"], request_id);
    }
    let feedback = [
        ("a", "r1", true),
        ("a", "r2", true),
        ("b", "r1", false),
        ("b", "r3", false),
        ("reporter", "r4", true),
        ("reporter", "r1", true),
    ];
    for (client_id, request_id, value) in feedback {
        let reply = call(
            &gw,
            Method::POST,
            "/v1/feedback",
            Some(&format!("pg-{client_id}")),
            &[],
            &format!(r#"{{"request_id":"{request_id}","metric":"thumbs_up","value":{value}}}"#),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text());
    }
    let audit = gw.dir.path().join("audit");
    gw.begin_shutdown().await.unwrap();

    // Both clients' `r1` are in the log, each with its own client.
    let mut r1_clients: Vec<String> = support::local_audit_records(&audit)
        .iter()
        .filter(|r| r["record_type"] == "request" && r["request_id"] == "r1")
        .map(|r| r["client_id"].as_str().unwrap().to_owned())
        .collect();
    r1_clients.sort();
    assert_eq!(r1_clients, ["a", "b"]);

    let source = promptgate_analyze::Source::open(
        audit.to_str().unwrap(),
        &promptgate_analyze::S3Options::default(),
    )
    .await
    .unwrap();
    let mut options = support::analyze::options("exp");
    options.trusted_clients = vec!["reporter".into()];
    let report = promptgate_analyze::analyze(&source, &options)
        .await
        .unwrap();
    let control = report
        .variants
        .iter()
        .find(|v| v.name == "control")
        .unwrap();
    assert_eq!(control.requests, 6);
    let thumbs = &control.feedback["thumbs_up"];
    // a/r1 true, a/r2 true, b/r1 false (b's own), a/r4 true (reporter).
    assert_eq!((thumbs.n, thumbs.estimate), (4, 0.75), "{thumbs:?}");
    assert_eq!(
        report.read.feedback_excluded,
        promptgate_analyze::join::Excluded {
            foreign_client: 1,
            ambiguous_request_id: 1
        }
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["read"]["feedback_excluded"]["foreign_client"], 1);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("feedback excluded: 1 event(s)")),
        "{:?}",
        report.warnings
    );
    assert!(promptgate_analyze::html::page(&report).contains("feedback excluded"));

    // As an analyst runs it: the trusted reporters from the gateway's config
    // file (whose provider secrets the analyst does not need), or none.
    let command = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
            .args(["analyze", "--source", audit.to_str().unwrap()])
            .args(["--experiment", "exp", "--format", "json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        json["read"]["feedback_excluded"].clone()
    };
    let config_path = gw.config_path.to_str().unwrap();
    assert_eq!(
        command(&["--config", config_path]),
        serde_json::json!({"foreign_client": 1, "ambiguous_request_id": 1})
    );
    // Without the reporter trusted, both of its events are foreign.
    assert_eq!(
        command(&[]),
        serde_json::json!({"foreign_client": 3, "ambiguous_request_id": 0})
    );
}
