//! The audit log against a real S3-compatible server (SeaweedFS): records of
//! JSON and streamed calls in both dialects arrive exactly once with their
//! tags, redacted as configured, without raw unit keys; a misconfigured
//! bucket or credentials stop start-up with a clear message.

use crate::support;

use http::{Method, StatusCode};
use support::s3::{S3Server, SECRET_KEY};

use support::process::{audit_config, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_once_each_tagged_and_redacted() {
    let s3 = S3Server::start();
    s3.create_bucket("audit").await;
    let gw = spawn(
        &audit_config(
            &s3.endpoint,
            "audit",
            "redact_json_paths = [\"request.metadata.email\"]\nredaction = \"hash\"",
        ),
        SECRET_KEY,
    )
    .unwrap();
    let client = support::client();
    let mut ids = Vec::new();
    let calls: [(&str, &str, String); 5] = [
        ("/v1/chat/completions", "alice", r#"{"model":"greeting","messages":[{"role":"user","content":"hi"}],"metadata":{"email":"alice@example.com"}}"#.into()),
        ("/v1/chat/completions", "bob", r#"{"model":"greeting","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream"}]}"#.into()),
        ("/v1/messages", "carol", r#"{"model":"greeting","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#.into()),
        ("/v1/messages", "dave", r#"{"model":"greeting","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"s"}]}"#.into()),
        ("/v1/chat/completions", "erin", r#"{"model":"greeting","messages":[}"#.into()),
    ];
    for (path, user, body) in &calls {
        let reply = support::send(
            &client,
            Method::POST,
            &gw.url(path),
            &[("x-user-id", user)],
            body.clone(),
        )
        .await;
        ids.push((
            reply.headers["x-request-id"].to_str().unwrap().to_owned(),
            reply.status,
            *user,
        ));
    }
    gw.stop();

    let records = s3.records("audit", "tenant/audit/").await;
    assert_eq!(records.len(), ids.len(), "{records:#?}");
    for (id, status, user) in &ids {
        let matching: Vec<_> = records
            .iter()
            .filter(|(_, r)| r["request_id"] == id.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "record of {id} must arrive exactly once");
        let (key, record) = matching[0];
        assert!(key.starts_with("tenant/audit/v1/dt="), "{key}");
        let date = &record["ts_start"].as_str().unwrap()[..10];
        let hour = &record["ts_start"].as_str().unwrap()[11..13];
        assert!(key.contains(&format!("/dt={date}/hour={hour}/")), "{key}");
        assert!(key.ends_with(".jsonl.gz"));
        assert_eq!(record["status"], status.as_u16());
        assert_eq!(record["schema_version"], 1);
        let text = record.to_string();
        assert!(
            !text.contains(&format!("\"{user}\"")),
            "raw unit key in the record: {text}"
        );
        if *status == StatusCode::OK {
            assert_eq!(record["outcome"], "completed");
            assert_eq!(record["experiment"], "greeting");
            assert_eq!(record["assignment_reason"], "hash");
            assert_eq!(record["assigned_variant"], record["served_variant"]);
            assert_eq!(record["unit_key_hash"].as_str().unwrap().len(), 32);
            assert!(
                record["response_text"]
                    .as_str()
                    .unwrap()
                    .starts_with("Hello from the promptgate demo provider")
            );
            assert!(record["output_tokens"].as_u64().unwrap() > 0);
            // Measured, and within the life of this test.
            let latency = record["latency_ms"].as_f64().unwrap();
            assert!(latency > 0.0 && latency < 60_000.0, "{record}");
        } else {
            // Malformed JSON: refused before the experiment could be read.
            assert_eq!(record["outcome"], "refused");
            assert_eq!(record["error_class"], "bad_request");
            assert!(record["experiment"].is_null());
        }
    }
    let alice = &records
        .iter()
        .find(|(_, r)| r["request_id"] == ids[0].0.as_str())
        .unwrap()
        .1;
    let email = alice["request"]["metadata"]["email"].as_str().unwrap();
    assert!(email.starts_with("sha256:"), "{email}");
    assert!(!alice.to_string().contains("alice@example.com"));
    let streamed = &records
        .iter()
        .find(|(_, r)| r["request_id"] == ids[1].0.as_str())
        .unwrap()
        .1;
    assert_eq!(streamed["stream"], true);
    assert!(streamed["ttfb_ms"].as_f64().is_some());
    let priced: Vec<_> = records
        .iter()
        .filter(|(_, r)| r["upstream_model"] == "demo-a")
        .collect();
    for (_, record) in priced {
        let expected = record["input_tokens"].as_f64().unwrap() * 1e-6
            + record["output_tokens"].as_f64().unwrap() * 2e-6;
        assert!((record["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-9);
    }
    // Same unit, same pseudonym; the pseudonym is keyed (not a plain hash).
    assert_ne!(alice["unit_key_hash"], streamed["unit_key_hash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_or_a_missing_bucket_stop_start_up_clearly() {
    let s3 = S3Server::start();
    s3.create_bucket("present").await;
    let error = spawn(&audit_config(&s3.endpoint, "absent", ""), SECRET_KEY)
        .err()
        .expect("start must fail");
    assert!(error.contains("bucket `absent` does not exist"), "{error}");
    let error = spawn(&audit_config(&s3.endpoint, "present", ""), "not-the-secret")
        .err()
        .expect("start must fail");
    assert!(
        error.contains("refused the gateway's credentials"),
        "{error}"
    );
    // And with everything right, it starts.
    let gw = spawn(&audit_config(&s3.endpoint, "present", ""), SECRET_KEY).unwrap();
    gw.stop();
}
