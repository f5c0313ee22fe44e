//! Validated experiments: every variant, rule and template here has been
//! checked at load time, so request handling never meets a broken one.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::template::Template;
use crate::routing::RouteConfig;

#[derive(Debug)]
pub struct Experiment {
    pub id: Arc<str>,
    /// `id` as a response header's value, made once (`None`: it cannot be one).
    pub id_header: Option<HeaderValue>,
    pub enabled: bool,
    pub salt: Arc<str>,
    pub unit_key: UnitKeySource,
    /// 0–100.
    pub enrolment_percent: f64,
    /// Index into `variants`.
    pub default_variant: usize,
    pub fallback_variant: Option<usize>,
    pub killswitch: Option<usize>,
    pub overrides: OverridePolicy,
    /// Non-empty, names unique, weights finite and ≥ 0 and not all 0.
    pub variants: Vec<Variant>,
    pub rules: Vec<FlagRule>,
    /// false: audit records of this experiment carry metadata only.
    pub log_bodies: bool,
    pub shadow: Option<ShadowPolicy>,
}

/// Which candidate variants also run, unserved, on which requests, within
/// which limits. Validated: variants exist and are distinct, the percentage is
/// in 0–100, the cap is at least 1, budgets are positive.
#[derive(Debug)]
pub struct ShadowPolicy {
    /// Indexes into the experiment's `variants`.
    pub variants: Vec<usize>,
    pub sample_percent: f64,
    /// true: sampled by unit key; false: by request id.
    pub sticky: bool,
    pub max_concurrent: usize,
    pub timeout: std::time::Duration,
    pub budget: DailyBudget,
}

/// Per replica and UTC day; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DailyBudget {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
    pub usd: Option<f64>,
}

impl Experiment {
    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| &*v.name == name)
    }

    /// The variant's weight as a share of all weights (0–1): what the hash
    /// assigns it, recorded so a sample-ratio check needs only the log.
    pub fn share(&self, index: usize) -> f64 {
        let total: f64 = self.variants.iter().map(|v| v.weight).sum();
        self.variants
            .get(index)
            .map_or(0.0, |v| if total > 0.0 { v.weight / total } else { 0.0 })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitKeySource {
    Header(HeaderName),
    /// Path of object keys into the JSON body (`metadata.user_id` → ["metadata", "user_id"]).
    BodyField(Vec<String>),
    ClientId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverridePolicy {
    Nobody,
    Everyone,
    Clients(Vec<Arc<str>>),
}

impl OverridePolicy {
    pub fn allows(&self, client_id: Option<&str>) -> bool {
        match self {
            OverridePolicy::Nobody => false,
            OverridePolicy::Everyone => true,
            OverridePolicy::Clients(ids) => {
                client_id.is_some_and(|id| ids.iter().any(|c| &**c == id))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagesMode {
    /// The caller's messages are sent as they are (a `system` template still
    /// replaces the caller's system prompt).
    Keep,
    /// The rendered `user` template goes before the caller's messages.
    Prepend,
    /// The caller's messages are replaced by the rendered `user` template.
    Replace,
}

#[derive(Debug)]
pub struct Variant {
    pub name: Arc<str>,
    /// `name` as a response header's value, made once (`None`: it cannot be one).
    pub name_header: Option<HeaderValue>,
    pub weight: f64,
    pub version: Arc<str>,
    /// The variant's model (as `upstream_model`) and providers in fallback order.
    pub route: RouteConfig,
    pub system: Option<Template>,
    pub user: Option<Template>,
    pub messages: MessagesMode,
    /// Set on the request body, replacing the caller's values.
    pub params: Map<String, Value>,
}

impl Variant {
    pub fn model(&self) -> &str {
        self.route.upstream_model.as_deref().unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct FlagRule {
    pub name: Arc<str>,
    /// Index into the experiment's `variants`.
    pub variant: usize,
    pub attribute: Attribute,
    pub matcher: Matcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Header(HeaderName),
    ClientId,
    Model,
    /// A field of the body's `metadata` object.
    Metadata(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Equals(String),
    OneOf(Vec<String>),
    Prefix(String),
}

impl Matcher {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Equals(expected) => value == expected,
            Matcher::OneOf(list) => list.iter().any(|v| v == value),
            Matcher::Prefix(prefix) => value.starts_with(prefix.as_str()),
        }
    }
}
