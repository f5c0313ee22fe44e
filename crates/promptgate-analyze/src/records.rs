//! The audit-log fields `analyze` reads (schema v1, docs/audit-schema.md).
//! Everything else in a record is skipped while parsing.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestRow {
    pub record_type: String,
    pub request_id: String,
    /// The authenticated client; with `request_id`, what feedback joins on.
    pub client_id: Option<String>,
    pub role: String,
    pub shadow_of: Option<String>,
    pub ts_start: String,
    pub experiment: Option<String>,
    pub assigned_variant: Option<String>,
    pub served_variant: Option<String>,
    pub assignment_reason: Option<String>,
    /// The assigned variant's share of enrolled traffic when it was assigned.
    pub variant_share: Option<f64>,
    pub unit_key_hash: Option<String>,
    pub status: Option<u16>,
    pub outcome: Option<String>,
    pub error_class: Option<String>,
    pub stream: bool,
    pub latency_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub response_text: Option<String>,
    /// Read for `--by`: the caller's model, tags, variant version (and
    /// `client_id` above).
    pub model: Option<String>,
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    pub variant_version: Option<String>,
}

impl RequestRow {
    /// An answer the caller could use: a 2xx that completed. A caller who
    /// went away is not the variant's failure, so it counts as neither.
    pub fn failed(&self) -> Option<bool> {
        match self.error_class.as_deref() {
            Some("client_disconnected") => None,
            Some(_) => Some(true),
            None => Some(!self.status.is_some_and(|s| (200..300).contains(&s))),
        }
    }

    /// The day, for counts over time.
    pub fn date(&self) -> &str {
        self.ts_start.get(..10).unwrap_or("")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FeedbackRow {
    pub request_id: String,
    /// The client that posted the feedback.
    pub client_id: Option<String>,
    pub ts_received: String,
    pub metric: String,
    pub value_type: String,
    pub value_number: Option<f64>,
}
