//! Text normalisation shared by the scorers, and the SQuAD token F1.
//!
//! Punctuation is one set everywhere: Unicode general category P (Pc, Pd, Ps,
//! Pe, Pi, Pf, Po: `.,;:!?'"«»“”‘’–—…¿¡()[]{}` and their kin in every script)
//! plus the ASCII symbols the official SQuAD script also strips (Python's
//! `string.punctuation` minus category P: `$ + < = > ^ ` | ~`). On ASCII text
//! this is exactly SQuAD's set; beyond ASCII it also removes typographic
//! quotes and dashes, which SQuAD would keep glued to a token.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

#[allow(clippy::expect_used)] // a literal pattern, checked by the tests below
static PUNCTUATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[\p{P}$+<=>^`|~]").expect("the punctuation class is valid"));

#[allow(clippy::expect_used)] // a literal pattern, checked by the tests below
static ARTICLES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(a|an|the)\b").expect("the article pattern is valid"));

/// The normalisations an `exact_match` scorer declares.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextNormalization {
    /// Unicode lowercase (`str::to_lowercase`, full case mapping).
    pub ignore_case: bool,
    /// Runs of Unicode White_Space become one space; leading and trailing ones go.
    pub normalize_whitespace: bool,
    /// Characters of the punctuation set (module docs) are removed.
    pub ignore_punctuation: bool,
}

impl TextNormalization {
    pub fn apply(&self, text: &str) -> String {
        let mut text = if self.ignore_case {
            text.to_lowercase()
        } else {
            text.to_owned()
        };
        if self.ignore_punctuation {
            text = strip_punctuation(&text);
        }
        if self.normalize_whitespace {
            text = collapse_whitespace(&text);
        }
        text
    }
}

pub fn strip_punctuation(text: &str) -> String {
    PUNCTUATION.replace_all(text, "").into_owned()
}

pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SQuAD's `normalize_answer`: lowercase, strip punctuation, drop the
/// articles a/an/the, collapse whitespace.
pub fn squad_normalize(text: &str) -> String {
    let text = strip_punctuation(&text.to_lowercase());
    collapse_whitespace(&ARTICLES.replace_all(&text, " "))
}

/// SQuAD token F1: the harmonic mean of precision and recall of the
/// multiset of normalised whitespace tokens. When either side has no token
/// the F1 is 1 if both have none and 0 otherwise (the SQuAD v2.0 rule; v1.1
/// gave 0 for two empty answers).
pub fn token_f1(prediction: &str, truth: &str) -> f64 {
    let prediction = squad_normalize(prediction);
    let truth = squad_normalize(truth);
    let prediction_tokens: Vec<&str> = prediction.split_whitespace().collect();
    let truth_tokens: Vec<&str> = truth.split_whitespace().collect();
    if prediction_tokens.is_empty() || truth_tokens.is_empty() {
        return if prediction_tokens.is_empty() && truth_tokens.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut truth_counts: HashMap<&str, usize> = HashMap::new();
    for token in &truth_tokens {
        *truth_counts.entry(token).or_default() += 1;
    }
    let mut common = 0usize;
    for token in &prediction_tokens {
        if let Some(count) = truth_counts.get_mut(token)
            && *count > 0
        {
            *count -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / prediction_tokens.len() as f64;
    let recall = common as f64 / truth_tokens.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_drops_case_punctuation_articles_and_extra_space() {
        assert_eq!(
            squad_normalize("  The  Quick, brown fox!  "),
            "quick brown fox"
        );
        assert_eq!(squad_normalize("“An” apple — a day"), "apple day");
        // Articles only as whole words: "theatre" and "anathema" keep theirs.
        assert_eq!(
            squad_normalize("the theatre an anathema"),
            "theatre anathema"
        );
        // Punctuation is removed, not replaced: SQuAD joins "don't" into "dont".
        assert_eq!(squad_normalize("don't"), "dont");
    }

    #[test]
    fn token_f1_is_the_harmonic_mean_over_the_token_multiset() {
        assert_eq!(token_f1("Acme Corp", "acme corp."), 1.0);
        // prediction: {acme, corp, inc}, truth: {acme, corp} → P = 2/3, R = 1.
        let f1 = token_f1("Acme Corp Inc", "Acme Corp");
        assert!((f1 - 0.8).abs() < 1e-12, "{f1}");
        // Multiset: a repeated token counts only as often as the truth has it.
        let f1 = token_f1("paris paris", "paris");
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12, "{f1}");
        assert_eq!(token_f1("london", "paris"), 0.0);
        assert_eq!(token_f1("", "the"), 1.0, "both normalise to no token");
        assert_eq!(token_f1("", "paris"), 0.0);
    }

    #[test]
    fn exact_normalisations_apply_only_when_declared() {
        let none = TextNormalization::default();
        assert_eq!(none.apply(" Hello, World "), " Hello, World ");
        let all = TextNormalization {
            ignore_case: true,
            normalize_whitespace: true,
            ignore_punctuation: true,
        };
        assert_eq!(all.apply(" Hello,\u{00A0}\tWORLD! "), "hello world");
        assert_eq!(all.apply("«Straße»"), "straße");
    }
}
