//! A request body as the experiment phase reads and rewrites it: its
//! top-level fields with their values left unparsed (`RawValue`s borrowed
//! from the body), and a rewrite that splices the caller's values through as
//! they arrived while the variant's own are built. A rendered request costs
//! one scan of the body and the fields the variant changes, not a JSON tree
//! of the whole body built, cloned and written out again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The body field that carries gateway-only inputs; it never reaches a provider.
pub const GATEWAY_FIELD: &str = "promptgate";

/// A JSON object's top-level fields, values unparsed. A repeated name keeps
/// its last value, as a parsed JSON object would.
#[derive(Debug)]
pub struct BodyFields<'a> {
    fields: FieldMap<'a>,
    /// The body's length: what a rewrite of it reserves.
    len: usize,
    /// `messages`, read once for the variables and the variant both.
    messages: OnceLock<Option<Vec<Message<'a>>>>,
}

/// An item of a messages array: its role read, the rest left as it arrived.
#[derive(Debug)]
pub struct Message<'a> {
    pub role: Option<Cow<'a, str>>,
    pub raw: &'a RawValue,
}

impl Message<'_> {
    pub fn has_role(&self, roles: &[&str]) -> bool {
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

/// The items of a JSON array, each with its role when it is an object with
/// one; `None` when `array` is not an array.
pub fn messages(array: &RawValue) -> Option<Vec<Message<'_>>> {
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

/// A JSON string's text, borrowed from the body unless it had escapes.
#[derive(Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl<'a> BodyFields<'a> {
    /// Checks that `body` is a JSON object (all of it valid JSON) and indexes
    /// its fields.
    pub fn parse(body: &'a [u8]) -> Result<BodyFields<'a>, serde_json::Error> {
        Ok(BodyFields {
            fields: serde_json::from_slice(body)?,
            len: body.len(),
            messages: OnceLock::new(),
        })
    }

    /// A field's value as it arrived.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.fields.0.get(name).copied()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.fields.0.contains_key(name)
    }

    /// The fields by name, in name order.
    pub fn into_fields(self) -> impl Iterator<Item = (Cow<'a, str>, &'a RawValue)> {
        self.fields
            .0
            .into_iter()
            .map(|(name, value)| (name.0, value))
    }

    /// The `messages` array; `None` when absent or not an array.
    pub fn messages(&self) -> Option<&[Message<'a>]> {
        self.messages
            .get_or_init(|| self.raw("messages").and_then(messages))
            .as_deref()
    }

    /// The value at `path`, one object key per step, parsed: only the
    /// top-level field it starts in is read.
    pub fn lookup<S: AsRef<str>>(&self, path: &[S]) -> Option<Value> {
        let (first, rest) = path.split_first()?;
        let mut value: Value = serde_json::from_str(self.raw(first.as_ref())?.get()).ok()?;
        for key in rest {
            value = value.get_mut(key.as_ref())?.take();
        }
        Some(value)
    }

    /// A field's value parsed as `T`; `None` when absent or of another shape.
    pub fn parsed<T: Deserialize<'a>>(&self, name: &str) -> Option<T> {
        serde_json::from_str(self.raw(name)?.get()).ok()
    }
}

/// The fields by name; a repeated name keeps its last value.
#[derive(Debug)]
struct FieldMap<'a>(BTreeMap<FieldName<'a>, &'a RawValue>);

impl<'de> Deserialize<'de> for FieldMap<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = FieldMap<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = BTreeMap::new();
                while let Some((name, value)) = map.next_entry::<FieldName<'de>, &'de RawValue>()? {
                    fields.insert(name, value);
                }
                Ok(FieldMap(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A field name, borrowed from the body unless it had escapes to decode.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FieldName<'a>(Cow<'a, str>);

impl std::borrow::Borrow<str> for FieldName<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> Visitor<'de> for Name {
            type Value = FieldName<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(name)))
            }

            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(name.to_owned())))
            }

            fn visit_string<E>(self, name: String) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(name)))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// One value of a rewritten body.
#[derive(Debug)]
pub enum Piece<'a> {
    /// The caller's, as it arrived.
    Raw(&'a RawValue),
    Json(Cow<'a, Value>),
    Text(Cow<'a, str>),
    /// `{"role": role, "content": content}`.
    Message {
        role: &'static str,
        content: String,
    },
    List(Vec<Piece<'a>>),
}

impl Piece<'_> {
    /// A value the gateway made (not borrowed from the caller's body).
    pub fn owned(value: Value) -> Self {
        Piece::Json(Cow::Owned(value))
    }
}

impl Serialize for Piece<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Piece::Raw(raw) => raw.serialize(serializer),
            Piece::Json(value) => value.serialize(serializer),
            Piece::Text(text) => serializer.serialize_str(text),
            Piece::Message { role, content } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("role", role)?;
                map.serialize_entry("content", content)?;
                map.end()
            }
            Piece::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

/// Room reserved beyond the caller's body for what a variant adds (model,
/// parameters, a system prompt); a larger addition grows the buffer once.
const REWRITE_HEADROOM: usize = 1024;

/// The caller's body with some fields set anew. The gateway field is left
/// out; every other field of the caller's not set here goes through as it
/// arrived.
#[derive(Debug)]
pub struct RewrittenBody<'a> {
    caller: &'a BodyFields<'a>,
    set: Vec<(Cow<'a, str>, Piece<'a>)>,
}

impl<'a> RewrittenBody<'a> {
    pub fn new(caller: &'a BodyFields<'a>) -> RewrittenBody<'a> {
        RewrittenBody {
            caller,
            set: Vec::new(),
        }
    }

    /// Sets `name`, replacing the caller's value and any set before.
    pub fn set(&mut self, name: impl Into<Cow<'a, str>>, value: Piece<'a>) {
        let name = name.into();
        match self.set.iter_mut().find(|(set, _)| *set == name) {
            Some((_, old)) => *old = value,
            None => self.set.push((name, value)),
        }
    }

    /// Whether the body sent will have `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.set.iter().any(|(set, _)| set == name)
            || (name != GATEWAY_FIELD && self.caller.contains(name))
    }

    /// The caller's value of `name` unless it is set anew here.
    pub fn caller_value(&self, name: &str) -> Option<&'a RawValue> {
        if self.set.iter().any(|(set, _)| set == name) {
            return None;
        }
        self.caller.raw(name)
    }

    /// The body as JSON, written into one buffer sized for the caller's
    /// body and a variant's additions (not grown from empty).
    pub fn to_vec(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(self.caller.len + REWRITE_HEADROOM);
        serde_json::to_writer(&mut out, self)?;
        Ok(out)
    }
}

impl Serialize for RewrittenBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in &self.caller.fields.0 {
            let name: &str = &name.0;
            if name != GATEWAY_FIELD && !self.set.iter().any(|(set, _)| set == name) {
                map.serialize_entry(name, value)?;
            }
        }
        for (name, value) in &self.set {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rewritten_json(body: &RewrittenBody<'_>) -> Value {
        serde_json::from_slice(&body.to_vec().unwrap()).unwrap()
    }

    #[test]
    fn fields_pass_through_as_they_arrived_and_set_ones_replace_them() {
        let text = br#"{"model":"x", "messages":[{"role":"user","content":"hi \u00e9"}],
            "temperature":0.5, "promptgate":{"variables":{}}, "stream_options":{"a":1}}"#;
        let fields = BodyFields::parse(text).unwrap();
        let mut body = RewrittenBody::new(&fields);
        body.set("model", Piece::Text("m-b".into()));
        body.set("temperature", Piece::owned(json!(0)));
        body.set("temperature", Piece::owned(json!(1)));
        assert!(body.contains("stream_options"));
        assert!(!body.contains(GATEWAY_FIELD));
        assert!(body.caller_value("model").is_none());
        assert_eq!(
            body.caller_value("stream_options").unwrap().get(),
            r#"{"a":1}"#
        );
        assert_eq!(
            rewritten_json(&body),
            json!({"model": "m-b", "messages": [{"role": "user", "content": "hi é"}],
                   "temperature": 1, "stream_options": {"a": 1}})
        );
        // The caller's value kept its own spelling (the escape), not a re-encoding.
        let bytes = String::from_utf8(body.to_vec().unwrap()).unwrap();
        assert!(bytes.contains(r#""content":"hi \u00e9""#), "{bytes}");
    }

    #[test]
    fn a_repeated_field_keeps_its_last_value_and_escaped_names_decode() {
        let fields = BodyFields::parse(br#"{"a":1,"a":2,"m\u006fdel":"x"}"#).unwrap();
        assert_eq!(fields.raw("a").unwrap().get(), "2");
        assert_eq!(fields.raw("model").unwrap().get(), r#""x""#);
        assert_eq!(
            rewritten_json(&RewrittenBody::new(&fields)),
            json!({"a": 2, "model": "x"})
        );
    }

    #[test]
    fn lookup_reads_a_path_through_one_field() {
        let fields = BodyFields::parse(br#"{"metadata":{"tier":"gold","n":{"k":3}}}"#).unwrap();
        assert_eq!(fields.lookup(&["metadata", "tier"]), Some(json!("gold")));
        assert_eq!(fields.lookup(&["metadata", "n", "k"]), Some(json!(3)));
        assert_eq!(fields.lookup(&["metadata", "missing"]), None);
        assert_eq!(fields.lookup(&["nothing"]), None);
        assert_eq!(fields.lookup::<&str>(&[]), None);
    }

    #[test]
    fn anything_but_a_valid_object_is_refused() {
        for body in [
            &b"[1]"[..],
            b"\"x\"",
            b"{\"a\":}",
            b"{\"a\":1} x",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(BodyFields::parse(body).is_err(), "{body:?}");
        }
    }
}
