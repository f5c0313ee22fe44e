//! Shared test harness: the real gateway on a loopback port, the simulated
//! provider, and a small HTTP client. Every test gets its own ports.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod analyze;
pub mod faults;
pub mod load;
pub mod metrics;
pub mod otlp;
pub mod process;
pub mod pytest;
pub mod s3;
pub mod s3_faults;
pub mod wait;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use promptgate::app::App;
use promptgate::exchange::{ExchangeSink, FinishedExchange};
use promptgate::server;
use promptgate_core::config::LoadOptions;
use tokio::task::JoinHandle;

pub const CLIENT_KEY: &str = "pg-test-key";
pub const PROVIDER_KEY: &str = "sk-provider-test";

/// Keeps every finished exchange for assertions.
#[derive(Default)]
pub struct RecordingSink {
    pub exchanges: Mutex<Vec<FinishedExchange>>,
}

impl ExchangeSink for RecordingSink {
    fn record(&self, exchange: FinishedExchange) {
        self.exchanges.lock().unwrap().push(exchange);
    }
}

impl RecordingSink {
    pub fn all(&self) -> Vec<FinishedExchange> {
        self.exchanges.lock().unwrap().clone()
    }

    /// Waits until `n` exchanges were reported (they are reported when bodies
    /// end); fails the test when they are not within 10 s.
    pub async fn wait_for(&self, n: usize) -> Vec<FinishedExchange> {
        wait::eventually(
            &format!("{n} exchanges reported to the sink"),
            Duration::from_secs(10),
            async || Some(self.all()).filter(|all| all.len() >= n),
        )
        .await
    }
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub sink: Arc<RecordingSink>,
    pub dir: tempfile::TempDir,
    pub config_path: std::path::PathBuf,
    app: Option<App>,
}

impl TestGateway {
    /// Starts the gateway from a config text on free loopback ports. The text
    /// may use `{dir}`, replaced by a temporary directory holding
    /// `provider.key` (containing `PROVIDER_KEY`).
    pub async fn start(config_text: &str) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("provider.key"), PROVIDER_KEY).unwrap();
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, expand(config_text, &dir)).unwrap();
        let sink = Arc::new(RecordingSink::default());
        let app = App::start(
            config_path.clone(),
            LoadOptions {
                listen_override: Some("127.0.0.1:0".parse().unwrap()),
                admin_listen_override: Some("127.0.0.1:0".parse().unwrap()),
            },
            sink.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        TestGateway {
            addr: app.addr,
            admin_addr: app.admin_addr,
            sink,
            dir,
            config_path,
            app: Some(app),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// Rewrites the config file (same `{dir}` expansion as `start`).
    pub fn write_config(&self, config_text: &str) {
        std::fs::write(&self.config_path, expand(config_text, &self.dir)).unwrap();
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("gateway already shut down")
    }

    /// Starts the shutdown; the returned task ends once the gateway drained.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        let app = self.app.take().expect("shutdown twice");
        tokio::spawn(app.shutdown())
    }
}

fn expand(config_text: &str, dir: &tempfile::TempDir) -> String {
    config_text.replace("{dir}", &dir.path().display().to_string())
}

/// A config routing `gpt-*` to an OpenAI-kind provider and `claude-*` to an
/// Anthropic-kind provider, both at the simulator, plus `demo-*` to the demo.
pub fn standard_config(sim: &promptgate::simulator::Simulator) -> String {
    format!(
        r#"
[server]
max_body_bytes = 65536
shutdown_grace_ms = 5000

[auth]
[[auth.clients]]
id = "test-app"
key_sha256 = "{key_hash}"

[providers.sim_openai]
kind = "openai"
base_url = "{openai}"
api_key_file = "{{dir}}/provider.key"
max_retries = 2
retry_base_ms = 5
retry_max_ms = 2000
first_byte_timeout_ms = 1000
total_timeout_ms = 5000

[providers.sim_anthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key_file = "{{dir}}/provider.key"
max_retries = 0

[providers.demo]
kind = "demo"

[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
max_retries = 0
connect_timeout_ms = 500

[[routes]]
models = ["gpt-*"]
providers = ["sim_openai"]

[[routes]]
models = ["fast"]
upstream_model = "gpt-4o-mini"
providers = ["sim_openai"]

[[routes]]
models = ["claude-*"]
providers = ["sim_anthropic"]

[[routes]]
models = ["demo-*"]
providers = ["demo"]

[[routes]]
models = ["dead-model"]
providers = ["dead"]
"#,
        key_hash = server::hash_key(CLIENT_KEY),
        openai = sim.openai_base_url(),
        anthropic = sim.anthropic_base_url(),
    )
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Body pieces with their arrival times.
    pub chunks: Vec<(Instant, Bytes)>,
    pub sent_at: Instant,
    pub error: Option<String>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends a request and reads the whole body, keeping each piece's arrival time.
pub async fn send(
    client: &TestClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    let sent_at = Instant::now();
    let response = client.request(request).await.expect("request failed");
    let (parts, mut body) = response.into_parts();
    let mut chunks = Vec::new();
    let mut all = Vec::new();
    let mut error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    all.extend_from_slice(&data);
                    chunks.push((Instant::now(), data));
                }
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::from(all),
        chunks,
        sent_at,
        error,
    }
}

/// POST with JSON content type and the test client key.
pub async fn post(client: &TestClient, url: &str, body: &str) -> Reply {
    send(
        client,
        Method::POST,
        url,
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
        ],
        body.to_owned(),
    )
    .await
}

/// Every record under a local audit directory (gzip JSON Lines, any depth).
pub fn local_audit_records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    use std::io::Read;
    let mut records = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(".jsonl.gz") {
                let mut text = String::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
                    .read_to_string(&mut text)
                    .unwrap();
                records.extend(text.lines().map(|line| serde_json::from_str(line).unwrap()));
            }
        }
    }
    records
}

/// Waits until the local audit directory's records satisfy `done`; fails the
/// test, with the records seen last, when they do not within 15 s.
pub async fn wait_for_audit(
    dir: &std::path::Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let records = local_audit_records(dir);
        if done(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after 15 s waiting for the audit records under {} to satisfy the test; {} records there: {records:#?}",
            dir.display(),
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
