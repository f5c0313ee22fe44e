//! The simulated LLM provider used by every test and by the load tests: a real
//! HTTP server on loopback that answers the OpenAI and Anthropic APIs in their
//! own shapes (the demo provider's answers), JSON and SSE, with configurable
//! latency and chunk timing, injectable faults, and a record of every request
//! it received so tests can assert on what reached the provider.
//!
//! Faults come from a script (`push_fault`, consumed one per request) or from
//! the request header `x-sim-fault` (forwarded by the gateway like any other
//! caller header): `status=503`, `status=429;retry-after=1`, `hang`,
//! `close`, `drop-after=3`, `delay-ms=500`.
//!
//! The request header `x-sim-chunk-ms: N` spaces that request's SSE frames by
//! N milliseconds instead of [`SimConfig::chunk_delay`], so one simulator can
//! serve instant and paced streams side by side (the load tests' stream probe
//! measures inter-chunk gaps with it).

mod fault;
mod rules;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use fault::Fault;
pub use rules::{SimJudge, WRONG_ANSWER, WrongAnswers};

use crate::body::{BoxError, GatewayBody};
use crate::providers::demo;
use promptgate_core::dialect::Endpoint;

/// How many received requests are kept (the oldest are forgotten first), so a
/// long load test does not grow the simulator's memory.
const RECORD_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// Wait before the response head (for JSON: before the whole answer).
    pub first_byte_delay: Duration,
    /// Wait between two SSE frames.
    pub chunk_delay: Duration,
    /// When set, requests must carry this key (`Authorization: Bearer` or
    /// `x-api-key`), else 401 — lets tests prove the gateway injects it.
    pub required_key: Option<String>,
    /// One model answers wrong on a share of inputs (an injected regression).
    pub wrong_answers: Option<WrongAnswers>,
    /// How the eval judge's prompts are answered.
    pub judge: Option<SimJudge>,
}

/// One request as the simulator received it.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

struct State {
    config: SimConfig,
    script: Mutex<VecDeque<Fault>>,
    received: Mutex<VecDeque<Received>>,
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

impl Simulator {
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        Simulator::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            config,
            script: Mutex::new(VecDeque::new()),
            received: Mutex::new(VecDeque::new()),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, state.clone(), stopped));
        Ok(Simulator { addr, state, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for an `openai`-kind provider (with `/v1`).
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL for an `anthropic`-kind provider (without `/v1`).
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a fault for the next request that carries no `x-sim-fault` header.
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.state.script).push_back(fault);
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).iter().cloned().collect()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking test thread must not take the simulator down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| respond(state.clone(), request));
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
            _ = stopped.changed() => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("simulated fault: connection closed")]
struct SimulatedClose;

async fn respond(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<GatewayBody>, BoxError> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path().to_owned();

    if path == "/_sim/requests" {
        let received: Vec<Received> = lock(&state.received).iter().cloned().collect();
        return Ok(json_response(StatusCode::OK, &json!(received)));
    }

    let record = Received {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    {
        let mut received = lock(&state.received);
        if received.len() == RECORD_LIMIT {
            received.pop_front();
        }
        received.push_back(record);
    }

    let fault = match parts
        .headers
        .get("x-sim-fault")
        .and_then(|v| v.to_str().ok())
    {
        Some(text) => Fault::parse(text),
        None => lock(&state.script).pop_front(),
    };

    if let Some(required) = &state.config.required_key {
        let bearer = format!("Bearer {required}");
        let authorized = parts
            .headers
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == bearer.as_bytes())
            || ["x-api-key", "api-key"].iter().any(|name| {
                parts
                    .headers
                    .get(*name)
                    .is_some_and(|v| v.as_bytes() == required.as_bytes())
            });
        if !authorized {
            return Ok(json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
            ));
        }
    }

    let mut first_byte_delay = state.config.first_byte_delay;
    let mut drop_after = None;
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            tokio::time::sleep(first_byte_delay).await;
            let mut response = error_status(status);
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(seconds));
            }
            return Ok(response);
        }
        Some(Fault::StatusWithRawRetryAfter {
            status,
            name,
            value,
        }) => {
            tokio::time::sleep(first_byte_delay).await;
            let mut response = error_status(status);
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
            return Ok(response);
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Some(Fault::Close) => return Err(Box::new(SimulatedClose)),
        Some(Fault::DropAfter(frames)) => drop_after = Some(frames),
        Some(Fault::Delay(delay)) => first_byte_delay = delay,
        None => {}
    }

    let Ok(endpoint) = Endpoint::from_request(&parts.method, &path_without_base(&path)) else {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"message": "no such endpoint", "type": "invalid_request_error"}}),
        ));
    };
    // Refused as the real API would, after the faults: a scripted fault is
    // consumed by the request it was meant for, whatever its body.
    let request = match demo::read_request(endpoint, &body) {
        Ok(request) => request,
        Err(error) => {
            tokio::time::sleep(first_byte_delay).await;
            return Ok(json_response(StatusCode::BAD_REQUEST, &error));
        }
    };
    let mut answer = demo::answer(endpoint, &request);
    let config = &state.config;
    rules::apply(
        config.wrong_answers.as_ref(),
        config.judge.as_ref(),
        &request,
        &mut answer,
    );
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && demo::streams(endpoint);
    tokio::time::sleep(first_byte_delay).await;
    if !stream {
        let mut response = json_response(StatusCode::OK, &demo::json_body(endpoint, &answer));
        response
            .headers_mut()
            .insert("x-request-id", HeaderValue::from_static("sim-request"));
        return Ok(response);
    }
    let frames = demo::sse_frames(endpoint, &answer, &request);
    let chunk_delay = chunk_delay(&parts.headers).unwrap_or(state.config.chunk_delay);
    let frames = futures_util::stream::unfold(
        (frames.into_iter(), 0usize),
        move |(mut frames, sent)| async move {
            if sent == usize::MAX {
                return None; // the break was sent
            }
            if drop_after.is_some_and(|limit| sent >= limit) {
                // Let the head and the frames so far reach the client first;
                // hyper discards unflushed bytes when a body fails.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Some((
                    Err::<Frame<Bytes>, BoxError>(Box::new(SimulatedClose)),
                    (frames, usize::MAX),
                ));
            }
            let frame = frames.next()?;
            if sent > 0 && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            Some((Ok(Frame::data(frame)), (frames, sent + 1)))
        },
    );
    let mut response = Response::new(StreamBody::new(frames).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// An error answer of `status` with an OpenAI-style body.
fn error_status(status: u16) -> Response<GatewayBody> {
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({"error": {"message": format!("simulated error {status}"), "type": "server_error", "code": null}}),
    )
}

/// The per-request frame spacing asked for with `x-sim-chunk-ms: N`.
fn chunk_delay(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("x-sim-chunk-ms")?.to_str().ok()?;
    text.trim().parse().ok().map(Duration::from_millis)
}

/// Providers are mounted under a base URL; the simulator answers at `/v1/...`
/// and under any other prefix that ends in an OpenAI path, like Azure's
/// `/openai/deployments/<name>/chat/completions`.
fn path_without_base(path: &str) -> String {
    if let Some(at) = path.find("/v1/") {
        return path[at..].to_owned();
    }
    [
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/responses",
    ]
    .iter()
    .find(|suffix| path.ends_with(*suffix))
    .map_or_else(|| path.to_owned(), |suffix| format!("/v1{suffix}"))
}

fn json_response(status: StatusCode, value: &Value) -> Response<GatewayBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(value.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
