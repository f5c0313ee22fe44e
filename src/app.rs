//! Assembles a running gateway from a config file: the client listener, the
//! admin listener, the config watcher and the SIGHUP handler, all owned by
//! `App` and stopped in order by `App::shutdown`. The binary and the tests
//! start the gateway the same way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::audit::{AuditStartError, AuditTasks};
use crate::capture::{ExchangeSink, Fanout};
use crate::config::{self, ConfigError, LoadOptions};
use crate::reload::Reloader;
use crate::server::{self, Gateway};
use crate::shadow::ShadowRunner;
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::telemetry::ready::Readiness;
use crate::telemetry::{Telemetry, TelemetryError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Audit(#[from] AuditStartError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("cannot listen for SIGHUP: {source}")]
    Signal { source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct App {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    pub reloader: Arc<Reloader>,
    stop_serving: Option<tokio::sync::oneshot::Sender<()>>,
    audit: Option<AuditTasks>,
    grace: std::time::Duration,
    stop_background: watch::Sender<bool>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    server::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl App {
    /// `sink` receives every exchange besides the audit log (when configured).
    pub async fn start(
        config_path: PathBuf,
        options: LoadOptions,
        sink: Arc<dyn ExchangeSink>,
    ) -> Result<App, StartError> {
        let config = config::load_file(&config_path, &options)?;
        let telemetry = Telemetry::start(
            &config.telemetry,
            config
                .audit
                .as_ref()
                .map(|audit| audit.prices.clone())
                .unwrap_or_default(),
        )?;
        #[cfg(unix)]
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|source| StartError::Signal { source })?;
        let (audit_log, audit_tasks) = match &config.audit {
            Some(audit) => {
                let (log, tasks) = crate::audit::start(audit).await?;
                (Some(log), Some(tasks))
            }
            None => (None, None),
        };
        let sink: Arc<dyn ExchangeSink> = match &audit_log {
            Some(log) => Fanout::of(vec![log.clone() as Arc<dyn ExchangeSink>, sink]),
            None => sink,
        };
        let listener = bind(config.server.listen).await?;
        let admin_listener = bind(config.admin.listen).await?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.admin.listen,
                source,
            })?;
        let grace = config.server.shutdown_grace;
        let prices = config
            .audit
            .as_ref()
            .map(|audit| audit.prices.clone())
            .unwrap_or_default();
        let poll = config.server.config_poll;
        let prompt_files = config.prompt_files.clone();
        let readiness = Readiness::new(config.audit.as_ref());
        let version = config.version.clone();

        let gateway = Arc::new(Gateway {
            snapshots: SnapshotHandle::new(Snapshot::new(config)),
            shadows: ShadowRunner::new(sink.clone(), prices, telemetry.clone()),
            sink,
            audit: audit_log,
            telemetry,
            accepting: std::sync::atomic::AtomicBool::new(false),
        });
        let reloader = Arc::new(Reloader::new(
            config_path,
            options,
            gateway.clone(),
            prompt_files,
            version,
        ));
        gateway
            .telemetry
            .metrics()
            .observe(Arc::downgrade(&gateway), Arc::downgrade(&reloader));
        let (stop_background, stopped) = watch::channel(false);
        let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();

        let server = tokio::spawn(server::serve(listener, gateway.clone(), grace, async {
            let _ = serving_stopped.await;
        }));
        let mut background = Vec::new();
        let admin = Arc::new(Admin {
            gateway: gateway.clone(),
            reloader: reloader.clone(),
            readiness,
        });
        let mut admin_stopped = stopped.clone();
        background.push(tokio::spawn(admin::serve(
            admin_listener,
            admin,
            async move {
                let _ = admin_stopped.changed().await;
            },
        )));
        if let Some(every) = poll {
            background.push(tokio::spawn(
                reloader.clone().watch_files(every, stopped.clone()),
            ));
        }
        #[cfg(unix)]
        background.push(tokio::spawn(
            reloader.clone().reload_on_sighup(hangups, stopped),
        ));

        Ok(App {
            addr,
            admin_addr,
            gateway,
            reloader,
            stop_serving: Some(stop_serving),
            audit: audit_tasks,
            grace,
            stop_background,
            server,
            background,
        })
    }

    /// Stops accepting and drains in-flight requests (bounded by the grace
    /// period), lets shadow calls finish within what is left of the same
    /// grace period and cancels the rest, then drains the audit log into the spool and uploads what it
    /// can within the grace period, flushes buffered spans (again bounded by
    /// the grace period), then stops the admin listener and the watchers.
    pub async fn shutdown(mut self) {
        // One grace period for requests and shadow calls alike: shadows run
        // while connections drain, and get what is left of it.
        let deadline = tokio::time::Instant::now() + self.grace;
        if let Some(stop) = self.stop_serving.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        self.gateway
            .shadows
            .shutdown(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await;
        if let Some(audit) = self.audit.take() {
            audit.shutdown(self.grace).await;
        }
        // Last, so the spans of drained requests and shadow calls are in it.
        self.gateway.telemetry.shutdown(self.grace).await;
        let _ = self.stop_background.send(true);
        for task in self.background.drain(..) {
            let _ = task.await;
        }
    }

    /// Signals shutdown without waiting (for tests that watch the drain).
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop_serving.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
        for task in &self.background {
            task.abort();
        }
    }
}
