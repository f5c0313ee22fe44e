//! Hot reload: the config file and the prompt files it reads are checked for
//! changes every `server.config_poll_ms`; SIGHUP and `POST /admin/reload`
//! reload too. A reload parses, validates and builds a complete new snapshot —
//! which may fail, leaving the running one untouched and the error logged with
//! file:line and field — then swaps it in atomically.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::snapshot::{Snapshot, SnapshotHandle};
use promptgate_core::config::{self, ConfigError, LoadOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Reloaded { version: Arc<str> },
    Unchanged { version: Arc<str> },
}

/// What the admin endpoint reports about reloads.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub version: Arc<str>,
    pub loaded_at: SystemTime,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_error: Option<String>,
}

struct State {
    status: ReloadStatus,
    watched: Vec<PathBuf>,
    fingerprint: [u8; 32],
}

pub struct Reloader {
    config_path: PathBuf,
    options: LoadOptions,
    /// The snapshot in force, which a reload replaces.
    snapshots: Arc<SnapshotHandle>,
    state: Mutex<State>,
}

impl Reloader {
    /// `prompt_files` and `version` describe the snapshot the gateway started with.
    pub fn new(
        config_path: PathBuf,
        options: LoadOptions,
        snapshots: Arc<SnapshotHandle>,
        prompt_files: Vec<PathBuf>,
        version: Arc<str>,
    ) -> Reloader {
        let mut watched = vec![config_path.clone()];
        watched.extend(prompt_files);
        let fingerprint = fingerprint(&watched);
        Reloader {
            config_path,
            options,
            snapshots,
            state: Mutex::new(State {
                status: ReloadStatus {
                    version,
                    loaded_at: SystemTime::now(),
                    reloads_ok: 0,
                    reloads_failed: 0,
                    last_error: None,
                },
                watched,
                fingerprint,
            }),
        }
    }

    pub fn status(&self) -> ReloadStatus {
        self.lock().status.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reloads now. Blocking (file reads, parsing): call from a blocking context.
    pub fn reload(&self) -> Result<ReloadOutcome, ConfigError> {
        // Held throughout, so concurrent reloads happen one after the other.
        let mut state = self.lock();
        let config = match config::load_file(&self.config_path, &self.options) {
            Ok(config) => config,
            Err(error) => {
                state.status.reloads_failed += 1;
                state.status.last_error = Some(error.to_string());
                // Later polls retry only when the files change again.
                state.fingerprint = fingerprint(&state.watched);
                tracing::error!(version = %state.status.version, "config reload failed; still serving the previous version:\n{error}");
                return Err(error);
            }
        };
        let mut watched = vec![self.config_path.clone()];
        watched.extend(config.prompt_files.iter().cloned());
        state.fingerprint = fingerprint(&watched);
        state.watched = watched;
        let version = config.version.clone();
        // The last reload failed and was logged as an error: say that the
        // files are good again, even when they are back to the running
        // version (an edit undone), which otherwise logs nothing.
        if state.status.last_error.take().is_some() {
            tracing::info!(%version, "config restored, version {version}");
        }
        if version == state.status.version {
            return Ok(ReloadOutcome::Unchanged { version });
        }
        let current = self.snapshots.load();
        if current.server.listen != config.server.listen
            || current.admin.listen != config.admin.listen
        {
            tracing::warn!("a listen address changed: that part takes effect only after a restart");
        }
        if current.server.max_concurrent_requests != config.server.max_concurrent_requests {
            tracing::warn!(
                "server.max_concurrent_requests changed: it takes effect only after a restart"
            );
        }
        if current.startup_only_digest != config.startup_only_digest {
            tracing::warn!(
                "[audit], [prices], [telemetry] or a [*.tls] table changed: those sections take effect only after a restart (certificate files are re-read without one)"
            );
        }
        self.snapshots.replace(Snapshot::new(config));
        state.status.version = version.clone();
        state.status.loaded_at = SystemTime::now();
        state.status.reloads_ok += 1;
        tracing::info!(%version, "config reloaded");
        Ok(ReloadOutcome::Reloaded { version })
    }

    fn changed_on_disk(&self) -> bool {
        let state = self.lock();
        fingerprint(&state.watched) != state.fingerprint
    }

    /// Polls the watched files until `shutdown` turns true.
    pub async fn watch_files(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let reloader = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if reloader.changed_on_disk() {
                    let _ = reloader.reload();
                }
            })
            .await;
        }
    }

    /// Reloads on every SIGHUP until `shutdown` turns true. The handler is
    /// registered by the caller before start-up completes, so an early SIGHUP
    /// reloads instead of ending the process (SIGHUP's default action).
    #[cfg(unix)]
    pub async fn reload_on_sighup(
        self: Arc<Self>,
        mut hangups: tokio::signal::unix::Signal,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP received: reloading the config");
                    let reloader = self.clone();
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Content hash of the watched files (a missing file hashes as empty), so a
/// change is seen whatever happened to timestamps, e.g. Kubernetes ConfigMap
/// symlink swaps.
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for file in files {
        let content = std::fs::read(file).unwrap_or_default();
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    hasher.finalize().into()
}
