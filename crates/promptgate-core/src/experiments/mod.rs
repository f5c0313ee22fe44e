//! Experiments: prompt variants, sticky assignment, feature flags and
//! template rendering. `model` holds the validated types, `assign` the pure
//! hashing core, `decide` the per-request choice of variant and its reason,
//! `render` how a variant rewrites a request (`body` reading and splicing
//! the request's JSON), `template` the prompt templates.

pub mod assign;
pub mod body;
pub mod decide;
mod error;
pub mod model;
pub mod render;
pub mod template;

pub use error::ExperimentError;
