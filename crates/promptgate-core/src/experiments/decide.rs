//! Which variant a request gets, and why. Evaluated in this order, first match wins:
//! 1. experiment switched off → default variant (`disabled`);
//! 2. kill switch → its variant (`killswitch`): an emergency stop beats everything;
//! 3. `x-promptgate-variant` from a client allowed to override (`override`);
//! 4. flag rules in config order (`flag:<rule>`);
//! 5. unit outside the enrolment percentage → default variant (`not_enrolled`);
//! 6. weighted rendezvous hash of the unit key (`hash`).

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use serde_json::Value;

use super::ExperimentError;
use super::assign;
use super::body::BodyFields;
use super::model::{Attribute, Experiment, UnitKeySource};

pub const VARIANT_OVERRIDE: HeaderName = HeaderName::from_static("x-promptgate-variant");

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Hash,
    Flag(Arc<str>),
    Override,
    NotEnrolled,
    Killswitch,
    Disabled,
}

impl Reason {
    /// The label of every reason but a flag rule's (`flag:<rule>`).
    pub fn fixed_label(&self) -> Option<&'static str> {
        match self {
            Reason::Hash => Some("hash"),
            Reason::Flag(_) => None,
            Reason::Override => Some("override"),
            Reason::NotEnrolled => Some("not_enrolled"),
            Reason::Killswitch => Some("killswitch"),
            Reason::Disabled => Some("disabled"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Flag(rule) => write!(f, "flag:{rule}"),
            fixed => f.write_str(fixed.fixed_label().unwrap_or_default()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Index into the experiment's variants.
    pub variant: usize,
    pub reason: Reason,
    /// The unit key used (raw: the audit log pseudonymises it before writing).
    pub unit_key: Arc<str>,
    /// False when the configured unit key was absent and the request id stood in.
    pub sticky: bool,
}

/// What assignment may look at in a request.
pub struct RequestFacts<'a> {
    pub headers: &'a HeaderMap,
    pub client_id: Option<&'a str>,
    pub model: &'a str,
    pub body: &'a BodyFields<'a>,
    pub request_id: &'a str,
}

pub fn decide(
    experiment: &Experiment,
    facts: &RequestFacts<'_>,
) -> Result<Assignment, ExperimentError> {
    let (unit_key, sticky) = match unit_key(&experiment.unit_key, facts) {
        Some(key) => (key, true),
        None => (Arc::from(facts.request_id), false),
    };
    if experiment.enabled && experiment.killswitch.is_none() {
        if let Some(requested) = facts.headers.get(&VARIANT_OVERRIDE) {
            if !experiment.overrides.allows(facts.client_id) {
                return Err(ExperimentError::OverrideForbidden {
                    experiment: experiment.id.to_string(),
                });
            }
            let name = requested.to_str().unwrap_or_default().trim();
            let variant =
                experiment
                    .variant_index(name)
                    .ok_or_else(|| ExperimentError::UnknownVariant {
                        experiment: experiment.id.to_string(),
                        variant: name.to_owned(),
                    })?;
            return Ok(Assignment {
                variant,
                reason: Reason::Override,
                unit_key,
                sticky,
            });
        }
        for rule in &experiment.rules {
            if attribute(&rule.attribute, facts).is_some_and(|value| rule.matcher.matches(&value)) {
                return Ok(Assignment {
                    variant: rule.variant,
                    reason: Reason::Flag(rule.name.clone()),
                    unit_key,
                    sticky,
                });
            }
        }
    }
    Ok(for_unit(experiment, unit_key, sticky))
}

/// The variant a unit gets from the experiment's own settings (switch, kill
/// switch, enrolment, hash), before anything a particular request carries
/// (override header, flag rules). Answers "which variant does user X see?".
pub fn for_unit(experiment: &Experiment, unit_key: Arc<str>, sticky: bool) -> Assignment {
    let (variant, reason) = if !experiment.enabled {
        (experiment.default_variant, Reason::Disabled)
    } else if let Some(variant) = experiment.killswitch {
        (variant, Reason::Killswitch)
    } else if !assign::is_enrolled(&experiment.salt, &unit_key, experiment.enrolment_percent) {
        (experiment.default_variant, Reason::NotEnrolled)
    } else {
        let variant = assign::choose_variant(
            &experiment.salt,
            &unit_key,
            experiment.variants.iter().map(|v| (&*v.name, v.weight)),
        )
        // Validation guarantees a positive weight; the default keeps this total.
        .unwrap_or(experiment.default_variant);
        (variant, Reason::Hash)
    };
    Assignment {
        variant,
        reason,
        unit_key,
        sticky,
    }
}

fn unit_key(source: &UnitKeySource, facts: &RequestFacts<'_>) -> Option<Arc<str>> {
    let key: Arc<str> = match source {
        UnitKeySource::Header(name) => facts.headers.get(name)?.to_str().ok()?.trim().into(),
        UnitKeySource::BodyField(path) => scalar_text(&facts.body.lookup(path)?)?.into(),
        UnitKeySource::ClientId => facts.client_id?.into(),
    };
    (!key.is_empty()).then_some(key)
}

fn attribute(attribute: &Attribute, facts: &RequestFacts<'_>) -> Option<String> {
    match attribute {
        Attribute::Header(name) => facts.headers.get(name)?.to_str().ok().map(str::to_owned),
        Attribute::ClientId => facts.client_id.map(str::to_owned),
        Attribute::Model => Some(facts.model.to_owned()),
        Attribute::Metadata(field) => scalar_text(&facts.body.lookup(&["metadata", field])?),
    }
}

/// Strings as they are; numbers and booleans in their JSON spelling.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
