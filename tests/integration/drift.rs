//! `promptgate drift`: KS and χ² against scipy (`tests/stats_reference`),
//! PSI against its formula worked by hand, a known shift in a synthetic log
//! found (exit 1) with its histograms in every format, A/A window pairs that
//! alarm no more than the stated rate, and exit 2 for a run that cannot decide.

use std::path::Path;
use std::process::Command;

use promptgate_analyze::drift::{self, DriftReport, Options, Scope, Verdict};
use promptgate_analyze::stats::ks::{KsMethod, kolmogorov_sf, ks_2samp};
use promptgate_analyze::stats::psi::{chi_square_independence, population_stability_index};
use promptgate_analyze::synthetic::{SyntheticLog, SyntheticVariant};
use promptgate_analyze::{DateRange, S3Options, Source};
use serde_json::Value;

fn reference(family: &str) -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/stats_reference/values.json"
    );
    let values: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = values[family].as_array().cloned().unwrap_or_default();
    assert!(!cases.is_empty(), "values.json has no `{family}` cases");
    cases
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(1e-12);
    assert!(
        (actual - expected).abs() <= tolerance.max(1e-14),
        "{what}: {actual} vs scipy {expected}"
    );
}

#[test]
fn ks_2samp_matches_scipy() {
    for case in reference("ks_2samp") {
        let name = case["name"].as_str().unwrap();
        let test = ks_2samp(&floats(&case["a"]), &floats(&case["b"])).unwrap();
        assert_eq!(test.method, KsMethod::Exact, "{name}");
        close(
            test.statistic,
            case["expected"]["statistic"].as_f64().unwrap(),
            name,
        );
        close(
            test.p_value,
            case["expected"]["p_value"].as_f64().unwrap(),
            name,
        );
    }
}

#[test]
fn kolmogorov_survival_matches_scipy_kstwobign() {
    for case in reference("kolmogorov_sf") {
        let lambda = case["lambda"].as_f64().unwrap();
        close(
            kolmogorov_sf(lambda),
            case["sf"].as_f64().unwrap(),
            &format!("λ = {lambda}"),
        );
    }
}

#[test]
fn chi_square_independence_matches_scipy_chi2_contingency() {
    for case in reference("chi2_independence") {
        let table: Vec<Vec<u64>> = serde_json::from_value(case["table"].clone()).unwrap();
        let test = chi_square_independence(&table).unwrap();
        let what = format!("{table:?}");
        close(
            test.statistic,
            case["expected"]["statistic"].as_f64().unwrap(),
            &what,
        );
        assert_eq!(test.df, case["expected"]["df"].as_u64().unwrap(), "{what}");
        close(
            test.p_value,
            case["expected"]["p_value"].as_f64().unwrap(),
            &what,
        );
    }
}

#[test]
fn psi_matches_the_formula_worked_by_hand() {
    // Shares 1/4, 1/4, 1/2 → 1/2, 1/4, 1/4:
    // (1/2 − 1/4)·ln 2 + 0 + (1/4 − 1/2)·ln(1/2) = ½·ln 2.
    let psi = population_stability_index(&[25, 25, 50], &[200, 100, 100]).unwrap();
    close(psi, 0.5 * std::f64::consts::LN_2, "psi");
}

fn variant(name: &str, thumbs_up_rate: f64, latency_median_ms: f64) -> SyntheticVariant {
    SyntheticVariant {
        name: name.into(),
        weight: 50.0,
        thumbs_up_rate,
        latency_median_ms,
        lost_share: 0.0,
    }
}

/// One day of experiment `exp`, 50/50 between `control` and `treatment`.
fn write_day(root: &Path, date: &str, seed: u64, units: u64, latency_ms: f64, thumbs_up: f64) {
    SyntheticLog {
        experiment: "exp".into(),
        variants: vec![
            variant("control", thumbs_up, latency_ms),
            variant("treatment", thumbs_up, latency_ms),
        ],
        units,
        requests_per_unit: 1,
        feedback_share: 0.5,
        date: date.into(),
        records_per_object: 500,
        seed,
    }
    .write(root)
    .unwrap();
}

fn day(date: &str) -> DateRange {
    DateRange {
        from: Some(date.into()),
        to: Some(date.into()),
    }
}

async fn run(root: &Path, scope: Scope, alpha: f64) -> DriftReport {
    let source = Source::open(root.to_str().unwrap(), &S3Options::default())
        .await
        .unwrap();
    let options = Options {
        scope,
        baseline: day("2026-11-20"),
        current: day("2026-11-21"),
        alpha,
        skip_corrupt: false,
        seed: 1,
    };
    drift::drift(&source, &options).await.unwrap()
}

fn signal<'a>(report: &'a DriftReport, name: &str) -> &'a drift::Signal {
    report
        .signals
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} signal in {:#?}", report.signals))
}

#[test]
fn a_latency_and_feedback_shift_is_drift_with_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path(), "2026-11-20", 1, 3000, 300.0, 0.40);
    write_day(dir.path(), "2026-11-21", 2, 3000, 600.0, 0.20);
    let bin = env!("CARGO_BIN_EXE_promptgate");
    let args = [
        "drift",
        "--source",
        dir.path().to_str().unwrap(),
        "--experiment",
        "exp",
        "--baseline-from",
        "2026-11-20",
        "--baseline-to",
        "2026-11-20",
        "--current-from",
        "2026-11-21",
        "--current-to",
        "2026-11-21",
    ];
    let json = Command::new(bin)
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        json.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["schema"], "promptgate.drift.v1");
    assert_eq!(report["drift"], true);
    let verdict = |name: &str| {
        report["signals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["verdict"].clone())
    };
    // Doubling a log-normal median (σ = 0.5) moves every decile: major PSI.
    assert_eq!(verdict("latency_ms"), Some("drift".into()));
    // Thumbs up 40 % → 20 %: PSI ≈ 0.2, a moderate shift.
    assert_eq!(verdict("feedback:thumbs_up"), Some("moderate".into()));
    // Unchanged: constant tokens and an unchanged split.
    assert_eq!(verdict("output_tokens"), Some("stable".into()));
    assert_eq!(verdict("variant"), Some("stable".into()));

    let table = Command::new(bin).args(args).output().unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("latency_ms") && text.contains("DRIFT"),
        "{text}"
    );
    let html = Command::new(bin)
        .args(args)
        .args(["--format", "html"])
        .output()
        .unwrap();
    let page = String::from_utf8(html.stdout).unwrap();
    assert!(
        page.contains("<svg") && page.contains("Drift found"),
        "{page}"
    );
}

#[test]
fn a_run_that_cannot_decide_exits_2() {
    let bin = env!("CARGO_BIN_EXE_promptgate");
    let no_windows = Command::new(bin)
        .args(["drift", "--source", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(no_windows.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_windows.stderr).contains("--last-days"));
    let bad_alpha = Command::new(bin)
        .args([
            "drift",
            "--source",
            "/nonexistent",
            "--last-days",
            "7",
            "--alpha",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(bad_alpha.status.code(), Some(2));
    // A window without requests: nothing to compare is not "no drift".
    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path(), "2026-11-20", 1, 50, 300.0, 0.3);
    let empty_current = Command::new(bin)
        .args(["drift", "--source", dir.path().to_str().unwrap()])
        .args(["--last-days", "1", "--until", "2026-11-21"])
        .output()
        .unwrap();
    assert_eq!(empty_current.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&empty_current.stderr);
    assert!(stderr.contains("in the current window"), "{stderr}");
}

/// 40 A/A window pairs (both days drawn from the same truth, different
/// seeds): at α = 0.01 per run, expect 0.4 runs with any significant signal;
/// 3 or more would happen with probability 0.008 if the tests held their level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_a_window_pairs_alarm_no_more_than_alpha() {
    const PAIRS: u64 = 40;
    let mut significant = 0;
    for seed in 0..PAIRS {
        let dir = tempfile::tempdir().unwrap();
        write_day(dir.path(), "2026-11-20", 100 + 2 * seed, 600, 300.0, 0.3);
        write_day(dir.path(), "2026-11-21", 101 + 2 * seed, 600, 300.0, 0.3);
        let report = run(dir.path(), Scope::All, 0.01).await;
        assert!(
            !report.drift,
            "A/A pair {seed} drifted: {:#?}",
            report.signals
        );
        assert!(signal(&report, "latency_ms").current_n > 500);
        if report
            .signals
            .iter()
            .any(|s| s.p_value < report.p_threshold)
        {
            significant += 1;
        }
        assert!(report.signals.iter().all(|s| s.verdict != Verdict::Drift));
    }
    assert!(
        significant < 3,
        "{significant} of {PAIRS} A/A pairs had a significant signal"
    );
}

/// Hour bounds (`YYYY-MM-DDTHH`) select `hour=` partitions: the windows
/// before and after a deployment within one day.
#[tokio::test]
async fn hour_bounds_select_hour_partitions() {
    let dir = tempfile::tempdir().unwrap();
    for (day, hour) in [
        ("2026-11-02", "13"),
        ("2026-11-02", "14"),
        ("2026-11-03", "00"),
    ] {
        let folder = dir.path().join(format!("v1/dt={day}/hour={hour}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("gw-1.jsonl.gz"), b"").unwrap();
    }
    let source = Source::open(dir.path().to_str().unwrap(), &S3Options::default())
        .await
        .unwrap();
    let hours = |from: Option<&str>, to: Option<&str>| {
        let range = DateRange {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        };
        let source = &source;
        async move {
            source
                .list(promptgate_analyze::source::Table::Requests, &range)
                .await
                .unwrap()
                .iter()
                .map(|object| object.split("v1/").nth(1).unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let object = |day: &str, hour: &str| format!("dt={day}/hour={hour}/gw-1.jsonl.gz");
    assert_eq!(
        hours(Some("2026-11-02"), Some("2026-11-02T13")).await,
        [object("2026-11-02", "13")]
    );
    assert_eq!(
        hours(Some("2026-11-02T14"), None).await,
        [object("2026-11-02", "14"), object("2026-11-03", "00")]
    );
    assert_eq!(
        hours(None, Some("2026-11-02")).await,
        [object("2026-11-02", "13"), object("2026-11-02", "14")]
    );
}
