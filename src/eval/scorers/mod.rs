//! Deterministic scorers: each turns an answer (and the case's expected output
//! or source text) into a `Score` in 0..=1, a pass/fail, and the `Ratio`s the
//! runner sums over cases (a rate over fields is only right when numerators
//! and denominators are summed, not when per-case rates are averaged).
//!
//! A suite declares scorers as `ScorerSpec`s (serde, `kind = "…"`); `compile`
//! checks them and builds what is expensive once (regexes, JSON Schemas), so
//! scoring a case does no parsing of the spec. The rules each scorer applies
//! are documented in docs/eval.md, section "Scorers".

mod contains;
pub mod dates;
mod exact;
mod extraction;
mod fields;
mod grounding;
mod json;
pub mod normalize;
pub mod numbers;
mod pattern;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use fields::FieldKind;

/// One scorer as a suite declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScorerSpec {
    /// The answer equals the expected text after the declared normalisations.
    ExactMatch {
        #[serde(default)]
        ignore_case: bool,
        #[serde(default)]
        normalize_whitespace: bool,
        #[serde(default)]
        ignore_punctuation: bool,
    },
    /// The answer contains `value`, or the case's expected text when `value` is not given.
    Contains {
        #[serde(default)]
        value: Option<String>,
        #[serde(default)]
        ignore_case: bool,
    },
    /// The answer matches `pattern` somewhere (anchor it with `^…$` for a whole match).
    Regex { pattern: String },
    /// The answer parses as JSON.
    JsonValid {
        #[serde(default)]
        allow_fence: bool,
    },
    /// The answer parses as JSON and complies with `schema`.
    JsonSchema {
        schema: serde_json::Value,
        #[serde(default)]
        allow_fence: bool,
    },
    /// Field-level metrics of a JSON answer against the case's expected fields.
    Extraction {
        fields: BTreeMap<String, FieldKind>,
        #[serde(default)]
        date_order: dates::DateOrder,
        #[serde(default)]
        allow_fence: bool,
    },
    /// Every extracted value appears in (or is normalised-equal to a span of) the case's source text.
    Grounding {
        fields: BTreeMap<String, FieldKind>,
        #[serde(default)]
        date_order: dates::DateOrder,
        #[serde(default)]
        allow_fence: bool,
    },
}

/// A scorer spec that cannot be compiled; `field` names the spec field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    #[error("{field}: invalid regular expression: {message}")]
    InvalidRegex {
        field: &'static str,
        message: String,
    },
    #[error("{field}: invalid JSON Schema: {message}")]
    InvalidSchema {
        field: &'static str,
        message: String,
    },
    #[error("{field}: at least one field must be declared")]
    NoFields { field: &'static str },
}

/// What a scorer reads from a case besides the answer, so the runner can
/// refuse a golden set whose cases lack it before anything runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requires {
    /// The expected output as text.
    pub expected_text: bool,
    /// The expected output as a JSON object of fields.
    pub expected_fields: bool,
    /// The case's source text.
    pub source: bool,
}

/// What one case offers a scorer.
#[derive(Debug, Clone, Copy)]
pub struct ScoreInput<'a> {
    pub answer: &'a str,
    pub expected: Option<&'a serde_json::Value>,
    pub source: Option<&'a str>,
}

/// The verdict on one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// In 0..=1; 1 is best.
    pub value: f64,
    pub passed: bool,
    /// Rates to aggregate over cases by summing numerators and denominators.
    pub ratios: Vec<Ratio>,
    /// Why the answer failed (or a note on how it was read), for the report.
    pub detail: Option<String>,
}

/// A rate's parts for one case; the runner sums both over cases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    pub name: &'static str,
    pub numerator: f64,
    pub denominator: f64,
}

impl Score {
    /// A pass/fail verdict worth 1 or 0.
    fn verdict(passed: bool, detail: Option<String>) -> Score {
        Score {
            value: if passed { 1.0 } else { 0.0 },
            passed,
            ratios: Vec::new(),
            detail,
        }
    }

    /// A failure because the case lacks what the scorer needs (the runner
    /// checks `requires` first, so this is a guard, not a normal path).
    fn missing(what: &str) -> Score {
        Score::verdict(false, Some(format!("the case has no {what}")))
    }
}

#[cfg(test)]
impl Score {
    /// A ratio's (numerator, denominator), for assertions.
    pub(crate) fn ratio(&self, name: &str) -> (f64, f64) {
        let ratio = self.ratios.iter().find(|ratio| ratio.name == name).unwrap();
        (ratio.numerator, ratio.denominator)
    }
}

/// A compiled scorer, ready to score many answers.
#[derive(Debug)]
pub struct Scorer {
    kind: Compiled,
}

#[derive(Debug)]
enum Compiled {
    ExactMatch(exact::ExactMatch),
    Contains(contains::Contains),
    Regex(pattern::Pattern),
    JsonValid(json::JsonValid),
    JsonSchema(json::JsonSchema),
    Extraction(extraction::Extraction),
    Grounding(grounding::Grounding),
}

impl ScorerSpec {
    /// Checks the spec and builds what scoring needs (regexes, schemas) once.
    pub fn compile(&self) -> Result<Scorer, ScorerError> {
        let kind = match self {
            ScorerSpec::ExactMatch {
                ignore_case,
                normalize_whitespace,
                ignore_punctuation,
            } => Compiled::ExactMatch(exact::ExactMatch {
                normalization: normalize::TextNormalization {
                    ignore_case: *ignore_case,
                    normalize_whitespace: *normalize_whitespace,
                    ignore_punctuation: *ignore_punctuation,
                },
            }),
            ScorerSpec::Contains { value, ignore_case } => Compiled::Contains(contains::Contains {
                value: value.clone(),
                ignore_case: *ignore_case,
            }),
            ScorerSpec::Regex { pattern } => Compiled::Regex(pattern::Pattern::compile(pattern)?),
            ScorerSpec::JsonValid { allow_fence } => Compiled::JsonValid(json::JsonValid {
                allow_fence: *allow_fence,
            }),
            ScorerSpec::JsonSchema {
                schema,
                allow_fence,
            } => Compiled::JsonSchema(json::JsonSchema::compile(schema, *allow_fence)?),
            ScorerSpec::Extraction {
                fields,
                date_order,
                allow_fence,
            } => Compiled::Extraction(extraction::Extraction {
                fields: fields::FieldSet::new(fields, *date_order)?,
                allow_fence: *allow_fence,
            }),
            ScorerSpec::Grounding {
                fields,
                date_order,
                allow_fence,
            } => Compiled::Grounding(grounding::Grounding {
                fields: fields::FieldSet::new(fields, *date_order)?,
                allow_fence: *allow_fence,
            }),
        };
        Ok(Scorer { kind })
    }
}

impl Scorer {
    /// The spec's `kind`, as a suite writes it.
    pub fn kind(&self) -> &'static str {
        match self.kind {
            Compiled::ExactMatch(_) => "exact_match",
            Compiled::Contains(_) => "contains",
            Compiled::Regex(_) => "regex",
            Compiled::JsonValid(_) => "json_valid",
            Compiled::JsonSchema(_) => "json_schema",
            Compiled::Extraction(_) => "extraction",
            Compiled::Grounding(_) => "grounding",
        }
    }

    pub fn score(&self, input: &ScoreInput<'_>) -> Score {
        match &self.kind {
            Compiled::ExactMatch(scorer) => scorer.score(input),
            Compiled::Contains(scorer) => scorer.score(input),
            Compiled::Regex(scorer) => scorer.score(input.answer),
            Compiled::JsonValid(scorer) => scorer.score(input.answer),
            Compiled::JsonSchema(scorer) => scorer.score(input.answer),
            Compiled::Extraction(scorer) => scorer.score(input),
            Compiled::Grounding(scorer) => scorer.score(input),
        }
    }

    pub fn requires(&self) -> Requires {
        match &self.kind {
            Compiled::ExactMatch(_) => Requires {
                expected_text: true,
                ..Requires::default()
            },
            Compiled::Contains(scorer) => Requires {
                expected_text: scorer.value.is_none(),
                ..Requires::default()
            },
            Compiled::Regex(_) | Compiled::JsonValid(_) | Compiled::JsonSchema(_) => {
                Requires::default()
            }
            Compiled::Extraction(_) => Requires {
                expected_fields: true,
                ..Requires::default()
            },
            Compiled::Grounding(_) => Requires {
                source: true,
                ..Requires::default()
            },
        }
    }
}

/// The case's expected output as text, if it is text.
fn expected_text<'a>(input: &ScoreInput<'a>) -> Option<&'a str> {
    input.expected.and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Suite {
        scorers: Vec<ScorerSpec>,
    }

    fn specs(toml_text: &str) -> Result<Vec<ScorerSpec>, toml::de::Error> {
        toml::from_str::<Suite>(toml_text).map(|suite| suite.scorers)
    }

    #[test]
    fn a_suite_declares_scorers_by_kind_in_toml() {
        let specs = specs(
            r#"
            [[scorers]]
            kind = "exact_match"
            ignore_case = true
            [[scorers]]
            kind = "json_valid"
            [[scorers]]
            kind = "json_schema"
            schema = { type = "object", required = ["total"] }
            [[scorers]]
            kind = "extraction"
            fields = { total = "number", date = "date", vendor = "text", id = "exact" }
            date_order = "mdy"
            [[scorers]]
            kind = "grounding"
            fields = { total = "number" }
            "#,
        )
        .unwrap();
        let scorers: Vec<Scorer> = specs.iter().map(|spec| spec.compile().unwrap()).collect();
        let kinds: Vec<&str> = scorers.iter().map(Scorer::kind).collect();
        assert_eq!(
            kinds,
            [
                "exact_match",
                "json_valid",
                "json_schema",
                "extraction",
                "grounding"
            ]
        );
        assert!(scorers[0].requires().expected_text);
        assert_eq!(scorers[1].requires(), Requires::default());
        assert!(scorers[3].requires().expected_fields);
        assert!(scorers[4].requires().source);
    }

    #[test]
    fn unknown_kinds_fields_and_field_kinds_are_refused() {
        let unknown_kind = specs("[[scorers]]\nkind = \"bleu\"")
            .unwrap_err()
            .to_string();
        assert!(
            unknown_kind.contains("unknown variant `bleu`"),
            "{unknown_kind}"
        );
        let unknown_field = specs("[[scorers]]\nkind = \"exact_match\"\nignore_cases = true")
            .unwrap_err()
            .to_string();
        assert!(
            unknown_field.contains("unknown field `ignore_cases`"),
            "{unknown_field}"
        );
        let unknown_field_kind =
            specs("[[scorers]]\nkind = \"extraction\"\nfields = { total = \"money\" }")
                .unwrap_err()
                .to_string();
        assert!(
            unknown_field_kind.contains("unknown variant `money`"),
            "{unknown_field_kind}"
        );
    }

    #[test]
    fn compile_errors_name_the_spec_field() {
        let empty = ScorerSpec::Extraction {
            fields: BTreeMap::new(),
            date_order: dates::DateOrder::Dmy,
            allow_fence: false,
        };
        assert_eq!(
            empty.compile().unwrap_err().to_string(),
            "fields: at least one field must be declared"
        );
        let regex = ScorerSpec::Regex {
            pattern: "[".to_owned(),
        };
        assert!(
            regex
                .compile()
                .unwrap_err()
                .to_string()
                .starts_with("pattern: ")
        );
    }
}
