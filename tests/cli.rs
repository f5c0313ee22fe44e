//! The `promptgate` binary itself: config checking, key hashing, and a real
//! process that drains in-flight streams on SIGTERM and exits 0.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
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
    tokio::time::sleep(Duration::from_millis(150)).await;
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
    let workdir = tempfile::tempdir().unwrap().keep();
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            config.to_str().unwrap(),
        ])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .current_dir(&workdir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("gateway exited before listening")
            .unwrap();
        let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(local) = log["fields"]["local"].as_str() {
            break local.to_owned();
        }
    };
    (child, addr, lines)
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while ask().await != "b" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
