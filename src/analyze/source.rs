//! Where `promptgate analyze` reads the audit log from: a local directory (the
//! `local` sink's `local_dir`) or `s3://bucket/prefix`. Only the `dt=`
//! partitions inside the date range are listed, objects are read one at a
//! time (memory is bounded by the largest object, not the log), and an object
//! that cannot be read is an error naming it — or, when asked, skipped and
//! counted.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::AnalyzeError;

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

/// Inclusive `YYYY-MM-DD` bounds on the `dt=` partitions; `None`: open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl DateRange {
    /// ISO dates compare as strings, so partition names need no parsing.
    fn contains(&self, date: &str) -> bool {
        self.from.as_deref().is_none_or(|from| date >= from)
            && self.to.as_deref().is_none_or(|to| date <= to)
    }
}

/// Checks a `--from`/`--to` value: `YYYY-MM-DD`, a date of the calendar.
pub fn parse_date(text: &str) -> Result<String, String> {
    match crate::audit::time::parse_date(text) {
        Some(_) => Ok(text.to_owned()),
        None => Err(format!("`{text}` is not a date in the form YYYY-MM-DD")),
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
                let config = crate::audit::s3::client_config(
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
        match self {
            Source::Directory(root) => list_directory(&root.join(table.folder()), range),
            Source::S3 {
                bucket,
                prefix,
                client,
            } => {
                let base = if prefix.is_empty() {
                    format!("{}/", table.folder())
                } else {
                    format!("{prefix}/{}/", table.folder())
                };
                let mut keys = Vec::new();
                for day in list_s3(client, bucket, &base, Some("/"))
                    .await?
                    .into_iter()
                    .filter(|p| partition_date(p).is_some_and(|d| range.contains(d)))
                {
                    keys.extend(
                        list_s3(client, bucket, &day, None)
                            .await?
                            .into_iter()
                            .filter(|k| k.ends_with(".jsonl.gz")),
                    );
                }
                Ok(keys)
            }
        }
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

fn decode<T: DeserializeOwned>(object: &str, compressed: &[u8]) -> Result<Vec<T>, ObjectError> {
    let mut text = String::with_capacity(compressed.len() * 8);
    flate2::read::GzDecoder::new(compressed)
        .read_to_string(&mut text)
        .map_err(|e| ObjectError {
            object: object.to_owned(),
            reason: format!("not gzip JSON Lines: {e}"),
        })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|e| ObjectError {
                object: object.to_owned(),
                reason: format!("line {}: {e}", index + 1),
            })
        })
        .collect()
}

/// `…/dt=2026-11-26/` or `…/dt=2026-11-26/hour=04/x.jsonl.gz` → `2026-11-26`.
fn partition_date(path: &str) -> Option<&str> {
    let start = path.find("dt=")? + 3;
    path.get(start..start + 10)
}

fn list_directory(base: &Path, range: &DateRange) -> Result<Vec<String>, AnalyzeError> {
    let mut objects = Vec::new();
    let Ok(days) = std::fs::read_dir(base) else {
        return Ok(objects); // no such table yet (e.g. no feedback posted)
    };
    let mut days: Vec<PathBuf> = days
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(partition_date)
                .is_some_and(|d| range.contains(d))
        })
        .collect();
    days.sort();
    for day in days {
        let mut hours: Vec<PathBuf> = read_dir_sorted(&day)?;
        hours.retain(|p| p.is_dir());
        for hour in hours {
            objects.extend(
                read_dir_sorted(&hour)?
                    .into_iter()
                    .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
                    .map(|p| p.display().to_string()),
            );
        }
    }
    Ok(objects)
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
    }
}
