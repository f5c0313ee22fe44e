//! The report of a run: what `--format json` writes (`promptgate.eval.v1`,
//! documented field by field in docs/eval.md) and what the table, HTML and
//! JUnit renderers read.

use std::collections::BTreeMap;

use serde::Serialize;

use super::gate::Check;
use super::judge::{Outcome, PairwiseTally};
use super::score::CaseScore;

pub const SCHEMA: &str = "promptgate.eval.v1";

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub suite: String,
    pub suite_file: String,
    pub golden_set: String,
    pub experiment: String,
    pub config_version: String,
    pub baseline: String,
    /// Golden cases run.
    pub cases: usize,
    pub repeat: u32,
    pub temperature: f64,
    pub alpha: f64,
    /// Every gate check passed.
    pub passed: bool,
    /// Scorer names in suite order (the judge's rubric last, as `judge`).
    pub scorers: Vec<String>,
    pub variants: Vec<VariantSummary>,
    /// One per scorer and variant.
    pub gate: Vec<Check>,
    /// The judge's pairwise comparisons, one per candidate.
    pub pairwise: Vec<PairwiseSummary>,
    /// Per tag value, per variant, per scorer.
    pub slices: Vec<Slice>,
    /// Every case with every variant's answer and scores.
    pub results: Vec<CaseResult>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct VariantSummary {
    pub name: String,
    pub model: String,
    pub baseline: bool,
    /// Calls made or taken from the cache (cases × repeats).
    pub calls: u64,
    /// Calls that got no answer (each a failed case).
    pub failed_calls: u64,
    pub cached_calls: u64,
    /// Over answered calls (a cached answer keeps the latency it was measured with).
    pub latency_ms: Option<Latency>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// From `[prices]` for the variant's model; absent without a price.
    pub cost_usd: Option<f64>,
    pub scores: Vec<ScorerSummary>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `values` (`None` when empty).
    pub fn of(mut values: Vec<f64>) -> Option<Latency> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank =
            |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Some(Latency {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: rank(0.5),
            p95: rank(0.95),
            max: values[values.len() - 1],
        })
    }
}

#[derive(Debug, Serialize)]
pub struct ScorerSummary {
    pub scorer: String,
    pub mean: f64,
    pub pass_rate: f64,
    pub passed_cases: u64,
    /// Each ratio as its summed numerator over its summed denominator.
    pub ratios: BTreeMap<&'static str, Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct PairwiseSummary {
    pub candidate: String,
    pub baseline: String,
    pub judge_model: String,
    #[serde(flatten)]
    pub tally: PairwiseTally,
    pub consistency_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Slice {
    pub tag: String,
    pub value: String,
    pub variant: String,
    pub scorer: String,
    pub cases: u64,
    pub mean: f64,
    pub pass_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub id: String,
    pub line: usize,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    pub expected: Option<serde_json::Value>,
    pub variants: Vec<CaseVariant>,
}

#[derive(Debug, Serialize)]
pub struct CaseVariant {
    pub variant: String,
    /// The first repeat's answer.
    pub answer: Option<String>,
    /// Why a call got no answer.
    pub error: Option<String>,
    pub cached: bool,
    pub latency_ms: Option<f64>,
    /// In the order of the report's `scorers`.
    pub scores: Vec<CaseScore>,
    /// The judge's pairwise verdict against the baseline (candidates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairwise: Option<Outcome>,
}

impl Report {
    /// Gate checks that failed.
    pub fn failed_checks(&self) -> impl Iterator<Item = &Check> {
        self.gate.iter().filter(|c| !c.passed)
    }

    /// The scorer's column in each case's `scores`.
    pub fn scorer_index(&self, name: &str) -> Option<usize> {
        self.scorers.iter().position(|s| s == name)
    }
}

/// Slices: for each tag value, each variant's mean and pass rate per scorer.
pub fn slices(report_scorers: &[String], results: &[CaseResult]) -> Vec<Slice> {
    // (tag, value, variant position, scorer) → (cases, sum of values, passes)
    type Key<'a> = (&'a str, &'a str, usize, usize);
    let mut sums: BTreeMap<Key<'_>, (u64, f64, u64)> = BTreeMap::new();
    for case in results {
        for (tag, value) in &case.tags {
            for (position, variant) in case.variants.iter().enumerate() {
                for (scorer, score) in variant.scores.iter().enumerate() {
                    let sum = sums.entry((tag, value, position, scorer)).or_default();
                    sum.0 += 1;
                    sum.1 += score.value;
                    sum.2 += u64::from(score.passed);
                }
            }
        }
    }
    let variant_names: Vec<&str> = results
        .first()
        .map(|c| c.variants.iter().map(|v| v.variant.as_str()).collect())
        .unwrap_or_default();
    sums.into_iter()
        .map(
            |((tag, value, position, scorer), (cases, total, passes))| Slice {
                tag: tag.to_owned(),
                value: value.to_owned(),
                variant: variant_names
                    .get(position)
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                scorer: report_scorers.get(scorer).cloned().unwrap_or_default(),
                cases,
                mean: total / cases as f64,
                pass_rate: passes as f64 / cases as f64,
            },
        )
        .collect()
}
