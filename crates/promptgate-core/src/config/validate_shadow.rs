//! Validation of `[experiments.<id>.shadow]`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::raw::{RawPrice, RawShadow, RawVariant};
use super::validate::Errors;
use crate::experiments::model::{DailyBudget, ShadowPolicy};

const DEFAULT_MAX_CONCURRENT: usize = 16;
const DEFAULT_TIMEOUT_MS: u64 = 60_000;

pub(super) fn validate_shadow(
    path: &str,
    raw: &RawShadow,
    variant_index: &HashMap<&str, usize>,
    raw_variants: &[RawVariant],
    prices: &BTreeMap<String, RawPrice>,
    errors: &mut Errors,
) -> Option<ShadowPolicy> {
    let before = errors.len();
    if raw.variants.is_empty() {
        errors.push(
            format!("{path}.variants"),
            "name at least one variant to run in shadow",
        );
    }
    let mut variants = Vec::with_capacity(raw.variants.len());
    for (position, name) in raw.variants.iter().enumerate() {
        let field = format!("{path}.variants[{position}]");
        match variant_index.get(name.as_str()) {
            None => errors.push(
                field,
                super::validate_experiments::unknown_variant(name, variant_index),
            ),
            Some(index) if variants.contains(index) => {
                errors.push(field, format!("`{name}` is listed twice"))
            }
            Some(&index) => variants.push(index),
        }
    }
    if !(raw.sample_percent.is_finite() && (0.0..=100.0).contains(&raw.sample_percent)) {
        errors.push(
            format!("{path}.sample_percent"),
            format!("{} is not between 0 and 100", raw.sample_percent),
        );
    }
    let max_concurrent = raw.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT);
    if max_concurrent == 0 {
        errors.push(
            format!("{path}.max_concurrent"),
            "must be at least 1 (to stop shadowing, set sample_percent = 0)",
        );
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 {
        errors.push(format!("{path}.timeout_ms"), "must be at least 1");
    }
    for (field, value) in [
        ("max_requests_per_day", raw.max_requests_per_day),
        ("max_tokens_per_day", raw.max_tokens_per_day),
    ] {
        if value == Some(0) {
            errors.push(
                format!("{path}.{field}"),
                "must be at least 1 (to stop shadowing, set sample_percent = 0)",
            );
        }
    }
    if let Some(usd) = raw.max_usd_per_day {
        if !(usd.is_finite() && usd > 0.0) {
            errors.push(
                format!("{path}.max_usd_per_day"),
                format!("{usd} is not a positive amount"),
            );
        }
        // Without a price the spend of a shadow call is unknown, and the
        // budget would never stop anything.
        for &index in &variants {
            let model = &raw_variants[index].model;
            if !prices.contains_key(model) {
                errors.push(
                    format!("{path}.max_usd_per_day"),
                    format!("the shadow variant `{}` uses model `{model}`, which has no [prices] entry: its cost cannot be counted", raw_variants[index].name),
                );
            }
        }
    }
    (errors.len() == before).then(|| ShadowPolicy {
        variants,
        sample_percent: raw.sample_percent,
        sticky: raw.sticky.unwrap_or(true),
        max_concurrent,
        timeout: Duration::from_millis(timeout_ms),
        budget: DailyBudget {
            requests: raw.max_requests_per_day,
            tokens: raw.max_tokens_per_day,
            usd: raw.max_usd_per_day,
        },
    })
}
