//! Rubric files: `config/judges/<name>.toml`, beside the config, read by the
//! config's own rules (every problem at once, as `file:line: field:
//! message`) and checked against the config they run with (the judge
//! model's route, `[feedback.metrics]`).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::eval::judge::Rubric;
use crate::snapshot::Snapshot;
use promptgate_core::config::feedback::{MetricKind, is_label};
use promptgate_core::config::{self, ConfigError, Problem};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRubric {
    /// A model name routed by the config's `[[routes]]`.
    model: String,
    mode: RawMode,
    /// What a good answer does (required for `pointwise`; shown to the
    /// pairwise judge too when given).
    criteria: Option<String>,
    pass_score: Option<u8>,
    timeout_ms: Option<u64>,
    max_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawMode {
    Pairwise,
    Pointwise,
}

/// How answers are judged, and so the feedback metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A served answer against its shadow, in both orders: a boolean per
    /// side, true for the answer that won.
    Pairwise,
    /// Each served answer scored 1–10: a number.
    Pointwise,
}

impl Mode {
    pub fn metric_kind(self) -> MetricKind {
        match self {
            Mode::Pairwise => MetricKind::Boolean,
            Mode::Pointwise => MetricKind::Float,
        }
    }
}

/// A validated rubric file.
#[derive(Debug, Clone)]
pub struct RubricFile {
    /// The file's stem: `helpful` for `config/judges/helpful.toml`.
    pub name: String,
    pub model: String,
    pub mode: Mode,
    pub rubric: Rubric,
    pub timeout: Duration,
    pub max_tokens: u64,
}

/// The prefix of every judge metric; `.` because metric names are plain
/// labels (`[feedback]`'s rule: they become columns and metric labels).
pub const METRIC_PREFIX: &str = "judge.";

impl RubricFile {
    /// The feedback metric the verdicts are written as: `judge.<name>`.
    pub fn metric(&self) -> String {
        format!("{METRIC_PREFIX}{}", self.name)
    }
}

const DEFAULT_PASS_SCORE: u8 = 7;
const DEFAULT_TIMEOUT_MS: u64 = 120_000;
const DEFAULT_MAX_TOKENS: u64 = 256;
/// Criteria of a pairwise rubric that names none.
const GENERAL_CRITERIA: &str = "Which answer serves the request better: correct, complete, clear.";

/// Reads and validates a rubric file against the config in `snapshot`.
pub fn load(file: &Path, snapshot: &Snapshot) -> Result<RubricFile, ConfigError> {
    let source = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    parse(&source, file, snapshot).map_err(|problems| ConfigError::Invalid {
        file: file.to_owned(),
        problems,
    })
}

fn parse(source: &str, file: &Path, snapshot: &Snapshot) -> Result<RubricFile, Vec<Problem>> {
    let raw: RawRubric = config::read_document(source)?;
    let mut problems = Vec::new();
    let mut add = |path: &str, message: String| {
        problems.push(Problem {
            line: config::line_of(source, path),
            path: path.to_owned(),
            message,
        });
    };
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metric = format!("{METRIC_PREFIX}{name}");
    if !is_label(&metric) {
        add(
            "",
            format!(
                "the file name gives the metric `{metric}`, which {}",
                config::feedback::LABEL_RULE
            ),
        );
    }
    if snapshot.routes.resolve(&raw.model).is_none() {
        add(
            "model",
            format!("`{}` is not routed by the config's [[routes]]", raw.model),
        );
    }
    let mode = match raw.mode {
        RawMode::Pairwise => Mode::Pairwise,
        RawMode::Pointwise => Mode::Pointwise,
    };
    let criteria = match (&raw.criteria, mode) {
        (Some(text), _) if text.trim().is_empty() => {
            add("criteria", "must not be empty".into());
            String::new()
        }
        (Some(text), _) => text.clone(),
        (None, Mode::Pointwise) => {
            add("criteria", "a pointwise rubric needs its criteria".into());
            String::new()
        }
        (None, Mode::Pairwise) => GENERAL_CRITERIA.to_owned(),
    };
    let pass_score = raw.pass_score.unwrap_or(DEFAULT_PASS_SCORE);
    if !(1..=10).contains(&pass_score) {
        add("pass_score", "must be from 1 to 10".into());
    }
    if raw.timeout_ms == Some(0) {
        add("timeout_ms", "must be at least 1".into());
    }
    if raw.max_tokens == Some(0) {
        add("max_tokens", "must be at least 1".into());
    }
    // The verdicts go through the feedback table: a config that declares
    // its metrics must declare this one, with its type.
    let declared = &snapshot.feedback.metrics;
    if !declared.is_empty() {
        let kind = mode.metric_kind();
        match declared.get(&metric) {
            Some(found) if *found == kind => {}
            Some(found) => add(
                "mode",
                format!(
                    "[feedback.metrics] declares `{metric}` as {}, but a {} rubric writes {}",
                    found.label(),
                    if mode == Mode::Pairwise {
                        "pairwise"
                    } else {
                        "pointwise"
                    },
                    kind.label()
                ),
            ),
            None => add(
                "",
                format!(
                    "the config's [feedback.metrics] does not declare `{metric}`: add `\"{metric}\" = \"{}\"`",
                    kind.label()
                ),
            ),
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        return Err(problems);
    }
    Ok(RubricFile {
        name,
        model: raw.model,
        mode,
        rubric: Rubric {
            criteria,
            pass_score,
        },
        timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        max_tokens: raw.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
    })
}
