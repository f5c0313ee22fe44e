//! Golden sets: JSON Lines, one case per line. Every line is checked before
//! anything runs; a problem names the file, the line and the field.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// One golden case, as read from its line.
#[derive(Debug, Clone)]
pub struct GoldenCase {
    pub id: String,
    /// 1-based line in the golden-set file.
    pub line: usize,
    /// The conversation sent (OpenAI chat shape); `input` is one user message.
    pub messages: Vec<Value>,
    /// Template variables for the variants' `system`/`user` templates.
    pub variables: Map<String, Value>,
    /// Text, or a JSON object of expected fields; `None`: nothing expected
    /// (only scorers that need no reference can judge the case).
    pub expected: Option<Value>,
    pub tags: BTreeMap<String, String>,
    /// The document the answer must be grounded in.
    pub source: Option<String>,
}

/// A problem found in a golden set, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub line: usize,
    /// The field (`expected`, `tags.kind`, `messages[1].content`); empty for the line itself.
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("cannot read the golden set {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<LineProblem>,
    },
}

fn render(file: &Path, problems: &[LineProblem]) -> String {
    problems
        .iter()
        .map(|p| {
            let field = if p.field.is_empty() {
                String::new()
            } else {
                format!("{}: ", p.field)
            };
            format!("{}:{}: {field}{}", file.display(), p.line, p.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and checks a golden-set file.
pub fn load(file: &Path) -> Result<Vec<GoldenCase>, GoldenError> {
    let text = std::fs::read_to_string(file).map_err(|source| GoldenError::Read {
        file: file.to_owned(),
        source,
    })?;
    parse(&text).map_err(|problems| GoldenError::Invalid {
        file: file.to_owned(),
        problems,
    })
}

const FIELDS: [&str; 9] = [
    "id",
    "input",
    "messages",
    "variables",
    "expected",
    "tags",
    "source",
    "review",
    "origin",
];

/// Every case of the text, or every problem of every line (blank lines and
/// lines starting with `//` are skipped).
pub fn parse(text: &str) -> Result<Vec<GoldenCase>, Vec<LineProblem>> {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut first_line_of_id: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with("//") {
            continue;
        }
        let mut report = |field: &str, message: String| {
            problems.push(LineProblem {
                line,
                field: field.to_owned(),
                message,
            })
        };
        let object = match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                report("", "expected a JSON object (one case per line)".into());
                continue;
            }
            Err(error) => {
                report("", format!("not JSON: {error}"));
                continue;
            }
        };
        match case(object, line, &mut report) {
            Some(case) => match first_line_of_id.get(&case.id) {
                Some(first) => report(
                    "id",
                    format!("`{}` is already used on line {first}", case.id),
                ),
                None => {
                    first_line_of_id.insert(case.id.clone(), line);
                    cases.push(case);
                }
            },
            None => continue,
        }
    }
    if cases.is_empty() && problems.is_empty() {
        problems.push(LineProblem {
            line: 1,
            field: String::new(),
            message: "the golden set has no case".into(),
        });
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(problems)
    }
}

/// One line's case; `None` after reporting what is wrong with it.
fn case(
    mut object: Map<String, Value>,
    line: usize,
    report: &mut impl FnMut(&str, String),
) -> Option<GoldenCase> {
    let mut bad = 0usize;
    let mut fail = |field: &str, message: String| {
        bad += 1;
        report(field, message);
    };
    for key in object.keys() {
        if !FIELDS.contains(&key.as_str()) {
            fail(
                key,
                format!("unknown field (expected one of {})", FIELDS.join(", ")),
            );
        }
    }
    let id = match object.remove("id") {
        Some(Value::String(id)) if !id.trim().is_empty() => Some(id),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            fail("id", "must be a non-empty string".into());
            None
        }
        None => {
            fail("id", "missing: every case needs an id".into());
            None
        }
    };
    let mut messages = match object.remove("messages") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_message(item, &format!("messages[{i}]"), &mut fail);
            }
            items
        }
        Some(_) => {
            fail(
                "messages",
                "must be an array of {\"role\", \"content\"} objects".into(),
            );
            Vec::new()
        }
    };
    match object.remove("input") {
        None => {}
        Some(Value::String(text)) => {
            messages.push(serde_json::json!({"role": "user", "content": text}))
        }
        Some(_) => fail("input", "must be a string (the user's message)".into()),
    }
    let variables = match object.remove("variables") {
        None => Map::new(),
        Some(Value::Object(map)) => {
            for (name, value) in &map {
                if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    fail(
                        &format!("variables.{name}"),
                        "must be a string, number or boolean".into(),
                    );
                }
            }
            map
        }
        Some(_) => {
            fail(
                "variables",
                "must be an object of template variables".into(),
            );
            Map::new()
        }
    };
    if messages.is_empty() && variables.is_empty() {
        fail(
            "input",
            "missing: a case needs `input`, `messages` or `variables`".into(),
        );
    }
    let expected = match object.remove("expected") {
        None | Some(Value::Null) => None,
        Some(value @ (Value::String(_) | Value::Object(_))) => Some(value),
        Some(_) => {
            fail(
                "expected",
                "must be a string or an object of expected fields".into(),
            );
            None
        }
    };
    let mut tags = BTreeMap::new();
    match object.remove("tags") {
        None => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                match promptgate_core::experiments::decide::scalar_text(&value) {
                    Some(text) => {
                        tags.insert(name, text);
                    }
                    None => fail(
                        &format!("tags.{name}"),
                        "must be a string, number or boolean".into(),
                    ),
                }
            }
        }
        Some(_) => fail(
            "tags",
            "must be an object such as {\"doc_type\": \"invoice\"}".into(),
        ),
    }
    let source = match object.remove("source") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(_) => {
            fail("source", "must be a string (the source text)".into());
            None
        }
    };
    // `export-dataset` writes candidates as `"review": "unreviewed"`: their
    // expected output is what was served, not a truth, so a gate never
    // runs on one until a person has confirmed it.
    match object.remove("review") {
        None => {}
        Some(Value::String(state)) if state == "reviewed" => {}
        Some(Value::String(state)) if state == "unreviewed" => fail(
            "review",
            "an unreviewed candidate: confirm or correct `expected`, then set \"reviewed\" (or remove the field)".into(),
        ),
        Some(_) => fail("review", "must be \"reviewed\" or \"unreviewed\"".into()),
    }
    if let Some(origin) = object.remove("origin")
        && !origin.is_object()
    {
        fail(
            "origin",
            "must be an object (where the case came from)".into(),
        );
    }
    if bad > 0 {
        return None;
    }
    Some(GoldenCase {
        id: id?,
        line,
        messages,
        variables,
        expected,
        tags,
        source,
    })
}

fn check_message(item: &Value, field: &str, fail: &mut impl FnMut(&str, String)) {
    let Some(message) = item.as_object() else {
        fail(field, "must be an object with `role` and `content`".into());
        return;
    };
    match message.get("role").and_then(Value::as_str) {
        Some("system" | "developer" | "user" | "assistant") => {}
        Some(other) => fail(
            &format!("{field}.role"),
            format!("`{other}` is not one of system, developer, user, assistant"),
        ),
        None => fail(&format!("{field}.role"), "missing (a string)".into()),
    }
    if !matches!(
        message.get("content"),
        Some(Value::String(_) | Value::Array(_))
    ) {
        fail(
            &format!("{field}.content"),
            "must be a string or an array of content parts".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cases_with_every_field() {
        let text = r#"{"id": "a", "input": "hi", "expected": "hello", "tags": {"kind": "greeting", "n": 2}}

// a comment
{"id": "b", "variables": {"document": "Total: 4"}, "expected": {"total": 4}, "source": "Total: 4"}
"#;
        let cases = parse(text).expect("valid");
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].messages[0]["content"], "hi");
        assert_eq!(cases[0].tags["n"], "2");
        assert_eq!(cases[1].line, 4);
        assert_eq!(cases[1].expected, Some(serde_json::json!({"total": 4})));
        assert_eq!(cases[1].source.as_deref(), Some("Total: 4"));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_field() {
        let text = r#"{"id": "a", "input": "hi"}
not json
{"input": "no id"}
{"id": "c", "input": 3, "tags": {"x": [1]}, "extra": true}
{"id": "a", "input": "again"}
{"id": "e", "messages": [{"role": "robot", "content": "x"}], "expected": 5}
"#;
        let problems = parse(text).expect_err("invalid");
        let located: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(
            located,
            vec![
                (2, ""),
                (3, "id"),
                (4, "extra"),
                (4, "input"),
                (4, "input"),
                (4, "tags.x"),
                (5, "id"),
                (6, "messages[0].role"),
                (6, "expected"),
            ]
        );
        assert!(problems[6].message.contains("line 1"), "{:?}", problems[6]);
    }

    #[test]
    fn exported_candidates_load_once_reviewed() {
        let reviewed = r#"{"id": "r1", "messages": [{"role": "user", "content": "hi"}], "expected": "hello", "tags": {}, "review": "reviewed", "origin": {"request_id": "r1"}}"#;
        let cases = parse(reviewed).expect("a reviewed candidate is a case");
        assert_eq!(cases[0].messages[0]["content"], "hi");
        let unreviewed = reviewed.replace("\"reviewed\"", "\"unreviewed\"");
        let problems = parse(&unreviewed).expect_err("an unreviewed candidate is refused");
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].line, problems[0].field.as_str()),
            (1, "review")
        );
        let bad_origin = reviewed.replace(r#"{"request_id": "r1"}"#, "7");
        let problems = parse(&bad_origin).expect_err("origin must be an object");
        assert_eq!(problems[0].field, "origin");
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(parse("\n\n").is_err());
    }
}
