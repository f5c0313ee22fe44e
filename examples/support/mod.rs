//! What the load tests' servers (`bare_forwarder`, `instant_upstream`) share:
//! a runtime that stops on SIGINT, and the accept loop.

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Runs `serve` on a multi-threaded runtime of `threads` workers until it
/// ends or SIGINT arrives. Scripts stop the servers with SIGINT, which bash
/// makes background jobs ignore unless they handle it.
pub fn run_until_interrupted(
    threads: usize,
    serve: impl Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?
        .block_on(async {
            tokio::select! {
                served = serve => served,
                stopped = tokio::signal::ctrl_c() => stopped,
            }
        })
}

/// Accepts connections for ever, each with TCP_NODELAY (without it, delayed
/// ACKs stall reused connections by ~40 ms), and hands each to `connected`.
pub async fn accept_each(
    listener: TcpListener,
    mut connected: impl FnMut(TcpStream),
) -> std::io::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: let some close.
                eprintln!("accept: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stream.set_nodelay(true)?;
        connected(stream);
    }
}
