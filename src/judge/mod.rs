//! `promptgate judge`: an LLM judge over live traffic. Reads an experiment's
//! answers from the audit log (`log`), asks the judge model of a rubric file
//! (`rubric`) through the config's own providers (`ask`), and writes each
//! verdict as a `judge.<rubric>` feedback event through the audit pipeline
//! (`write`), which `promptgate analyze` then compares like any feedback:
//! per variant, and with McNemar's test on served/shadow pairs.
//!
//! Lives beside `eval` rather than in it: it shares only the judge's
//! questions and the offline call (`eval::judge`, `eval::call`), and adds
//! what eval has no use for (reading live traffic, budgets, resuming,
//! writing feedback, calibration against human labels).

mod ask;
pub mod calibrate;
pub mod log;
mod outcomes;
mod render;
pub mod rubric;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::eval::call::RoutedModel;
use crate::eval::judge::{self as questions, PairwiseTally};
use crate::snapshot::Snapshot;
use crate::telemetry::Telemetry;
use promptgate_analyze::{DateRange, Source};
use promptgate_core::config::{self, ConfigError, LoadOptions, TelemetryConfig};

pub use ask::Verdict;
pub use calibrate::Calibration;
pub use log::Item;
pub use render::table;
pub use rubric::{Mode, RubricFile};
pub use write::{CLIENT_ID, feedback_id};

#[derive(Debug, Clone)]
pub struct JudgeOptions {
    pub config: PathBuf,
    pub rubric: PathBuf,
    pub experiment: String,
    pub range: DateRange,
    pub skip_corrupt: bool,
    /// Share of the items (0–1) judged, chosen by a hash of the request id:
    /// the same items on every run.
    pub sample_rate: f64,
    /// At most this many items judged in this run.
    pub max_items: Option<usize>,
    pub max_usd: Option<f64>,
    pub concurrency: usize,
    /// Print the prompts and the estimate; ask nothing, write nothing.
    pub dry_run: bool,
    pub calibrate: Option<PathBuf>,
    /// The spool of the feedback this run writes.
    pub spool_dir: PathBuf,
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JudgeRunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Read(#[from] log::ReadError),
    #[error(transparent)]
    Labels(#[from] calibrate::LabelError),
    #[error("starting the audit pipeline for the verdicts: {0}")]
    Audit(#[from] crate::audit::AuditStartError),
    #[error("{0}")]
    Usage(String),
}

/// Lengths of the answers the judge preferred and of those it did not
/// (pointwise: passing and failing answers): judges favour longer answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verbosity {
    pub decided: u64,
    pub winner_mean_chars: Option<f64>,
    pub loser_mean_chars: Option<f64>,
}

/// Pointwise scores of one variant in this run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VariantScores {
    pub judged: u64,
    pub mean_score: Option<f64>,
    pub pass_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JudgeReport {
    pub rubric: String,
    pub metric: String,
    pub mode: Mode,
    pub judge_model: String,
    pub experiment: String,
    pub records_read: u64,
    /// Items the log holds for this rubric's mode.
    pub items: u64,
    pub unusable_answers: u64,
    /// Items with a verdict in the log already (skipped).
    pub already_judged: u64,
    /// Items left out by `--sample-rate`.
    pub sampled_out: u64,
    /// Items left for a later run by `--max-pairs` or `--max-usd`.
    pub deferred: u64,
    pub stopped_by_budget: bool,
    pub judged: u64,
    /// Items the judge could not complete (no or unreadable reply).
    pub errors: u64,
    pub estimated_usd: Option<f64>,
    pub spent_usd: Option<f64>,
    pub feedback_written: u64,
    /// Per "served → shadow" variant pair: wins are the shadow's.
    pub pairwise: BTreeMap<String, PairwiseTally>,
    pub position_consistency: Option<f64>,
    pub pointwise: BTreeMap<String, VariantScores>,
    pub verbosity: Verbosity,
    pub calibration: Option<Calibration>,
    pub warnings: Vec<String>,
    /// `--dry-run`: the questions that would be asked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The labels of `--calibrate`, per mode.
fn allowed_labels(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::Pairwise => &["served", "shadow", "tie"],
        Mode::Pointwise => &["pass", "fail"],
    }
}

/// The judge's label of an item from the metric's values in the log.
fn judge_label(item: &Item, values: &HashMap<String, f64>, pass_score: u8) -> Option<String> {
    let label = match item {
        Item::Pair { served, shadow, .. } => {
            match (
                values.get(&served.request_id)?,
                values.get(&shadow.request_id)?,
            ) {
                (s, _) if *s != 0.0 => "served",
                (_, s) if *s != 0.0 => "shadow",
                _ => "tie",
            }
        }
        Item::Single { answer, .. } => {
            if *values.get(&answer.request_id)? >= f64::from(pass_score) {
                "pass"
            } else {
                "fail"
            }
        }
    };
    Some(label.to_owned())
}

/// Runs the judge over the experiment's items in `source`.
pub async fn judge(source: &Source, options: &JudgeOptions) -> Result<JudgeReport, JudgeRunError> {
    if !(options.sample_rate > 0.0 && options.sample_rate <= 1.0) {
        return Err(JudgeRunError::Usage(
            "--sample-rate must be above 0 and at most 1".into(),
        ));
    }
    if options.max_usd.is_some_and(|usd| usd.is_nan() || usd < 0.0) {
        return Err(JudgeRunError::Usage("--max-usd must be 0 or more".into()));
    }
    let config = config::load_file(&options.config, &LoadOptions::default())?;
    let audit = config.audit.clone();
    let prices = audit
        .as_ref()
        .map(|audit| audit.prices.clone())
        .unwrap_or_default();
    let telemetry = Telemetry::start(&TelemetryConfig::default(), prices.clone())
        .map_err(|error| JudgeRunError::Usage(format!("starting the meters: {error}")))?;
    let snapshot = Snapshot::new(config);
    let rubric = rubric::load(&options.rubric, &snapshot)?;
    let Some(route) = snapshot.routes.resolve(&rubric.model) else {
        return Err(JudgeRunError::Usage(format!(
            "`{}` is not routed",
            rubric.model
        )));
    };
    if !snapshot
        .experiments
        .contains_key(options.experiment.as_str())
    {
        return Err(JudgeRunError::Usage(format!(
            "no experiment `{}` in the config",
            options.experiment
        )));
    }
    let model = RoutedModel {
        upstreams: &snapshot.upstreams,
        route,
        model: route
            .upstream_model
            .as_deref()
            .map_or_else(|| rubric.model.clone(), str::to_owned),
        telemetry: &telemetry,
        timeout: rubric.timeout,
        max_tokens: rubric.max_tokens,
    };
    let price = prices.get(&model.model);
    if options.max_usd.is_some() && price.is_none() {
        return Err(JudgeRunError::Usage(format!(
            "--max-usd needs a price for the judge model: add [prices.\"{}\"]",
            model.model
        )));
    }
    let humans = match &options.calibrate {
        Some(file) => Some(calibrate::load(file, allowed_labels(rubric.mode))?),
        None => None,
    };
    let metric = rubric.metric();

    let mut corrupt_feedback = Vec::new();
    let mut values = log::judged(
        source,
        &options.range,
        &metric,
        options.skip_corrupt,
        &mut corrupt_feedback,
    )
    .await?;
    let selection = log::Selection {
        judged: &values,
        sample_rate: options.sample_rate,
        max_items: options.max_items,
    };
    let mut read = log::items(
        source,
        &options.range,
        &options.experiment,
        rubric.mode,
        options.skip_corrupt,
        &selection,
    )
    .await?;
    read.corrupt_objects.append(&mut corrupt_feedback);

    let mut warnings: Vec<String> = read
        .corrupt_objects
        .iter()
        .map(|c| format!("skipped {}: {}", c.object, c.reason))
        .collect();
    let mut seen_models = HashSet::new();
    for item in &read.items {
        let answers = match item {
            Item::Pair { served, shadow, .. } => vec![served, shadow],
            Item::Single { answer, .. } => vec![answer],
        };
        for answer in answers {
            if let Some(answer_model) = &answer.model
                && seen_models.insert((answer.variant.clone(), answer_model.clone()))
            {
                warnings.extend(questions::self_judging_warning(
                    &model.model,
                    &answer.variant,
                    answer_model,
                ));
            }
        }
    }

    let mut report = JudgeReport {
        rubric: rubric.name.clone(),
        metric: metric.clone(),
        mode: rubric.mode,
        judge_model: model.model.clone(),
        experiment: options.experiment.clone(),
        records_read: read.records,
        items: read.items.len() as u64 + read.already_judged + read.sampled_out + read.deferred,
        unusable_answers: read.unusable,
        already_judged: read.already_judged,
        sampled_out: read.sampled_out,
        deferred: read.deferred,
        stopped_by_budget: false,
        judged: 0,
        errors: 0,
        estimated_usd: None,
        spent_usd: None,
        feedback_written: 0,
        pairwise: BTreeMap::new(),
        position_consistency: None,
        pointwise: BTreeMap::new(),
        verbosity: Verbosity::default(),
        calibration: None,
        warnings,
        prompts: Vec::new(),
    };
    let estimates: Vec<f64> = read
        .items
        .iter()
        .map(|item| ask::estimate_usd(&rubric, price, item).unwrap_or(0.0))
        .collect();
    report.estimated_usd = price.map(|_| estimates.iter().sum());

    if options.dry_run {
        for item in &read.items {
            for (system, user) in ask::prompts(&rubric, item) {
                report
                    .prompts
                    .push(format!("[system]\n{system}\n[user]\n{user}"));
            }
        }
        return Ok(report);
    }

    let Some(audit) = audit else {
        return Err(JudgeRunError::Usage(
            "the config has no [audit]: verdicts are written as feedback records of the audit log"
                .into(),
        ));
    };
    let writer =
        write::FeedbackWriter::start(&audit, &options.spool_dir, snapshot.version.clone()).await?;
    let budget = ask::Budget::new(options.max_usd);
    let bar = if options.progress {
        let bar = ProgressBar::new(read.items.len() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {pos}/{len} items [{wide_bar}] {elapsed} (eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let stopped = AtomicBool::new(false);
    let mut answered = stream::iter(read.items.iter().zip(&estimates))
        .map(|(item, &estimate)| {
            let (budget, rubric, model, bar, stopped) = (&budget, &rubric, &model, &bar, &stopped);
            async move {
                if !budget.reserve(estimate) {
                    stopped.store(true, Ordering::Relaxed);
                    return (item, None);
                }
                let metered = ask::Metered {
                    model,
                    price,
                    cost: Mutex::new(0.0),
                };
                let verdict = ask::judge_item(&metered, rubric, item).await;
                let cost = *metered
                    .cost
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                budget.settle(estimate, cost);
                bar.inc(1);
                (item, Some(verdict))
            }
        })
        .buffer_unordered(options.concurrency.max(1));
    // Each verdict goes to the audit writer as it arrives, not at the end of the run.
    let mut outcomes = outcomes::Outcomes::new(&rubric, &model.model);
    while let Some((item, result)) = answered.next().await {
        outcomes.add(item, result, &writer, &mut values);
    }
    drop(answered);
    bar.finish_and_clear();
    report.stopped_by_budget = stopped.load(Ordering::Relaxed);
    report.spent_usd = price.map(|_| budget.spent());
    writer.finish().await;

    outcomes.finish(&mut report);
    if let Some(humans) = humans {
        let labels: HashMap<String, String> = read
            .items
            .iter()
            .filter_map(|item| {
                judge_label(item, &values, rubric.rubric.pass_score)
                    .map(|l| (item.key().to_owned(), l))
            })
            .collect();
        report.calibration = Some(calibrate::calibrate(&labels, &humans));
    }
    Ok(report)
}
