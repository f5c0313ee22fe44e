//! The integration tests, one binary with a module per area. Each of the
//! former sixteen test binaries linked the whole AWS and OpenTelemetry graph
//! on its own; one binary links it once. nextest still runs every test in a
//! process of its own, so no test shares state with another.

// Test code: a failed unwrap or a panic is how a test reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod analyze;
mod analyze_report;
mod analyze_stats;
mod audit_durability;
mod audit_faults;
mod audit_queries;
mod audit_s3;
mod audit_zstd;
mod authz;
mod cli;
mod config_s3;
mod configmap;
mod dashboard;
mod drift;
mod errors;
mod eval;
mod experiments;
mod export_dataset;
mod feedback;
mod fuzz;
mod judge;
mod limits;
mod logs;
mod overload;
mod proxy;
mod reload;
mod replicas;
mod robustness;
mod scorers;
mod sdk;
mod shadow;
mod tags;
mod telemetry;
mod tls;
mod validation;
