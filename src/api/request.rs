//! Reads what routing needs from a request body (`model`, `stream`) without
//! building a tree of the whole body: the rest is validated as JSON and skipped.

use serde::Deserialize;

use crate::error::GatewayError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub model: String,
    pub stream: bool,
}

#[derive(Deserialize)]
struct Head {
    model: Option<String>,
    stream: Option<bool>,
}

pub fn parse_head(body: &[u8]) -> Result<RequestHead, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::InvalidJson(
            "the request body is empty; expected a JSON object".into(),
        ));
    }
    // serde would read a struct from an array by position; only objects are requests.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => GatewayError::InvalidField {
                    field: "body".into(),
                    message: "the request body must be a JSON object".into(),
                },
                Err(err) => GatewayError::InvalidJson(err.to_string()),
            },
        );
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let head: Head = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            GatewayError::InvalidJson(inner.to_string())
        } else {
            GatewayError::InvalidField {
                field: path,
                message: strip_position(&inner.to_string()),
            }
        }
    })?;
    deserializer
        .end()
        .map_err(|err| GatewayError::InvalidJson(err.to_string()))?;
    match head.model {
        Some(model) if !model.trim().is_empty() => Ok(RequestHead {
            model,
            stream: head.stream.unwrap_or(false),
        }),
        Some(_) => Err(GatewayError::InvalidField {
            field: "model".into(),
            message: "must not be empty".into(),
        }),
        None => Err(GatewayError::MissingModel),
    }
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

    #[test]
    fn reads_model_and_stream() {
        let head = parse_head(
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
        let head = parse_head(br#"{"model":"m"}"#).unwrap();
        assert!(!head.stream);
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        let err = parse_head(br#"{"model":"m","messages":[}"#).unwrap_err();
        assert!(
            matches!(err, GatewayError::InvalidJson(ref m) if m.contains("line 1")),
            "{err:?}"
        );
        assert!(matches!(
            parse_head(b"").unwrap_err(),
            GatewayError::InvalidJson(_)
        ));
        assert!(matches!(
            parse_head(br#"{"model":"m"} trailing"#).unwrap_err(),
            GatewayError::InvalidJson(_)
        ));
    }

    #[test]
    fn wrong_types_name_the_field() {
        match parse_head(br#"{"model":42}"#).unwrap_err() {
            GatewayError::InvalidField { field, message } => {
                assert_eq!(field, "model");
                assert!(message.contains("expected a string"), "{message}");
                assert!(!message.contains("line"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match parse_head(br#"{"model":"m","stream":"yes"}"#).unwrap_err() {
            GatewayError::InvalidField { field, .. } => assert_eq!(field, "stream"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_head(br#"[1,2]"#).unwrap_err(),
            GatewayError::InvalidField { ref field, .. } if field == "body"
        ));
    }

    #[test]
    fn missing_or_empty_model() {
        assert!(matches!(
            parse_head(br#"{"messages":[]}"#).unwrap_err(),
            GatewayError::MissingModel
        ));
        assert!(matches!(
            parse_head(br#"{"model":" "}"#).unwrap_err(),
            GatewayError::InvalidField { .. }
        ));
    }
}
