//! The certificate a listener serves, re-read when its files change: a plain
//! rewrite, or Kubernetes' atomic swap of a Secret volume's `..data` symlink
//! (reading through the path follows whichever target is current). A change
//! that does not parse, or whose key does not fit its certificate, keeps the
//! previous certificate, logs a warning and counts
//! `promptgate_tls_certificate_reloads_total{outcome="failed"}`. Handshakes
//! in flight keep the certificate they started with.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{ListenerName, TlsError};
use crate::telemetry::metrics::Metrics;
use promptgate_core::config::TlsFiles;

pub struct ReloadingCertificate {
    files: TlsFiles,
    name: ListenerName,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<Seen>,
}

/// What the last poll read: a bad or unreadable file is reported once, not
/// at every poll.
struct Seen {
    /// SHA-256 of the certificate and key files last parsed, good or bad.
    digest: [u8; 32],
    unreadable: bool,
}

impl std::fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("cert_file", &self.files.cert_file)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    Unchanged,
    Reloaded,
    Failed,
}

impl ReloadingCertificate {
    pub(super) fn load(
        files: &TlsFiles,
        name: ListenerName,
        provider: &Arc<CryptoProvider>,
    ) -> Result<ReloadingCertificate, TlsError> {
        let (cert, key) = (read(&files.cert_file)?, read(&files.key_file)?);
        let certified = certified_key(files, &cert, &key, provider)?;
        Ok(ReloadingCertificate {
            files: files.clone(),
            name,
            provider: provider.clone(),
            current: ArcSwap::from_pointee(certified),
            seen: Mutex::new(Seen {
                digest: digest(&cert, &key),
                unreadable: false,
            }),
        })
    }

    /// Checks the files every `every` until `stop` turns true.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        metrics: Arc<Metrics>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => return,
            }
            let this = self.clone();
            // File reads and key parsing are blocking work.
            let outcome = match tokio::task::spawn_blocking(move || this.poll()).await {
                Ok(outcome) => outcome,
                Err(_) => Poll::Failed,
            };
            match outcome {
                Poll::Unchanged => {}
                Poll::Reloaded => metrics.tls_certificate_reload(self.name.label(), "ok"),
                Poll::Failed => metrics.tls_certificate_reload(self.name.label(), "failed"),
            }
        }
    }

    fn poll(&self) -> Poll {
        let files = read(&self.files.cert_file)
            .and_then(|cert| read(&self.files.key_file).map(|key| (cert, key)));
        let Ok(mut seen) = self.seen.lock() else {
            return Poll::Unchanged;
        };
        let (cert, key) = match files {
            Ok(files) => files,
            // Mid-swap or gone: reported once, retried at every poll.
            Err(error) if seen.unreadable => {
                tracing::debug!(%error, "TLS files still unreadable");
                return Poll::Unchanged;
            }
            Err(error) => {
                seen.unreadable = true;
                return self.failed(&error);
            }
        };
        seen.unreadable = false;
        let digest = digest(&cert, &key);
        if seen.digest == digest {
            return Poll::Unchanged;
        }
        seen.digest = digest;
        match certified_key(&self.files, &cert, &key, &self.provider) {
            Ok(certified) => {
                self.current.store(Arc::new(certified));
                tracing::info!(
                    listener = self.name.label(),
                    cert_file = %self.files.cert_file.display(),
                    "TLS certificate reloaded"
                );
                Poll::Reloaded
            }
            Err(error) => self.failed(&error),
        }
    }

    /// Logs a reload that failed; the previous certificate stays.
    fn failed(&self, error: &TlsError) -> Poll {
        tracing::warn!(
            listener = self.name.label(),
            %error,
            "TLS certificate reload failed; still serving the previous certificate"
        );
        Poll::Failed
    }
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(cert);
    hasher.update([0]);
    hasher.update(key);
    hasher.finalize().into()
}

fn certified_key(
    files: &TlsFiles,
    cert: &[u8],
    key: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: files.cert_file.clone(),
            problem: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert_file.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|error| TlsError::Pem {
        path: files.key_file.clone(),
        problem: format!("no usable private key: {error}"),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        key: files.key_file.clone(),
        cert: files.cert_file.clone(),
        source,
    })
}
