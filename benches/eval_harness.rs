//! The eval harness at scale: 10,000 golden cases × 2 variants against the
//! in-process simulator (instant answers), no cache. Prints the wall time,
//! calls per second and the process's peak resident memory, so the harness
//! can be shown not to be the bottleneck (loadtest/RESULTS.md, "eval harness").
//!
//!     cargo bench --bench eval_harness

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use promptgate::eval::{self, EvalOptions};
use promptgate::simulator::{SimConfig, Simulator};

const CASES: usize = 10_000;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    // `cargo bench` passes `--bench`; a test runner listing or running every
    // target (`nextest --all-targets` asks with `--list`) gets no test from it
    // rather than a 10-second run.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gateway.toml"),
            format!(
                "[auth]\nopen = true\n[providers.sim]\nkind = \"openai\"\nbase_url = \"{}\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"sim\"]\n\
                 [experiments.bench]\nunit_key = {{ header = \"x-user-id\" }}\n\
                 [[experiments.bench.variants]]\nname = \"a\"\nweight = 1\nmodel = \"m-a\"\nproviders = [\"sim\"]\nsystem = \"Repeat.\"\n\
                 [[experiments.bench.variants]]\nname = \"b\"\nweight = 1\nmodel = \"m-b\"\nproviders = [\"sim\"]\nsystem = \"Say it back.\"\n",
                sim.openai_base_url()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("suite.toml"),
            "golden_set = \"golden.jsonl\"\nexperiment = \"bench\"\nbaseline = \"a\"\nconcurrency = 32\n\
             [[scorers]]\nname = \"echo\"\nkind = \"contains\"\nmax_drop = 0.01\n\
             [[scorers]]\nname = \"shape\"\nkind = \"regex\"\npattern = '^Hello from'\n",
        )
        .unwrap();
        let golden: String = (0..CASES)
            .map(|i| format!("{{\"id\": \"c{i}\", \"input\": \"Ticket {i}: the invoice total is wrong\", \"expected\": \"Ticket {i}:\", \"tags\": {{\"shard\": \"{}\"}}}}\n", i % 7))
            .collect();
        std::fs::write(dir.path().join("golden.jsonl"), golden).unwrap();
        let started = Instant::now();
        let report = eval::evaluate(&EvalOptions {
            config: dir.path().join("gateway.toml"),
            suite: dir.path().join("suite.toml"),
            repeat: None,
            concurrency: None,
            cache_dir: None,
            progress: false,
        })
        .await
        .unwrap();
        let elapsed = started.elapsed();
        assert!(report.passed);
        let calls = report.variants.iter().map(|v| v.calls).sum::<u64>();
        let json = serde_json::to_vec(&report).unwrap();
        println!(
            "eval harness: {CASES} cases × 2 variants = {calls} calls in {:.2} s ({:.0} calls/s), peak RSS {} MiB, JSON report {} MiB",
            elapsed.as_secs_f64(),
            calls as f64 / elapsed.as_secs_f64(),
            peak_rss_kib().map_or_else(|| "?".to_owned(), |k| (k / 1024).to_string()),
            json.len() / (1024 * 1024)
        );
    });
}
