//! Validation of `[audit]` and `[prices]`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use super::raw::*;
use super::validate::{Environment, Errors, read_secret};
use crate::config::audit::*;

const DEFAULT_LOCAL_DIR: &str = "data/audit";
const DEFAULT_SPOOL_DIR: &str = "data/spool";
const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
const DEFAULT_COMMIT_INTERVAL_MS: u64 = 50;
// Few, large objects: analysts' queries slow down with many small files.
const DEFAULT_FLUSH_RECORDS: u64 = 100_000;
const DEFAULT_FLUSH_BYTES: u64 = 64 << 20;
const DEFAULT_FLUSH_INTERVAL_MS: u64 = 300_000;
const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

pub(super) fn validate_audit(
    raw: Option<&RawAudit>,
    prices: &BTreeMap<String, RawPrice>,
    env: &Environment<'_>,
    errors: &mut Errors,
) -> Option<AuditConfig> {
    let raw = raw.filter(|a| a.enabled)?;
    let store = match raw.sink.unwrap_or(RawAuditSink::Local) {
        RawAuditSink::Local => {
            for (field, set) in [
                ("s3_bucket", raw.s3_bucket.is_some()),
                ("s3_bucket_env", raw.s3_bucket_env.is_some()),
                ("s3_prefix", raw.s3_prefix.is_some()),
            ] {
                if set {
                    errors.push(format!("audit.{field}"), "only for sink = \"s3\"");
                }
            }
            Some(StoreConfig::Local {
                root: PathBuf::from(raw.local_dir.as_deref().unwrap_or(DEFAULT_LOCAL_DIR)),
            })
        }
        RawAuditSink::S3 => {
            if raw.local_dir.is_some() {
                errors.push("audit.local_dir", "only for sink = \"local\"");
            }
            // No early return: the rest of the section is still checked.
            s3_bucket(raw, env, errors).map(|bucket| StoreConfig::S3 {
                bucket,
                prefix: raw
                    .s3_prefix
                    .as_deref()
                    .unwrap_or("")
                    .trim_matches('/')
                    .to_owned(),
                endpoint: raw.s3_endpoint.clone(),
                region: raw.s3_region.clone(),
                force_path_style: raw.s3_force_path_style.unwrap_or(false),
            })
        }
    };
    let positive = |field: &str, value: u64, errors: &mut Errors| {
        if value == 0 {
            errors.push(format!("audit.{field}"), "must be greater than 0");
        }
        value
    };
    let commit = positive(
        "commit_interval_ms",
        raw.commit_interval_ms.unwrap_or(DEFAULT_COMMIT_INTERVAL_MS),
        errors,
    );
    let flush = FlushPolicy {
        records: positive(
            "flush_records",
            raw.flush_records.unwrap_or(DEFAULT_FLUSH_RECORDS),
            errors,
        ),
        bytes: positive(
            "flush_bytes",
            raw.flush_bytes.unwrap_or(DEFAULT_FLUSH_BYTES),
            errors,
        ),
        interval: Duration::from_millis(positive(
            "flush_interval_ms",
            raw.flush_interval_ms.unwrap_or(DEFAULT_FLUSH_INTERVAL_MS),
            errors,
        )),
    };
    let queue_capacity = raw.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
    if queue_capacity == 0 {
        errors.push("audit.queue_capacity", "must be greater than 0");
    }
    let spool_max = match raw.spool_max_bytes.clone() {
        None => SpoolCap::Bytes(DEFAULT_SPOOL_MAX_BYTES),
        Some(RawSpoolMax::Bytes(bytes)) => {
            SpoolCap::Bytes(positive("spool_max_bytes", bytes, errors))
        }
        Some(RawSpoolMax::Named(name)) if name == "auto" => SpoolCap::Auto,
        Some(RawSpoolMax::Named(name)) => {
            errors.push(
                "audit.spool_max_bytes",
                format!("`{name}` is neither a whole number of bytes nor \"auto\""),
            );
            SpoolCap::Auto
        }
    };
    let mut redact = Vec::with_capacity(raw.redact_json_paths.len());
    for (i, text) in raw.redact_json_paths.iter().enumerate() {
        match JsonPath::parse(text) {
            Some(path) => redact.push(path),
            None => errors.push(
                format!("audit.redact_json_paths[{i}]"),
                format!("`{text}` is not a path such as `request.messages[*].content`"),
            ),
        }
    }
    let instance = raw
        .instance
        .clone()
        .or_else(|| (env.read_env)("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    if !instance
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errors.push("audit.instance", format!("`{instance}` may only hold letters, digits, `-`, `_` and `.` (it goes into object keys)"));
    }
    let secret = read_secret(
        "audit",
        ("unit_key_secret_env", raw.unit_key_secret_env.as_deref()),
        ("unit_key_secret_file", raw.unit_key_secret_file.as_deref()),
        env,
        errors,
    )?;
    let mut price_table = HashMap::with_capacity(prices.len());
    for (model, price) in prices {
        for (field, value) in [
            ("input_per_million", price.input_per_million),
            ("output_per_million", price.output_per_million),
        ] {
            if !value.is_finite() || value < 0.0 {
                errors.push(
                    format!("{}.{field}", super::location::child_path("prices", model)),
                    "must be a finite number ≥ 0",
                );
            }
        }
        price_table.insert(
            model.clone(),
            Price {
                input_per_million: price.input_per_million,
                output_per_million: price.output_per_million,
            },
        );
    }
    Some(AuditConfig {
        store: store?,
        spool_dir: PathBuf::from(raw.spool_dir.as_deref().unwrap_or(DEFAULT_SPOOL_DIR)),
        spool_max,
        on_spool_full: match raw.on_spool_full.unwrap_or(RawSpoolFull::Reject) {
            RawSpoolFull::Reject => SpoolFullPolicy::Reject,
            RawSpoolFull::Drop => SpoolFullPolicy::Drop,
        },
        durability: match raw.durability.unwrap_or(RawDurability::Buffered) {
            RawDurability::Buffered => Durability::Buffered,
            RawDurability::Strict => Durability::Strict,
        },
        commit_interval: Duration::from_millis(commit),
        flush,
        queue_capacity: queue_capacity.max(1),
        instance,
        unit_key_secret: secret.map(String::into_bytes),
        log_bodies: raw.log_bodies.unwrap_or(true),
        redact,
        redaction: match raw.redaction.unwrap_or(RawRedaction::Marker) {
            RawRedaction::Marker => Redaction::Marker,
            RawRedaction::Hash => Redaction::Hash,
        },
        prices: price_table,
        compression: match raw.compression.unwrap_or(RawCompression::Gzip) {
            RawCompression::Gzip => ObjectCompression::Gzip,
            RawCompression::Zstd => ObjectCompression::Zstd,
        },
    })
}

/// `s3_bucket`, or the environment variable `s3_bucket_env` names (a
/// container image's baked-in config). `None`: an error was recorded.
fn s3_bucket(raw: &RawAudit, env: &Environment<'_>, errors: &mut Errors) -> Option<String> {
    let bucket = match (&raw.s3_bucket, &raw.s3_bucket_env) {
        (Some(_), Some(_)) => {
            errors.push(
                "audit.s3_bucket_env",
                "set either s3_bucket or s3_bucket_env, not both",
            );
            return None;
        }
        (Some(bucket), None) => Some(bucket.clone()),
        (None, Some(var)) => {
            let Some(bucket) = (env.read_env)(var).filter(|b| !b.trim().is_empty()) else {
                errors.push(
                    "audit.s3_bucket_env",
                    format!("environment variable {var} is not set or empty"),
                );
                return None;
            };
            Some(bucket.trim().to_owned())
        }
        (None, None) => None,
    };
    let bucket = bucket.filter(|b| !b.is_empty());
    if bucket.is_none() {
        errors.push(
            "audit.s3_bucket",
            "sink = \"s3\" needs a bucket (s3_bucket or s3_bucket_env)",
        );
    }
    bucket
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::validate::Environment;
    use super::super::{Problem, parse};
    use crate::config::audit::{AuditConfig, ObjectCompression, SpoolCap};

    /// The `[audit]` section of a config whose audit table ends with `setting`.
    fn audit(setting: &str) -> Result<AuditConfig, Vec<Problem>> {
        let source = format!(
            "[auth]\nopen = true\n[providers.demo]\nkind = \"demo\"\n[[routes]]\nmodels = [\"*\"]\nproviders = [\"demo\"]\n[audit]\nunit_key_secret_env = \"K\"\n{setting}\n"
        );
        let read_env = |name: &str| (name == "K").then(|| "secret".to_owned());
        let env = Environment {
            base_dir: Path::new("/nonexistent"),
            listen_override: None,
            admin_listen_override: None,
            read_env: &read_env,
            read_prompt: &|name| crate::config::read_local_prompt(Path::new("/nonexistent"), name),
        };
        parse(&source, &env).map(|config| config.audit.expect("audit"))
    }

    fn spool_cap(value: &str) -> Result<SpoolCap, Vec<Problem>> {
        audit(&format!("spool_max_bytes = {value}")).map(|audit| audit.spool_max)
    }

    #[test]
    fn compression_is_gzip_unless_zstd_is_asked_for() {
        assert_eq!(audit("").unwrap().compression, ObjectCompression::Gzip);
        let zstd = audit("compression = \"zstd\"").unwrap();
        assert_eq!(zstd.compression, ObjectCompression::Zstd);
        let problems = audit("compression = \"brotli\"").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "audit.compression");
        assert_eq!(
            problems[0].message,
            "unknown value `brotli`, expected `gzip` or `zstd`"
        );
        assert_eq!(problems[0].line, Some(10));
    }

    #[test]
    fn spool_max_bytes_is_a_number_of_bytes_or_auto() {
        assert_eq!(spool_cap("1000").unwrap(), SpoolCap::Bytes(1000));
        assert_eq!(spool_cap("\"auto\"").unwrap(), SpoolCap::Auto);
        for (bad, message) in [
            (
                "\"lots\"",
                "`lots` is neither a whole number of bytes nor \"auto\"",
            ),
            ("0", "must be greater than 0"),
            ("-1", "a whole number of bytes or \"auto\""),
        ] {
            let problems = spool_cap(bad).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert_eq!(problems[0].path, "audit.spool_max_bytes", "{bad}");
            assert!(problems[0].message.contains(message), "{bad}: {problems:?}");
            assert_eq!(problems[0].line, Some(10), "{bad}");
        }
    }
}
