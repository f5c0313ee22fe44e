//! One model call made offline through the gateway's own providers: the
//! same `providers::forward` (retries, fallback, timeouts) a served request
//! takes, with the whole answer read before it returns. Used for the cases
//! of a suite and for the judge's questions.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;

use crate::exchange::{ExchangeSink, FinishedExchange};
use crate::providers::{self, ForwardRequest, Upstreams, WhenExhausted};
use crate::telemetry::{Role, Telemetry};
use promptgate_core::config::{ProviderKind, RouteConfig};
use promptgate_core::dialect::Endpoint;

/// What a call produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub text: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// From the start of the call to the end of the answer.
    pub latency_ms: f64,
}

/// The endpoint a route is spoken to in: Anthropic's Messages API when its
/// first provider is Anthropic, else OpenAI's chat completions (which the
/// demo provider and every OpenAI-compatible server speak).
pub fn endpoint_for(upstreams: &Upstreams, route: &RouteConfig) -> Endpoint {
    match route
        .providers
        .first()
        .and_then(|&id| upstreams.provider_kind(id))
    {
        Some(ProviderKind::Anthropic(_)) => Endpoint::Messages,
        _ => Endpoint::ChatCompletions,
    }
}

/// Keeps the one exchange a call reports.
#[derive(Default)]
struct Catch(Mutex<Option<FinishedExchange>>);

impl ExchangeSink for Catch {
    fn record(&self, exchange: FinishedExchange) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(exchange);
    }
}

/// Sends `body` along `route` and reads the whole answer; an error says why
/// there is no answer (unreachable provider, error status, timeout) without
/// the provider's error text.
pub async fn complete(
    upstreams: &Upstreams,
    route: &RouteConfig,
    endpoint: Endpoint,
    model: &str,
    body: Bytes,
    telemetry: &Telemetry,
    timeout: Duration,
) -> Result<Answer, String> {
    let started = Instant::now();
    let catch = Arc::new(Catch::default());
    let sink: Arc<dyn ExchangeSink> = catch.clone();
    let request_id: Arc<str> = Arc::from(format!("eval-{}", uuid::Uuid::new_v4()));
    let request_id_header = HeaderValue::from_static("eval");
    let headers = HeaderMap::new();
    let call = async {
        let response = providers::forward(
            upstreams,
            route,
            ForwardRequest {
                endpoint,
                model,
                upstream_model: model,
                stream: false,
                body,
                caller_headers: &headers,
                request_id: &request_id,
                request_id_header: &request_id_header,
                client_id: None,
                tags: Default::default(),
                config_version: Arc::from("eval"),
                started,
                started_at: SystemTime::now(),
                experiment: None,
                when_exhausted: WhenExhausted::PassThrough,
                trace: None,
                telemetry,
                // Counts attempts like a shadow call does: no served-request
                // metrics or access-log line for an offline evaluation.
                role: Role::Shadow,
            },
            &sink,
        )
        .await
        .map_err(|error| error.to_string())?;
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|error| format!("the answer broke off: {error}"))?;
        }
        Ok::<(), String>(())
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result?,
        Err(_) => return Err(format!("no answer within {} ms", timeout.as_millis())),
    }
    let exchange = catch
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| "the provider's answer was not observed".to_owned())?;
    if let Some(class) = exchange.error_class() {
        return Err(format!(
            "the provider answered {} ({class})",
            exchange.start.status
        ));
    }
    Ok(Answer {
        text: exchange.captured.text,
        input_tokens: exchange.captured.usage.input_tokens,
        output_tokens: exchange.captured.usage.output_tokens,
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// A model reached by name through the config's routes, as the judge asks it.
pub struct RoutedModel<'a> {
    pub upstreams: &'a Upstreams,
    pub route: &'a RouteConfig,
    /// The model the provider is asked for.
    pub model: String,
    pub telemetry: &'a Telemetry,
    pub timeout: Duration,
    /// Anthropic requires one.
    pub max_tokens: u64,
}

impl RoutedModel<'_> {
    /// A request with a system and a user message, at temperature 0, in the
    /// shape of the route's dialect.
    fn body(&self, endpoint: Endpoint, system: &str, user: &str) -> serde_json::Value {
        let user = serde_json::json!({"role": "user", "content": user});
        match endpoint {
            Endpoint::Messages => serde_json::json!({
                "model": self.model,
                "system": system,
                "messages": [user],
                "max_tokens": self.max_tokens,
                "temperature": 0,
            }),
            _ => serde_json::json!({
                "model": self.model,
                "messages": [{"role": "system", "content": system}, user],
                "temperature": 0,
            }),
        }
    }
}

impl RoutedModel<'_> {
    /// Asks a question and keeps the whole answer (its token counts price it).
    pub async fn answer(&self, system: &str, user: &str) -> Result<Answer, String> {
        let endpoint = endpoint_for(self.upstreams, self.route);
        let body = Bytes::from(self.body(endpoint, system, user).to_string());
        complete(
            self.upstreams,
            self.route,
            endpoint,
            &self.model,
            body,
            self.telemetry,
            self.timeout,
        )
        .await
    }
}

impl super::judge::JudgeModel for RoutedModel<'_> {
    async fn ask(&self, system: &str, user: &str) -> Result<String, String> {
        self.answer(system, user).await.map(|answer| answer.text)
    }
}
