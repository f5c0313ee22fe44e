//! `promptgate export-dataset` on logs written by a real gateway run: the
//! filters (experiment, variant, feedback through analyze's join, error
//! class, dates), deterministic stratified sampling, the served answer kept
//! as the unreviewed expected output, and redacted values never filled in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support;

const EXPERIMENT_CONFIG: &str = r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[[routes]]
models = ["*"]
providers = ["demo"]
[experiments.greeting]
unit_key = { header = "x-user-id" }
[[experiments.greeting.variants]]
name = "control"
weight = 1
model = "demo-a"
providers = ["demo"]
[[experiments.greeting.variants]]
name = "friendly"
weight = 1
model = "demo-a"
providers = ["demo"]
system = "Be warm."
[feedback.metrics]
thumbs_up = "boolean"
[audit]
sink = "local"
local_dir = "{dir}/audit"
spool_dir = "{dir}/spool"
flush_interval_ms = 100
"#;

/// What the caller of one request saw.
struct Served {
    variant: String,
    answer: String,
    thumbs_up: bool,
}

fn export(audit: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["export-dataset", "--source", audit.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn candidates(output: &Output) -> Vec<Value> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn ids(candidates: &[Value]) -> Vec<String> {
    candidates
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn per_variant(candidates: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for candidate in candidates {
        *counts
            .entry(candidate["origin"]["variant"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

/// 60 users ask a question each; every third one gives a thumbs down. A
/// request outside the experiment and an embeddings call complete the log.
async fn gateway_log() -> (support::TestGateway, HashMap<String, Served>) {
    let mut gw = support::TestGateway::start(EXPERIMENT_CONFIG).await;
    let client = support::client();
    let mut served = HashMap::new();
    for i in 0..60 {
        let reply = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", &format!("user-{i}"))],
            format!(
                r#"{{"model":"greeting","messages":[{{"role":"user","content":"question {i}"}}]}}"#
            ),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        let thumbs_up = i % 3 != 0;
        let feedback = json!({"request_id": id, "metric": "thumbs_up", "value": thumbs_up});
        let posted = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/feedback"),
            &[],
            feedback.to_string(),
        )
        .await;
        assert_eq!(posted.status, StatusCode::ACCEPTED, "{}", posted.text());
        served.insert(
            id,
            Served {
                variant: reply.headers["x-promptgate-variant"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
                answer: body["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                thumbs_up,
            },
        );
    }
    for (path, body) in [
        (
            "/v1/chat/completions",
            r#"{"model":"plain","messages":[{"role":"user","content":"outside"}]}"#,
        ),
        ("/v1/embeddings", r#"{"model":"embed","input":"vectors"}"#),
    ] {
        let reply = support::send(&client, Method::POST, &gw.url(path), &[], body.to_owned()).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    gw.begin_shutdown().await.unwrap();
    (gw, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbs_down_answers_become_unreviewed_candidates() {
    let (gw, served) = gateway_log().await;
    let audit = gw.dir.path().join("audit");
    let output = export(
        &audit,
        &["--experiment", "greeting", "--feedback", "thumbs_up=false"],
    );
    let exported = candidates(&output);
    let thumbs_down: HashSet<&String> = served
        .iter()
        .filter(|(_, s)| !s.thumbs_up)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(exported.len(), 20);
    assert_eq!(ids(&exported).iter().collect::<HashSet<_>>(), thumbs_down);
    for candidate in &exported {
        let caller_saw = &served[candidate["id"].as_str().unwrap()];
        assert_eq!(
            candidate["expected"],
            caller_saw.answer.as_str(),
            "the served answer"
        );
        assert_eq!(candidate["review"], "unreviewed");
        assert_eq!(candidate["tags"], json!({}));
        assert_eq!(candidate["origin"]["experiment"], "greeting");
        assert_eq!(candidate["origin"]["variant"], caller_saw.variant.as_str());
        assert_eq!(candidate["origin"]["feedback"], json!({"thumbs_up": false}));
        assert_eq!(candidate["origin"]["request_id"], candidate["id"]);
        assert!(candidate["origin"]["ts"].as_str().unwrap().ends_with('Z'));
        // The conversation as the provider got it: the variant's system prompt included.
        let messages = candidate["messages"].as_array().unwrap();
        let user = &messages[messages.len() - 1];
        assert_eq!(user["role"], "user");
        assert!(user["content"].as_str().unwrap().starts_with("question "));
        let has_system = messages[0]["role"] == "system";
        assert_eq!(has_system, caller_saw.variant == "friendly", "{messages:?}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("20 candidates written"), "{stderr}");
    assert!(
        stderr.contains("1 records skipped: not chat requests"),
        "the embeddings call: {stderr}"
    );

    // Without filters every chat answer is a candidate, the one outside the
    // experiment included; `--error-class none` keeps them all (no errors).
    assert_eq!(candidates(&export(&audit, &[])).len(), 61);
    assert_eq!(
        candidates(&export(&audit, &["--error-class", "none"])).len(),
        61
    );
    let none = export(&audit, &["--error-class", "timeout"]);
    assert!(candidates(&none).is_empty());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("warning: no request matched the filters")
    );
    let friendly = candidates(&export(
        &audit,
        &["--variant", "friendly", "--feedback", "thumbs_up=true"],
    ));
    let expected = served
        .values()
        .filter(|s| s.variant == "friendly" && s.thumbs_up)
        .count();
    assert_eq!(friendly.len(), expected);
    assert!(
        friendly
            .iter()
            .all(|c| c["origin"]["variant"] == "friendly")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_is_stratified_and_repeatable_with_its_seed() {
    let (gw, served) = gateway_log().await;
    let audit = gw.dir.path().join("audit");
    let sizes = per_variant(
        &served
            .values()
            .map(|s| json!({"origin": {"variant": s.variant}}))
            .collect::<Vec<_>>(),
    );
    assert!(
        sizes.values().all(|&n| n >= 5),
        "both variants served enough: {sizes:?}"
    );

    let args = [
        "--experiment",
        "greeting",
        "--per-variant",
        "4",
        "--seed",
        "5",
    ];
    let first = candidates(&export(&audit, &args));
    assert_eq!(
        per_variant(&first),
        BTreeMap::from([("control".into(), 4), ("friendly".into(), 4)])
    );
    let again = candidates(&export(&audit, &args));
    assert_eq!(first, again, "same seed, same candidates, same order");
    let reseeded = candidates(&export(
        &audit,
        &[
            "--experiment",
            "greeting",
            "--per-variant",
            "4",
            "--seed",
            "6",
        ],
    ));
    assert_ne!(ids(&first), ids(&reseeded), "another seed, another sample");
    // Candidates come in time order.
    let times: Vec<&str> = first
        .iter()
        .map(|c| c["origin"]["ts"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");

    let split = candidates(&export(
        &audit,
        &[
            "--sample",
            "5",
            "--stratify",
            "variant",
            "--experiment",
            "greeting",
        ],
    ));
    assert_eq!(
        per_variant(&split),
        BTreeMap::from([("control".into(), 3), ("friendly".into(), 2)])
    );
    let overall = candidates(&export(&audit, &["--sample", "7"]));
    assert_eq!(overall.len(), 7);
    // Sampling composes with the feedback filter: only thumbs down are drawn.
    let down = candidates(&export(
        &audit,
        &["--per-variant", "100", "--feedback", "thumbs_up=false"],
    ));
    assert_eq!(down.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_empty_windows_are_errors_that_say_why() {
    let (gw, _) = gateway_log().await;
    let audit = gw.dir.path().join("audit");
    let bad = export(&audit, &["--feedback", "thumbs_up"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected METRIC=VALUE"));
    let both = export(&audit, &["--per-variant", "2", "--sample", "3"]);
    assert_eq!(both.status.code(), Some(2));
    let past = export(&audit, &["--to", "2000-01-01"]);
    assert_eq!(past.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&past.stderr);
    assert!(
        stderr.contains("no partition of") && stderr.contains("it holds dt="),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_values_stay_redacted() {
    let config = EXPERIMENT_CONFIG.replace(
        "flush_interval_ms = 100",
        "flush_interval_ms = 100\nredact_json_paths = [\"request.messages[*].content\", \"response_text\"]\nredaction = \"hash\"",
    );
    let mut gw = support::TestGateway::start(&config).await;
    let client = support::client();
    let secret = "my card is 4111 1111 1111 1111";
    let body = json!({"model": "greeting", "messages": [{"role": "user", "content": secret}]});
    let reply = support::send(
        &client,
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[],
        body.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    // The demo provider repeats the prompt, and `response` (not redacted here)
    // holds it: the export must not take the answer from there.
    assert!(reply.text().contains(secret));
    gw.begin_shutdown().await.unwrap();
    let audit = gw.dir.path().join("audit");
    let output = export(&audit, &[]);
    let exported = candidates(&output);
    assert_eq!(exported.len(), 1);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("card"),
        "the secret is nowhere in the candidates: {text}"
    );
    let candidate = &exported[0];
    let marker = |value: &Value| {
        value
            .as_str()
            .is_some_and(|s| s.starts_with("sha256:") && s.len() == 71)
    };
    assert!(marker(&candidate["expected"]), "{candidate}");
    let messages = candidate["messages"].as_array().unwrap();
    assert!(
        messages.iter().all(|m| marker(&m["content"])),
        "{messages:?}"
    );
    let redacted: Vec<&str> = candidate["origin"]["redacted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(redacted.len(), messages.len() + 1, "{redacted:?}");
    assert!(redacted.contains(&"expected"));
    assert!(redacted.contains(&"request.messages[0].content"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_read_from_s3_with_analyze_source_flags() {
    use support::process::{audit_config, spawn};
    use support::s3::{S3Server, SECRET_KEY};
    let s3 = S3Server::start();
    s3.create_bucket("audit").await;
    let gw = spawn(&audit_config(&s3.endpoint, "audit", ""), SECRET_KEY).unwrap();
    let client = support::client();
    for i in 0..12 {
        let reply = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", &format!("user-{i}"))],
            format!(r#"{{"model":"greeting","messages":[{{"role":"user","content":"hi {i}"}}]}}"#),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    // A graceful stop uploads the spool's segments.
    gw.stop();
    let output = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args([
            "export-dataset",
            "--source",
            "s3://audit/tenant/audit",
            "--experiment",
            "greeting",
        ])
        .args([
            "--sample",
            "5",
            "--s3-endpoint",
            &s3.endpoint,
            "--s3-force-path-style",
        ])
        .env("AWS_ACCESS_KEY_ID", support::s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let exported = candidates(&output);
    assert_eq!(exported.len(), 5);
    for candidate in &exported {
        let messages = candidate["messages"].as_array().unwrap();
        let content = messages.last().unwrap()["content"].as_str().unwrap();
        assert!(content.starts_with("hi "), "{candidate}");
        assert_eq!(candidate["review"], "unreviewed");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("of 12 matching requests"), "{stderr}");
}
