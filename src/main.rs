//! The `promptgate` binary: command-line parsing, logging set-up and signal
//! handling. Everything else lives in the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use promptgate::app::App;
use promptgate::capture::LogSink;
use promptgate::config::{self, LoadOptions};
use promptgate::server;

#[derive(Parser)]
#[command(
    name = "promptgate",
    version,
    about = "An LLM gateway for prompt experiments with evidence"
)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Listen on this address instead of `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve the admin API on this address instead of `admin.listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Validate a config file: exit 0 when valid, else list every problem as file:line: field: message.
    CheckConfig {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Print the SHA-256 to put in `auth.clients[].key_sha256` for a client key read from standard input.
    HashKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => serve(config, listen, admin_listen),
        Command::CheckConfig { config } => check_config(&config),
        Command::HashKey => hash_key(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    match config::load_file(path, &LoadOptions::default()) {
        Ok(config) => {
            println!(
                "{}: valid (version {}, {} providers, {} routes)",
                path.display(),
                config.version,
                config.providers.len(),
                config.routes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn hash_key() -> anyhow::Result<ExitCode> {
    let mut key = String::new();
    std::io::stdin()
        .read_line(&mut key)
        .context("reading the key from standard input")?;
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "no key on standard input");
    println!("{}", server::hash_key(key));
    Ok(ExitCode::SUCCESS)
}

fn serve(
    config_path: PathBuf,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let options = LoadOptions { listen_override: listen, admin_listen_override: admin_listen };
        let app = App::start(config_path.clone(), options, Arc::new(LogSink)).await?;
        let version = app.reloader.status().version;
        tracing::info!(local = %app.addr, admin = %app.admin_addr, config = %config_path.display(), %version, "promptgate listening");
        shutdown.await;
        app.shutdown().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Registers the SIGTERM (Kubernetes) and SIGINT (Ctrl-C) handlers at once —
/// before the listeners open, so an early signal still gets a graceful
/// drain instead of the default immediate exit — and returns a future that
/// resolves on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
    })
}
