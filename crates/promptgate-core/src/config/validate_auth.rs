//! Validation of `[auth]`: client ids, their keys (the single `key_sha256`
//! forms and `[[auth.clients.keys]]` for rotation, with `not_after`), their
//! allow-lists, and `[feedback] trusted_clients` against the declared ids.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::feedback::JUDGE_CLIENT_ID;
use super::model::{AuthConfig, ClientKey};
use super::permissions::{Permissions, endpoint_named};
use super::raw::{RawAllow, RawAuth, RawClient, RawFeedback, RawTls};
use super::validate::{Environment, Errors, read_secret};
use super::validate_tls::certified_clients;

pub(super) fn validate_auth(
    raw: &RawAuth,
    listen: Option<SocketAddr>,
    server_tls: Option<&RawTls>,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<AuthConfig> {
    if raw.open {
        if !raw.clients.is_empty() {
            errors.push(
                "auth.clients",
                "client keys are ignored when `auth.open = true`: remove one of the two",
            );
        }
        return match listen {
            Some(addr) if addr.ip().is_loopback() => Some(AuthConfig::Open),
            Some(addr) => {
                errors.push(
                    "auth.open",
                    format!(
                        "open mode is only allowed on a loopback address, but the gateway listens on {addr}; declare client keys under [[auth.clients]]"
                    ),
                );
                None
            }
            None => None,
        };
    }
    if raw.clients.is_empty() {
        errors.push(
            "auth.clients",
            "no client keys declared: add [[auth.clients]] entries, or set `auth.open = true` on a loopback listener",
        );
        return None;
    }
    let mut keys = Vec::with_capacity(raw.clients.len());
    let mut client_permissions = Vec::with_capacity(raw.clients.len());
    let mut seen = HashMap::new();
    // A digest names one client: the same key under two ids would make the
    // caller's identity depend on the order of the list.
    let mut digests: HashMap<[u8; 32], usize> = HashMap::new();
    for (index, client) in raw.clients.iter().enumerate() {
        let path = format!("auth.clients[{index}]");
        if client.id.trim().is_empty() {
            errors.push(format!("{path}.id"), "must not be empty");
        } else if client.id == JUDGE_CLIENT_ID {
            errors.push(
                format!("{path}.id"),
                format!("`{JUDGE_CLIENT_ID}` is reserved for the feedback of `promptgate judge`"),
            );
        } else if let Some(first) = seen.insert(client.id.as_str(), index) {
            errors.push(
                format!("{path}.id"),
                format!("`{}` is already the id of auth.clients[{first}]", client.id),
            );
        }
        let permissions = Arc::new(
            client
                .allow
                .as_ref()
                .map_or(Permissions::UNRESTRICTED, |allow| {
                    permissions(&path, allow, errors)
                }),
        );
        client_permissions.push(permissions.clone());
        for (field, digest, not_after) in client_keys(&path, client, env, errors) {
            let mut sha256 = [0u8; 32];
            if hex::decode_to_slice(digest.trim(), &mut sha256).is_err() {
                errors.push(
                    field,
                    "must be 64 hexadecimal characters (the SHA-256 of the key; see `promptgate hash-key`)",
                );
                continue;
            }
            match digests.insert(sha256, index) {
                Some(other) if other != index => errors.push(
                    &field,
                    format!("the same key is already a key of auth.clients[{other}]"),
                ),
                _ => {}
            }
            keys.push(ClientKey {
                id: client.id.as_str().into(),
                sha256,
                not_after,
                permissions: permissions.clone(),
            });
        }
    }
    let by_certificate_name =
        certified_clients(&raw.clients, server_tls, &client_permissions, errors);
    Some(AuthConfig::Keys {
        keys,
        by_certificate_name,
    })
}

/// `[feedback] trusted_clients` must name declared clients: a typo would
/// silently exclude the reporter's feedback.
pub(super) fn validate_trusted_clients(
    auth: &RawAuth,
    feedback: &RawFeedback,
    errors: &mut Errors,
) {
    for (index, id) in feedback.trusted_clients.iter().enumerate() {
        if !auth.open && !auth.clients.iter().any(|c| &c.id == id) {
            errors.push(
                format!("feedback.trusted_clients[{index}]"),
                format!("`{id}` is not the id of any [[auth.clients]] entry"),
            );
        }
    }
}

/// A client's keys as (field path, hex digest, expiry). Problems are
/// recorded; a client without any key is one.
fn client_keys(
    path: &str,
    client: &RawClient,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Vec<(String, String, Option<SystemTime>)> {
    let mut keys = Vec::new();
    let single = digest(
        path,
        ["key_sha256", "key_sha256_env", "key_sha256_file"],
        [
            client.key_sha256.as_deref(),
            client.key_sha256_env.as_deref(),
            client.key_sha256_file.as_deref(),
        ],
        env,
        errors,
    );
    match single {
        Some(Some((field, value))) => keys.push((format!("{path}.{field}"), value, None)),
        // A client with certificate names may authenticate by those alone
        // (mutual TLS).
        Some(None) if client.keys.is_empty() && client.certificate_names.is_empty() => errors.push(
            path,
            "no key digest: set key_sha256 (or key_sha256_env / key_sha256_file, or [[auth.clients.keys]], or certificate_names with mutual TLS)",
        ),
        _ => {}
    }
    for (position, key) in client.keys.iter().enumerate() {
        let key_path = format!("{path}.keys[{position}]");
        let not_after = key
            .not_after
            .as_deref()
            .and_then(|text| match parse_rfc3339(text) {
                Some(at) => Some(at),
                None => {
                    errors.push(
                        format!("{key_path}.not_after"),
                        format!(
                            "`{text}` is not an RFC 3339 time with an offset (e.g. 2027-01-31T00:00:00Z)"
                        ),
                    );
                    None
                }
            });
        match digest(
            &key_path,
            ["sha256", "sha256_env", "sha256_file"],
            [
                key.sha256.as_deref(),
                key.sha256_env.as_deref(),
                key.sha256_file.as_deref(),
            ],
            env,
            errors,
        ) {
            Some(Some((field, value))) => {
                keys.push((format!("{key_path}.{field}"), value, not_after));
            }
            Some(None) => errors.push(&key_path, "set one of sha256, sha256_env or sha256_file"),
            None => {}
        }
    }
    keys
}

/// One digest from its three forms (written, environment, file), with the
/// field it came from. `Some(None)`: none is set; `None`: an error was recorded.
fn digest(
    path: &str,
    [plain_field, env_field, file_field]: [&'static str; 3],
    [plain, env_var, file]: [Option<&str>; 3],
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<Option<(&'static str, String)>> {
    let elsewhere = read_secret(path, (env_field, env_var), (file_field, file), env, errors)?;
    match (plain, elsewhere) {
        (Some(_), Some(_)) => {
            errors.push(
                format!("{path}.{plain_field}"),
                format!("set one of {plain_field}, {env_field} or {file_field}"),
            );
            None
        }
        (Some(digest), None) => Some(Some((plain_field, digest.to_owned()))),
        (None, Some(digest)) if env_var.is_some() => Some(Some((env_field, digest))),
        (None, Some(digest)) => Some(Some((file_field, digest))),
        (None, None) => Some(None),
    }
}

fn permissions(path: &str, allow: &RawAllow, errors: &mut Errors) -> Permissions {
    let endpoints = allow.endpoints.as_ref().map(|labels| {
        labels
            .iter()
            .enumerate()
            .filter_map(|(position, label)| {
                let endpoint = endpoint_named(label);
                if endpoint.is_none() {
                    errors.push(
                        format!("{path}.allow.endpoints[{position}]"),
                        format!(
                            "no endpoint is named `{label}`; use chat_completions, completions, embeddings, responses, models, messages, count_tokens or feedback"
                        ),
                    );
                }
                endpoint
            })
            .collect()
    });
    Permissions {
        endpoints,
        models: allow.models.clone(),
        experiments: allow.experiments.clone(),
    }
}

/// An RFC 3339 date-time with an offset (`2027-01-31T00:00:00Z`,
/// `2027-01-31T02:00:00+02:00`) as a `SystemTime`; `None` for anything else,
/// including times before 1970.
pub(super) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let parsed: toml::value::Datetime = text.trim().parse().ok()?;
    let (date, time, offset) = (parsed.date?, parsed.time?, parsed.offset?);
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0))
        - offset_minutes * 60;
    let seconds = u64::try_from(seconds).ok()?;
    let nanos = u64::from(time.nanosecond.unwrap_or(0));
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds) + Duration::from_nanos(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n";
    const DIGEST_A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const DIGEST_B: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn problems(auth: &str) -> Vec<(String, String)> {
        let read_env = |_: &str| None;
        let source = format!("{ROUTES}{auth}");
        let env = Environment {
            base_dir: std::path::Path::new("/nonexistent"),
            listen_override: None,
            admin_listen_override: None,
            read_env: &read_env,
            read_prompt: &|name| {
                crate::config::read_local_prompt(std::path::Path::new("/nonexistent"), name)
            },
        };
        match super::super::parse(&source, &env) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| (p.path, p.message)).collect(),
        }
    }

    #[test]
    fn rotation_keys_allow_lists_and_trusted_reporters_are_checked() {
        let valid = format!(
            "[feedback]\ntrusted_clients = [\"a\"]\n[auth]\n[[auth.clients]]\nid = \"a\"\nkey_sha256 = \"{DIGEST_A}\"\n[[auth.clients.keys]]\nsha256 = \"{DIGEST_B}\"\nnot_after = \"2027-01-31T00:00:00Z\"\n[auth.clients.allow]\nendpoints = [\"chat_completions\"]\n"
        );
        assert_eq!(problems(&valid), Vec::new());
        let invalid = format!(
            "[feedback]\ntrusted_clients = [\"ghost\"]\n[auth]\n[[auth.clients]]\nid = \"a\"\n[[auth.clients.keys]]\nsha256 = \"{DIGEST_A}\"\nnot_after = \"next week\"\n[auth.clients.allow]\nendpoints = [\"chat\"]\n[[auth.clients]]\nid = \"b\"\nkey_sha256 = \"{DIGEST_A}\"\n[[auth.clients]]\nid = \"c\"\n"
        );
        let paths: Vec<String> = problems(&invalid)
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(
            paths,
            [
                "feedback.trusted_clients[0]",
                "auth.clients[0].keys[0].not_after",
                "auth.clients[0].allow.endpoints[0]",
                "auth.clients[1].key_sha256",
                "auth.clients[2]",
            ]
        );
    }

    #[test]
    fn the_judge_client_id_is_reserved() {
        let source = format!(
            "[auth]\n[[auth.clients]]\nid = \"{JUDGE_CLIENT_ID}\"\nkey_sha256 = \"{DIGEST_A}\"\n"
        );
        let found = problems(&source);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "auth.clients[0].id");
        assert!(found[0].1.contains("reserved"), "{found:?}");
    }

    #[test]
    fn rfc3339_times_become_unix_seconds() {
        let at = |text| {
            parse_rfc3339(text)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
        };
        // date -u -d 2027-01-31T00:00:00Z +%s
        assert_eq!(at("2027-01-31T00:00:00Z"), Some(1_801_353_600));
        assert_eq!(at("2027-01-31T02:00:00+02:00"), Some(1_801_353_600));
        assert_eq!(at("2000-02-29T12:30:15Z"), Some(951_827_415));
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(0));
        for refused in [
            "2027-01-31",
            "2027-01-31T00:00:00",
            "tomorrow",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(refused), None, "{refused}");
        }
    }
}
