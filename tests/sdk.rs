//! Drives the gateway with the official `openai` and `anthropic` Python SDKs.
//! The Rust side starts the simulated provider and the gateway; the Python
//! tests under `tests/sdk/` make the calls and read the simulator's record of
//! what reached the provider (`GET /_sim/requests`).
//!
//! Needs the virtual environment that `scripts/test.sh` creates (`.venv-test`),
//! or a Python with the pinned packages in `PROMPTGATE_TEST_PYTHON`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use promptgate::simulator::{SimConfig, Simulator};
use support::{CLIENT_KEY, PROVIDER_KEY, TestGateway, standard_config};

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("PROMPTGATE_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    assert!(
        venv.exists(),
        "the SDK tests need {} with the pinned openai/anthropic/pytest packages: run `scripts/test.sh` (it creates it), or set PROMPTGATE_TEST_PYTHON",
        venv.display()
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_work_through_the_gateway() {
    let python = python();
    let sim = Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gateway = TestGateway::start(&standard_config(&sim)).await;
    let tests_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    let base_url = format!("http://{}", gateway.addr);
    let sim_url = format!("http://{}", sim.addr());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-W",
                "error::pytest.PytestUnraisableExceptionWarning",
            ])
            .arg(&tests_dir)
            .env("PROMPTGATE_BASE_URL", base_url)
            .env("PROMPTGATE_CLIENT_KEY", CLIENT_KEY)
            .env("PROMPTGATE_PROVIDER_KEY", PROVIDER_KEY)
            .env("PROMPTGATE_SIM_URL", sim_url)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_BASE_URL")
            .output()
            .expect("running pytest")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "the SDK tests failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(" passed") && !stdout.contains(" skipped"),
        "pytest ran no tests or skipped some:\n{stdout}"
    );
}
