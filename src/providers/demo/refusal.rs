//! What the real OpenAI and Anthropic APIs refuse, refused the same way by the
//! demo provider and the simulator: status 400 and the API's own error body
//! (OpenAI's `{"error": {"message", "type", "param", "code"}}`, Anthropic's
//! `{"type": "error", "error": {"type": "invalid_request_error", "message"}}`),
//! with the messages those APIs write. A newcomer trying bad input against
//! the demo sees what production would show.
//!
//! Only the rules a caller meets first are kept: required fields, the types
//! of the fields the gateway also reads, empty `messages`, unknown roles.

use std::fmt::Write as _;

use serde_json::{Value, json};

use promptgate_core::dialect::{Dialect, Endpoint};

/// Roles OpenAI's chat completions accept, in the order its message lists them.
const OPENAI_CHAT_ROLES: &[&str] = &[
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];
/// Roles of a message item in the Responses API's `input`.
const OPENAI_INPUT_ROLES: &[&str] = &["user", "assistant", "system", "developer"];
/// Anthropic takes the system prompt as a top-level field, never as a role.
const ANTHROPIC_ROLES: &[&str] = &["user", "assistant"];

#[derive(Clone, Copy)]
enum Segment {
    Key(&'static str),
    Index(usize),
}

/// Where in the body a problem is, written the way each API writes it.
#[derive(Clone, Default)]
struct Path(Vec<Segment>);

impl Path {
    fn key(&self, key: &'static str) -> Path {
        let mut path = self.clone();
        path.0.push(Segment::Key(key));
        path
    }

    fn index(&self, index: usize) -> Path {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// `messages[0].role` for OpenAI, `messages.0.role` for Anthropic.
    fn written(&self, dialect: Dialect) -> String {
        let mut out = String::new();
        for (i, segment) in self.0.iter().enumerate() {
            match (segment, dialect) {
                (Segment::Key(key), _) if i == 0 => out.push_str(key),
                (Segment::Key(key), _) => {
                    let _ = write!(out, ".{key}");
                }
                (Segment::Index(index), Dialect::OpenAi) => {
                    let _ = write!(out, "[{index}]");
                }
                (Segment::Index(index), Dialect::Anthropic) => {
                    let _ = write!(out, ".{index}");
                }
            }
        }
        out
    }
}

#[derive(Clone, Copy)]
enum Expected {
    Array,
    Object,
    Integer,
    Number,
    Boolean,
    Content,
    ResponsesInput,
}

enum Problem {
    Missing(Path),
    WrongType {
        path: Path,
        expected: Expected,
        got: &'static str,
    },
    EmptyMessages(Path),
    UnknownRole {
        path: Path,
        role: String,
        allowed: &'static [&'static str],
    },
}

/// The error body the real API would answer `request` with (status 400), or
/// `None` when it would accept it.
pub fn refusal(endpoint: Endpoint, request: &Value) -> Option<Value> {
    let problem = match endpoint {
        Endpoint::ChatCompletions => check_chat(request),
        Endpoint::Messages | Endpoint::CountTokens => check_anthropic(endpoint, request),
        Endpoint::Responses => check_responses(request),
        _ => None,
    }?;
    Some(error_body(endpoint.dialect(), &problem))
}

/// The 400 body for a request that is not JSON at all.
pub fn unparsable(endpoint: Endpoint) -> Value {
    match endpoint.dialect() {
        Dialect::OpenAi => openai_error(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
            None,
        ),
        Dialect::Anthropic => {
            anthropic_error("There was an error parsing the body of your request.")
        }
    }
}

fn check_chat(request: &Value) -> Option<Problem> {
    let root = Path::default();
    missing(request, &root, "model")
        .or_else(|| check_types(request, &root, &["max_tokens", "max_completion_tokens"]))
        .or_else(|| check_messages(request, &root, OPENAI_CHAT_ROLES, false))
}

fn check_anthropic(endpoint: Endpoint, request: &Value) -> Option<Problem> {
    let root = Path::default();
    missing(request, &root, "model")
        .or_else(|| {
            (endpoint == Endpoint::Messages)
                .then(|| missing(request, &root, "max_tokens"))
                .flatten()
        })
        .or_else(|| check_types(request, &root, &["max_tokens"]))
        .or_else(|| check_messages(request, &root, ANTHROPIC_ROLES, true))
}

fn check_responses(request: &Value) -> Option<Problem> {
    let root = Path::default();
    missing(request, &root, "model")
        .or_else(|| check_types(request, &root, &["max_output_tokens"]))
        .or_else(|| check_input(request, &root))
}

fn check_input(request: &Value, root: &Path) -> Option<Problem> {
    let path = root.key("input");
    match request.get("input") {
        None | Some(Value::String(_)) => None,
        Some(Value::Array(items)) => items.iter().enumerate().find_map(|(i, item)| {
            let path = path.index(i);
            match item {
                Value::Object(fields) if fields.contains_key("role") => {
                    check_message(item, &path, OPENAI_INPUT_ROLES, false)
                }
                // Items of another `type` (a function call output, a reference) carry no role.
                Value::Object(_) => None,
                other => Some(wrong(path, Expected::Object, other)),
            }
        }),
        Some(other) => Some(wrong(path, Expected::ResponsesInput, other)),
    }
}

fn missing(request: &Value, root: &Path, field: &'static str) -> Option<Problem> {
    match request.get(field) {
        None | Some(Value::Null) => Some(Problem::Missing(root.key(field))),
        Some(_) => None,
    }
}

fn check_types(request: &Value, root: &Path, counts: &[&'static str]) -> Option<Problem> {
    let typed = |field: &'static str, expected: Expected, ok: fn(&Value) -> bool| {
        request
            .get(field)
            .filter(|value| !value.is_null() && !ok(value))
            .map(|value| wrong(root.key(field), expected, value))
    };
    counts
        .iter()
        .find_map(|&field| typed(field, Expected::Integer, |v| v.is_u64()))
        .or_else(|| typed("temperature", Expected::Number, Value::is_number))
        .or_else(|| typed("top_p", Expected::Number, Value::is_number))
        .or_else(|| typed("stream", Expected::Boolean, Value::is_boolean))
}

fn check_messages(
    request: &Value,
    root: &Path,
    roles: &'static [&'static str],
    content_required: bool,
) -> Option<Problem> {
    let path = root.key("messages");
    match request.get("messages") {
        None => Some(Problem::Missing(path)),
        Some(Value::Array(messages)) if messages.is_empty() => Some(Problem::EmptyMessages(path)),
        Some(Value::Array(messages)) => messages.iter().enumerate().find_map(|(i, message)| {
            check_message(message, &path.index(i), roles, content_required)
        }),
        Some(other) => Some(wrong(path, Expected::Array, other)),
    }
}

fn check_message(
    message: &Value,
    path: &Path,
    roles: &'static [&'static str],
    content_required: bool,
) -> Option<Problem> {
    let Value::Object(fields) = message else {
        return Some(wrong(path.clone(), Expected::Object, message));
    };
    match fields.get("role") {
        None => return Some(Problem::Missing(path.key("role"))),
        Some(Value::String(role)) if roles.contains(&role.as_str()) => {}
        Some(role) => {
            return Some(Problem::UnknownRole {
                path: path.key("role"),
                role: role
                    .as_str()
                    .map_or_else(|| role.to_string(), str::to_owned),
                allowed: roles,
            });
        }
    }
    match fields.get("content") {
        None if content_required => Some(Problem::Missing(path.key("content"))),
        None | Some(Value::String(_)) => None,
        // OpenAI: an assistant message with tool calls has no content.
        Some(Value::Null) if !content_required => None,
        Some(Value::Array(parts)) => parts.iter().enumerate().find_map(|(i, part)| {
            (!part.is_object()).then(|| wrong(path.key("content").index(i), Expected::Object, part))
        }),
        Some(other) => Some(wrong(path.key("content"), Expected::Content, other)),
    }
}

fn wrong(path: Path, expected: Expected, value: &Value) -> Problem {
    let got = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Problem::WrongType {
        path,
        expected,
        got,
    }
}

fn error_body(dialect: Dialect, problem: &Problem) -> Value {
    match dialect {
        Dialect::OpenAi => openai_body(problem),
        Dialect::Anthropic => anthropic_error(&anthropic_message(problem)),
    }
}

fn openai_body(problem: &Problem) -> Value {
    let at = |path: &Path| path.written(Dialect::OpenAi);
    match problem {
        Problem::Missing(path) if at(path) == "model" => {
            openai_error("you must provide a model parameter", None, None)
        }
        Problem::Missing(path) => openai_error(
            &format!("Missing required parameter: '{}'.", at(path)),
            Some(&at(path)),
            Some("missing_required_parameter"),
        ),
        Problem::WrongType {
            path,
            expected,
            got,
        } => {
            let expected = match expected {
                Expected::Array => "an array of objects",
                Expected::Object => "an object",
                Expected::Integer => "an integer",
                Expected::Number => "a decimal",
                Expected::Boolean => "a boolean",
                Expected::Content => "one of a string or array of objects",
                Expected::ResponsesInput => "one of a string or array of input items",
            };
            openai_error(
                &format!(
                    "Invalid type for '{}': expected {expected}, but got {got} instead.",
                    at(path)
                ),
                Some(&at(path)),
                Some("invalid_type"),
            )
        }
        Problem::EmptyMessages(path) => openai_error(
            &format!(
                "Invalid '{}': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                at(path)
            ),
            Some(&at(path)),
            Some("empty_array"),
        ),
        Problem::UnknownRole {
            path,
            role,
            allowed,
        } => openai_error(
            &format!(
                "Invalid value: '{role}'. Supported values are: {}.",
                listed(allowed, "and")
            ),
            Some(&at(path)),
            Some("invalid_value"),
        ),
    }
}

fn anthropic_message(problem: &Problem) -> String {
    let at = |path: &Path| path.written(Dialect::Anthropic);
    match problem {
        Problem::Missing(path) => format!("{}: Field required", at(path)),
        Problem::WrongType { path, expected, .. } => {
            let expected = match expected {
                Expected::Array | Expected::Content | Expected::ResponsesInput => "a valid list",
                Expected::Object => "a valid dictionary",
                Expected::Integer => "a valid integer",
                Expected::Number => "a valid number",
                Expected::Boolean => "a valid boolean",
            };
            format!("{}: Input should be {expected}", at(path))
        }
        Problem::EmptyMessages(_) => "messages: at least one message is required".to_owned(),
        Problem::UnknownRole { role, .. } if role == "system" => "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.".to_owned(),
        Problem::UnknownRole { path, allowed, .. } => {
            format!("{}: Input should be {}", at(path), listed(allowed, "or"))
        }
    }
}

/// `'a' or 'b'`, `'a', 'b', and 'c'`: the way both APIs list allowed values.
fn listed(values: &[&str], conjunction: &str) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.split_last() {
        Some((last, [only])) => format!("{only} {conjunction} {last}"),
        Some((last, head)) if !head.is_empty() => {
            format!("{}, {conjunction} {last}", head.join(", "))
        }
        _ => quoted.concat(),
    }
}

fn openai_error(message: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}})
}

fn anthropic_error(message: &str) -> Value {
    json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of(endpoint: Endpoint, request: Value) -> String {
        let body = refusal(endpoint, &request)
            .unwrap_or_else(|| panic!("{request} on {endpoint:?} was accepted"));
        body.pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn openai_chat_refusals_read_like_openai() {
        let chat = Endpoint::ChatCompletions;
        let body = refusal(chat, &json!({"model": "m", "messages": "not-a-list"})).unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "message": "Invalid type for 'messages': expected an array of objects, but got a string instead.",
                "type": "invalid_request_error", "param": "messages", "code": "invalid_type"
            }})
        );
        for (request, message) in [
            (
                json!({"messages": []}),
                "you must provide a model parameter",
            ),
            (
                json!({"model": "m"}),
                "Missing required parameter: 'messages'.",
            ),
            (
                json!({"model": "m", "messages": []}),
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}),
                "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
            ),
            (
                json!({"model": "m", "messages": [{"content": "a"}]}),
                "Missing required parameter: 'messages[0].role'.",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
                "Invalid type for 'messages[0].content': expected one of a string or array of objects, but got an integer instead.",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": ["x"]}]}),
                "Invalid type for 'messages[0].content[0]': expected an object, but got a string instead.",
            ),
            (
                json!({"model": "m", "max_tokens": "9", "messages": [{"role": "user", "content": "x"}]}),
                "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
            ),
            (
                json!({"model": "m", "temperature": "hot", "messages": [{"role": "user", "content": "x"}]}),
                "Invalid type for 'temperature': expected a decimal, but got a string instead.",
            ),
        ] {
            assert_eq!(message_of(chat, request), message);
        }
        let fine = json!({"model": "m", "max_tokens": null, "messages": [
            {"role": "developer", "content": "x"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]}
        ]});
        assert_eq!(refusal(chat, &fine), None);
    }

    #[test]
    fn anthropic_refusals_read_like_anthropic() {
        let messages = Endpoint::Messages;
        let body = refusal(
            messages,
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}})
        );
        let user = json!({"role": "user", "content": "hi"});
        for (request, message) in [
            (
                json!({"max_tokens": 5, "messages": [user]}),
                "model: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 5}),
                "messages: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": "not-a-list"}),
                "messages: Input should be a valid list",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "messages: at least one message is required",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [user, {"role": "robot", "content": "x"}]}),
                "messages.1.role: Input should be 'user' or 'assistant'",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]}),
                "messages.0.content: Field required",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 1}]}),
                "messages.0.content: Input should be a valid list",
            ),
            (
                json!({"model": "m", "max_tokens": 1.5, "messages": [user]}),
                "max_tokens: Input should be a valid integer",
            ),
        ] {
            assert_eq!(message_of(messages, request), message);
        }
        // count_tokens takes no max_tokens.
        assert_eq!(
            refusal(
                Endpoint::CountTokens,
                &json!({"model": "m", "messages": [user]})
            ),
            None
        );
    }

    #[test]
    fn responses_input_is_checked() {
        let responses = Endpoint::Responses;
        for fine in [
            json!({"model": "m"}),
            json!({"model": "m", "input": "hi"}),
            json!({"model": "m", "input": [{"role": "developer", "content": "x"}, {"type": "function_call_output", "call_id": "c", "output": "{}"}]}),
        ] {
            assert_eq!(refusal(responses, &fine), None, "{fine}");
        }
        assert_eq!(
            message_of(responses, json!({"model": "m", "input": 3})),
            "Invalid type for 'input': expected one of a string or array of input items, but got an integer instead."
        );
        assert_eq!(
            message_of(
                responses,
                json!({"model": "m", "input": [{"role": "tool", "content": "x"}]})
            ),
            "Invalid value: 'tool'. Supported values are: 'user', 'assistant', 'system', and 'developer'."
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_in_the_dialect() {
        assert!(unparsable(Endpoint::Messages)["error"]["type"] == "invalid_request_error");
        assert_eq!(unparsable(Endpoint::Messages)["type"], "error");
        assert!(
            unparsable(Endpoint::Embeddings)["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("We could not parse the JSON body"))
        );
    }
}
