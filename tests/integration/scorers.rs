//! The scorers' arithmetic against an independent Python reference
//! (`tests/eval_reference/reference.py`: the official SQuAD functions,
//! `decimal`, `datetime.strptime`, `unicodedata`). Both sides compute every
//! edge case of `tests/eval_reference/cases.json`; normalised texts, numbers
//! and dates must be identical, and F1 and rates agree to 1e-12 (the same
//! double-precision formula on both sides; only summation order may differ).

use std::path::PathBuf;
use std::process::Command;
use std::sync::LazyLock;

use promptgate::eval::scorers::dates::{DateOrder, normalize_date};
use promptgate::eval::scorers::normalize::{squad_normalize, token_f1};
use promptgate::eval::scorers::numbers::normalize_number;
use promptgate::eval::scorers::{ScoreInput, ScorerSpec};
use serde_json::{Value, json};

use crate::support::pytest;

const TOLERANCE: f64 = 1e-12;

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/eval_reference")
}

static CASES: LazyLock<Value> = LazyLock::new(|| {
    let text =
        std::fs::read_to_string(reference_dir().join("cases.json")).expect("read cases.json");
    serde_json::from_str(&text).expect("parse cases.json")
});

/// What reference.py computes for cases.json (run once per test process).
static REFERENCE: LazyLock<Value> = LazyLock::new(|| {
    let dir = reference_dir();
    let output = Command::new(pytest::python("the standard library"))
        .arg(dir.join("reference.py"))
        .arg(dir.join("cases.json"))
        .output()
        .expect("run reference.py");
    assert!(
        output.status.success(),
        "reference.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("reference.py prints JSON")
});

fn family<'a>(value: &'a Value, name: &str) -> &'a Vec<Value> {
    value[name]
        .as_array()
        .unwrap_or_else(|| panic!("no `{name}` list"))
}

fn close(rust: f64, python: f64) -> bool {
    (rust - python).abs() <= TOLERANCE
}

#[test]
fn token_f1_and_normalisation_match_the_squad_reference() {
    let cases = family(&CASES, "text");
    let reference = family(&REFERENCE, "text");
    assert_eq!(cases.len(), reference.len());
    let mut differs_from_official = 0;
    for (case, python) in cases.iter().zip(reference) {
        let (prediction, truth) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
        let normalized = json!([squad_normalize(prediction), squad_normalize(truth)]);
        assert_eq!(normalized, python["normalized"], "normalisation of {case}");
        let f1 = token_f1(prediction, truth);
        let expected = python["f1"].as_f64().unwrap();
        assert!(
            close(f1, expected),
            "F1 of {case}: Rust {f1}, Python {expected}"
        );
        // Our two changes to SQuAD only show on non-ASCII punctuation and on
        // two token-less answers; anywhere else the official script agrees.
        let official = python["official_f1"].as_f64().unwrap();
        let both_empty =
            squad_normalize(prediction).is_empty() && squad_normalize(truth).is_empty();
        if prediction.is_ascii() && truth.is_ascii() && !both_empty {
            assert!(
                close(f1, official),
                "official SQuAD F1 of {case}: {official}, ours {f1}"
            );
        } else if !close(f1, official) {
            differs_from_official += 1;
        }
    }
    // The table does exercise both changes (Unicode quotes, empty answers).
    assert!(
        differs_from_official >= 2,
        "{differs_from_official} cases show the changes"
    );
}

#[test]
fn number_normalisation_matches_the_decimal_reference() {
    let cases = family(&CASES, "numbers");
    let reference = family(&REFERENCE, "numbers");
    assert_eq!(cases.len(), reference.len());
    let mut numbers = 0;
    for (case, python) in cases.iter().zip(reference) {
        let rust = normalize_number(case.as_str().unwrap());
        assert_eq!(json!(rust), *python, "number {case}");
        numbers += usize::from(rust.is_some());
    }
    assert!(
        numbers > 20 && numbers < cases.len() - 15,
        "{numbers} of {} read as numbers",
        cases.len()
    );
}

#[test]
fn every_unicode_currency_symbol_is_read_as_a_currency() {
    let symbols = family(&REFERENCE, "currency_symbols");
    assert!(
        symbols.len() >= 60,
        "Unicode {} has {} Sc characters",
        REFERENCE["unicode_version"],
        symbols.len()
    );
    for symbol in symbols {
        let symbol = symbol.as_str().unwrap();
        assert_eq!(
            normalize_number(&format!("{symbol}5")).as_deref(),
            Some("5"),
            "{symbol:?} before"
        );
        assert_eq!(
            normalize_number(&format!("5 {symbol}")).as_deref(),
            Some("5"),
            "{symbol:?} after"
        );
    }
    // And only those: other symbols around a number make it no number.
    for other in ["%", "#", "°", "§", "@", "€€"] {
        assert_eq!(normalize_number(&format!("{other}5")), None, "{other:?}");
    }
}

#[test]
fn date_normalisation_matches_the_strptime_reference() {
    let cases = family(&CASES, "dates");
    let reference = family(&REFERENCE, "dates");
    assert_eq!(cases.len(), reference.len());
    for (case, python) in cases.iter().zip(reference) {
        let order = match case[1].as_str().unwrap() {
            "dmy" => DateOrder::Dmy,
            "mdy" => DateOrder::Mdy,
            other => panic!("unknown order {other}"),
        };
        let rust = normalize_date(case[0].as_str().unwrap(), order);
        assert_eq!(json!(rust), *python, "date {case}");
    }
}

#[test]
fn extraction_metrics_match_the_reference() {
    let cases = family(&CASES, "extraction");
    let reference = family(&REFERENCE, "extraction");
    assert_eq!(cases.len(), reference.len());
    for (case, python) in cases.iter().zip(reference) {
        let mut spec = json!({"kind": "extraction", "fields": case["fields"]});
        if let Some(order) = case.get("date_order") {
            spec["date_order"] = order.clone();
        }
        let scorer = serde_json::from_value::<ScorerSpec>(spec)
            .unwrap()
            .compile()
            .unwrap();
        let score = scorer.score(&ScoreInput {
            answer: case["answer"].as_str().unwrap(),
            expected: Some(&case["expected"]),
            source: None,
        });
        let label = &case["answer"];
        assert_eq!(json!(score.passed), python["passed"], "passed, {label}");
        assert!(
            close(score.value, python["value"].as_f64().unwrap()),
            "value, {label}"
        );
        let names: Vec<&str> = score.ratios.iter().map(|ratio| ratio.name).collect();
        assert_eq!(
            names,
            [
                "field_accuracy",
                "document_accuracy",
                "null_rate",
                "false_positive_rate",
                "field_coverage",
                "token_f1"
            ]
        );
        for ratio in &score.ratios {
            let expected = &python[ratio.name];
            let (numerator, denominator) =
                (expected[0].as_f64().unwrap(), expected[1].as_f64().unwrap());
            assert!(
                close(ratio.numerator, numerator) && close(ratio.denominator, denominator),
                "{}, {label}: Rust {}/{}, Python {numerator}/{denominator}",
                ratio.name,
                ratio.numerator,
                ratio.denominator
            );
        }
    }
}
