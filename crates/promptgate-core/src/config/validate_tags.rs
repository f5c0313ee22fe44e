//! `[tags]`: declared keys are plain labels, declared values follow the
//! value alphabet and the length limit (a declared value the gateway would
//! refuse is a config error, not a surprise at request time).

use std::collections::BTreeMap;

use super::feedback::{LABEL_RULE, is_label};
use super::raw::RawTags;
use super::validate::Errors;
use crate::tags::{
    DEFAULT_MAX_VALUE_BYTES, MAX_METRIC_LABEL_VALUES, MAX_VALUE_BYTES_LIMIT, TagKey, TagsConfig,
    is_tag_value,
};

pub(super) fn validate_tags(raw: &RawTags, errors: &mut Errors) -> TagsConfig {
    let max_value_bytes = raw.max_value_bytes.unwrap_or(DEFAULT_MAX_VALUE_BYTES);
    if !(1..=MAX_VALUE_BYTES_LIMIT).contains(&max_value_bytes) {
        errors.push(
            "tags.max_value_bytes",
            format!("must be between 1 and {MAX_VALUE_BYTES_LIMIT}"),
        );
    }
    let mut keys = BTreeMap::new();
    for (key, declared) in &raw.keys {
        let path = super::location::child_path("tags.keys", key);
        if !is_label(key) {
            errors.push(&path, format!("the tag key `{key}` {LABEL_RULE}"));
        }
        for (i, value) in declared.values.iter().flatten().enumerate() {
            if !is_tag_value(value) || value.len() > max_value_bytes {
                errors.push(
                    format!("{path}.values[{i}]"),
                    format!(
                        "`{value}` must be 1–{max_value_bytes} characters of letters, digits, `_`, `-`, `.`, `:` or `/`"
                    ),
                );
            }
        }
        if declared.values.as_ref().is_some_and(Vec::is_empty) {
            errors.push(
                format!("{path}.values"),
                "an empty list accepts nothing: list the values or leave `values` out",
            );
        }
        if declared.metric_label {
            match &declared.values {
                None => errors.push(
                    format!("{path}.metric_label"),
                    "a metric label needs `values`: any value would make the metric's series unbounded",
                ),
                Some(values) if values.len() > MAX_METRIC_LABEL_VALUES => errors.push(
                    format!("{path}.metric_label"),
                    format!(
                        "a metric label may declare at most {MAX_METRIC_LABEL_VALUES} values (this key has {}): each is a series per outcome",
                        values.len()
                    ),
                ),
                Some(_) => {}
            }
        }
        keys.insert(
            key.clone(),
            TagKey {
                values: declared.values.clone(),
                metric_label: declared.metric_label,
            },
        );
    }
    TagsConfig {
        keys,
        max_value_bytes,
    }
}
