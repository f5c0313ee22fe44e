//! `json_valid` and `json_schema`, and how every JSON scorer reads an answer.
//!
//! A Markdown code fence around the JSON is refused unless the scorer sets
//! `allow_fence = true`: an application that parses the answer would fail on
//! it, so by default the scorer fails too. With `allow_fence`, exactly one
//! fence enclosing the whole answer (```` ```json ```` or a bare ```` ``` ````,
//! whitespace around it allowed) is unwrapped; text outside the fence is
//! still an error.

use serde_json::Value;

use super::{Score, ScorerError};

/// Parses an answer as JSON under the scorer's fence rule; the error is a
/// sentence for the report.
pub(super) fn parse_answer(answer: &str, allow_fence: bool) -> Result<Value, String> {
    let fenced = unfence(answer);
    let text = match fenced {
        Some(body) if allow_fence => body,
        Some(_) => {
            return Err(
                "the answer is wrapped in a ``` code fence (the scorer does not set allow_fence)"
                    .into(),
            );
        }
        None => answer,
    };
    serde_json::from_str(text).map_err(|error| format!("the answer is not valid JSON: {error}"))
}

/// The body of a code fence that encloses the whole answer, if it is one.
fn unfence(answer: &str) -> Option<&str> {
    let inner = answer.trim().strip_prefix("```")?.strip_suffix("```")?;
    let (info, body) = inner.split_once('\n')?;
    let info = info.trim();
    (info.is_empty() || info.eq_ignore_ascii_case("json")).then_some(body)
}

#[derive(Debug)]
pub(super) struct JsonValid {
    pub allow_fence: bool,
}

impl JsonValid {
    pub fn score(&self, answer: &str) -> Score {
        match parse_answer(answer, self.allow_fence) {
            Ok(_) => Score::verdict(true, None),
            Err(reason) => Score::verdict(false, Some(reason)),
        }
    }
}

pub(super) struct JsonSchema {
    validator: jsonschema::Validator,
    allow_fence: bool,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema")
            .field("allow_fence", &self.allow_fence)
            .finish_non_exhaustive()
    }
}

/// How many schema violations a failed case's detail lists.
const VIOLATIONS_SHOWN: usize = 3;

impl JsonSchema {
    pub fn compile(schema: &Value, allow_fence: bool) -> Result<JsonSchema, ScorerError> {
        let validator =
            jsonschema::validator_for(schema).map_err(|error| ScorerError::InvalidSchema {
                field: "schema",
                message: error.to_string(),
            })?;
        Ok(JsonSchema {
            validator,
            allow_fence,
        })
    }

    pub fn score(&self, answer: &str) -> Score {
        let value = match parse_answer(answer, self.allow_fence) {
            Ok(value) => value,
            Err(reason) => return Score::verdict(false, Some(reason)),
        };
        let violations: Vec<String> = self
            .validator
            .iter_errors(&value)
            .map(|error| {
                format!(
                    "{}: {error}",
                    pointer_or_root(&error.instance_path().to_string())
                )
            })
            .collect();
        if violations.is_empty() {
            return Score::verdict(true, None);
        }
        let mut detail = violations
            .iter()
            .take(VIOLATIONS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if violations.len() > VIOLATIONS_SHOWN {
            detail.push_str(&format!(
                " (and {} more)",
                violations.len() - VIOLATIONS_SHOWN
            ));
        }
        Score::verdict(false, Some(detail))
    }
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_fence_is_refused_unless_allowed() {
        let fenced = "```json\n{\"a\": 1}\n```\n";
        let strict = JsonValid { allow_fence: false }.score(fenced);
        assert!(!strict.passed);
        assert!(strict.detail.unwrap().contains("code fence"));
        assert!(JsonValid { allow_fence: true }.score(fenced).passed);
        assert!(
            JsonValid { allow_fence: true }
                .score("```\n[1, 2]\n```")
                .passed
        );
        // Only a fence around the whole answer is unwrapped.
        assert!(
            !JsonValid { allow_fence: true }
                .score("Here it is:\n```json\n{}\n```")
                .passed
        );
        assert!(
            !JsonValid { allow_fence: true }
                .score("```python\n{}\n```")
                .passed
        );
    }

    #[test]
    fn plain_json_with_surrounding_whitespace_is_valid_and_trailing_text_is_not() {
        assert!(
            JsonValid { allow_fence: false }
                .score("  {\"a\": [1, null]}\n")
                .passed
        );
        let verdict = JsonValid { allow_fence: false }.score("{\"a\": 1} thanks");
        assert!(!verdict.passed);
        assert!(
            verdict
                .detail
                .unwrap()
                .starts_with("the answer is not valid JSON")
        );
    }

    #[test]
    fn schema_violations_are_named_by_their_path() {
        let schema = json!({
            "type": "object",
            "required": ["total"],
            "properties": {"total": {"type": "number"}, "items": {"type": "array", "items": {"type": "string"}}}
        });
        let scorer = JsonSchema::compile(&schema, false).unwrap();
        assert!(scorer.score(r#"{"total": 12.5}"#).passed);
        let verdict = scorer.score(r#"{"total": "12.5", "items": ["a", 3]}"#);
        assert!(!verdict.passed);
        let detail = verdict.detail.unwrap();
        assert!(detail.contains("/total:"), "{detail}");
        assert!(detail.contains("/items/1:"), "{detail}");
        assert!(!scorer.score("[]").passed);
    }

    #[test]
    fn an_invalid_schema_names_the_field() {
        let error = JsonSchema::compile(&json!({"type": "nonsense"}), false).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("schema: invalid JSON Schema:"),
            "{error}"
        );
    }
}
