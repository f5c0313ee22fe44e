//! Shadow calls through the real gateway: a candidate variant runs beside the
//! served one and never hurts it (latency, errors, bytes); its records pair
//! with the served ones; cap, budget, sampling, reload and shutdown behave as
//! documented.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use promptgate::simulator::{Fault, SimConfig, Simulator};
use promptgate_core::experiments::assign;
use serde_json::Value;
use support::metrics::Metrics;
use support::{TestGateway, client, local_audit_records, send, wait_for_audit};

const CHAT: &str = r#"{"model":"summarize","messages":[{"role":"user","content":"Shadow me"}]}"#;
const STREAM: &str = r#"{"model":"summarize","stream":true,"messages":[{"role":"user","content":"Shadow my stream"}]}"#;

/// An experiment `summarize` serving `control` (at `served`) with the
/// zero-weight `candidate` (at `shadow`) run in shadow as `shadow_section`
/// says, a twin experiment `plain` without shadow, and a local audit log.
fn config(served: &Simulator, shadow: &Simulator, shadow_section: &str) -> String {
    format!(
        r#"
[server]
shutdown_grace_ms = 300

[auth]
open = true

[providers.served]
kind = "openai"
base_url = "{served}"
max_retries = 0

[providers.shadow]
kind = "openai"
base_url = "{shadow}"
max_retries = 0

[providers.demo]
kind = "demo"

[[routes]]
models = ["*"]
providers = ["served"]

[experiments.summarize]
unit_key = {{ header = "x-user-id" }}

[[experiments.summarize.variants]]
name = "control"
weight = 1
version = "c1"
model = "model-control"
providers = ["served"]
system = "Summarise."

[[experiments.summarize.variants]]
name = "candidate"
weight = 0
version = "k1"
model = "model-candidate"
providers = ["shadow"]
system = "Summarise in one line."

[experiments.summarize.shadow]
variants = ["candidate"]
{shadow_section}

[experiments.plain]
unit_key = {{ header = "x-user-id" }}

[[experiments.plain.variants]]
name = "control"
weight = 1
version = "c1"
model = "model-control"
providers = ["served"]
system = "Summarise."

[prices.model-candidate]
input_per_million = 1000.0
output_per_million = 2000.0

[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100
"#,
        served = served.openai_base_url(),
        shadow = shadow.openai_base_url(),
    )
}

async fn sims(shadow: SimConfig) -> (Simulator, Simulator) {
    (
        Simulator::start(SimConfig::default()).await.unwrap(),
        Simulator::start(shadow).await.unwrap(),
    )
}

fn audit_dir(gw: &TestGateway) -> std::path::PathBuf {
    gw.dir.path().join("audit")
}

fn shadows(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["role"] == "shadow").collect()
}

fn served_by_id(records: &[Value]) -> HashMap<&str, &Value> {
    records
        .iter()
        .filter(|r| r["role"] == "served")
        .map(|r| (r["request_id"].as_str().unwrap(), r))
        .collect()
}

async fn chat(gw: &TestGateway, experiment: &str, user: &str, body: &str) -> support::Reply {
    let body = body.replace("summarize", experiment);
    send(
        &client(),
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[("x-user-id", user)],
        body,
    )
    .await
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// The label set of the shadow series: the experiment (the only one with a shadow).
const SUMMARIZE: &[(&str, &str)] = &[("experiment", "summarize")];

async fn metrics(gw: &TestGateway) -> Metrics {
    Metrics::scrape(&gw.admin_url("/metrics")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shadow_does_not_slow_the_served_response() {
    let (served, shadow) = sims(SimConfig {
        first_byte_delay: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let gw = TestGateway::start(&config(&served, &shadow, "sample_percent = 100")).await;
    let (mut with_shadow, mut without) = (Vec::new(), Vec::new());
    // Interleaved, so both cases see the same machine.
    for round in 0..8 {
        for (experiment, latencies) in [("summarize", &mut with_shadow), ("plain", &mut without)] {
            let started = Instant::now();
            let reply = chat(&gw, experiment, &format!("user-{round}"), CHAT).await;
            latencies.push(started.elapsed());
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        }
    }
    let (with_p50, without_p50) = (median(with_shadow.clone()), median(without));
    assert!(
        with_p50 <= without_p50 + Duration::from_millis(25),
        "served p50 {with_p50:?} with a 2 s shadow vs {without_p50:?} without"
    );
    let slowest = with_shadow.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(1),
        "a served call waited: {slowest:?}"
    );

    let records = wait_for_audit(&audit_dir(&gw), |r| shadows(r).len() == 8).await;
    let served_records = served_by_id(&records);
    assert_eq!(shadows(&records).len(), 8, "{records:#?}");
    for shadow in shadows(&records) {
        let served = served_records[shadow["shadow_of"].as_str().unwrap()];
        assert_eq!(shadow["outcome"], "completed");
        assert!(shadow["latency_ms"].as_f64().unwrap() >= 2000.0, "{shadow}");
        assert!(served["latency_ms"].as_f64().unwrap() < 1000.0, "{served}");
        // Served first: its answer was complete long before the shadow's.
        assert!(served["ts_end"].as_str().unwrap() < shadow["ts_end"].as_str().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_failures_are_recorded_and_never_reach_the_caller() {
    let (served, shadow) = sims(SimConfig::default()).await;
    let gw = TestGateway::start(&config(
        &served,
        &shadow,
        "sample_percent = 100\ntimeout_ms = 400",
    ))
    .await;
    let normal = chat(&gw, "plain", "u", CHAT).await.text();
    let cases = [
        (
            Fault::Status {
                status: 500,
                retry_after: None,
            },
            CHAT,
            "completed",
            "provider_error",
        ),
        (Fault::Hang, CHAT, "failed", "timeout"),
        (Fault::Close, CHAT, "failed", "upstream"),
        (
            Fault::DropAfter(2),
            STREAM,
            "upstream_broken",
            "upstream_broken",
        ),
    ];
    let mut expected = HashMap::new();
    for (fault, body, outcome, class) in cases {
        shadow.push_fault(fault);
        let reply = chat(&gw, "summarize", "u", body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        if body == CHAT {
            assert_eq!(reply.text(), normal, "the caller's answer must not change");
        } else {
            assert!(
                reply.text().ends_with("data: [DONE]\n\n"),
                "{}",
                reply.text()
            );
        }
        let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        expected.insert(id, (outcome, class));
    }
    let records = wait_for_audit(&audit_dir(&gw), |r| shadows(r).len() == 4).await;
    assert_eq!(shadows(&records).len(), 4, "{records:#?}");
    for shadow in shadows(&records) {
        let (outcome, class) = expected[shadow["shadow_of"].as_str().unwrap()];
        assert_eq!(shadow["outcome"], outcome, "{shadow}");
        assert_eq!(shadow["error_class"], class, "{shadow}");
        assert_eq!(shadow["served_variant"], "candidate");
    }
    for served in served_by_id(&records).values() {
        assert_eq!(served["status"], 200, "{served}");
        assert_eq!(served["error_class"], Value::Null, "{served}");
    }
    let metrics = metrics(&gw).await;
    assert_eq!(
        metrics.value("promptgate_shadow_calls_failed_total", SUMMARIZE),
        4.0
    );
    assert_eq!(
        metrics.value("promptgate_shadow_calls_started_total", SUMMARIZE),
        4.0
    );
    assert_eq!(
        metrics.value("promptgate_shadow_calls_in_flight", SUMMARIZE),
        0.0
    );
    // The shadow's provider failures are counted apart from the served ones:
    // the 500, the refused connection and the broken stream (the hang ran
    // into the shadow's own timeout before the provider's).
    for class in ["provider_error", "unreachable", "upstream_broken"] {
        assert_eq!(
            metrics.value(
                "promptgate_provider_errors_total",
                &[("class", class), ("provider", "shadow"), ("role", "shadow")]
            ),
            1.0,
            "{metrics:#?}"
        );
    }
    assert!(
        metrics
            .samples
            .iter()
            .all(|s| s.labels.get("role").map(String::as_str) != Some("served")),
        "{metrics:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_skips_the_excess() {
    let (served, shadow) = sims(SimConfig {
        first_byte_delay: Duration::from_millis(800),
        ..SimConfig::default()
    })
    .await;
    let gw = TestGateway::start(&config(
        &served,
        &shadow,
        "sample_percent = 100\nmax_concurrent = 2",
    ))
    .await;
    let calls = (0..8).map(|i| {
        let gw = &gw;
        async move { chat(gw, "summarize", &format!("user-{i}"), CHAT).await }
    });
    for reply in futures_util::future::join_all(calls).await {
        assert_eq!(reply.status, StatusCode::OK);
    }
    let metrics = metrics(&gw).await;
    assert!(
        metrics.value("promptgate_shadow_calls_in_flight", SUMMARIZE) <= 2.0,
        "{metrics:#?}"
    );
    assert_eq!(
        metrics.value(
            "promptgate_shadow_calls_skipped_total",
            &[
                ("experiment", "summarize"),
                ("reason", "shadow_concurrency_limit")
            ]
        ),
        6.0
    );
    let records = wait_for_audit(&audit_dir(&gw), |r| shadows(r).len() == 8).await;
    let outcomes: Vec<(&str, &str)> = shadows(&records)
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["error_class"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.0 == "completed").count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| *o == &("skipped", "shadow_concurrency_limit"))
            .count(),
        6,
        "{outcomes:?}"
    );
    assert_eq!(
        shadow.received().len(),
        2,
        "never more than the cap reached the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_budget_skips_once_spent() {
    let (served, shadow) = sims(SimConfig::default()).await;
    let gw = TestGateway::start(&config(
        &served,
        &shadow,
        "sample_percent = 100\nmax_requests_per_day = 3\nmax_usd_per_day = 100.0",
    ))
    .await;
    for i in 0..5 {
        assert_eq!(
            chat(&gw, "summarize", &format!("u{i}"), CHAT).await.status,
            StatusCode::OK
        );
        // One at a time, so each call's spend is counted before the next.
        wait_for_audit(&audit_dir(&gw), |r| shadows(r).len() > i).await;
    }
    let records = local_audit_records(&audit_dir(&gw));
    let skipped = shadows(&records)
        .iter()
        .filter(|r| r["outcome"] == "skipped" && r["error_class"] == "shadow_budget_exhausted")
        .count();
    assert_eq!(skipped, 2, "{records:#?}");
    let metrics = metrics(&gw).await;
    assert_eq!(
        metrics.value("promptgate_shadow_calls_completed_total", SUMMARIZE),
        3.0
    );
    // Priced at 1000/2000 USD per million tokens: three calls cost more than nothing.
    let cost = metrics.value("promptgate_shadow_cost_usd_total", SUMMARIZE);
    let recorded: f64 = shadows(&records)
        .iter()
        .filter_map(|r| r["cost_usd"].as_f64())
        .sum();
    assert!(
        cost > 0.0 && (cost - recorded).abs() < 1e-6,
        "{cost} vs {recorded}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_hash_and_is_sticky_per_unit() {
    let (served, shadow) = sims(SimConfig::default()).await;
    let gw = TestGateway::start(&config(&served, &shadow, "sample_percent = 30")).await;
    let units: Vec<String> = (0..600).map(|i| format!("unit-{i}")).collect();
    let mut shadowed = HashSet::new();
    for unit in &units {
        chat(&gw, "summarize", unit, CHAT).await;
    }
    // Three more requests for each of the first 20 units: sticky means all or none.
    for unit in &units[..20] {
        for _ in 0..3 {
            chat(&gw, "summarize", unit, CHAT).await;
        }
    }
    let repeats = |unit: &String| if units[..20].contains(unit) { 4 } else { 1 };
    let predicted: usize = units
        .iter()
        .filter(|u| assign::is_shadow_sampled("summarize", u, 30.0))
        .map(repeats)
        .sum();
    let shadow_units = || -> Vec<String> {
        gw.sink
            .all()
            .into_iter()
            .filter_map(|e| e.start.experiment)
            .filter(|tag| tag.shadow_of.is_some())
            .map(|tag| tag.unit_key.to_string())
            .collect()
    };
    support::wait::until(
        "the predicted shadow calls to report their exchanges",
        Duration::from_secs(10),
        || shadow_units().len() >= predicted,
    )
    .await;
    let mut per_unit: HashMap<String, usize> = HashMap::new();
    for unit in shadow_units() {
        *per_unit.entry(unit).or_default() += 1;
    }
    for unit in &units {
        let sampled = assign::is_shadow_sampled("summarize", unit, 30.0);
        let expected = if sampled { repeats(unit) } else { 0 };
        assert_eq!(per_unit.get(unit).copied().unwrap_or(0), expected, "{unit}");
        if sampled {
            shadowed.insert(unit);
        }
    }
    // 600 units at 30%: mean 180, sd √(600·0.3·0.7) ≈ 11.2; ±4.5 sd.
    let count = shadowed.len() as f64;
    assert!(
        (count - 180.0).abs() <= 50.0,
        "{count} of 600 sampled at 30%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_by_request_id_is_not_sticky() {
    let (served, shadow) = sims(SimConfig::default()).await;
    let gw = TestGateway::start(&config(
        &served,
        &shadow,
        "sample_percent = 50\nsticky = false",
    ))
    .await;
    for _ in 0..200 {
        chat(&gw, "summarize", "one-user", CHAT).await;
    }
    // Every shadow call was started before its served request was answered;
    // wait until each has reported its exchange.
    let started = metrics(&gw)
        .await
        .value("promptgate_shadow_calls_started_total", SUMMARIZE);
    let shadow_exchanges = || {
        gw.sink
            .all()
            .iter()
            .filter(|e| e.start.experiment.as_ref().unwrap().shadow_of.is_some())
            .count() as f64
    };
    support::wait::until(
        "every started shadow call to report its exchange",
        Duration::from_secs(10),
        || shadow_exchanges() == started,
    )
    .await;
    let shadowed = shadow_exchanges();
    // Binomial(200, 0.5): sd ≈ 7.1; ±5 sd.
    assert!((shadowed - 100.0).abs() <= 35.0, "{shadowed} of 200 at 50%");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_is_byte_identical_with_a_shadow() {
    let (served, shadow) = sims(SimConfig {
        chunk_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await;
    let gw = TestGateway::start(&config(&served, &shadow, "sample_percent = 100")).await;
    let with_shadow = chat(&gw, "summarize", "u", STREAM).await;
    let without = chat(&gw, "plain", "u", STREAM).await;
    assert_eq!(with_shadow.status, StatusCode::OK);
    assert!(with_shadow.text().contains("data: [DONE]"));
    assert_eq!(
        with_shadow.body, without.body,
        "the shadow changed the caller's bytes"
    );

    let records = wait_for_audit(&audit_dir(&gw), |r| shadows(r).len() == 1).await;
    let shadow_record = shadows(&records)[0];
    assert_eq!(shadow_record["outcome"], "completed");
    assert_eq!(shadow_record["stream"], true);
    assert!(!shadow_record["response_text"].as_str().unwrap().is_empty());
    // The gateway asks a shadow OpenAI stream for usage, so tokens and cost are known.
    assert!(
        shadow_record["output_tokens"].as_u64().unwrap() > 0,
        "{shadow_record}"
    );
    assert!(
        shadow_record["cost_usd"].as_f64().unwrap() > 0.0,
        "{shadow_record}"
    );
    let received = shadow.received();
    assert_eq!(received.len(), 1);
    let body = received[0].json();
    assert_eq!(body["model"], "model-candidate");
    assert_eq!(body["messages"][0]["content"], "Summarise in one line.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_uses_the_snapshot_of_its_served_request() {
    let (served, shadow) = sims(SimConfig {
        first_byte_delay: Duration::from_millis(600),
        ..SimConfig::default()
    })
    .await;
    let original = config(&served, &shadow, "sample_percent = 100");
    let gw = TestGateway::start(&original).await;
    let reply = chat(&gw, "summarize", "u", CHAT).await;
    assert_eq!(reply.status, StatusCode::OK);
    // Reload while the shadow is still waiting for its provider.
    gw.write_config(
        &original
            .replace("version = \"k1\"", "version = \"k2\"")
            .replace("Summarise in one line.", "Summarise in two lines."),
    );
    let reload = send(
        &client(),
        Method::POST,
        &gw.admin_url("/admin/reload"),
        &[],
        "",
    )
    .await;
    assert_eq!(reload.json()["status"], "reloaded", "{}", reload.text());

    let records = wait_for_audit(&audit_dir(&gw), |r| shadows(r).len() == 1).await;
    let shadow_record = shadows(&records)[0];
    let served_record = served_by_id(&records)[reply.headers["x-request-id"].to_str().unwrap()];
    assert_eq!(
        shadow_record["config_version"],
        served_record["config_version"]
    );
    assert_eq!(shadow_record["variant_version"], "k1");
    assert_eq!(
        shadow.received()[0].json()["messages"][0]["content"],
        "Summarise in one line."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_shadows_still_running_after_the_grace_period() {
    // Shadow streams send a frame every 2 s: the second call is mid-body at shutdown.
    let (served, shadow) = sims(SimConfig {
        chunk_delay: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    // A grace period with room for the audit log's drain and upload, which
    // share it at shutdown: with 300 ms a loaded machine left the records in
    // the spool (uploaded at the next start), so the test found none. The
    // shadows' cancellation at the end of the grace period is timed exactly
    // by `shadow::tests` (paused clock).
    let text = config(&served, &shadow, "sample_percent = 100")
        .replace("shutdown_grace_ms = 300", "shutdown_grace_ms = 3000");
    let mut gw = TestGateway::start(&text).await;
    shadow.push_fault(Fault::Hang);
    let before_head = chat(&gw, "summarize", "u", CHAT).await;
    let mid_body = chat(&gw, "summarize", "u", STREAM).await;
    for reply in [&before_head, &mid_body] {
        assert_eq!(reply.status, StatusCode::OK);
    }
    support::wait::until(
        "both shadow calls to reach their provider",
        Duration::from_secs(5),
        || shadow.received().len() >= 2,
    )
    .await;
    let started = Instant::now();
    gw.begin_shutdown().await.unwrap();
    // Grace 3 s, then cancelled: not the shadow's 60 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let records = local_audit_records(&audit_dir(&gw));
    let shadows = shadows(&records);
    assert_eq!(shadows.len(), 2, "{records:#?}");
    for reply in [&before_head, &mid_body] {
        let id = reply.headers["x-request-id"].to_str().unwrap();
        let shadow = shadows.iter().find(|r| r["shadow_of"] == id).unwrap();
        assert_eq!(shadow["outcome"], "cancelled", "{shadow}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_records_pair_with_served_records_in_the_s3_log() {
    use support::process::{audit_config, spawn};
    use support::s3::{S3Server, SECRET_KEY};
    let s3 = S3Server::start();
    s3.create_bucket("audit").await;
    // `greeting` serves control and friendly 50/50; friendly also shadows control's traffic.
    let config = audit_config(&s3.endpoint, "audit", "")
        + "\n[experiments.greeting.shadow]\nvariants = [\"friendly\"]\nsample_percent = 100\n";
    let gw = spawn(&config, SECRET_KEY).unwrap();
    let client = client();
    let mut assigned = HashMap::new();
    for i in 0..20 {
        let reply = send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", &format!("user-{i}"))],
            r#"{"model":"greeting","messages":[{"role":"user","content":"hi"}]}"#.to_owned(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assigned.insert(
            reply.headers["x-request-id"].to_str().unwrap().to_owned(),
            reply.headers["x-promptgate-variant"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    gw.stop();

    let records = s3.records("audit", "tenant/audit/").await;
    let served: HashMap<&str, &(String, Value)> = records
        .iter()
        .filter(|(_, r)| r["role"] == "served")
        .map(|pair| (pair.1["request_id"].as_str().unwrap(), pair))
        .collect();
    let shadow_records: Vec<_> = records
        .iter()
        .filter(|(_, r)| r["role"] == "shadow")
        .collect();
    assert_eq!(served.len(), 20);
    let on_control = assigned.values().filter(|v| *v == "control").count();
    assert!(on_control > 0 && on_control < 20, "{assigned:?}");
    assert_eq!(
        shadow_records.len(),
        on_control,
        "one shadow per control request"
    );
    for (key, shadow) in shadow_records {
        let of = shadow["shadow_of"].as_str().unwrap();
        let (served_key, served_record) = served[of];
        assert_eq!(assigned[of], "control");
        assert_eq!(served_record["served_variant"], "control");
        assert_eq!(shadow["served_variant"], "friendly");
        assert_eq!(shadow["upstream_model"], "demo-b");
        assert_eq!(shadow["outcome"], "completed");
        assert_ne!(shadow["request_id"], served_record["request_id"]);
        assert_eq!(shadow["unit_key_hash"], served_record["unit_key_hash"]);
        // Same partition as its served record, whatever the clock did between them.
        let partition = |key: &str| key.rsplit_once('/').unwrap().0.to_owned();
        assert_eq!(partition(key), partition(served_key));
        assert_eq!(shadow["ts_start"], served_record["ts_start"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_or_a_refused_request_starts_no_shadow() {
    let (served, shadow) = sims(SimConfig::default()).await;
    let base = config(&served, &shadow, "sample_percent = 100");
    let killed = base.replacen(
        "[experiments.summarize]\n",
        "[experiments.summarize]\nkillswitch = \"control\"\n",
        1,
    );
    let gw = TestGateway::start(&killed).await;
    let reply = chat(&gw, "summarize", "u", CHAT).await;
    assert_eq!(reply.headers["x-promptgate-assignment"], "killswitch");

    // control's template needs a variable this request does not send: a 400, and no shadow.
    gw.write_config(&base.replacen(
        "system = \"Summarise.\"",
        "system = \"Summarise for {{audience}}.\"",
        1,
    ));
    let reload = send(
        &client(),
        Method::POST,
        &gw.admin_url("/admin/reload"),
        &[],
        "",
    )
    .await;
    assert_eq!(reload.json()["status"], "reloaded", "{}", reload.text());
    let refused = chat(&gw, "summarize", "u", CHAT).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.text()
    );
    // And the shadow does run once the request is served.
    let served_ok = chat(&gw, "plain", "u", CHAT).await;
    assert_eq!(served_ok.status, StatusCode::OK);
    let control = chat(
        &gw,
        "summarize",
        "u",
        r#"{"model":"summarize","messages":[{"role":"user","content":"x"}],"promptgate":{"variables":{"audience":"kids"}}}"#,
    )
    .await;
    assert_eq!(control.status, StatusCode::OK, "{}", control.text());
    let records = wait_for_audit(&audit_dir(&gw), |r| !shadows(r).is_empty()).await;
    let shadows = shadows(&records);
    assert_eq!(
        shadows.len(),
        1,
        "only the last request has a shadow: {records:#?}"
    );
    assert_eq!(
        shadows[0]["shadow_of"],
        control.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(shadow.received().len(), 1);
}
