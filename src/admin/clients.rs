//! The clients part of `GET /admin/config`: who may call what, and with
//! which keys, so that an operator can follow a rotation. A key is shown by a
//! short fingerprint of its digest and its expiry; the key itself is never
//! known to the gateway, and the full digest is not shown either.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use promptgate_core::config::{AuthConfig, Permissions};
use promptgate_log::time::UtcTime;

/// What the view shows of one client.
struct Client<'a> {
    keys: Vec<Value>,
    certificate_names: Vec<&'a str>,
    permissions: &'a Permissions,
}

impl<'a> Client<'a> {
    fn new(permissions: &'a Permissions) -> Client<'a> {
        Client {
            keys: Vec::new(),
            certificate_names: Vec::new(),
            permissions,
        }
    }
}

/// Hex characters of a digest shown: enough to tell keys apart.
const FINGERPRINT_CHARS: usize = 12;

pub(super) fn clients_view(auth: &AuthConfig, now: SystemTime) -> Value {
    let AuthConfig::Keys {
        keys,
        by_certificate_name,
    } = auth
    else {
        return json!({"mode": "open"});
    };
    let mut clients: BTreeMap<&str, Client<'_>> = BTreeMap::new();
    for (name, client) in by_certificate_name {
        clients
            .entry(&client.id)
            .or_insert_with(|| Client::new(&client.permissions))
            .certificate_names
            .push(name);
    }
    for key in keys {
        let fingerprint = hex::encode(key.sha256);
        let entry = clients
            .entry(&key.id)
            .or_insert_with(|| Client::new(&key.permissions));
        entry.keys.push(json!({
            "sha256_prefix": &fingerprint[..FINGERPRINT_CHARS],
            "not_after": key.not_after.map(|t| UtcTime::from_system(t).rfc3339_millis()),
            "expired": key.not_after.is_some_and(|t| now > t),
        }));
    }
    let clients: Vec<Value> = clients
        .into_iter()
        .map(|(id, mut client)| {
            client.certificate_names.sort_unstable();
            let permissions = client.permissions;
            json!({
                "id": id,
                "keys": client.keys,
                "certificate_names": client.certificate_names,
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
