//! Overload protection: beyond `server.max_concurrent_requests` in flight, a
//! request is refused at once with a 503 in its caller's dialect and a
//! `retry-after`, counted in the metrics and recorded in the audit log as
//! refused (`overloaded`), while the requests already admitted are served as
//! if nothing happened.

use crate::support;

use std::time::Duration;

use http::{Method, StatusCode};
use promptgate::simulator::{SimConfig, Simulator};
use support::metrics::Metrics;
use support::{CLIENT_KEY, Reply, TestClient, TestGateway, client, send, wait_for_audit};

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
const MESSAGES: &str =
    r#"{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
/// How long the provider takes to answer: the admitted requests hold their
/// permits this long, far longer than a shed request may take.
const PROVIDER_DELAY: Duration = Duration::from_secs(5);

/// The standard config with room for two requests at once, provider timeouts
/// longer than the provider's delay, and a local audit log.
fn config(sim: &Simulator) -> String {
    let text = support::standard_config(sim)
        .replace("[server]\n", "[server]\nmax_concurrent_requests = 2\n")
        .replace(
            "first_byte_timeout_ms = 1000",
            "first_byte_timeout_ms = 30000",
        )
        .replace("total_timeout_ms = 5000", "total_timeout_ms = 30000");
    format!(
        r#"{text}
[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100
"#
    )
}

async fn ask(client: &TestClient, url: &str, body: &str) -> Reply {
    let auth = format!("Bearer {CLIENT_KEY}");
    send(
        client,
        Method::POST,
        url,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        body.to_owned(),
    )
    .await
}

fn request_id(reply: &Reply) -> String {
    reply.headers["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_limit_are_shed_at_once_in_their_dialect_and_recorded() {
    let sim = Simulator::start(SimConfig {
        first_byte_delay: PROVIDER_DELAY,
        ..Default::default()
    })
    .await
    .unwrap();
    let gw = TestGateway::start(&config(&sim)).await;
    let client = client();

    // Two requests, one per dialect, take both places and wait on the provider.
    let admitted = [
        (gw.url("/v1/chat/completions"), CHAT),
        (gw.url("/v1/messages"), MESSAGES),
    ]
    .map(|(url, body)| {
        let client = client.clone();
        tokio::spawn(async move { ask(&client, &url, body).await })
    });
    support::wait::until(
        "both admitted requests to reach the provider",
        Duration::from_secs(10),
        || sim.received().len() == 2,
    )
    .await;

    let shed_chat = ask(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    let shed_messages = ask(&client, &gw.url("/v1/messages"), MESSAGES).await;
    // Refused while the admitted ones still wait: at once, not queued behind them.
    assert!(
        admitted.iter().all(|task| !task.is_finished()),
        "the shed requests were answered only after the admitted ones"
    );
    for shed in [&shed_chat, &shed_messages] {
        assert_eq!(
            shed.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            shed.text()
        );
        assert_eq!(shed.headers["retry-after"], "1");
        assert_eq!(shed.headers["connection"], "close");
    }
    let error = &shed_chat.json()["error"];
    assert_eq!(error["code"], "overloaded", "{}", shed_chat.text());
    assert_eq!(error["type"], "api_error");
    let body = shed_messages.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(shed_messages.headers.contains_key("request-id"));
    assert_eq!(
        sim.received().len(),
        2,
        "a shed request reached the provider"
    );

    // The admitted requests are answered as usual.
    for task in admitted {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(reply.error.is_none(), "{:?}", reply.error);
        assert!(!reply.json()["id"].is_null(), "{}", reply.text());
    }
    // Their places are free again.
    let after = ask(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());

    let metrics = Metrics::scrape(&gw.admin_url("/metrics")).await;
    for endpoint in ["chat_completions", "messages"] {
        assert_eq!(
            metrics.value(
                "promptgate_requests_total",
                &[("endpoint", endpoint), ("outcome", "overloaded")]
            ),
            1.0,
            "{endpoint}"
        );
    }

    let shed_ids = [request_id(&shed_chat), request_id(&shed_messages)];
    let records = wait_for_audit(&gw.dir.path().join("audit"), |records| {
        shed_ids
            .iter()
            .all(|id| records.iter().any(|r| r["request_id"] == id.as_str()))
    })
    .await;
    for (id, endpoint) in shed_ids.iter().zip(["chat_completions", "messages"]) {
        let record = records
            .iter()
            .find(|r| r["request_id"] == id.as_str())
            .unwrap();
        assert_eq!(record["outcome"], "refused", "{record}");
        assert_eq!(record["error_class"], "overloaded", "{record}");
        assert_eq!(record["status"], 503, "{record}");
        assert_eq!(record["endpoint"], endpoint, "{record}");
    }
}
