//! Where `promptgate analyze` reads the audit log from: a local directory (the
//! `local` sink's `local_dir`) or `s3://bucket/prefix`. Only the `dt=`
//! partitions inside the date range are listed, objects are read one at a
//! time (memory is bounded by the largest object, not the log), and an object
//! that cannot be read is an error naming it — or, when asked, skipped and
//! counted.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::AnalyzeError;

/// Folders looked into per level when searching for the audit log's root
/// near a wrong `--source`: bounds the listing requests on a big bucket.
const MAX_FOLDERS_SEARCHED: usize = 50;

/// The audit log's tables, each under its own folder of the log's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Requests,
    Feedback,
}

impl Table {
    fn folder(self) -> &'static str {
        match self {
            Table::Requests => "v1",
            Table::Feedback => "feedback/v1",
        }
    }
}

/// Inclusive bounds on the `dt=`/`hour=` partitions; `None`: open. A bound
/// is a day, `YYYY-MM-DD` (from its first hour, to its last), or an hour,
/// `YYYY-MM-DDTHH` (a deployment at 14:05: `--current-from 2026-12-06T14`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl DateRange {
    /// Whether any hour of `day` is inside. ISO dates compare as strings,
    /// so partition names need no parsing.
    fn contains(&self, day: &str) -> bool {
        self.from.as_deref().is_none_or(|from| day >= day_of(from))
            && self.to.as_deref().is_none_or(|to| day <= day_of(to))
    }

    /// Whether the partition `dt=day/hour=hour` is inside.
    fn contains_hour(&self, day: &str, hour: &str) -> bool {
        let at = (day, hour);
        self.from
            .as_deref()
            .is_none_or(|from| at >= (day_of(from), hour_of(from).unwrap_or("00")))
            && self
                .to
                .as_deref()
                .is_none_or(|to| at <= (day_of(to), hour_of(to).unwrap_or("23")))
    }
}

fn day_of(bound: &str) -> &str {
    bound.get(..10).unwrap_or(bound)
}

/// `HH` of a `YYYY-MM-DDTHH` bound; `None` for a day.
fn hour_of(bound: &str) -> Option<&str> {
    bound.get(11..13)
}

/// Checks a day, `YYYY-MM-DD`, a date of the calendar.
pub fn parse_day(text: &str) -> Result<String, String> {
    match promptgate_log::time::parse_date(text) {
        Some(_) => Ok(text.to_owned()),
        None => Err(format!("`{text}` is not a date in the form YYYY-MM-DD")),
    }
}

/// Checks a `--from`/`--to` value: `YYYY-MM-DD`, a date of the calendar,
/// optionally with an hour, `YYYY-MM-DDTHH` (UTC, as the partitions).
pub fn parse_date(text: &str) -> Result<String, String> {
    let (day, hour) = match text.split_once('T') {
        Some((day, hour)) => (day, Some(hour)),
        None => (text, None),
    };
    let hour_ok =
        hour.is_none_or(|hour| hour.len() == 2 && hour.parse::<u8>().is_ok_and(|h| h < 24));
    match parse_day(day) {
        Ok(_) if hour_ok => Ok(text.to_owned()),
        _ => Err(format!(
            "`{text}` is not a date in the form YYYY-MM-DD, or a date and hour YYYY-MM-DDTHH"
        )),
    }
}

#[derive(Debug, Clone)]
pub enum Source {
    Directory(PathBuf),
    S3 {
        bucket: String,
        /// Without leading or trailing slash; may be empty.
        prefix: String,
        client: aws_sdk_s3::Client,
    },
}

/// Options for an S3 source beyond the standard AWS environment.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
}

impl Source {
    /// `s3://bucket/prefix` or a directory path.
    pub async fn open(location: &str, s3: &S3Options) -> Result<Source, AnalyzeError> {
        match location.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(AnalyzeError::Source(format!(
                        "`{location}` names no bucket: use s3://bucket/prefix"
                    )));
                }
                let config = promptgate_log::s3::client_config(
                    s3.endpoint.as_deref(),
                    s3.region.as_deref(),
                    s3.force_path_style,
                )
                .await;
                Ok(Source::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_matches('/').to_owned(),
                    client: aws_sdk_s3::Client::from_conf(config.build()),
                })
            }
            None => {
                let root = PathBuf::from(location);
                if !root.is_dir() {
                    return Err(AnalyzeError::Source(format!(
                        "{} is not a directory (give the audit log's local_dir, or s3://bucket/prefix)",
                        root.display()
                    )));
                }
                Ok(Source::Directory(root))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Directory(root) => root.display().to_string(),
            Source::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The objects of `table` inside `range`, in partition order.
    pub async fn list(&self, table: Table, range: &DateRange) -> Result<Vec<String>, AnalyzeError> {
        let partitions = self.partitions(table).await?;
        let mut objects = Vec::new();
        for (day, partition) in partitions.iter().filter(|(d, _)| range.contains(d)) {
            let in_range =
                |path: &str| partition_hour(path).is_none_or(|h| range.contains_hour(day, h));
            match self {
                Source::Directory(_) => {
                    let mut hours = read_dir_sorted(Path::new(partition))?;
                    hours.retain(|p| p.is_dir() && in_range(&p.display().to_string()));
                    for hour in hours {
                        objects.extend(
                            read_dir_sorted(&hour)?
                                .into_iter()
                                .map(|p| p.display().to_string())
                                .filter(|p| is_audit_object(p)),
                        );
                    }
                }
                Source::S3 { bucket, client, .. } => objects.extend(
                    list_s3(client, bucket, partition, None)
                        .await?
                        .into_iter()
                        .filter(|k| is_audit_object(k) && in_range(k)),
                ),
            }
        }
        Ok(objects)
    }

    /// Every `dt=` partition of `table` (date, folder or key prefix), by date.
    async fn partitions(&self, table: Table) -> Result<Vec<(String, String)>, AnalyzeError> {
        let mut partitions: Vec<(String, String)> = match self {
            Source::Directory(root) => {
                // No such folder: no such table yet (e.g. no feedback posted).
                let Ok(days) = std::fs::read_dir(root.join(table.folder())) else {
                    return Ok(Vec::new());
                };
                days.flatten()
                    .map(|e| e.path())
                    .filter_map(|p| {
                        let date = p.file_name()?.to_str().and_then(partition_date)?;
                        Some((date.to_owned(), p.display().to_string()))
                    })
                    .collect()
            }
            Source::S3 {
                bucket,
                prefix,
                client,
            } => {
                let base = child_prefix(&child_prefix(prefix, table.folder()), "");
                list_s3(client, bucket, &base, Some("/"))
                    .await?
                    .into_iter()
                    .filter_map(|p| Some((partition_date(&p)?.to_owned(), p)))
                    .collect()
            }
        };
        partitions.sort();
        Ok(partitions)
    }

    /// Why the request table has no object in `range`: no audit log at this
    /// root at all (with the folders below or above it that hold one), or
    /// none of its partitions in the range (with the days it does hold).
    pub async fn explain_empty(&self, range: &DateRange) -> Result<AnalyzeError, AnalyzeError> {
        let days = self.partitions(Table::Requests).await?;
        if let (Some((first, _)), Some((last, _))) = (days.first(), days.last()) {
            return Ok(AnalyzeError::Source(format!(
                "no partition of {} between {} and {}: it holds dt={first} to dt={last}",
                self.join(Table::Requests.folder()),
                range.from.as_deref().unwrap_or("the first day"),
                range.to.as_deref().unwrap_or("the last day"),
            )));
        }
        let mut message = format!(
            "no audit objects under {} (expected {}/dt=YYYY-MM-DD/…)",
            self.join(""),
            self.join(Table::Requests.folder()),
        );
        match self.audit_roots_nearby().await?.as_slice() {
            [] => message.push_str(
                "; give the audit log's root: the local sink's local_dir or s3://<s3_bucket>/<s3_prefix>, the folder that holds v1/",
            ),
            [one] => message.push_str(&format!("; did you mean {one}?")),
            several => message.push_str(&format!("; did you mean one of {}?", several.join(", "))),
        }
        Ok(AnalyzeError::Source(message))
    }

    /// `path` below this source's root, as a person would type it.
    fn join(&self, path: &str) -> String {
        match self {
            Source::Directory(root) if path.is_empty() => {
                format!("{}/", root.display().to_string().trim_end_matches('/'))
            }
            Source::Directory(root) => root.join(path).display().to_string(),
            Source::S3 { bucket, prefix, .. } => {
                format!("s3://{bucket}/{}", child_prefix(prefix, path))
            }
        }
    }

    /// Roots near this one that hold request partitions: the folders up to
    /// two levels below (`data/audit` for `data`, `s3://bucket/tenant/audit`
    /// for `s3://bucket`), breadth first, at most `MAX_FOLDERS_SEARCHED`
    /// looked into; else the root of the log when this is one of its tables'
    /// folders (`data/audit` for `data/audit/v1`).
    async fn audit_roots_nearby(&self) -> Result<Vec<String>, AnalyzeError> {
        let mut found = Vec::new();
        let mut budget = MAX_FOLDERS_SEARCHED;
        let mut level = vec![String::new()];
        for _depth in 0..2 {
            let mut next = Vec::new();
            for folder in &level {
                for child in self.subfolders(folder).await? {
                    if budget == 0 {
                        break;
                    }
                    budget -= 1;
                    let table = child_prefix(&child, Table::Requests.folder());
                    if self.holds_partitions(&table).await? {
                        found.push(self.join(&child));
                    } else {
                        next.push(child);
                    }
                }
            }
            level = next;
        }
        if found.is_empty() && self.holds_partitions("").await? {
            found.extend(self.log_root_above());
        }
        Ok(found)
    }

    /// The log's root when this root is a table's folder (`…/v1` or
    /// `…/feedback/v1`).
    fn log_root_above(&self) -> Option<String> {
        let here = match self {
            Source::Directory(root) => root.display().to_string(),
            Source::S3 { prefix, .. } => prefix.clone(),
        };
        let above = [Table::Feedback, Table::Requests]
            .iter()
            .find_map(|t| here.trim_end_matches('/').strip_suffix(t.folder()))?
            .trim_end_matches('/');
        Some(match self {
            Source::Directory(_) if above.is_empty() => ".".to_owned(),
            Source::Directory(_) => above.to_owned(),
            Source::S3 { bucket, .. } => format!("s3://{bucket}/{above}"),
        })
    }

    /// The folders (S3: common prefixes) directly in `folder` under the
    /// root, as paths relative to it, at most `MAX_FOLDERS_SEARCHED`.
    async fn subfolders(&self, folder: &str) -> Result<Vec<String>, AnalyzeError> {
        let mut names: Vec<String> = match self {
            Source::Directory(root) => std::fs::read_dir(root.join(folder))
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Source::S3 {
                bucket,
                prefix,
                client,
            } => {
                let base = child_prefix(&child_prefix(prefix, folder), "");
                list_s3(client, bucket, &base, Some("/"))
                    .await?
                    .into_iter()
                    .filter_map(|p| {
                        p.strip_prefix(&base)
                            .map(|name| name.trim_end_matches('/').to_owned())
                    })
                    .collect()
            }
        };
        names.sort();
        names.truncate(MAX_FOLDERS_SEARCHED);
        Ok(names
            .into_iter()
            .map(|name| child_prefix(folder, &name))
            .collect())
    }

    /// Whether `folder` under the root directly holds `dt=` partitions.
    async fn holds_partitions(&self, folder: &str) -> Result<bool, AnalyzeError> {
        Ok(self
            .subfolders(folder)
            .await?
            .iter()
            .any(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with("dt="))))
    }

    /// Every record of one object, decoded as `T`.
    pub async fn read<T: DeserializeOwned>(&self, object: &str) -> Result<Vec<T>, ObjectError> {
        let compressed = match self {
            Source::Directory(_) => std::fs::read(object).map_err(|e| ObjectError {
                object: object.to_owned(),
                reason: e.to_string(),
            })?,
            Source::S3 { bucket, client, .. } => {
                let fetched = client
                    .get_object()
                    .bucket(bucket)
                    .key(object)
                    .send()
                    .await
                    .map_err(|e| ObjectError {
                        object: object.to_owned(),
                        reason: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
                    })?;
                fetched
                    .body
                    .collect()
                    .await
                    .map_err(|e| ObjectError {
                        object: object.to_owned(),
                        reason: e.to_string(),
                    })?
                    .into_bytes()
                    .to_vec()
            }
        };
        decode(object, &compressed)
    }
}

/// An object that could not be read or decoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectError {
    pub object: String,
    pub reason: String,
}

/// A gzip or zstd JSON Lines object (`[audit] compression`), by its suffix.
fn is_audit_object(name: &str) -> bool {
    name.ends_with(".jsonl.gz") || name.ends_with(".jsonl.zst")
}

/// The records of a compressed object, decompressed and parsed line by line:
/// memory holds one line of text at a time besides the records, not the
/// object's whole text (several times its compressed size).
fn decode<T: DeserializeOwned>(object: &str, compressed: &[u8]) -> Result<Vec<T>, ObjectError> {
    let error = |reason: String| ObjectError {
        object: object.to_owned(),
        reason,
    };
    let (decompressed, format): (Box<dyn Read + '_>, _) = if object.ends_with(".zst") {
        let zstd = zstd::Decoder::with_buffer(compressed)
            .map_err(|e| error(format!("not zstd JSON Lines: {e}")))?;
        (Box::new(zstd), "zstd")
    } else {
        (Box::new(flate2::read::GzDecoder::new(compressed)), "gzip")
    };
    let mut reader = BufReader::with_capacity(1 << 16, decompressed);
    let mut line = String::new();
    let mut rows = Vec::new();
    for number in 1u64.. {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.trim().is_empty() => {}
            Ok(_) => rows.push(
                serde_json::from_str(&line).map_err(|e| error(format!("line {number}: {e}")))?,
            ),
            // A stream cut short or not UTF-8, wherever it happens.
            Err(e) => return Err(error(format!("not {format} JSON Lines: {e}"))),
        }
    }
    Ok(rows)
}

/// `…/dt=2026-11-26/` or `…/dt=2026-11-26/hour=04/x.jsonl.gz` → `2026-11-26`.
fn partition_date(path: &str) -> Option<&str> {
    let start = path.find("dt=")? + 3;
    path.get(start..start + 10)
}

/// `…/hour=04` or `…/hour=04/x.jsonl.gz` → `04`.
fn partition_hour(path: &str) -> Option<&str> {
    let start = path.rfind("hour=")? + 5;
    path.get(start..start + 2)
}

/// `prefix/child` without doubled or leading slashes; `prefix/` when
/// `child` is empty (an S3 prefix to list under).
fn child_prefix(prefix: &str, child: &str) -> String {
    match (prefix.trim_matches('/'), child) {
        ("", child) => child.to_owned(),
        (prefix, "") => format!("{prefix}/"),
        (prefix, child) => format!("{prefix}/{child}"),
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, AnalyzeError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| AnalyzeError::Source(format!("{}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    Ok(entries)
}

/// Keys (or, with a delimiter, the common prefixes) under `prefix`.
async fn list_s3(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
) -> Result<Vec<String>, AnalyzeError> {
    let mut out = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_delimiter(delimiter.map(str::to_owned))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            AnalyzeError::Source(format!(
                "listing s3://{bucket}/{prefix}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))
        })?;
        if delimiter.is_some() {
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
        } else {
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_and_compared_as_partitions() {
        assert!(parse_date("2026-11-26").is_ok());
        for bad in [
            "2025-02-31",
            "2026-13-01",
            "2026-1-01",
            "26-11-01",
            "2026/11/01",
            "yesterday",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        let range = DateRange {
            from: Some("2026-11-02".into()),
            to: Some("2026-11-03".into()),
        };
        assert!(!range.contains("2026-11-01"));
        assert!(range.contains("2026-11-02") && range.contains("2026-11-03"));
        assert!(!range.contains("2026-11-04"));
        assert!(range.contains_hour("2026-11-02", "00") && range.contains_hour("2026-11-03", "23"));
        // Hour bounds: a deployment at 14:05 on the 2nd.
        for ok in ["2026-11-02T14", "2026-12-31T00", "2026-11-02T23"] {
            assert_eq!(parse_date(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "2026-11-02T24",
            "2026-11-02T1",
            "2026-11-02T",
            "2026-11-02T14:05",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        let current = DateRange {
            from: Some("2026-11-02T14".into()),
            to: None,
        };
        let baseline = DateRange {
            from: Some("2026-11-01".into()),
            to: Some("2026-11-02T13".into()),
        };
        assert!(current.contains("2026-11-02") && baseline.contains("2026-11-02"));
        assert!(
            !current.contains_hour("2026-11-02", "13") && current.contains_hour("2026-11-02", "14")
        );
        assert!(
            baseline.contains_hour("2026-11-02", "13")
                && !baseline.contains_hour("2026-11-02", "14")
        );
        assert!(
            current.contains_hour("2026-11-03", "00")
                && !baseline.contains_hour("2026-11-03", "00")
        );
        assert_eq!(
            partition_hour("a/v1/dt=2026-11-26/hour=04/x.jsonl.gz"),
            Some("04")
        );
        assert_eq!(partition_hour("/data/v1/dt=2026-11-26/hour=23"), Some("23"));
        assert_eq!(
            partition_date("a/v1/dt=2026-11-26/hour=04/x"),
            Some("2026-11-26")
        );
    }

    #[test]
    fn a_corrupt_object_is_named_with_its_problem() {
        let error = decode::<serde_json::Value>("x.jsonl.gz", b"not gzip").unwrap_err();
        assert_eq!(error.object, "x.jsonl.gz");
        assert!(error.reason.contains("not gzip"), "{}", error.reason);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"{\"a\":1}\n{\"a\":\n").unwrap();
        let error = decode::<serde_json::Value>("y", &gz.finish().unwrap()).unwrap_err();
        assert!(error.reason.starts_with("line 2:"), "{}", error.reason);
        let error = decode::<serde_json::Value>("x.jsonl.zst", b"not zstd").unwrap_err();
        assert!(error.reason.contains("not zstd"), "{}", error.reason);
    }

    /// `compression = "zstd"` objects are listed and read like gzip ones.
    #[test]
    fn zstd_objects_are_listed_and_decoded() {
        assert!(is_audit_object(
            "v1/dt=2026-11-26/hour=04/gw-1-s-0.jsonl.zst"
        ));
        assert!(is_audit_object("gw-1-s-0.jsonl.gz"));
        assert!(!is_audit_object("gw-1-s-0.jsonl.zst.tmp"));
        let lines = b"{\"a\":1}\n{\"a\":2}\n";
        let compressed = zstd::encode_all(&lines[..], 3).unwrap();
        let records = decode::<serde_json::Value>("x.jsonl.zst", &compressed).unwrap();
        assert_eq!(
            records,
            vec![serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]
        );
    }
}
