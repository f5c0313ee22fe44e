//! `promptgate drift`: has the traffic changed between a baseline window and
//! a current one? Reads the audit log like `analyze` (`source`), summarises
//! each window in bounded memory (`window`), and compares every signal with
//! PSI plus a test (two-sample KS for numbers, χ² for categories).
//!
//! Memory: per window, a 20,000-value reservoir per numeric signal (the one
//! `analyze` uses) and at most 50 categories per categorical signal, plus one
//! decoded object at a time. KS therefore runs on the reservoirs: with more
//! than 20,000 values in a window its p-value is that of a 20,000-value
//! sample — valid (the false-alarm rate stays at α) but with the power of
//! 20,000 values, not of the whole window.

pub mod render;
pub mod window;

use serde::Serialize;

use crate::AnalyzeError;
use crate::records::FeedbackRow;
use crate::source::{DateRange, ObjectError, Source, Table};
use crate::stats::ks::{KsMethod, ks_2samp};
use crate::stats::psi::{chi_square_independence, population_stability_index};

use window::{DriftRow, NUMERIC, Window};

pub const SCHEMA: &str = "promptgate.drift.v1";
/// PSI conventions: below 0.1 stable, 0.1–0.25 moderate, from 0.25 major.
pub const PSI_MODERATE: f64 = 0.1;
pub const PSI_MAJOR: f64 = 0.25;
/// Bins of numeric PSI: the baseline's deciles.
const PSI_BINS: usize = 10;

#[derive(Debug, Clone)]
pub enum Scope {
    Experiment(String),
    /// The model name the caller sent (a route).
    Route(String),
    All,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub scope: Scope,
    pub baseline: DateRange,
    pub current: DateRange,
    /// Family-wise false-alarm rate of a run: each signal's p-value is
    /// compared with `alpha / signals` (Bonferroni).
    pub alpha: f64,
    pub skip_corrupt: bool,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Stable,
    Moderate,
    Drift,
}

#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    pub name: String,
    pub kind: &'static str,
    pub test: &'static str,
    pub baseline_n: u64,
    pub current_n: u64,
    pub psi: f64,
    pub statistic: f64,
    pub p_value: f64,
    pub verdict: Verdict,
    /// Bin or category labels, with each window's share (for histograms).
    pub bins: Vec<String>,
    pub baseline_shares: Vec<f64>,
    pub current_shares: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowInfo {
    pub from: Option<String>,
    pub to: Option<String>,
    pub records: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub schema: &'static str,
    pub source: String,
    pub scope: String,
    pub baseline: WindowInfo,
    pub current: WindowInfo,
    pub alpha: f64,
    pub p_threshold: f64,
    pub signals: Vec<Signal>,
    pub drift: bool,
    pub notes: Vec<String>,
}

impl Scope {
    fn keeps(&self, row: &DriftRow) -> bool {
        match self {
            Scope::Experiment(id) => row.experiment.as_deref() == Some(id),
            Scope::Route(model) => row.model.as_deref() == Some(model),
            Scope::All => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            Scope::Experiment(id) => format!("experiment {id}"),
            Scope::Route(model) => format!("route {model}"),
            Scope::All => "whole log".to_owned(),
        }
    }
}

pub async fn drift(source: &Source, options: &Options) -> Result<DriftReport, AnalyzeError> {
    let mut baseline = Window::new(options.seed);
    let mut current = Window::new(options.seed.wrapping_add(1));
    let mut skipped = Vec::new();
    for (name, range, window) in [
        ("baseline", &options.baseline, &mut baseline),
        ("current", &options.current, &mut current),
    ] {
        skipped.extend(read_window(source, range, options, window).await?);
        // Nothing to compare is not "no drift": exit 2, not 0.
        if window.records == 0 {
            return Err(AnalyzeError::Source(format!(
                "no request of the {} in the {name} window",
                options.scope.describe()
            )));
        }
    }
    let mut signals = Vec::new();
    for (index, name) in NUMERIC.iter().enumerate() {
        if let Some(signal) = numeric_signal(
            name,
            &baseline.numeric[index].values,
            &current.numeric[index].values,
        ) {
            signals.push(signal);
        }
    }
    let names: std::collections::BTreeSet<&String> = baseline
        .categorical
        .keys()
        .chain(current.categorical.keys())
        .collect();
    let empty = Default::default();
    for name in names {
        let b = baseline.categorical.get(name).unwrap_or(&empty);
        let c = current.categorical.get(name).unwrap_or(&empty);
        signals.extend(categorical_signal(name, "categorical", b, c));
    }
    let metrics: std::collections::BTreeSet<&String> = baseline
        .feedback
        .keys()
        .chain(current.feedback.keys())
        .collect();
    for metric in metrics {
        let to_counts = |counts: Option<&(u64, u64)>| {
            let (yes, no) = counts.copied().unwrap_or((0, 0));
            [("true".to_owned(), yes), ("false".to_owned(), no)]
                .into_iter()
                .collect()
        };
        let b = to_counts(baseline.feedback.get(metric));
        let c = to_counts(current.feedback.get(metric));
        signals.extend(categorical_signal(
            &format!("feedback:{metric}"),
            "feedback",
            &b,
            &c,
        ));
    }
    let p_threshold = options.alpha / signals.len().max(1) as f64;
    for signal in &mut signals {
        signal.verdict = verdict(signal.psi, signal.p_value, p_threshold);
    }
    let mut notes: Vec<String> = skipped
        .iter()
        .map(|error| format!("skipped {}: {}", error.object, error.reason))
        .collect();
    if !matches!(options.scope, Scope::All) {
        notes.push("feedback signals cover every feedback event received in each window, whatever the scope".to_owned());
    }
    Ok(DriftReport {
        schema: SCHEMA,
        source: source.describe(),
        scope: options.scope.describe(),
        baseline: WindowInfo {
            from: options.baseline.from.clone(),
            to: options.baseline.to.clone(),
            records: baseline.records,
        },
        current: WindowInfo {
            from: options.current.from.clone(),
            to: options.current.to.clone(),
            records: current.records,
        },
        alpha: options.alpha,
        p_threshold,
        drift: signals.iter().any(|s| s.verdict == Verdict::Drift),
        signals,
        notes,
    })
}

/// Drift needs both a material shift (PSI) and one chance cannot explain (p):
/// on millions of records a test alone flags shifts nobody cares about, and
/// on a few hundred PSI alone flags noise.
pub fn verdict(psi: f64, p_value: f64, p_threshold: f64) -> Verdict {
    if p_value >= p_threshold || psi < PSI_MODERATE {
        Verdict::Stable
    } else if psi < PSI_MAJOR {
        Verdict::Moderate
    } else {
        Verdict::Drift
    }
}

async fn read_window(
    source: &Source,
    range: &DateRange,
    options: &Options,
    window: &mut Window,
) -> Result<Vec<ObjectError>, AnalyzeError> {
    let mut skipped = Vec::new();
    for object in source.list(Table::Requests, range).await? {
        match source.read::<DriftRow>(&object).await {
            Ok(rows) => rows
                .iter()
                .filter(|r| {
                    r.record_type == "request" && r.role != "shadow" && options.scope.keeps(r)
                })
                .for_each(|r| window.add(r)),
            Err(error) if options.skip_corrupt => skipped.push(error),
            Err(error) => return Err(AnalyzeError::Corrupt(error)),
        }
    }
    for object in source.list(Table::Feedback, range).await? {
        match source.read::<FeedbackRow>(&object).await {
            Ok(rows) => {
                for row in rows.iter().filter(|r| r.value_type == "boolean") {
                    let counts = window.feedback.entry(row.metric.clone()).or_default();
                    match row.value_number {
                        Some(v) if v > 0.5 => counts.0 += 1,
                        Some(_) => counts.1 += 1,
                        None => {}
                    }
                }
            }
            Err(error) if options.skip_corrupt => skipped.push(error),
            Err(error) => return Err(AnalyzeError::Corrupt(error)),
        }
    }
    Ok(skipped)
}

fn numeric_signal(name: &str, baseline: &[f64], current: &[f64]) -> Option<Signal> {
    let test = ks_2samp(baseline, current).ok()?;
    let mut sorted = baseline.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = (1..PSI_BINS)
        .map(|k| sorted[(k * sorted.len() / PSI_BINS).min(sorted.len() - 1)])
        .collect();
    edges.dedup();
    let bin = |x: f64| edges.partition_point(|&edge| edge <= x);
    let mut b = vec![0u64; edges.len() + 1];
    let mut c = vec![0u64; edges.len() + 1];
    baseline.iter().for_each(|&x| b[bin(x)] += 1);
    current.iter().for_each(|&x| c[bin(x)] += 1);
    let psi = population_stability_index(&b, &c).ok()?;
    let mut bins = Vec::with_capacity(b.len());
    let mut lower = "−∞".to_owned();
    for edge in edges
        .iter()
        .map(|e| format!("{e:.6}"))
        .chain(["∞".to_owned()])
    {
        bins.push(format!("[{lower}, {edge})"));
        lower = edge;
    }
    Some(Signal {
        name: name.to_owned(),
        kind: "numeric",
        test: match test.method {
            KsMethod::Exact => "ks_exact",
            KsMethod::Asymptotic => "ks_asymptotic",
        },
        baseline_n: baseline.len() as u64,
        current_n: current.len() as u64,
        psi,
        statistic: test.statistic,
        p_value: test.p_value,
        verdict: Verdict::Stable,
        bins,
        baseline_shares: shares(&b),
        current_shares: shares(&c),
    })
}

fn categorical_signal(
    name: &str,
    kind: &'static str,
    baseline: &std::collections::BTreeMap<String, u64>,
    current: &std::collections::BTreeMap<String, u64>,
) -> Option<Signal> {
    let labels: Vec<String> = baseline
        .keys()
        .chain(current.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let b: Vec<u64> = labels
        .iter()
        .map(|l| baseline.get(l).copied().unwrap_or(0))
        .collect();
    let c: Vec<u64> = labels
        .iter()
        .map(|l| current.get(l).copied().unwrap_or(0))
        .collect();
    let psi = population_stability_index(&b, &c).ok()?;
    // A single category in both windows: nothing to test, and nothing changed.
    let (statistic, p_value) = match chi_square_independence(&[b.clone(), c.clone()]) {
        Ok(test) => (test.statistic, test.p_value),
        Err(_) => (0.0, 1.0),
    };
    Some(Signal {
        name: name.to_owned(),
        kind,
        test: "chi_square",
        baseline_n: b.iter().sum(),
        current_n: c.iter().sum(),
        psi,
        statistic,
        p_value,
        verdict: Verdict::Stable,
        bins: labels,
        baseline_shares: shares(&b),
        current_shares: shares(&c),
    })
}

fn shares(counts: &[u64]) -> Vec<f64> {
    let total = counts.iter().sum::<u64>().max(1) as f64;
    counts.iter().map(|&c| c as f64 / total).collect()
}
