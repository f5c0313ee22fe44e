//! Configuration: the TOML file is parsed into `raw` types, validated into
//! `model` types, and every problem is reported as `file:line: field.path: message`.

pub mod audit;
mod deserialize;
pub mod feedback;
pub mod limits;
mod location;
pub mod model;
pub mod permissions;
pub mod raw;
mod validate;
mod validate_audit;
mod validate_auth;
mod validate_experiments;
mod validate_shadow;
mod validate_tags;
mod validate_tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use model::*;
pub use permissions::Permissions;
pub use validate::{FieldError, ReadPrompt};

/// A config problem located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(file: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, problem) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&file.display().to_string());
        if let Some(line) = problem.line {
            out.push_str(&format!(":{line}"));
        }
        out.push_str(": ");
        if !problem.path.is_empty() {
            out.push_str(&problem.path);
            out.push_str(": ");
        }
        out.push_str(&problem.message);
    }
    out
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

/// Options that come from the command line rather than the file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub listen_override: Option<SocketAddr>,
    pub admin_listen_override: Option<SocketAddr>,
}

/// Reads, parses and validates a config file. Secrets named in it are read from
/// the process environment or from files.
pub fn load_file(file: &Path, options: &LoadOptions) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    let base_dir = file.parent().unwrap_or(Path::new("."));
    load_text(
        file,
        &source,
        base_dir,
        &|name| read_local_prompt(base_dir, name),
        options,
    )
}

/// Reads a prompt file named in the config relative to the config's directory.
pub fn read_local_prompt(base_dir: &Path, name: &str) -> Result<(PathBuf, String), String> {
    let path = base_dir.join(name);
    std::fs::read_to_string(&path)
        .map(|text| (path.clone(), text))
        .map_err(|err| format!("cannot read {}: {err}", path.display()))
}

/// Parses and validates config text that came from `origin` (a file or an
/// `s3://` object; named in every problem). Prompt files are read through
/// `read_prompt`, so a config kept elsewhere than on disk brings its own
/// reader; secret files are read relative to `secrets_dir`.
pub fn load_text(
    origin: &Path,
    source: &str,
    secrets_dir: &Path,
    read_prompt: &ReadPrompt<'_>,
    options: &LoadOptions,
) -> Result<Config, ConfigError> {
    let read_env = |name: &str| std::env::var(name).ok();
    parse(
        source,
        &validate::Environment {
            base_dir: secrets_dir,
            listen_override: options.listen_override,
            admin_listen_override: options.admin_listen_override,
            read_env: &read_env,
            read_prompt,
        },
    )
    .map_err(|problems| ConfigError::Invalid {
        file: origin.to_owned(),
        problems,
    })
}

/// Every problem of the file at once: what cannot be read as the config's
/// types (syntax, unknown keys, wrong types), then what validation finds in
/// the rest — all in file order.
fn parse(source: &str, env: &validate::Environment<'_>) -> Result<Config, Vec<Problem>> {
    let deserialize::Reading {
        raw,
        mut problems,
        paths,
    } = deserialize::read(source);
    let Some(raw) = raw else {
        return Err(problems);
    };
    let errors = match validate::validate(raw, source, env) {
        Ok(config) if problems.is_empty() => return Ok(config),
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    };
    problems.extend(errors.into_iter().map(|FieldError { path, message }| {
        let path = paths.original_text(&path);
        Problem {
            line: location::line_of(source, &path),
            path,
            message,
        }
    }));
    Err(deserialize::in_file_order(problems))
}

/// Reads another TOML document of ours (an eval suite) by the config's rules:
/// every syntax, unknown-key and type problem at once, each with its line.
pub fn read_document<T: serde::de::DeserializeOwned>(source: &str) -> Result<T, Vec<Problem>> {
    let reading = deserialize::read::<T>(source);
    match reading.raw {
        Some(document) if reading.problems.is_empty() => Ok(document),
        _ => Err(reading.problems),
    }
}

/// A serde message in the config's words ("unknown value", "a number").
pub fn plain_message(message: &str) -> String {
    deserialize::plain_words(message)
}

/// Line (1-based) of a field path (`scorers[1].pattern`) in a TOML document.
pub fn line_of(source: &str, path: &str) -> Option<usize> {
    location::line_of(source, path)
}

/// First 12 hex characters of the SHA-256 of the config text and every prompt
/// file (path and content): the config version.
pub fn config_version(source: &str, files: &[(PathBuf, String)]) -> Arc<str> {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    for (path, text) in files {
        for part in [path.to_string_lossy().as_bytes(), text.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hex::encode(&hasher.finalize()[..6]).into()
}

#[cfg(test)]
mod experiment_tests;
#[cfg(test)]
mod tests;
