//! `regex`: the answer matches a pattern (the `regex` crate's syntax: no
//! look-around or backreferences, linear time in the answer's length).

use regex::Regex;

use super::{Score, ScorerError};

#[derive(Debug)]
pub(super) struct Pattern {
    regex: Regex,
}

impl Pattern {
    pub fn compile(pattern: &str) -> Result<Pattern, ScorerError> {
        Regex::new(pattern)
            .map(|regex| Pattern { regex })
            .map_err(|error| ScorerError::InvalidRegex {
                field: "pattern",
                message: error.to_string(),
            })
    }

    pub fn score(&self, answer: &str) -> Score {
        let found = self.regex.is_match(answer);
        Score::verdict(
            found,
            (!found).then(|| format!("no match for /{}/", self.regex.as_str())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_anywhere_unless_anchored() {
        let anywhere = Pattern::compile(r"\d{4}-\d{2}-\d{2}").unwrap();
        assert!(anywhere.score("due 2024-03-05.").passed);
        let whole = Pattern::compile(r"^\d{4}-\d{2}-\d{2}$").unwrap();
        assert!(!whole.score("due 2024-03-05.").passed);
        assert_eq!(
            whole.score("soon").detail.as_deref(),
            Some(r"no match for /^\d{4}-\d{2}-\d{2}$/")
        );
    }

    #[test]
    fn an_invalid_pattern_names_the_field() {
        let error = Pattern::compile("(unclosed").unwrap_err().to_string();
        assert!(
            error.starts_with("pattern: invalid regular expression:"),
            "{error}"
        );
        // Look-around is not supported by the regex crate: refused at compile time.
        assert!(Pattern::compile("(?=x)").is_err());
    }
}
