//! The simulated provider as a standalone server, for load tests and manual
//! experiments: `promptgate-sim --listen 127.0.0.1:9000 --first-byte-ms 20`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use promptgate::simulator::{SimConfig, Simulator};

#[derive(Parser)]
#[command(
    name = "promptgate-sim",
    about = "Simulated OpenAI/Anthropic provider for tests and load tests"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Delay before the response head, in milliseconds.
    #[arg(long, default_value_t = 0)]
    first_byte_ms: u64,
    /// Delay between SSE frames, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_ms: u64,
    /// Require this provider key (else 401).
    #[arg(long, env = "PROMPTGATE_SIM_KEY")]
    require_key: Option<String>,
    /// Worker threads (the load tests pin the simulator to one).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(async {
            let simulator = Simulator::start_on(
                args.listen,
                SimConfig {
                    first_byte_delay: Duration::from_millis(args.first_byte_ms),
                    chunk_delay: Duration::from_millis(args.chunk_ms),
                    required_key: args.require_key,
                    ..SimConfig::default()
                },
            )
            .await?;
            // The one line scripts wait for.
            println!("listening on {}", simulator.addr());
            tokio::signal::ctrl_c().await?;
            drop(simulator);
            Ok(())
        })
}
