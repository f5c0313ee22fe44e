//! The uploader: turns each sealed segment into gzip JSON Lines objects, one
//! per (date, hour) partition of its records, stores them create-if-absent,
//! and deletes the segment only when every object is stored. Object keys are
//! derived from the segment, so an upload repeated after a crash finds its
//! objects already there: each record lands exactly once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use super::AuditMetrics;
use super::spool::{self, SpoolDirs};
use super::store::{PutOutcome, Store};

const RETRY_BASE: Duration = Duration::from_millis(200);
// Short enough that a spool that refused requests while the store was down
// drains soon after the store is back.
const RETRY_MAX: Duration = Duration::from_secs(5);

pub(super) struct Uploader {
    pub store: Store,
    pub dirs: SpoolDirs,
    /// `""` or `"some/prefix/"`.
    pub key_prefix: String,
    pub instance: String,
    pub metrics: Arc<AuditMetrics>,
    pub sealed: Arc<Notify>,
}

pub struct Object {
    pub key: String,
    pub body: Vec<u8>,
    pub records: usize,
}

#[derive(Deserialize)]
struct Routing<'a> {
    /// A request's start, or when a feedback record was received.
    #[serde(borrow, alias = "ts_received")]
    ts_start: &'a str,
    #[serde(borrow, default)]
    record_type: Option<&'a str>,
}

/// Each kind of record is its own table: requests at `<prefix>/v1/`,
/// feedback at `<prefix>/feedback/v1/`.
fn table_of(record_type: Option<&str>) -> &'static str {
    match record_type {
        Some("feedback") => "feedback/",
        _ => "",
    }
}

/// Groups a segment's records by partition and gzips each group.
pub fn build_objects(
    payloads: &[Vec<u8>],
    key_prefix: &str,
    instance: &str,
    segment: &str,
) -> std::io::Result<Vec<Object>> {
    let mut partitions: BTreeMap<(&str, String, String), Vec<&[u8]>> = BTreeMap::new();
    for payload in payloads {
        let (start, table) = serde_json::from_slice::<Routing<'_>>(payload)
            .map(|r| (r.ts_start, table_of(r.record_type)))
            .unwrap_or(("1970-01-01T00", ""));
        let date = start.get(..10).unwrap_or("1970-01-01").to_owned();
        let hour = start.get(11..13).unwrap_or("00").to_owned();
        partitions
            .entry((table, date, hour))
            .or_default()
            .push(payload);
    }
    let mut objects = Vec::with_capacity(partitions.len());
    for (index, ((table, date, hour), records)) in partitions.into_iter().enumerate() {
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        for record in &records {
            gzip.write_all(record)?;
            gzip.write_all(b"\n")?;
        }
        objects.push(Object {
            key: format!(
                "{key_prefix}{table}v1/dt={date}/hour={hour}/{instance}-{segment}-{index}.jsonl.gz"
            ),
            body: gzip.finish()?,
            records: records.len(),
        });
    }
    Ok(objects)
}

impl Uploader {
    /// Uploads sealed segments until `shutdown` is set; then makes a last pass
    /// bounded by `drain_deadline` (what is left stays for the next start).
    pub async fn run(self, mut shutdown: watch::Receiver<Option<Instant>>) {
        let mut failures = 0u32;
        loop {
            let drain_deadline = *shutdown.borrow();
            let all_done = self.upload_pending(drain_deadline).await;
            if drain_deadline.is_some() {
                if !all_done {
                    tracing::warn!(
                        "audit upload did not finish within the grace period: the rest stays in the spool for the next start"
                    );
                }
                return;
            }
            let pause = if all_done {
                failures = 0;
                Duration::from_secs(3600)
            } else {
                failures = failures.saturating_add(1);
                RETRY_BASE
                    .saturating_mul(1 << failures.min(8))
                    .min(RETRY_MAX)
            };
            tokio::select! {
                () = self.sealed.notified() => {}
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Returns true when the spool had nothing left to upload.
    async fn upload_pending(&self, deadline: Option<Instant>) -> bool {
        let segments = match spool::segments_in(&self.dirs.sealed) {
            Ok(segments) => segments,
            Err(error) => {
                tracing::error!(%error, "cannot list the audit spool");
                return false;
            }
        };
        for segment in segments {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let upload = self.upload_segment(&segment);
            let result = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), upload)
                    .await
                    .unwrap_or(Err(())),
                None => upload.await,
            };
            if result.is_err() {
                return false;
            }
        }
        true
    }

    async fn upload_segment(&self, path: &Path) -> Result<(), ()> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (prefix, instance, owned_path) = (
            self.key_prefix.clone(),
            self.instance.clone(),
            path.to_owned(),
        );
        let quarantine = self.dirs.quarantine.clone();
        let built = tokio::task::spawn_blocking(move || {
            prepare(&owned_path, &quarantine, &prefix, &instance, &name)
        })
        .await;
        let (objects, size) = match built {
            Ok(Ok(built)) => built,
            Ok(Err(error)) => {
                tracing::error!(%error, segment = %path.display(), "cannot read an audit spool segment");
                return Err(());
            }
            Err(_) => return Err(()),
        };
        for object in objects {
            let key = object.key.clone();
            match self.store.put_if_absent(&object.key, object.body).await {
                Ok(PutOutcome::Created) => {
                    self.metrics
                        .objects_uploaded
                        .fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .records_uploaded
                        .fetch_add(object.records as u64, Ordering::Relaxed);
                }
                Ok(PutOutcome::AlreadyExists) => {
                    tracing::info!(%key, "audit object already stored by an earlier attempt");
                }
                Err(error) => {
                    self.metrics.upload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, %key, "audit upload failed; will retry");
                    return Err(());
                }
            }
        }
        if let Err(error) = std::fs::remove_file(path) {
            tracing::error!(%error, segment = %path.display(), "cannot delete an uploaded audit segment");
            return Err(());
        }
        let _ =
            self.metrics
                .spool_segments
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        // Saturating: the writer adds concurrently, and a recovered segment's
        // size may differ from what was counted at start-up.
        let _ = self
            .metrics
            .spool_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(size))
            });
        Ok(())
    }
}

/// Reads and checks a sealed segment (quarantining a corrupt tail) and builds its objects.
fn prepare(
    path: &Path,
    quarantine: &Path,
    prefix: &str,
    instance: &str,
    name: &str,
) -> std::io::Result<(Vec<Object>, u64)> {
    let read = spool::read_segment(path)?;
    if !read.is_intact() {
        let dirs = SpoolDirs {
            open: PathBuf::new(),
            sealed: path.parent().map(Path::to_owned).unwrap_or_default(),
            quarantine: quarantine.to_owned(),
        };
        let target = spool::quarantine_tail(path, &read, &dirs)?;
        tracing::warn!(segment = %path.display(), quarantined = %target.display(), "corrupt audit spool segment: good records kept, the rest quarantined");
    }
    let objects = build_objects(&read.payloads, prefix, instance, name)?;
    Ok((objects, read.total_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn objects_per_partition_with_hive_keys() {
        let payloads: Vec<Vec<u8>> = [
            r#"{"ts_start":"2026-11-26T04:59:59.999Z","request_id":"a"}"#,
            r#"{"ts_start":"2026-11-26T05:00:00.000Z","request_id":"b"}"#,
            r#"{"ts_start":"2026-11-26T04:10:00.000Z","request_id":"c"}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let objects = build_objects(&payloads, "audit/", "gw-1", "seg9").unwrap();
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "audit/v1/dt=2026-11-26/hour=04/gw-1-seg9-0.jsonl.gz",
                "audit/v1/dt=2026-11-26/hour=05/gw-1-seg9-1.jsonl.gz"
            ]
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&objects[0].body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        assert_eq!(objects[0].records, 2);
        // Feedback records go to their own table.
        let feedback = vec![
            br#"{"record_type":"feedback","ts_received":"2026-11-26T04:00:00.000Z"}"#.to_vec(),
        ];
        let objects_fb = build_objects(&feedback, "audit/", "gw-1", "seg9").unwrap();
        assert_eq!(
            objects_fb[0].key,
            "audit/feedback/v1/dt=2026-11-26/hour=04/gw-1-seg9-0.jsonl.gz"
        );
        // Same segment, same keys: a repeated upload is idempotent.
        let again = build_objects(&payloads, "audit/", "gw-1", "seg9").unwrap();
        assert_eq!(
            again.iter().map(|o| &o.key).collect::<Vec<_>>(),
            objects.iter().map(|o| &o.key).collect::<Vec<_>>()
        );
    }
}
