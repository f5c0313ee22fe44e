//! Reads what routing needs from a request body (`model`, `stream`) and
//! checks the type of every field the gateway reads or rewrites, in one pass
//! without building a tree of the body (`shape.rs`); the rest is validated as
//! JSON and skipped.

use serde::de::DeserializeOwned;

use super::Endpoint;
use super::shape::{self, Body, Messages, ResponsesInput, Unchecked};

/// Why a request body is refused, naming the field. `GatewayError` takes it
/// over (`From` in `error.rs`), so this module needs nothing from the error one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("invalid JSON in request body: {0}")]
    InvalidJson(String),
    #[error("invalid value for `{field}`: {message}")]
    InvalidField { field: String, message: String },
    #[error("missing required field `model`")]
    MissingModel,
    #[error("missing required field `{field}`: expected {expected}")]
    MissingField {
        field: String,
        expected: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub model: String,
    pub stream: bool,
}

/// Parses and checks a request body for `endpoint`: a 400 naming the field
/// (`messages[2].content`) and saying what was expected when a field the
/// gateway reads has the wrong type or a required one is missing.
pub fn parse_head(endpoint: Endpoint, body: &[u8]) -> Result<RequestHead, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::InvalidJson(
            "the request body is empty; expected a JSON object".into(),
        ));
    }
    // serde would read a struct from an array by position; only objects are requests.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => RequestError::InvalidField {
                    field: "body".into(),
                    message: "the request body must be a JSON object".into(),
                },
                Err(err) => RequestError::InvalidJson(err.to_string()),
            },
        );
    }
    let (model, stream, has_messages) = match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::CountTokens => {
            let body: Body<Messages, Unchecked> = parse(body)?;
            (body.model, body.stream, body.messages.is_some())
        }
        Endpoint::Responses => {
            let body: Body<Unchecked, ResponsesInput> = parse(body)?;
            (body.model, body.stream, true)
        }
        _ => {
            let body: Body<Unchecked, Unchecked> = parse(body)?;
            (body.model, body.stream, true)
        }
    };
    let model = match model {
        Some(model) if !model.trim().is_empty() => model,
        Some(_) => {
            return Err(RequestError::InvalidField {
                field: "model".into(),
                message: "must not be empty".into(),
            });
        }
        None => return Err(RequestError::MissingModel),
    };
    if !has_messages {
        return Err(RequestError::MissingField {
            field: "messages".into(),
            expected: shape::MESSAGES_EXPECTED,
        });
    }
    Ok(RequestHead {
        model,
        stream: stream.unwrap_or(false),
    })
}

/// Reads `body` as `T`. The field path costs an allocation per key, so it is
/// only worked out when the body is refused: the body is then read again,
/// tracking the path.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    match read::<T>(body) {
        Ok(value) => Ok(value),
        Err(err) if err.is_syntax() || err.is_eof() => {
            Err(RequestError::InvalidJson(err.to_string()))
        }
        Err(_) => Err(refusal_with_path::<T>(body)),
    }
}

fn read<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = T::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

fn refusal_with_path<T: DeserializeOwned>(body: &[u8]) -> RequestError {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Ok(_) => {
            return match deserializer.end() {
                Err(err) => RequestError::InvalidJson(err.to_string()),
                // Unreachable: the same bytes failed a moment ago.
                Ok(()) => RequestError::InvalidJson("the request body could not be read".into()),
            };
        }
        Err(err) => err,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return RequestError::InvalidJson(inner.to_string());
    }
    let message = strip_position(&inner.to_string());
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return RequestError::MissingField {
            field: join_path(&path, name),
            expected: shape::expected_of(name),
        };
    }
    RequestError::InvalidField {
        field: path,
        message: plain(&message),
    }
}

/// `messages[2]` + `role` → `messages[2].role`; the root path is `.`.
fn join_path(path: &str, name: &str) -> String {
    if path == "." {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// serde's "invalid type: string \"x\", expected a number" put the way a
/// person reads it: what was expected first, then what came.
fn plain(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(", expected "))
        {
            return format!("expected {expected}, got {got}");
        }
    }
    message.to_owned()
}

/// serde_json appends " at line L column C" to type errors; with the field path
/// in front it only adds noise.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: Endpoint = Endpoint::ChatCompletions;

    #[test]
    fn reads_model_and_stream() {
        let head = parse_head(
            CHAT,
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"stream":true}"#,
        )
        .unwrap();
        assert_eq!(
            head,
            RequestHead {
                model: "gpt-4o".into(),
                stream: true
            }
        );
        let head = parse_head(Endpoint::Embeddings, br#"{"model":"m","input":[1,2]}"#).unwrap();
        assert!(!head.stream);
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        let err = parse_head(CHAT, br#"{"model":"m","messages":[}"#).unwrap_err();
        assert!(
            matches!(err, RequestError::InvalidJson(ref m) if m.contains("line 1")),
            "{err:?}"
        );
        assert!(matches!(
            parse_head(CHAT, b"").unwrap_err(),
            RequestError::InvalidJson(_)
        ));
        assert!(matches!(
            parse_head(CHAT, br#"{"model":"m","messages":[]} trailing"#).unwrap_err(),
            RequestError::InvalidJson(_)
        ));
    }

    /// The refusal of `body` on `endpoint`, as (field, message).
    fn refused(endpoint: Endpoint, body: &str) -> (String, String) {
        match parse_head(endpoint, body.as_bytes()) {
            Err(RequestError::InvalidField { field, message }) => (field, message),
            Err(RequestError::MissingField { field, expected }) => (field, expected.to_owned()),
            other => panic!("{body} on {endpoint:?}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        let (field, message) = refused(CHAT, r#"{"model":42,"messages":[]}"#);
        assert_eq!(field, "model");
        assert!(message.contains("expected a string"), "{message}");
        assert!(!message.contains("line"), "{message}");
        let (field, message) = refused(CHAT, r#"{"model":"m","messages":[],"stream":"yes"}"#);
        assert_eq!(field, "stream");
        assert_eq!(message, r#"expected a boolean, got string "yes""#);
        assert_eq!(refused(CHAT, "[1,2]").0, "body");
    }

    #[test]
    fn messages_must_be_an_array_of_message_objects() {
        for endpoint in [CHAT, Endpoint::Messages, Endpoint::CountTokens] {
            for messages in [r#""not-a-list""#, "{}", "42", "true"] {
                let body = format!(r#"{{"model":"m","messages":{messages}}}"#);
                let (field, message) = refused(endpoint, &body);
                assert_eq!(field, "messages", "{body}");
                assert!(
                    message.starts_with("expected an array of message objects, got "),
                    "{message}"
                );
            }
            for body in [r#"{"model":"m"}"#, r#"{"model":"m","messages":null}"#] {
                assert_eq!(
                    refused(endpoint, body),
                    ("messages".into(), "an array of message objects".into())
                );
            }
        }
    }

    #[test]
    fn message_items_are_checked_with_their_path() {
        let cases = [
            (
                r#"[{"role":"user","content":"a"},"hi"]"#,
                "messages[1]",
                "expected a message object with a `role` and a `content`",
            ),
            (
                r#"[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"user","content":7}]"#,
                "messages[2].content",
                "expected a string or an array of content parts, got integer `7`",
            ),
            (
                r#"[{"role":1,"content":"a"}]"#,
                "messages[0].role",
                "expected a string, got integer `1`",
            ),
            (
                r#"[{"content":"a"}]"#,
                "messages[0].role",
                "a string such as \"user\" or \"assistant\"",
            ),
            (
                r#"[{"role":"user","content":["x"]}]"#,
                "messages[0].content[0]",
                "expected a content part object",
            ),
            (
                r#"[{"role":"user","content":[{"type":"text","text":{"a":1}}]}]"#,
                "messages[0].content[0].text",
                "expected a string, got map",
            ),
        ];
        for endpoint in [CHAT, Endpoint::Messages] {
            for (messages, path, expected) in cases {
                let body = format!(r#"{{"model":"m","messages":{messages}}}"#);
                let (field, message) = refused(endpoint, &body);
                assert_eq!(field, path, "{body}");
                assert!(message.starts_with(expected), "{body}: {message}");
            }
        }
    }

    #[test]
    fn valid_messages_pass_with_unknown_fields_untouched() {
        for endpoint in [CHAT, Endpoint::Messages] {
            let body = br#"{"model":"m","messages":[
                {"role":"system","content":"Be brief."},
                {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image","source":{"data":"..."}}],"name":"u"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1"}]}
            ],"max_tokens":10,"max_completion_tokens":5,"temperature":0.5,"top_p":1,
            "system":[{"type":"text","text":"s"}],"a_field_from_next_year":{"x":[1]}}"#;
            assert_eq!(parse_head(endpoint, body).unwrap().model, "m");
        }
    }

    #[test]
    fn numbers_are_checked() {
        let with = |field: &str, value: &str| {
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"{field}":{value}}}"#
            )
        };
        for field in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
            for (value, got) in [
                ("\"10\"", r#"string "10""#),
                ("1.5", "floating point `1.5`"),
                ("-1", "integer `-1`"),
            ] {
                assert_eq!(
                    refused(CHAT, &with(field, value)),
                    (
                        field.to_owned(),
                        format!("expected a whole number ≥ 0, got {got}")
                    )
                );
            }
            assert!(parse_head(CHAT, with(field, "null").as_bytes()).is_ok());
        }
        for field in ["temperature", "top_p"] {
            assert_eq!(
                refused(CHAT, &with(field, "\"hot\"")),
                (
                    field.to_owned(),
                    r#"expected a number, got string "hot""#.to_owned()
                )
            );
            assert!(parse_head(CHAT, with(field, "0").as_bytes()).is_ok());
            assert!(parse_head(CHAT, with(field, "0.7").as_bytes()).is_ok());
        }
    }

    #[test]
    fn responses_input_and_instructions() {
        let responses = Endpoint::Responses;
        for body in [
            r#"{"model":"m","input":"hi"}"#,
            r#"{"model":"m"}"#,
            r#"{"model":"m","input":[{"role":"user","content":"hi"},{"type":"function_call_output","call_id":"c","output":"{}"}],"instructions":"x","max_output_tokens":9}"#,
        ] {
            assert!(parse_head(responses, body.as_bytes()).is_ok(), "{body}");
        }
        assert_eq!(
            refused(responses, r#"{"model":"m","input":42}"#),
            (
                "input".into(),
                "expected a string or an array of input items, got integer `42`".into()
            )
        );
        assert_eq!(
            refused(
                responses,
                r#"{"model":"m","input":[{"role":"user","content":false}]}"#
            )
            .0,
            "input[0].content"
        );
        assert_eq!(
            refused(
                responses,
                r#"{"model":"m","input":"x","instructions":["x"]}"#
            )
            .0,
            "instructions"
        );
        // `messages` is not a Responses field: it passes through to the provider.
        assert!(parse_head(responses, br#"{"model":"m","messages":"x"}"#).is_ok());
    }

    #[test]
    fn anthropic_system_is_checked() {
        let body = r#"{"model":"m","messages":[],"system":{"text":"x"}}"#;
        assert_eq!(
            refused(Endpoint::Messages, body),
            (
                "system".into(),
                "expected a string or an array of text blocks, got map".into()
            )
        );
    }

    #[test]
    fn endpoints_without_messages_take_any_input() {
        assert!(
            parse_head(
                Endpoint::Embeddings,
                br#"{"model":"m","input":[[1,2],[3]]}"#
            )
            .is_ok()
        );
        assert!(parse_head(Endpoint::Completions, br#"{"model":"m","prompt":["a"]}"#).is_ok());
    }

    #[test]
    fn missing_or_empty_model() {
        assert!(matches!(
            parse_head(CHAT, br#"{"messages":[]}"#).unwrap_err(),
            RequestError::MissingModel
        ));
        assert!(matches!(
            parse_head(CHAT, br#"{"model":" ","messages":[]}"#).unwrap_err(),
            RequestError::InvalidField { .. }
        ));
    }
}
