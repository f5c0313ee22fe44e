//! The declared fields of the `extraction` and `grounding` scorers, and how a
//! value of each kind is compared.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ScorerError;
use super::dates::{DateOrder, normalize_date};
use super::normalize::squad_normalize;
use super::numbers::{json_number_text, normalize_number};
pub(super) use promptgate_core::experiments::decide::scalar_text;

/// How a field's values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Equal after number normalisation (`$1,234.50` = `1234.5`).
    Number,
    /// Equal after date normalisation (`5 March 2024` = `2024-03-05`).
    Date,
    /// Equal after SQuAD normalisation; token F1 reported beside.
    Text,
    /// Equal as JSON values, character for character.
    Exact,
}

/// What an object holds for a field: the empty string is a value, never a null.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot<'a> {
    Absent,
    Null,
    Value(&'a Value),
}

impl<'a> Slot<'a> {
    pub fn of(object: Option<&'a Map<String, Value>>, name: &str) -> Slot<'a> {
        match object.and_then(|object| object.get(name)) {
            None => Slot::Absent,
            Some(Value::Null) => Slot::Null,
            Some(value) => Slot::Value(value),
        }
    }

    pub fn value(self) -> Option<&'a Value> {
        match self {
            Slot::Value(value) => Some(value),
            Slot::Absent | Slot::Null => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct FieldSet {
    pub fields: Vec<(String, FieldKind)>,
    pub date_order: DateOrder,
}

impl FieldSet {
    pub fn new(
        fields: &BTreeMap<String, FieldKind>,
        date_order: DateOrder,
    ) -> Result<FieldSet, ScorerError> {
        if fields.is_empty() {
            return Err(ScorerError::NoFields { field: "fields" });
        }
        Ok(FieldSet {
            fields: fields
                .iter()
                .map(|(name, kind)| (name.clone(), *kind))
                .collect(),
            date_order,
        })
    }

    /// A value in the canonical form of its kind (`None` when it has none:
    /// a text that is not a number, an object…).
    pub fn canonical(&self, kind: FieldKind, value: &Value) -> Option<String> {
        match (kind, value) {
            (FieldKind::Number, Value::Number(number)) => json_number_text(number),
            (FieldKind::Number, Value::String(text)) => normalize_number(text),
            (FieldKind::Date, _) => normalize_date(&scalar_text(value)?, self.date_order),
            (FieldKind::Text, _) => Some(squad_normalize(&scalar_text(value)?)),
            (FieldKind::Number | FieldKind::Exact, _) => None,
        }
    }

    /// Whether an extracted value equals the expected one under the field's kind.
    /// Values that do not normalise are compared as trimmed text (or as JSON
    /// when they are not scalars), so `"n/a"` still equals `"n/a"`.
    pub fn equal(&self, kind: FieldKind, answer: &Value, expected: &Value) -> bool {
        if kind == FieldKind::Exact {
            return answer == expected;
        }
        match (self.canonical(kind, answer), self.canonical(kind, expected)) {
            (Some(answer), Some(expected)) => answer == expected,
            _ => match (scalar_text(answer), scalar_text(expected)) {
                (Some(answer), Some(expected)) => answer.trim() == expected.trim(),
                _ => answer == expected,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set() -> FieldSet {
        FieldSet {
            fields: Vec::new(),
            date_order: DateOrder::Dmy,
        }
    }

    #[test]
    fn each_kind_forgives_only_its_own_spelling_differences() {
        let fields = set();
        assert!(fields.equal(FieldKind::Number, &json!("$1,234.50"), &json!(1234.5)));
        assert!(!fields.equal(FieldKind::Number, &json!("1,234.50"), &json!(1234.05)));
        assert!(fields.equal(
            FieldKind::Date,
            &json!("5 March 2024"),
            &json!("2024-03-05")
        ));
        assert!(fields.equal(
            FieldKind::Text,
            &json!("The ACME Corp."),
            &json!("acme corp")
        ));
        assert!(!fields.equal(FieldKind::Exact, &json!("INV-001 "), &json!("INV-001")));
        assert!(!fields.equal(FieldKind::Exact, &json!("1"), &json!(1)));
    }

    #[test]
    fn values_that_do_not_normalise_compare_as_trimmed_text() {
        let fields = set();
        assert!(fields.equal(FieldKind::Number, &json!(" n/a"), &json!("n/a")));
        assert!(!fields.equal(FieldKind::Number, &json!("n/a"), &json!(5)));
        assert!(fields.equal(FieldKind::Date, &json!("Q1 2024"), &json!("Q1 2024")));
        assert!(fields.equal(FieldKind::Text, &json!(["a"]), &json!(["a"])));
    }

    #[test]
    fn the_empty_string_is_a_value_and_null_is_not() {
        let object = json!({"a": "", "b": null});
        let object = object.as_object();
        assert!(matches!(Slot::of(object, "a"), Slot::Value(value) if value == ""));
        assert!(matches!(Slot::of(object, "b"), Slot::Null));
        assert!(matches!(Slot::of(object, "c"), Slot::Absent));
    }
}
