//! Heap allocations per request on the gateway's path, counted by a counting
//! global allocator: deterministic, so it can be compared across commits on
//! a busy machine where timings cannot. Run: `cargo bench --bench allocations`.
//!
//! Everything runs in this process (client, simulator upstream, gateway,
//! audit writer and uploader), so each case is measured twice, with `SHORT`
//! and `LONG` sequential requests, each run ending with the gateway's
//! shutdown (which writes and uploads the audit records): the difference
//! divided by `LONG - SHORT` is what one more request costs, start-up and
//! shutdown cancelled out. `direct` (client to upstream) is the part that is
//! not the gateway's; the gateway's columns subtract it.

// Benchmark set-up: a failed unwrap is a broken benchmark, not a gateway panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use promptgate::app::App;
use promptgate::exchange::NoSink;
use promptgate::simulator::{SimConfig, Simulator};
use promptgate_core::config::LoadOptions;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const WARM_UP: u64 = 50;
const SHORT: u64 = 200;
const LONG: u64 = 1200;

#[derive(Clone, Copy)]
enum Case {
    Direct,
    Passthrough,
    Experiment,
    ExperimentAudit,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Direct => "direct (client + upstream)",
            Case::Passthrough => "passthrough",
            Case::Experiment => "experiment",
            Case::ExperimentAudit => "experiment + local audit",
        }
    }

    /// The loadtest's gateway config (loadtest/lib.sh `base_config`).
    fn config(self, upstream: &str) -> String {
        let mut config = format!(
            r#"
[auth]
open = true
[providers.sim]
kind = "openai"
base_url = "{upstream}"
max_retries = 0
[[routes]]
models = ["*"]
providers = ["sim"]
[experiments.bench]
unit_key = {{ header = "x-user-id" }}
[[experiments.bench.variants]]
name = "control"
weight = 50
model = "gpt-4o-mini"
providers = ["sim"]
system = "You are a concise assistant."
[[experiments.bench.variants]]
name = "treatment"
weight = 50
model = "gpt-4o-mini"
providers = ["sim"]
system = "You are a concise assistant for {{{{audience}}}}."
params = {{ temperature = 0.2 }}
"#
        );
        if let Case::ExperimentAudit = self {
            config.push_str(
                "[audit]\nsink = \"local\"\nlocal_dir = \"{dir}/audit\"\nspool_dir = \"{dir}/spool\"\n",
            );
        }
        config
    }

    fn model(self) -> &'static str {
        match self {
            Case::Passthrough | Case::Direct => "gpt-4o-mini",
            Case::Experiment | Case::ExperimentAudit => "bench",
        }
    }
}

/// Allocations and bytes allocated during `requests` requests of `case`,
/// shutdown included.
async fn run(case: Case, requests: u64) -> (u64, u64) {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = match case {
        Case::Direct => None,
        _ => {
            let path = dir.path().join("gateway.toml");
            let text = case
                .config(&sim.openai_base_url())
                .replace("{dir}", &dir.path().display().to_string());
            std::fs::write(&path, text).unwrap();
            let options = LoadOptions {
                listen_override: Some("127.0.0.1:0".parse().unwrap()),
                admin_listen_override: Some("127.0.0.1:0".parse().unwrap()),
            };
            Some(App::start(path, options, Arc::new(NoSink)).await.unwrap())
        }
    };
    let url = match &app {
        Some(app) => format!("http://{}/v1/chat/completions", app.addr),
        None => format!("{}/chat/completions", sim.openai_base_url()),
    };
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let body = Bytes::from(format!(
        r#"{{"model":"{}","messages":[{{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}}],"promptgate":{{"variables":{{"audience":"students"}}}}}}"#,
        case.model()
    ));
    let send = |i: u64| {
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .header("x-user-id", format!("user-{}", i % 97))
            .body(Full::new(body.clone()))
            .unwrap();
        let client = &client;
        async move {
            let response = client.request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        }
    };
    for i in 0..WARM_UP {
        send(i).await;
    }
    let before = GLOBAL.stats();
    for i in 0..requests {
        send(i).await;
    }
    if let Some(app) = app {
        app.shutdown().await;
    }
    let after = GLOBAL.stats();
    (
        (after.allocations + after.reallocations - before.allocations - before.reallocations)
            as u64,
        (after.bytes_allocated + after.bytes_reallocated.max(0) as usize
            - before.bytes_allocated
            - before.bytes_reallocated.max(0) as usize) as u64,
    )
}

fn main() {
    // `cargo test --benches` and nextest list benches too: only a bench run measures.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| case | allocations per request | bytes per request | gateway's allocations | gateway's bytes |");
        println!("|---|---|---|---|---|");
        let mut direct = (0.0, 0.0);
        for case in [
            Case::Direct,
            Case::Passthrough,
            Case::Experiment,
            Case::ExperimentAudit,
        ] {
            let short = run(case, SHORT).await;
            let long = run(case, LONG).await;
            let per = |long: u64, short: u64| (long as f64 - short as f64) / (LONG - SHORT) as f64;
            let (count, bytes) = (per(long.0, short.0), per(long.1, short.1));
            if let Case::Direct = case {
                direct = (count, bytes);
            }
            println!(
                "| {} | {count:.1} | {bytes:.0} | {:.1} | {:.0} |",
                case.name(),
                count - direct.0,
                bytes - direct.1
            );
        }
    });
}
