//! A sealed segment's objects: its records grouped by table and (date, hour)
//! partition, each group one gzip (or zstd: `[audit] compression`) JSON
//! Lines object.
//!
//! The segment is streamed frame by frame into one encoder per partition,
//! and each encoder writes to a file in `<spool>/staging/`: memory holds one
//! record and a few encoders' state (about 300 KiB each), whatever the size
//! of the segment or of its compressed objects. The files are what the store
//! uploads (S3 streams them; the local sink links them into place).
//!
//! Keys are derived from the segment alone (`<instance>-<segment>-<index>`,
//! `index` the partition's rank among the segment's partitions), so an upload
//! repeated after a crash builds the same keys and finds its objects stored.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use promptgate_core::config::audit::ObjectCompression;
use serde::Deserialize;

use super::spool::{self, Frames};

/// Partitions encoded at once. A segment spans at most `flush_interval` (five
/// minutes by default), so it holds one or two hours of each table; more
/// partitions than this (records with odd timestamps) cost another read of the
/// segment per batch of this many, never more memory.
const MAX_OPEN_PARTITIONS: usize = 8;

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

/// Where a record goes. Ordered as the key index is: table, date, hour
/// (byte order, the same as the strings').
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Partition {
    table: &'static str,
    /// `YYYY-MM-DD`.
    date: [u8; 10],
    /// `HH`.
    hour: [u8; 2],
}

impl Partition {
    /// The record's partition; a record that cannot be read goes to
    /// 1970-01-01 hour 00 of the request table rather than being lost.
    fn of(payload: &[u8]) -> Partition {
        let (start, table) = serde_json::from_slice::<Routing<'_>>(payload)
            .map(|r| (r.ts_start, table_of(r.record_type)))
            .unwrap_or(("1970-01-01T00", ""));
        let mut date = *b"1970-01-01";
        if let Some(d) = start.get(..10) {
            date.copy_from_slice(d.as_bytes());
        }
        let mut hour = *b"00";
        if let Some(h) = start.get(11..13) {
            hour.copy_from_slice(h.as_bytes());
        }
        Partition { table, date, hour }
    }

    fn key(&self, naming: &Naming<'_>, index: usize) -> String {
        let Naming {
            key_prefix,
            instance,
            segment,
            compression,
        } = naming;
        // Both came from a `&str` at char boundaries: always UTF-8.
        let date = String::from_utf8_lossy(&self.date);
        let hour = String::from_utf8_lossy(&self.hour);
        let table = self.table;
        let suffix = suffix(*compression);
        format!("{key_prefix}{table}v1/dt={date}/hour={hour}/{instance}-{segment}-{index}{suffix}")
    }
}

/// The object key's (and staged file's) suffix, which tells readers how to
/// decompress it.
fn suffix(compression: ObjectCompression) -> &'static str {
    match compression {
        ObjectCompression::Gzip => ".jsonl.gz",
        ObjectCompression::Zstd => ".jsonl.zst",
    }
}

/// zstd's default level: about gzip's ratio on JSON Lines at several times
/// its speed.
const ZSTD_LEVEL: i32 = 3;

/// A partition's compressor, writing into its staged file.
enum Encoder {
    Gzip(GzEncoder<File>),
    Zstd(zstd::Encoder<'static, File>),
}

impl Encoder {
    fn new(compression: ObjectCompression, file: File) -> io::Result<Encoder> {
        Ok(match compression {
            ObjectCompression::Gzip => {
                Encoder::Gzip(GzEncoder::new(file, flate2::Compression::default()))
            }
            ObjectCompression::Zstd => Encoder::Zstd(zstd::Encoder::new(file, ZSTD_LEVEL)?),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(gzip) => gzip.write_all(bytes),
            Encoder::Zstd(zstd) => zstd.write_all(bytes),
        }
    }

    /// Ends the stream; the file, for its fsync.
    fn finish(self) -> io::Result<File> {
        match self {
            Encoder::Gzip(gzip) => gzip.finish(),
            Encoder::Zstd(zstd) => zstd.finish(),
        }
    }
}

/// What object keys are made of.
pub struct Naming<'a> {
    /// `""` or `"some/prefix/"`.
    pub key_prefix: &'a str,
    pub instance: &'a str,
    /// The segment's name (its file stem).
    pub segment: &'a str,
    pub compression: ObjectCompression,
}

/// One object, compressed and fsynced in the staging directory.
pub struct StagedObject {
    pub key: String,
    pub path: PathBuf,
    pub records: u64,
}

pub struct StagedSegment {
    /// In key-index order.
    pub objects: Vec<StagedObject>,
    /// The segment file's length before any tail was quarantined.
    pub segment_bytes: u64,
}

/// A partition's encoder while the segment is read.
struct OpenObject {
    partition: Partition,
    path: PathBuf,
    encoder: Encoder,
    records: u64,
}

impl OpenObject {
    fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        self.encoder.write_all(payload)?;
        self.encoder.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }
}

/// Builds the objects of the segment at `path` in `staging` (emptied first:
/// whatever is there is left from an earlier attempt). A torn or corrupt tail
/// is moved to `quarantine` and the segment truncated to its valid frames,
/// whose records are all in the objects.
///
/// On failure (a full disk, say) the staging directory is emptied again: a
/// half-written object never stays to take space or be uploaded.
pub fn stage_segment(
    path: &Path,
    staging: &Path,
    quarantine: &Path,
    naming: &Naming<'_>,
) -> io::Result<StagedSegment> {
    clear_dir(staging)?;
    let staged = stage_into(path, staging, quarantine, naming);
    if staged.is_err() {
        let _ = clear_dir(staging);
    }
    staged
}

fn stage_into(
    path: &Path,
    staging: &Path,
    quarantine: &Path,
    naming: &Naming<'_>,
) -> io::Result<StagedSegment> {
    let mut staged: BTreeMap<Partition, (PathBuf, u64)> = BTreeMap::new();
    let mut segment_bytes = None;
    let mut files = 0usize;
    // One pass per batch of `MAX_OPEN_PARTITIONS` partitions; normally one.
    loop {
        let mut frames = Frames::open(path)?;
        let mut open: Vec<OpenObject> = Vec::new();
        let mut deferred = false;
        while let Some(payload) = frames.next_payload()? {
            let partition = Partition::of(payload);
            if let Some(object) = open.iter_mut().find(|o| o.partition == partition) {
                object.write(payload)?;
            } else if staged.contains_key(&partition) {
                // Written by an earlier pass.
            } else if open.len() < MAX_OPEN_PARTITIONS {
                let file_path = staging.join(format!(
                    "{}-{files}{}",
                    naming.segment,
                    suffix(naming.compression)
                ));
                files += 1;
                // `create_new`: a staged file may be hard-linked as a stored
                // object, and must never be written through again.
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&file_path)?;
                let mut object = OpenObject {
                    partition,
                    path: file_path,
                    encoder: Encoder::new(naming.compression, file)?,
                    records: 0,
                };
                object.write(payload)?;
                open.push(object);
            } else {
                deferred = true;
            }
        }
        if segment_bytes.is_none() {
            segment_bytes = Some(frames.total_len());
            if !frames.is_intact() {
                let target = spool::quarantine_tail(path, frames.valid_len(), quarantine)?;
                tracing::warn!(segment = %path.display(), quarantined = %target.display(), "corrupt audit spool segment: good records kept, the rest quarantined");
            }
        }
        for object in open {
            // Synced: the local sink links this very file into place.
            object.encoder.finish()?.sync_all()?;
            staged.insert(object.partition, (object.path, object.records));
        }
        if !deferred {
            break;
        }
    }
    let objects = staged
        .into_iter()
        .enumerate()
        .map(|(index, (partition, (path, records)))| StagedObject {
            key: partition.key(naming, index),
            path,
            records,
        })
        .collect();
    Ok(StagedSegment {
        objects,
        segment_bytes: segment_bytes.unwrap_or(0),
    })
}

/// Removes the staged files; what cannot be removed now is removed before the
/// next segment is staged.
pub fn remove_staged(staged: &StagedSegment) {
    for object in &staged.objects {
        if let Err(error) = fs::remove_file(&object.path) {
            tracing::debug!(%error, path = %object.path.display(), "cannot remove a staged audit object");
        }
    }
}

fn clear_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for entry in fs::read_dir(dir)? {
        fs::remove_file(entry?.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::{Segment, SpoolDirs};
    use std::io::Read;

    /// The uploader before streaming (read the whole segment, group, gzip in
    /// memory), kept as the reference the streamed objects must equal:
    /// (key, records, text).
    fn reference_objects(payloads: &[Vec<u8>], naming: &Naming<'_>) -> Vec<(String, u64, String)> {
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
        let Naming {
            key_prefix,
            instance,
            segment,
            compression,
        } = naming;
        let suffix = suffix(*compression);
        partitions
            .into_iter()
            .enumerate()
            .map(|(index, ((table, date, hour), records))| {
                let mut text = String::new();
                for record in &records {
                    text.push_str(std::str::from_utf8(record).unwrap());
                    text.push('\n');
                }
                (
                    format!("{key_prefix}{table}v1/dt={date}/hour={hour}/{instance}-{segment}-{index}{suffix}"),
                    records.len() as u64,
                    text,
                )
            })
            .collect()
    }

    /// The object's text, decompressed as its suffix says.
    fn decompress(path: &Path) -> String {
        let mut text = String::new();
        let file = File::open(path).unwrap();
        if path.to_string_lossy().ends_with(".zst") {
            zstd::Decoder::new(file).unwrap().read_to_string(&mut text)
        } else {
            flate2::read::GzDecoder::new(file).read_to_string(&mut text)
        }
        .unwrap();
        text
    }

    fn staged_as_text(staged: &StagedSegment) -> Vec<(String, u64, String)> {
        staged
            .objects
            .iter()
            .map(|o| (o.key.clone(), o.records, decompress(&o.path)))
            .collect()
    }

    /// A sealed segment holding `payloads`, and its name.
    fn sealed_segment(dirs: &SpoolDirs, payloads: &[Vec<u8>]) -> (PathBuf, String) {
        let mut segment = Segment::create(dirs).unwrap();
        for payload in payloads {
            segment.append(payload).unwrap();
        }
        let name = segment.name.clone();
        (segment.seal(dirs).unwrap(), name)
    }

    fn test_naming(segment: &str) -> Naming<'_> {
        Naming {
            key_prefix: "audit/",
            instance: "gw-1",
            segment,
            compression: ObjectCompression::Gzip,
        }
    }

    fn stage(dirs: &SpoolDirs, path: &Path, name: &str) -> StagedSegment {
        stage_segment(path, &dirs.staging, &dirs.quarantine, &test_naming(name)).unwrap()
    }

    fn request(ts: &str, id: usize, text_len: usize) -> Vec<u8> {
        serde_json::json!({
            "record_type": "request",
            "request_id": format!("r{id}"),
            "ts_start": ts,
            "response_text": "word ".repeat(text_len / 5),
        })
        .to_string()
        .into_bytes()
    }

    /// Requests across an hour boundary, feedback, records that cannot be
    /// routed (fall back to 1970), interleaved as traffic would be.
    fn mixed_payloads() -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        for i in 0..300usize {
            let ts = if i.is_multiple_of(3) {
                "2026-11-26T04:59:59.999Z"
            } else {
                "2026-11-26T05:00:00.000Z"
            };
            payloads.push(request(ts, i, 40));
            if i.is_multiple_of(50) {
                payloads.push(
                    format!(r#"{{"record_type":"feedback","ts_received":"2026-11-26T05:0{}:00.000Z","request_id":"r{i}"}}"#, i / 50)
                        .into_bytes(),
                );
            }
            if i % 100 == 7 {
                payloads.push(b"not json".to_vec());
                payloads.push(br#"{"ts_start":"2026"}"#.to_vec());
            }
        }
        payloads
    }

    #[test]
    fn a_multi_partition_segment_streams_into_the_same_objects_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let payloads = mixed_payloads();
        let (path, name) = sealed_segment(&dirs, &payloads);
        let staged = stage(&dirs, &path, &name);
        let naming = test_naming(&name);
        let expected = reference_objects(&payloads, &naming);
        let keys: Vec<String> = expected.iter().map(|(k, ..)| k.clone()).collect();
        assert_eq!(
            keys,
            vec![
                format!("audit/v1/dt=1970-01-01/hour=00/gw-1-{name}-0.jsonl.gz"),
                format!("audit/v1/dt=2026-11-26/hour=04/gw-1-{name}-1.jsonl.gz"),
                format!("audit/v1/dt=2026-11-26/hour=05/gw-1-{name}-2.jsonl.gz"),
                format!("audit/feedback/v1/dt=2026-11-26/hour=05/gw-1-{name}-3.jsonl.gz"),
            ]
        );
        assert_eq!(staged_as_text(&staged), expected);
        assert_eq!(
            staged.segment_bytes,
            std::fs::metadata(&path).unwrap().len()
        );
        // Same segment, same keys: a repeated upload finds its objects.
        let again = stage(&dirs, &path, &name);
        assert_eq!(staged_as_text(&again), expected);
        let files = std::fs::read_dir(&dirs.staging).unwrap().count();
        assert_eq!(
            files,
            expected.len(),
            "the earlier attempt's files are cleared"
        );
        assert!(
            std::fs::read_dir(&dirs.quarantine)
                .unwrap()
                .next()
                .is_none()
        );
    }

    /// `compression = "zstd"`: the same records in the same partitions, as
    /// zstd frames under `.jsonl.zst` keys.
    #[test]
    fn zstd_objects_hold_the_same_lines_under_zst_keys() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let payloads = mixed_payloads();
        let (path, name) = sealed_segment(&dirs, &payloads);
        let naming = Naming {
            compression: ObjectCompression::Zstd,
            ..test_naming(&name)
        };
        let staged = stage_segment(&path, &dirs.staging, &dirs.quarantine, &naming).unwrap();
        let expected = reference_objects(&payloads, &naming);
        assert_eq!(expected.len(), 4);
        for (key, ..) in &expected {
            assert!(key.ends_with(".jsonl.zst"), "{key}");
        }
        for object in &staged.objects {
            let mut magic = [0u8; 4];
            File::open(&object.path)
                .unwrap()
                .read_exact(&mut magic)
                .unwrap();
            assert_eq!(magic, [0x28, 0xb5, 0x2f, 0xfd], "a zstd frame");
        }
        assert_eq!(staged_as_text(&staged), expected);
    }

    #[test]
    fn more_partitions_than_open_encoders_take_more_passes_and_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let hours = MAX_OPEN_PARTITIONS * 2 + 3;
        let payloads: Vec<Vec<u8>> = (0..hours * 20)
            .map(|i| {
                request(
                    &format!(
                        "2026-11-{:02}T{:02}:00:00.000Z",
                        10 + i % hours / 24,
                        i % hours % 24
                    ),
                    i,
                    20,
                )
            })
            .collect();
        let (path, name) = sealed_segment(&dirs, &payloads);
        let staged = stage(&dirs, &path, &name);
        let naming = test_naming(&name);
        assert_eq!(staged.objects.len(), hours);
        assert_eq!(
            staged_as_text(&staged),
            reference_objects(&payloads, &naming)
        );
    }

    #[test]
    fn a_torn_tail_is_quarantined_and_the_whole_frames_are_staged() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let payloads = mixed_payloads();
        let (path, name) = sealed_segment(&dirs, &payloads);
        let good_len = std::fs::metadata(&path).unwrap().len();
        // A crash cut the next frame half-way.
        let torn = request("2026-11-26T06:00:00.000Z", 999, 100);
        let mut tail = (torn.len() as u32).to_le_bytes().to_vec();
        tail.extend_from_slice(&crc32fast::hash(&torn).to_le_bytes());
        tail.extend_from_slice(&torn[..torn.len() / 2]);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&tail).unwrap();
        drop(file);

        let staged = stage(&dirs, &path, &name);
        let naming = test_naming(&name);
        assert_eq!(
            staged_as_text(&staged),
            reference_objects(&payloads, &naming)
        );
        assert_eq!(staged.segment_bytes, good_len + tail.len() as u64);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            good_len,
            "truncated to its valid frames"
        );
        let quarantined: Vec<PathBuf> = std::fs::read_dir(&dirs.quarantine)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(quarantined.len(), 1);
        assert!(
            quarantined[0]
                .to_string_lossy()
                .ends_with(&format!("{name}-at-{good_len}.bad")),
            "{quarantined:?}"
        );
        assert_eq!(std::fs::read(&quarantined[0]).unwrap(), tail);
    }

    #[test]
    fn a_segment_many_times_the_read_buffer_with_records_larger_than_it() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        // ~6 MiB: ~100 times the 64 KiB read buffer; every 50th record is 200 KiB.
        let payloads: Vec<Vec<u8>> = (0..5_000)
            .map(|i| {
                let ts = format!("2026-11-26T{:02}:59:59.000Z", 10 + i % 2);
                request(
                    &ts,
                    i,
                    if i.is_multiple_of(50) {
                        200 << 10
                    } else {
                        1_000
                    },
                )
            })
            .collect();
        let (path, name) = sealed_segment(&dirs, &payloads);
        assert!(std::fs::metadata(&path).unwrap().len() > 6 << 20);
        let staged = stage(&dirs, &path, &name);
        let naming = test_naming(&name);
        assert_eq!(
            staged_as_text(&staged),
            reference_objects(&payloads, &naming)
        );
        assert_eq!(staged.objects.iter().map(|o| o.records).sum::<u64>(), 5_000);
    }

    #[test]
    fn staging_that_fails_half_way_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = SpoolDirs::create(dir.path()).unwrap();
        let payloads: Vec<Vec<u8>> = (0..3)
            .map(|i| request("2026-11-26T04:00:00.000Z", i, 100))
            .collect();
        let (path, name) = sealed_segment(&dirs, &payloads);
        // A torn tail must go to the quarantine, which is gone: the objects
        // are written by then, and the stage fails.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[9, 0, 0, 0, 1]).unwrap();
        std::fs::remove_dir(&dirs.quarantine).unwrap();
        let failed = stage_segment(&path, &dirs.staging, &dirs.quarantine, &test_naming(&name));
        assert!(failed.is_err());
        let left: Vec<_> = std::fs::read_dir(&dirs.staging).unwrap().collect();
        assert!(left.is_empty(), "staging holds {left:?}");
    }
}
