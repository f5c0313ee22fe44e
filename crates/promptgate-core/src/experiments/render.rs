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
use serde_json::value::RawValue;

use super::ExperimentError;
use super::body::{BodyFields, GATEWAY_FIELD, Message, Piece, RewrittenBody, Text, messages};
use super::model::{Experiment, MessagesMode, Variant};
use crate::dialect::Endpoint;

/// The values a variant's templates can name, borrowed from the body where
/// they can be.
#[derive(Debug)]
pub struct Variables<'a> {
    values: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

#[derive(Deserialize)]
struct GatewayInputs<'a> {
    #[serde(borrow)]
    variables: Option<&'a RawValue>,
}

impl<'a> Variables<'a> {
    /// `promptgate.variables` of the body, and `input` unless it names one.
    pub fn of(body: &BodyFields<'a>, endpoint: Endpoint) -> Result<Variables<'a>, ExperimentError> {
        let mut values = Vec::new();
        // A `promptgate` that is not an object carries no variables.
        let variables = body
            .parsed::<GatewayInputs<'a>>(GATEWAY_FIELD)
            .and_then(|inputs| inputs.variables);
        if let Some(variables) = variables {
            let variables = BodyFields::parse(variables.get().as_bytes()).map_err(|_| {
                invalid(
                    "promptgate.variables",
                    "must be an object of strings or numbers",
                )
            })?;
            for (name, value) in variables.into_fields() {
                let text = scalar_text(value).ok_or_else(|| {
                    invalid(
                        &format!("promptgate.variables.{name}"),
                        "must be a string, number or boolean",
                    )
                })?;
                values.push((name, text));
            }
        }
        if !values.iter().any(|(name, _)| name == "input")
            && let Some(input) = last_user_text(body, endpoint)
        {
            values.push((Cow::Borrowed("input"), input));
        }
        Ok(Variables { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &**v)
    }
}

/// A string as it is; a number or boolean in its JSON spelling (a number as
/// `serde_json` prints it, so `1.50` is `1.5`, as when this read a `Value`).
fn scalar_text(value: &RawValue) -> Option<Cow<'_, str>> {
    let text = value.get();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<Text<'_>>(text).ok().map(|t| t.0),
        b't' | b'f' => Some(Cow::Borrowed(text)),
        // An integer that fits in 64 bits prints as it is spelled.
        b'1'..=b'9' if text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()) => {
            Some(Cow::Borrowed(text))
        }
        b'-' | b'0'..=b'9' => serde_json::from_str::<serde_json::Number>(text)
            .ok()
            .map(|n| Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn invalid(field: &str, message: &str) -> ExperimentError {
    ExperimentError::InvalidVariables {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

#[derive(Deserialize)]
struct ContentOf<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TextPart<'a> {
    #[serde(borrow)]
    text: Option<Text<'a>>,
}

/// A message's text: its content when a string, else the `text` of each of
/// its parts, a line each.
fn content_text(content: &RawValue) -> Option<Cow<'_, str>> {
    if let Ok(text) = serde_json::from_str::<Text<'_>>(content.get()) {
        return Some(text.0);
    }
    // A part without a string `text` (an image, a number) adds none.
    let parts: Vec<&RawValue> = serde_json::from_str(content.get()).ok()?;
    let texts: Vec<Cow<'_, str>> = parts
        .into_iter()
        .filter_map(|part| serde_json::from_str::<TextPart<'_>>(part.get()).ok()?.text)
        .map(|text| text.0)
        .collect();
    Some(Cow::Owned(texts.join("\n")))
}

fn last_user_text<'a>(body: &BodyFields<'a>, endpoint: Endpoint) -> Option<Cow<'a, str>> {
    let last_user = |messages: &[Message<'a>]| {
        let last = messages.iter().rev().find(|m| m.has_role(&["user"]))?;
        content_text(
            serde_json::from_str::<ContentOf<'a>>(last.raw.get())
                .ok()?
                .content?,
        )
    };
    match endpoint {
        Endpoint::Responses => {
            let input = body.raw("input")?;
            if let Ok(text) = serde_json::from_str::<Text<'a>>(input.get()) {
                return Some(text.0);
            }
            last_user(&messages(input)?)
        }
        _ => last_user(body.messages()?),
    }
}

/// `body` rewritten for `variant`.
pub fn apply<'a>(
    experiment: &Experiment,
    variant: &'a Variant,
    endpoint: Endpoint,
    body: &'a BodyFields<'a>,
    variables: &Variables<'_>,
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
            let is_system = |m: &&Message<'_>| m.has_role(&["system", "developer"]);
            let messages = caller_messages(body)?;
            let mut items = match system {
                Some(system) => vec![Piece::Message {
                    role: "system",
                    content: system,
                }],
                None => as_sent(messages.iter().filter(is_system)),
            };
            let conversation = as_sent(messages.iter().filter(|m| !is_system(m)));
            items.extend(combine(variant.messages, user, conversation));
            out.set("messages", Piece::List(items));
        }
        Endpoint::Messages => {
            if let Some(system) = system {
                out.set("system", Piece::Text(Cow::Owned(system)));
            }
            let conversation = as_sent(caller_messages(body)?.iter());
            out.set(
                "messages",
                Piece::List(combine(variant.messages, user, conversation)),
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
                        _ => as_sent(
                            messages(raw)
                                .ok_or_else(|| {
                                    invalid("input", "expected a string or an array of input items")
                                })?
                                .iter(),
                        ),
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
fn caller_messages<'b, 'a>(body: &'b BodyFields<'a>) -> Result<&'b [Message<'a>], ExperimentError> {
    body.messages()
        .ok_or_else(|| invalid("messages", "expected an array of message objects"))
}

/// The caller's messages as pieces of the rewritten body.
fn as_sent<'b, 'a: 'b>(messages: impl Iterator<Item = &'b Message<'a>>) -> Vec<Piece<'a>> {
    messages.map(|m| Piece::Raw(m.raw)).collect()
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
