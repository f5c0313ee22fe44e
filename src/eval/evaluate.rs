//! `promptgate eval`: config + suite + golden set → answers → scores → gate
//! → report. Everything that can be wrong with the inputs is found before
//! the first provider call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::cache::AnswerCache;
use super::call::RoutedModel;
use super::gate::{self, Check};
use super::golden::{self, GoldenCase, GoldenError, LineProblem};
use super::judge::{self, Outcome};
use super::report::{
    self, CaseResult, CaseVariant, Latency, PairwiseSummary, Report, ScorerSummary, VariantSummary,
};
use super::run::{self, RenderProblem, RunOptions, VariantAnswers};
use super::score::{self, CaseScore, RatioSums};
use super::suite::{self, Gate, Suite};
use crate::snapshot::Snapshot;
use crate::telemetry::Telemetry;
use promptgate_core::config::audit::Price;
use promptgate_core::config::{self, ConfigError, LoadOptions, TelemetryConfig};

/// The name of the judge's rubric score among the scorers.
pub const JUDGE_SCORER: &str = "judge";

/// What the command line chose.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub config: PathBuf,
    pub suite: PathBuf,
    /// Overrides the suite's `repeat`.
    pub repeat: Option<u32>,
    /// Overrides the suite's `concurrency`.
    pub concurrency: Option<usize>,
    /// `None`: no cache (`--no-cache`).
    pub cache_dir: Option<PathBuf>,
    pub progress: bool,
}

/// Why an evaluation could not run (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Golden(#[from] GoldenError),
    #[error("{}", render_problems(file, problems))]
    Render {
        file: PathBuf,
        problems: Vec<RenderProblem>,
    },
    #[error("{0}")]
    Usage(String),
}

fn render_problems(file: &Path, problems: &[RenderProblem]) -> String {
    problems
        .iter()
        .map(|p| {
            format!(
                "{}:{}: case `{}`, variant `{}`: {}",
                file.display(),
                p.line,
                p.case,
                p.variant,
                p.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the suite and builds its report.
pub async fn evaluate(options: &EvalOptions) -> Result<Report, EvalError> {
    let config = config::load_file(&options.config, &LoadOptions::default())?;
    let prices: HashMap<String, Price> = config
        .audit
        .as_ref()
        .map(|audit| audit.prices.clone())
        .unwrap_or_default();
    let telemetry = Telemetry::start(&TelemetryConfig::default(), prices.clone())
        .map_err(|error| EvalError::Usage(format!("starting the meters: {error}")))?;
    let snapshot = Snapshot::new(config);
    let mut suite = suite::load(&options.suite, &snapshot)?;
    if let Some(repeat) = options.repeat {
        if repeat == 0 {
            return Err(EvalError::Usage("--repeat must be at least 1".into()));
        }
        suite.repeat = repeat;
    }
    if let Some(concurrency) = options.concurrency {
        suite.concurrency = concurrency.max(1);
    }
    let cases = golden::load(&suite.golden_set)?;
    check_requirements(&suite, &cases)?;
    let Some(experiment) = snapshot.experiments.get(suite.experiment.as_str()) else {
        return Err(EvalError::Usage(format!(
            "no experiment `{}`",
            suite.experiment
        )));
    };
    let cache = options.cache_dir.as_deref().map(AnswerCache::new);
    let answers = run::answer_all(
        &suite,
        experiment,
        &snapshot,
        &telemetry,
        &cases,
        &RunOptions {
            repeat: suite.repeat,
            concurrency: suite.concurrency,
            cache: cache.as_ref(),
            progress: options.progress,
        },
    )
    .await
    .map_err(|problems| EvalError::Render {
        file: suite.golden_set.clone(),
        problems,
    })?;
    let variant_names: Vec<String> = answers
        .iter()
        .map(|a| experiment.variants[a.variant].name.to_string())
        .collect();
    let variant_models: Vec<String> = answers
        .iter()
        .map(|a| experiment.variants[a.variant].model().to_owned())
        .collect();

    // scores[variant][scorer][case]
    let mut scorer_names: Vec<String> = suite.scorers.iter().map(|s| s.name.clone()).collect();
    let mut gates: Vec<Gate> = suite.scorers.iter().map(|s| s.gate).collect();
    let mut scores: Vec<Vec<Vec<CaseScore>>> = Vec::with_capacity(answers.len());
    let mut ratios: Vec<Vec<RatioSums>> = Vec::with_capacity(answers.len());
    for variant in &answers {
        let (per_scorer, sums) = suite
            .scorers
            .iter()
            .map(|s| score::score_variant(&s.scorer, &cases, variant))
            .unzip();
        scores.push(per_scorer);
        ratios.push(sums);
    }

    let mut warnings = Vec::new();
    let mut pairwise = Vec::new();
    let mut verdicts: Vec<Vec<Option<Outcome>>> = vec![Vec::new(); answers.len()];
    if let Some(judge) = &suite.judge
        && let Some(route) = snapshot.routes.resolve(&judge.model)
    {
        let model = RoutedModel {
            upstreams: &snapshot.upstreams,
            route,
            model: route
                .upstream_model
                .as_deref()
                .map_or_else(|| judge.model.clone(), str::to_owned),
            telemetry: &telemetry,
            timeout: suite.timeout,
            max_tokens: suite.max_tokens,
        };
        for (name, candidate_model) in variant_names.iter().zip(&variant_models) {
            warnings.extend(judge::self_judging_warning(
                &model.model,
                name,
                candidate_model,
            ));
        }
        if let Some(rubric) = &judge.rubric {
            for (position, variant) in answers.iter().enumerate() {
                let judged =
                    score::rubric_scores(&model, rubric, &cases, variant, suite.concurrency).await;
                scores[position].push(judged);
                ratios[position].push(RatioSums::new());
            }
            scorer_names.push(JUDGE_SCORER.to_owned());
            gates.push(judge.gate);
        }
        if judge.pairwise {
            for position in 1..answers.len() {
                let (found, tally) = score::pairwise_verdicts(
                    &model,
                    &cases,
                    &answers[0],
                    &answers[position],
                    suite.concurrency,
                )
                .await;
                verdicts[position] = found.iter().map(|v| v.map(|v| v.outcome)).collect();
                pairwise.push(PairwiseSummary {
                    candidate: variant_names[position].clone(),
                    baseline: variant_names[0].clone(),
                    judge_model: model.model.clone(),
                    consistency_rate: tally.consistency_rate(),
                    tally,
                });
            }
        }
    }

    let mut checks: Vec<Check> = Vec::new();
    for (s, name) in scorer_names.iter().enumerate() {
        for (v, variant) in variant_names.iter().enumerate() {
            let baseline = (v > 0).then(|| scores[0][s].as_slice());
            checks.push(gate::check(
                name,
                gates[s],
                variant,
                &scores[v][s],
                baseline,
                suite.alpha,
            ));
        }
    }
    let summaries: Vec<VariantSummary> = answers
        .iter()
        .enumerate()
        .map(|(v, a)| {
            summarize(
                &variant_names[v],
                &variant_models[v],
                v == 0,
                a,
                &scorer_names,
                &scores[v],
                &ratios[v],
                prices.get(&variant_models[v]),
            )
        })
        .collect();
    for summary in &summaries {
        if summary.failed_calls > 0 {
            warnings.push(format!(
                "variant `{}`: {} of {} calls got no answer (each counted as a failed case)",
                summary.name, summary.failed_calls, summary.calls
            ));
        }
    }
    let results = case_results(&cases, &answers, &variant_names, &scores, &verdicts);
    Ok(Report {
        schema: report::SCHEMA,
        suite: suite.name.clone(),
        suite_file: suite.file.display().to_string(),
        golden_set: suite.golden_set.display().to_string(),
        experiment: suite.experiment.clone(),
        config_version: snapshot.version.to_string(),
        baseline: variant_names.first().cloned().unwrap_or_default(),
        cases: cases.len(),
        repeat: suite.repeat,
        temperature: suite.temperature,
        alpha: suite.alpha,
        passed: checks.iter().all(|c| c.passed),
        slices: report::slices(&scorer_names, &results),
        scorers: scorer_names,
        variants: summaries,
        gate: checks,
        pairwise,
        results,
        warnings,
    })
}

/// Every case has what the suite's scorers read (expected text or fields, source).
fn check_requirements(suite: &Suite, cases: &[GoldenCase]) -> Result<(), GoldenError> {
    let mut problems = Vec::new();
    for scorer in &suite.scorers {
        let needs = scorer.scorer.requires();
        for case in cases {
            let mut missing = |field: &str, what: &str| {
                problems.push(LineProblem {
                    line: case.line,
                    field: field.to_owned(),
                    message: format!("scorer `{}` needs {what}", scorer.name),
                })
            };
            if needs.expected_text && !matches!(case.expected, Some(serde_json::Value::String(_))) {
                missing("expected", "the expected answer as a string");
            }
            if needs.expected_fields && !matches!(case.expected, Some(serde_json::Value::Object(_)))
            {
                missing("expected", "an object of expected fields");
            }
            if needs.source && case.source.is_none() {
                missing("source", "the source text");
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort_by_key(|p| p.line);
    Err(GoldenError::Invalid {
        file: suite.golden_set.clone(),
        problems,
    })
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    name: &str,
    model: &str,
    baseline: bool,
    answers: &VariantAnswers,
    scorer_names: &[String],
    scores: &[Vec<CaseScore>],
    ratios: &[RatioSums],
    price: Option<&Price>,
) -> VariantSummary {
    let attempts = answers.attempts.iter().flatten();
    let (mut calls, mut failed, mut cached, mut input, mut output) = (0, 0, 0, 0, 0);
    let mut latencies = Vec::new();
    for attempt in attempts {
        calls += 1;
        cached += u64::from(attempt.cached);
        match &attempt.answer {
            Ok(answer) => {
                latencies.push(answer.latency_ms);
                input += answer.input_tokens.unwrap_or(0);
                output += answer.output_tokens.unwrap_or(0);
            }
            Err(_) => failed += 1,
        }
    }
    let summaries = scorer_names
        .iter()
        .zip(scores)
        .zip(ratios)
        .map(|((scorer, per_case), sums)| {
            let n = per_case.len().max(1) as f64;
            let passed = per_case.iter().filter(|s| s.passed).count() as u64;
            ScorerSummary {
                scorer: scorer.clone(),
                mean: per_case.iter().map(|s| s.value).sum::<f64>() / n,
                pass_rate: passed as f64 / n,
                passed_cases: passed,
                ratios: sums
                    .iter()
                    .map(|(&ratio, &(num, den))| (ratio, (den > 0.0).then(|| num / den)))
                    .collect(),
            }
        })
        .collect();
    VariantSummary {
        name: name.to_owned(),
        model: model.to_owned(),
        baseline,
        calls,
        failed_calls: failed,
        cached_calls: cached,
        latency_ms: Latency::of(latencies),
        input_tokens: input,
        output_tokens: output,
        cost_usd: price.and_then(|p| p.cost_usd(Some(input), Some(output))),
        scores: summaries,
    }
}

fn case_results(
    cases: &[GoldenCase],
    answers: &[VariantAnswers],
    variant_names: &[String],
    scores: &[Vec<Vec<CaseScore>>],
    verdicts: &[Vec<Option<Outcome>>],
) -> Vec<CaseResult> {
    cases
        .iter()
        .enumerate()
        .map(|(c, case)| CaseResult {
            id: case.id.clone(),
            line: case.line,
            tags: case.tags.clone(),
            expected: case.expected.clone(),
            variants: answers
                .iter()
                .enumerate()
                .map(|(v, variant)| {
                    let attempts = &variant.attempts[c];
                    let first = attempts.first();
                    CaseVariant {
                        variant: variant_names[v].clone(),
                        answer: first
                            .and_then(|a| a.answer.as_ref().ok())
                            .map(|a| a.text.clone()),
                        error: first.and_then(|a| a.answer.as_ref().err()).cloned(),
                        cached: first.is_some_and(|a| a.cached),
                        latency_ms: first
                            .and_then(|a| a.answer.as_ref().ok())
                            .map(|a| a.latency_ms),
                        scores: scores[v]
                            .iter()
                            .map(|per_case| per_case[c].clone())
                            .collect(),
                        pairwise: verdicts[v].get(c).copied().flatten(),
                    }
                })
                .collect(),
        })
        .collect()
}
