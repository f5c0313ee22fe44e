//! `POST /v1/feedback` through the real gateway: accepted events land in the
//! audit log's feedback table with typed values; every bad input is a 400 (or
//! 413, 401, 503) in the OpenAI error format, naming its field.

use crate::support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{CLIENT_KEY, TestGateway, client, send, wait_for_audit};

fn config(sim: &promptgate::simulator::Simulator, with_audit: bool) -> String {
    let mut text = support::standard_config(sim);
    text.push_str(
        r#"
[feedback.metrics]
thumbs_up = "boolean"
rating = "float"
"#,
    );
    if with_audit {
        text.push_str(
            r#"
[audit]
sink = "local"
local_dir = "{dir}/audit"
spool_dir = "{dir}/spool"
flush_interval_ms = 100
"#,
        );
    }
    text
}

async fn post(gw: &TestGateway, body: &str) -> support::Reply {
    let auth = format!("Bearer {CLIENT_KEY}");
    send(
        &client(),
        Method::POST,
        &gw.url("/v1/feedback"),
        &[("authorization", &auth)],
        body.to_owned(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_lands_in_its_own_table_with_typed_values() {
    let sim = promptgate::simulator::Simulator::start(Default::default())
        .await
        .unwrap();
    let gw = TestGateway::start(&config(&sim, true)).await;
    let auth = format!("Bearer {CLIENT_KEY}");
    let answer = send(
        &client(),
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[("authorization", &auth)],
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#.to_owned(),
    )
    .await;
    let request_id = answer.headers["x-request-id"].to_str().unwrap().to_owned();

    let thumbs = post(
        &gw,
        &json!({"request_id": request_id, "metric": "thumbs_up", "value": true,
                "comment": "spot on", "metadata": {"screen": "chat"}})
        .to_string(),
    )
    .await;
    assert_eq!(thumbs.status, StatusCode::ACCEPTED, "{}", thumbs.text());
    assert_eq!(thumbs.json()["status"], "accepted");
    let rating = post(
        &gw,
        &json!({"request_id": request_id, "metric": "rating", "value": 4.5}).to_string(),
    )
    .await;
    assert_eq!(rating.status, StatusCode::ACCEPTED, "{}", rating.text());

    let dir = gw.dir.path().join("audit");
    let records = wait_for_audit(&dir, |r| {
        r.iter().filter(|r| r["record_type"] == "feedback").count() == 2
    })
    .await;
    let feedback: Vec<&Value> = records
        .iter()
        .filter(|r| r["record_type"] == "feedback")
        .collect();
    assert_eq!(feedback.len(), 2, "{records:#?}");
    let thumbs_record = feedback
        .iter()
        .find(|r| r["metric"] == "thumbs_up")
        .unwrap();
    assert_eq!(thumbs_record["request_id"], request_id.as_str());
    assert_eq!(thumbs_record["feedback_id"], thumbs.json()["id"]);
    assert_eq!(thumbs_record["value_type"], "boolean");
    assert_eq!(thumbs_record["value_bool"], true);
    assert_eq!(thumbs_record["value_number"], 1.0);
    assert_eq!(thumbs_record["comment"], "spot on");
    assert_eq!(thumbs_record["metadata"]["screen"], "chat");
    assert_eq!(thumbs_record["client_id"], "test-app");
    let rating_record = feedback.iter().find(|r| r["metric"] == "rating").unwrap();
    assert_eq!(rating_record["value_type"], "float");
    assert_eq!(rating_record["value_bool"], Value::Null);
    assert_eq!(rating_record["value_number"], 4.5);
    // Its own table, partitioned by when it was received.
    let day = &rating_record["ts_received"].as_str().unwrap()[..10];
    let files: Vec<String> = walk(&dir.join("feedback/v1"));
    assert!(
        !files.is_empty() && files.iter().all(|f| f.contains(&format!("dt={day}/hour="))),
        "{files:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feedback_is_a_precise_error_in_the_openai_format() {
    let sim = promptgate::simulator::Simulator::start(Default::default())
        .await
        .unwrap();
    let gw = TestGateway::start(&config(&sim, true)).await;
    let cases = [
        (
            r#"{"request_id":"r-1","metric":"thumbs_upp","value":true}"#,
            "metric",
            "unknown metric `thumbs_upp`",
        ),
        (
            r#"{"request_id":"r-1","metric":"thumbs_up","value":1}"#,
            "value",
            "declared boolean",
        ),
        (
            r#"{"request_id":"r 1","metric":"rating","value":1}"#,
            "request_id",
            "visible ASCII",
        ),
        (
            r#"{"request_id":"r-1","metric":"rating","value":1e999}"#,
            "",
            "number out of range",
        ),
        (
            r#"{"request_id":"r-1","metric":"rating","value":1"#,
            "",
            "EOF",
        ),
        (
            r#"{"request_id":"r-1","metric":"rating","value":1,"extra":1}"#,
            "extra",
            "unknown field",
        ),
    ];
    for (body, param, message) in cases {
        let reply = post(&gw, body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text()
        );
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{body}: {error}"
        );
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{error}");
        }
    }
    let oversize = json!({"request_id": "r-1", "metric": "rating", "value": 1,
                          "comment": "x".repeat(20_000)})
    .to_string();
    assert_eq!(
        post(&gw, &oversize).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let anonymous = send(
        &client(),
        Method::POST,
        &gw.url("/v1/feedback"),
        &[],
        r#"{"request_id":"r-1","metric":"rating","value":1}"#.to_owned(),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // Every refusal is itself recorded; no feedback record was written for any of them.
    let records = wait_for_audit(&gw.dir.path().join("audit"), |r| r.len() >= 8).await;
    assert!(
        records.iter().all(|r| r["record_type"] == "request"),
        "{records:#?}"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r["endpoint"] == "feedback")
            .count(),
        8,
        "{records:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_without_an_audit_log_is_refused_clearly() {
    let sim = promptgate::simulator::Simulator::start(Default::default())
        .await
        .unwrap();
    let gw = TestGateway::start(&config(&sim, false)).await;
    let reply = post(&gw, r#"{"request_id":"r-1","metric":"rating","value":1}"#).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("add an [audit] section"),
        "{}",
        reply.text()
    );
}
