//! A fault-injecting reverse proxy in front of the test S3 server
//! (`S3Server`): a plain hyper server on a loopback port that passes every
//! request through unchanged (the `Host` header too, so SigV4 signatures
//! made for the proxy's address still verify upstream), except the object
//! PUTs it is told to slow down or fail.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What the proxy does to PUTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Fault {
    /// Pass everything through.
    None,
    /// Hold each PUT this long before passing it on.
    SlowPuts(Duration),
    /// PUTs cycle through: passed; 500 InternalError (not passed on); 403
    /// ExpiredToken (not passed on); passed on, stored, and then answered
    /// with a 500 as if the answer was lost (the retry finds it stored).
    FlakyPuts,
}

/// How many PUTs the proxy saw and what it did to them.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    pub puts: AtomicU64,
    pub delayed: AtomicU64,
    pub refused_500: AtomicU64,
    pub refused_403: AtomicU64,
    pub stored_then_500: AtomicU64,
}

impl ProxyCounts {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} PUTs: {} delayed, {} refused 500, {} refused 403, {} stored then answered 500",
            Self::get(&self.puts),
            Self::get(&self.delayed),
            Self::get(&self.refused_500),
            Self::get(&self.refused_403),
            Self::get(&self.stored_then_500),
        )
    }
}

struct Shared {
    upstream: SocketAddr,
    fault: Mutex<S3Fault>,
    counts: ProxyCounts,
    client: Client<HttpConnector, Incoming>,
}

pub struct S3FaultProxy {
    /// The endpoint to give the gateway instead of the server's.
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl S3FaultProxy {
    /// Starts the proxy in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> S3FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("an http://IP:PORT endpoint");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listener");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream,
            fault: Mutex::new(S3Fault::None),
            counts: ProxyCounts::default(),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        S3FaultProxy {
            endpoint,
            shared,
            task,
        }
    }

    pub fn set(&self, fault: S3Fault) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    pub fn counts(&self) -> &ProxyCounts {
        &self.shared.counts
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn s3_error(status: StatusCode, code: &str) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap()
}

impl Shared {
    async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        if request.method() != Method::PUT {
            return self.forward(request).await;
        }
        let n = self.counts.puts.fetch_add(1, Ordering::Relaxed);
        let fault = *self.fault.lock().unwrap();
        match fault {
            S3Fault::None => self.forward(request).await,
            S3Fault::SlowPuts(delay) => {
                tokio::time::sleep(delay).await;
                self.counts.delayed.fetch_add(1, Ordering::Relaxed);
                self.forward(request).await
            }
            S3Fault::FlakyPuts => match n % 4 {
                0 => self.forward(request).await,
                1 => {
                    self.counts.refused_500.fetch_add(1, Ordering::Relaxed);
                    s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
                }
                2 => {
                    self.counts.refused_403.fetch_add(1, Ordering::Relaxed);
                    s3_error(StatusCode::FORBIDDEN, "ExpiredToken")
                }
                _ => {
                    let stored = self.forward(request).await;
                    if stored.status().is_success() {
                        self.counts.stored_then_500.fetch_add(1, Ordering::Relaxed);
                        s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
                    } else {
                        stored
                    }
                }
            },
        }
    }

    /// Sends the request on to the server as it came, headers and all.
    async fn forward(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = format!("http://{}{path}", self.upstream)
            .parse()
            .expect("upstream URI");
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => response.map(BodyExt::boxed),
            Err(_) => s3_error(StatusCode::BAD_GATEWAY, "ProxyUpstreamUnreachable"),
        }
    }
}
