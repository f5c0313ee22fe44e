//! `contains`: the answer contains a literal (the spec's `value`, or the
//! case's expected text).

use super::{Score, ScoreInput, expected_text};

#[derive(Debug)]
pub(super) struct Contains {
    pub value: Option<String>,
    /// Compares Unicode lowercase forms.
    pub ignore_case: bool,
}

impl Contains {
    pub fn score(&self, input: &ScoreInput<'_>) -> Score {
        let Some(needle) = self.value.as_deref().or_else(|| expected_text(input)) else {
            return Score::missing("expected text");
        };
        let found = if self.ignore_case {
            input.answer.to_lowercase().contains(&needle.to_lowercase())
        } else {
            input.answer.contains(needle)
        };
        Score::verdict(
            found,
            (!found).then(|| format!("{needle:?} not found in the answer")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_declared_value_wins_over_the_expected_text() {
        let expected = json!("Berlin");
        let input = ScoreInput {
            answer: "The capital is Paris.",
            expected: Some(&expected),
            source: None,
        };
        let declared = Contains {
            value: Some("Paris".into()),
            ignore_case: false,
        };
        assert!(declared.score(&input).passed);
        let from_case = Contains {
            value: None,
            ignore_case: false,
        };
        let verdict = from_case.score(&input);
        assert!(!verdict.passed);
        assert_eq!(
            verdict.detail.as_deref(),
            Some("\"Berlin\" not found in the answer")
        );
    }

    #[test]
    fn ignore_case_compares_unicode_lowercase() {
        let input = ScoreInput {
            answer: "ÜBER ALLES",
            expected: None,
            source: None,
        };
        let sensitive = Contains {
            value: Some("über".into()),
            ignore_case: false,
        };
        assert!(!sensitive.score(&input).passed);
        let insensitive = Contains {
            value: Some("über".into()),
            ignore_case: true,
        };
        assert!(insensitive.score(&input).passed);
    }
}
