//! `exact_match`: the answer equals the expected text after the declared
//! normalisations (none by default: a trailing newline is a difference).

use super::normalize::TextNormalization;
use super::{Score, ScoreInput, expected_text};

#[derive(Debug)]
pub(super) struct ExactMatch {
    pub normalization: TextNormalization,
}

impl ExactMatch {
    pub fn score(&self, input: &ScoreInput<'_>) -> Score {
        let Some(expected) = expected_text(input) else {
            return Score::missing("expected text");
        };
        let answer = self.normalization.apply(input.answer);
        let expected = self.normalization.apply(expected);
        if answer == expected {
            Score::verdict(true, None)
        } else {
            Score::verdict(
                false,
                Some(format!(
                    "expected {expected:?}, got {answer:?} (normalised)"
                )),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn score(
        normalization: TextNormalization,
        answer: &str,
        expected: &serde_json::Value,
    ) -> Score {
        let input = ScoreInput {
            answer,
            expected: Some(expected),
            source: None,
        };
        ExactMatch { normalization }.score(&input)
    }

    #[test]
    fn without_normalisation_every_character_counts() {
        let strict = TextNormalization::default();
        assert!(score(strict, "Paris", &json!("Paris")).passed);
        assert!(!score(strict, "Paris\n", &json!("Paris")).passed);
        assert!(!score(strict, "paris", &json!("Paris")).passed);
    }

    #[test]
    fn each_normalisation_forgives_only_its_own_difference() {
        let case = TextNormalization {
            ignore_case: true,
            ..TextNormalization::default()
        };
        assert!(score(case, "PARIS", &json!("paris")).passed);
        assert!(!score(case, "Paris.", &json!("paris")).passed);
        let punctuation = TextNormalization {
            ignore_punctuation: true,
            ..TextNormalization::default()
        };
        assert!(score(punctuation, "“Paris.”", &json!("Paris")).passed);
        assert!(!score(punctuation, " Paris", &json!("Paris")).passed);
        let whitespace = TextNormalization {
            normalize_whitespace: true,
            ..TextNormalization::default()
        };
        assert!(score(whitespace, "  New\n York ", &json!("New York")).passed);
        assert!(!score(whitespace, "NewYork", &json!("New York")).passed);
    }

    #[test]
    fn a_case_without_expected_text_fails_with_a_reason() {
        let verdict = score(
            TextNormalization::default(),
            "Paris",
            &json!({"city": "Paris"}),
        );
        assert!(!verdict.passed);
        assert_eq!(
            verdict.detail.as_deref(),
            Some("the case has no expected text")
        );
    }
}
