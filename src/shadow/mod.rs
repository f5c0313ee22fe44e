//! Shadow calls: a sample of an experiment's requests also runs its candidate
//! variants, rendered from the same inputs, on the same snapshot, and never
//! served. The served request only hands a call over (copy + spawn; the
//! rendering happens on the call's task); the call runs on a tracked task set with its own timeout, its whole answer is
//! consumed inside the gateway, and it is recorded with `role = shadow` and
//! `shadow_of = <served request id>`. Its errors stay here: nothing it does
//! reaches the caller or the served call.
//!
//! Bounded three ways, each counted and recorded when it bites: a cap on calls
//! in flight, daily budgets, and shutdown (grace period, then cancel).

mod call;
mod limits;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::exchange::{ExchangeSink, ExperimentTag, RefusalKind, SkipReason};
use crate::snapshot::Snapshot;
use crate::telemetry::{ShadowMetrics, Telemetry};
use limits::ExperimentLimits;
use promptgate_core::config::audit::Price;
use promptgate_core::dialect::Endpoint;
use promptgate_core::experiments::assign;
use promptgate_core::experiments::decide::Reason;
use promptgate_core::experiments::model::{Experiment, ShadowPolicy};

/// Owns every shadow call in flight, and the limits that outlive reloads.
pub struct ShadowRunner {
    sink: Arc<dyn ExchangeSink>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// By experiment id; also holds each experiment's counters.
    limits: Mutex<HashMap<Arc<str>, Arc<ExperimentLimits>>>,
    /// `[prices]` as the audit log uses them (fixed at start-up), so a
    /// shadow's budgeted cost is the one its record shows.
    prices: Arc<HashMap<String, Price>>,
    /// The gateway's metrics (provider attempts, `role = shadow`) and access log.
    telemetry: Telemetry,
}

/// The served request, as a shadow call needs it.
pub struct ServedRequest<'a> {
    pub snapshot: &'a Arc<Snapshot>,
    pub experiment: &'a Experiment,
    pub assigned_variant: usize,
    /// The served request's experiment tag (assignment reason, unit key).
    pub tag: &'a ExperimentTag,
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub stream: bool,
    pub headers: &'a HeaderMap,
    pub request_id: &'a Arc<str>,
    pub client_id: Option<&'a Arc<str>>,
    pub tags: &'a promptgate_core::tags::Tags,
    pub started: Instant,
    pub started_at: SystemTime,
    /// The caller's body before any variant was rendered into it.
    pub body: &'a Bytes,
}

impl ShadowRunner {
    /// `sink` receives the shadow calls' records (the audit log).
    pub fn new(
        sink: Arc<dyn ExchangeSink>,
        prices: HashMap<String, Price>,
        telemetry: Telemetry,
    ) -> ShadowRunner {
        ShadowRunner {
            telemetry,
            prices: Arc::new(prices),
            sink,
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            limits: Mutex::default(),
        }
    }

    /// Each experiment's shadow counters, for `/metrics`: those that ever
    /// ran a shadow call in this process (counters never go back), and the
    /// `configured` ones at zero before their first call, so their series
    /// exist from the start. Locks the map once per scrape, not per request.
    pub fn metrics_by_experiment<'a>(
        &self,
        configured: impl IntoIterator<Item = &'a Arc<str>>,
    ) -> Vec<(Arc<str>, Arc<ShadowMetrics>)> {
        let mut limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        for id in configured {
            limits.entry(id.clone()).or_default();
        }
        limits
            .iter()
            .map(|(id, limits)| (id.clone(), limits.metrics.clone()))
            .collect()
    }

    /// Starts the experiment's shadow calls for this request if it is sampled.
    /// Returns at once: the calls run on their own tasks.
    pub fn launch(&self, served: ServedRequest<'_>) {
        let Some(policy) = &served.experiment.shadow else {
            return;
        };
        // A switched-off experiment or a pulled kill switch stops its shadows too.
        if matches!(served.tag.reason, Reason::Disabled | Reason::Killswitch) {
            return;
        }
        if !is_sampled(policy, served.experiment, served.tag, served.request_id) {
            return;
        }
        for &variant in &policy.variants {
            // The unit already gets this variant: its served record is the comparison.
            if variant != served.assigned_variant {
                self.launch_one(&served, policy, variant);
            }
        }
    }

    fn launch_one(&self, served: &ServedRequest<'_>, policy: &ShadowPolicy, variant: usize) {
        let experiment = served.experiment;
        let shadow = &experiment.variants[variant];
        let call = call::ShadowCall {
            snapshot: served.snapshot.clone(),
            experiment: experiment.id.clone(),
            variant,
            endpoint: served.endpoint,
            model: served.model.to_owned(),
            stream: served.stream,
            headers: served.headers.clone(),
            request_id: crate::exchange::fresh_request_id().as_str().into(),
            client_id: served.client_id.cloned(),
            tags: served.tags.clone(),
            started: served.started,
            started_at: served.started_at,
            source: served.body.clone(),
            tag: ExperimentTag {
                assigned_variant: shadow.name.clone(),
                served_variant: shadow.name.clone(),
                assigned_share: None,
                variant_version: shadow.version.clone(),
                shadow_of: Some(served.request_id.clone()),
                ..served.tag.clone()
            },
            timeout: policy.timeout,
            price: self.prices.get(shadow.model()).copied(),
        };
        let limits = self.limits_of(&experiment.id);
        let metrics = &limits.metrics;
        let admitted = if self.tasks.is_closed() {
            Err(SkipReason::ShuttingDown)
        } else {
            limits.admit(policy, metrics)
        };
        match admitted {
            Ok(place) => {
                metrics.started.fetch_add(1, Ordering::Relaxed);
                self.tasks.spawn(call.run(
                    place,
                    self.sink.clone(),
                    metrics.clone(),
                    self.telemetry.clone(),
                    self.cancel.clone(),
                ));
            }
            Err(reason) => {
                metrics.skip(reason);
                self.sink.record_refusal(call.unanswered(
                    RefusalKind::ShadowSkipped(reason),
                    format!("shadow call skipped: {}", reason.label()),
                ));
            }
        }
    }

    fn limits_of(&self, experiment: &Arc<str>) -> Arc<ExperimentLimits> {
        self.limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(experiment.clone())
            .or_default()
            .clone()
    }

    /// Lets running shadow calls finish within `grace`, then cancels the rest
    /// (each is recorded as cancelled) and waits for their records. Calls
    /// sampled from now on are skipped as `shutting_down`.
    pub async fn shutdown(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.tasks.len(),
                "cancelling shadow calls still running after the grace period"
            );
            self.cancel.cancel();
            self.tasks.wait().await;
        }
    }
}

/// Reproducible: by unit key (sticky) or by request id, under a draw of its
/// own so shadow sampling does not correlate with assignment or enrolment.
fn is_sampled(
    policy: &ShadowPolicy,
    experiment: &Experiment,
    tag: &ExperimentTag,
    request_id: &str,
) -> bool {
    let key = if policy.sticky {
        &*tag.unit_key
    } else {
        request_id
    };
    assign::is_shadow_sampled(&experiment.salt, key, policy.sample_percent)
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::exchange::NoSink;
    use promptgate_core::config::TelemetryConfig;

    fn runner() -> ShadowRunner {
        let telemetry = Telemetry::start(&TelemetryConfig::default(), HashMap::new()).unwrap();
        ShadowRunner::new(Arc::new(NoSink), HashMap::new(), telemetry)
    }

    /// A call as `launch` runs one: on the runner's tracker, ending with its
    /// answer (after `answers_after`) or with the runner's cancellation.
    fn call(
        runner: &ShadowRunner,
        answers_after: Duration,
    ) -> tokio::task::JoinHandle<&'static str> {
        let cancel = runner.cancel.clone();
        runner.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(answers_after) => "answered",
                () = cancel.cancelled() => "cancelled",
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_calls_finish_within_the_grace_period_then_cancels_the_rest() {
        let runner = runner();
        let quick = call(&runner, Duration::from_millis(300));
        let stuck = call(&runner, Duration::from_secs(3600));
        let started = Instant::now();
        runner.shutdown(Duration::from_secs(2)).await;
        // Exactly the grace period: cancelled then, not at the call's end.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(quick.await.unwrap(), "answered");
        assert_eq!(stuck.await.unwrap(), "cancelled");
        assert!(
            runner.tasks.is_empty(),
            "shutdown returned before the calls ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_returns_once_the_calls_end_without_cancelling_them() {
        let runner = runner();
        let calls = [
            call(&runner, Duration::from_millis(100)),
            call(&runner, Duration::from_millis(700)),
        ];
        let started = Instant::now();
        runner.shutdown(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(700));
        assert!(!runner.cancel.is_cancelled());
        for call in calls {
            assert_eq!(call.await.unwrap(), "answered");
        }
        // Closed: a call sampled from now on is not started.
        assert!(runner.tasks.is_closed());
    }
}
