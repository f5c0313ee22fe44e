//! `promptgate_analyze::stats` against reference values computed independently
//! by scipy/statsmodels (and numpy for the sequential closed forms):
//! `tests/stats_reference/values.json`, written by `generate.py` beside it,
//! which holds both the inputs and the expected outputs.
//!
//! Each Rust result is serialized to JSON (the shape a report gets) and every
//! field present in the reference is compared:
//! - numbers: relative error ≤ 1e-6, or absolute error ≤ 1e-12 where the
//!   reference is that close to 0 (bounds that straddle 0, exact zeros);
//! - `null` (an undefined lift or statistic) must be `null`, strings and
//!   booleans must be equal.
//!
//! The bootstrap uses its own RNG stream, so only its point estimate is
//! compared that way; its bounds must each lie within
//! `tolerance_fraction_of_width` (3 %) of the reference CI width. The JSON
//! records how far scipy's own bounds move over 30 other seeds (< 1 % at
//! 40 000 resamples), which is what justifies 3 %; a real mistake such as
//! the 5th instead of the 2.5th percentile moves a bound by ~8 %.

use std::sync::OnceLock;

use promptgate_analyze::stats::bootstrap::{bootstrap_quantile_difference, quantile};
use promptgate_analyze::stats::means::{Moments, mean_interval, welch};
use promptgate_analyze::stats::multiple::holm_adjust;
use promptgate_analyze::stats::paired::{PairedCounts, mcnemar};
use promptgate_analyze::stats::power::{
    PowerTarget, mean_mde, mean_sample_size, proportion_mde, proportion_sample_size,
};
use promptgate_analyze::stats::proportions::{Counts, compare_proportions, proportion_interval};
use promptgate_analyze::stats::rank::{mann_whitney_u, wilcoxon_signed_rank};
use promptgate_analyze::stats::sequential::{rho_for_sample_size, sequential_difference};
use promptgate_analyze::stats::srm::sample_ratio_mismatch;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const REL: f64 = 1e-6;
const ABS: f64 = 1e-12;

fn reference() -> &'static Value {
    static VALUES: OnceLock<Value> = OnceLock::new();
    VALUES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/stats_reference/values.json"
        );
        let text = std::fs::read_to_string(path).expect("read values.json");
        serde_json::from_str(&text).expect("parse values.json")
    })
}

/// The reference cases of one family; a missing or empty family fails, so a
/// regenerated file cannot silently drop coverage.
fn cases(family: &str) -> &'static [Value] {
    let cases = reference()[family]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    assert!(!cases.is_empty(), "values.json has no `{family}` cases");
    cases
}

fn field<T: DeserializeOwned>(case: &Value, key: &str) -> T {
    serde_json::from_value(case[key].clone()).unwrap_or_else(|e| panic!("field `{key}`: {e}"))
}

fn label(case: &Value, index: usize) -> String {
    case["name"]
        .as_str()
        .map_or_else(|| format!("#{index}"), str::to_owned)
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= ABS.max(REL * expected.abs())
}

/// Records every mismatch between `actual` and the reference `expected`
/// (fields absent from `expected` are not checked).
fn compare(path: &str, actual: &Value, expected: &Value, failures: &mut Vec<String>) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (
                a.as_f64().unwrap_or(f64::NAN),
                e.as_f64().unwrap_or(f64::NAN),
            );
            if !close(a, e) {
                failures.push(format!("{path}: got {a:e}, expected {e:e}"));
            }
        }
        (Value::Object(a), Value::Object(e)) => {
            for (key, e) in e {
                match a.get(key) {
                    Some(a) => compare(&format!("{path}.{key}"), a, e, failures),
                    None => failures.push(format!("{path}.{key}: missing from the result")),
                }
            }
        }
        (Value::Array(a), Value::Array(e)) if a.len() == e.len() => {
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                compare(&format!("{path}[{i}]"), a, e, failures);
            }
        }
        (a, e) if a == e => {}
        (a, e) => failures.push(format!("{path}: got {a}, expected {e}")),
    }
}

/// Runs `compute` on every case of `family` and compares with `expected`.
fn check_family<R: Serialize, E: std::fmt::Debug>(
    family: &str,
    compute: impl Fn(&Value) -> Result<R, E>,
) {
    let mut failures = Vec::new();
    for (i, case) in cases(family).iter().enumerate() {
        let path = format!("{family}/{}", label(case, i));
        match compute(case) {
            Ok(result) => compare(&path, &json(result), &case["expected"], &mut failures),
            Err(e) => failures.push(format!("{path}: error {e:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn moments(case: &Value, key: &str) -> Moments {
    Moments::from_slice(&field::<Vec<f64>>(case, key)).expect("finite reference data")
}

#[test]
fn proportions_match_statsmodels_and_fisher_exact() {
    check_family("proportions", |c| {
        compare_proportions(field(c, "a"), field(c, "b"), field(c, "confidence"))
    });
}

#[test]
fn wilson_interval_matches_statsmodels() {
    check_family("proportion_intervals", |c| {
        proportion_interval(field::<Counts>(c, "counts"), field(c, "confidence"))
    });
}

#[test]
fn welch_matches_scipy_ttest_ind() {
    check_family("welch", |c| {
        welch(&moments(c, "a"), &moments(c, "b"), field(c, "confidence"))
    });
}

#[test]
fn welch_from_summaries_matches_scipy_including_huge_df() {
    let summary = |v: &Value| {
        Moments::from_summary(field(v, "n"), field(v, "mean"), field(v, "variance"))
            .expect("valid summary")
    };
    check_family("welch_from_summary", |c| {
        welch(&summary(&c["a"]), &summary(&c["b"]), field(c, "confidence"))
    });
}

#[test]
fn streaming_in_chunks_gives_the_same_welch_result() {
    for case in cases("welch") {
        let data: Vec<f64> = field(case, "b");
        let mut merged = Moments::new();
        for chunk in data.chunks(7) {
            merged
                .merge(&Moments::from_slice(chunk).expect("finite"))
                .expect("merge");
        }
        let a = moments(case, "a");
        let whole = welch(&a, &moments(case, "b"), 0.95).expect("welch");
        let chunked = welch(&a, &merged, 0.95).expect("welch");
        assert!(
            close(chunked.statistic, whole.statistic),
            "{}",
            case["name"]
        );
        assert!(close(chunked.p_value, whole.p_value), "{}", case["name"]);
    }
}

#[test]
fn one_mean_interval_matches_scipy_ttest_1samp() {
    check_family("mean_intervals", |c| {
        mean_interval(&moments(c, "data"), field(c, "confidence"))
    });
}

#[test]
fn mann_whitney_matches_scipy() {
    check_family("mann_whitney", |c| {
        mann_whitney_u(&field::<Vec<f64>>(c, "a"), &field::<Vec<f64>>(c, "b"))
    });
}

#[test]
fn wilcoxon_matches_scipy() {
    check_family("wilcoxon", |c| {
        wilcoxon_signed_rank(&field::<Vec<f64>>(c, "differences"))
    });
}

#[test]
fn quantile_matches_numpy() {
    check_family("quantiles", |c| {
        quantile(&field::<Vec<f64>>(c, "data"), field(c, "q"))
    });
}

#[test]
fn bootstrap_matches_scipy_within_monte_carlo_error() {
    let mut failures = Vec::new();
    for case in cases("bootstrap") {
        let (a, b): (Vec<f64>, Vec<f64>) = (field(case, "a"), field(case, "b"));
        let q: f64 = field(case, "q");
        let result = bootstrap_quantile_difference(
            &a,
            &b,
            q,
            field(case, "resamples"),
            field(case, "confidence"),
            field(case, "seed"),
        )
        .expect("bootstrap");
        let expected = &case["expected"];
        let estimate: f64 = field(expected, "estimate");
        if !close(result.estimate, estimate) {
            failures.push(format!("q={q}: estimate {} vs {estimate}", result.estimate));
        }
        let (lower, upper): (f64, f64) = (
            field(&expected["ci"], "lower"),
            field(&expected["ci"], "upper"),
        );
        let allowed = field::<f64>(case, "tolerance_fraction_of_width") * (upper - lower);
        for (name, got, want) in [
            ("lower", result.ci.lower, lower),
            ("upper", result.ci.upper, upper),
        ] {
            if (got - want).abs() > allowed {
                failures.push(format!(
                    "q={q}: {name} {got} vs {want} (allowed ±{allowed})"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn srm_matches_scipy_chisquare() {
    check_family("srm", |c| {
        sample_ratio_mismatch(
            &field::<Vec<u64>>(c, "observed"),
            &field::<Vec<f64>>(c, "weights"),
        )
    });
}

#[test]
fn holm_matches_statsmodels_multipletests() {
    check_family("holm", |c| holm_adjust(&field::<Vec<f64>>(c, "p_values")));
}

#[test]
fn rho_for_target_matches_the_closed_form() {
    check_family("rho_for_target", |c| {
        rho_for_sample_size(field(c, "n_target"), 1.0 - field::<f64>(c, "alpha"))
    });
}

#[test]
fn sequential_matches_the_numpy_closed_forms() {
    check_family("sequential", |c| {
        sequential_difference(
            &moments(c, "a"),
            &moments(c, "b"),
            field(c, "confidence"),
            field(c, "rho"),
        )
    });
}

fn power_target(case: &Value) -> PowerTarget {
    PowerTarget {
        alpha: field(case, "alpha"),
        power: field(case, "power"),
    }
}

fn json(result: impl Serialize) -> Value {
    serde_json::to_value(result).expect("serialize result")
}

#[test]
fn proportion_power_matches_statsmodels_normal_ind_power() {
    check_family("power_proportions", |c| match c["kind"].as_str() {
        Some("mde") => proportion_mde(
            field(c, "baseline_rate"),
            field(c, "n_a"),
            field(c, "n_b"),
            power_target(c),
        )
        .map(json),
        _ => proportion_sample_size(
            field(c, "rate_a"),
            field(c, "rate_b"),
            field(c, "ratio"),
            power_target(c),
        )
        .map(json),
    });
}

#[test]
fn mean_power_matches_statsmodels_normal_ind_power() {
    check_family("power_means", |c| match c["kind"].as_str() {
        Some("mde") => mean_mde(
            field(c, "std_dev"),
            field(c, "n_a"),
            field(c, "n_b"),
            power_target(c),
        )
        .map(json),
        _ => mean_sample_size(
            field(c, "absolute_effect"),
            field(c, "std_dev"),
            field(c, "ratio"),
            power_target(c),
        )
        .map(json),
    });
}

#[test]
fn mcnemar_matches_statsmodels() {
    check_family("mcnemar", |c| mcnemar(field::<PairedCounts>(c, "counts")));
}
