//! Client authentication: the caller's key is hashed and compared in constant
//! time with every declared digest (every key of every client, rotated ones
//! included), so neither a match nor its position leaks through timing. What
//! it establishes — the `Caller` — travels to the phases as a request
//! extension (`auth_layer.rs`).

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use promptgate_core::config::{AuthConfig, ClientKey, Permissions};
use promptgate_core::error::GatewayError;

use crate::tls::PeerIdentity;

/// The permissions of a caller in open mode or of a client without `allow`.
static UNRESTRICTED: Permissions = Permissions::UNRESTRICTED;

/// Who a request is from, as authentication established it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `None` in open mode.
    pub client_id: Option<Arc<str>>,
    /// `None`: unrestricted.
    permissions: Option<Arc<Permissions>>,
}

impl Caller {
    pub fn permissions(&self) -> &Permissions {
        self.permissions.as_deref().unwrap_or(&UNRESTRICTED)
    }
}

/// Why a caller was not authenticated: a fixed label for metrics, never
/// anything of the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Unknown,
    Expired,
    /// A verified client certificate names one client, the key another.
    CertificateMismatch,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Unknown => "unknown",
            AuthFailure::Expired => "expired",
            AuthFailure::CertificateMismatch => "certificate_mismatch",
        }
    }
}

impl From<AuthFailure> for GatewayError {
    fn from(failure: AuthFailure) -> GatewayError {
        match failure {
            AuthFailure::Missing => GatewayError::MissingKey,
            AuthFailure::Unknown | AuthFailure::CertificateMismatch => GatewayError::InvalidKey,
            AuthFailure::Expired => GatewayError::ExpiredKey,
        }
    }
}

/// The key as SDKs send it: `Authorization: Bearer …` (OpenAI, recent
/// Anthropic SDKs) or `x-api-key` (Anthropic SDKs, curl examples).
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        if bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(bytes[7..].trim_ascii());
        }
    }
    headers
        .get("x-api-key")
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|k| !k.is_empty())
}

/// The caller of a request at `now`; in open mode an anonymous one. A client
/// proves who it is with a key, or with a verified client certificate
/// (`peer`, mutual TLS) one of whose names is among its `certificate_names`
/// (the first that is). A key sent beside such a certificate must be that
/// same client's.
pub fn authenticate(
    auth: &AuthConfig,
    headers: &HeaderMap,
    peer: Option<&PeerIdentity>,
    now: SystemTime,
) -> Result<Caller, AuthFailure> {
    let AuthConfig::Keys {
        keys,
        by_certificate_name,
    } = auth
    else {
        return Ok(Caller::default());
    };
    let certified =
        peer.and_then(|peer| peer.names().find_map(|name| by_certificate_name.get(name)));
    match (certified, presented_key(headers)) {
        (None, None) => Err(AuthFailure::Missing),
        (None, Some(key)) => by_key(keys, key, now),
        (Some(client), None) => Ok(Caller {
            client_id: Some(client.id.clone()),
            permissions: Some(client.permissions.clone()),
        }),
        (Some(client), Some(key)) => {
            let caller = by_key(keys, key, now)?;
            if caller.client_id.as_deref() == Some(&*client.id) {
                Ok(caller)
            } else {
                Err(AuthFailure::CertificateMismatch)
            }
        }
    }
}

fn by_key(keys: &[ClientKey], presented: &[u8], now: SystemTime) -> Result<Caller, AuthFailure> {
    let digest: [u8; 32] = Sha256::digest(presented).into();
    // Every key is compared and the match is selected without a branch; a
    // digest belongs to one client (validation), so at most one matches.
    let mut found = u32::MAX;
    for (index, key) in keys.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        found.conditional_assign(&index, key.sha256.ct_eq(&digest));
    }
    let key = keys
        .get(usize::try_from(found).unwrap_or(usize::MAX))
        .ok_or(AuthFailure::Unknown)?;
    if key.not_after.is_some_and(|not_after| now > not_after) {
        return Err(AuthFailure::Expired);
    }
    Ok(Caller {
        client_id: Some(key.id.clone()),
        permissions: Some(key.permissions.clone()),
    })
}

/// Hex SHA-256 of a client key, as written in `auth.clients[].key_sha256`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::collections::HashMap;
    use std::time::Duration;

    fn key(id: &str, secret: &str, not_after: Option<SystemTime>) -> ClientKey {
        ClientKey {
            id: id.into(),
            sha256: Sha256::digest(secret.as_bytes()).into(),
            not_after,
            permissions: Arc::new(Permissions::UNRESTRICTED),
        }
    }

    fn keys() -> AuthConfig {
        AuthConfig::Keys {
            keys: vec![key("alpha", "pg-alpha", None), key("beta", "pg-beta", None)],
            by_certificate_name: HashMap::new(),
        }
    }

    fn client_of(auth: &AuthConfig, headers: &HeaderMap) -> Result<Option<Arc<str>>, AuthFailure> {
        authenticate(auth, headers, None, SystemTime::now()).map(|caller| caller.client_id)
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn bearer_and_x_api_key_both_work() {
        let auth = keys();
        assert_eq!(
            client_of(&auth, &headers("authorization", "Bearer pg-beta"))
                .unwrap()
                .as_deref(),
            Some("beta")
        );
        assert_eq!(
            client_of(&auth, &headers("authorization", "bearer pg-alpha"))
                .unwrap()
                .as_deref(),
            Some("alpha")
        );
        assert_eq!(
            client_of(&auth, &headers("x-api-key", "pg-alpha"))
                .unwrap()
                .as_deref(),
            Some("alpha")
        );
    }

    #[test]
    fn wrong_or_missing_keys_are_refused() {
        let auth = keys();
        assert!(matches!(
            client_of(&auth, &HeaderMap::new()),
            Err(AuthFailure::Missing)
        ));
        assert!(matches!(
            client_of(&auth, &headers("x-api-key", "pg-gamma")),
            Err(AuthFailure::Unknown)
        ));
        assert!(matches!(
            client_of(&auth, &headers("authorization", "Basic cGc=")),
            Err(AuthFailure::Missing)
        ));
    }

    #[test]
    fn open_mode_accepts_anyone_without_an_id() {
        assert_eq!(
            client_of(&AuthConfig::Open, &HeaderMap::new()).unwrap(),
            None
        );
    }

    #[test]
    fn rotated_keys_both_work_until_the_old_one_expires() {
        let now = SystemTime::now();
        let auth = AuthConfig::Keys {
            keys: vec![
                key("alpha", "pg-old", Some(now + Duration::from_secs(60))),
                key("alpha", "pg-new", None),
                key("beta", "pg-gone", Some(now - Duration::from_secs(1))),
            ],
            by_certificate_name: HashMap::new(),
        };
        for secret in ["pg-old", "pg-new"] {
            let mut headers = HeaderMap::new();
            headers.insert("x-api-key", HeaderValue::from_str(secret).unwrap());
            assert_eq!(
                client_of(&auth, &headers).unwrap().as_deref(),
                Some("alpha")
            );
        }
        let mut old = HeaderMap::new();
        old.insert("x-api-key", HeaderValue::from_static("pg-old"));
        assert_eq!(
            authenticate(&auth, &old, None, now + Duration::from_secs(61)).map(|c| c.client_id),
            Err(AuthFailure::Expired)
        );
        assert_eq!(
            client_of(&auth, &headers("x-api-key", "pg-gone")),
            Err(AuthFailure::Expired)
        );
    }

    #[test]
    fn hash_matches_sha256sum() {
        // printf 'pg-alpha' | sha256sum
        assert_eq!(
            hash_key("pg-alpha"),
            hex::encode(Sha256::digest(b"pg-alpha"))
        );
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
