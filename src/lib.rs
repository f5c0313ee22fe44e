//! promptgate: an LLM gateway. Requests flow one way through the modules:
//! `app::server` (accept, observe, shed, authenticate) → the dialect
//! (`promptgate_core::dialect`: endpoint, parsing) → `snapshot` (the config
//! in force) → routing (`promptgate_core::routing`: model → providers) →
//! `providers` (send, retry, fall back) → `capture` (observe the response,
//! report the exchange). `respond` writes every failure in the caller's
//! dialect; `simulator` is the test provider; `telemetry` traces requests
//! across all of them; `eval` runs golden sets through the same path offline.
//! What the gateway decides without I/O (config, routing, experiments,
//! dialect types, errors) is the `promptgate-core` crate.

pub mod accept;
pub mod admin;
pub mod app;
pub mod audit;
pub mod body;
pub mod capture;
pub mod eval;
pub mod exchange;
pub mod feedback;
pub mod judge;
pub mod judge_prompts;
pub mod limits;
pub mod providers;
pub mod reload;
pub mod respond;
pub mod shadow;
pub mod simulator;
pub mod snapshot;
pub mod telemetry;
pub mod tls;

/// The client listener lives in the assembled application (`app::server`);
/// this path keeps `promptgate::server::hash_key` for the binary and tests.
pub use app::server;
