//! The gateway binary as a child process, for tests that need real signals
//! (SIGTERM, SIGKILL) or process-wide settings such as AWS credentials.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::s3::ACCESS_KEY;

const BIN: &str = env!("CARGO_BIN_EXE_promptgate");

pub struct Gateway {
    pub child: Child,
    pub addr: String,
    pub admin_addr: String,
    /// Where the gateway runs: its relative spool and audit paths live here.
    pub workdir: PathBuf,
}

/// A config with a 50/50 `greeting` experiment on the demo provider and an S3
/// audit sink; `extra` is appended inside `[audit]`.
pub fn audit_config(endpoint: &str, bucket: &str, extra: &str) -> String {
    config_with_audit(&format!(
        r#"sink = "s3"
s3_bucket = "{bucket}"
s3_prefix = "tenant/audit"
s3_endpoint = "{endpoint}"
s3_region = "us-east-1"
s3_force_path_style = true
{extra}"#
    ))
}

/// As `audit_config`, with the local sink writing under `local_dir`.
pub fn local_audit_config(local_dir: &Path, extra: &str) -> String {
    config_with_audit(&format!(
        "sink = \"local\"\nlocal_dir = \"{}\"\n{extra}",
        local_dir.display()
    ))
}

fn config_with_audit(sink: &str) -> String {
    format!(
        r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[[routes]]
models = ["*"]
providers = ["demo"]
[experiments.greeting]
unit_key = {{ header = "x-user-id" }}
[[experiments.greeting.variants]]
name = "control"
weight = 50
model = "demo-a"
providers = ["demo"]
system = "Be brief."
[[experiments.greeting.variants]]
name = "friendly"
weight = 50
model = "demo-b"
providers = ["demo"]
system = "Be warm."
[prices."demo-a"]
input_per_million = 1.0
output_per_million = 2.0
[audit]
spool_dir = "spool"
unit_key_secret_env = "TEST_UNIT_SECRET"
flush_interval_ms = 200
{sink}
"#
    )
}

/// Starts the gateway in a fresh working directory.
pub fn spawn(config: &str, s3_secret: &str) -> Result<Gateway, String> {
    spawn_in(&tempfile::tempdir().unwrap().keep(), config, s3_secret)
}

/// Starts the gateway in `workdir` (reuse it to restart on the same spool).
/// `Err` carries the log lines of a gateway that exited before listening.
pub fn spawn_in(workdir: &Path, config: &str, s3_secret: &str) -> Result<Gateway, String> {
    let path = workdir.join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    spawn_with(workdir, path.to_str().unwrap(), &[], s3_secret)
}

/// Starts the gateway in `workdir` with `--config <config>` (a file or an
/// `s3://` URI) and the extra environment variables.
pub fn spawn_with(
    workdir: &Path,
    config: &str,
    env: &[(&str, &str)],
    s3_secret: &str,
) -> Result<Gateway, String> {
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config", config])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .current_dir(workdir)
        .envs(env.iter().copied())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3_secret)
        .env("TEST_UNIT_SECRET", "unit-secret-for-tests")
        .env("RUST_LOG", "info")
        .env_remove("AWS_PROFILE")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let (Some(local), Some(admin)) = (
            log["fields"]["local"].as_str(),
            log["fields"]["admin"].as_str(),
        ) {
            let (addr, admin_addr) = (local.to_owned(), admin.to_owned());
            let log_file = workdir.join("gateway.log");
            std::thread::spawn(move || {
                let mut out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log_file)
                    .unwrap();
                for line in lines.map_while(Result::ok) {
                    use std::io::Write;
                    let _ = writeln!(out, "{line}");
                }
            });
            return Ok(Gateway {
                child,
                addr,
                admin_addr,
                workdir: workdir.to_owned(),
            });
        }
        seen.push(line);
    }
    let _ = child.wait();
    Err(seen.join("\n"))
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// For signals other than the stop (SIGHUP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines written after start-up.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.workdir.join("gateway.log")).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit: the audit log drains and uploads first.
    pub fn stop(mut self) {
        assert!(
            Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(self.child.wait().unwrap().code(), Some(0), "{}", self.log());
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.workdir.clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
