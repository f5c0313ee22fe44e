//! `promptgate analyze` end to end: a known effect generated through the real
//! gateway and read back from the S3-compatible server is found; A/A logs
//! keep the false-positive rate near alpha, also with several correlated
//! requests per unit (where a request-level test would not); a skewed split
//! raises the SRM
//! alarm (and `--fail-on-srm` exits 3); corrupt objects are named or skipped;
//! the date range reads only its partitions; every format renders.

use crate::support;

use std::path::Path;
use std::process::Command;

use http::Method;
use promptgate_analyze::stats::power::{PowerTarget, proportion_sample_size};
use promptgate_analyze::stats::proportions::{Counts, compare_proportions};
use promptgate_analyze::synthetic::{SyntheticLog, SyntheticVariant};
use promptgate_analyze::{self as analyze, DateRange, Options, Report, S3Options, Source};
use serde_json::Value;
use support::analyze::options;

fn variant(name: &str, thumbs_up_rate: f64) -> SyntheticVariant {
    SyntheticVariant {
        name: name.into(),
        weight: 50.0,
        thumbs_up_rate,
        latency_median_ms: 300.0,
        lost_share: 0.0,
    }
}

fn log(seed: u64, variants: Vec<SyntheticVariant>, units: u64) -> SyntheticLog {
    support::analyze::synthetic_log(seed, "2026-11-20", variants, units)
}

async fn run(dir: &Path, options: &Options) -> Report {
    let source = Source::open(dir.to_str().unwrap(), &S3Options::default())
        .await
        .unwrap();
    analyze::analyze(&source, options).await.unwrap()
}

fn comparison<'a>(report: &'a Report, metric: &str) -> &'a analyze::report::Comparison {
    report
        .comparisons
        .iter()
        .find(|c| c.metric == metric)
        .unwrap_or_else(|| panic!("no {metric} comparison: {:#?}", report.comparisons))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_effect_through_the_gateway_is_found_in_the_s3_log() {
    use support::process::{audit_config, spawn};
    use support::s3::{S3Server, SECRET_KEY};
    let s3 = S3Server::start();
    s3.create_bucket("audit").await;
    let config =
        audit_config(&s3.endpoint, "audit", "") + "\n[feedback.metrics]\nthumbs_up = \"boolean\"\n";
    let gw = spawn(&config, SECRET_KEY).unwrap();
    let client = support::client();
    // friendly gets thumbs up 75% of the time, control 45%: a known effect.
    let mut rng_state = 7u64;
    let mut coin = move |p: f64| {
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng_state >> 11) as f64 / (1u64 << 53) as f64) < p
    };
    for i in 0..400 {
        let reply = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", &format!("user-{i}"))],
            r#"{"model":"greeting","messages":[{"role":"user","content":"hi"}]}"#.to_owned(),
        )
        .await;
        let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        let rate = if reply.headers["x-promptgate-variant"] == "friendly" {
            0.75
        } else {
            0.45
        };
        let feedback =
            serde_json::json!({"request_id": id, "metric": "thumbs_up", "value": coin(rate)});
        let posted = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/feedback"),
            &[],
            feedback.to_string(),
        )
        .await;
        assert_eq!(
            posted.status,
            http::StatusCode::ACCEPTED,
            "{}",
            posted.text()
        );
    }
    gw.stop();

    // As an analyst runs it: the binary, AWS credentials from the environment.
    let output = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args([
            "analyze",
            "--source",
            "s3://audit/tenant/audit",
            "--experiment",
            "greeting",
        ])
        .args([
            "--format",
            "json",
            "--s3-endpoint",
            &s3.endpoint,
            "--s3-force-path-style",
        ])
        .env("AWS_ACCESS_KEY_ID", support::s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["read"]["request_records"], 400);
    assert_eq!(report["read"]["feedback_records"], 400);
    assert_eq!(report["read"]["feedback_unmatched"], 0);
    assert_eq!(report["srm"]["mismatch"], false);
    let thumbs = report["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == "thumbs_up")
        .unwrap();
    assert_eq!(thumbs["baseline"], "control");
    assert_eq!(thumbs["variant"], "friendly");
    assert_eq!(thumbs["significant"], true, "{thumbs:#}");
    let difference = thumbs["difference"].as_f64().unwrap();
    assert!(difference > 0.15 && difference < 0.45, "{thumbs:#}");
    let verdict = thumbs["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("friendly better than control on thumbs_up"),
        "{verdict}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_and_a_keeps_false_positives_near_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let runs = 150;
    let mut false_positives = 0;
    for seed in 0..runs {
        let root = dir.path().join(format!("run-{seed}"));
        log(
            seed,
            vec![variant("control", 0.3), variant("same", 0.3)],
            400,
        )
        .write(&root)
        .unwrap();
        let report = run(&root, &options("exp")).await;
        let thumbs = comparison(&report, "thumbs_up");
        if thumbs.p_value < 0.05 {
            false_positives += 1;
        }
    }
    // 150 runs at α = 0.05: expect 7.5, sd ≈ 2.7; accept 1–16, i.e. a
    // false-positive rate of at most 10.7 % (3.2 sd above nominal).
    assert!(
        (1..=16).contains(&false_positives),
        "{false_positives} false positives in {runs} A/A runs"
    );
}

/// A variant's thumbs-up counts, per request, from its per-variant estimate.
fn thumbs_counts(report: &Report, name: &str) -> Counts {
    let variant = report.variants.iter().find(|v| v.name == name).unwrap();
    let thumbs = &variant.feedback["thumbs_up"];
    Counts {
        successes: (thumbs.estimate * thumbs.n as f64).round() as u64,
        trials: thumbs.n,
    }
}

fn units_of(report: &Report, name: &str) -> u64 {
    report
        .variants
        .iter()
        .find(|v| v.name == name)
        .unwrap()
        .units
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_requests_per_unit_need_the_unit_level_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let runs = 150;
    let (mut by_units, mut by_requests) = (0, 0);
    for seed in 0..runs {
        let root = dir.path().join(format!("run-{seed}"));
        let mut aa = log(
            seed,
            vec![variant("control", 0.3), variant("same", 0.3)],
            200,
        );
        aa.requests_per_unit = 5;
        aa.write_with_unit_effect(&root, 0.5).unwrap();
        let report = run(&root, &options("exp")).await;
        let thumbs = comparison(&report, "thumbs_up");
        assert_eq!(thumbs.analysis_unit, "unit");
        assert_eq!(thumbs.test, "welch_t_on_unit_means");
        by_units += u32::from(thumbs.p_value < 0.05);
        // What the analysis did before it knew units: every request an
        // independent trial.
        let naive = compare_proportions(
            thumbs_counts(&report, "control"),
            thumbs_counts(&report, "same"),
            0.95,
        )
        .unwrap();
        by_requests += u32::from(naive.p_value < 0.05);
    }
    // Shown with --no-capture: how far apart the two analyses are.
    eprintln!(
        "false positives in {runs} runs: {by_units} on unit means, {by_requests} on requests"
    );
    // The same window as the one-request A/A test: 150 runs at α = 0.05
    // expect 7.5 (sd ≈ 2.7); accept 1–16, a false-positive rate of at most
    // 10.7 %. Welch on 200 unit means is nearly exact here.
    assert!(
        (1..=16).contains(&by_units),
        "{by_units} false positives in {runs} A/A runs on unit means"
    );
    // With an intra-unit correlation ρ ≈ 0.4 and 5 requests per unit, the
    // request-level variance is understated by the design effect
    // 1 + 4ρ ≈ 2.6: its z is 1.6 times too large and it rejects about 22 %
    // of the time (≈ 33 runs, sd ≈ 5), far outside the window above.
    assert!(
        by_requests > 16,
        "the request-level z-test rejected in only {by_requests} of {runs} A/A runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_request_per_unit_the_exact_tests_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    // 16 units (an expected cell count below 5): Fisher's exact test; 400:
    // the z-test.
    for (seed, units, test) in [(11, 16, "fisher_exact"), (12, 400, "two_proportion_z")] {
        let root = dir.path().join(format!("run-{seed}"));
        log(
            seed,
            vec![variant("control", 0.1), variant("b", 0.3)],
            units,
        )
        .write(&root)
        .unwrap();
        let report = run(&root, &options("exp")).await;
        let thumbs = comparison(&report, "thumbs_up");
        let (a, b) = (
            thumbs_counts(&report, "control"),
            thumbs_counts(&report, "b"),
        );
        let exact = compare_proportions(a, b, 0.95).unwrap();
        assert_eq!(thumbs.analysis_unit, "request");
        assert_eq!(thumbs.test, test);
        assert_eq!(thumbs.p_value, exact.p_value);
        assert_eq!(thumbs.difference, exact.difference);
        assert_eq!((thumbs.n_baseline, thumbs.n_variant), (a.trials, b.trials));
        assert_eq!(thumbs.n_baseline, units_of(&report, "control"));
        // Latency is request-level whatever the units.
        assert_eq!(comparison(&report, "latency_ms").analysis_unit, "request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_level_sizes_count_units() {
    let dir = tempfile::tempdir().unwrap();
    let mut clustered = log(
        21,
        vec![variant("control", 0.3), variant("same", 0.3)],
        2_000,
    );
    clustered.requests_per_unit = 5;
    clustered.write_with_unit_effect(dir.path(), 0.5).unwrap();
    let report = run(dir.path(), &options("exp")).await;
    let thumbs = comparison(&report, "thumbs_up");
    let (control, same) = (units_of(&report, "control"), units_of(&report, "same"));
    assert_eq!((thumbs.n_baseline, thumbs.n_variant), (control, same));
    assert_eq!(thumbs_counts(&report, "control").trials, 5 * control);
    let sequential = thumbs.sequential.as_ref().unwrap();
    assert_eq!(sequential.units, control + same);
    // Independent requests would need `requests` per variant for a 5 % lift;
    // 5 correlated requests are worth more than one of them and less than
    // five, so the units needed lie strictly between requests/5 and requests
    // (with ρ ≈ 0.4, near requests · (1 + 4ρ) / 5 ≈ requests / 2).
    let rate = thumbs.estimate_baseline;
    let requests = proportion_sample_size(
        rate,
        rate * 1.05,
        1.0,
        PowerTarget {
            alpha: 0.05,
            power: 0.8,
        },
    )
    .unwrap()
    .required_a;
    let units = thumbs.units_needed_for_target_lift.unwrap();
    assert!(
        units > requests * 3 / 10 && units < requests * 8 / 10,
        "{units} units needed, {requests} independent requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_split_raises_the_sample_ratio_alarm_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = variant("treatment", 0.3);
    broken.lost_share = 0.15; // 15% of treatment's units never reach the log
    log(3, vec![variant("control", 0.3), broken], 4_000)
        .write(dir.path())
        .unwrap();
    let report = run(dir.path(), &options("exp")).await;
    let srm = report.srm.as_ref().unwrap();
    assert!(srm.mismatch, "{srm:#?}");
    assert!(srm.p_value < 0.001);
    assert_eq!(srm.weights, "recorded");
    assert!(
        report.warnings[0].starts_with("SAMPLE RATIO MISMATCH"),
        "{:?}",
        report.warnings
    );
    let table = analyze::render::table(&report);
    let alarm = table.find("SAMPLE RATIO MISMATCH").unwrap();
    let comparisons = table.find("Comparisons against").unwrap();
    assert!(
        alarm < comparisons,
        "the alarm comes before the comparisons"
    );

    // The binary exits 3 with --fail-on-srm, for CI gates, and 0 without.
    let binary = env!("CARGO_BIN_EXE_promptgate");
    let args = [
        "analyze",
        "--source",
        dir.path().to_str().unwrap(),
        "--experiment",
        "exp",
        "--bootstrap-resamples",
        "200",
    ];
    let plain = Command::new(binary).args(args).output().unwrap();
    assert_eq!(
        plain.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let gated = Command::new(binary)
        .args(args)
        .arg("--fail-on-srm")
        .output()
        .unwrap();
    assert_eq!(gated.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_object_is_named_or_skipped_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    log(4, vec![variant("control", 0.3), variant("b", 0.3)], 1_000)
        .write(dir.path())
        .unwrap();
    let bad = dir
        .path()
        .join("v1/dt=2026-11-20/hour=05/zz-broken.jsonl.gz");
    std::fs::write(&bad, b"this is not gzip").unwrap();
    let source = Source::open(dir.path().to_str().unwrap(), &S3Options::default())
        .await
        .unwrap();
    let error = analyze::analyze(&source, &options("exp"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("zz-broken.jsonl.gz") && message.contains("--skip-corrupt"),
        "{message}"
    );

    let mut skipping = options("exp");
    skipping.skip_corrupt = true;
    let report = analyze::analyze(&source, &skipping).await.unwrap();
    assert_eq!(report.read.corrupt_objects.len(), 1);
    assert!(
        report.read.corrupt_objects[0]
            .object
            .ends_with("zz-broken.jsonl.gz")
    );
    assert_eq!(report.read.request_records, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_date_range_reads_only_its_partitions() {
    let dir = tempfile::tempdir().unwrap();
    for (seed, date) in [(5, "2026-11-20"), (6, "2026-11-21"), (7, "2026-11-22")] {
        let mut day = log(seed, vec![variant("control", 0.3), variant("b", 0.3)], 100);
        day.date = date.into();
        day.write(dir.path()).unwrap();
    }
    let mut ranged = options("exp");
    ranged.range = DateRange {
        from: Some("2026-11-21".into()),
        to: Some("2026-11-21".into()),
    };
    let report = run(dir.path(), &ranged).await;
    assert_eq!(report.read.request_records, 100);
    let days: Vec<&String> = report
        .variants
        .iter()
        .flat_map(|v| v.requests_per_day.keys())
        .collect();
    assert!(days.iter().all(|d| *d == "2026-11-21"), "{days:?}");
    assert_eq!(
        report.read.feedback_unmatched, 100,
        "the 22nd's feedback is read, unmatched"
    );
    let all = run(dir.path(), &options("exp")).await;
    assert_eq!(all.read.request_records, 300);

    // Feedback about the 21st's requests that arrived on the 25th still counts.
    let feedback = dir.path().join("feedback/v1");
    std::fs::rename(
        feedback.join("dt=2026-11-21"),
        feedback.join("dt=2026-11-25"),
    )
    .unwrap();
    let late = run(dir.path(), &ranged).await;
    assert_eq!(late.read.request_records, 100);
    // From --from on, whatever --to says: the 22nd's and the moved 25th's.
    assert_eq!(late.read.feedback_records, 200);
    let thumbs: u64 = late
        .variants
        .iter()
        .map(|v| v.feedback.get("thumbs_up").map_or(0, |m| m.n))
        .sum();
    assert_eq!(thumbs, 100, "every request of the window has its feedback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_renders_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    log(
        8,
        vec![variant("control", 0.3), variant("better", 0.5)],
        2_000,
    )
    .write(dir.path())
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_promptgate");
    let base = [
        "analyze",
        "--source",
        dir.path().to_str().unwrap(),
        "--experiment",
        "exp",
        "--bootstrap-resamples",
        "200",
    ];
    let table = Command::new(binary).args(base).output().unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("better better than control on thumbs_up"),
        "{text}"
    );

    let json = Command::new(binary)
        .args(base)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["format"], "promptgate.analyze.v1");
    for key in [
        "read",
        "population",
        "srm",
        "variants",
        "comparisons",
        "shadows",
        "warnings",
    ] {
        assert!(report.get(key).is_some(), "missing {key}");
    }
    let thumbs = report["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == "thumbs_up")
        .unwrap();
    for key in [
        "p_value",
        "p_adjusted",
        "difference_ci",
        "relative_lift_ci",
        "sequential",
        "minimum_detectable_difference",
        "units_needed_for_target_lift",
    ] {
        assert!(!thumbs[key].is_null(), "{key} is null: {thumbs}");
    }

    let out = dir.path().join("report.html");
    let html = Command::new(binary)
        .args(base)
        .args(["--format", "html", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        html.status.success(),
        "{}",
        String::from_utf8_lossy(&html.stderr)
    );
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert_eq!(
        page.matches(r#"<table class="forest""#).count(),
        2,
        "forest plots: latency, thumbs_up"
    );
    for chart in ["latency histograms", "share of requests per day"] {
        assert!(
            page.contains(&format!(r#"aria-label="{chart}""#)),
            "{chart}"
        );
    }
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("<script"),
        "self-contained"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadows_are_compared_with_their_served_answers() {
    let config = r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[[routes]]
models = ["*"]
providers = ["demo"]
[experiments.pairs]
unit_key = { header = "x-user-id" }
[[experiments.pairs.variants]]
name = "control"
weight = 1
model = "demo-a"
providers = ["demo"]
system = "Be brief."
[[experiments.pairs.variants]]
name = "twin"
weight = 0
version = "twin-2"
model = "demo-a"
providers = ["demo"]
system = "Be brief."
[[experiments.pairs.variants]]
name = "other"
weight = 0
model = "demo-b"
providers = ["demo"]
system = "Be warm."
[experiments.pairs.shadow]
variants = ["twin", "other"]
sample_percent = 100
[audit]
sink = "local"
local_dir = "{dir}/audit"
spool_dir = "{dir}/spool"
flush_interval_ms = 100
"#;
    let mut gw = support::TestGateway::start(config).await;
    let client = support::client();
    for i in 0..40 {
        let reply = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", &format!("u{i}"))],
            format!(
                r#"{{"model":"pairs","messages":[{{"role":"user","content":"question {i}"}}]}}"#
            ),
        )
        .await;
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    let audit = gw.dir.path().join("audit");
    gw.begin_shutdown().await.unwrap();
    let report = run(&audit, &options("pairs")).await;
    assert_eq!(report.read.unpaired_shadows, 0);
    let by_shadow = |name: &str| {
        report
            .shadows
            .iter()
            .find(|s| s.shadow_variant == name)
            .unwrap_or_else(|| panic!("no {name}: {:#?}", report.shadows))
    };
    let twin = by_shadow("twin");
    assert_eq!(
        (
            twin.served_variant.as_str(),
            twin.pairs,
            twin.shadow_failures
        ),
        ("control", 40, 0)
    );
    // Same prompt and model: the demo provider answers word for word alike.
    assert_eq!(twin.exact_agreement, Some(1.0));
    assert_eq!(twin.normalized_agreement, Some(1.0));
    let other = by_shadow("other");
    assert_eq!(other.pairs, 40);
    assert_eq!(other.exact_agreement, Some(0.0));
    // "Be warm." is shorter than "Be brief." in the prompt and in the demo
    // provider's answer, which quotes it: fewer tokens on every pair.
    let tokens = other.tokens.as_ref().unwrap();
    assert_eq!(tokens.pairs, 40);
    assert!(tokens.median < 0.0, "{tokens:?}");
    assert!(
        tokens.wilcoxon.as_ref().unwrap().p_value < 0.001,
        "{tokens:?}"
    );
    assert!(other.latency_ms.as_ref().unwrap().wilcoxon.is_some());
}
