//! `[server.tls]`, `[admin.tls]` and the clients' `certificate_names`. The
//! files are only checked to exist here: the gateway parses them at start-up
//! (an error naming the file) and on every change.

use std::collections::HashMap;
use std::sync::Arc;

use super::model::{CertifiedClient, TlsFiles};
use super::permissions::Permissions;
use super::raw::{RawClient, RawTls};
use super::validate::{Environment, Errors};

/// Which listener a `[*.tls]` table configures: only the client listener
/// verifies client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listener {
    Client,
    Admin,
}

/// `None` when the table is absent or an error was recorded.
pub(super) fn validate_tls(
    section: &str,
    raw: Option<&RawTls>,
    listener: Listener,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<TlsFiles> {
    let raw = raw?;
    let before = errors.len();
    let mut file = |field: &str, value: Option<&str>, required: bool| {
        let path = format!("{section}.{field}");
        match value {
            None if required => {
                errors.push(path, "is required in a TLS table (a PEM file)");
                None
            }
            None => None,
            Some(text) => {
                let resolved = env.base_dir.join(text);
                if !resolved.is_file() {
                    errors.push(
                        path,
                        format!("cannot read {}: not a file", resolved.display()),
                    );
                }
                Some(resolved)
            }
        }
    };
    let cert_file = file("cert_file", raw.cert_file.as_deref(), true);
    let key_file = file("key_file", raw.key_file.as_deref(), true);
    let client_ca_file = file("client_ca_file", raw.client_ca_file.as_deref(), false);
    if listener == Listener::Admin && client_ca_file.is_some() {
        errors.push(
            format!("{section}.client_ca_file"),
            "mutual TLS is only offered on the client listener ([server.tls])",
        );
    }
    if raw.require_client_cert && client_ca_file.is_none() {
        errors.push(
            format!("{section}.require_client_cert"),
            "needs client_ca_file (the CA that client certificates chain to)",
        );
    }
    if errors.len() != before {
        return None;
    }
    Some(TlsFiles {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file,
        require_client_cert: raw.require_client_cert,
    })
}

/// The client of each certificate name. A name may belong to one client only,
/// and names are only usable when client certificates are verified.
pub(super) fn certified_clients(
    clients: &[RawClient],
    server_tls: Option<&RawTls>,
    permissions: &[Arc<Permissions>],
    errors: &mut Errors,
) -> HashMap<String, CertifiedClient> {
    let mut names: HashMap<String, CertifiedClient> = HashMap::new();
    let mut first_owner: HashMap<&str, usize> = HashMap::new();
    let verifies_clients = server_tls.is_some_and(|tls| tls.client_ca_file.is_some());
    // `permissions[i]` is `clients[i]`'s.
    for (index, (client, permissions)) in clients.iter().zip(permissions).enumerate() {
        let path = format!("auth.clients[{index}].certificate_names");
        if !client.certificate_names.is_empty() && !verifies_clients {
            errors.push(
                &path,
                "certificate names need mutual TLS: set server.tls.client_ca_file",
            );
        }
        let certified = CertifiedClient {
            id: client.id.as_str().into(),
            permissions: permissions.clone(),
        };
        for name in &client.certificate_names {
            if name.trim().is_empty() {
                errors.push(&path, "a certificate name must not be empty");
            } else if let Some(&owner) = first_owner.get(name.as_str()) {
                errors.push(
                    &path,
                    format!("`{name}` is already a certificate name of auth.clients[{owner}]"),
                );
            } else {
                first_owner.insert(name, index);
                names.insert(name.clone(), certified.clone());
            }
        }
    }
    names
}
