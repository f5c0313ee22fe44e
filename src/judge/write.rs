//! Verdicts as feedback events, through the audit pipeline the feedback
//! endpoint writes to (writer → spool → uploader → the feedback table).
//!
//! The command starts that pipeline itself, from the config's `[audit]`,
//! with a spool of its own: it needs no running gateway, no client key and
//! no network path to one, and the records are built and uploaded by the
//! very code that writes the endpoint's (same schema, same create-if-absent
//! objects). A gateway on the same host keeps its spool locked, hence the
//! separate `--spool-dir`; the objects' names carry `<instance>-judge`.
//!
//! Idempotent per (request id, metric): the feedback id is a hash of both,
//! so a verdict written twice is the same event twice, and `analyze` keeps
//! one value per (request, metric) anyway (the latest); a re-run also skips
//! requests the log already has a verdict for.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::audit::{self, AuditLog, AuditStartError, AuditTasks};
use crate::exchange::ExchangeSink;
use crate::feedback::{Feedback, FeedbackValue};
use promptgate_core::config::audit::AuditConfig;

/// The client id judge feedback is recorded under (reserved: no
/// `[[auth.clients]]` may take it, and analyze trusts it).
pub use promptgate_core::config::feedback::JUDGE_CLIENT_ID as CLIENT_ID;

/// How long the uploader may take at the end of a run; what it could not
/// upload stays in the spool and goes up at the next run's start.
const UPLOAD_GRACE: Duration = Duration::from_secs(30);

/// A deterministic feedback id: the same (request, metric) always gets the
/// same id (a UUID-shaped SHA-256 prefix, version 8 "custom").
pub fn feedback_id(request_id: &str, metric: &str) -> String {
    let digest = Sha256::digest(format!("{request_id}\0{metric}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub struct FeedbackWriter {
    log: Arc<AuditLog>,
    tasks: AuditTasks,
    config_version: Arc<str>,
    client_id: Arc<str>,
}

impl FeedbackWriter {
    pub async fn start(
        config: &AuditConfig,
        spool_dir: &Path,
        config_version: Arc<str>,
    ) -> Result<FeedbackWriter, AuditStartError> {
        let mut config = config.clone();
        config.spool_dir = spool_dir.to_owned();
        config.instance = format!("{}-judge", config.instance);
        let (log, tasks) = audit::start(&config).await?;
        Ok(FeedbackWriter {
            log,
            tasks,
            config_version,
            client_id: Arc::from(CLIENT_ID),
        })
    }

    pub fn write(
        &self,
        request_id: &str,
        metric: &str,
        value: FeedbackValue,
        comment: Option<String>,
        metadata: Map<String, Value>,
    ) {
        self.log.record_feedback(Feedback {
            feedback_id: Arc::from(feedback_id(request_id, metric)),
            request_id: request_id.to_owned(),
            metric: metric.to_owned(),
            value,
            comment,
            metadata: Some(metadata),
            client_id: Some(self.client_id.clone()),
            config_version: self.config_version.clone(),
            received_at: SystemTime::now(),
        });
    }

    /// Flushes the spool and uploads it (within a grace period).
    pub async fn finish(self) {
        drop(self.log);
        self.tasks.shutdown(UPLOAD_GRACE).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn feedback_ids_depend_on_request_and_metric_only() {
        let id = super::feedback_id("r1", "judge.helpful");
        assert_eq!(id, super::feedback_id("r1", "judge.helpful"));
        assert_ne!(id, super::feedback_id("r1", "judge.other"));
        assert_ne!(id, super::feedback_id("r2", "judge.helpful"));
        assert!(uuid::Uuid::parse_str(&id).is_ok());
    }
}
