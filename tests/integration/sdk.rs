//! Drives the gateway with the official `openai` and `anthropic` Python SDKs.
//! The Rust side starts the simulated provider and the gateway; the Python
//! tests under `tests/sdk/` make the calls and read the simulator's record of
//! what reached the provider (`GET /_sim/requests`).
//!
//! Needs the virtual environment that `tests/run` creates (`.venv-test`),
//! or a Python with the pinned packages in `PROMPTGATE_TEST_PYTHON`.

use crate::support;

use promptgate::simulator::{SimConfig, Simulator};
use support::{CLIENT_KEY, PROVIDER_KEY, TestGateway, standard_config};

const RESTRICTED_KEY: &str = "pg-restricted-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_work_through_the_gateway() {
    let sim = Simulator::start(SimConfig {
        required_key: Some(PROVIDER_KEY.into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // A client allowed only chat completions of `gpt-*` models, for the
    // 403s the SDKs must raise as `PermissionDeniedError`.
    let restricted = format!(
        "{}\n[[auth.clients]]\nid = \"restricted\"\nkey_sha256 = \"{}\"\n[auth.clients.allow]\nendpoints = [\"chat_completions\"]\nmodels = [\"gpt-*\"]\n",
        standard_config(&sim),
        promptgate::server::hash_key(RESTRICTED_KEY),
    );
    let gateway = TestGateway::start(&restricted).await;
    support::pytest::run(
        "sdk",
        "the pinned openai/anthropic/pytest packages",
        vec![
            ("PROMPTGATE_BASE_URL", format!("http://{}", gateway.addr)),
            ("PROMPTGATE_CLIENT_KEY", CLIENT_KEY.to_owned()),
            ("PROMPTGATE_PROVIDER_KEY", PROVIDER_KEY.to_owned()),
            ("PROMPTGATE_RESTRICTED_KEY", RESTRICTED_KEY.to_owned()),
            ("PROMPTGATE_SIM_URL", format!("http://{}", sim.addr())),
        ],
    )
    .await;
}
