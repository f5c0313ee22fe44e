//! Applies a variant to a request body: its model, its parameters, its system
//! prompt, and its user template (before or instead of the caller's
//! messages), in the shape of the endpoint's dialect.
//!
//! Template variables come from the body's `promptgate.variables` object, plus
//! `input`: the text of the caller's last user message. The `promptgate`
//! field itself never reaches the provider.

use serde_json::{Map, Value, json};

use super::ExperimentError;
use super::decide::scalar_text;
use super::model::{Experiment, MessagesMode, Variant};
use crate::dialect::Endpoint;

/// The body field that carries gateway-only inputs.
pub const GATEWAY_FIELD: &str = "promptgate";

#[derive(Clone)]
pub struct Variables {
    values: Vec<(String, String)>,
}

impl Variables {
    /// Takes `promptgate.variables` out of the body (removing `promptgate`).
    pub fn take_from(
        body: &mut Map<String, Value>,
        endpoint: Endpoint,
    ) -> Result<Variables, ExperimentError> {
        let mut values = Vec::new();
        if let Some(gateway) = body.remove(GATEWAY_FIELD) {
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

fn last_user_text(body: &Map<String, Value>, endpoint: Endpoint) -> Option<String> {
    let messages = match endpoint {
        Endpoint::Responses => match body.get("input")? {
            Value::String(s) => return Some(s.clone()),
            other => other.as_array()?,
        },
        _ => body.get("messages")?.as_array()?,
    };
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .and_then(content_text)
}

/// Rewrites `body` for `variant`.
pub fn apply(
    experiment: &Experiment,
    variant: &Variant,
    endpoint: Endpoint,
    body: &mut Map<String, Value>,
    variables: &Variables,
) -> Result<(), ExperimentError> {
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
    body.insert("model".into(), Value::String(variant.model().to_owned()));
    for (key, value) in &variant.params {
        body.insert(key.clone(), value.clone());
    }
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = take_messages(body)?;
            let (caller_system, conversation): (Vec<Value>, Vec<Value>) =
                messages.into_iter().partition(|m| {
                    matches!(
                        m.get("role").and_then(Value::as_str),
                        Some("system" | "developer")
                    )
                });
            let mut out = match system {
                Some(system) => vec![json!({"role": "system", "content": system})],
                None => caller_system,
            };
            out.extend(combine(variant.messages, user, conversation));
            body.insert("messages".into(), Value::Array(out));
        }
        Endpoint::Messages => {
            if let Some(system) = system {
                body.insert("system".into(), Value::String(system));
            }
            let conversation = take_messages(body)?;
            body.insert(
                "messages".into(),
                Value::Array(combine(variant.messages, user, conversation)),
            );
        }
        Endpoint::Responses => {
            if let Some(system) = system {
                body.insert("instructions".into(), Value::String(system));
            }
            if let Some(user) = user {
                let input = match body.remove("input") {
                    Some(Value::String(text)) => vec![json!({"role": "user", "content": text})],
                    Some(Value::Array(items)) => items,
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => {
                        return Err(invalid(
                            "input",
                            "expected a string or an array of input items",
                        ));
                    }
                };
                let items = combine(variant.messages, Some(user), input);
                body.insert("input".into(), Value::Array(items));
            }
        }
        // Refused at the top of this function.
        _ => {}
    }
    Ok(())
}

/// The caller's messages. `api::parse_head` refuses a body without them
/// before a variant is rendered; this refuses again rather than render a
/// prompt without the caller's content.
fn take_messages(body: &mut Map<String, Value>) -> Result<Vec<Value>, ExperimentError> {
    match body.remove("messages") {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(invalid("messages", "expected an array of message objects")),
    }
}

fn combine(mode: MessagesMode, user: Option<String>, conversation: Vec<Value>) -> Vec<Value> {
    match (mode, user) {
        (MessagesMode::Prepend, Some(user)) => {
            let mut out = Vec::with_capacity(conversation.len() + 1);
            out.push(json!({"role": "user", "content": user}));
            out.extend(conversation);
            out
        }
        (MessagesMode::Replace, Some(user)) => vec![json!({"role": "user", "content": user})],
        _ => conversation,
    }
}
