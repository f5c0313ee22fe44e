//! One window's summary, in bounded memory: a reservoir sample per numeric
//! signal and a count per category per categorical signal.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::collect::Reservoir;

/// Distinct values kept per categorical signal; the rest count as `(other)`,
/// so a high-cardinality tag or JSON field cannot grow memory.
pub const MAX_CATEGORIES: usize = 50;
/// JSON answer fields tracked; later-seen fields are not followed.
pub const MAX_JSON_FIELDS: usize = 64;
pub const OTHER: &str = "(other)";

/// The fields drift reads from a request record (docs/audit-schema.md);
/// `tags` is read when records carry it (an object of strings).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DriftRow {
    pub record_type: String,
    pub role: String,
    pub experiment: Option<String>,
    pub model: Option<String>,
    pub served_variant: Option<String>,
    pub error_class: Option<String>,
    pub latency_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub request: Option<Box<RawValue>>,
    pub response: Option<Box<RawValue>>,
    pub response_text: Option<String>,
    pub tags: Option<BTreeMap<String, serde_json::Value>>,
}

/// Only the finish reason of a logged response body (OpenAI or Anthropic).
#[derive(Deserialize)]
struct FinishReason {
    #[serde(default)]
    choices: Vec<Choice>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    finish_reason: Option<String>,
}

pub const NUMERIC: [&str; 5] = [
    "input_tokens",
    "output_tokens",
    "prompt_length",
    "latency_ms",
    "ttfb_ms",
];

pub struct Window {
    pub records: u64,
    /// One per [`NUMERIC`] signal, in that order.
    pub numeric: Vec<Reservoir>,
    pub categorical: BTreeMap<String, BTreeMap<String, u64>>,
    /// Boolean feedback per metric: (true, false) counts.
    pub feedback: BTreeMap<String, (u64, u64)>,
    json_fields: usize,
    rng: StdRng,
}

impl Window {
    pub fn new(seed: u64) -> Window {
        Window {
            records: 0,
            numeric: NUMERIC.iter().map(|_| Reservoir::new()).collect(),
            categorical: BTreeMap::new(),
            feedback: BTreeMap::new(),
            json_fields: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn add(&mut self, row: &DriftRow) {
        self.records += 1;
        let prompt_length = row.request.as_ref().map(|r| r.get().chars().count() as f64);
        let values = [
            row.input_tokens.map(|t| t as f64),
            row.output_tokens.map(|t| t as f64),
            prompt_length,
            row.latency_ms,
            row.ttfb_ms,
        ];
        for (reservoir, value) in self.numeric.iter_mut().zip(values) {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                reservoir.push(value, &mut self.rng);
            }
        }
        let error = row.error_class.as_deref().unwrap_or("none");
        self.count("error_class", error);
        if let Some(variant) = &row.served_variant {
            self.count("variant", variant);
        }
        if let Some(reason) = row.response.as_ref().and_then(|r| finish_reason(r.get())) {
            self.count("finish_reason", &reason);
        }
        if let Some(tags) = &row.tags {
            for (key, value) in tags {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                self.count(&format!("tag:{key}"), &value);
            }
        }
        self.json_presence(row.response_text.as_deref());
    }

    /// For each top-level field of a JSON-object answer: `present`, `null` or
    /// `missing` (null rates). Answers that are not JSON objects are skipped.
    fn json_presence(&mut self, text: Option<&str>) {
        let Some(Ok(serde_json::Value::Object(answer))) =
            text.map(|t| serde_json::from_str::<serde_json::Value>(t.trim()))
        else {
            return;
        };
        for (field, value) in &answer {
            let signal = format!("json:{field}");
            if !self.categorical.contains_key(&signal) {
                if self.json_fields >= MAX_JSON_FIELDS {
                    continue;
                }
                self.json_fields += 1;
            }
            self.count(&signal, if value.is_null() { "null" } else { "present" });
        }
        // Fields seen before but absent from this answer.
        let missing: Vec<String> = self
            .categorical
            .keys()
            .filter(|s| {
                s.strip_prefix("json:")
                    .is_some_and(|f| !answer.contains_key(f))
            })
            .cloned()
            .collect();
        for signal in missing {
            self.count(&signal, "missing");
        }
    }

    pub fn count(&mut self, signal: &str, value: &str) {
        let counts = self.categorical.entry(signal.to_owned()).or_default();
        let key = if counts.contains_key(value) || counts.len() < MAX_CATEGORIES {
            value
        } else {
            OTHER
        };
        *counts.entry(key.to_owned()).or_default() += 1;
    }
}

fn finish_reason(body: &str) -> Option<String> {
    let parsed: FinishReason = serde_json::from_str(body).ok()?;
    parsed
        .choices
        .into_iter()
        .find_map(|c| c.finish_reason)
        .or(parsed.stop_reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str) -> DriftRow {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn tags_finish_reasons_and_json_fields_become_categorical_signals() {
        let mut window = Window::new(1);
        window.add(&row(
            r#"{"tags": {"doc_type": "invoice"}, "response": {"choices": [{"finish_reason": "length"}]},
                "response_text": "{\"total\": 3, \"currency\": null}"}"#,
        ));
        window.add(&row(
            r#"{"response": {"stop_reason": "end_turn"}, "response_text": "{\"total\": 4}"}"#,
        ));
        let counts = |signal: &str| {
            window.categorical[signal]
                .clone()
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(counts("tag:doc_type"), [("invoice".to_owned(), 1)]);
        assert_eq!(
            counts("finish_reason"),
            [("end_turn".to_owned(), 1), ("length".to_owned(), 1)]
        );
        assert_eq!(counts("json:total"), [("present".to_owned(), 2)]);
        assert_eq!(
            counts("json:currency"),
            [("missing".to_owned(), 1), ("null".to_owned(), 1)]
        );
        assert_eq!(counts("error_class"), [("none".to_owned(), 2)]);
    }

    #[test]
    fn categories_beyond_the_cap_count_as_other() {
        let mut window = Window::new(1);
        for i in 0..MAX_CATEGORIES + 5 {
            window.count("tag:user", &format!("u{i}"));
        }
        assert_eq!(window.categorical["tag:user"].len(), MAX_CATEGORIES + 1);
        assert_eq!(window.categorical["tag:user"][OTHER], 5);
    }
}
