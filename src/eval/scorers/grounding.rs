//! `grounding`: every value a JSON answer extracts must come from the case's
//! source text, so an extraction model that invents a plausible total is
//! caught even where no expected value was written.
//!
//! A value is grounded when (by the field's kind):
//! - `exact`: it occurs verbatim in the source;
//! - `text`: its SQuAD-normalised tokens occur as consecutive tokens of the
//!   SQuAD-normalised source;
//! - `number` / `date`: it equals the normalised value of a whole
//!   number-like / date-like span of the source (a value that does not
//!   normalise, such as `n/a`, occurs verbatim). A number span's sign
//!   is optional evidence: `-5.00` in the source grounds both `-5` and `5`
//!   (the sign is the extraction scorer's business), `5` does not ground `-5`.
//!
//! An empty string invents nothing and counts as grounded. Per case:
//! `grounded_rate` = grounded values / extracted values, and
//! `null_vs_hallucinated` = nulls / (nulls + ungrounded values): when the
//! model has no grounded value, how often it abstains instead of inventing
//! one. The case passes when no value is ungrounded.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::dates::normalize_date;
use super::fields::{FieldKind, FieldSet, Slot, scalar_text};
use super::json::parse_answer;
use super::normalize::squad_normalize;
use super::numbers::normalize_number;
use super::{Ratio, Score, ScoreInput};

#[allow(clippy::expect_used)] // a literal pattern, checked by the tests below
static NUMBER_SPAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\(?(?:[-+\x{2212}]\s?)?(?:\p{Sc}\s?)?(?:[-+\x{2212}]\s?)?\d(?:[\d.,'\x{2019}\x{a0}\x{202f}\x{2009} ]*\d)?\)?")
        .expect("the number span pattern is valid")
});

#[allow(clippy::expect_used)] // a literal pattern, checked by the tests below
static DATE_SPAN: LazyLock<Regex> = LazyLock::new(|| {
    let month = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?";
    let day = r"\d{1,2}(?:st|nd|rd|th)?";
    Regex::new(&format!(
        r"(?i)\b(?:\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}|\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{2,4}}|\d{{8}}|{day}(?:\s+of)?[\s-]+{month},?[\s-]+\d{{2,4}}|{month}\s+{day},?\s+\d{{4}})\b"
    ))
    .expect("the date span pattern is valid")
});

#[derive(Debug)]
pub(super) struct Grounding {
    pub fields: FieldSet,
    pub allow_fence: bool,
}

impl Grounding {
    pub fn score(&self, input: &ScoreInput<'_>) -> Score {
        let Some(source) = input.source else {
            return Score::missing("source text");
        };
        let answer = match parse_answer(input.answer, self.allow_fence) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return self.unreadable("the answer is not a JSON object".to_owned()),
            Err(reason) => return self.unreadable(reason),
        };
        let evidence = Evidence::of(source, &self.fields);
        let (mut grounded, mut extracted, mut nulls) = (0usize, 0usize, 0usize);
        let mut invented = Vec::new();
        for (name, kind) in &self.fields.fields {
            let Some(value) = Slot::of(Some(&answer), name).value() else {
                nulls += 1;
                continue;
            };
            extracted += 1;
            if evidence.grounds(*kind, value) {
                grounded += 1;
            } else {
                invented.push(format!("{name}: {value} is not in the source"));
            }
        }
        let hallucinated = invented.len();
        Score {
            value: if extracted == 0 {
                1.0
            } else {
                grounded as f64 / extracted as f64
            },
            passed: hallucinated == 0,
            ratios: ratios(grounded, extracted, nulls, hallucinated),
            detail: (!invented.is_empty()).then(|| invented.join("; ")),
        }
    }

    /// An answer with no readable fields grounds nothing and invents nothing:
    /// every field counts as null, and the case fails.
    fn unreadable(&self, reason: String) -> Score {
        Score {
            value: 0.0,
            passed: false,
            ratios: ratios(0, 0, self.fields.fields.len(), 0),
            detail: Some(reason),
        }
    }
}

fn ratios(grounded: usize, extracted: usize, nulls: usize, hallucinated: usize) -> Vec<Ratio> {
    vec![
        Ratio {
            name: "grounded_rate",
            numerator: grounded as f64,
            denominator: extracted as f64,
        },
        Ratio {
            name: "null_vs_hallucinated",
            numerator: nulls as f64,
            denominator: (nulls + hallucinated) as f64,
        },
    ]
}

/// The source in the forms values are looked up in, built once per case.
struct Evidence<'a> {
    source: &'a str,
    fields: &'a FieldSet,
    /// SQuAD-normalised, padded with spaces so a token match is a substring match.
    tokens: String,
    numbers: Vec<String>,
    dates: Vec<String>,
}

impl<'a> Evidence<'a> {
    fn of(source: &'a str, fields: &'a FieldSet) -> Evidence<'a> {
        let wants = |kind| fields.fields.iter().any(|(_, k)| *k == kind);
        let numbers = if wants(FieldKind::Number) {
            NUMBER_SPAN
                .find_iter(source)
                .flat_map(|span| number_readings(span.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        let dates = if wants(FieldKind::Date) {
            DATE_SPAN
                .find_iter(source)
                .filter_map(|span| normalize_date(span.as_str(), fields.date_order))
                .collect()
        } else {
            Vec::new()
        };
        Evidence {
            source,
            fields,
            tokens: format!(" {} ", squad_normalize(source)),
            numbers,
            dates,
        }
    }

    fn grounds(&self, kind: FieldKind, value: &Value) -> bool {
        let Some(text) = scalar_text(value) else {
            // An object or array is not a value a span can ground.
            return false;
        };
        if text.is_empty() {
            return true;
        }
        let spans = match kind {
            FieldKind::Exact => return self.source.contains(&text),
            FieldKind::Text => {
                let normalized = squad_normalize(&text);
                return normalized.is_empty() || self.tokens.contains(&format!(" {normalized} "));
            }
            FieldKind::Number => &self.numbers,
            FieldKind::Date => &self.dates,
        };
        // A value that reads as a number (date) must equal a whole span: a
        // bare substring test would ground `5` in `$1,234.50`. Only values
        // that do not normalise (`n/a`, `Q1 2024`) are looked up verbatim.
        match self.fields.canonical(kind, value) {
            Some(canonical) => spans.contains(&canonical),
            None => self.source.contains(text.trim()),
        }
    }
}

/// The numbers a number-like span can stand for: the whole span (sign,
/// currency and parentheses included), the span from its first digit on
/// (the unsigned reading), and each of its space-separated pieces (a span can
/// run two numbers together: `1,234.50 2024`).
fn number_readings(span: &str) -> Vec<String> {
    let unsigned = span
        .find(|c: char| c.is_ascii_digit())
        .map_or(span, |start| &span[start..])
        .trim_end_matches(')');
    let pieces = unsigned
        .split(|c: char| c.is_whitespace())
        .map(|piece| piece.trim_matches(['.', ',']));
    [span, unsigned]
        .into_iter()
        .chain(pieces)
        .filter_map(normalize_number)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::dates::DateOrder;
    use super::*;

    const INVOICE: &str = "ACME Corporation\nInvoice INV-0042, issued 5 March 2024.\n\
        3 widgets at $1,234.50 each. Refund: -$20.00. Due 04/05/2024.";

    fn scorer() -> Grounding {
        let fields = BTreeMap::from([
            ("due".to_owned(), FieldKind::Date),
            ("id".to_owned(), FieldKind::Exact),
            ("issued".to_owned(), FieldKind::Date),
            ("price".to_owned(), FieldKind::Number),
            ("refund".to_owned(), FieldKind::Number),
            ("vendor".to_owned(), FieldKind::Text),
        ]);
        Grounding {
            fields: FieldSet::new(&fields, DateOrder::Dmy).unwrap(),
            allow_fence: false,
        }
    }

    fn score(answer: &str) -> Score {
        scorer().score(&ScoreInput {
            answer,
            expected: None,
            source: Some(INVOICE),
        })
    }

    #[test]
    fn values_found_verbatim_or_as_normalised_spans_are_grounded() {
        let verdict = score(
            r#"{"due": "2024-05-04", "id": "INV-0042", "issued": "2024-03-05",
                "price": 1234.5, "refund": "-20", "vendor": "Acme corporation"}"#,
        );
        assert!(verdict.passed, "{:?}", verdict.detail);
        assert_eq!(verdict.ratio("grounded_rate"), (6.0, 6.0));
        assert_eq!(verdict.ratio("null_vs_hallucinated"), (0.0, 0.0));
        // The unsigned reading of "-$20.00" grounds 20 as well.
        assert!(score(r#"{"refund": 20}"#).passed);
    }

    #[test]
    fn invented_values_are_named_and_nulls_counted_against_them() {
        let verdict = score(
            r#"{"due": "2024-04-05", "id": "INV-42", "price": 1243.5, "vendor": "Acme Inc", "refund": null}"#,
        );
        assert!(!verdict.passed);
        assert_eq!(verdict.ratio("grounded_rate"), (0.0, 4.0));
        // refund null, issued absent: 2 nulls against 4 invented values.
        assert_eq!(verdict.ratio("null_vs_hallucinated"), (2.0, 6.0));
        let detail = verdict.detail.unwrap();
        assert!(
            detail.contains("due: \"2024-04-05\" is not in the source"),
            "{detail}"
        );
        assert!(
            detail.contains("price: 1243.5 is not in the source"),
            "{detail}"
        );
        // A sign the source does not show is not grounded.
        assert!(!score(r#"{"price": -1234.5}"#).passed);
        // A number must be a whole span, not digits inside one: 234 is in
        // "$1,234.50" only as a substring.
        assert!(!score(r#"{"price": 234}"#).passed);
        assert!(score(r#"{"price": "3"}"#).passed, "\"3 widgets\"");
    }

    #[test]
    fn tokens_must_be_whole_and_consecutive() {
        assert!(score(r#"{"vendor": "Corporation"}"#).passed);
        assert!(
            !score(r#"{"vendor": "Corp"}"#).passed,
            "a token prefix is not a token"
        );
        assert!(
            !score(r#"{"vendor": "Corporation ACME"}"#).passed,
            "order matters"
        );
        assert!(
            score(r#"{"vendor": ""}"#).passed,
            "the empty string invents nothing"
        );
    }

    #[test]
    fn an_unreadable_answer_fails_without_inventing() {
        let verdict = score("no JSON here");
        assert!(!verdict.passed);
        assert_eq!(verdict.ratio("grounded_rate"), (0.0, 0.0));
        assert_eq!(verdict.ratio("null_vs_hallucinated"), (6.0, 6.0));
    }
}
