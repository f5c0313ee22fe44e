//! `[audit] compression = "zstd"` end to end: the gateway's objects are zstd
//! JSON Lines under `.jsonl.zst` keys, `promptgate analyze` reads them, and so
//! does DuckDB (from `.venv-test`), as docs/audit-schema.md promises.

use crate::support;

use std::path::Path;
use std::process::Command;

use http::Method;
use promptgate_analyze::{S3Options, Source};

const REQUESTS: u64 = 30;

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_objects_are_read_by_analyze_and_duckdb() {
    let config = r#"
[auth]
open = true
[providers.demo]
kind = "demo"
[experiments.greeting]
unit_key = { header = "x-user-id" }
[[experiments.greeting.variants]]
name = "control"
weight = 50
model = "demo-a"
providers = ["demo"]
[[experiments.greeting.variants]]
name = "brief"
weight = 50
model = "demo-b"
providers = ["demo"]
system = "Be brief."
[audit]
sink = "local"
local_dir = "{dir}/audit"
spool_dir = "{dir}/spool"
compression = "zstd"
"#;
    let mut gw = support::TestGateway::start(config).await;
    let client = support::client();
    for i in 0..REQUESTS {
        let reply = support::send(
            &client,
            Method::POST,
            &gw.url("/v1/chat/completions"),
            &[("x-user-id", &format!("u{i}"))],
            format!(
                r#"{{"model":"greeting","messages":[{{"role":"user","content":"question {i}"}}]}}"#
            ),
        )
        .await;
        assert_eq!(reply.status, http::StatusCode::OK);
    }
    let audit = gw.dir.path().join("audit");
    // Shutdown drains the spool and stores every object.
    gw.begin_shutdown().await.unwrap();

    let objects = files(&audit);
    assert!(!objects.is_empty(), "no audit object stored");
    for object in &objects {
        assert!(object.ends_with(".jsonl.zst"), "{object}");
    }

    let source = Source::open(audit.to_str().unwrap(), &S3Options::default())
        .await
        .unwrap();
    let report = promptgate_analyze::analyze(&source, &support::analyze::options("greeting"))
        .await
        .unwrap();
    assert_eq!(report.read.request_records, REQUESTS, "{:?}", report.read);
    assert!(report.read.corrupt_objects.is_empty(), "{:?}", report.read);

    let python = std::env::var("PROMPTGATE_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv-test/bin/python", env!("CARGO_MANIFEST_DIR")));
    let query = format!(
        "import duckdb; print(duckdb.sql(\"SELECT count(*), count(DISTINCT request_id) FROM read_json_auto('{}/v1/dt=*/hour=*/*.jsonl.zst')\").fetchall()[0])",
        audit.display()
    );
    let output = Command::new(&python)
        .args(["-c", &query])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (the pinned duckdb package): {e}"));
    assert!(
        output.status.success(),
        "DuckDB failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("({REQUESTS}, {REQUESTS})")
    );
}
