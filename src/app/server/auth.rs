//! Client authentication: the caller's key is hashed and compared in constant
//! time with every declared digest, so neither a match nor its position leaks
//! through timing.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use promptgate_core::config::AuthConfig;
use promptgate_core::error::GatewayError;

use crate::tls::PeerIdentity;

/// The key as SDKs send it: `Authorization: Bearer …` (OpenAI, recent Anthropic
/// SDKs) or `x-api-key` (Anthropic SDKs, curl examples).
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

/// The id of the authenticated client, or `None` in open mode.
pub fn authenticate(
    auth: &AuthConfig,
    headers: &HeaderMap,
) -> Result<Option<Arc<str>>, GatewayError> {
    let keys = match auth {
        AuthConfig::Open => return Ok(None),
        AuthConfig::Keys(keys) => keys,
    };
    let presented = presented_key(headers).ok_or(GatewayError::MissingKey)?;
    let digest: [u8; 32] = Sha256::digest(presented).into();
    let mut found: Option<&Arc<str>> = None;
    for key in keys {
        let matched: Choice = key.sha256.ct_eq(&digest);
        // Every key is compared; the branch below only picks the result.
        if bool::from(matched) {
            found = Some(&key.id);
        }
    }
    found.cloned().map(Some).ok_or(GatewayError::InvalidKey)
}

/// The client of a request that may come with a verified client certificate
/// (`peer`, mutual TLS). A certificate whose names map to a client (the first
/// of its names that does) is that client without a key; a key sent as well
/// must be that same client's, or the request is refused (401). Without a
/// mapped certificate, the key decides as in [`authenticate`].
pub fn authenticate_peer(
    auth: &AuthConfig,
    clients_by_certificate_name: &HashMap<String, Arc<str>>,
    headers: &HeaderMap,
    peer: Option<&PeerIdentity>,
) -> Result<Option<Arc<str>>, GatewayError> {
    let by_certificate = peer.and_then(|peer| {
        peer.names()
            .find_map(|name| clients_by_certificate_name.get(name))
    });
    let Some(certified) = by_certificate else {
        return authenticate(auth, headers);
    };
    if presented_key(headers).is_none() {
        return Ok(Some(certified.clone()));
    }
    match authenticate(auth, headers)? {
        Some(by_key) if by_key == *certified => Ok(Some(by_key)),
        _ => Err(GatewayError::InvalidKey),
    }
}

/// Hex SHA-256 of a client key, as written in `auth.clients[].key_sha256`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use promptgate_core::config::ClientKey;

    fn keys() -> AuthConfig {
        let mut a = [0u8; 32];
        hex::decode_to_slice(hash_key("pg-alpha"), &mut a).unwrap();
        let mut b = [0u8; 32];
        hex::decode_to_slice(hash_key("pg-beta"), &mut b).unwrap();
        AuthConfig::Keys(vec![
            ClientKey {
                id: "alpha".into(),
                sha256: a,
            },
            ClientKey {
                id: "beta".into(),
                sha256: b,
            },
        ])
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
            authenticate(&auth, &headers("authorization", "Bearer pg-beta"))
                .unwrap()
                .as_deref(),
            Some("beta")
        );
        assert_eq!(
            authenticate(&auth, &headers("authorization", "bearer pg-alpha"))
                .unwrap()
                .as_deref(),
            Some("alpha")
        );
        assert_eq!(
            authenticate(&auth, &headers("x-api-key", "pg-alpha"))
                .unwrap()
                .as_deref(),
            Some("alpha")
        );
    }

    #[test]
    fn wrong_or_missing_keys_are_refused() {
        let auth = keys();
        assert!(matches!(
            authenticate(&auth, &HeaderMap::new()),
            Err(GatewayError::MissingKey)
        ));
        assert!(matches!(
            authenticate(&auth, &headers("x-api-key", "pg-gamma")),
            Err(GatewayError::InvalidKey)
        ));
        assert!(matches!(
            authenticate(&auth, &headers("authorization", "Basic cGc=")),
            Err(GatewayError::MissingKey)
        ));
    }

    #[test]
    fn open_mode_accepts_anyone_without_an_id() {
        assert_eq!(
            authenticate(&AuthConfig::Open, &HeaderMap::new()).unwrap(),
            None
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
