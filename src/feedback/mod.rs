//! `POST /v1/feedback`: an outcome an application posts about a request it
//! made through the gateway (a thumbs-up, a rating, a conversion), checked
//! here and written through the audit log as a feedback record, which
//! `promptgate analyze` joins to the request by `request_id`.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};

use promptgate_core::config::feedback::{FeedbackConfig, LABEL_RULE, MetricKind, is_label};
use promptgate_core::error::GatewayError;

/// Longest `comment` accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;
/// Largest `metadata` object accepted, serialized, in bytes.
pub const MAX_METADATA_BYTES: usize = 4_096;
/// Largest feedback body accepted (whatever `server.max_body_bytes` says).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What a request id looks like: the gateway's UUIDv7 or a caller's own
/// `x-request-id` (1–128 visible ASCII characters), the same rule the gateway
/// applies when it adopts a caller's id.
pub fn is_request_id(text: &str) -> bool {
    (1..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeedbackValue {
    Boolean(bool),
    Number(f64),
}

impl FeedbackValue {
    pub fn kind(self) -> MetricKind {
        match self {
            FeedbackValue::Boolean(_) => MetricKind::Boolean,
            FeedbackValue::Number(_) => MetricKind::Float,
        }
    }
}

/// One accepted feedback event.
#[derive(Debug, Clone)]
pub struct Feedback {
    pub feedback_id: Arc<str>,
    pub request_id: String,
    pub metric: String,
    pub value: FeedbackValue,
    pub comment: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub client_id: Option<Arc<str>>,
    pub config_version: Arc<str>,
    pub received_at: SystemTime,
}

/// The caller's part of a feedback event, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub request_id: String,
    pub metric: String,
    pub value: FeedbackValue,
    pub comment: Option<String>,
    pub metadata: Option<Map<String, Value>>,
}

fn invalid(field: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Reads `{request_id, metric, value, comment?, metadata?}`; every problem is
/// a 400 naming its field.
pub fn parse(body: &[u8], config: &FeedbackConfig) -> Result<Posted, GatewayError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(GatewayError::InvalidJson(
            "the feedback body must be a JSON object".into(),
        ));
    };
    let mut take = |field: &str| object.remove(field);
    let request_id = match take("request_id") {
        Some(Value::String(id)) if is_request_id(&id) => id,
        Some(Value::String(_)) => {
            return Err(invalid(
                "request_id",
                "must be the request id the gateway returned (x-request-id): 1–128 visible ASCII characters",
            ));
        }
        Some(_) => return Err(invalid("request_id", "must be a string")),
        None => return Err(invalid("request_id", "is required")),
    };
    let metric = match take("metric") {
        Some(Value::String(metric)) if is_label(&metric) => metric,
        Some(Value::String(_)) => return Err(invalid("metric", LABEL_RULE)),
        Some(_) => return Err(invalid("metric", "must be a string")),
        None => return Err(invalid("metric", "is required")),
    };
    let value = match take("value") {
        Some(Value::Bool(b)) => FeedbackValue::Boolean(b),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => FeedbackValue::Number(x),
            _ => return Err(invalid("value", "must be a finite number")),
        },
        Some(_) => return Err(invalid("value", "must be a boolean or a number")),
        None => return Err(invalid("value", "is required")),
    };
    if !config.metrics.is_empty() {
        match config.metrics.get(&metric) {
            None => {
                let known: Vec<&str> = config.metrics.keys().map(String::as_str).collect();
                return Err(invalid(
                    "metric",
                    format!("unknown metric `{metric}` (declared: {})", known.join(", ")),
                ));
            }
            Some(&kind) if kind != value.kind() => {
                return Err(invalid(
                    "value",
                    format!(
                        "`{metric}` is declared {}: send {}",
                        kind.label(),
                        match kind {
                            MetricKind::Boolean => "true or false",
                            MetricKind::Float => "a number",
                        }
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let comment = match take("comment") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.chars().count() <= MAX_COMMENT_CHARS => Some(text),
        Some(Value::String(_)) => {
            return Err(invalid(
                "comment",
                format!("is longer than {MAX_COMMENT_CHARS} characters"),
            ));
        }
        Some(_) => return Err(invalid("comment", "must be a string")),
    };
    let metadata = match take("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            if Value::Object(map.clone()).to_string().len() > MAX_METADATA_BYTES {
                return Err(invalid(
                    "metadata",
                    format!("is larger than {MAX_METADATA_BYTES} bytes"),
                ));
            }
            Some(map)
        }
        Some(_) => return Err(invalid("metadata", "must be an object")),
    };
    if let Some(unknown) = object.keys().next() {
        return Err(invalid(
            unknown,
            "unknown field (expected request_id, metric, value, comment, metadata)",
        ));
    }
    Ok(Posted {
        request_id,
        metric,
        value,
        comment,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> FeedbackConfig {
        FeedbackConfig {
            metrics: [
                ("thumbs_up".to_owned(), MetricKind::Boolean),
                ("rating".to_owned(), MetricKind::Float),
            ]
            .into(),
            ..FeedbackConfig::default()
        }
    }

    fn field_of(result: Result<Posted, GatewayError>) -> (String, String) {
        match result {
            Err(GatewayError::InvalidField { field, message }) => (field, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_event_parses() {
        let posted = parse(
            br#"{"request_id":"01939c5e-7f00-7000-8000-000000000001","metric":"rating","value":4.5,
                 "comment":"good","metadata":{"page":"home"}}"#,
            &declared(),
        )
        .unwrap();
        assert_eq!(posted.metric, "rating");
        assert_eq!(posted.value, FeedbackValue::Number(4.5));
        assert_eq!(posted.comment.as_deref(), Some("good"));
        assert_eq!(posted.metadata.unwrap()["page"], "home");
    }

    #[test]
    fn undeclared_metrics_are_typed_by_their_value_when_none_are_declared() {
        let posted = parse(
            br#"{"request_id":"r-1","metric":"converted","value":true}"#,
            &FeedbackConfig::default(),
        )
        .unwrap();
        assert_eq!(posted.value, FeedbackValue::Boolean(true));
    }

    #[test]
    fn every_problem_names_its_field() {
        let cases: [(&[u8], &str, &str); 10] = [
            (
                br#"{"metric":"rating","value":1}"#,
                "request_id",
                "required",
            ),
            (
                br#"{"request_id":"has space","metric":"rating","value":1}"#,
                "request_id",
                "visible ASCII",
            ),
            (
                br#"{"request_id":7,"metric":"rating","value":1}"#,
                "request_id",
                "string",
            ),
            (
                br#"{"request_id":"r","metric":"ratng","value":1}"#,
                "metric",
                "unknown metric `ratng` (declared: rating, thumbs_up)",
            ),
            (
                br#"{"request_id":"r","metric":"bad name!","value":1}"#,
                "metric",
                "1–64 characters",
            ),
            (
                br#"{"request_id":"r","metric":"thumbs_up","value":1}"#,
                "value",
                "declared boolean",
            ),
            (
                br#"{"request_id":"r","metric":"rating","value":"5"}"#,
                "value",
                "boolean or a number",
            ),
            (
                br#"{"request_id":"r","metric":"rating"}"#,
                "value",
                "required",
            ),
            (
                br#"{"request_id":"r","metric":"rating","value":1,"metadata":[1]}"#,
                "metadata",
                "object",
            ),
            (
                br#"{"request_id":"r","metric":"rating","value":1,"score":2}"#,
                "score",
                "unknown field",
            ),
        ];
        for (body, field, message) in cases {
            let (got_field, got_message) = field_of(parse(body, &declared()));
            assert_eq!(got_field, field, "{}", String::from_utf8_lossy(body));
            assert!(
                got_message.contains(message),
                "{got_message} lacks {message}"
            );
        }
        let long = format!(
            r#"{{"request_id":"r","metric":"rating","value":1,"comment":"{}"}}"#,
            "x".repeat(MAX_COMMENT_CHARS + 1)
        );
        assert_eq!(field_of(parse(long.as_bytes(), &declared())).0, "comment");
        let big = format!(
            r#"{{"request_id":"r","metric":"rating","value":1,"metadata":{{"k":"{}"}}}}"#,
            "x".repeat(MAX_METADATA_BYTES)
        );
        assert_eq!(field_of(parse(big.as_bytes(), &declared())).0, "metadata");
    }

    #[test]
    fn numbers_beyond_f64_and_broken_json_are_invalid_json() {
        for body in [
            &br#"{"request_id":"r","metric":"rating","value":1e999}"#[..],
            br#"{"request_id":"r","#,
            br#"[1,2]"#,
        ] {
            assert!(
                matches!(parse(body, &declared()), Err(GatewayError::InvalidJson(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
