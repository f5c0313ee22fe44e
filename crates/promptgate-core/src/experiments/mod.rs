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

/// For the experiments' tests: the first experiment of a config file's text,
/// loaded through the real config loader (so tests see what a file produces).
#[cfg(test)]
mod test_config {
    use super::model::Experiment;
    use crate::config::{LoadOptions, load_file};

    pub(super) fn first_experiment(text: &str) -> Experiment {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, text).unwrap();
        let mut config = load_file(&file, &LoadOptions::default()).unwrap();
        config.experiments.remove(0)
    }
}
