//! Runs a folder of Python tests with the test environment's interpreter
//! (`.venv-test`, built by tests/run) and fails loudly on anything but
//! a run where every test passed.

use std::path::PathBuf;
use std::process::Command;

/// The test interpreter: `PROMPTGATE_TEST_PYTHON`, else the worktree's `.venv-test`.
pub fn python(needs: &str) -> PathBuf {
    if let Some(python) = std::env::var_os("PROMPTGATE_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    assert!(
        venv.exists(),
        "these tests need {} with {needs}: run `tests/run` (it creates it), or set PROMPTGATE_TEST_PYTHON",
        venv.display()
    );
    venv
}

/// Runs `pytest -q tests/<folder>` with `env`; `needs` names the packages for
/// the error message when the environment is missing.
pub async fn run(folder: &str, needs: &str, env: Vec<(&'static str, String)>) {
    let python = python(needs);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(folder);
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(&python);
        command
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .args(["-W", "error::pytest.PytestUnraisableExceptionWarning"])
            .arg(&dir)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_BASE_URL");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("running pytest")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "tests/{folder} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(" passed") && !stdout.contains(" skipped"),
        "pytest ran no tests or skipped some:\n{stdout}"
    );
}
