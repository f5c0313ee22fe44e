//! Applies a variant to a request body: its model, its parameters, its system
//! prompt, and its user template (before or instead of the caller's
//! messages), in the shape of the endpoint's dialect. The caller's other
//! fields, and each of its messages, go through as they arrived (`body.rs`).
//!
//! Template variables come from the body's `promptgate.variables` object, plus
//! `input`: the text of the caller's last user message. The `promptgate`
//! field itself never reaches the provider.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::ExperimentError;
use super::body::{BodyFields, GATEWAY_FIELD, Piece, RewrittenBody};
use super::decide::scalar_text;
use super::model::{Experiment, MessagesMode, Variant};
use crate::dialect::Endpoint;

#[derive(Clone, Debug)]
pub struct Variables {
    values: Vec<(String, String)>,
}

impl Variables {
    /// `promptgate.variables` of the body, and `input` unless it names one.
    pub fn of(body: &BodyFields<'_>, endpoint: Endpoint) -> Result<Variables, ExperimentError> {
        let mut values = Vec::new();
        if let Some(gateway) = body.raw(GATEWAY_FIELD) {
            let gateway: Value = serde_json::from_str(gateway.get())
                .map_err(|_| invalid(GATEWAY_FIELD, "must be valid JSON"))?;
            let variables = match gateway.get("variables") {
                None => None,
                Some(Value::Object(map)) => Some(map),
                Some(_) => {
                    return Err(invalid(
                        "promptgate.variables",
                        "must be an object of strings or numbers",
                    ));
                }
            };
            for (name, value) in variables.into_iter().flatten() {
                let text = scalar_text(value).ok_or_else(|| {
                    invalid(
                        &format!("promptgate.variables.{name}"),
                        "must be a string, number or boolean",
                    )
                })?;
                values.push((name.clone(), text));
            }
        }
        if !values.iter().any(|(name, _)| name == "input")
            && let Some(input) = last_user_text(body, endpoint)
        {
            values.push(("input".to_owned(), input));
        }
        Ok(Variables { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(field: &str, message: &str) -> ExperimentError {
    ExperimentError::InvalidVariables {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// A message of the caller's: its role read, the rest left as it arrived.
struct Message<'a> {
    role: Option<Cow<'a, str>>,
    raw: &'a RawValue,
}

impl Message<'_> {
    fn has_role(&self, roles: &[&str]) -> bool {
        self.role
            .as_deref()
            .is_some_and(|role| roles.contains(&role))
    }
}

#[derive(Deserialize)]
struct RoleOf<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ContentOf {
    content: Option<Value>,
}

/// The items of a JSON array, each with its role when it is an object with one.
fn messages(array: &RawValue) -> Option<Vec<Message<'_>>> {
    let items: Vec<&RawValue> = serde_json::from_str(array.get()).ok()?;
    Some(
        items
            .into_iter()
            .map(|raw| Message {
                role: serde_json::from_str::<RoleOf<'_>>(raw.get())
                    .ok()
                    .and_then(|m| m.role),
                raw,
            })
            .collect(),
    )
}

fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

fn last_user_text(body: &BodyFields<'_>, endpoint: Endpoint) -> Option<String> {
    let messages = match endpoint {
        Endpoint::Responses => {
            let input = body.raw("input")?;
            if let Ok(text) = serde_json::from_str::<String>(input.get()) {
                return Some(text);
            }
            messages(input)?
        }
        _ => messages(body.raw("messages")?)?,
    };
    let last = messages.iter().rev().find(|m| m.has_role(&["user"]))?;
    let content = serde_json::from_str::<ContentOf>(last.raw.get())
        .ok()?
        .content?;
    content_text(&content)
}

/// `body` rewritten for `variant`.
pub fn apply<'a>(
    experiment: &Experiment,
    variant: &'a Variant,
    endpoint: Endpoint,
    body: &'a BodyFields<'a>,
    variables: &Variables,
) -> Result<RewrittenBody<'a>, ExperimentError> {
    if !matches!(
        endpoint,
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses
    ) {
        return Err(ExperimentError::ExperimentNotApplicable {
            experiment: experiment.id.to_string(),
            endpoint: endpoint.label(),
        });
    }
    let render = |template: &super::template::Template| {
        template
            .render(|name| variables.get(name))
            .map_err(|missing| ExperimentError::MissingVariable {
                experiment: experiment.id.to_string(),
                variant: variant.name.to_string(),
                missing,
            })
    };
    let system = variant.system.as_ref().map(render).transpose()?;
    let user = variant.user.as_ref().map(render).transpose()?;
    let mut out = RewrittenBody::new(body);
    out.set("model", Piece::Text(Cow::Borrowed(variant.model())));
    for (key, value) in &variant.params {
        out.set(key.as_str(), Piece::Json(Cow::Borrowed(value)));
    }
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = caller_messages(body)?;
            let (caller_system, conversation): (Vec<_>, Vec<_>) = messages
                .into_iter()
                .partition(|m| m.has_role(&["system", "developer"]));
            let mut items = match system {
                Some(system) => vec![Piece::Message {
                    role: "system",
                    content: system,
                }],
                None => as_sent(caller_system),
            };
            items.extend(combine(variant.messages, user, as_sent(conversation)));
            out.set("messages", Piece::List(items));
        }
        Endpoint::Messages => {
            if let Some(system) = system {
                out.set("system", Piece::Text(Cow::Owned(system)));
            }
            let conversation = caller_messages(body)?;
            out.set(
                "messages",
                Piece::List(combine(variant.messages, user, as_sent(conversation))),
            );
        }
        Endpoint::Responses => {
            if let Some(system) = system {
                out.set("instructions", Piece::Text(Cow::Owned(system)));
            }
            if let Some(user) = user {
                let input = match body.raw("input") {
                    None => Vec::new(),
                    Some(raw) => match raw.get().as_bytes().first() {
                        Some(b'"') => vec![Piece::Message {
                            role: "user",
                            content: serde_json::from_str(raw.get())
                                .map_err(|_| invalid("input", "expected a string"))?,
                        }],
                        Some(b'n') => Vec::new(),
                        _ => as_sent(messages(raw).ok_or_else(|| {
                            invalid("input", "expected a string or an array of input items")
                        })?),
                    },
                };
                let items = combine(variant.messages, Some(user), input);
                out.set("input", Piece::List(items));
            }
        }
        // Refused at the top of this function.
        _ => {}
    }
    Ok(out)
}

/// The caller's messages. `api::parse_head` refuses a body without them
/// before a variant is rendered; this refuses again rather than render a
/// prompt without the caller's content.
fn caller_messages<'a>(body: &BodyFields<'a>) -> Result<Vec<Message<'a>>, ExperimentError> {
    body.raw("messages")
        .and_then(messages)
        .ok_or_else(|| invalid("messages", "expected an array of message objects"))
}

/// The caller's messages as pieces of the rewritten body.
fn as_sent(messages: Vec<Message<'_>>) -> Vec<Piece<'_>> {
    messages.into_iter().map(|m| Piece::Raw(m.raw)).collect()
}

fn combine(
    mode: MessagesMode,
    user: Option<String>,
    conversation: Vec<Piece<'_>>,
) -> Vec<Piece<'_>> {
    let user_message = |content| Piece::Message {
        role: "user",
        content,
    };
    match (mode, user) {
        (MessagesMode::Prepend, Some(user)) => {
            let mut out = Vec::with_capacity(conversation.len() + 1);
            out.push(user_message(user));
            out.extend(conversation);
            out
        }
        (MessagesMode::Replace, Some(user)) => vec![user_message(user)],
        _ => conversation,
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
