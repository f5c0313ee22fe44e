//! The typed shape of the request fields the gateway reads or rewrites
//! (`messages`, `input`, `system`, `instructions`, `max_tokens`, `stream`,
//! `temperature`, ...), checked while the body is read once, without building
//! a tree: every type here only looks at the JSON it is given and keeps
//! nothing. Fields they do not name (providers add new ones all the time) are
//! skipped unread and reach the provider untouched.
//!
//! Each type says in plain words what it expects; the words end up in the
//! caller's 400 after the field path (`messages[2].content`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

/// The fields of a request body that are checked. `M` is the shape of
/// `messages` and `I` the shape of `input` on the endpoint ([`Unchecked`]
/// where the endpoint has no such field, so anything there passes through).
#[derive(Deserialize)]
// The fields after `input` are only checked while reading; the provider reads them.
#[allow(dead_code)]
pub(super) struct Body<M, I> {
    pub model: Option<String>,
    pub stream: Option<bool>,
    pub messages: Option<M>,
    pub input: Option<I>,
    system: Option<SystemPrompt>,
    instructions: Option<Text>,
    max_tokens: Option<TokenCount>,
    max_completion_tokens: Option<TokenCount>,
    max_output_tokens: Option<TokenCount>,
    temperature: Option<Number>,
    top_p: Option<Number>,
}

/// A field the endpoint does not have: skipped unread.
pub(super) type Unchecked = IgnoredAny;

pub(super) const MESSAGES_EXPECTED: &str = "an array of message objects";

/// What a required field named `name` should hold, for the message of a
/// request that left it out.
pub(super) fn expected_of(name: &str) -> &'static str {
    match name {
        "messages" => MESSAGES_EXPECTED,
        "role" => "a string such as \"user\" or \"assistant\"",
        _ => "a value",
    }
}

/// Implements `Deserialize` for a unit struct through a visitor that accepts
/// only the JSON forms its methods visit and says `$expected` otherwise.
/// `$read` is the `Deserializer` method that reads the value: for strings it
/// is `deserialize_bytes`, which serde_json answers with the string's raw
/// bytes (`visit_bytes`, an array with `visit_seq`) without decoding them as
/// UTF-8 — prompt text is most of a body, and checking its type must cost
/// no more than skipping it did. (Nothing is lost: the gateway never checked
/// the text of a passthrough body, and builds a tree where it reads it.)
macro_rules! checked {
    ($name:ident, $read:ident, $expected:expr, { $($method:item)* }) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Check;
                impl<'de> Visitor<'de> for Check {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expected)
                    }
                    $($method)*
                }
                deserializer.$read(Check)
            }
        }
    };
}

/// Visits every element of an array as a `T`, keeping none of them.
fn each<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<T>()?.is_some() {}
    Ok(())
}

/// `messages`: an array of message objects.
pub(super) struct Messages;
checked!(Messages, deserialize_any, MESSAGES_EXPECTED, {
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Messages, A::Error> {
        each::<Message, A>(seq).map(|()| Messages)
    }
});

/// One chat or Anthropic message: the gateway reads its `role` (to find the
/// caller's system prompt and last user text) and its `content`.
#[derive(Deserialize)]
#[serde(expecting = "a message object with a `role` and a `content`")]
#[allow(dead_code)] // only checked while reading
struct Message {
    role: Text,
    content: Option<Content>,
}

/// `input` of the Responses API: a string, or an array of input items.
pub(super) struct ResponsesInput;
checked!(
    ResponsesInput,
    deserialize_bytes,
    "a string or an array of input items",
    {
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<ResponsesInput, E> {
            Ok(ResponsesInput)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ResponsesInput, A::Error> {
            each::<InputItem, A>(seq).map(|()| ResponsesInput)
        }
    }
);

/// An input item of the Responses API: a message (`role`, `content`) or
/// another kind of item (`type`: a function call output, a reference, ...).
#[derive(Deserialize)]
#[serde(expecting = "an input item object")]
#[allow(dead_code)] // only checked while reading
struct InputItem {
    role: Option<Text>,
    content: Option<Content>,
}

/// A message's `content`: a string or an array of content parts.
struct Content;
checked!(
    Content,
    deserialize_bytes,
    "a string or an array of content parts",
    {
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Content, E> {
            Ok(Content)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Content, A::Error> {
            each::<ContentPart, A>(seq).map(|()| Content)
        }
    }
);

/// Anthropic's top-level `system`: a string or an array of text blocks.
struct SystemPrompt;
checked!(
    SystemPrompt,
    deserialize_bytes,
    "a string or an array of text blocks",
    {
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<SystemPrompt, E> {
            Ok(SystemPrompt)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SystemPrompt, A::Error> {
            each::<ContentPart, A>(seq).map(|()| SystemPrompt)
        }
    }
);

/// A content part or text block: the gateway reads its `text`.
#[derive(Deserialize)]
#[serde(expecting = "a content part object such as {\"type\": \"text\", \"text\": \"...\"}")]
#[allow(dead_code)] // only checked while reading
struct ContentPart {
    #[serde(rename = "type")]
    kind: Option<Text>,
    text: Option<Text>,
}

/// A string, looked at but not kept.
struct Text;
checked!(Text, deserialize_bytes, "a string", {
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Text, E> {
        Ok(Text)
    }
});

/// `max_tokens` and its kin: a whole number ≥ 0.
struct TokenCount;
checked!(TokenCount, deserialize_any, "a whole number ≥ 0", {
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TokenCount, E> {
        Ok(TokenCount)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<TokenCount, E> {
        if value < 0 {
            return Err(E::invalid_value(de::Unexpected::Signed(value), &self));
        }
        Ok(TokenCount)
    }
});

/// `temperature`, `top_p`: a number.
struct Number;
checked!(Number, deserialize_any, "a number", {
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Number, E> {
        Ok(Number)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Number, E> {
        Ok(Number)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Number, E> {
        Ok(Number)
    }
});
