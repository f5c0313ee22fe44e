//! One config for every replica: three gateway processes (the real binary)
//! with `--config s3://bucket/key.toml` on one SeaweedFS bucket, a prompt
//! file beside the config object, and a client spreading requests over them.
//! A change put to S3 reaches all three by their ETag polls, a broken one is
//! refused by all three, and S3 going away leaves them serving.

use crate::replicas::SpreadLoad;
use crate::support;

use std::time::{Duration, Instant};

use http::Method;
use promptgate::simulator::{SimConfig, Simulator};
use serde_json::Value;
use support::metrics::Metrics;
use support::process::{Gateway, spawn_with};
use support::s3::{S3Server, SECRET_KEY};

const BUCKET: &str = "gateway-config";
const KEY: &str = "team/gateway.toml";
const PROMPT_KEY: &str = "team/prompts/control.txt";
const POLL: Duration = Duration::from_millis(1_000);

/// The experiment's split and the control variant's prompt, read from
/// `prompts/control.txt` beside the config object.
fn gateway_toml(sim: &Simulator, control_weight: u32) -> String {
    format!(
        r#"
[server]
config_poll_ms = {poll}
[auth]
open = true
[providers.sim]
kind = "openai"
base_url = "{sim}"
max_retries = 0
[[routes]]
models = ["*"]
providers = ["sim"]
[experiments.greeting]
unit_key = {{ header = "x-user-id" }}
[[experiments.greeting.variants]]
name = "control"
weight = {control_weight}
model = "gpt-4o-mini"
providers = ["sim"]
system_file = "prompts/control.txt"
[[experiments.greeting.variants]]
name = "friendly"
weight = {friendly_weight}
model = "gpt-4o"
providers = ["sim"]
system = "Be warm."
"#,
        poll = POLL.as_millis(),
        sim = sim.openai_base_url(),
        friendly_weight = 100 - control_weight,
    )
}

fn uri(key: &str) -> String {
    format!("s3://{BUCKET}/{key}")
}

/// How the config source finds S3 before any config is read.
fn s3_env(endpoint: &str) -> [(&'static str, String); 3] {
    [
        ("PROMPTGATE_CONFIG_S3_ENDPOINT", endpoint.to_owned()),
        ("PROMPTGATE_CONFIG_S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

async fn spawn_from(endpoint: &str, config: String) -> Result<Gateway, String> {
    let endpoint = endpoint.to_owned();
    tokio::task::spawn_blocking(move || {
        let env = s3_env(&endpoint);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let workdir = tempfile::tempdir().unwrap().keep();
        spawn_with(&workdir, &config, &env, SECRET_KEY)
    })
    .await
    .unwrap()
}

async fn put(s3: &S3Server, key: &str, body: &str) {
    s3.client()
        .await
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(
            body.as_bytes().to_vec(),
        ))
        .send()
        .await
        .unwrap_or_else(|error| panic!("put {key}: {error:?}"));
}

async fn admin_json(gw: &Gateway, path: &str) -> (u16, Value) {
    let reply = support::send(
        &support::client(),
        Method::GET,
        &gw.admin_url(path),
        &[],
        "",
    )
    .await;
    (reply.status.as_u16(), reply.json())
}

async fn admin_post(gw: &Gateway, path: &str) -> Value {
    support::send(
        &support::client(),
        Method::POST,
        &gw.admin_url(path),
        &[],
        "",
    )
    .await
    .json()
}

async fn versions(replicas: &[Gateway]) -> Vec<String> {
    let mut out = Vec::new();
    for gw in replicas {
        let (_, config) = admin_json(gw, "/admin/config").await;
        out.push(config["config_version"].as_str().unwrap().to_owned());
    }
    out
}

/// Waits until every replica reports one version other than `old`, within
/// `within`; returns it and how long that took.
async fn wait_all_on(replicas: &[Gateway], old: &str, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let version = support::wait::eventually(
        &format!("every replica to leave config version {old}"),
        within,
        async || {
            let all = versions(replicas).await;
            (all.iter().all(|v| v != old && *v == all[0])).then(|| all[0].clone())
        },
    )
    .await;
    (version, started.elapsed())
}

async fn reloads(gw: &Gateway, outcome: &str) -> f64 {
    Metrics::scrape(&gw.admin_url("/metrics"))
        .await
        .value("promptgate_config_reloads_total", &[("outcome", outcome)])
}

/// `promptgate check-config s3://…`: the version a replica would load.
fn check_config(endpoint: &str, config: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["check-config", config])
        .envs(s3_env(endpoint))
        .env("AWS_ACCESS_KEY_ID", support::s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_follow_one_config_in_s3_without_a_failed_request() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    s3.wait_writable(BUCKET).await;

    // A key that does not exist: start-up fails naming the object and why,
    // with no credential in the message.
    let missing = spawn_from(&s3.endpoint, uri("team/missing.toml"))
        .await
        .err()
        .expect("a replica must not start without its config");
    assert!(
        missing.contains("cannot read s3://gateway-config/team/missing.toml")
            && missing.contains("NoSuchKey"),
        "{missing}"
    );
    assert!(!missing.contains(SECRET_KEY), "{missing}");

    put(&s3, PROMPT_KEY, "Be brief.").await;
    put(&s3, KEY, &gateway_toml(&sim, 50)).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            spawn_from(&s3.endpoint, uri(KEY))
                .await
                .unwrap_or_else(|log| panic!("a replica did not start:\n{log}")),
        );
    }
    let first = versions(&replicas).await;
    assert!(first.iter().all(|v| *v == first[0]), "{first:?}");
    let checked = check_config(&s3.endpoint, &uri(KEY));
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success() && stdout.contains(&format!("version {}", first[0])),
        "check-config must load what the replicas load: {stdout} {}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // A split change, while a client spreads requests over the replicas.
    let load = SpreadLoad::start(&replicas);
    load.wait_answered(60).await;
    put(&s3, KEY, &gateway_toml(&sim, 90)).await;
    let (split, took) = wait_all_on(&replicas, &first[0], 2 * POLL).await;
    eprintln!("config_s3: the split change reached all three replicas in {took:?}");
    load.wait_answered(60).await;

    // Only the prompt object changes: its ETag is watched, its text is in
    // the version.
    put(&s3, PROMPT_KEY, "Be very brief.").await;
    let (prompted, took) = wait_all_on(&replicas, &split, 2 * POLL).await;
    eprintln!("config_s3: the prompt change reached all three replicas in {took:?}");
    load.wait_answered(60).await;

    // A broken config: refused by every replica, the old version serving.
    let broken = gateway_toml(&sim, 90).replace("weight = 90", "weight = \"most\"");
    put(&s3, KEY, &broken).await;
    for gw in &replicas {
        support::wait::eventually(
            "every replica to refuse the broken config",
            2 * POLL,
            async || (reloads(gw, "failed").await >= 1.0).then_some(()),
        )
        .await;
        let (_, config) = admin_json(gw, "/admin/config").await;
        assert_eq!(config["config_version"], prompted.as_str(), "{config}");
        let error = config["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("s3://gateway-config/team/gateway.toml") && error.contains("weight"),
            "{config}"
        );
    }
    load.wait_answered(60).await;

    // The fix recovers them all, on one version.
    put(&s3, KEY, &gateway_toml(&sim, 70)).await;
    let (fixed, _) = wait_all_on(&replicas, &prompted, 2 * POLL).await;
    load.wait_answered(60).await;
    let routed = load.finish().await;
    eprintln!(
        "config_s3: {}",
        support::load::summary(&routed.iter().map(|r| r.sent.clone()).collect::<Vec<_>>())
    );
    let failed: Vec<_> = routed.iter().filter(|r| !r.sent.complete_ok()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        routed.len(),
        failed.first().map(|r| &r.sent)
    );
    for replica in 0..3 {
        assert!(routed.iter().any(|r| r.replica == replica));
    }
    for gw in &replicas {
        let info = Metrics::scrape(&gw.admin_url("/metrics"))
            .await
            .value("promptgate_config_info", &[("version", fixed.as_str())]);
        assert_eq!(
            info, 1.0,
            "promptgate_config_info names the version in force"
        );
    }

    let reply = admin_post(&replicas[0], "/admin/reload").await;
    assert_eq!(reply["status"], "unchanged", "{reply}");
    assert_eq!(reply["config_version"], fixed.as_str());

    // S3 goes away: every replica keeps serving its config, stays ready, and
    // says in /readyz and the metrics that its config source fails.
    s3.stop();
    let reply = admin_post(&replicas[0], "/admin/reload").await;
    assert_eq!(reply["status"], "failed", "{reply}");
    assert_eq!(reply["config_version"], fixed.as_str());
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot read s3://gateway-config/team/gateway.toml")),
        "{reply}"
    );
    // SIGHUP reads S3 the same way: one more failed reload.
    let failed_before = reloads(&replicas[1], "failed").await;
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &replicas[1].pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    support::wait::eventually(
        "the SIGHUP reload to fail while S3 is gone",
        Duration::from_secs(30),
        async || (reloads(&replicas[1], "failed").await > failed_before).then_some(()),
    )
    .await;
    for gw in &replicas {
        support::wait::eventually(
            "the replica to report its config source failing",
            Duration::from_secs(30),
            async || {
                let (status, ready) = admin_json(gw, "/readyz").await;
                (ready["config_source"]["status"] == "failing").then_some((status, ready))
            },
        )
        .await;
        let (status, ready) = admin_json(gw, "/readyz").await;
        assert_eq!(status, 200, "serving is fine: {ready}");
        assert_eq!(ready["config_version"], fixed.as_str());
        assert_eq!(
            ready["config_source"]["name"],
            "s3://gateway-config/team/gateway.toml"
        );
        assert!(
            support::load::metric(gw, "promptgate_config_source_errors_total").await >= 1,
            "promptgate_config_source_errors_total counts the failed polls"
        );
        let sent = support::load::one(&support::client(), gw, "after-s3-left").await;
        assert!(sent.complete_ok(), "{sent:?}");
    }
    for gw in replicas {
        support::load::sigterm(gw).await;
    }
}

#[tokio::test]
async fn a_replica_that_cannot_reach_s3_at_start_up_names_the_object_and_the_cause() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let started = Instant::now();
    let log = spawn_from(&endpoint, uri(KEY))
        .await
        .err()
        .expect("no config, no start");
    assert!(
        log.contains("cannot read s3://gateway-config/team/gateway.toml")
            && log.to_lowercase().contains("connect"),
        "{log}"
    );
    assert!(!log.contains(SECRET_KEY), "{log}");
    eprintln!(
        "config_s3: start-up gave up on unreachable S3 after {:?}",
        started.elapsed()
    );
    let checked = check_config(&endpoint, &uri(KEY));
    assert!(!checked.status.success());
    assert!(
        String::from_utf8_lossy(&checked.stderr).contains("s3://gateway-config/team/gateway.toml")
    );
}
