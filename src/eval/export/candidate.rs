//! An audit record → a golden-set candidate line (docs/eval.md, "Export").
//!
//! The conversation is the `request` the provider was sent (for experiments:
//! after the variant's templates); the expected output is the answer served,
//! kept for a reviewer to confirm or correct, so every candidate says
//! `"review": "unreviewed"`. Values the gateway redacted are copied as the
//! markers they are and listed in `origin.redacted`: nothing is taken from
//! another field to fill them in.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// The audit-record fields the export reads (schema v1, docs/audit-schema.md).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExportRow {
    pub request_id: String,
    /// With `request_id`, what feedback joins on.
    pub client_id: Option<String>,
    pub role: String,
    pub ts_start: String,
    pub experiment: Option<String>,
    pub served_variant: Option<String>,
    pub outcome: Option<String>,
    pub error_class: Option<String>,
    pub endpoint: Option<String>,
    /// The request's tags (`null` in the log: none).
    #[serde(default)]
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    /// Kept as text until the record is sampled: most records never are.
    pub request: Option<Box<RawValue>>,
    pub response_text: Option<String>,
}

/// Why a record cannot be a candidate, as counted in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unusable {
    /// A shadow call: nobody saw its answer.
    Shadow,
    /// A failed attempt a fallback replaced.
    Abandoned,
    /// Bodies not logged (or a refusal, which has none).
    NoBodies,
    /// Not a chat request (embeddings, completions, responses, …).
    NotChat,
}

impl Unusable {
    pub fn label(self) -> &'static str {
        match self {
            Unusable::Shadow => "shadow calls",
            Unusable::Abandoned => "abandoned attempts",
            Unusable::NoBodies => "without logged bodies",
            Unusable::NotChat => "not chat requests",
        }
    }
}

impl ExportRow {
    /// Whether the record can become a candidate at all, before any filter.
    pub fn usable(&self) -> Result<(), Unusable> {
        if self.role != "served" {
            return Err(Unusable::Shadow);
        }
        if self.outcome.as_deref() == Some("abandoned") {
            return Err(Unusable::Abandoned);
        }
        if self.request.is_none() || self.response_text.is_none() {
            return Err(Unusable::NoBodies);
        }
        if !matches!(
            self.endpoint.as_deref(),
            Some("chat_completions" | "messages")
        ) {
            return Err(Unusable::NotChat);
        }
        Ok(())
    }

    /// The candidate line; `None` when the logged request has no `messages`.
    pub fn candidate(&self, id: &str, feedback: Option<Map<String, Value>>) -> Option<Value> {
        let request: Value = serde_json::from_str(self.request.as_ref()?.get()).ok()?;
        let messages = chat_messages(&request)?;
        let answer = self.response_text.as_deref()?;
        // A JSON object answer is an extraction: expected fields, not text.
        let expected = match serde_json::from_str::<Value>(answer) {
            Ok(object @ Value::Object(_)) => object,
            _ => Value::from(answer),
        };
        let mut redacted = Vec::new();
        find_redacted(&messages, "request.messages", &mut redacted);
        find_redacted(&expected, "expected", &mut redacted);
        let mut origin = json!({
            "request_id": self.request_id,
            "experiment": self.experiment,
            "variant": self.served_variant,
            "ts": self.ts_start,
        });
        if let Some(feedback) = feedback {
            origin["feedback"] = Value::Object(feedback);
        }
        if !redacted.is_empty() {
            origin["redacted"] = json!(redacted);
        }
        Some(json!({
            "id": id,
            "messages": messages,
            "expected": expected,
            "tags": {},
            "review": "unreviewed",
            "origin": origin,
        }))
    }
}

/// The conversation in the OpenAI shape: Anthropic's top-level `system`
/// becomes the first message.
fn chat_messages(request: &Value) -> Option<Value> {
    let mut messages = request.get("messages")?.as_array()?.clone();
    if let Some(system) = request.get("system").filter(|system| !system.is_null()) {
        messages.insert(0, json!({"role": "system", "content": system}));
    }
    Some(Value::Array(messages))
}

/// A value the audit writer put in place of a redacted one: `[redacted]`
/// (`redaction = "marker"`) or `sha256:` and 64 hex digits (`"hash"`).
fn is_redaction_marker(text: &str) -> bool {
    text == "[redacted]"
        || text
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn find_redacted(value: &Value, path: &str, found: &mut Vec<String>) {
    match value {
        Value::String(text) if is_redaction_marker(text) => found.push(path.to_owned()),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                find_redacted(item, &format!("{path}[{index}]"), found);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                find_redacted(item, &format!("{path}.{key}"), found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(request: &str, answer: &str) -> ExportRow {
        ExportRow {
            request_id: "r1".into(),
            role: "served".into(),
            ts_start: "2026-12-01T10:00:00.000Z".into(),
            experiment: Some("greeting".into()),
            served_variant: Some("friendly".into()),
            outcome: Some("completed".into()),
            endpoint: Some("chat_completions".into()),
            request: Some(RawValue::from_string(request.into()).unwrap()),
            response_text: Some(answer.into()),
            ..ExportRow::default()
        }
    }

    #[test]
    fn the_served_answer_becomes_the_unreviewed_expected_output() {
        let candidate = row(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            "Hello!",
        )
        .candidate("r1", None)
        .unwrap();
        assert_eq!(
            candidate,
            json!({
                "id": "r1",
                "messages": [{"role": "user", "content": "hi"}],
                "expected": "Hello!",
                "tags": {},
                "review": "unreviewed",
                "origin": {"request_id": "r1", "experiment": "greeting", "variant": "friendly", "ts": "2026-12-01T10:00:00.000Z"}
            })
        );
        let extraction = row(r#"{"messages":[]}"#, r#"{"total": 5}"#)
            .candidate("r1", None)
            .unwrap();
        assert_eq!(extraction["expected"], json!({"total": 5}));
    }

    #[test]
    fn redaction_markers_are_kept_and_listed() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        let request = format!(
            r#"{{"system":"Be brief.","messages":[{{"role":"user","content":"{hash}"}}]}}"#
        );
        let candidate = row(&request, "[redacted]").candidate("r1", None).unwrap();
        assert_eq!(candidate["expected"], "[redacted]");
        assert_eq!(
            candidate["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(candidate["messages"][1]["content"], hash.as_str());
        assert_eq!(
            candidate["origin"]["redacted"],
            json!(["request.messages[1].content", "expected"])
        );
        assert!(!is_redaction_marker("sha256:abc"));
    }

    #[test]
    fn records_that_cannot_be_candidates_say_why() {
        let mut shadow = row("{}", "");
        shadow.role = "shadow".into();
        assert_eq!(shadow.usable(), Err(Unusable::Shadow));
        let mut embeddings = row("{}", "");
        embeddings.endpoint = Some("embeddings".into());
        assert_eq!(embeddings.usable(), Err(Unusable::NotChat));
        let mut refused = row("{}", "");
        refused.request = None;
        assert_eq!(refused.usable(), Err(Unusable::NoBodies));
        assert!(row("{}", "").candidate("r1", None).is_none(), "no messages");
    }
}
