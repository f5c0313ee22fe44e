//! The validated `[audit]` settings.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A directory with the same layout as the bucket.
    Local { root: PathBuf },
    S3 {
        bucket: String,
        /// Without leading or trailing slash; may be empty.
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
        force_path_style: bool,
    },
}

/// `spool_max_bytes`: the most the spool may hold before `on_spool_full` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolCap {
    Bytes(u64),
    /// A share of what the spool's file system can hold, measured at start
    /// and every few seconds (`audit::disk`).
    Auto,
}

/// What happens when the spool has reached `spool_max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFullPolicy {
    /// New requests are refused with 503 until uploads catch up.
    Reject,
    /// Records are dropped and counted (`promptgate_audit_records_dropped_spool_full_total`).
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Records are fsynced in group commits every `commit_interval`; a crash
    /// loses at most that window.
    Buffered,
    /// A response is released only after its record is fsynced.
    Strict,
}

/// How audit objects are compressed; the key's suffix tells readers which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectCompression {
    /// `.jsonl.gz`, the default: every JSON Lines reader takes it.
    Gzip,
    /// `.jsonl.zst`: smaller objects for less CPU; read by DuckDB, Athena,
    /// Trino, Spark and `promptgate analyze`.
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    Marker,
    Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    Key(String),
    AnyIndex,
    Index(usize),
}

/// A path into a record, e.g. `request.messages[*].content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    pub text: String,
    pub parts: Vec<PathPart>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Option<JsonPath> {
        let mut parts = Vec::new();
        for piece in text.split('.') {
            let (key, mut rest) = piece.split_once('[').map_or((piece, ""), |(k, r)| (k, r));
            if key.is_empty() && parts.is_empty() {
                return None;
            }
            if !key.is_empty() {
                parts.push(PathPart::Key(key.to_owned()));
            }
            while !rest.is_empty() {
                let (index, after) = rest.split_once(']')?;
                parts.push(match index {
                    "*" => PathPart::AnyIndex,
                    n => PathPart::Index(n.parse().ok()?),
                });
                rest = after.strip_prefix('[').unwrap_or(after);
                if !after.is_empty() && !after.starts_with('[') {
                    return None;
                }
            }
        }
        (!parts.is_empty()).then(|| JsonPath {
            text: text.to_owned(),
            parts,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

impl Price {
    /// USD for these token counts, rounded to 1e-9; `None` when neither is known.
    pub fn cost_usd(&self, input: Option<u64>, output: Option<u64>) -> Option<f64> {
        if input.is_none() && output.is_none() {
            return None;
        }
        let usd = input.unwrap_or(0) as f64 * self.input_per_million / 1e6
            + output.unwrap_or(0) as f64 * self.output_per_million / 1e6;
        Some((usd * 1e9).round() / 1e9)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    pub records: u64,
    pub bytes: u64,
    pub interval: Duration,
}

#[derive(Clone)]
pub struct AuditConfig {
    pub store: StoreConfig,
    pub spool_dir: PathBuf,
    pub spool_max: SpoolCap,
    pub on_spool_full: SpoolFullPolicy,
    pub durability: Durability,
    pub commit_interval: Duration,
    pub flush: FlushPolicy,
    pub queue_capacity: usize,
    pub instance: String,
    /// `None`: a random per-process key (pseudonyms not comparable across restarts).
    pub unit_key_secret: Option<Vec<u8>>,
    pub log_bodies: bool,
    pub redact: Vec<JsonPath>,
    pub redaction: Redaction,
    pub prices: HashMap<String, Price>,
    pub compression: ObjectCompression,
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("store", &self.store)
            .field("spool_dir", &self.spool_dir)
            .field("durability", &self.durability)
            .field("instance", &self.instance)
            .field(
                "unit_key_secret",
                &self.unit_key_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let p = JsonPath::parse("request.messages[*].content").unwrap();
        assert_eq!(
            p.parts,
            vec![
                PathPart::Key("request".into()),
                PathPart::Key("messages".into()),
                PathPart::AnyIndex,
                PathPart::Key("content".into())
            ]
        );
        let p = JsonPath::parse("response.choices[0].message.content").unwrap();
        assert_eq!(p.parts[2], PathPart::Index(0));
        assert!(JsonPath::parse("a[x]").is_none());
        assert!(JsonPath::parse("").is_none());
        assert!(JsonPath::parse("[0]").is_none());
        assert!(JsonPath::parse("a[0]b").is_none());
        assert_eq!(JsonPath::parse("a[0][1]").unwrap().parts.len(), 3);
    }
}
