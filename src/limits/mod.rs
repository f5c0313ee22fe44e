//! Per-client limits (`[limits.<client id>]`): requests per minute, tokens
//! per minute and USD per day, each kept by this replica alone.
//!
//! A request is admitted right after its client is known (`Limits::admit`);
//! tokens and USD are known only once the answer has ended, so the exchange
//! is charged then (`Limits::charging`, a sink wrapper) and a client over its
//! budget is refused from its next request until the window frees. The
//! overshoot this allows is what the requests already in flight use when the
//! budget runs out.

mod store;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use crate::exchange::{ExchangeSink, FinishedExchange, RecordAck, Refusal};
use crate::telemetry::metrics::Metrics;
use promptgate_core::config::audit::Price;
use promptgate_core::config::limits::LimitsConfig;
use promptgate_core::error::GatewayError;

pub use store::{LimitExceeded, LimitStore, LocalStore, Usage};

/// The limits of every client: the store of their state, the prices that
/// turn tokens into USD, and the refusal counter.
pub struct Limits {
    store: Arc<dyn LimitStore>,
    /// USD per million tokens by the model sent upstream (`[prices]`, at start-up).
    prices: HashMap<String, Price>,
    metrics: Arc<Metrics>,
}

impl Limits {
    pub fn new(
        store: Arc<dyn LimitStore>,
        prices: HashMap<String, Price>,
        metrics: Arc<Metrics>,
    ) -> Arc<Limits> {
        Arc::new(Limits {
            store,
            prices,
            metrics,
        })
    }

    /// Admits one request of `client` under the limits in force (`config`,
    /// from the request's snapshot). Unauthenticated (open mode) and
    /// unlisted clients are not limited.
    pub fn admit(
        &self,
        config: &LimitsConfig,
        client: Option<&Arc<str>>,
    ) -> Result<(), GatewayError> {
        let Some((client, limits)) = client.and_then(|c| config.get_key_value(c)) else {
            return Ok(());
        };
        self.store.admit(client, limits).map_err(|refused| {
            self.metrics.limit_refused(client, refused.limit);
            GatewayError::RateLimited {
                client: client.clone(),
                limit: refused.limit,
                retry_after: refused.retry_after,
            }
        })
    }

    /// `inner` with every served exchange charged to its client on the way.
    /// Shadow calls are not given this sink: they have their own budgets.
    pub fn charging(self: &Arc<Self>, inner: Arc<dyn ExchangeSink>) -> Arc<dyn ExchangeSink> {
        Arc::new(ChargingSink {
            limits: self.clone(),
            inner,
        })
    }

    fn charge(&self, exchange: &FinishedExchange) {
        let Some(client) = &exchange.start.client_id else {
            return;
        };
        let usage = &exchange.captured.usage;
        let (input, output) = (usage.input_tokens, usage.output_tokens);
        let usd = self
            .prices
            .get(&exchange.start.upstream_model)
            .and_then(|price| price.cost_usd(input, output))
            .unwrap_or(0.0);
        let tokens = input.unwrap_or(0).saturating_add(output.unwrap_or(0));
        self.store.charge(client, Usage { tokens, usd });
    }
}

/// Charges each finished exchange, then hands it on unchanged (moved, not
/// copied).
struct ChargingSink {
    limits: Arc<Limits>,
    inner: Arc<dyn ExchangeSink>,
}

impl ExchangeSink for ChargingSink {
    fn record(&self, exchange: FinishedExchange) {
        self.limits.charge(&exchange);
        self.inner.record(exchange);
    }

    fn record_durably(
        &self,
        exchange: FinishedExchange,
    ) -> Option<tokio::sync::oneshot::Receiver<RecordAck>> {
        self.limits.charge(&exchange);
        self.inner.record_durably(exchange)
    }

    fn promises_durability(&self) -> bool {
        self.inner.promises_durability()
    }

    fn reads_answers(&self) -> bool {
        self.inner.reads_answers()
    }

    fn record_feedback(&self, feedback: crate::feedback::Feedback) {
        self.inner.record_feedback(feedback);
    }

    fn record_refusal(&self, refusal: Refusal) {
        self.inner.record_refusal(refusal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::NoSink;
    use crate::telemetry::Telemetry;
    use promptgate_core::config::TelemetryConfig;

    struct Keeps;

    impl ExchangeSink for Keeps {
        fn record(&self, _exchange: FinishedExchange) {}
    }

    #[test]
    fn charging_reads_no_answer_unless_a_sink_behind_it_does() {
        let telemetry = Telemetry::start(&TelemetryConfig::default(), HashMap::new()).unwrap();
        let limits = Limits::new(
            Arc::new(LocalStore::default()),
            HashMap::new(),
            telemetry.metrics().clone(),
        );
        // The binary's sink without an audit log: usage is all it needs.
        assert!(!limits.charging(Arc::new(NoSink)).reads_answers());
        assert!(limits.charging(Arc::new(Keeps)).reads_answers());
    }
}
