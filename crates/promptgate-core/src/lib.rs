//! promptgate's pure core: what the gateway decides, without any I/O stack.
//! `config` reads and validates the TOML file into types that cannot hold an
//! invalid state; `routing` maps a model name to its route; `experiments`
//! assigns a request to a variant (a pure hash) and renders it; `dialect`
//! knows the two client APIs' endpoints and checks a request body; `sse`
//! splits an event stream into events; `error` is every way a request can
//! fail. The gateway (the root crate) turns these into HTTP.
//!
//! Nothing here depends on hyper, an AWS SDK or OpenTelemetry (`cargo tree
//! -p promptgate-core`), so a layering mistake is a compile error.

pub mod config;
pub mod dialect;
pub mod error;
pub mod experiments;
pub mod routing;
pub mod sse;
pub mod tags;
