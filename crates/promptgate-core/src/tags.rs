//! Request tags: `x-promptgate-tags: doc_type=invoice, channel=email`, the
//! keys declared in `[tags.keys]`. Parsed once per request into [`Tags`],
//! which the audit record and shadow calls carry. A tag is a metric label
//! only when its key is declared `metric_label = true`, which validation
//! allows only with a short closed `values` list (bounded series).
//!
//! A bad header is refused (400 naming the key) rather than dropped: a tag
//! exists to slice an analysis, and a silently dropped `doc_typ=invoice`
//! would leave the slice short without anyone noticing. Refusing costs the
//! caller one request and loses nothing: no provider was called yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

pub const TAGS_HEADER: http::HeaderName = http::HeaderName::from_static("x-promptgate-tags");

/// Default and upper bound of `tags.max_value_bytes`.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64;

/// `[tags]`, validated: the keys applications may send.
#[derive(Debug, Clone)]
pub struct TagsConfig {
    pub keys: BTreeMap<String, TagKey>,
    pub max_value_bytes: usize,
}

impl Default for TagsConfig {
    fn default() -> TagsConfig {
        TagsConfig {
            keys: BTreeMap::new(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// One declared key.
#[derive(Debug, Clone, Default)]
pub struct TagKey {
    /// `Some`: only these values are accepted.
    pub values: Option<Vec<String>>,
    /// Counted in `promptgate_tagged_requests_total` (only with `values`).
    pub metric_label: bool,
}

/// The most values a `metric_label` key may declare: its series are
/// values × outcomes, and a label is meant for a handful of channels or
/// tiers, not for ids.
pub const MAX_METRIC_LABEL_VALUES: usize = 20;

/// A request's tags, sorted by key. No tags (the common case) is `None`
/// inside, so carrying or cloning them allocates nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Option<Arc<[Tag]>>);

/// One `key=value` pair, and whether its key is a metric label.
type Tag = (Box<str>, Box<str>, bool);

impl Tags {
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|tags| tags.iter())
            .map(|(key, value, _)| (&**key, &**value))
    }

    /// The tags whose keys are declared `metric_label = true`.
    pub fn metric_labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|tags| tags.iter())
            .filter(|(_, _, labelled)| *labelled)
            .map(|(key, value, _)| (&**key, &**value))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Written as a JSON object, `null` when there are none.
impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            None => serializer.serialize_none(),
            Some(tags) => {
                let mut map = serializer.serialize_map(Some(tags.len()))?;
                for (key, value, _) in tags.iter() {
                    map.serialize_entry(&**key, &**value)?;
                }
                map.end()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagsError {
    #[error("the tags header `x-promptgate-tags` is not printable ASCII")]
    NotText,
    #[error("the tag `{0}` is not `key=value` (tags are comma-separated `key=value` pairs)")]
    Malformed(String),
    #[error("the tag key `{0}` is not declared in the gateway's [tags.keys]")]
    Undeclared(String),
    #[error("the tag key `{0}` appears more than once")]
    Duplicate(String),
    #[error("the value of tag `{key}` is longer than {limit} bytes")]
    TooLong { key: String, limit: usize },
    #[error(
        "the value of tag `{key}` contains a character other than letters, digits, `_`, `-`, `.`, `:` or `/`"
    )]
    BadValue { key: String },
    #[error("`{value}` is not a declared value of tag `{key}`")]
    UndeclaredValue { key: String, value: String },
}

/// Every `x-promptgate-tags` line of `headers`, as one comma-separated list.
/// Without the header this only looks it up: no allocation.
pub fn parse(headers: &http::HeaderMap, config: &TagsConfig) -> Result<Tags, TagsError> {
    let mut lines = headers.get_all(&TAGS_HEADER).iter().peekable();
    if lines.peek().is_none() {
        return Ok(Tags::default());
    }
    let mut tags: Vec<Tag> = Vec::new();
    for line in lines {
        let line = line.to_str().map_err(|_| TagsError::NotText)?;
        for item in line.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| TagsError::Malformed(item.to_owned()))?;
            let declared = config
                .keys
                .get(key)
                .ok_or_else(|| TagsError::Undeclared(key.to_owned()))?;
            check_value(key, value, declared, config.max_value_bytes)?;
            if tags.iter().any(|(k, _, _)| &**k == key) {
                return Err(TagsError::Duplicate(key.to_owned()));
            }
            tags.push((key.into(), value.into(), declared.metric_label));
        }
    }
    if tags.is_empty() {
        return Ok(Tags::default());
    }
    tags.sort_unstable();
    Ok(Tags(Some(tags.into())))
}

/// Tag values end up in JSON, SQL filters and file names of exports: keep
/// them to a plain alphabet.
pub fn is_tag_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

/// The longest `tags.max_value_bytes` accepted.
pub const MAX_VALUE_BYTES_LIMIT: usize = 256;

fn check_value(key: &str, value: &str, declared: &TagKey, limit: usize) -> Result<(), TagsError> {
    if value.len() > limit {
        return Err(TagsError::TooLong {
            key: key.to_owned(),
            limit,
        });
    }
    if !is_tag_value(value) {
        return Err(TagsError::BadValue {
            key: key.to_owned(),
        });
    }
    match &declared.values {
        Some(values) if !values.iter().any(|v| v == value) => Err(TagsError::UndeclaredValue {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TagsConfig {
        let mut keys = BTreeMap::new();
        keys.insert("doc_type".to_owned(), TagKey::default());
        keys.insert(
            "channel".to_owned(),
            TagKey {
                values: Some(vec!["email".to_owned(), "web".to_owned()]),
                metric_label: true,
            },
        );
        TagsConfig {
            keys,
            max_value_bytes: 8,
        }
    }

    fn parse_lines(lines: &[&str]) -> Result<Tags, TagsError> {
        let mut headers = http::HeaderMap::new();
        for line in lines {
            headers.append(&TAGS_HEADER, http::HeaderValue::from_str(line).unwrap());
        }
        parse(&headers, &config())
    }

    fn pairs(tags: &Tags) -> Vec<(&str, &str)> {
        tags.iter().collect()
    }

    #[test]
    fn absent_header_is_no_tags() {
        let tags = parse(&http::HeaderMap::new(), &config()).unwrap();
        assert!(tags.is_empty());
        assert_eq!(serde_json::to_string(&tags).unwrap(), "null");
    }

    #[test]
    fn spaces_are_trimmed_and_keys_sorted() {
        let tags = parse_lines(&[" doc_type = invoice ,channel=email,"]).unwrap();
        assert_eq!(
            pairs(&tags),
            [("channel", "email"), ("doc_type", "invoice")]
        );
        assert_eq!(
            serde_json::to_string(&tags).unwrap(),
            r#"{"channel":"email","doc_type":"invoice"}"#
        );
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let tags = parse_lines(&["doc_type=invoice", "channel=web"]).unwrap();
        assert_eq!(tags.get("channel"), Some("web"));
        assert_eq!(tags.get("doc_type"), Some("invoice"));
        // Only `channel` is declared a metric label.
        assert_eq!(
            tags.metric_labels().collect::<Vec<_>>(),
            [("channel", "web")]
        );
    }

    #[test]
    fn empty_header_is_no_tags() {
        assert!(parse_lines(&[""]).unwrap().is_empty());
        assert!(parse_lines(&[" , ,"]).unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_refused_naming_the_key() {
        let cases: [(&[&str], TagsError); 7] = [
            (&["doc_type"], TagsError::Malformed("doc_type".into())),
            (&["doc_type="], TagsError::Malformed("doc_type=".into())),
            (&["=x"], TagsError::Malformed("=x".into())),
            (
                &["doc_typ=invoice"],
                TagsError::Undeclared("doc_typ".into()),
            ),
            (
                &["doc_type=a", "doc_type=b"],
                TagsError::Duplicate("doc_type".into()),
            ),
            (
                &["doc_type=invoices1"],
                TagsError::TooLong {
                    key: "doc_type".into(),
                    limit: 8,
                },
            ),
            (
                &["channel=fax"],
                TagsError::UndeclaredValue {
                    key: "channel".into(),
                    value: "fax".into(),
                },
            ),
        ];
        for (lines, expected) in cases {
            assert_eq!(parse_lines(lines), Err(expected), "{lines:?}");
        }
        assert_eq!(
            parse_lines(&["doc_type=a\"b"]),
            Err(TagsError::BadValue {
                key: "doc_type".into()
            })
        );
    }

    #[test]
    fn a_value_at_the_limit_is_accepted() {
        let tags = parse_lines(&["doc_type=12345678"]).unwrap();
        assert_eq!(tags.get("doc_type"), Some("12345678"));
    }
}
