//! `extraction`: a JSON answer's fields against the case's expected fields.
//!
//! Per declared field, with "null" meaning null or absent (the empty string
//! is a value):
//! - correct: the answer equals the expected value under the field's kind,
//!   or both are null;
//! - a miss (null rate): a value was expected and the answer has none;
//! - a false positive: no value was expected and the answer has one;
//! - covered: the answer has the key at all (null included), which measures
//!   whether the model kept the output shape.
//!
//! The case passes when every field is correct (whole-document accuracy);
//! its value is the share of correct fields. An answer that is not a JSON
//! object (or not JSON) gets no field right, and every field counts as absent.

use serde_json::Value;

use super::fields::{FieldKind, FieldSet, Slot, scalar_text};
use super::json::parse_answer;
use super::normalize::token_f1;
use super::{Ratio, Score, ScoreInput};

#[derive(Debug)]
pub(super) struct Extraction {
    pub fields: FieldSet,
    pub allow_fence: bool,
}

/// The counts of one case, turned into ratios at the end.
#[derive(Default)]
struct Tally {
    correct: usize,
    expected_values: usize,
    missed: usize,
    expected_nulls: usize,
    false_positives: usize,
    covered: usize,
    text_fields: usize,
    f1_sum: f64,
}

impl Extraction {
    pub fn score(&self, input: &ScoreInput<'_>) -> Score {
        let Some(expected) = input.expected.and_then(Value::as_object) else {
            return Score::missing("expected fields");
        };
        let parsed = parse_answer(input.answer, self.allow_fence);
        let (answer, unreadable) = match &parsed {
            Ok(Value::Object(object)) => (Some(object), None),
            Ok(_) => (None, Some("the answer is not a JSON object".to_owned())),
            Err(reason) => (None, Some(reason.clone())),
        };
        let mut tally = Tally::default();
        let mut wrong = Vec::new();
        for (name, kind) in &self.fields.fields {
            let got = Slot::of(answer, name);
            let want = Slot::of(Some(expected), name).value();
            if !matches!(got, Slot::Absent) {
                tally.covered += 1;
            }
            // An answer the application could not read gets no field right,
            // not even the ones expected to be null.
            let correct = answer.is_some()
                && match (got.value(), want) {
                    (None, None) => true,
                    (Some(got), Some(want)) => self.fields.equal(*kind, got, want),
                    (None, Some(_)) | (Some(_), None) => false,
                };
            match want {
                Some(_) => {
                    tally.expected_values += 1;
                    tally.missed += usize::from(got.value().is_none());
                }
                None => {
                    tally.expected_nulls += 1;
                    tally.false_positives += usize::from(got.value().is_some());
                }
            }
            if *kind == FieldKind::Text
                && let Some(want) = want
            {
                tally.text_fields += 1;
                tally.f1_sum += text_f1(got.value(), want);
            }
            if correct {
                tally.correct += 1;
            } else {
                wrong.push(describe(name, got, want));
            }
        }
        let declared = self.fields.fields.len();
        let all_correct = tally.correct == declared;
        let detail = unreadable.or_else(|| (!wrong.is_empty()).then(|| wrong.join("; ")));
        Score {
            value: tally.correct as f64 / declared as f64,
            passed: all_correct,
            ratios: tally.ratios(declared, all_correct),
            detail,
        }
    }
}

impl Tally {
    fn ratios(&self, declared: usize, all_correct: bool) -> Vec<Ratio> {
        let ratio = |name, numerator: f64, denominator: usize| Ratio {
            name,
            numerator,
            denominator: denominator as f64,
        };
        vec![
            ratio("field_accuracy", self.correct as f64, declared),
            ratio("document_accuracy", f64::from(u8::from(all_correct)), 1),
            ratio("null_rate", self.missed as f64, self.expected_values),
            ratio(
                "false_positive_rate",
                self.false_positives as f64,
                self.expected_nulls,
            ),
            ratio("field_coverage", self.covered as f64, declared),
            ratio("token_f1", self.f1_sum, self.text_fields),
        ]
    }
}

/// Token F1 of an extracted text against the expected one; a missing or
/// non-scalar value scores 0.
fn text_f1(got: Option<&Value>, want: &Value) -> f64 {
    match (got.and_then(scalar_text), scalar_text(want)) {
        (Some(got), Some(want)) => token_f1(&got, &want),
        _ => 0.0,
    }
}

fn describe(name: &str, got: Slot<'_>, want: Option<&Value>) -> String {
    let got = match got {
        Slot::Absent => "absent".to_owned(),
        Slot::Null => "null".to_owned(),
        Slot::Value(value) => value.to_string(),
    };
    let want = want.map_or_else(|| "null".to_owned(), Value::to_string);
    format!("{name}: expected {want}, got {got}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::dates::DateOrder;
    use super::*;

    fn scorer() -> Extraction {
        let fields = BTreeMap::from([
            ("date".to_owned(), FieldKind::Date),
            ("id".to_owned(), FieldKind::Exact),
            ("note".to_owned(), FieldKind::Text),
            ("total".to_owned(), FieldKind::Number),
            ("vendor".to_owned(), FieldKind::Text),
        ]);
        Extraction {
            fields: FieldSet::new(&fields, DateOrder::Dmy).unwrap(),
            allow_fence: false,
        }
    }

    fn score(answer: &str, expected: Value) -> Score {
        scorer().score(&ScoreInput {
            answer,
            expected: Some(&expected),
            source: None,
        })
    }

    #[test]
    fn a_fully_right_answer_in_other_spellings_passes() {
        let verdict = score(
            r#"{"date": "05/03/2024", "id": "INV-7", "note": null, "total": "$1,234.50", "vendor": "The Acme Corp."}"#,
            json!({"date": "2024-03-05", "id": "INV-7", "total": 1234.5, "vendor": "Acme Corp"}),
        );
        assert!(verdict.passed, "{:?}", verdict.detail);
        assert_eq!(verdict.value, 1.0);
        assert_eq!(verdict.ratio("document_accuracy"), (1.0, 1.0));
        assert_eq!(verdict.ratio("false_positive_rate"), (0.0, 1.0));
        assert_eq!(verdict.ratio("field_coverage"), (5.0, 5.0));
        assert_eq!(verdict.ratio("token_f1"), (1.0, 1.0));
    }

    #[test]
    fn misses_false_positives_and_partial_text_are_counted_apart() {
        let verdict = score(
            // date missing (absent), id null, note "" where none was expected,
            // total wrong, vendor partly right.
            r#"{"id": null, "note": "", "total": 1243.5, "vendor": "Acme Corporation Ltd"}"#,
            json!({"date": "2024-03-05", "id": "INV-7", "note": null, "total": "1,234.50", "vendor": "Acme Corporation"}),
        );
        assert!(!verdict.passed);
        assert_eq!(verdict.ratio("field_accuracy"), (0.0, 5.0));
        assert_eq!(verdict.ratio("document_accuracy"), (0.0, 1.0));
        assert_eq!(verdict.ratio("null_rate"), (2.0, 4.0), "date and id");
        assert_eq!(
            verdict.ratio("false_positive_rate"),
            (1.0, 1.0),
            "the empty note is a value"
        );
        assert_eq!(
            verdict.ratio("field_coverage"),
            (4.0, 5.0),
            "only date's key is missing"
        );
        // vendor: P = 2/3, R = 1 → 0.8; note expected null: not in the F1.
        let (f1, texts) = verdict.ratio("token_f1");
        assert!((f1 - 0.8).abs() < 1e-12 && texts == 1.0, "{f1}/{texts}");
        let detail = verdict.detail.unwrap();
        assert!(
            detail.contains("date: expected \"2024-03-05\", got absent"),
            "{detail}"
        );
        assert!(detail.contains("note: expected null, got \"\""), "{detail}");
    }

    #[test]
    fn an_expected_empty_string_is_not_met_by_null() {
        let verdict = score(
            r#"{"date": null, "id": null, "note": null, "total": null, "vendor": null}"#,
            json!({"note": ""}),
        );
        assert_eq!(verdict.ratio("null_rate"), (1.0, 1.0));
        assert_eq!(verdict.ratio("field_accuracy"), (4.0, 5.0));
    }

    #[test]
    fn an_unreadable_answer_misses_every_field() {
        let verdict = score(
            "I could not find an invoice.",
            json!({"total": 5, "vendor": "Acme"}),
        );
        assert!(!verdict.passed);
        assert!(
            verdict
                .detail
                .as_deref()
                .unwrap()
                .starts_with("the answer is not valid JSON")
        );
        assert_eq!(verdict.ratio("null_rate"), (2.0, 2.0));
        assert_eq!(verdict.ratio("field_coverage"), (0.0, 5.0));
        let verdict = score("[1]", json!({"total": 5}));
        assert_eq!(
            verdict.detail.as_deref(),
            Some("the answer is not a JSON object")
        );
    }
}
