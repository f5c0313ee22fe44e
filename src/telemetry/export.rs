//! The OTLP/HTTP exporter, on the same hyper + rustls stack as the provider
//! client (http and https, `TCP_NODELAY`), batched on its own thread.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::TokioCurrentThread;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};

use super::TelemetryError;
use promptgate_core::config::TraceExport;

const SERVICE_NAME: &str = "promptgate";
/// One export request may take this long (connect, send, answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// A collector's answer is a small protobuf; anything bigger is not read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub(super) fn tracer_provider(export: &TraceExport) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient::new())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(export.endpoint.to_string())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: export.endpoint.to_string(),
            source,
        })?;
    let batches = BatchConfigBuilder::default()
        .with_scheduled_delay(export.export_interval)
        .build();
    // `TokioCurrentThread` runs the batch task on a thread of its own with its
    // own reactor: exports never compete with requests for a runtime worker,
    // and shutting the provider down (or dropping it) from a runtime thread
    // cannot deadlock waiting for a task that thread would have to run.
    let processor = BatchSpanProcessor::builder(exporter, TokioCurrentThread)
        .with_batch_config(batches)
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(export.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build())
}

type Inner = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// `opentelemetry_http::HttpClient` on hyper-util's pooled client.
#[derive(Clone)]
struct OtlpClient {
    inner: Inner,
}

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtlpClient")
    }
}

impl OtlpClient {
    fn new() -> OtlpClient {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            // Fails only if ring lacked every TLS version, which it never does.
            .unwrap_or_else(|_| hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        OtlpClient {
            inner: Client::builder(TokioExecutor::new()).build(https),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = request.map(Full::new);
        let exchange = async {
            let response = self.inner.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        tokio::time::timeout(EXPORT_TIMEOUT, exchange)
            .await
            .map_err(|_| HttpError::from("the OTLP collector did not answer in time"))?
    }
}
