//! The `promptgate` binary itself: config checking, key hashing, and a real
//! process that drains in-flight streams on SIGTERM and exits 0.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use promptgate::simulator::{SimConfig, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_promptgate");

fn repo_file(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_shipped_configs() {
    for file in ["config/quickstart.toml", "config/experiments-example.toml"] {
        let out = Command::new(BIN)
            .args(["check-config", &repo_file(file)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid (version "));
    }
}

#[test]
fn check_config_lists_every_problem_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        "[auth]\nopen = true\n\n[providers.openai]\nkind = \"openai\"\nbase_url = \"not a url\"\n\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"missing\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}:6: providers.openai.base_url: invalid URL `not a url`"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:10: routes[0].providers[0]: unknown provider `missing`"
        )),
        "{stderr}"
    );
}

/// Runs `check-config` on `source` and returns its exit code, the file's
/// path as printed, and its error lines.
fn check_config_text(source: &str) -> (Option<i32>, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, source).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code(), path.display().to_string(), lines)
}

#[test]
fn check_config_lists_unknown_keys_type_errors_and_bad_values_together_in_file_order() {
    let source = "[server]\nlisten = \"127.0.0.1:8080\"\nlisten_port = 8080\ncolour = \"blue\"\n\n[auth]\nopn = true\nopen = true\n\n[providers.demo]\nkind = \"demo\"\nconnect_timeout_ms = \"fast\"\n\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\nupstream_model = \"\"\n";
    let (code, file, lines) = check_config_text(source);
    assert_eq!(code, Some(1));
    let expected = [
        (3, "server.listen_port", "unknown field `listen_port`"),
        (4, "server.colour", "unknown field `colour`"),
        (7, "auth.opn", "unknown field `opn`"),
        (
            12,
            "providers.demo.connect_timeout_ms",
            "invalid type: string \"fast\", expected a whole number ≥ 0",
        ),
        (17, "routes[0].upstream_model", "must not be empty"),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, (number, path, message)) in lines.iter().zip(expected) {
        let prefix = format!("{file}:{number}: {path}: {message}");
        assert!(line.starts_with(&prefix), "expected {prefix}\n got {line}");
    }
}

#[test]
fn check_config_names_expected_types_in_plain_words() {
    let source = "[server]\nmax_body_bytes = -1\n[auth]\nopen = \"yes\"\n[telemetry]\nsample_ratio = \"all\"\n[[routes]]\nmodels = \"gpt-4o\"\nproviders = [\"demo\"]\n";
    let (code, _, lines) = check_config_text(source);
    assert_eq!(code, Some(1));
    let text = lines.join("\n");
    for plain in [
        "server.max_body_bytes: invalid value: integer `-1`, expected a whole number ≥ 0",
        "auth.open: invalid type: string \"yes\", expected true or false",
        "telemetry.sample_ratio: invalid type: string \"all\", expected a number",
        "routes[0].models: invalid type: string \"gpt-4o\", expected a list such as [\"a\", \"b\"]",
    ] {
        assert!(text.contains(plain), "missing {plain:?} in\n{text}");
    }
    for rust_type in ["u64", "f64", "a boolean", "a sequence"] {
        assert!(!text.contains(rust_type), "{rust_type} in\n{text}");
    }
}

#[test]
fn open_mode_is_refused_off_loopback() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--config",
            &repo_file("config/quickstart.toml"),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.open: open mode is only allowed on a loopback address"),
        "{stderr}"
    );
}

#[test]
fn hash_key_prints_the_sha256_of_stdin() {
    let mut child = Command::new(BIN)
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_streams_finish_then_exits_zero() {
    let sim = Simulator::start(SimConfig {
        chunk_delay: Duration::from_millis(40),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nshutdown_grace_ms = 10000\n[auth]\nopen = true\n[providers.sim]\nkind = \"openai\"\nbase_url = \"{}\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"sim\"]\n",
            sim.openai_base_url()
        ),
    )
    .unwrap();
    let (mut child, addr, lines) = spawn_gateway(&config);
    let logs = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let url = format!("http://{addr}/v1/chat/completions");
    let stream = tokio::spawn(async move {
        support::post(&support::client(), &url, r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight"}]}"#).await
    });
    // Eight chunks 40 ms apart: the stream is still running when this returns.
    support::wait::until(
        "the stream's request to reach the provider",
        Duration::from_secs(5),
        || !sim.received().is_empty(),
    )
    .await;
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    let reply = stream.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.error.is_none(), "stream cut: {:?}", reply.error);
    assert!(
        reply.text().ends_with("data: [DONE]\n\n"),
        "{}",
        reply.text()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let logs = logs.join().unwrap().join("\n");
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("all connections drained"), "{logs}");
}

/// Starts the binary on free ports and returns it with its gateway address.
/// The working directory is a fresh temporary one, so a config's relative
/// paths (the quickstart's audit directory and spool) never collide.
fn spawn_gateway(
    config: &std::path::Path,
) -> (
    std::process::Child,
    String,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut child = start_process(config);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("gateway exited before listening")
            .unwrap();
        if let Some(local) = listening_address(&line) {
            break local;
        }
    };
    (child, addr, lines)
}

/// Like `spawn_gateway`, with every log line kept from the first one on.
async fn spawn_logged(
    config: &std::path::Path,
) -> (std::process::Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = start_process(config);
    let logs = collect_lines(BufReader::new(child.stderr.take().unwrap()).lines());
    let listening = wait_for_log(&logs, "promptgate listening", "start-up").await;
    let addr = listening["fields"]["local"].as_str().unwrap().to_owned();
    (child, addr, logs)
}

fn start_process(config: &std::path::Path) -> std::process::Child {
    let workdir = tempfile::tempdir().unwrap().keep();
    Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            config.to_str().unwrap(),
        ])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .current_dir(&workdir)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn listening_address(line: &str) -> Option<String> {
    let log: serde_json::Value = serde_json::from_str(line).ok()?;
    log["fields"]["local"].as_str().map(str::to_owned)
}

/// Collects a child's log lines as they come, for `wait_for_log`.
fn collect_lines(
    lines: std::io::Lines<BufReader<std::process::ChildStderr>>,
) -> Arc<Mutex<Vec<String>>> {
    let collected = Arc::new(Mutex::new(Vec::new()));
    let sink = collected.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    collected
}

/// The first JSON log line whose message contains `needle`, waited for.
async fn wait_for_log(logs: &Mutex<Vec<String>>, needle: &str, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(log) = find_log(logs, needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no log line with {needle:?} in {:#?}",
            logs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn find_log(logs: &Mutex<Vec<String>>, needle: &str) -> Option<serde_json::Value> {
    logs.lock().unwrap().iter().find_map(|line| {
        let log: serde_json::Value = serde_json::from_str(line).ok()?;
        log["fields"]["message"]
            .as_str()?
            .contains(needle)
            .then_some(log)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let text = |weights: (u32, u32)| {
        format!(
            "[server]\nconfig_poll_ms = 0\n[auth]\nopen = true\n[providers.demo]\nkind = \"demo\"\n[experiments.e]\nunit_key = {{ header = \"x-user-id\" }}\n[[experiments.e.variants]]\nname = \"a\"\nweight = {}\nmodel = \"m\"\nproviders = [\"demo\"]\n[[experiments.e.variants]]\nname = \"b\"\nweight = {}\nmodel = \"m\"\nproviders = [\"demo\"]\n",
            weights.0, weights.1
        )
    };
    std::fs::write(&config, text((100, 0))).unwrap();
    let (mut child, addr, lines) = spawn_gateway(&config);
    let url = format!("http://{addr}/v1/chat/completions");
    let ask = || async {
        let reply = support::send(
            &support::client(),
            http::Method::POST,
            &url,
            &[("x-user-id", "u")],
            r#"{"model":"e","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        reply.headers["x-promptgate-variant"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(ask().await, "a");
    std::fs::write(&config, text((0, 100))).unwrap();
    assert_eq!(
        ask().await,
        "a",
        "polling is off: nothing changes before SIGHUP"
    );
    assert!(
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    support::wait::eventually(
        "SIGHUP to reload the config",
        Duration::from_secs(5),
        async || (ask().await == "b").then_some(()),
    )
    .await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let logs = lines.map_while(Result::ok).collect::<Vec<_>>().join("\n");
    assert!(logs.contains("SIGHUP received"), "{logs}");
    assert!(logs.contains("config reloaded"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_fixes_a_broken_edit_logs_config_restored() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let good = "[server]\nconfig_poll_ms = 20\n[auth]\nopen = true\n[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n";
    std::fs::write(&config, good).unwrap();
    let (mut child, addr, logs) = spawn_logged(&config).await;
    let reply = support::send(
        &support::client(),
        http::Method::GET,
        &format!("http://{addr}/v1/models"),
        &[],
        "",
    )
    .await;
    let version = reply.headers["x-promptgate-config-version"]
        .to_str()
        .unwrap()
        .to_owned();

    std::fs::write(&config, good.replace("kind = \"demo\"", "kind = \"dmeo\"")).unwrap();
    let failed = wait_for_log(&logs, "config reload failed", "the broken edit").await;
    assert_eq!(failed["level"], "ERROR");
    // The edit undone: the running version again, so nothing is swapped —
    // but the operator who saw the error learns that the file is good again.
    std::fs::write(&config, good).unwrap();
    let restored = wait_for_log(&logs, "config restored", "the undone edit").await;
    assert_eq!(restored["level"], "INFO");
    assert_eq!(
        restored["fields"]["message"],
        format!("config restored, version {version}")
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_assign_every_unit_identically() {
    let config = repo_file("config/quickstart.toml");
    let (mut first, first_addr, _) = spawn_gateway(std::path::Path::new(&config));
    let (mut second, second_addr, _) = spawn_gateway(std::path::Path::new(&config));
    let client = support::client();
    let mut counts = std::collections::HashMap::new();
    for user in 0..200 {
        let user = format!("user-{user}");
        let mut seen = Vec::new();
        for addr in [&first_addr, &second_addr] {
            let reply = support::send(
                &client,
                http::Method::POST,
                &format!("http://{addr}/v1/chat/completions"),
                &[("x-user-id", &user)],
                r#"{"model":"greeting","messages":[{"role":"user","content":"hi"}]}"#,
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK);
            seen.push(
                reply.headers["x-promptgate-variant"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(
            seen[0], seen[1],
            "{user} assigned differently by two processes"
        );
        *counts.entry(seen[0].clone()).or_insert(0) += 1;
    }
    // Both variants are in use (a 50/50 split over 200 users).
    assert!(counts.values().all(|&n| n > 60), "{counts:?}");
    for child in [&mut first, &mut second] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

const UNIT_KEY_WARNING: &str = "audit.unit_key_secret_env/_file not set";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_starts_without_the_unit_key_secret_warning() {
    let (mut child, _, logs) =
        spawn_logged(std::path::Path::new(&repo_file("config/quickstart.toml"))).await;
    // The warning is written while the audit log starts, before listening.
    assert!(
        find_log(&logs, UNIT_KEY_WARNING).is_none(),
        "{:#?}",
        logs.lock().unwrap()
    );
    let _ = child.kill();
    let _ = child.wait();

    // A config with an audit log and no secret still gets the warning.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let quickstart = std::fs::read_to_string(repo_file("config/quickstart.toml")).unwrap();
    let without_secret: String = quickstart
        .lines()
        .filter(|line| !line.starts_with("unit_key_secret_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(
        without_secret, quickstart,
        "the quickstart names its secret"
    );
    std::fs::write(&config, without_secret).unwrap();
    let (mut child, _, logs) = spawn_logged(&config).await;
    let warning = find_log(&logs, UNIT_KEY_WARNING).expect("the warning without a secret");
    assert_eq!(warning["level"], "WARN");
    let _ = child.kill();
    let _ = child.wait();
}

/// The environment `config/container.toml` reads (see its header).
const CONTAINER_ENV: [(&str, &str); 6] = [
    (
        "PROMPTGATE_CLIENT_KEY_SHA256",
        "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
    ),
    ("PROMPTGATE_ADMIN_TOKEN", "admin-token"),
    ("PROMPTGATE_UNIT_KEY_SECRET", "unit-key-secret"),
    ("PROMPTGATE_AUDIT_BUCKET", "audit-bucket"),
    ("OPENAI_API_KEY", "sk-openai"),
    ("ANTHROPIC_API_KEY", "sk-ant"),
];

#[test]
fn the_container_config_is_valid_with_its_environment_and_names_what_is_missing() {
    let config = repo_file("config/container.toml");
    let mut command = Command::new(BIN);
    command.args(["check-config", &config]);
    for (name, value) in CONTAINER_ENV {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (version "));

    let mut command = Command::new(BIN);
    command.args(["check-config", &config]);
    for (name, _) in CONTAINER_ENV {
        command.env_remove(name);
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (name, _) in CONTAINER_ENV {
        assert!(
            stderr.contains(&format!("environment variable {name} is not set or empty")),
            "{name} not named in\n{stderr}"
        );
    }
}
