//! Load against the gateway binary and what it left behind, shared by the
//! audit durability and fault tests: concurrent clients whose every request
//! carries its own `x-request-id` (echoed by the gateway and stored as the
//! record's `request_id`), so records are counted per request; `/metrics`
//! readers; assertions on records per request id; the spool's leftovers.

use super::metrics::Metrics;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::TestClient;
use super::process::{Gateway, spawn_in};
use super::s3::SECRET_KEY;

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    /// The status, when a response head arrived.
    pub status: Option<u16>,
    /// When the whole body arrived (its end seen, content checked).
    pub completed_at: Option<Instant>,
    pub body: Bytes,
    /// A transport error, a timeout, or a stream that ended with an error event.
    pub error: Option<String>,
    /// A stream whose error event came after its `data: [DONE]`: an SDK
    /// stops reading at `[DONE]`, so its caller saw the answer complete.
    pub error_after_done: bool,
}

impl Sent {
    pub fn complete_ok(&self) -> bool {
        self.status == Some(200) && self.completed_at.is_some()
    }
}

pub fn chat_body(stream: bool, n: u64) -> String {
    if stream {
        format!(
            r#"{{"model":"greeting","stream":true,"messages":[{{"role":"user","content":"streamed hello {n}"}}]}}"#
        )
    } else {
        format!(r#"{{"model":"greeting","messages":[{{"role":"user","content":"hello {n}"}}]}}"#)
    }
}

/// Sends one chat completion and reads its body to the end; never panics on
/// transport errors (the gateway may be stopped or killed under it).
pub async fn call(
    client: &TestClient,
    url: &str,
    id: &str,
    user: &str,
    stream: bool,
    n: u64,
) -> Sent {
    let mut sent = Sent {
        id: id.to_owned(),
        status: None,
        completed_at: None,
        body: Bytes::new(),
        error: None,
        error_after_done: false,
    };
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("x-user-id", user)
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(chat_body(stream, n))))
        .unwrap();
    let attempt = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        sent.status = Some(response.status().as_u16());
        let echoed = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let done = Instant::now();
        assert_eq!(
            echoed.as_deref(),
            Some(id),
            "the gateway must echo x-request-id"
        );
        Ok::<_, String>((body, done))
    };
    match tokio::time::timeout(Duration::from_secs(15), attempt).await {
        Ok(Ok((body, done))) => {
            let text = String::from_utf8_lossy(&body);
            // A stream that could not be completed ends with the dialect's
            // error event instead of its last bytes: not a complete answer.
            let done_at = text.find("data: [DONE]");
            let stream_failed = stream && sent.status == Some(200) && done_at.is_none();
            let error_event = text
                .find("data: {\"error\"")
                .or_else(|| text.find("event: error"));
            sent.error_after_done = matches!((done_at, error_event), (Some(d), Some(e)) if e > d);
            if stream_failed && error_event.is_some() {
                sent.error = Some(format!("the stream ended with an error event: {text}"));
            } else {
                if sent.status == Some(200) {
                    // A complete answer: a whole JSON document, or a stream up to [DONE].
                    let whole = !stream_failed
                        && (stream || serde_json::from_slice::<Value>(&body).is_ok());
                    assert!(whole, "a body that ended cleanly must be whole: {text}");
                }
                sent.completed_at = Some(done);
            }
            sent.body = body;
        }
        Ok(Err(error)) => sent.error = Some(error),
        Err(_) => sent.error = Some("timed out".into()),
    }
    sent
}

/// Concurrent clients sending chat completions (every third one streamed),
/// each request with its own id and its own `x-user-id`, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Sent>>>,
}

pub fn start_load(gw: &Gateway, label: &str, workers: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let url = gw.url("/v1/chat/completions");
    let workers = (0..workers)
        .map(|w| {
            let (stop, url, label) = (stop.clone(), url.clone(), label.to_owned());
            tokio::spawn(async move {
                let client = super::client();
                let mut out = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{label}-{w}-{n}");
                    let user = format!("user-{w}-{n}");
                    let sent = call(&client, &url, &id, &user, n.is_multiple_of(3), n).await;
                    let failed = sent.error.is_some() || sent.status != Some(200);
                    out.push(sent);
                    if failed {
                        // The gateway is gone or refusing: do not spin on
                        // refused connections or 503s.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    n += 1;
                }
                out
            })
        })
        .collect();
    Load { stop, workers }
}

impl Load {
    pub async fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.expect("load worker panicked"));
        }
        all
    }
}

/// The label-less series of `/metrics` (the audit log's counters and
/// gauges), read with the strict parser.
/// The label-less series of `/metrics` (the audit log's counters and
/// gauges), read with the strict parser.
/// The label-less series of `/metrics` (the audit log's counters and
/// gauges), read with the strict parser.
/// The label-less series of `/metrics` (the audit log's counters and
/// gauges), read with the strict parser.
pub async fn metrics(gw: &Gateway) -> HashMap<String, u64> {
    Metrics::scrape(&gw.admin_url("/metrics"))
        .await
        .samples
        .into_iter()
        .filter(|sample| sample.labels.is_empty())
        .map(|sample| (sample.name, sample.value as u64))
        .collect()
}

pub async fn metric(gw: &Gateway, name: &str) -> u64 {
    *metrics(gw)
        .await
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Waits until `name` satisfies `ok`, returning that value; fails the test
/// when it does not within `within`.
pub async fn wait_metric(
    gw: &Gateway,
    name: &str,
    within: Duration,
    ok: impl Fn(u64) -> bool,
) -> u64 {
    super::wait::eventually(
        &format!("{name} to reach its expected value"),
        within,
        async || Some(metric(gw, name).await).filter(|value| ok(*value)),
    )
    .await
}

/// Waits until the writer has taken every queued record.
pub async fn wait_queue_empty(gw: &Gateway) {
    let depth = wait_metric(
        gw,
        "promptgate_audit_queue_depth",
        Duration::from_secs(5),
        |v| v == 0,
    )
    .await;
    assert_eq!(depth, 0, "the audit writer did not catch up");
}

/// Waits (up to `within`) until every record written so far is uploaded:
/// the records written and uploaded.
pub async fn wait_all_uploaded(gw: &Gateway, within: Duration) -> (u64, u64) {
    wait_queue_empty(gw).await;
    let written = metric(gw, "promptgate_audit_records_written_total").await;
    let uploaded = wait_metric(gw, "promptgate_audit_records_uploaded_total", within, |v| {
        v >= written
    })
    .await;
    (written, uploaded)
}

/// Records per request id.
pub fn counts_by_request_id<'a>(
    records: impl IntoIterator<Item = &'a Value>,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for record in records {
        let id = record["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("record without request_id: {record}"));
        *counts.entry(id.to_owned()).or_insert(0) += 1;
    }
    counts
}

pub fn assert_no_duplicates(counts: &HashMap<String, usize>) {
    let mut duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    duplicated.sort();
    assert!(
        duplicated.is_empty(),
        "records stored more than once: {duplicated:?}"
    );
}

/// Every request that got a whole 200 has exactly one record.
pub fn assert_each_once<'a>(counts: &HashMap<String, usize>, ids: impl Iterator<Item = &'a str>) {
    assert_no_duplicates(counts);
    let missing: Vec<&str> = ids.filter(|id| !counts.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} served requests have no record, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// Records whose request id the load never sent.
pub fn assert_only_known(counts: &HashMap<String, usize>, sent: &[Sent]) {
    let known: std::collections::HashSet<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    let foreign: Vec<_> = counts
        .keys()
        .filter(|id| !known.contains(id.as_str()))
        .collect();
    assert!(
        foreign.is_empty(),
        "records of unknown requests: {foreign:?}"
    );
}

pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

pub fn assert_spool_empty(workdir: &Path) {
    for sub in ["open", "sealed"] {
        let left = files_in(&workdir.join("spool").join(sub));
        assert!(left.is_empty(), "spool/{sub} still holds {left:?}");
    }
}

pub fn summary(sent: &[Sent]) -> String {
    let ok = sent.iter().filter(|s| s.complete_ok()).count();
    let errors = sent.iter().filter(|s| s.error.is_some()).count();
    format!(
        "{} sent, {ok} complete 200, {errors} broken (transport error, timeout or error event)",
        sent.len()
    )
}

/// Starts the gateway (in a fresh working directory unless one is given). It
/// may be signalled at once: the binary installs its SIGTERM handler before
/// it logs "listening" (see
/// `sigterm_right_after_start_up_still_drains_and_exits_cleanly`).
pub async fn start(workdir: Option<&Path>, config: &str) -> Gateway {
    let fresh;
    let workdir = match workdir {
        Some(dir) => dir,
        None => {
            fresh = tempfile::tempdir().unwrap().keep();
            &fresh
        }
    };
    spawn_in(workdir, config, SECRET_KEY)
        .unwrap_or_else(|log| panic!("the gateway did not start:\n{log}"))
}

pub async fn sigterm(gw: Gateway) {
    tokio::task::spawn_blocking(move || gw.stop())
        .await
        .expect("the gateway must exit 0 on SIGTERM");
}

pub async fn one(client: &TestClient, gw: &Gateway, id: &str) -> Sent {
    call(
        client,
        &gw.url("/v1/chat/completions"),
        id,
        &format!("user-{id}"),
        false,
        0,
    )
    .await
}
