//! A small OTLP/HTTP collector for tests: a hyper server on a free loopback
//! port that accepts `POST /v1/traces` (protobuf), as a real collector would,
//! and keeps every span with its service name.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

/// One exported span and the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: Option<String>,
    pub span: Span,
}

impl Received {
    pub fn name(&self) -> &str {
        &self.span.name
    }

    pub fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }

    pub fn parent_span_id(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }

    pub fn str(&self, key: &str) -> Option<String> {
        match attribute(&self.span.attributes, key)? {
            Value::StringValue(text) => Some(text.clone()),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match attribute(&self.span.attributes, key)? {
            Value::IntValue(value) => Some(*value),
            _ => None,
        }
    }

    pub fn is_error(&self) -> bool {
        // STATUS_CODE_ERROR = 2
        self.span.status.as_ref().is_some_and(|s| s.code == 2)
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub struct Collector {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    requests: Arc<Mutex<usize>>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let (kept, counted) = (spans.clone(), requests.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (spans, requests) = (kept.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (spans, requests) = (spans.clone(), requests.clone());
                        async move { Ok::<_, Infallible>(accept(request, &spans, &requests).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector {
            addr,
            spans,
            requests,
            server,
        }
    }

    /// The base URL, as `otlp_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` take it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }

    /// Waits (up to 15 s) until the spans received satisfy `done`.
    pub async fn wait_for(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn accept(
    request: Request<Incoming>,
    spans: &Mutex<Vec<Received>>,
    requests: &Mutex<usize>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("content-type", "application/x-protobuf".parse().unwrap());
        response
    };
    if request.uri().path() != "/v1/traces" {
        return reply(StatusCode::NOT_FOUND, Vec::new());
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return reply(StatusCode::BAD_REQUEST, Vec::new());
    };
    *requests.lock().unwrap() += 1;
    let mut kept = spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let service = resource_spans.resource.as_ref().and_then(|r| {
            match attribute(&r.attributes, "service.name") {
                Some(Value::StringValue(name)) => Some(name.clone()),
                _ => None,
            }
        });
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                kept.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    reply(
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}
