//! Where the config comes from: a file on disk (prompt files beside it) or an
//! object in S3 (prompt files under the same key prefix). Both are read the
//! same way — text, then core's parse and validation with a prompt reader —
//! and both are watched by a fingerprint of what the last load read: content
//! hashes for files, ETags for S3 objects. Every replica reading the same
//! objects gets the same config version, since the version hashes the text
//! and each prompt's identity (`s3://bucket/key`), never a replica's path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::s3::S3Source;
use promptgate_core::config::{self, Config, ConfigError, LoadOptions};

pub enum ConfigSource {
    File(PathBuf),
    S3(S3Source),
}

/// What the last load read and how it looked then; a poll compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub objects: Vec<PathBuf>,
    pub fingerprint: [u8; 32],
}

impl Watch {
    /// The source could not be read: the next poll that reads it sees a change.
    pub fn retry(objects: Vec<PathBuf>) -> Watch {
        Watch {
            objects,
            fingerprint: [0; 32],
        }
    }
}

impl From<PathBuf> for ConfigSource {
    fn from(path: PathBuf) -> ConfigSource {
        ConfigSource::File(path)
    }
}

impl ConfigSource {
    /// `s3://bucket/key` or a file path, as given to `--config`. The S3
    /// client is built here (in the async context), from the environment
    /// (see `S3Source::open`).
    pub async fn open(arg: &str) -> Result<ConfigSource, super::s3::S3UriError> {
        if arg.starts_with("s3://") {
            Ok(ConfigSource::S3(S3Source::open(arg).await?))
        } else {
            Ok(ConfigSource::File(PathBuf::from(arg)))
        }
    }

    /// The file path or `s3://bucket/key`, for logs and errors.
    pub fn name(&self) -> PathBuf {
        match self {
            ConfigSource::File(path) => path.clone(),
            ConfigSource::S3(s3) => s3.config_uri(),
        }
    }

    /// Reads, parses and validates the config; blocking (file or network
    /// reads): call from a blocking thread. Also returns what to watch next,
    /// even when the config is invalid, so fixing it is noticed.
    pub fn load(&self, options: &LoadOptions) -> (Result<Config, ConfigError>, Watch) {
        match self {
            ConfigSource::File(path) => load_file(path, options),
            ConfigSource::S3(s3) => s3.load(options),
        }
    }

    /// Whether what the last load read changed since; `Err` when the source
    /// cannot be read (blocking).
    pub fn changed(&self, watch: &Watch) -> Result<bool, String> {
        match self {
            ConfigSource::File(_) => Ok(content_hash(&watch.objects) != watch.fingerprint),
            ConfigSource::S3(s3) => Ok(s3.fingerprint(&watch.objects)? != watch.fingerprint),
        }
    }
}

fn load_file(path: &Path, options: &LoadOptions) -> (Result<Config, ConfigError>, Watch) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) => {
            let objects = vec![path.to_owned()];
            let fingerprint = content_hash(&objects);
            let error = ConfigError::Read {
                file: path.to_owned(),
                source,
            };
            return (
                Err(error),
                Watch {
                    objects,
                    fingerprint,
                },
            );
        }
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let read = Mutex::new(vec![path.to_owned()]);
    let result = config::load_text(
        path,
        &text,
        base_dir,
        &|name| {
            read.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(base_dir.join(name));
            config::read_local_prompt(base_dir, name)
        },
        options,
    );
    let objects = read
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fingerprint = content_hash(&objects);
    (
        result,
        Watch {
            objects,
            fingerprint,
        },
    )
}

/// Content hash of the files (a missing file hashes as empty), so a change
/// is seen whatever happened to timestamps, e.g. Kubernetes ConfigMap
/// symlink swaps.
fn content_hash(files: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for file in files {
        let content = std::fs::read(file).unwrap_or_default();
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    hasher.finalize().into()
}
