//! promptgate: an LLM gateway. Requests flow one way through the modules:
//! `app::server` (accept, observe, shed, authenticate) → `api` (dialect, parsing) → `snapshot`
//! (the config in force) → `routing` (model → providers) → `providers`
//! (send, retry, fall back) → `capture` (observe the response, report the
//! exchange). `config` builds the snapshot; `simulator` is the test provider;
//! `telemetry` traces requests across all of them.

pub mod accept;
pub mod admin;
pub mod analyze;
pub mod api;
pub mod app;
pub mod audit;
pub mod body;
pub mod capture;
pub mod config;
pub mod error;
pub mod eval;
pub mod experiments;
pub mod feedback;
pub mod providers;
pub mod reload;
pub mod routing;
pub mod shadow;
pub mod simulator;
pub mod snapshot;
pub mod telemetry;

/// The client listener lives in the assembled application (`app::server`);
/// this path keeps `promptgate::server::hash_key` for the binary and tests.
pub use app::server;
