//! Assembles a running gateway from a config file: the client listener, the
//! admin listener, the config watcher and the SIGHUP handler, all owned by
//! `App` and stopped in order by `App::shutdown`. The binary and the tests
//! start the gateway the same way. `Gateway` is what the request path
//! shares; the admin listener, the reloader and the metrics get only the
//! parts they read, so none of them depends on this module.

pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Admin};
use crate::audit::{AuditLog, AuditStartError, AuditTasks};
use crate::exchange::{ExchangeSink, Fanout};
use crate::limits::{Limits, LocalStore};
use crate::reload::{ConfigSource, Reloader};
use crate::shadow::ShadowRunner;
use crate::snapshot::{Snapshot, SnapshotHandle};
use crate::telemetry::metrics::ReloadCounts;
use crate::telemetry::ready::Readiness;
use crate::telemetry::{Telemetry, TelemetryError};
use crate::tls::{ListenerName, TlsError, TlsListener};
use promptgate_core::config::{self, ConfigError, LoadOptions};

/// The assembled application, as every request shares it: the config in
/// force and where finished exchanges go.
pub struct Gateway {
    pub snapshots: Arc<SnapshotHandle>,
    pub sink: Arc<dyn ExchangeSink>,
    /// Also inside `sink`; kept apart for admission control and metrics.
    pub audit: Option<Arc<AuditLog>>,
    pub shadows: ShadowRunner,
    /// `[limits]`: admission by client, charged as exchanges finish.
    pub limits: Arc<Limits>,
    /// Traces (off unless configured) and metrics.
    pub telemetry: Telemetry,
    /// True while the client listener accepts connections (for `/readyz`).
    pub accepting: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Audit(#[from] AuditStartError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("the config loading task failed")]
    LoadTask,
    #[error("cannot listen for SIGHUP: {source}")]
    Signal { source: std::io::Error },
    #[error("TLS on the {} listener: {source}", listener.label())]
    Tls {
        listener: ListenerName,
        source: TlsError,
    },
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
        source: impl Into<ConfigSource>,
        options: LoadOptions,
        sink: Arc<dyn ExchangeSink>,
    ) -> Result<App, StartError> {
        // Blocking reads (files, or S3 driven from a blocking thread).
        let (source, options, loaded) = tokio::task::spawn_blocking({
            let source = source.into();
            move || {
                let loaded = Reloader::load_initial(&source, &options);
                (source, options, loaded)
            }
        })
        .await
        .map_err(|_| StartError::LoadTask)?;
        let (config, watch) = loaded?;
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
        // Before binding: a bad certificate is a start-up error naming its file.
        let tls = load_tls(config.server.tls.as_ref(), ListenerName::Client)?;
        let admin_tls = load_tls(config.admin.tls.as_ref(), ListenerName::Admin)?;
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
        let max_concurrent_requests = config.server.max_concurrent_requests;
        let prices = config
            .audit
            .as_ref()
            .map(|audit| audit.prices.clone())
            .unwrap_or_default();
        let poll = config.server.config_poll;
        let readiness = Readiness::new(config.audit.as_ref());
        let version = config.version.clone();

        let limits = Limits::new(
            Arc::new(LocalStore::default()),
            prices.clone(),
            telemetry.metrics().clone(),
        );
        let gateway = Arc::new(Gateway {
            snapshots: Arc::new(SnapshotHandle::new(Snapshot::new(config))),
            // Shadow calls spend their experiment's budgets, not the client's.
            shadows: ShadowRunner::new(sink.clone(), prices, telemetry.clone()),
            sink: limits.charging(sink),
            limits,
            audit: audit_log,
            telemetry,
            accepting: Arc::new(AtomicBool::new(false)),
        });
        let reloader = Arc::new(Reloader::new(
            source,
            options,
            gateway.snapshots.clone(),
            watch,
            version,
        ));
        observe_at_scrape_time(&gateway, &reloader);
        let (stop_background, stopped) = watch::channel(false);
        let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();

        let mut background = Vec::new();
        // Certificate files are watched as often as the config file.
        if let Some(every) = poll {
            for tls in tls.iter().chain(admin_tls.iter()) {
                background.push(tokio::spawn(tls.certificate().watch(
                    every,
                    gateway.telemetry.metrics().clone(),
                    stopped.clone(),
                )));
            }
        }
        let server = tokio::spawn(server::serve(
            listener,
            tls,
            gateway.clone(),
            grace,
            max_concurrent_requests,
            async {
                let _ = serving_stopped.await;
            },
        ));
        let admin = Arc::new(Admin {
            snapshots: gateway.snapshots.clone(),
            telemetry: gateway.telemetry.clone(),
            audit: gateway.audit.clone(),
            accepting: gateway.accepting.clone(),
            reloader: reloader.clone(),
            readiness,
        });
        let mut admin_stopped = stopped.clone();
        background.push(tokio::spawn(admin::serve(
            admin_listener,
            admin_tls,
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

fn load_tls(
    files: Option<&config::TlsFiles>,
    listener: ListenerName,
) -> Result<Option<Arc<TlsListener>>, StartError> {
    files
        .map(|files| TlsListener::load(files, listener).map(Arc::new))
        .transpose()
        .map_err(|source| StartError::Tls { listener, source })
}

/// Registers what the metrics read at each scrape from state kept elsewhere:
/// reloads, the audit pipeline, shadow calls. Weak references: the gateway
/// owns the metrics, which must not keep it alive.
fn observe_at_scrape_time(gateway: &Arc<Gateway>, reloader: &Arc<Reloader>) {
    let metrics = gateway.telemetry.metrics();
    let reloads = Arc::downgrade(reloader);
    metrics.observe_reloads(move || {
        let status = reloads.upgrade()?.status();
        Some(ReloadCounts {
            ok: status.reloads_ok,
            failed: status.reloads_failed,
            version: status.version,
            source_errors: status.source.errors,
            source_last_success: status.source.last_success,
        })
    });
    // No audit series at all without an audit log.
    if let Some(audit) = &gateway.audit {
        metrics.observe_audit(Arc::downgrade(audit));
    }
    let shadows = Arc::downgrade(gateway);
    // The experiments with a shadow policy in the config in force (at zero
    // until their first call) and any that ran shadow calls since start-up.
    metrics.observe_shadows(move || {
        let Some(gateway) = shadows.upgrade() else {
            return Vec::new();
        };
        let snapshot = gateway.snapshots.load();
        let configured = snapshot
            .experiments
            .iter()
            .filter(|(_, experiment)| experiment.shadow.is_some())
            .map(|(id, _)| id);
        gateway.shadows.metrics_by_experiment(configured)
    });
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
        for task in &self.background {
            task.abort();
        }
    }
}
