//! Hot reload: the config (a file or an S3 object, see `source`) and the
//! prompt files it reads are checked for changes every `server.config_poll_ms`; SIGHUP and `POST /admin/reload`
//! reload too. A reload parses, validates and builds a complete new snapshot —
//! which may fail, leaving the running one untouched and the error logged with
//! file:line and field — then swaps it in atomically.

mod s3;
mod source;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

pub use s3::{ENDPOINT_VAR, PATH_STYLE_VAR, REGION_VAR, S3UriError};
pub use source::{ConfigSource, Watch};

use crate::snapshot::{Snapshot, SnapshotHandle};
use promptgate_core::config::{Config, ConfigError, LoadOptions};

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
    pub source: SourceStatus,
}

/// Whether the config source (file or S3) could be read lately. A replica
/// that cannot read it keeps serving the config it has.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// The file path or `s3://bucket/key`.
    pub name: Arc<str>,
    /// Reads (loads and polls) that failed since start-up.
    pub errors: u64,
    /// The last read that succeeded (start-up's, at first).
    pub last_success: SystemTime,
    /// Why the last read failed, while it is failing.
    pub failing: Option<String>,
}

struct State {
    status: ReloadStatus,
    watch: Watch,
}

pub struct Reloader {
    source: ConfigSource,
    options: LoadOptions,
    /// The snapshot in force, which a reload replaces.
    snapshots: Arc<SnapshotHandle>,
    state: Mutex<State>,
    /// Held through a whole reload, so reloads happen one after the other,
    /// while `state` is locked only briefly: `/metrics` and `/readyz` read it
    /// on the runtime's workers, which must never wait for a reload's S3
    /// calls (those are driven by the same workers).
    reloading: Mutex<()>,
}

impl Reloader {
    /// `version` and `watch` describe the snapshot the gateway started with.
    pub fn new(
        source: ConfigSource,
        options: LoadOptions,
        snapshots: Arc<SnapshotHandle>,
        watch: Watch,
        version: Arc<str>,
    ) -> Reloader {
        let now = SystemTime::now();
        Reloader {
            state: Mutex::new(State {
                status: ReloadStatus {
                    version,
                    loaded_at: now,
                    reloads_ok: 0,
                    reloads_failed: 0,
                    last_error: None,
                    source: SourceStatus {
                        name: source.name().display().to_string().into(),
                        errors: 0,
                        last_success: now,
                        failing: None,
                    },
                },
                watch,
            }),
            source,
            options,
            snapshots,
            reloading: Mutex::new(()),
        }
    }

    /// The first load, before anything serves (blocking). A source that
    /// cannot be read or a config that is invalid ends start-up.
    pub fn load_initial(
        source: &ConfigSource,
        options: &LoadOptions,
    ) -> Result<(Config, Watch), ConfigError> {
        let (config, watch) = source.load(options);
        Ok((config?, watch))
    }

    pub fn status(&self) -> ReloadStatus {
        self.lock().status.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reloads now. Blocking (file reads, parsing): call from a blocking context.
    pub fn reload(&self) -> Result<ReloadOutcome, ConfigError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (loaded, watch) = self.source.load(&self.options);
        let mut state = self.lock();
        // Later polls retry only when what was read changes again (or, when
        // the source could not be read, as soon as it can).
        state.watch = watch;
        let config = match loaded {
            Ok(config) => config,
            Err(error) => {
                if let ConfigError::Read { .. } = error {
                    state.source_failed(error.to_string());
                } else {
                    state.source_read();
                }
                state.status.reloads_failed += 1;
                state.status.last_error = Some(error.to_string());
                tracing::error!(version = %state.status.version, "config reload failed; still serving the previous version:\n{error}");
                return Err(error);
            }
        };
        state.source_read();
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

    /// Whether the source changed since the last load; a source that cannot
    /// be read counts as unchanged (and is recorded as failing).
    fn changed_at_source(&self) -> bool {
        let watch = self.lock().watch.clone();
        let changed = self.source.changed(&watch);
        let mut state = self.lock();
        match changed {
            Ok(changed) => {
                state.source_read();
                changed
            }
            Err(cause) => {
                state.source_failed(cause);
                false
            }
        }
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
                if reloader.changed_at_source() {
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

impl State {
    fn source_read(&mut self) {
        let source = &mut self.status.source;
        source.last_success = SystemTime::now();
        if source.failing.take().is_some() {
            tracing::info!(source = %source.name, "the config source can be read again");
        }
    }

    /// Logged when it starts failing, not at every poll.
    fn source_failed(&mut self, cause: String) {
        let source = &mut self.status.source;
        source.errors += 1;
        if source.failing.is_none() {
            tracing::error!(source = %source.name, version = %self.status.version, "the config source cannot be read; still serving the config in force: {cause}");
        }
        source.failing = Some(cause);
    }
}
