//! The access log, through the real binary's stderr: `--log-format json`,
//! levels chosen with `RUST_LOG`. One request gives exactly one line on the
//! `promptgate::access` target with its fields; a provider failure one WARN
//! line with its error class; the default level writes no line for a good
//! request; `access_log_sample_ratio = 1` writes every request at INFO; and
//! neither the provider key nor a client key ever reaches the log.

use crate::support;
use crate::support::otlp;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use promptgate::simulator::{Fault, SimConfig, Simulator};
use serde_json::Value;
use support::{CLIENT_KEY, PROVIDER_KEY, client, post, send, standard_config};

const BIN: &str = env!("CARGO_BIN_EXE_promptgate");
const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Log me"}]}"#;
const ACCESS: &str = "promptgate::access";

/// The gateway binary with its stderr collected line by line.
struct Gateway {
    child: Child,
    addr: String,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// `rust_log`: `None` runs with RUST_LOG unset (the default level).
    fn spawn(config: &str, rust_log: Option<&str>) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("provider.key"), PROVIDER_KEY).unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            config.replace("{dir}", &dir.path().display().to_string()),
        )
        .unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "json", "serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped());
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let mut child = command.spawn().unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let log: Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(local) = log["fields"]["local"].as_str() {
                    let _ = addr_tx.send(local.to_owned());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no listening line: {:?}", lines.lock().unwrap()));
        Gateway {
            child,
            addr,
            lines,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every line so far, raw.
    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The access-log lines so far, parsed.
    fn access(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|log| log["target"] == ACCESS)
            .collect()
    }

    /// Waits until `n` access lines were written, then a little longer so a
    /// line too many would show.
    async fn access_lines(&self, n: usize) -> Vec<Value> {
        support::wait::until(
            &format!("{n} access-log lines"),
            Duration::from_secs(10),
            || self.access().len() >= n,
        )
        .await;
        // An observation window, not a wait: a line too many would show in it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.access()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of<'a>(lines: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["request_id"] == request_id)
        .collect()
}

fn request_id(reply: &support::Reply) -> String {
    reply.headers["x-request-id"].to_str().unwrap().to_owned()
}

/// The standard config (OpenAI-kind and Anthropic-kind providers at the
/// simulator with `PROVIDER_KEY`, a dead provider) with an experiment whose
/// candidate also runs as a shadow, and `telemetry` appended.
fn config(sim: &Simulator, telemetry: &str) -> String {
    format!(
        r#"{standard}
[experiments.tone]
unit_key = {{ header = "x-user-id" }}

[[experiments.tone.variants]]
name = "control"
weight = 1
model = "gpt-control"
providers = ["sim_openai"]

[[experiments.tone.variants]]
name = "candidate"
weight = 0
model = "gpt-candidate"
providers = ["sim_openai"]

[experiments.tone.shadow]
variants = ["candidate"]
sample_percent = 100

[telemetry]
{telemetry}
"#,
        standard = standard_config(sim),
    )
}

/// No line, whatever its target or level, holds a secret.
fn assert_no_secrets(gw: &Gateway, wrong_key: &str) {
    let text = gw.text();
    for secret in [PROVIDER_KEY, CLIENT_KEY, wrong_key] {
        assert!(!text.contains(secret), "`{secret}` is in the log:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_one_access_line_with_its_fields_and_failures_at_warn() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let collector = otlp::Collector::start().await;
    let gw = Gateway::spawn(
        &config(
            &sim,
            &format!(
                "otlp_endpoint = \"{}\"\nexport_interval_ms = 50",
                collector.endpoint()
            ),
        ),
        Some("info,promptgate::access=debug"),
    );
    let client = client();

    // A plain request: one DEBUG line with every field.
    let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let plain = request_id(&reply);
    let answer = reply.json();
    let lines = gw.access_lines(1).await;
    let found = lines_of(&lines, &plain);
    assert_eq!(found.len(), 1, "{lines:#?}");
    let line = found[0];
    assert_eq!(line["level"], "DEBUG", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["message"], "request finished");
    assert_eq!(fields["role"], "served");
    assert_eq!(fields["endpoint"], "chat_completions");
    assert_eq!(fields["dialect"], "openai");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["outcome"], "completed");
    assert!(fields.get("error_class").is_none(), "{line}");
    assert_eq!(fields["provider"], "sim_openai");
    // The configured model (the route's pattern), not the caller's string.
    assert_eq!(fields["model"], "gpt-*");
    assert_eq!(fields["client_id"], "test-app");
    assert_eq!(fields["attempts"], 1);
    assert_eq!(fields["input_tokens"], answer["usage"]["prompt_tokens"]);
    assert_eq!(
        fields["output_tokens"],
        answer["usage"]["completion_tokens"]
    );
    let latency = fields["latency_ms"].as_f64().expect("latency_ms");
    let ttfb = fields["ttfb_ms"].as_f64().expect("ttfb_ms");
    assert!(latency > 0.0 && ttfb > 0.0 && ttfb <= latency, "{line}");
    let trace_id = fields["trace_id"]
        .as_str()
        .expect("trace_id with tracing on");
    assert_eq!(trace_id.len(), 32, "{line}");
    let spans = collector
        .wait_for(|spans| {
            spans
                .iter()
                .any(|s| s.name() == "POST /v1/chat/completions")
        })
        .await;
    assert!(
        spans.iter().any(|s| s.trace_id() == trace_id),
        "the line's trace id is the request's trace"
    );

    // An experiment request: its assignment, and one line for its shadow call.
    let reply = send(
        &client,
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {CLIENT_KEY}")),
            ("x-user-id", "u-1"),
        ],
        r#"{"model":"tone","messages":[{"role":"user","content":"hi"}]}"#.to_owned(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let served = request_id(&reply);
    let lines = gw.access_lines(3).await;
    let found = lines_of(&lines, &served);
    assert_eq!(found.len(), 1, "{lines:#?}");
    let fields = &found[0]["fields"];
    assert_eq!(fields["experiment"], "tone");
    assert_eq!(fields["variant"], "control");
    assert_eq!(fields["assigned_variant"], "control");
    assert_eq!(fields["assignment_reason"], "hash");
    assert_eq!(fields["model"], "gpt-control");
    let shadows: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["shadow_of"] == served.as_str())
        .collect();
    assert_eq!(shadows.len(), 1, "{lines:#?}");
    let shadow = &shadows[0]["fields"];
    assert_eq!(shadow["role"], "shadow");
    assert_eq!(shadow["variant"], "candidate");
    assert_eq!(shadow["model"], "gpt-candidate");
    assert_eq!(shadow["outcome"], "completed");
    assert_ne!(shadow["request_id"], served.as_str());

    // A caller's mistake: DEBUG, with its class and no message.
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, 404);
    let unknown = request_id(&reply);
    // A wrong client key: refused, and never written anywhere.
    let wrong_key = "pg-wrong-key-never-logged";
    let reply = send(
        &client,
        Method::POST,
        &gw.url("/v1/chat/completions"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {wrong_key}")),
        ],
        CHAT.to_owned(),
    )
    .await;
    assert_eq!(reply.status, 401);
    let unauthorized = request_id(&reply);

    // Provider failures: one WARN line each, with the error class and context.
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"dead-model","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let unreachable = request_id(&reply);
    for _ in 0..3 {
        sim.push_fault(Fault::Status {
            status: 503,
            retry_after: None,
        });
    }
    let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let failing = request_id(&reply);

    let lines = gw.access_lines(7).await;
    assert_eq!(lines.len(), 7, "{lines:#?}");
    let only = |id: &str| {
        let found = lines_of(&lines, id);
        assert_eq!(found.len(), 1, "one line for {id}: {lines:#?}");
        found[0].clone()
    };
    let line = only(&unknown);
    assert_eq!(line["level"], "DEBUG", "{line}");
    assert_eq!(line["fields"]["status"], 404);
    assert_eq!(line["fields"]["outcome"], "refused");
    assert_eq!(line["fields"]["error_class"], "not_found");
    assert!(line["fields"].get("error").is_none(), "{line}");
    let line = only(&unauthorized);
    assert_eq!(line["level"], "DEBUG", "{line}");
    assert_eq!(line["fields"]["error_class"], "auth");
    assert!(line["fields"].get("client_id").is_none(), "{line}");

    let line = only(&unreachable);
    assert_eq!(line["level"], "WARN", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["status"], 502);
    assert_eq!(fields["error_class"], "upstream");
    assert_eq!(fields["provider"], "dead");
    assert_eq!(fields["model"], "dead-model");
    assert!(
        fields["error"].as_str().unwrap().contains("unreachable"),
        "{line}"
    );
    // What the transport said, for the operator only.
    let detail = fields["error_detail"].as_str().expect("error_detail");
    assert!(!detail.is_empty());
    assert!(!reply.text().contains(detail));

    let line = only(&failing);
    assert_eq!(line["level"], "WARN", "{line}");
    let fields = &line["fields"];
    assert_eq!(fields["status"], 503);
    assert_eq!(fields["error_class"], "provider_error");
    assert_eq!(fields["outcome"], "completed");
    assert_eq!(fields["provider"], "sim_openai");
    assert_eq!(fields["attempts"], 3);

    // Nothing else warned per request: the access line is the one.
    let text = gw.text();
    let warnings = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["level"] == "WARN")
        .count();
    assert_eq!(warnings, 2, "{text}");
    assert_no_secrets(&gw, wrong_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_level_logs_no_access_line_for_a_good_request() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gw = Gateway::spawn(&config(&sim, "access_log_sample_ratio = 0.0"), None);
    let client = client();
    for _ in 0..3 {
        let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(gw.access_lines(0).await.is_empty(), "{}", gw.text());

    // A failure is still told, once, at WARN.
    let reply = post(
        &client,
        &gw.url("/v1/chat/completions"),
        r#"{"model":"dead-model","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(reply.status, 502);
    let lines = gw.access_lines(1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["level"], "WARN");
    assert_eq!(lines[0]["fields"]["error_class"], "upstream");
    assert_no_secrets(&gw, CLIENT_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_ratio_of_one_logs_every_request_at_info() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let gw = Gateway::spawn(&config(&sim, "access_log_sample_ratio = 1.0"), Some("info"));
    let client = client();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let reply = post(&client, &gw.url("/v1/chat/completions"), CHAT).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        ids.push(request_id(&reply));
    }
    // The model list is a request too, answered by the gateway itself.
    let reply = send(
        &client,
        Method::GET,
        &gw.url("/v1/models"),
        &[("authorization", &format!("Bearer {CLIENT_KEY}"))],
        "",
    )
    .await;
    assert_eq!(reply.status, 200);
    ids.push(request_id(&reply));
    let lines = gw.access_lines(ids.len()).await;
    assert_eq!(lines.len(), ids.len(), "{lines:#?}");
    for id in &ids {
        let found = lines_of(&lines, id);
        assert_eq!(found.len(), 1, "{lines:#?}");
        assert_eq!(found[0]["level"], "INFO");
    }
    assert_eq!(lines_of(&lines, &ids[5])[0]["fields"]["endpoint"], "models");
    assert_no_secrets(&gw, CLIENT_KEY);
}

#[test]
fn an_out_of_range_ratio_is_a_config_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        "[auth]\nopen = true\n[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n[telemetry]\naccess_log_sample_ratio = 1.5\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("telemetry.access_log_sample_ratio") && stderr.contains(":9:"),
        "{stderr}"
    );
}
