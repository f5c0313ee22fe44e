//! The clients part of `GET /admin/config`: who may call what, and with
//! which keys, so that an operator can follow a rotation. A key is shown by a
//! short fingerprint of its digest and its expiry; the key itself is never
//! known to the gateway, and the full digest is not shown either.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use promptgate_core::config::{AuthConfig, Permissions};
use promptgate_log::time::UtcTime;

/// Hex characters of a digest shown: enough to tell keys apart.
const FINGERPRINT_CHARS: usize = 12;

pub(super) fn clients_view(auth: &AuthConfig, now: SystemTime) -> Value {
    let AuthConfig::Keys(keys) = auth else {
        return json!({"mode": "open"});
    };
    let mut clients: BTreeMap<&str, (Vec<Value>, &Permissions)> = BTreeMap::new();
    for key in keys {
        let fingerprint = hex::encode(key.sha256);
        let entry = clients
            .entry(&key.id)
            .or_insert_with(|| (Vec::new(), &key.permissions));
        entry.0.push(json!({
            "sha256_prefix": &fingerprint[..FINGERPRINT_CHARS],
            "not_after": key.not_after.map(|t| UtcTime::from_system(t).rfc3339_millis()),
            "expired": key.not_after.is_some_and(|t| now > t),
        }));
    }
    let clients: Vec<Value> = clients
        .into_iter()
        .map(|(id, (keys, permissions))| {
            json!({
                "id": id,
                "keys": keys,
                "allow": {
                    "endpoints": permissions.endpoints.as_ref().map(|e| e.iter().map(|e| e.label()).collect::<Vec<_>>()),
                    "models": permissions.models,
                    "experiments": permissions.experiments,
                },
            })
        })
        .collect();
    json!({"mode": "keys", "clients": clients})
}
