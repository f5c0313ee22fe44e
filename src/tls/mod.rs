//! HTTPS on the client and admin listeners. One `TlsListener` per listener:
//! TLS 1.2 and 1.3 only, ring's default cipher suites (all AEAD with ECDHE
//! key exchange: AES-GCM and ChaCha20-Poly1305; no CBC, no RSA key
//! exchange), HTTP/1.1 by ALPN, and a certificate that `certificate.rs`
//! re-reads when its files change. With a client CA (client listener only),
//! a client certificate is verified and its names travel with every request
//! of the connection (`peer.rs`).
//!
//! HTTP/2 is not offered: the listeners serve HTTP/1.1 only (hyper's `http1`
//! builder, no `h2` crate in the build) and the official SDKs speak HTTP/1.1.

mod certificate;
mod peer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use promptgate_core::config::TlsFiles;

pub use certificate::ReloadingCertificate;
pub use peer::{PeerIdentity, WithPeer};

/// A client gets this long to complete its handshake (slowloris guard, like
/// the request head's timeout).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a listener's TLS files cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Pem { path: PathBuf, problem: String },
    #[error("{}: no certificate in the file (expected PEM `BEGIN CERTIFICATE` blocks)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} does not fit {}: {source}", key.display(), cert.display())]
    Key {
        key: PathBuf,
        cert: PathBuf,
        source: rustls::Error,
    },
    #[error("{}: {source}", path.display())]
    ClientCa {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("TLS settings: {0}")]
    Settings(rustls::Error),
}

/// Which listener, for logs and the metric's `listener` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerName {
    Client,
    Admin,
}

impl ListenerName {
    pub fn label(self) -> &'static str {
        match self {
            ListenerName::Client => "client",
            ListenerName::Admin => "admin",
        }
    }
}

/// A listener's TLS side: the acceptor and the certificate it serves.
pub struct TlsListener {
    acceptor: TlsAcceptor,
    certificate: Arc<ReloadingCertificate>,
    /// Client certificates are verified (and their names kept).
    mutual: bool,
}

impl TlsListener {
    /// Reads and checks every file: a start-up error names the bad one.
    pub fn load(files: &TlsFiles, name: ListenerName) -> Result<TlsListener, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificate = Arc::new(ReloadingCertificate::load(files, name, &provider)?);
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Settings)?;
        let builder = match &files.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(client_verifier(
                ca,
                files.require_client_cert,
                provider,
            )?),
        };
        let mut config = builder.with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsListener {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
            mutual: files.client_ca_file.is_some(),
        })
    }

    /// The certificate, for the task that reloads it.
    pub fn certificate(&self) -> Arc<ReloadingCertificate> {
        self.certificate.clone()
    }

    /// The handshake, bounded in time, and the verified client certificate's
    /// names. `None`: the handshake failed (logged at debug: a port scan or a
    /// plain-HTTP client is not the operator's problem).
    pub async fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<(TlsStream<TcpStream>, Option<Arc<PeerIdentity>>)> {
        let stream =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            };
        let identity = if self.mutual {
            stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Arc::new(PeerIdentity::of_certificate(leaf)))
        } else {
            None
        };
        Some((stream, identity))
    }
}

fn client_verifier(
    ca: &Path,
    required: bool,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let bytes = certificate::read(ca)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|error| TlsError::Pem {
            path: ca.to_owned(),
            problem: error.to_string(),
        })?;
        roots.add(cert).map_err(|error| TlsError::Pem {
            path: ca.to_owned(),
            problem: format!("not a usable CA certificate: {error}"),
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|source| TlsError::ClientCa {
        path: ca.to_owned(),
        source,
    })
}
