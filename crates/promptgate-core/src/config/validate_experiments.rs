//! Validation of `[experiments.*]`: variants, weights, templates, rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::model::{ModelPattern, ProviderId, RouteConfig};
use super::raw::*;
use super::validate::{Environment, Errors};
use crate::config::feedback::{LABEL_RULE, is_label};
use crate::experiments::model::*;
use crate::experiments::template::Template;

/// Request fields a variant may not set through `params`: the gateway owns them.
const RESERVED_PARAMS: [&str; 6] = [
    "model",
    "messages",
    "stream",
    "system",
    "input",
    "promptgate",
];

pub(super) struct Context<'a> {
    pub env: &'a Environment<'a>,
    pub provider_ids: &'a HashMap<&'a str, ProviderId>,
    pub raw_providers: &'a BTreeMap<String, RawProvider>,
    pub exact_models: &'a HashSet<String>,
    pub prices: &'a BTreeMap<String, RawPrice>,
    /// Prompt files read, for the config version and the reload watcher.
    pub files: &'a mut Vec<(PathBuf, String)>,
}

pub(super) fn validate_experiments(
    raw: &BTreeMap<String, RawExperiment>,
    ctx: &mut Context<'_>,
    errors: &mut Errors,
) -> Vec<Experiment> {
    let mut experiments = Vec::with_capacity(raw.len());
    for (id, experiment) in raw {
        let before = errors.len();
        let path = super::location::child_path("experiments", id);
        if !is_label(id) {
            errors.push(&path, format!("the experiment id `{id}` {LABEL_RULE}"));
        }
        if ctx.exact_models.contains(id) {
            errors.push(
                &path,
                format!("the experiment id `{id}` is also a model name in [[routes]]; requests for it would be ambiguous"),
            );
        }
        let validated = validate_experiment(id, &path, experiment, ctx, errors);
        if errors.len() == before {
            experiments.extend(validated);
        }
    }
    experiments
}

fn validate_experiment(
    id: &str,
    path: &str,
    raw: &RawExperiment,
    ctx: &mut Context<'_>,
    errors: &mut Errors,
) -> Option<Experiment> {
    let unit_key = validate_unit_key(&format!("{path}.unit_key"), &raw.unit_key, errors);
    let enrolment_percent = raw.enrolment_percent.unwrap_or(100.0);
    if !(0.0..=100.0).contains(&enrolment_percent) {
        errors.push(
            format!("{path}.enrolment_percent"),
            format!("{enrolment_percent} is not between 0 and 100"),
        );
    }

    let mut variants = Vec::with_capacity(raw.variants.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    if raw.variants.is_empty() {
        errors.push(
            format!("{path}.variants"),
            "an experiment needs at least one variant",
        );
    }
    for (index, variant) in raw.variants.iter().enumerate() {
        let vpath = format!("{path}.variants[{index}]");
        if !is_label(&variant.name) {
            errors.push(
                format!("{vpath}.name"),
                format!("`{}` {LABEL_RULE}", variant.name),
            );
        } else if let Some(first) = names.insert(variant.name.as_str(), index) {
            errors.push(
                format!("{vpath}.name"),
                format!(
                    "duplicate variant name `{}` (also {path}.variants[{first}])",
                    variant.name
                ),
            );
        }
        variants.extend(validate_variant(&vpath, variant, ctx, errors));
    }
    let weights: Vec<f64> = raw.variants.iter().map(|v| v.weight).collect();
    if !weights.is_empty() && weights.iter().all(|w| w.is_finite() && *w == 0.0) {
        errors.push(
            format!("{path}.variants"),
            "every weight is 0: at least one variant needs a positive weight",
        );
    }

    let find = |field: &str, name: &Option<String>, errors: &mut Errors| -> Option<Option<usize>> {
        match name {
            None => Some(None),
            Some(name) => match names.get(name.as_str()) {
                Some(&i) => Some(Some(i)),
                None => {
                    errors.push(format!("{path}.{field}"), unknown_variant(name, &names));
                    None
                }
            },
        }
    };
    // All three are looked up before giving up, so every wrong name is reported.
    let default_variant = find("default_variant", &raw.default_variant, errors);
    let fallback_variant = find("fallback_variant", &raw.fallback_variant, errors);
    let killswitch = find("killswitch", &raw.killswitch, errors);

    let mut rules = Vec::with_capacity(raw.rules.len());
    let mut rule_names = HashSet::new();
    for (index, rule) in raw.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{index}]");
        if !is_label(&rule.name) {
            errors.push(
                format!("{rpath}.name"),
                format!("`{}` {LABEL_RULE}", rule.name),
            );
        } else if !rule_names.insert(rule.name.as_str()) {
            errors.push(
                format!("{rpath}.name"),
                format!("duplicate rule name `{}`", rule.name),
            );
        }
        let variant = match names.get(rule.variant.as_str()) {
            Some(&i) => Some(i),
            None => {
                errors.push(
                    format!("{rpath}.variant"),
                    unknown_variant(&rule.variant, &names),
                );
                None
            }
        };
        let attribute = parse_attribute(&format!("{rpath}.attribute"), &rule.attribute, errors);
        let matcher = match (&rule.equals, &rule.one_of, &rule.prefix) {
            (Some(v), None, None) => Some(Matcher::Equals(v.clone())),
            (None, Some(list), None) if !list.is_empty() => Some(Matcher::OneOf(list.clone())),
            (None, None, Some(p)) => Some(Matcher::Prefix(p.clone())),
            _ => {
                errors.push(
                    &rpath,
                    "set exactly one of `equals`, `in` (a non-empty list) or `prefix`",
                );
                None
            }
        };
        if let (Some(variant), Some(attribute), Some(matcher)) = (variant, attribute, matcher) {
            rules.push(FlagRule {
                name: rule.name.as_str().into(),
                variant,
                attribute,
                matcher,
            });
        }
    }

    let overrides = if raw.override_clients.iter().any(|c| c == "*") {
        OverridePolicy::Everyone
    } else if raw.override_clients.is_empty() {
        OverridePolicy::Nobody
    } else {
        OverridePolicy::Clients(
            raw.override_clients
                .iter()
                .map(|c| Arc::from(c.as_str()))
                .collect(),
        )
    };

    let shadow = match &raw.shadow {
        Some(shadow) => Some(super::validate_shadow::validate_shadow(
            &format!("{path}.shadow"),
            shadow,
            &names,
            &raw.variants,
            ctx.prices,
            errors,
        )?),
        None => None,
    };

    if variants.len() != raw.variants.len() {
        return None;
    }
    let (default_variant, fallback_variant, killswitch) = (
        default_variant?.unwrap_or(0),
        fallback_variant?,
        killswitch?,
    );
    Some(Experiment {
        id: id.into(),
        id_header: HeaderValue::from_str(id).ok(),
        enabled: raw.enabled,
        salt: raw.salt.as_deref().unwrap_or(id).into(),
        unit_key: unit_key?,
        enrolment_percent,
        default_variant,
        fallback_variant,
        killswitch,
        overrides,
        variants,
        rules,
        log_bodies: raw.log_bodies.unwrap_or(true),
        shadow,
    })
}

pub(super) fn unknown_variant(name: &str, names: &HashMap<&str, usize>) -> String {
    let mut known: Vec<&str> = names.keys().copied().collect();
    known.sort_unstable();
    format!("unknown variant `{name}` (variants: {})", known.join(", "))
}

fn validate_unit_key(path: &str, raw: &RawUnitKey, errors: &mut Errors) -> Option<UnitKeySource> {
    match (&raw.header, &raw.body, raw.client_id) {
        (Some(header), None, None | Some(false)) => {
            match HeaderName::try_from(header.to_ascii_lowercase()) {
                Ok(name) => Some(UnitKeySource::Header(name)),
                Err(_) => {
                    errors.push(
                        format!("{path}.header"),
                        format!("`{header}` is not a valid header name"),
                    );
                    None
                }
            }
        }
        (None, Some(field), None | Some(false)) => {
            let parts: Vec<String> = field.split('.').map(str::to_owned).collect();
            if parts.iter().any(String::is_empty) {
                errors.push(
                    format!("{path}.body"),
                    format!("`{field}` is not a dotted field path such as `metadata.user_id`"),
                );
                return None;
            }
            Some(UnitKeySource::BodyField(parts))
        }
        (None, None, Some(true)) => Some(UnitKeySource::ClientId),
        _ => {
            errors.push(
                path,
                "set exactly one of `header`, `body` or `client_id = true`",
            );
            None
        }
    }
}

fn parse_attribute(path: &str, text: &str, errors: &mut Errors) -> Option<Attribute> {
    let attribute = match text.split_once(':') {
        Some(("header", name)) => HeaderName::try_from(name.to_ascii_lowercase())
            .ok()
            .map(Attribute::Header),
        Some(("metadata", field)) if !field.is_empty() => {
            Some(Attribute::Metadata(field.to_owned()))
        }
        None if text == "client_id" => Some(Attribute::ClientId),
        None if text == "model" => Some(Attribute::Model),
        _ => None,
    };
    if attribute.is_none() {
        errors.push(
            path,
            format!(
                "`{text}` is not one of `header:<name>`, `client_id`, `model`, `metadata:<field>`"
            ),
        );
    }
    attribute
}

fn validate_variant(
    path: &str,
    raw: &RawVariant,
    ctx: &mut Context<'_>,
    errors: &mut Errors,
) -> Option<Variant> {
    let before = errors.len();
    if !raw.weight.is_finite() || raw.weight < 0.0 {
        errors.push(
            format!("{path}.weight"),
            format!("{} is not a finite number ≥ 0", raw.weight),
        );
    }
    if raw.model.trim().is_empty() {
        errors.push(format!("{path}.model"), "must not be empty");
    }
    if raw.providers.is_empty() {
        errors.push(
            format!("{path}.providers"),
            "must name at least one provider",
        );
    }
    let mut providers = Vec::with_capacity(raw.providers.len());
    for (p, name) in raw.providers.iter().enumerate() {
        match ctx.provider_ids.get(name.as_str()) {
            Some(&id) => providers.push(id),
            None if ctx.raw_providers.contains_key(name) => {}
            None => errors.push(
                format!("{path}.providers[{p}]"),
                format!("unknown provider `{name}`"),
            ),
        }
    }
    let system = load_template(path, "system", &raw.system, &raw.system_file, ctx, errors);
    let user = load_template(path, "user", &raw.user, &raw.user_file, ctx, errors);
    let messages = match raw.messages.unwrap_or(RawMessagesMode::Keep) {
        RawMessagesMode::Keep => MessagesMode::Keep,
        RawMessagesMode::Prepend => MessagesMode::Prepend,
        RawMessagesMode::Replace => MessagesMode::Replace,
    };
    match (&user, messages) {
        (Some(Some(_)), MessagesMode::Keep) => errors.push(
            format!("{path}.messages"),
            "a `user` template needs `messages = \"prepend\"` or `\"replace\"` (\"keep\" sends the caller's messages unchanged)",
        ),
        (Some(None), MessagesMode::Prepend | MessagesMode::Replace) => errors.push(
            format!("{path}.user"),
            format!("`messages = \"{}\"` needs a `user` template", if messages == MessagesMode::Prepend { "prepend" } else { "replace" }),
        ),
        _ => {}
    }
    for key in raw.params.keys() {
        if RESERVED_PARAMS.contains(&key.as_str()) {
            errors.push(
                format!("{path}.params.{key}"),
                format!("`{key}` is set by the gateway, not by params"),
            );
        }
    }
    if errors.len() > before {
        return None;
    }
    let (system, user) = (system?, user?);
    let params: Map<String, Value> = raw
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let version = raw
        .version
        .clone()
        .unwrap_or_else(|| definition_hash(raw, &system, &user));
    Some(Variant {
        name: raw.name.as_str().into(),
        name_header: HeaderValue::from_str(&raw.name).ok(),
        weight: raw.weight,
        version: version.into(),
        route: RouteConfig {
            patterns: Vec::<ModelPattern>::new(),
            upstream_model: Some(raw.model.as_str().into()),
            providers,
        },
        system: system.map(|(t, _)| t),
        user: user.map(|(t, _)| t),
        messages,
        params,
    })
}

/// `Some(Some((template, text)))` when set, `Some(None)` when absent, `None`
/// when an error was recorded.
#[allow(clippy::type_complexity)]
fn load_template(
    path: &str,
    field: &str,
    inline: &Option<String>,
    file: &Option<String>,
    ctx: &mut Context<'_>,
    errors: &mut Errors,
) -> Option<Option<(Template, String)>> {
    let (text, field_path) = match (inline, file) {
        (Some(_), Some(_)) => {
            errors.push(
                format!("{path}.{field}_file"),
                format!("set either `{field}` or `{field}_file`, not both"),
            );
            return None;
        }
        (Some(text), None) => (text.clone(), format!("{path}.{field}")),
        (None, Some(file)) => match (ctx.env.read_prompt)(file) {
            Ok((identity, text)) => {
                ctx.files.push((identity, text.clone()));
                (text, format!("{path}.{field}_file"))
            }
            Err(message) => {
                errors.push(format!("{path}.{field}_file"), message);
                return None;
            }
        },
        (None, None) => return Some(None),
    };
    match Template::parse(&text) {
        Ok(template) => Some(Some((template, text))),
        Err(err) => {
            errors.push(field_path, format!("invalid template: {err}"));
            None
        }
    }
}

/// A default version label that changes whenever what the variant sends changes.
fn definition_hash(
    raw: &RawVariant,
    system: &Option<(Template, String)>,
    user: &Option<(Template, String)>,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        raw.model.as_str(),
        system.as_ref().map_or("", |(_, t)| t.as_str()),
        user.as_ref().map_or("", |(_, t)| t.as_str()),
        &format!("{:?}", raw.messages),
        &serde_json::to_string(&raw.params).unwrap_or_default(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    format!("h-{}", hex::encode(&hasher.finalize()[..4]))
}
