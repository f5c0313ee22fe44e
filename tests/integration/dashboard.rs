//! The Grafana dashboard shipped in config/grafana/ stays in step with the
//! metrics: every series it queries is one the admin listener's /metrics
//! exposes once the gateway has served an experiment with a shadow, a retry
//! and both kinds of fallback (a counter appears at its first count).

use crate::support;

use std::collections::BTreeSet;

use http::Method;
use serde_json::Value;

const DASHBOARD: &str = include_str!("../../config/grafana/promptgate-dashboard.json");
const ALERTS: &str = include_str!("../../config/grafana/alerts.yml");

/// Adds every `promptgate_*` series name in `text`.
fn series_in(text: &str, series: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("promptgate_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        series.insert(name);
    }
}

fn queried_series(dashboard: &Value) -> BTreeSet<String> {
    let mut series = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for target in panels
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
    {
        series_in(target["expr"].as_str().expect("expr"), &mut series);
    }
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_dashboard_queries_is_exposed() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let config = r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
max_retries = 1
retry_base_ms = 1
connect_timeout_ms = 200
[[routes]]
models = ["flaky"]
providers = ["dead", "demo"]
[[routes]]
models = ["*"]
providers = ["demo"]
[experiments.risky]
unit_key = { header = "x-user-id" }
fallback_variant = "safe"
[[experiments.risky.variants]]
name = "broken"
weight = 1
model = "gone"
providers = ["dead"]
[[experiments.risky.variants]]
name = "safe"
weight = 0
model = "demo-a"
providers = ["demo"]
[experiments.tone]
unit_key = { header = "x-user-id" }
[[experiments.tone.variants]]
name = "control"
weight = 1
model = "demo-a"
providers = ["demo"]
[[experiments.tone.variants]]
name = "candidate"
weight = 0
model = "demo-b"
providers = ["demo"]
[experiments.tone.shadow]
variants = ["candidate"]
sample_percent = 100
[prices.demo-a]
input_per_million = 1.0
output_per_million = 2.0
[audit]
sink = "local"
local_dir = "{dir}/audit"
spool_dir = "{dir}/spool"
"#;
    let gw = support::TestGateway::start(config).await;
    let client = support::client();
    for user in ["a", "b", "c"] {
        support::send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", user)],
            r#"{"model":"tone","messages":[{"role":"user","content":"hi"}]}"#.to_owned(),
        )
        .await;
    }
    // A retry, a provider fallback and a provider error; then a variant fallback.
    for model in ["flaky", "risky"] {
        let reply = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", "d")],
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#),
        )
        .await;
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
    }
    gw.sink.wait_for(8).await;
    let scrape = support::metrics::Metrics::scrape(&gw.admin_url("/metrics")).await;
    let exposed = scrape.names();
    let mut queried = queried_series(&dashboard);
    assert!(queried.len() > 15, "{queried:?}");
    // The alert rules beside it, too.
    let before = queried.len();
    series_in(ALERTS, &mut queried);
    assert!(queried.len() > before, "the alert rules name new series");
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !exposed.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard or its alert rules query series /metrics does not expose: {missing:?}\nexposed: {exposed:?}"
    );
}
