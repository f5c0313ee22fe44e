//! The config kept in S3 (`--config s3://bucket/key.toml`): prompt files
//! named in it are objects under the config key's prefix. The client is the
//! audit log's (`promptgate_log::s3::client_config`), configured before any
//! config is read, so from the environment: `PROMPTGATE_CONFIG_S3_ENDPOINT`,
//! `PROMPTGATE_CONFIG_S3_REGION`, `PROMPTGATE_CONFIG_S3_FORCE_PATH_STYLE`
//! (`true`/`1`), then the standard AWS chain (`AWS_REGION`,
//! `AWS_ENDPOINT_URL_S3`, credentials). Calls are blocking: the reloader
//! runs them on a blocking thread, driven by the runtime the source was
//! opened on.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::SdkError;
use sha2::{Digest, Sha256};

use super::source::Watch;
use crate::audit::s3::describe;
use promptgate_core::config::{self, Config, ConfigError, LoadOptions};
use promptgate_log::s3::client_config;

pub const ENDPOINT_VAR: &str = "PROMPTGATE_CONFIG_S3_ENDPOINT";
pub const REGION_VAR: &str = "PROMPTGATE_CONFIG_S3_REGION";
pub const PATH_STYLE_VAR: &str = "PROMPTGATE_CONFIG_S3_FORCE_PATH_STYLE";

#[derive(Debug, thiserror::Error)]
#[error("--config {uri}: expected s3://bucket/key")]
pub struct S3UriError {
    uri: String,
}

pub struct S3Source {
    client: aws_sdk_s3::Client,
    runtime: tokio::runtime::Handle,
    bucket: String,
    key: String,
}

impl S3Source {
    pub async fn open(uri: &str) -> Result<S3Source, S3UriError> {
        let invalid = || S3UriError {
            uri: uri.to_owned(),
        };
        let (bucket, key) = uri
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(invalid)?;
        if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
            return Err(invalid());
        }
        let endpoint = std::env::var(ENDPOINT_VAR).ok();
        let region = std::env::var(REGION_VAR).ok();
        let path_style = std::env::var(PATH_STYLE_VAR).is_ok_and(|v| v == "true" || v == "1");
        let builder = client_config(endpoint.as_deref(), region.as_deref(), path_style).await;
        // Bounded, so a replica that cannot reach S3 at start-up says so in
        // seconds instead of hanging, and a poll never outlasts a few intervals.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(10))
            .build();
        Ok(S3Source {
            client: aws_sdk_s3::Client::from_conf(builder.timeout_config(timeouts).build()),
            runtime: tokio::runtime::Handle::current(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    pub fn config_uri(&self) -> PathBuf {
        self.uri(&self.key)
    }

    fn uri(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("s3://{}/{key}", self.bucket))
    }

    fn key_of<'a>(&self, uri: &'a std::path::Path) -> Option<&'a str> {
        uri.to_str()?
            .strip_prefix("s3://")?
            .strip_prefix(self.bucket.as_str())?
            .strip_prefix('/')
    }

    /// A prompt file's key: `name` relative to the config key's prefix, with
    /// `.` and `..` segments resolved (never above the bucket's root).
    fn prompt_key(&self, name: &str) -> String {
        let mut segments: Vec<&str> = self.key.split('/').collect();
        segments.pop();
        if name.starts_with('/') {
            segments.clear();
        }
        for segment in name.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                segment => segments.push(segment),
            }
        }
        segments.join("/")
    }

    /// The object's text and ETag; `Ok(None)` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<(String, String)>, String> {
        self.runtime.block_on(async {
            let response = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(response) => response,
                Err(SdkError::ServiceError(error)) if error.err().is_no_such_key() => {
                    return Ok(None);
                }
                Err(error) => return Err(describe(&error)),
            };
            let etag = response.e_tag.clone().unwrap_or_default();
            let bytes = response
                .body
                .collect()
                .await
                .map_err(|error| format!("reading the object failed: {error}"))?
                .into_bytes();
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| "the object is not UTF-8 text".to_owned())?;
            Ok(Some((text, etag)))
        })
    }

    /// The object's ETag; `Ok(None)` when it does not exist.
    fn etag(&self, key: &str) -> Result<Option<String>, String> {
        self.runtime.block_on(async {
            match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(response) => Ok(Some(response.e_tag.unwrap_or_default())),
                Err(SdkError::ServiceError(error)) if error.err().is_not_found() => Ok(None),
                Err(error) => Err(describe(&error)),
            }
        })
    }

    /// GETs the config object and every prompt object it names; the watch
    /// is built from the ETags those GETs returned, so an object replaced
    /// during the load is seen as a change by the next poll.
    pub fn load(&self, options: &LoadOptions) -> (Result<Config, ConfigError>, Watch) {
        let config_uri = self.config_uri();
        let unreadable = |cause: String| ConfigError::Read {
            file: config_uri.clone(),
            source: std::io::Error::other(cause),
        };
        let text = match self.get(&self.key) {
            Ok(Some((text, etag))) => (text, etag),
            Ok(None) => {
                let error = unreadable("no such object (NoSuchKey)".into());
                return (Err(error), Watch::retry(vec![config_uri.clone()]));
            }
            Err(cause) => {
                return (
                    Err(unreadable(cause)),
                    Watch::retry(vec![config_uri.clone()]),
                );
            }
        };
        let read = Mutex::new(vec![(config_uri.clone(), Some(text.1))]);
        let result = config::load_text(
            &config_uri,
            &text.0,
            std::path::Path::new("."),
            &|name| {
                let uri = self.uri(&self.prompt_key(name));
                let got = self.get(&self.prompt_key(name));
                let mut read = read
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match got {
                    Ok(Some((text, etag))) => {
                        read.push((uri.clone(), Some(etag)));
                        Ok((uri, text))
                    }
                    Ok(None) => {
                        read.push((uri.clone(), None));
                        Err(format!("cannot read {}: no such object", uri.display()))
                    }
                    Err(cause) => Err(format!("cannot read {}: {cause}", uri.display())),
                }
            },
            options,
        );
        let read = read
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fingerprint = etag_hash(read.iter().map(|(_, etag)| etag.as_deref()));
        let objects = read.into_iter().map(|(uri, _)| uri).collect();
        (
            result,
            Watch {
                objects,
                fingerprint,
            },
        )
    }

    /// The ETags of the objects (HEAD each); an absent object counts as
    /// absent, any other failure is the source failing.
    pub fn fingerprint(&self, objects: &[PathBuf]) -> Result<[u8; 32], String> {
        let mut etags = Vec::with_capacity(objects.len());
        for uri in objects {
            let key = self
                .key_of(uri)
                .ok_or_else(|| format!("{} is outside s3://{}", uri.display(), self.bucket))?;
            etags.push(
                self.etag(key)
                    .map_err(|cause| format!("cannot read {}: {cause}", uri.display()))?,
            );
        }
        Ok(etag_hash(etags.iter().map(Option::as_deref)))
    }
}

fn etag_hash<'a>(etags: impl Iterator<Item = Option<&'a str>>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for etag in etags {
        let etag = etag.unwrap_or("");
        hasher.update((etag.len() as u64).to_le_bytes());
        hasher.update(etag.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn prompt_keys_resolve_relative_to_the_config_prefix() {
        let source = S3Source::open("s3://b/team/gateway.toml").await.unwrap();
        assert_eq!(source.prompt_key("prompts/x.txt"), "team/prompts/x.txt");
        assert_eq!(source.prompt_key("./x.txt"), "team/x.txt");
        assert_eq!(source.prompt_key("../shared/x.txt"), "shared/x.txt");
        assert_eq!(source.prompt_key("../../../x.txt"), "x.txt");
        assert_eq!(source.prompt_key("/root.txt"), "root.txt");
        assert_eq!(source.key_of(&source.uri("team/x.txt")), Some("team/x.txt"));
        assert_eq!(source.key_of(std::path::Path::new("s3://other/x")), None);
    }

    #[tokio::test]
    async fn malformed_uris_are_refused() {
        for uri in [
            "s3://bucket",
            "s3:///key",
            "s3://bucket/",
            "s3://bucket/dir/",
        ] {
            let error = S3Source::open(uri).await.err().expect(uri);
            assert!(error.to_string().contains(uri), "{error}");
        }
    }
}
