//! The client certificate's names, carried from the connection to each of
//! its requests as a request extension, where authentication maps them to a
//! client (`auth.clients[].certificate_names`).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use x509_parser::extensions::GeneralName;

/// The names of a verified client certificate: its subject CN, then its
/// DNS and URI subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    names: Vec<String>,
}

impl PeerIdentity {
    /// Read once per connection. A certificate the verifier accepted but that
    /// this parser cannot read has no names (and so maps to no client).
    pub fn of_certificate(der: &[u8]) -> PeerIdentity {
        let mut names = Vec::new();
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_owned),
            );
            if let Ok(Some(sans)) = cert.subject_alternative_name() {
                names.extend(
                    sans.value
                        .general_names
                        .iter()
                        .filter_map(|name| match name {
                            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                            GeneralName::URI(uri) => Some((*uri).to_owned()),
                            _ => None,
                        }),
                );
            }
        }
        PeerIdentity { names }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// Puts the connection's peer identity into every request's extensions.
/// Only TLS connections are wrapped: the plain-HTTP path is unchanged.
#[derive(Clone)]
pub struct WithPeer<S> {
    inner: S,
    peer: Option<Arc<PeerIdentity>>,
}

impl<S> WithPeer<S> {
    pub fn new(inner: S, peer: Option<Arc<PeerIdentity>>) -> WithPeer<S> {
        WithPeer { inner, peer }
    }
}

impl<S, B> tower::Service<Request<B>> for WithPeer<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        self.inner.call(request)
    }
}
