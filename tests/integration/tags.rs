//! Request tags (`x-promptgate-tags`): accepted when declared, refused with a
//! 400 naming the key in the caller's dialect otherwise, and carried on the
//! exchange of the served request and of its shadow calls. The audit record's
//! `tags` field and its DuckDB reading are checked in `audit_queries`.

use crate::support;

use http::{Method, StatusCode};
use promptgate::simulator::{SimConfig, Simulator};
use serde_json::{Value, json};
use support::*;

const TAGS: &str = r#"
[tags]
max_value_bytes = 12
[tags.keys.doc_type]
[tags.keys.channel]
values = ["email", "web"]
"#;

fn tags_of(exchange: &promptgate::exchange::FinishedExchange) -> Value {
    serde_json::to_value(&exchange.start.tags).unwrap()
}

async fn send_tagged(
    gw: &TestGateway,
    path: &str,
    model: &str,
    tag_lines: &[&str],
) -> support::Reply {
    let body = json!({
        "model": model,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "tag me"}],
    })
    .to_string();
    let auth = format!("Bearer {CLIENT_KEY}");
    let mut headers = vec![
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("anthropic-version", "2023-06-01"),
    ];
    headers.extend(tag_lines.iter().map(|line| ("x-promptgate-tags", *line)));
    send(&client(), Method::POST, &gw.url(path), &headers, body).await
}

#[tokio::test]
async fn declared_tags_are_accepted_and_bad_ones_refused_naming_the_key_in_both_dialects() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::start(&format!("{}{TAGS}", standard_config(&sim))).await;
    let dialects = [
        ("/v1/chat/completions", "gpt-4o-mini"),
        ("/v1/messages", "claude-3-haiku"),
    ];
    // Accepted: spaces around keys and values, a second header line, an
    // empty header (no tags at all).
    let accepted: [(&[&str], Value); 3] = [
        (
            &[" doc_type = invoice ,channel=email"],
            json!({"channel": "email", "doc_type": "invoice"}),
        ),
        (
            &["doc_type=receipt", "channel=web"],
            json!({"channel": "web", "doc_type": "receipt"}),
        ),
        (&[""], Value::Null),
    ];
    let mut served = 0;
    for (path, model) in dialects {
        for (lines, expected) in &accepted {
            let reply = send_tagged(&gw, path, model, lines).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{path} {lines:?}: {}",
                reply.text()
            );
            served += 1;
            let exchanges = gw.sink.wait_for(served).await;
            let exchange = exchanges
                .iter()
                .find(|e| *e.start.request_id == *reply.headers["x-request-id"].to_str().unwrap())
                .expect("the exchange of the request");
            assert_eq!(&tags_of(exchange), expected, "{path} {lines:?}");
        }
    }
    // Refused, each naming the key at fault.
    let refused: [(&[&str], &str); 6] = [
        (&["doc_typ=invoice"], "`doc_typ` is not declared"),
        (
            &["doc_type=a, doc_type=b"],
            "`doc_type` appears more than once",
        ),
        (
            &["doc_type=a", "doc_type=a"],
            "`doc_type` appears more than once",
        ),
        (
            &["doc_type=a-very-long-value"],
            "`doc_type` is longer than 12 bytes",
        ),
        (&["doc_type="], "`doc_type=` is not `key=value`"),
        (
            &["channel=fax"],
            "`fax` is not a declared value of tag `channel`",
        ),
    ];
    for (path, model) in dialects {
        for (lines, message) in refused {
            let reply = send_tagged(&gw, path, model, lines).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {lines:?}");
            let body = reply.json();
            let error = &body["error"];
            assert!(
                error["message"].as_str().unwrap().contains(message),
                "{path} {lines:?}: {body}"
            );
            assert_eq!(error["type"], "invalid_request_error", "{body}");
            if path == "/v1/messages" {
                assert_eq!(body["type"], "error", "{body}");
            } else {
                assert_eq!(error["code"], "invalid_tags", "{body}");
                assert_eq!(error["param"], "x-promptgate-tags", "{body}");
            }
        }
    }
    // Refused before any provider call: nothing more reached the sink.
    assert_eq!(gw.sink.all().len(), served);
}

#[tokio::test]
async fn shadow_calls_carry_the_served_requests_tags() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let config = format!(
        r#"
[server]
shutdown_grace_ms = 300
[auth]
open = true
[providers.sim]
kind = "openai"
base_url = "{base}"
max_retries = 0
[[routes]]
models = ["*"]
providers = ["sim"]
[experiments.summarize]
unit_key = {{ header = "x-user-id" }}
[[experiments.summarize.variants]]
name = "control"
weight = 1
model = "model-control"
providers = ["sim"]
[[experiments.summarize.variants]]
name = "candidate"
weight = 0
model = "model-candidate"
providers = ["sim"]
[experiments.summarize.shadow]
variants = ["candidate"]
sample_percent = 100
{TAGS}"#,
        base = sim.openai_base_url(),
    );
    let gw = TestGateway::start(&config).await;
    let reply = send(
        &client(),
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("x-promptgate-tags", "doc_type=invoice"),
        ],
        r#"{"model":"summarize","messages":[{"role":"user","content":"Shadow me"}]}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let exchanges = gw.sink.wait_for(2).await;
    let roles: Vec<(Option<&str>, Value)> = exchanges
        .iter()
        .map(|e| {
            let shadow_of = e
                .start
                .experiment
                .as_ref()
                .and_then(|t| t.shadow_of.as_deref());
            (shadow_of, tags_of(e))
        })
        .collect();
    let request_id = reply.headers["x-request-id"].to_str().unwrap();
    assert!(
        roles.contains(&(None, json!({"doc_type": "invoice"})))
            && roles.contains(&(Some(request_id), json!({"doc_type": "invoice"}))),
        "served and shadow exchanges both tagged: {roles:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dataset_keeps_only_the_requests_with_every_tag_asked_for() {
    let mut gw = TestGateway::start(&format!(
        r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[[routes]]
models = ["*"]
providers = ["demo"]
[audit]
sink = "local"
local_dir = "{{dir}}/audit"
spool_dir = "{{dir}}/spool"
flush_interval_ms = 100
{TAGS}"#
    ))
    .await;
    let http = client();
    let header_of = |i: usize| match i % 3 {
        0 if i.is_multiple_of(2) => Some("doc_type=invoice, channel=email"),
        0 => Some("doc_type=invoice"),
        1 => Some("doc_type=receipt, channel=email"),
        _ => None,
    };
    let mut ids_by_header: Vec<(Option<&str>, String)> = Vec::new();
    for i in 0..12 {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(header_of(i).map(|h| ("x-promptgate-tags", h)));
        let body =
            format!(r#"{{"model":"demo-a","messages":[{{"role":"user","content":"q{i}"}}]}}"#);
        let reply = send(
            &http,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &headers,
            body,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        ids_by_header.push((header_of(i), id));
    }
    gw.begin_shutdown().await.unwrap();
    let audit = gw.dir.path().join("audit");
    let exported = |tags: &[&str]| -> std::collections::BTreeSet<String> {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"));
        command.args(["export-dataset", "--source", audit.to_str().unwrap()]);
        for tag in tags {
            command.args(["--tag", tag]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let candidate: Value = serde_json::from_str(line).unwrap();
                candidate["origin"]["request_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let wanted = |keep: &dyn Fn(&str) -> bool| -> std::collections::BTreeSet<String> {
        ids_by_header
            .iter()
            .filter(|(header, _)| header.is_some_and(keep))
            .map(|(_, id)| id.clone())
            .collect()
    };
    let invoices = wanted(&|h| h.contains("doc_type=invoice"));
    assert_eq!(invoices.len(), 4);
    assert_eq!(exported(&["doc_type=invoice"]), invoices);
    let invoices_by_email = wanted(&|h| h.contains("invoice") && h.contains("email"));
    assert_eq!(invoices_by_email.len(), 2);
    assert_eq!(
        exported(&["doc_type=invoice", "channel=email"]),
        invoices_by_email
    );
    assert!(exported(&["doc_type=memo"]).is_empty());
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args([
            "export-dataset",
            "--source",
            audit.to_str().unwrap(),
            "--tag",
            "doc_type",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected KEY=VALUE"));
}

/// `control` at a thumbs-up rate of 0.5 and `candidate` at `candidate_rate`,
/// evenly split.
fn two_variants(candidate_rate: f64) -> Vec<promptgate_analyze::synthetic::SyntheticVariant> {
    ["control", "candidate"]
        .into_iter()
        .zip([0.5, candidate_rate])
        .map(
            |(name, rate)| promptgate_analyze::synthetic::SyntheticVariant {
                name: name.into(),
                weight: 1.0,
                thumbs_up_rate: rate,
                latency_median_ms: 200.0,
                lost_share: 0.0,
            },
        )
        .collect()
}

/// Two slices of `exp` by `doc_type`: on invoices `candidate` gets more
/// thumbs up (0.5 → 0.65), on receipts both variants are alike; memos are
/// too few to say anything.
fn sliced_log(root: &std::path::Path) {
    for (seed, date, doc_type, candidate_rate, units) in [
        (11, "2026-11-20", "invoice", 0.65, 800),
        (12, "2026-11-21", "receipt", 0.5, 800),
        (13, "2026-11-22", "memo", 0.65, 16),
    ] {
        support::analyze::synthetic_log(seed, date, two_variants(candidate_rate), units)
            .write_tagged(root, &json!({"doc_type": doc_type}))
            .unwrap();
    }
}

#[tokio::test]
async fn analyze_by_tag_finds_the_effect_in_its_slice_with_holm_over_slices() {
    let dir = tempfile::tempdir().unwrap();
    sliced_log(dir.path());
    let source = promptgate_analyze::Source::Directory(dir.path().to_owned());
    let mut options = support::analyze::options("exp");
    options.by = Some("tag:doc_type".parse().unwrap());
    let report = promptgate_analyze::analyze(&source, &options)
        .await
        .unwrap();
    let slices = report.slices.as_ref().expect("slices asked for");
    assert_eq!(slices.by, "tag:doc_type");
    let slice = |value: &str| {
        slices
            .slices
            .iter()
            .find(|s| s.value == value)
            .unwrap_or_else(|| panic!("no slice {value}: {slices:#?}"))
    };
    let thumbs = |value: &str| {
        slice(value)
            .comparisons
            .iter()
            .find(|c| c.metric == "thumbs_up")
            .cloned()
            .unwrap_or_else(|| panic!("no thumbs_up comparison in {value}"))
    };
    let invoice = thumbs("invoice");
    assert!(
        invoice.significant && invoice.difference > 0.0,
        "{invoice:#?}"
    );
    let receipt = thumbs("receipt");
    assert!(!receipt.significant, "{receipt:#?}");
    // Holm over every comparison of every slice: the adjusted p-values
    // are those of one family, not of each slice alone.
    let all: Vec<&promptgate_analyze::report::Comparison> =
        slices.slices.iter().flat_map(|s| &s.comparisons).collect();
    let raw: Vec<f64> = all.iter().map(|c| c.p_value).collect();
    let family = promptgate_analyze::stats::multiple::holm_adjust(&raw).unwrap();
    for (c, adjusted) in all.iter().zip(family) {
        assert!((c.p_adjusted - adjusted).abs() < 1e-12, "{}", c.metric);
    }
    assert!(slice("invoice").too_small.is_none());
    let memo = slice("memo");
    assert!(
        memo.too_small.as_deref().is_some_and(|n| n.contains("too")),
        "{memo:#?}"
    );
    // The whole experiment is still analysed as before.
    assert_eq!(
        report.population.analysed_requests,
        slices.slices.iter().map(|s| s.requests).sum::<u64>()
    );
}

#[test]
fn analyze_by_writes_the_slices_in_json_table_and_html() {
    let dir = tempfile::tempdir().unwrap();
    sliced_log(dir.path());
    let run = |format: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
            .args(["analyze", "--source", dir.path().to_str().unwrap()])
            .args([
                "--experiment",
                "exp",
                "--by",
                "tag:doc_type",
                "--format",
                format,
            ])
            .args(["--bootstrap-resamples", "200"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json["format"], "promptgate.analyze.v1");
    let values: Vec<&str> = json["slices"]["slices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["invoice", "memo", "receipt"]);
    let table = run("table");
    assert!(table.contains("By tag:doc_type (3 slices"), "{table}");
    let html = run("html");
    assert!(html.contains(r#"<table class="slices">"#), "{html}");
    assert!(html.contains("<td>invoice</td>") && html.contains(r#"class="too-small""#));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["analyze", "--source", dir.path().to_str().unwrap()])
        .args(["--experiment", "exp", "--by", "doc_type"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected tag:KEY"));
}

/// Every slice has its own collector, and each collector spills to a few
/// hundred bucket files: were their descriptors held open while the log is
/// read, 32 slices would need thousands (a common default limit is 1,024).
#[test]
fn analyze_by_a_tag_of_many_values_holds_few_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let values = promptgate_analyze::slices::MAX_SLICES;
    for day in 0..values {
        let date = format!("2026-10-{:02}", day + 1);
        support::analyze::synthetic_log(day as u64, &date, two_variants(0.5), 20)
            .write_tagged(dir.path(), &json!({"doc_type": format!("type{day}")}))
            .unwrap();
    }
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 128 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_promptgate"))
        .args(["analyze", "--source", dir.path().to_str().unwrap()])
        .args([
            "--experiment",
            "exp",
            "--by",
            "tag:doc_type",
            "--format",
            "json",
        ])
        .args(["--bootstrap-resamples", "200"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["slices"]["slices"].as_array().map(Vec::len),
        Some(values)
    );
}

#[tokio::test]
async fn drift_reports_a_shift_in_a_tags_mix() {
    use promptgate_analyze::drift::{self, Options, Scope, Verdict};
    use promptgate_analyze::synthetic::SyntheticVariant;
    let dir = tempfile::tempdir().unwrap();
    let variants = vec![SyntheticVariant {
        name: "control".into(),
        weight: 1.0,
        thumbs_up_rate: 0.5,
        latency_median_ms: 200.0,
        lost_share: 0.0,
    }];
    // Baseline: three invoices to one receipt; current: the reverse.
    for (seed, date, doc_type, units) in [
        (21, "2026-11-20", "invoice", 600),
        (22, "2026-11-21", "receipt", 200),
        (23, "2026-11-22", "invoice", 200),
        (24, "2026-11-23", "receipt", 600),
    ] {
        support::analyze::synthetic_log(seed, date, variants.clone(), units)
            .write_tagged(dir.path(), &json!({"doc_type": doc_type}))
            .unwrap();
    }
    let range = |from: &str, to: &str| promptgate_analyze::DateRange {
        from: Some(from.into()),
        to: Some(to.into()),
    };
    let source = promptgate_analyze::Source::Directory(dir.path().to_owned());
    let options = Options {
        scope: Scope::All,
        baseline: range("2026-11-20", "2026-11-21"),
        current: range("2026-11-22", "2026-11-23"),
        alpha: 0.01,
        skip_corrupt: false,
        seed: 1,
    };
    let report = drift::drift(&source, &options).await.unwrap();
    let tag = report
        .signals
        .iter()
        .find(|s| s.name == "tag:doc_type")
        .unwrap_or_else(|| panic!("no tag signal: {:#?}", report.signals));
    assert_eq!(tag.kind, "categorical");
    assert_eq!(tag.bins, ["invoice", "receipt"]);
    assert_eq!(tag.baseline_shares, [0.75, 0.25]);
    assert_eq!(tag.current_shares, [0.25, 0.75]);
    // PSI = Σ (c − b) ln(c / b) = 2 · 0.5 · ln 3.
    assert!((tag.psi - 3f64.ln()).abs() < 1e-9, "{}", tag.psi);
    assert_eq!(tag.verdict, Verdict::Drift);
    assert!(report.drift);
}

/// A key declared `metric_label = true` (with its closed `values`) counts
/// served and refused requests by value and outcome; other keys never
/// become labels.
#[tokio::test]
async fn a_metric_label_key_counts_requests_by_value_and_outcome_and_others_stay_out() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let tags = TAGS.replace(
        "values = [\"email\", \"web\"]\n",
        "values = [\"email\", \"web\"]\nmetric_label = true\n",
    );
    let gw = TestGateway::start(&format!("{}{tags}", standard_config(&sim))).await;
    for lines in [
        "channel=email, doc_type=invoice",
        "channel=email",
        "channel=web, doc_type=memo",
    ] {
        let reply = send_tagged(&gw, "/v1/chat/completions", "gpt-4o-mini", &[lines]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    // Refused after the tags were read: an ill-typed body.
    let reply = send(
        &client(),
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("x-promptgate-tags", "channel=web"),
        ],
        r#"{"model": "gpt-4o-mini", "messages": "not a list"}"#.to_owned(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    gw.sink.wait_for(3).await;

    let metrics = metrics::Metrics::scrape(&gw.admin_url("/metrics")).await;
    let count = |value: &str, outcome: &str| {
        metrics.sum(
            "promptgate_tagged_requests_total",
            &[("tag", "channel"), ("value", value), ("outcome", outcome)],
        )
    };
    assert_eq!(count("email", "ok"), 2.0);
    assert_eq!(count("web", "ok"), 1.0);
    assert_eq!(
        metrics.sum(
            "promptgate_tagged_requests_total",
            &[("tag", "channel"), ("value", "web")]
        ),
        2.0,
        "the refused request counts under its error class"
    );
    assert_eq!(
        metrics.sum("promptgate_tagged_requests_total", &[("tag", "doc_type")]),
        0.0
    );
}
