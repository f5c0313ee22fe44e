//! The bare forwarder: the least a reverse proxy can do on this machine, and
//! the baseline the load tests compare the gateway with.
//!
//! It accepts HTTP/1.1 and sends every request — method, path, headers and
//! body, streamed — to one upstream over a pooled keep-alive client, then
//! streams the response back. No parsing, no routing, no logging.
//!
//! `cargo run --release --example bare_forwarder -- --upstream http://127.0.0.1:9000`

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "A bare HTTP/1.1 forwarder: the baseline for proxy overhead")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where every request goes, e.g. `http://127.0.0.1:9000`.
    #[arg(long)]
    upstream: Uri,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

type Upstream = Client<HttpConnector, Incoming>;
type Body = Either<Incoming, Empty<Bytes>>;

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    support::run_until_interrupted(args.threads, serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    // Without it, delayed ACKs stall reused connections by ~40 ms.
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    let listener = TcpListener::bind(args.listen).await?;
    // The one line scripts wait for.
    println!("listening on {}", listener.local_addr()?);
    support::accept_each(listener, |stream| {
        let (client, upstream) = (client.clone(), args.upstream.clone());
        tokio::spawn(async move {
            let service =
                service_fn(move |request| forward(client.clone(), upstream.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    })
    .await
}

/// Rewrites the URI to the upstream's scheme and authority (path and query
/// kept) and sends the request as it came; a failed call answers 502.
async fn forward(
    client: Upstream,
    upstream: Uri,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, hyper::http::Error> {
    let mut parts = upstream.into_parts();
    parts.path_and_query = request.uri().path_and_query().cloned();
    *request.uri_mut() = Uri::from_parts(parts)?;
    match client.request(request).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(_) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Either::Right(Empty::new())),
    }
}
