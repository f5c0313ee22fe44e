//! `[feedback]`: the metrics applications may post to `POST /v1/feedback`,
//! and the rule for names that become columns, labels and headers (metric
//! names here, experiment, variant and rule names in `[experiments]`).

use std::collections::BTreeMap;

/// The rule for names that become columns, labels and headers.
pub const LABEL_RULE: &str =
    "must be 1–64 characters of letters, digits, `_`, `-` or `.`, starting with a letter or digit";

/// Experiment ids, variant, rule and metric names travel in headers, metric
/// labels and the audit log's columns: keep them plain.
pub fn is_label(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// true / false: analysed as a proportion.
    Boolean,
    /// Any finite number: analysed as a mean.
    Float,
}

impl MetricKind {
    pub fn label(self) -> &'static str {
        match self {
            MetricKind::Boolean => "boolean",
            MetricKind::Float => "float",
        }
    }
}

/// The client id of the feedback `promptgate judge` writes. No
/// `[[auth.clients]]` entry may take it (validation), so no caller of the
/// gateway can post feedback under it; analyze and export-dataset trust it
/// as an outcome reporter without it being listed in `trusted_clients`.
pub const JUDGE_CLIENT_ID: &str = "promptgate.judge";

/// `[feedback]`: the metrics applications may post. Empty: any metric whose
/// name is a plain label, typed by its first value's JSON type.
#[derive(Debug, Clone, Default)]
pub struct FeedbackConfig {
    pub metrics: BTreeMap<String, MetricKind>,
    /// `trusted_clients`: whose feedback analyze joins to any client's request.
    pub trusted_clients: Vec<String>,
}
