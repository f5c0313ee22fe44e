//! Suites: `config/evals/*.toml`, read by the config's own rules (every
//! problem at once, as `file:line: field.path: message`) and checked against
//! the config they run with (the experiment, its variants, the judge's route).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::scorers::{Scorer, ScorerSpec};
use crate::snapshot::Snapshot;
use promptgate_core::config::{self, ConfigError, Problem};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    golden_set: String,
    experiment: String,
    variants: Option<Vec<String>>,
    baseline: Option<String>,
    temperature: Option<f64>,
    concurrency: Option<usize>,
    repeat: Option<u32>,
    timeout_ms: Option<u64>,
    max_tokens: Option<u64>,
    alpha: Option<f64>,
    #[serde(default)]
    scorers: Vec<toml::Table>,
    judge: Option<RawJudge>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    model: String,
    rubric: Option<String>,
    pass_score: Option<u8>,
    #[serde(default)]
    pairwise: bool,
    min: Option<f64>,
    max_drop: Option<f64>,
}

/// A validated suite.
#[derive(Debug)]
pub struct Suite {
    /// The file's stem (`greeting` for `config/evals/greeting.toml`).
    pub name: String,
    pub file: PathBuf,
    pub golden_set: PathBuf,
    pub experiment: String,
    /// Indexes into the experiment's variants, baseline first.
    pub variants: Vec<usize>,
    pub temperature: f64,
    pub concurrency: usize,
    pub repeat: u32,
    pub timeout: Duration,
    /// Sent to Anthropic-dialect providers, which require it.
    pub max_tokens: u64,
    /// Significance level of the gate's paired tests.
    pub alpha: f64,
    pub scorers: Vec<SuiteScorer>,
    pub judge: Option<JudgeSettings>,
}

/// A scorer of the suite and its gate.
#[derive(Debug)]
pub struct SuiteScorer {
    pub name: String,
    pub scorer: Scorer,
    pub gate: Gate,
}

/// A scorer's gate: every variant's mean score at least `min`; no candidate
/// more than `max_drop` below the baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Gate {
    pub min: Option<f64>,
    pub max_drop: Option<f64>,
}

#[derive(Debug)]
pub struct JudgeSettings {
    /// A model name routed by the config's `[[routes]]`.
    pub model: String,
    pub rubric: Option<super::judge::Rubric>,
    pub pairwise: bool,
    pub gate: Gate,
}

pub const DEFAULT_CONCURRENCY: usize = 8;
const DEFAULT_TIMEOUT_MS: u64 = 120_000;
const DEFAULT_MAX_TOKENS: u64 = 1024;
const DEFAULT_ALPHA: f64 = 0.05;
const DEFAULT_PASS_SCORE: u8 = 7;

/// Reads and validates a suite against the config in `snapshot`.
pub fn load(file: &Path, snapshot: &Snapshot) -> Result<Suite, ConfigError> {
    let source = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    parse(&source, file, snapshot).map_err(|problems| ConfigError::Invalid {
        file: file.to_owned(),
        problems,
    })
}

struct Problems<'a> {
    source: &'a str,
    list: Vec<Problem>,
}

impl Problems<'_> {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.list.push(Problem {
            line: config::line_of(self.source, path),
            path: path.to_owned(),
            message: message.into(),
        });
    }
}

fn parse(source: &str, file: &Path, snapshot: &Snapshot) -> Result<Suite, Vec<Problem>> {
    let raw: RawSuite = config::read_document(source)?;
    let mut problems = Problems {
        source,
        list: Vec::new(),
    };
    let variants = variants(&raw, snapshot, &mut problems);
    let mut scorers = Vec::with_capacity(raw.scorers.len());
    for (index, table) in raw.scorers.into_iter().enumerate() {
        if let Some(scorer) = scorer(index, table, &mut problems) {
            if scorers.iter().any(|s: &SuiteScorer| s.name == scorer.name) {
                problems.add(
                    &format!("scorers[{index}].name"),
                    format!("`{}` is already the name of another scorer", scorer.name),
                );
            }
            scorers.push(scorer);
        }
    }
    let judge = raw
        .judge
        .and_then(|judge| judge_settings(judge, snapshot, &mut problems));
    if scorers.is_empty() && judge.is_none() && problems.list.is_empty() {
        problems.add(
            "scorers",
            "a suite needs at least one [[scorers]] entry or a [judge]",
        );
    }
    let temperature = raw.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        problems.add("temperature", "must be between 0 and 2");
    }
    let concurrency = raw.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 {
        problems.add("concurrency", "must be at least 1");
    }
    let repeat = raw.repeat.unwrap_or(1);
    if repeat == 0 {
        problems.add("repeat", "must be at least 1");
    }
    let alpha = raw.alpha.unwrap_or(DEFAULT_ALPHA);
    if !(alpha > 0.0 && alpha < 1.0) {
        problems.add("alpha", "must be between 0 and 1 (e.g. 0.05)");
    }
    if raw.timeout_ms == Some(0) {
        problems.add("timeout_ms", "must be at least 1");
    }
    if !problems.list.is_empty() {
        let mut list = problems.list;
        list.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        return Err(list);
    }
    let base = file.parent().unwrap_or(Path::new("."));
    Ok(Suite {
        name: file
            .file_stem()
            .map_or_else(|| "suite".to_owned(), |s| s.to_string_lossy().into_owned()),
        file: file.to_owned(),
        golden_set: base.join(&raw.golden_set),
        experiment: raw.experiment,
        variants,
        temperature,
        concurrency,
        repeat,
        timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        max_tokens: raw.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        alpha,
        scorers,
        judge,
    })
}

/// The experiment's variants to run, baseline first.
fn variants(raw: &RawSuite, snapshot: &Snapshot, problems: &mut Problems<'_>) -> Vec<usize> {
    let Some(experiment) = snapshot.experiments.get(raw.experiment.as_str()) else {
        let mut known: Vec<&str> = snapshot.experiments.keys().map(|k| &**k).collect();
        known.sort_unstable();
        problems.add(
            "experiment",
            format!(
                "no experiment `{}` in the config (it has: {})",
                raw.experiment,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        );
        return Vec::new();
    };
    let names = || {
        experiment
            .variants
            .iter()
            .map(|v| &*v.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chosen = Vec::new();
    match &raw.variants {
        Some(listed) => {
            for (i, name) in listed.iter().enumerate() {
                match experiment.variant_index(name) {
                    Some(index) if chosen.contains(&index) => problems.add(
                        &format!("variants[{i}]"),
                        format!("`{name}` is listed twice"),
                    ),
                    Some(index) => chosen.push(index),
                    None => problems.add(
                        &format!("variants[{i}]"),
                        format!(
                            "experiment `{}` has no variant `{name}` (it has: {})",
                            raw.experiment,
                            names()
                        ),
                    ),
                }
            }
        }
        None => chosen.extend(0..experiment.variants.len()),
    }
    let baseline = match &raw.baseline {
        Some(name) => match experiment.variant_index(name) {
            Some(index) if chosen.contains(&index) => Some(index),
            Some(_) => {
                problems.add(
                    "baseline",
                    format!("`{name}` must be one of the suite's variants"),
                );
                None
            }
            None => {
                problems.add(
                    "baseline",
                    format!(
                        "experiment `{}` has no variant `{name}` (it has: {})",
                        raw.experiment,
                        names()
                    ),
                );
                None
            }
        },
        // The experiment's default: what is served today.
        None => chosen
            .contains(&experiment.default_variant)
            .then_some(experiment.default_variant)
            .or_else(|| chosen.first().copied()),
    };
    if let Some(baseline) = baseline {
        chosen.retain(|&i| i != baseline);
        chosen.insert(0, baseline);
    }
    chosen
}

fn scorer(
    index: usize,
    mut table: toml::Table,
    problems: &mut Problems<'_>,
) -> Option<SuiteScorer> {
    let at = |field: &str| format!("scorers[{index}].{field}");
    let name = match table.remove("name") {
        Some(toml::Value::String(name)) if !name.trim().is_empty() => Some(name),
        Some(_) => {
            problems.add(&at("name"), "must be a non-empty string");
            None
        }
        None => {
            problems.add(
                &at("kind"),
                "missing field `name`: every scorer is named in the report",
            );
            None
        }
    };
    let gate = gate(&mut table, &at, problems);
    let spec = match serde_path_to_error::deserialize::<_, ScorerSpec>(toml::Value::Table(table)) {
        Ok(spec) => spec,
        Err(error) => {
            let inner = error.path().to_string();
            let path = if inner == "." || inner.is_empty() {
                format!("scorers[{index}]")
            } else {
                at(&inner)
            };
            problems.add(&path, config::plain_message(error.inner().message()));
            return None;
        }
    };
    let scorer = match spec.compile() {
        Ok(scorer) => scorer,
        Err(error) => {
            problems.add(&format!("scorers[{index}]"), error.to_string());
            return None;
        }
    };
    Some(SuiteScorer {
        name: name?,
        scorer,
        gate: gate?,
    })
}

/// Takes `min` and `max_drop` (shares, 0–1) out of a scorer's table.
fn gate(
    table: &mut toml::Table,
    at: &dyn Fn(&str) -> String,
    problems: &mut Problems<'_>,
) -> Option<Gate> {
    let mut share = |field: &str| match table.remove(field) {
        None => Some(None),
        Some(value) => match value
            .as_float()
            .or_else(|| value.as_integer().map(|i| i as f64))
        {
            Some(share) if (0.0..=1.0).contains(&share) => Some(Some(share)),
            _ => {
                problems.add(
                    &at(field),
                    "must be a number from 0 to 1 (a share of the score)",
                );
                None
            }
        },
    };
    let (min, max_drop) = (share("min"), share("max_drop"));
    Some(Gate {
        min: min?,
        max_drop: max_drop?,
    })
}

fn judge_settings(
    raw: RawJudge,
    snapshot: &Snapshot,
    problems: &mut Problems<'_>,
) -> Option<JudgeSettings> {
    let before = problems.list.len();
    if snapshot.routes.resolve(&raw.model).is_none() {
        problems.add(
            "judge.model",
            format!("no route in the config serves the model `{}`", raw.model),
        );
    }
    let pass_score = raw.pass_score.unwrap_or(DEFAULT_PASS_SCORE);
    if !(1..=10).contains(&pass_score) {
        problems.add("judge.pass_score", "must be from 1 to 10");
    }
    if raw.rubric.is_none() && !raw.pairwise {
        problems.add("judge", "set a `rubric`, `pairwise = true`, or both");
    }
    for (field, value) in [("min", raw.min), ("max_drop", raw.max_drop)] {
        if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            problems.add(
                &format!("judge.{field}"),
                "must be a number from 0 to 1 (a share of the score)",
            );
        }
    }
    if (raw.min.is_some() || raw.max_drop.is_some()) && raw.rubric.is_none() {
        problems.add(
            "judge.min",
            "the gate applies to the rubric score: set a `rubric`",
        );
    }
    (problems.list.len() == before).then(|| JudgeSettings {
        model: raw.model,
        rubric: raw.rubric.map(|criteria| super::judge::Rubric {
            criteria,
            pass_score,
        }),
        pairwise: raw.pairwise,
        gate: Gate {
            min: raw.min,
            max_drop: raw.max_drop,
        },
    })
}
