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
            Some(auth @ AuthConfig::Keys { .. }) if !auth.declares(client) => errors.push(
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::validate::Environment;
    use super::super::{Config, Problem, parse};
    use super::*;

    const CLIENTS: &str = "[[auth.clients]]\nid = \"app\"\nkey_sha256 = \"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\"\n[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n";

    fn parse_config(source: &str) -> Result<Config, Vec<Problem>> {
        parse(
            source,
            &Environment {
                base_dir: Path::new("/nonexistent"),
                listen_override: None,
                admin_listen_override: None,
                read_env: &|_| None,
                read_prompt: &|name| {
                    crate::config::read_local_prompt(Path::new("/nonexistent"), name)
                },
            },
        )
    }

    fn problems(source: &str) -> Vec<(String, String)> {
        parse_config(source)
            .expect_err("config should be invalid")
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    #[test]
    fn a_declared_clients_limits_are_read() {
        let config = parse_config(&format!(
            "{CLIENTS}[limits.app]\nrequests_per_minute = 60\ntokens_per_minute = 1000\n"
        ))
        .unwrap();
        let limits = config.limits["app"];
        assert_eq!(limits.requests_per_minute.map(NonZeroU32::get), Some(60));
        assert_eq!(limits.tokens_per_minute.map(NonZeroU64::get), Some(1000));
        assert_eq!(limits.usd_per_day, None);
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let found = problems(&format!(
            "{CLIENTS}[limits.app]\nrequests_per_minute = 0\ntokens_per_minute = 0\nusd_per_day = -1.0\n[limits.ghost]\n"
        ));
        let expected = [
            ("limits.app.requests_per_minute", "must be at least 1"),
            ("limits.app.tokens_per_minute", "must be at least 1"),
            ("limits.app.usd_per_day", "-1 is not a positive amount"),
            (
                "limits.ghost",
                "no client `ghost` is declared under [[auth.clients]]",
            ),
            (
                "limits.ghost",
                "set at least one of requests_per_minute, tokens_per_minute, usd_per_day",
            ),
        ];
        for (path, message) in expected {
            assert!(
                found.iter().any(|(p, m)| p == path && m == message),
                "{path}: {message} not in {found:?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:?}");
    }

    #[test]
    fn usd_needs_prices_and_open_mode_has_no_clients_to_limit() {
        let found = problems(&format!("{CLIENTS}[limits.app]\nusd_per_day = 5.0\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "limits.app.usd_per_day");
        let open = "[auth]\nopen = true\n[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n[limits.app]\nrequests_per_minute = 1\n";
        let found = problems(open);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].1.contains("auth.open"), "{found:?}");
    }
}
