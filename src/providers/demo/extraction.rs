//! The demo provider's structured answers: a deterministic stand-in for a
//! model asked to extract fields from a document, so extraction prompts and
//! golden sets can be tried with no key (config/evals/invoices.toml).
//!
//! The rule (docs/eval.md, "The demo provider's answers"): when the system
//! prompt has a line `Fields: a, b, c`, the answer is a JSON object with
//! exactly those keys. Each value is the text after the first `Label: value`
//! line of the user's message whose label, lower-cased with every run of
//! other characters turned into one `_`, is the key (`Invoice number:` →
//! `invoice_number`); a key with no such line is `null`. Values are the text
//! as written (`1,234.50`, `March 3, 2024`), as a model copying from the
//! document would give them; the scorers normalise numbers and dates.

use serde_json::{Map, Value};

/// The `Fields:` line's keys, if the system prompt has one.
fn requested_fields(system: &str) -> Option<Vec<String>> {
    let line = system.lines().find_map(|line| {
        let line = line.trim();
        let (label, rest) = line.split_once(':')?;
        label.trim().eq_ignore_ascii_case("fields").then_some(rest)
    })?;
    let fields: Vec<String> = line
        .split(',')
        .map(|f| f.trim().trim_end_matches('.').to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    (!fields.is_empty()).then_some(fields)
}

/// `Invoice number` → `invoice_number`.
fn key_of(label: &str) -> String {
    let mut key = String::with_capacity(label.len());
    for c in label.chars() {
        if c.is_alphanumeric() {
            key.extend(c.to_lowercase());
        } else if !key.is_empty() && !key.ends_with('_') {
            key.push('_');
        }
    }
    key.trim_end_matches('_').to_owned()
}

/// The answer to an extraction prompt, or `None` when the system prompt asks
/// for no fields.
pub fn extract(system: &str, document: &str) -> Option<String> {
    let fields = requested_fields(system)?;
    let mut values: Map<String, Value> = fields.iter().map(|f| (f.clone(), Value::Null)).collect();
    for line in document.lines() {
        let Some((label, value)) = line.split_once(':') else {
            continue;
        };
        let key = key_of(label);
        if let Some(slot) = values.get_mut(&key)
            && slot.is_null()
            && !value.trim().is_empty()
        {
            *slot = Value::String(value.trim().to_owned());
        }
    }
    Some(Value::Object(values).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_labelled_lines() {
        let system = "Extract the invoice's fields as one JSON object.\nFields: invoice_number, total, due_date";
        let document = "ACME Corp\nInvoice number: INV-0042\nTotal: 1,234.50 EUR\nTotal: 9";
        let answer: Value =
            serde_json::from_str(&extract(system, document).expect("fields")).expect("json");
        assert_eq!(
            answer,
            serde_json::json!({"invoice_number": "INV-0042", "total": "1,234.50 EUR", "due_date": null})
        );
    }

    #[test]
    fn no_fields_line_means_no_structured_answer() {
        assert_eq!(extract("You are a concise assistant.", "Total: 4"), None);
    }
}
