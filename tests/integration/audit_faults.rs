//! The audit log under real faults, against the real binary under load:
//! a full spool disk (a small tmpfs, filled: ENOSPC), a read-only spool
//! (EROFS), the spool directory removed under load, a full disk under the
//! local sink's directory, and an S3 that answers slowly or fails
//! intermittently with 500s and 403s (a fault-injecting proxy in front of
//! SeaweedFS). Each run is counted by request id (tests/support/load.rs):
//!
//! - `strict` durability (with `on_spool_full = "reject"`): every response a
//!   caller saw complete (a 200 with its whole body) has its record in the
//!   store after recovery; what could not be recorded was refused (503).
//! - `buffered` durability (with `on_spool_full = "drop"`): everyone is
//!   served; what is missing from the store is exactly what the
//!   `promptgate_audit_records_dropped_*_total` counters say.
//! - In both: `/readyz` is not ready during the fault and ready after it,
//!   the gateway recovers by itself, never crashes, and logs a handful of
//!   ERROR lines per incident, not one per record.
//!
//! The disk faults need root (mounts); without it they say so and stop, and
//! fail under `CI=true`. Each run prints its figures (`--no-capture`).
//! docs/audit-schema.md ("Durability: what survives what") lists each row.

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::faults::{ReadOnlyBind, ReadyLog, ReadyWatch, Tmpfs, mounts_available};
use support::load::{
    Sent, assert_each_once, assert_no_duplicates, assert_only_known, assert_spool_empty,
    counts_by_request_id, metric, metrics, one, sigterm, start, start_load, summary,
    wait_all_uploaded, wait_metric,
};
use support::process::{Gateway, audit_config, local_audit_config};
use support::s3::S3Server;
use support::s3_faults::{ProxyCounts, S3Fault, S3FaultProxy};

// ---------------------------------------------------------------------------
// The spool's disk
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpoolFault {
    /// The spool's file system is full (ENOSPC) until the filler goes.
    Full,
    /// The spool turns read-only (EROFS) until the read-only mount goes.
    ReadOnly,
    /// The spool directory is deleted, once, under load.
    Vanished,
}

#[derive(Debug, Clone, Copy)]
struct Mode {
    durability: &'static str,
    on_spool_full: &'static str,
}

const STRICT: Mode = Mode {
    durability: "strict",
    on_spool_full: "reject",
};
const BUFFERED: Mode = Mode {
    durability: "buffered",
    on_spool_full: "drop",
};

/// How long a fault is held: at least long enough for a few of the writer's
/// recovery probes to fail (100, 200, 400 ms apart), at most this when the
/// gateway does not react to it.
const FAULT_HOLD_MIN: Duration = Duration::from_secs(1);
const FAULT_HOLD_MAX: Duration = Duration::from_secs(4);
/// Refusals or counted losses to see during the fault before lifting it.
const FAULT_EVIDENCE: u64 = 10;

/// What one fault run saw.
struct FaultRun {
    label: String,
    sent: Vec<Sent>,
    fault_started: Instant,
    /// When the fault was fully in place (for `Vanished`: the directory gone).
    fault_in_place: Instant,
    /// When the fault was lifted (for `Vanished`: when it stopped being watched).
    fault_ended: Instant,
    /// From the end of the fault to `/readyz` ready and a request served
    /// again, and that request's id (its record must be stored).
    recovered: Option<(Duration, String)>,
    ready: ReadyLog,
    /// `/metrics` after the load, before the stop.
    metrics: HashMap<String, u64>,
    counts: HashMap<String, usize>,
    error_lines: Vec<Value>,
}

impl FaultRun {
    fn served(&self) -> impl Iterator<Item = &Sent> {
        self.sent.iter().filter(|s| s.complete_ok())
    }

    /// Requests a caller saw complete whose record is not in the store.
    fn missing(&self) -> Vec<&Sent> {
        self.served()
            .filter(|s| !self.counts.contains_key(&s.id))
            .collect()
    }

    /// Every record loss the gateway counted.
    fn counted_losses(&self) -> u64 {
        self.metrics
            .iter()
            .filter(|(name, _)| {
                name.starts_with("promptgate_audit_records_dropped_") && name.ends_with("_total")
            })
            .map(|(_, v)| v)
            .sum()
    }

    fn status_count(&self, status: u16) -> usize {
        self.sent
            .iter()
            .filter(|s| s.status == Some(status))
            .count()
    }

    /// Each distinct ERROR message with how often it was logged.
    fn error_messages(&self) -> Vec<(String, usize)> {
        let mut messages: Vec<(String, usize)> = Vec::new();
        for line in &self.error_lines {
            let message = line["fields"]["message"].as_str().unwrap_or_default();
            match messages.iter_mut().find(|(m, _)| m == message) {
                Some((_, n)) => *n += 1,
                None => messages.push((message.to_owned(), 1)),
            }
        }
        messages
    }

    fn report(&self) {
        let stream_errors = self
            .sent
            .iter()
            .filter(|s| s.status == Some(200) && s.error.is_some())
            .count();
        let after_done = self.sent.iter().filter(|s| s.error_after_done).count();
        eprintln!(
            "{}: {}; {} answered 503, {stream_errors} streams ended with an error event, {after_done} had one after [DONE]; \
             {} records stored, {} completed requests missing, {} losses counted; \
             not ready for {:?} (reasons {:?}); fault held {:?}; served again {:?} after it; \
             {} ERROR log lines {:?}",
            self.label,
            summary(&self.sent),
            self.status_count(503),
            self.counts.len(),
            self.missing().len(),
            self.counted_losses(),
            self.ready.not_ready_for(),
            self.ready.reasons(),
            self.fault_ended.duration_since(self.fault_started),
            self.recovered.as_ref().map(|r| r.0),
            self.error_lines.len(),
            self.error_messages(),
        );
    }
}

/// The gateway's ERROR lines (JSON log) written so far.
fn error_lines(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["level"] == "ERROR")
        .collect()
}

/// Waits until records are being uploaded: the pipeline works before a fault.
async fn wait_uploads_flowing(gw: &Gateway) {
    let uploaded = wait_metric(
        gw,
        "promptgate_audit_records_uploaded_total",
        Duration::from_secs(10),
        |v| v >= 20,
    )
    .await;
    assert!(uploaded >= 20, "no uploads before the fault: {uploaded}");
}

/// Refusals plus counted losses, from `/metrics`.
async fn refused_or_dropped(gw: &Gateway) -> u64 {
    metrics(gw)
        .await
        .iter()
        .filter(|(name, _)| {
            *name == "promptgate_audit_requests_rejected_total"
                || name.starts_with("promptgate_audit_records_dropped_")
        })
        .map(|(_, v)| v)
        .sum()
}

/// Every stored object decodes whole, and the store holds nothing else (no
/// temporary or half-written file).
fn stored_records(store: &Path) -> Vec<Value> {
    let mut pending = vec![store.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                assert!(
                    path.to_string_lossy().ends_with(".jsonl.gz"),
                    "a stray file in the store: {}",
                    path.display()
                );
            }
        }
    }
    support::local_audit_records(store)
}

/// Load, a healthy phase, the fault, its end, recovery, SIGTERM; `None` when
/// mounts are not available here.
async fn spool_fault_run(label: &str, fault: SpoolFault, mode: Mode) -> Option<FaultRun> {
    if !mounts_available(label) {
        return None;
    }
    let workdir = tempfile::tempdir().unwrap();
    let spool = workdir.path().join("spool");
    let store = workdir.path().join("audit");
    // Declared after `workdir`, dropped before it: unmounted however the test ends.
    let tmpfs = (fault == SpoolFault::Full).then(|| Tmpfs::mount(&spool, "8m"));
    let config = local_audit_config(
        &store,
        &format!(
            "durability = \"{}\"\non_spool_full = \"{}\"",
            mode.durability, mode.on_spool_full
        ),
    );
    let gw = start(Some(workdir.path()), &config).await;
    let ready = ReadyWatch::start(gw.admin_url("/readyz"));
    assert!(
        ready.wait_for(Duration::from_secs(5), |s| s.ready).await,
        "not ready at start: {:?}",
        ready.samples().last()
    );
    let load = start_load(&gw, label, 4);
    wait_uploads_flowing(&gw).await;

    let before = refused_or_dropped(&gw).await;
    let fault_started = Instant::now();
    let lift: Box<dyn FnOnce()> = match fault {
        SpoolFault::Full => {
            let filler = tmpfs.as_ref().unwrap().fill();
            Box::new(move || filler.release())
        }
        SpoolFault::ReadOnly => {
            let read_only = ReadOnlyBind::over(&spool);
            Box::new(move || read_only.remove())
        }
        SpoolFault::Vanished => {
            remove_under_load(&spool);
            Box::new(|| {})
        }
    };
    let fault_in_place = Instant::now();
    // Held until the gateway reacted (not ready, and refusing or counting
    // losses) and for FAULT_HOLD_MIN, or for FAULT_HOLD_MAX if it does not
    // react. A removed directory is the whole fault: watched until noticed.
    let hold_until = fault_started + FAULT_HOLD_MAX;
    while Instant::now() < hold_until {
        let unready = ready
            .samples()
            .iter()
            .any(|s| !s.ready && s.at >= fault_started);
        if unready && fault == SpoolFault::Vanished {
            break;
        }
        if unready
            && fault_started.elapsed() >= FAULT_HOLD_MIN
            && refused_or_dropped(&gw).await >= before + FAULT_EVIDENCE
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lift();
    let fault_ended = Instant::now();

    let mut probes = Vec::new();
    let recovered = serve_again(&gw, &ready, fault_ended, &mut probes).await;
    let mut sent = load.finish().await;
    sent.extend(probes);
    // A last request after the load: once its record is stored, so is every
    // record written before it (segments are uploaded oldest first); then the
    // counters are read. (Waiting for uploaded >= written would not end when
    // written records were deleted with the spool directory.)
    let last = one(&support::client(), &gw, &format!("{label}-last")).await;
    assert!(
        last.complete_ok(),
        "the last request was not served: {last:?}"
    );
    let last_id = last.id.clone();
    sent.push(last);
    support::wait_for_audit(&store, |records| {
        records.iter().any(|r| r["request_id"] == last_id.as_str())
    })
    .await;
    let ready_after = ready.wait_for(Duration::from_secs(10), |s| s.ready).await;
    let final_metrics = metrics(&gw).await;
    let mut gw = gw;
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the gateway exited during the run:\n{}",
        gw.log()
    );
    let ready = ready.stop().await;
    let errors = error_lines(&gw);
    let log = gw.log();
    sigterm(gw).await;
    drop(tmpfs);

    let records = stored_records(&store);
    let run = FaultRun {
        label: label.to_owned(),
        counts: counts_by_request_id(&records),
        sent,
        fault_started,
        fault_in_place,
        fault_ended,
        recovered,
        ready,
        metrics: final_metrics,
        error_lines: errors,
    };
    run.report();
    assert!(
        run.ready.unreachable().is_empty(),
        "the admin listener stopped answering: {:?}",
        run.ready.unreachable().first()
    );
    assert!(
        ready_after,
        "not ready after the fault: {:?}",
        run.ready.reasons()
    );
    let Some((_, probe)) = &run.recovered else {
        panic!("not ready and serving within 15 s after the fault ended; log:\n{log}");
    };
    assert!(
        run.counts.contains_key(probe),
        "the request served after recovery ({probe}) has no record: the gateway does not record again by itself"
    );
    assert_no_duplicates(&run.counts);
    assert_only_known(&run.counts, &run.sent);
    Some(run)
}

/// Deletes the directory tree while the gateway writes into it (a retry when
/// a file appeared in it between listing and removal).
fn remove_under_load(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => assert!(Instant::now() < deadline, "removing {}: {e}", dir.display()),
        }
    }
}

/// Waits for `/readyz` to answer "ready" after `since`, then sends single
/// requests (kept in `probes`) until one is served whole: how long after
/// `since`, and its id.
async fn serve_again(
    gw: &Gateway,
    ready: &ReadyWatch,
    since: Instant,
    probes: &mut Vec<Sent>,
) -> Option<(Duration, String)> {
    let within = Duration::from_secs(15);
    if !ready.wait_for(within, |s| s.ready && s.at > since).await {
        return None;
    }
    let client = support::client();
    while since.elapsed() < within {
        let probe = one(&client, gw, &format!("probe-after-fault-{}", probes.len())).await;
        let served = probe.complete_ok().then(|| probe.id.clone());
        probes.push(probe);
        if let Some(id) = served {
            return Some((since.elapsed(), id));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Strict mode: every response a caller saw complete is stored, whatever was
/// refused; `/readyz` said so during the fault; a few ERROR lines, not one
/// per record.
fn assert_strict(run: &FaultRun) {
    assert_each_once(&run.counts, run.served().map(|s| s.id.as_str()));
    assert_reacted(run);
    assert_strict_answers(run);
}

/// No stream said `[DONE]` before its record was durable, and every refusal
/// is the dialect's 503.
fn assert_strict_answers(run: &FaultRun) {
    let late: Vec<&str> = run
        .sent
        .iter()
        .filter(|s| s.error_after_done)
        .map(|s| s.id.as_str())
        .collect();
    assert!(
        late.is_empty(),
        "{} streams sent `data: [DONE]` before their record was durable (the error event came after it, where an SDK never reads), e.g. {:?}",
        late.len(),
        late.first()
    );
    let refused = run.sent.iter().filter(|s| s.status == Some(503));
    for reply in refused {
        let error: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("a 503 that is not JSON ({e}): {reply:?}"));
        assert_eq!(error["error"]["code"], "audit_unavailable", "{error}");
    }
}

/// Buffered mode with the drop policy: everyone is served, and what the
/// store misses is exactly what was counted as lost.
fn assert_buffered(run: &FaultRun) {
    let not_served: Vec<&Sent> = run.sent.iter().filter(|s| !s.complete_ok()).collect();
    assert!(
        not_served.is_empty(),
        "the drop policy serves everyone: {} not served, e.g. {:?}",
        not_served.len(),
        not_served.first()
    );
    assert_eq!(
        run.missing().len() as u64,
        run.counted_losses(),
        "records missing from the store vs. losses counted"
    );
    assert_reacted(run);
}

fn assert_reacted(run: &FaultRun) {
    assert!(
        run.ready
            .not_ready_between(run.fault_started, run.fault_ended + Duration::from_secs(1)),
        "/readyz never said \"not ready\" during the fault"
    );
    let reasons = run.ready.reasons();
    assert!(
        reasons.iter().any(|r| r.contains("spool")),
        "/readyz did not name the spool as the reason: {reasons:?}"
    );
    // The fault is steady (one incident): one ERROR from the writer, and a
    // few from the uploader's retries; one per record is what this rules out.
    let writer = run
        .error_lines
        .iter()
        .filter(|line| line["target"] == "promptgate::audit::writer")
        .count();
    assert_eq!(
        writer,
        1,
        "writer ERROR lines for one incident: {:?}",
        run.error_messages()
    );
    assert!(
        run.error_lines.len() <= 10,
        "{} ERROR lines for one incident: {:?}",
        run.error_lines.len(),
        run.error_messages()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_spool_disk_in_strict_mode_loses_no_completed_response() {
    if let Some(run) = spool_fault_run("enospc-strict", SpoolFault::Full, STRICT).await {
        assert_strict(&run);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_spool_disk_in_buffered_mode_counts_every_lost_record() {
    if let Some(run) = spool_fault_run("enospc-buffered", SpoolFault::Full, BUFFERED).await {
        assert_buffered(&run);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_spool_in_strict_mode_loses_no_completed_response() {
    if let Some(run) = spool_fault_run("erofs-strict", SpoolFault::ReadOnly, STRICT).await {
        assert_strict(&run);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_spool_in_buffered_mode_counts_every_lost_record() {
    if let Some(run) = spool_fault_run("erofs-buffered", SpoolFault::ReadOnly, BUFFERED).await {
        assert_buffered(&run);
    }
}

/// Records already durable in the deleted directory go with it (an operator
/// deleted them); what the gateway is responsible for is every request that
/// completed after the directory was gone.
fn completed_after_removal<'a>(run: &'a FaultRun, missing: &[&'a Sent]) -> Vec<&'a Sent> {
    missing
        .iter()
        .copied()
        .filter(|s| s.completed_at.is_some_and(|t| t > run.fault_in_place))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_spool_directory_in_strict_mode_loses_no_later_response() {
    let Some(run) = spool_fault_run("vanished-strict", SpoolFault::Vanished, STRICT).await else {
        return;
    };
    assert_reacted(&run);
    assert_strict_answers(&run);
    let missing = run.missing();
    let after = completed_after_removal(&run, &missing);
    eprintln!(
        "vanished-strict: {} missing records completed before the directory was gone, {} after",
        missing.len() - after.len(),
        after.len()
    );
    assert!(
        after.is_empty(),
        "{} requests completed after the spool directory was removed have no record, e.g. {:?}",
        after.len(),
        after.first().map(|s| &s.id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_spool_directory_in_buffered_mode_counts_every_later_loss() {
    let Some(run) = spool_fault_run("vanished-buffered", SpoolFault::Vanished, BUFFERED).await
    else {
        return;
    };
    assert_reacted(&run);
    let missing = run.missing();
    let after = completed_after_removal(&run, &missing);
    let counted = run.counted_losses();
    eprintln!(
        "vanished-buffered: {} missing ({} completed after the removal), {counted} counted",
        missing.len(),
        after.len()
    );
    // A record written to the deleted directory before the gateway noticed
    // may be counted or not; every loss after it must be, and nothing
    // stored may be counted.
    assert!(
        after.len() as u64 <= counted && counted <= missing.len() as u64,
        "missing after the removal {} <= counted {counted} <= missing {}",
        after.len(),
        missing.len()
    );
}

/// Strict mode as the official SDKs see it (tests/sdk_faults/, which fills
/// the spool's disk itself): a stream whose record could not be written
/// ends with the dialect's error event, a JSON call is refused with the
/// dialect's 503, both raise; once the disk has room they are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_spool_failures_reach_both_sdks_as_errors() {
    const LABEL: &str = "sdk-strict-enospc";
    if !mounts_available(LABEL) {
        return;
    }
    let workdir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(&workdir.path().join("spool"), "8m");
    let config = local_audit_config(
        &workdir.path().join("audit"),
        "durability = \"strict\"\non_spool_full = \"reject\"",
    );
    let gw = start(Some(workdir.path()), &config).await;
    support::pytest::run(
        "sdk_faults",
        "the pinned openai/anthropic/pytest packages",
        vec![
            ("PROMPTGATE_BASE_URL", format!("http://{}", gw.addr)),
            ("PROMPTGATE_SPOOL_DISK", tmpfs.path.display().to_string()),
        ],
    )
    .await;
    sigterm(gw).await;
}

// ---------------------------------------------------------------------------
// The store's disk
// ---------------------------------------------------------------------------

/// The local sink's directory on a full file system: every upload fails
/// (retried, the spool grows) until space returns; then everything is
/// stored, once, whole, and nothing half-written is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_store_disk_delays_uploads_and_loses_nothing() {
    const LABEL: &str = "store-enospc";
    if !mounts_available(LABEL) {
        return;
    }
    let workdir = tempfile::tempdir().unwrap();
    let store = workdir.path().join("audit");
    let tmpfs = Tmpfs::mount(&store, "4m");
    let config = local_audit_config(&store, "[admin]\nreadiness_audit_failure_ms = 500");
    let gw = start(Some(workdir.path()), &config).await;
    let ready = ReadyWatch::start(gw.admin_url("/readyz"));
    let load = start_load(&gw, LABEL, 4);
    wait_uploads_flowing(&gw).await;
    let filler = tmpfs.fill();
    let fault_started = Instant::now();
    let failures = wait_metric(
        &gw,
        "promptgate_audit_upload_failures_total",
        Duration::from_secs(10),
        |v| v >= 3,
    )
    .await;
    let unready = ready.wait_for(Duration::from_secs(5), |s| !s.ready).await;
    let spool_in_fault = metric(&gw, "promptgate_audit_spool_bytes").await;
    filler.release();
    let fault_ended = Instant::now();
    let sent = load.finish().await;
    let (written, uploaded) = wait_all_uploaded(&gw, Duration::from_secs(15)).await;
    let caught_up = fault_ended.elapsed();
    let ready_after = ready.wait_for(Duration::from_secs(5), |s| s.ready).await;
    let ready = ready.stop().await;
    sigterm(gw).await;
    let records = stored_records(&store);
    drop(tmpfs);
    let counts = counts_by_request_id(&records);
    eprintln!(
        "{LABEL}: {}; {failures} upload failures, spool {spool_in_fault} bytes in the fault \
         ({:?}); {uploaded} of {written} uploaded {caught_up:?} after it; {} records; \
         not ready for {:?} ({:?})",
        summary(&sent),
        fault_ended.duration_since(fault_started),
        counts.len(),
        ready.not_ready_for(),
        ready.reasons()
    );
    assert!(
        failures >= 3,
        "uploads to a full disk must fail and be retried"
    );
    assert!(unready, "/readyz stayed ready while uploads failed");
    assert!(ready_after, "not ready after the fault");
    assert!(
        sent.iter().all(Sent::complete_ok),
        "a full store disk must not fail requests: {}",
        summary(&sent)
    );
    assert_each_once(&counts, sent.iter().map(|s| s.id.as_str()));
    assert_only_known(&counts, &sent);
}

/// `spool_max_bytes = "auto"` on a small volume: the cap is a share of what
/// the spool's file system holds, its free bytes are on `/metrics`, and with
/// the store failing (a read-only local sink) the spool stops at that cap with
/// 503s, before its disk is full; once the store takes writes again every
/// served request's record is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_auto_spool_cap_refuses_before_the_volume_is_full() {
    const LABEL: &str = "auto-cap";
    const VOLUME: u64 = 2 << 20;
    if !mounts_available(LABEL) {
        return;
    }
    let workdir = tempfile::tempdir().unwrap();
    let store = workdir.path().join("audit");
    std::fs::create_dir_all(&store).unwrap();
    let tmpfs = Tmpfs::mount(&workdir.path().join("spool"), "2m");
    let config = local_audit_config(
        &store,
        "spool_max_bytes = \"auto\"\non_spool_full = \"reject\"",
    );
    let gw = start(Some(workdir.path()), &config).await;
    let at_start = metrics(&gw).await;
    let (free, cap) = (
        at_start["promptgate_audit_spool_free_bytes"],
        at_start["promptgate_audit_spool_cap_bytes"],
    );
    assert!(
        free > VOLUME / 2 && free <= VOLUME,
        "free bytes {free} on a {VOLUME}-byte volume"
    );
    assert!(
        cap > 0 && cap < free,
        "auto cap {cap} with {free} bytes free"
    );
    let read_only_store = ReadOnlyBind::over(&store);
    let ready = ReadyWatch::start(gw.admin_url("/readyz"));
    let load = start_load(&gw, LABEL, 4);
    let rejected = wait_metric(
        &gw,
        "promptgate_audit_requests_rejected_total",
        Duration::from_secs(20),
        |v| v >= 10,
    )
    .await;
    let at_cap = metrics(&gw).await;
    read_only_store.remove();
    let store_back = Instant::now();
    let mut probes = Vec::new();
    let recovered = serve_again(&gw, &ready, store_back, &mut probes).await;
    let mut sent = load.finish().await;
    sent.extend(probes);
    wait_all_uploaded(&gw, Duration::from_secs(15)).await;
    let ready = ready.stop().await;
    sigterm(gw).await;
    let counts = counts_by_request_id(&stored_records(&store));
    drop(tmpfs);
    eprintln!(
        "{LABEL}: {}; {} answered 503; volume {VOLUME}, {free} free at start, auto cap {cap}; \
         at the first refusals: spool {} bytes, {} free, {} spool failures; \
         served again {recovered:?} after the store took writes; not ready for {:?} ({:?}); {} records",
        summary(&sent),
        sent.iter().filter(|s| s.status == Some(503)).count(),
        at_cap["promptgate_audit_spool_bytes"],
        at_cap["promptgate_audit_spool_free_bytes"],
        at_cap["promptgate_audit_spool_failures_total"],
        ready.not_ready_for(),
        ready.reasons(),
        counts.len()
    );
    assert!(rejected >= 10, "the spool never reached its auto cap");
    assert_eq!(
        at_cap["promptgate_audit_spool_failures_total"], 0,
        "the volume filled up before the auto cap applied"
    );
    assert!(
        recovered.is_some(),
        "not serving again after the store came back"
    );
    assert_each_once(
        &counts,
        sent.iter()
            .filter(|s| s.complete_ok())
            .map(|s| s.id.as_str()),
    );
    assert_only_known(&counts, &sent);
}

// ---------------------------------------------------------------------------
// S3
// ---------------------------------------------------------------------------

const BUCKET: &str = "audit";
const PREFIX: &str = "tenant/audit/";

/// Load through the proxy with `fault` until `enough` says the fault showed,
/// then without it until everything is uploaded; every request served, every
/// record stored exactly once.
async fn s3_fault_run(label: &str, fault: S3Fault, enough: impl Fn(&ProxyCounts) -> bool) {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    s3.wait_writable(BUCKET).await;
    let proxy = S3FaultProxy::start(&s3.endpoint).await;
    let workdir = tempfile::tempdir().unwrap(); // removed at the end, unlike `start(None, …)`'s
    let gw = start(
        Some(workdir.path()),
        &audit_config(&proxy.endpoint, BUCKET, ""),
    )
    .await;
    let load = start_load(&gw, label, 4);
    proxy.set(fault);
    let fault_started = Instant::now();
    let deadline = fault_started + Duration::from_secs(20);
    let mut max_backlog = 0;
    while !enough(proxy.counts()) {
        assert!(
            Instant::now() < deadline,
            "{label}: the fault did not show within 20 s: {}",
            proxy.counts().describe()
        );
        max_backlog = max_backlog.max(metric(&gw, "promptgate_audit_spool_segments").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failures = metric(&gw, "promptgate_audit_upload_failures_total").await;
    proxy.set(S3Fault::None);
    let fault_ended = Instant::now();
    let sent = load.finish().await;
    let written = metric(&gw, "promptgate_audit_records_written_total").await;
    let spool = wait_metric(
        &gw,
        "promptgate_audit_spool_bytes",
        Duration::from_secs(20),
        |v| v == 0,
    )
    .await;
    let caught_up = fault_ended.elapsed();
    sigterm(gw).await;
    let records: Vec<Value> = s3
        .records(BUCKET, PREFIX)
        .await
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let counts = counts_by_request_id(&records);
    eprintln!(
        "{label}: {}; fault {:?}: {}; {failures} upload failures seen by the gateway, \
         up to {max_backlog} sealed segments waiting; {written} written, spool empty {caught_up:?} \
         after the fault; {} records stored",
        summary(&sent),
        fault_ended.duration_since(fault_started),
        proxy.counts().describe(),
        counts.len()
    );
    assert_eq!(spool, 0, "the spool did not drain after the fault");
    let not_served: Vec<&Sent> = sent.iter().filter(|s| !s.complete_ok()).collect();
    assert!(
        not_served.is_empty(),
        "a slow or failing S3 must not fail requests: {}, e.g. {:?}",
        summary(&sent),
        not_served.first()
    );
    assert_each_once(&counts, sent.iter().map(|s| s.id.as_str()));
    assert_only_known(&counts, &sent);
    assert_spool_empty(workdir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_s3_is_absorbed_by_the_spool_and_loses_nothing() {
    s3_fault_run(
        "s3-slow",
        S3Fault::SlowPuts(Duration::from_millis(2500)),
        |c| ProxyCounts::get(&c.delayed) >= 2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_failing_with_500_and_403_stores_every_record_exactly_once() {
    s3_fault_run("s3-flaky", S3Fault::FlakyPuts, |c| {
        ProxyCounts::get(&c.refused_500) >= 3
            && ProxyCounts::get(&c.refused_403) >= 3
            && ProxyCounts::get(&c.stored_then_500) >= 3
    })
    .await;
}
