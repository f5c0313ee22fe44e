//! The S3 store: one PutObject per audit object, streamed from its staged
//! file, with `If-None-Match: *`, so a retried upload can never overwrite
//! another batch (412 means our own earlier attempt already stored it).
//! Region, credentials and endpoint come from the standard AWS chain
//! (environment, profile, web identity, instance role); `s3_endpoint` /
//! `AWS_ENDPOINT_URL_S3` and `s3_force_path_style` cover S3-compatible servers.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use promptgate_core::config::audit::StoreConfig;
use promptgate_log::s3::client_config;

use super::store::{PutOutcome, StoreError};

pub struct S3Store {
    client: aws_sdk_s3::Client,
    /// Fails fast and never retries: for the start-up check.
    probe: aws_sdk_s3::Client,
    bucket: String,
}

pub(crate) fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E>,
) -> String {
    let status = error.raw_response().map(|r| r.status().as_u16());
    match (status, error.code()) {
        (Some(status), Some(code)) => format!(
            "HTTP {status} {code}: {}",
            error.message().unwrap_or_default()
        ),
        (Some(status), None) => format!("HTTP {status}"),
        _ => DisplayErrorContext(error).to_string(),
    }
}

impl S3Store {
    pub async fn connect(config: &StoreConfig) -> S3Store {
        let StoreConfig::S3 {
            bucket,
            endpoint,
            region,
            force_path_style,
            ..
        } = config
        else {
            unreachable!("S3Store::connect is only called for the S3 sink");
        };
        let builder =
            client_config(endpoint.as_deref(), region.as_deref(), *force_path_style).await;
        let client = aws_sdk_s3::Client::from_conf(
            builder
                .clone()
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(3))
                        .operation_attempt_timeout(Duration::from_secs(60))
                        .build(),
                )
                .build(),
        );
        let probe = aws_sdk_s3::Client::from_conf(
            builder
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(2))
                        .operation_timeout(Duration::from_secs(5))
                        .build(),
                )
                .build(),
        );
        S3Store {
            client,
            probe,
            bucket: bucket.clone(),
        }
    }

    /// Streams the file from disk (the SDK re-opens it for a retried attempt).
    pub async fn put_file_if_absent(
        &self,
        key: &str,
        staged: &Path,
    ) -> Result<PutOutcome, StoreError> {
        let body = ByteStream::from_path(staged)
            .await
            .map_err(|e| StoreError::S3(format!("staged object {}: {e}", staged.display())))?;
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type("application/x-ndjson")
            .content_encoding("gzip")
            .body(body)
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Created),
            Err(error)
                if error.raw_response().map(|r| r.status().as_u16()) == Some(412)
                    || error.code() == Some("PreconditionFailed") =>
            {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(error) => Err(StoreError::S3(describe(&error))),
        }
    }

    /// HeadBucket: a missing bucket or refused credentials fail start-up with
    /// a clear message; an unreachable server does not (the spool buffers).
    pub async fn check(&self) -> Result<(), StoreError> {
        match self.probe.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(error) => match error.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => Err(StoreError::S3(format!(
                    "bucket `{}` does not exist",
                    self.bucket
                ))),
                Some(status @ (301 | 400 | 401 | 403)) => Err(StoreError::S3(format!(
                    "bucket `{}` refused the gateway's credentials or region (HTTP {status}); check the AWS credential chain",
                    self.bucket
                ))),
                _ => {
                    tracing::warn!(bucket = %self.bucket, error = %describe(&error), "S3 unreachable at start-up: audit records are kept in the spool until it answers");
                    Ok(())
                }
            },
        }
    }

    pub fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }
}
