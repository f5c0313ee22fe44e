//! The audit uploader's memory: fills one sealed spool segment with realistic
//! records (bodies logged, ~1.1 KB each, two hour partitions plus feedback),
//! starts the audit pipeline on it with the local sink, waits until the
//! segment is uploaded, and reports the process's peak RSS during the upload:
//!
//!     cargo run --release --example audit_upload_memory -- DIR [SEGMENT_MIB]
//!
//! The peak is reset (`/proc/self/clear_refs`) after the segment is written,
//! so it covers start-up of the pipeline and the upload only. Linux only.
//! Uses only APIs that predate the streaming uploader, so the same file
//! measures older commits too (loadtest/RESULTS.md, "Audit uploader memory").

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use promptgate::audit::spool::{Segment, SpoolDirs};
use promptgate_core::config::audit::{
    AuditConfig, Durability, FlushPolicy, ObjectCompression, Redaction, SpoolCap, SpoolFullPolicy,
    StoreConfig,
};

const WORDS: &[&str] = &[
    "the", "model", "answer", "request", "customer", "order", "refund", "policy", "please",
    "thanks", "summary", "account", "shipping", "delivery", "invoice", "support", "question",
    "product", "price", "update", "status", "return", "email", "address", "number", "today",
    "tomorrow", "week", "help", "issue", "resolved", "pending", "details", "confirm", "change",
];

/// xorshift64*: a fixed sequence, so every run writes the same segment.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn text(&mut self, words: usize) -> String {
        let mut out = String::with_capacity(words * 8);
        for i in 0..words {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(WORDS[(self.next() % WORDS.len() as u64) as usize]);
        }
        out
    }
}

fn record(rng: &mut Rng, i: u64) -> Vec<u8> {
    let request_id = format!("{:032x}", rng.next() as u128 * rng.next() as u128);
    // Two hour partitions: the segment is open across the top of the hour.
    let hour = if i.is_multiple_of(3) {
        "04:59"
    } else {
        "05:00"
    };
    let millis = rng.next() % 60_000;
    let ts = format!(
        "2026-11-26T{hour}:{:02}.{:03}Z",
        millis / 1000,
        millis % 1000
    );
    let value = if i % 20 == 19 {
        serde_json::json!({
            "schema_version": 1, "record_type": "feedback", "request_id": request_id,
            "ts_received": ts, "metric": "thumbs_up", "value": rng.next().is_multiple_of(2),
            "comment": rng.text(8),
        })
    } else {
        let (input, output) = (rng.next() % 400 + 20, rng.next() % 300 + 10);
        serde_json::json!({
            "schema_version": 1, "record_type": "request", "request_id": request_id,
            "trace_id": format!("{:032x}", rng.next()), "role": "served", "shadow_of": null,
            "ts_start": ts, "ts_first_byte": ts, "ts_end": ts, "gateway_instance": "gw-bench",
            "config_version": "3f2a9c", "client_id": "team-a", "endpoint": "chat_completions",
            "dialect": "openai", "provider": "openai", "model": "support-bot",
            "upstream_model": "gpt-4o-mini", "stream": rng.next().is_multiple_of(2), "status": 200,
            "outcome": "completed", "error_class": null, "error_message": null, "attempts": 1,
            "experiment": "prompt-v2", "assigned_variant": "treatment",
            "served_variant": "treatment", "unit_key": format!("{:032x}", rng.next()),
            "latency_ms": (rng.next() % 900_000) as f64 / 1000.0,
            "input_tokens": input, "output_tokens": output,
            "cost_usd": (input as f64 * 0.15 + output as f64 * 0.6) / 1e6,
            "request": {"messages": [
                {"role": "system", "content": "You are a helpful support assistant for an online shop."},
                {"role": "user", "content": rng.text(25)},
            ]},
            "response_text": rng.text(60),
        })
    };
    value.to_string().into_bytes()
}

/// A `kB` field of /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn config(dir: &Path) -> AuditConfig {
    AuditConfig {
        store: StoreConfig::Local {
            root: dir.join("store"),
        },
        spool_dir: dir.join("spool"),
        spool_max: SpoolCap::Bytes(1 << 30),
        on_spool_full: SpoolFullPolicy::Reject,
        durability: Durability::Buffered,
        commit_interval: Duration::from_millis(50),
        flush: FlushPolicy {
            records: u64::MAX,
            bytes: u64::MAX,
            interval: Duration::from_secs(3600),
        },
        queue_capacity: 1024,
        instance: "gw-bench".into(),
        unit_key_secret: Some(b"bench".to_vec()),
        log_bodies: true,
        redact: Vec::new(),
        redaction: Redaction::Marker,
        prices: HashMap::new(),
        compression: ObjectCompression::Gzip,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: audit_upload_memory DIR [SEGMENT_MIB]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let mib: u64 = args.next().map_or(Ok(64), |n| n.parse())?;
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(format!("{} must be empty or absent", dir.display()).into());
    }
    let config = config(&dir);

    let dirs = SpoolDirs::create(&config.spool_dir)?;
    let mut segment = Segment::create(&dirs)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut records, mut payload_bytes) = (0u64, 0u64);
    while segment.bytes < mib << 20 {
        let payload = record(&mut rng, records);
        segment.append(&payload)?;
        records += 1;
        payload_bytes += payload.len() as u64;
    }
    let segment_bytes = segment.bytes;
    segment.seal(&dirs)?;
    drop(dirs);

    let rss_before = status_mib("VmRSS:");
    // Resets VmHWM to the current RSS (Linux ≥ 4.0).
    std::fs::write("/proc/self/clear_refs", "5")?;
    let started = Instant::now();
    let (log, tasks) = promptgate::audit::start(&config).await?;
    while log.metrics().spool_bytes.load(Ordering::Relaxed) > 0 {
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the segment was not uploaded within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let upload = started.elapsed();
    let peak = status_mib("VmHWM:");
    let objects = log.metrics().objects_uploaded.load(Ordering::Relaxed);
    let uploaded = log.metrics().records_uploaded.load(Ordering::Relaxed);
    tasks.shutdown(Duration::from_secs(5)).await;
    let stored: u64 = walk(&config.spool_dir.with_file_name("store"));

    println!(
        "segment: {:.1} MiB, {records} records (mean {} B), {objects} objects, {:.1} MiB gzip",
        segment_bytes as f64 / 1048576.0,
        payload_bytes / records.max(1),
        stored as f64 / 1048576.0,
    );
    println!(
        "records uploaded: {uploaded}; upload took {:.2} s",
        upload.as_secs_f64()
    );
    println!(
        "RSS before start: {rss_before:.1} MiB; peak RSS during start + upload: {peak:.1} MiB (+{:.1} MiB)",
        peak - rss_before
    );
    Ok(())
}

/// Bytes of the files under `dir`.
fn walk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
