//! The client-facing listener: accepts connections (with `TCP_NODELAY`), serves
//! HTTP/1.1 on each (over TLS when `[server.tls]` is set), and on shutdown stops accepting, lets in-flight requests
//! and streams finish within the grace period, then returns.

mod auth;
mod auth_layer;
mod body_limit;
mod handler;
mod observe;
mod stack;
mod variant;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

pub use auth::hash_key;

use super::Gateway;
use crate::accept::AcceptBackoff;
use crate::tls::{TlsListener, WithPeer};

/// Slowloris guard: a client gets this long to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until `shutdown` resolves, then drains for at most `grace`. At
/// most `max_concurrent_requests` are served at once; more are refused.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<TlsListener>>,
    gateway: Arc<Gateway>,
    grace: Duration,
    max_concurrent_requests: usize,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let stack = stack::request_stack(gateway.clone(), max_concurrent_requests);
    tokio::pin!(shutdown);
    gateway.accepting.store(true, Ordering::Release);
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            // Out of file descriptors and the like: backs off, keeps serving.
            (stream, peer) = backoff.next_connection(&listener, "client") => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                }
                let Some(tls) = &tls else {
                    let service = TowerToHyperService::new(stack.clone());
                    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    // Tracked by `graceful`, which waits for it on shutdown.
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                    continue;
                };
                // The handshake runs on the connection's task, not the accept
                // loop's; the watcher makes shutdown wait for it too.
                let (tls, http, stack, watcher) = (tls.clone(), http.clone(), stack.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let Some((stream, identity)) = tls.handshake(stream, peer).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(WithPeer::new(stack, identity));
                    let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    gateway.accepting.store(false, Ordering::Release);
    drop(listener);
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// Binds the listener (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
