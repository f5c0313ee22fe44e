//! `[limits.<client id>]`: what one client may use. Every limit is kept by
//! each replica on its own (divide a fleet-wide figure by the replica count).

use std::collections::{BTreeMap, HashMap};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;

use super::model::AuthConfig;
use super::raw::RawClientLimits;
use super::validate::Errors;

/// One client's limits, validated. `None`: that limit is not enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientLimits {
    pub requests_per_minute: Option<NonZeroU32>,
    /// Input plus output tokens, as the provider reported them.
    pub tokens_per_minute: Option<NonZeroU64>,
    /// Priced from `[prices]`; always positive and finite.
    pub usd_per_day: Option<f64>,
}

/// Which limit refused a request: its config name is its metric label and
/// what the refusal's message and audit record say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitName {
    RequestsPerMinute,
    TokensPerMinute,
    UsdPerDay,
}

impl LimitName {
    pub fn label(self) -> &'static str {
        match self {
            LimitName::RequestsPerMinute => "requests_per_minute",
            LimitName::TokensPerMinute => "tokens_per_minute",
            LimitName::UsdPerDay => "usd_per_day",
        }
    }
}

impl std::fmt::Display for LimitName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Client id → its limits. A client not listed is not limited.
pub type LimitsConfig = HashMap<Arc<str>, ClientLimits>;

pub(super) fn validate_limits(
    raw: &BTreeMap<String, RawClientLimits>,
    auth: Option<&AuthConfig>,
    priced: bool,
    errors: &mut Errors,
) -> LimitsConfig {
    let mut limits = LimitsConfig::with_capacity(raw.len());
    for (client, raw) in raw {
        let path = format!("limits.{client}");
        match auth {
            Some(AuthConfig::Open) => errors.push(
                &path,
                "limits apply to authenticated clients, and `auth.open = true` has none: declare [[auth.clients]]",
            ),
            Some(AuthConfig::Keys(keys)) if !keys.iter().any(|key| &*key.id == client) => errors
                .push(
                    &path,
                    format!("no client `{client}` is declared under [[auth.clients]]"),
                ),
            _ => {}
        }
        if raw.requests_per_minute.is_none()
            && raw.tokens_per_minute.is_none()
            && raw.usd_per_day.is_none()
        {
            errors.push(
                &path,
                "set at least one of requests_per_minute, tokens_per_minute, usd_per_day",
            );
        }
        let requests_per_minute = raw.requests_per_minute.map(NonZeroU32::new);
        if requests_per_minute == Some(None) {
            errors.push(format!("{path}.requests_per_minute"), "must be at least 1");
        }
        let tokens_per_minute = raw.tokens_per_minute.map(NonZeroU64::new);
        if tokens_per_minute == Some(None) {
            errors.push(format!("{path}.tokens_per_minute"), "must be at least 1");
        }
        if let Some(usd) = raw.usd_per_day {
            if !(usd.is_finite() && usd > 0.0) {
                errors.push(
                    format!("{path}.usd_per_day"),
                    format!("{usd} is not a positive amount"),
                );
            } else if !priced {
                errors.push(
                    format!("{path}.usd_per_day"),
                    "USD are priced from [prices]: add the prices of the models this client uses",
                );
            }
        }
        limits.insert(
            client.as_str().into(),
            ClientLimits {
                requests_per_minute: requests_per_minute.flatten(),
                tokens_per_minute: tokens_per_minute.flatten(),
                usd_per_day: raw.usd_per_day,
            },
        );
    }
    limits
}
