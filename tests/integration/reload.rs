//! Hot reload as product owners use it: edit the file, and the gateway
//! follows — atomically, without failing a request, and never on a broken file.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use support::*;

fn config(control: u32, friendly: u32, poll_ms: u64) -> String {
    format!(
        r#"
[server]
config_poll_ms = {poll_ms}
[auth]
open = true
[providers.demo]
kind = "demo"
[[routes]]
models = ["*"]
providers = ["demo"]
[experiments.greeting]
unit_key = {{ header = "x-user-id" }}
[[experiments.greeting.variants]]
name = "control"
weight = {control}
model = "demo-a"
providers = ["demo"]
system = "Be brief."
[[experiments.greeting.variants]]
name = "friendly"
weight = {friendly}
model = "demo-b"
providers = ["demo"]
system = "Be warm."
"#
    )
}

async fn variant_for(
    client: &TestClient,
    gw: &TestGateway,
    user: &str,
) -> (StatusCode, String, String) {
    let reply = send(
        client,
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[("x-user-id", user)],
        r#"{"model":"greeting","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    let variant = reply
        .headers
        .get("x-promptgate-variant")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let version = reply.headers["x-promptgate-config-version"]
        .to_str()
        .unwrap()
        .to_owned();
    (reply.status, variant, version)
}

async fn admin_reload(client: &TestClient, gw: &TestGateway) -> serde_json::Value {
    let reply = send(
        client,
        Method::POST,
        &gw.admin_url("/admin/reload"),
        &[],
        "",
    )
    .await;
    reply.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request_and_new_weights_apply_at_once() {
    let gw = Arc::new(TestGateway::start(&config(100, 0, 0)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client = client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (status, variant, _) =
                    variant_for(&client, &gw, &format!("user-{worker}-{n}")).await;
                if status == StatusCode::OK && !variant.is_empty() {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let client = client();
    let mut versions = std::collections::HashSet::new();
    for round in 0..20 {
        let (control, friendly) = if round % 2 == 0 { (0, 100) } else { (100, 0) };
        gw.write_config(&config(control, friendly, 0));
        let answer = admin_reload(&client, &gw).await;
        assert_eq!(answer["status"], "reloaded", "{answer}");
        versions.insert(answer["config_version"].as_str().unwrap().to_owned());
        // Every request after the swap follows the new weights.
        let expected = if friendly == 100 {
            "friendly"
        } else {
            "control"
        };
        for user in 0..5 {
            let (status, variant, version) =
                variant_for(&client, &gw, &format!("check-{round}-{user}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(variant, expected, "round {round}");
            assert_eq!(version, answer["config_version"].as_str().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too little load: {}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(versions.len(), 2, "two alternating configs, two versions");
    assert_eq!(gw.app().reloader.status().reloads_ok, 20);
}

#[tokio::test]
async fn a_broken_file_keeps_the_old_version_serving_and_says_where() {
    let gw = TestGateway::start(&config(100, 0, 0)).await;
    let client = client();
    let (_, _, before) = variant_for(&client, &gw, "u1").await;

    // Negative weight: valid TOML, invalid config.
    gw.write_config(&config(100, 0, 0).replace("weight = 0", "weight = -5"));
    let reply = send(
        &client,
        Method::POST,
        &gw.admin_url("/admin/reload"),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = reply.json();
    assert_eq!(body["status"], "failed");
    assert_eq!(body["config_version"], before.as_str());
    assert_eq!(
        body["problems"][0]["field"],
        "experiments.greeting.variants[1].weight"
    );
    assert_eq!(body["problems"][0]["line"], 21);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("gateway.toml:21: experiments.greeting.variants[1].weight"),
        "{body}"
    );

    // Not even TOML.
    gw.write_config("[[experiments.greeting.variants]\nname = ");
    let body = admin_reload(&client, &gw).await;
    assert_eq!(body["status"], "failed");
    assert_eq!(body["problems"][0]["line"], 1);

    let (status, variant, version) = variant_for(&client, &gw, "u1").await;
    assert_eq!(
        (status, variant.as_str(), version.as_str()),
        (StatusCode::OK, "control", before.as_str())
    );
    let status = send(
        &client,
        Method::GET,
        &gw.admin_url("/admin/config"),
        &[],
        "",
    )
    .await
    .json();
    assert_eq!(status["reloads_failed"], 2);
    let metrics = send(&client, Method::GET, &gw.admin_url("/metrics"), &[], "")
        .await
        .text();
    assert!(
        metrics.contains("promptgate_config_reloads_total{outcome=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("promptgate_config_info{{version=\"{before}\"}} 1")),
        "{metrics}"
    );
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("gateway.toml:1"),
        "{status}"
    );

    // Fixed: reloads, and the error is cleared.
    gw.write_config(&config(0, 100, 0));
    assert_eq!(admin_reload(&client, &gw).await["status"], "reloaded");
    assert_eq!(variant_for(&client, &gw, "u1").await.1, "friendly");
    let status = send(
        &client,
        Method::GET,
        &gw.admin_url("/admin/config"),
        &[],
        "",
    )
    .await
    .json();
    assert!(status["last_error"].is_null());
}

#[tokio::test]
async fn an_unchanged_file_is_not_reloaded() {
    let gw = TestGateway::start(&config(50, 50, 0)).await;
    let body = admin_reload(&client(), &gw).await;
    assert_eq!(body["status"], "unchanged");
    assert_eq!(gw.app().reloader.status().reloads_ok, 0);
}

#[tokio::test]
async fn edits_are_picked_up_by_the_file_watcher() {
    let gw = TestGateway::start(&config(100, 0, 50)).await;
    let client = client();
    assert_eq!(variant_for(&client, &gw, "u").await.1, "control");
    gw.write_config(&config(0, 100, 50));
    support::wait::eventually(
        "the watcher to reload the edited file",
        Duration::from_secs(5),
        async || (variant_for(&client, &gw, "u").await.1 == "friendly").then_some(()),
    )
    .await;
    assert_eq!(gw.app().reloader.status().reloads_ok, 1);
}

#[tokio::test]
async fn prompt_files_are_watched_too() {
    let gw = TestGateway::start("[auth]\nopen = true\n").await; // placeholder, rewritten below
    let prompt = gw.dir.path().join("system.txt");
    std::fs::write(&prompt, "First prompt.").unwrap();
    let with_file =
        config(100, 0, 50).replace("system = \"Be brief.\"", "system_file = \"system.txt\"");
    gw.write_config(&with_file);
    assert_eq!(admin_reload(&client(), &gw).await["status"], "reloaded");
    let ask = || async {
        post(
            &client(),
            &gw.url("/v1/chat/completions"),
            r#"{"model":"greeting","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await
        .json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(ask().await.contains("First prompt."));
    std::fs::write(&prompt, "Second prompt.").unwrap();
    support::wait::eventually(
        "the prompt file's change to be picked up",
        Duration::from_secs(5),
        async || ask().await.contains("Second prompt.").then_some(()),
    )
    .await;
}

#[tokio::test]
async fn admin_views_and_token() {
    let gw = TestGateway::start(&format!(
        "{}\n[admin]\ntoken_file = \"{{dir}}/provider.key\"\n",
        config(30, 70, 0)
    ))
    .await;
    let client = client();
    let health = send(&client, Method::GET, &gw.admin_url("/healthz"), &[], "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        send(&client, Method::GET, &gw.admin_url("/readyz"), &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let refused = send(
        &client,
        Method::GET,
        &gw.admin_url("/admin/experiments/greeting"),
        &[],
        "",
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let auth = format!("Bearer {PROVIDER_KEY}");
    let view = send(
        &client,
        Method::GET,
        &gw.admin_url("/admin/experiments/greeting"),
        &[("authorization", &auth)],
        "",
    )
    .await
    .json();
    assert_eq!(view["variants"][0]["name"], "control");
    assert_eq!(view["variants"][1]["weight"], 70.0);
    assert!((view["variants"][1]["share_of_enrolled"].as_f64().unwrap() - 0.7).abs() < 1e-9);
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let admin = send(
            &client,
            Method::GET,
            &gw.admin_url(&format!(
                "/admin/experiments/greeting/assignment?unit={user}"
            )),
            &[("authorization", &auth)],
            "",
        )
        .await
        .json();
        assert_eq!(admin["reason"], "hash");
        assert_eq!(
            admin["variant"].as_str().unwrap(),
            variant_for(&client, &gw, user).await.1,
            "{user}"
        );
    }
    let missing = send(
        &client,
        Method::GET,
        &gw.admin_url("/admin/experiments/nope"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
