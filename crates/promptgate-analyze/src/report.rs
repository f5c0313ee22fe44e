//! From the collected summaries to the report: per-variant estimates, the
//! sample-ratio check, every variant × metric comparison against the
//! baseline (with Holm-adjusted p-values, always-valid p-values and power),
//! and the shadow comparisons. This is also the `--format json` document
//! (documented in docs/analyze.md; `format` names its version).

use std::collections::BTreeMap;

use serde::Serialize;

use super::collect::{Collector, Continuous, VariantData};
use super::pairs::{DifferenceTotal, PairDifferences, ShadowPairs};
use super::source::ObjectError;
use super::stats::bootstrap::{QuantileDifference, bootstrap_quantile_difference, quantile};
use super::stats::means::{Moments, mean_interval, welch};
use super::stats::multiple::holm_adjust;
use super::stats::paired::{McNemar, PairedCounts, mcnemar};
use super::stats::power::{
    PowerTarget, mean_mde, mean_sample_size, proportion_mde, proportion_sample_size,
};
use super::stats::proportions::{
    Counts, ProportionEstimate, compare_proportions, proportion_interval,
};
use super::stats::rank::{MannWhitney, WilcoxonSignedRank, mann_whitney_u, wilcoxon_signed_rank};
use super::stats::sequential::{SequentialComparison, rho_for_sample_size, sequential_difference};
use super::stats::{Interval, StatsError};
use super::units::Metric;

pub const FORMAT: &str = "promptgate.analyze.v1";

/// What the analysis was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    pub confidence: f64,
    pub baseline: Option<String>,
    /// Relative lift the sample-size figure is computed for (0.05: 5 %).
    pub target_lift: f64,
    /// Units the experiment is planned to reach: tunes the confidence sequences.
    pub planned_units: u64,
    pub seed: u64,
    /// Resamples of the quantile bootstrap (2,000 by default).
    pub bootstrap_resamples: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub experiment: String,
    pub source: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub confidence: f64,
    pub baseline: Option<String>,
    pub read: ReadSummary,
    pub population: Population,
    pub srm: Option<SrmReport>,
    pub variants: Vec<VariantReport>,
    pub comparisons: Vec<Comparison>,
    pub shadows: Vec<ShadowReport>,
    pub warnings: Vec<String>,
    /// Lower edges of the latency histogram's bins, then the last upper edge.
    pub latency_bins_ms: Vec<f64>,
    /// With `--by`: every comparison per slice; `null` without.
    pub slices: Option<super::slices::Slices>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadSummary {
    pub objects: u64,
    pub request_records: u64,
    pub feedback_records: u64,
    /// Feedback whose request is not in the analysed population.
    pub feedback_unmatched: u64,
    /// Feedback events not counted because of who posted them
    /// (docs/security.md, "Feedback integrity").
    pub feedback_excluded: crate::join::Excluded,
    /// Shadow records whose served request could not be paired (outside the
    /// population, or not remembered: see docs/analyze.md).
    pub unpaired_shadows: u64,
    pub corrupt_objects: Vec<ObjectError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Population {
    pub assignment_reasons: Vec<String>,
    pub analysed_requests: u64,
    /// Served requests of the experiment left out, by assignment reason.
    pub excluded: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SrmReport {
    /// Units (distinct unit keys) per variant: assignment is per unit. Above
    /// a million units, those of a uniform hash sample (`unit_sample_rate`).
    pub observed_units: BTreeMap<String, u64>,
    pub unit_sample_rate: f64,
    pub expected_share: BTreeMap<String, f64>,
    /// `recorded` (the log's `variant_share`) or `assumed_equal`.
    pub weights: &'static str,
    pub statistic: f64,
    pub df: u64,
    pub p_value: f64,
    pub mismatch: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub n: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    /// false: quantiles come from a uniform sample of the values.
    pub exact_quantiles: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricEstimate {
    pub kind: &'static str,
    pub n: u64,
    pub estimate: f64,
    pub ci: Option<Interval>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    pub name: String,
    pub requests: u64,
    /// Distinct units (estimated from the unit sample above a million).
    pub units: u64,
    pub error_rate: Option<ProportionEstimate>,
    pub latency_ms: Distribution,
    pub ttfb_ms: Distribution,
    pub input_tokens_mean: Option<f64>,
    pub output_tokens_mean: Option<f64>,
    pub cost_usd_mean: Option<f64>,
    pub valid_json: Option<ProportionEstimate>,
    /// With `--json-schema`: answers valid against it.
    pub schema_compliance: Option<ProportionEstimate>,
    pub feedback: BTreeMap<String, MetricEstimate>,
    pub requests_per_day: BTreeMap<String, u64>,
    /// Share of successful requests per latency bin; the bins (`latency_bins_ms`
    /// in the report) are shared by every variant.
    pub latency_histogram: Vec<f64>,
}

/// Which way is better for a metric; `None`: neither (tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metric: String,
    pub variant: String,
    pub baseline: String,
    /// `proportion` (z or Fisher), `mean` (Welch) or `median` (Mann–Whitney
    /// for the p-value, bootstrap for the p50/p95 differences).
    pub kind: &'static str,
    pub better: Option<Better>,
    /// `unit`: compared on the means of each unit's observations (the
    /// randomisation unit); `request`: on requests, either because every unit
    /// had at most one observation of the metric (the two coincide) or
    /// because the metric is latency or TTFB (always request-level).
    pub analysis_unit: &'static str,
    /// Units for a unit-level comparison, else requests (or feedback events).
    pub n_baseline: u64,
    pub n_variant: u64,
    pub estimate_baseline: f64,
    pub estimate_variant: f64,
    pub difference: f64,
    pub difference_ci: Interval,
    pub relative_lift: Option<f64>,
    pub relative_lift_ci: Option<Interval>,
    pub test: String,
    pub p_value: f64,
    /// Holm-adjusted over every comparison in this report.
    pub p_adjusted: f64,
    pub significant: bool,
    /// Always valid under continuous monitoring (peeking).
    pub sequential: Option<SequentialComparison>,
    /// Smallest absolute difference detectable with 80 % power at this size.
    pub minimum_detectable_difference: Option<f64>,
    /// Units per group needed to detect the target relative lift.
    pub units_needed_for_target_lift: Option<u64>,
    pub quantile_differences: Vec<QuantileDifference>,
    /// Why the verdict cannot be trusted whatever its numbers say
    /// (`SUSPECT_SRM`); null when nothing is known against it.
    pub suspect: Option<&'static str>,
    pub verdict: String,
}

impl Comparison {
    /// Its place among the tests corrected together: the Holm-adjusted p,
    /// whether that is significant at `alpha`, and the verdict in words.
    pub fn settle(&mut self, p_adjusted: f64, alpha: f64) {
        self.p_adjusted = p_adjusted;
        self.significant = p_adjusted < alpha;
        self.verdict = super::render::verdict(self);
    }
}

/// What makes every comparison of a report suspect: the groups were not
/// split as randomised.
pub const SUSPECT_SRM: &str = "sample ratio mismatch";

#[derive(Debug, Clone, Serialize)]
pub struct PairedDifference {
    /// Pairs the median and the test ran on: all of them, or a uniform
    /// sample of them (`sampled_from`).
    pub pairs: u64,
    pub median: f64,
    /// Over every pair, sampled or not.
    pub mean: f64,
    pub wilcoxon: Option<WilcoxonSignedRank>,
    /// Only when the pairs were sampled (more than `PAIR_SAMPLE_SIZE`): how
    /// many pairs had this difference, of which `pairs` were tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled_from: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShadowReport {
    pub served_variant: String,
    pub shadow_variant: String,
    pub pairs: u64,
    pub shadow_failures: u64,
    pub compared_outputs: u64,
    pub exact_agreement: Option<f64>,
    /// After collapsing whitespace and case.
    pub normalized_agreement: Option<f64>,
    /// Mean share of agreeing top-level fields, over pairs of JSON objects.
    pub json_field_agreement: Option<f64>,
    pub json_pairs: u64,
    /// shadow − served.
    pub latency_ms: Option<PairedDifference>,
    pub tokens: Option<PairedDifference>,
    pub cost_usd: Option<PairedDifference>,
    pub paired_feedback: BTreeMap<String, McNemar>,
}

fn distribution(metric: &Continuous) -> Distribution {
    let values = &metric.sample.values;
    Distribution {
        n: metric.moments.count(),
        mean: metric.moments.mean(),
        p50: quantile(values, 0.5).ok(),
        p95: quantile(values, 0.95).ok(),
        exact_quantiles: metric.sample.complete(),
    }
}

fn moments_of(counts: Counts) -> Option<Moments> {
    if counts.trials == 0 {
        return None;
    }
    let n = counts.trials;
    let p = counts.successes as f64 / n as f64;
    let variance = if n > 1 {
        p * (1.0 - p) * n as f64 / (n - 1) as f64
    } else {
        0.0
    };
    Moments::from_summary(n, p, variance).ok()
}

fn variant_report(
    name: &str,
    data: &VariantData,
    confidence: f64,
    unit_halvings: u32,
) -> VariantReport {
    let feedback = data
        .feedback
        .iter()
        .map(|(metric, fb)| {
            let estimate = if fb.boolean {
                let e = proportion_interval(fb.counts, confidence).ok();
                MetricEstimate {
                    kind: "proportion",
                    n: fb.counts.trials,
                    estimate: e.map_or(0.0, |e| e.rate),
                    ci: e.map(|e| e.ci),
                }
            } else {
                let e = mean_interval(&fb.moments, confidence).ok();
                MetricEstimate {
                    kind: "mean",
                    n: fb.moments.count(),
                    estimate: fb.moments.mean().unwrap_or(0.0),
                    ci: e.map(|e| e.ci),
                }
            };
            (metric.clone(), estimate)
        })
        .collect();
    VariantReport {
        name: name.to_owned(),
        requests: data.requests,
        units: data.units() << unit_halvings,
        error_rate: proportion_interval(data.errors, confidence).ok(),
        latency_ms: distribution(&data.latency_ms),
        ttfb_ms: distribution(&data.ttfb_ms),
        input_tokens_mean: data.input_tokens.mean(),
        output_tokens_mean: data.output_tokens.mean(),
        cost_usd_mean: data.cost_usd.mean(),
        valid_json: proportion_interval(data.valid_json, confidence).ok(),
        schema_compliance: proportion_interval(data.schema_valid, confidence).ok(),
        feedback,
        requests_per_day: data.per_day.clone(),
        latency_histogram: Vec::new(),
    }
}

const HISTOGRAM_BINS: usize = 24;

/// Bins from the smallest latency to the 99th percentile of all variants'
/// samples (the tail beyond goes to the last bin), so shapes compare.
fn latency_histograms(collector: &Collector, variants: &mut [VariantReport]) -> Vec<f64> {
    let all: Vec<f64> = collector
        .variants
        .values()
        .flat_map(|v| v.latency_ms.sample.values.iter().copied())
        .collect();
    let (Ok(low), Ok(high)) = (quantile(&all, 0.0), quantile(&all, 0.99)) else {
        return Vec::new();
    };
    let width = ((high - low) / HISTOGRAM_BINS as f64).max(1e-9);
    for report in variants.iter_mut() {
        let Some(data) = collector.variants.get(&report.name) else {
            continue;
        };
        let values = &data.latency_ms.sample.values;
        let mut counts = [0u64; HISTOGRAM_BINS];
        for v in values {
            let bin = (((v - low) / width) as usize).min(HISTOGRAM_BINS - 1);
            counts[bin] += 1;
        }
        let total = values.len().max(1) as f64;
        report.latency_histogram = counts.iter().map(|&c| c as f64 / total).collect();
    }
    (0..=HISTOGRAM_BINS)
        .map(|i| low + width * i as f64)
        .collect()
}

struct Pair<'a> {
    baseline: (&'a str, &'a VariantData),
    variant: (&'a str, &'a VariantData),
    settings: &'a Settings,
    rho: f64,
}

impl Pair<'_> {
    fn base(&self, metric: &str, kind: &'static str, better: Option<Better>) -> Comparison {
        Comparison {
            metric: metric.to_owned(),
            variant: self.variant.0.to_owned(),
            baseline: self.baseline.0.to_owned(),
            kind,
            better,
            analysis_unit: "request",
            n_baseline: 0,
            n_variant: 0,
            estimate_baseline: 0.0,
            estimate_variant: 0.0,
            difference: 0.0,
            difference_ci: Interval {
                lower: 0.0,
                upper: 0.0,
            },
            relative_lift: None,
            relative_lift_ci: None,
            test: String::new(),
            p_value: 1.0,
            p_adjusted: 1.0,
            significant: false,
            sequential: None,
            minimum_detectable_difference: None,
            units_needed_for_target_lift: None,
            quantile_differences: Vec::new(),
            suspect: None,
            verdict: String::new(),
        }
    }

    /// Both variants' unit means of `key`, when some unit has more than one
    /// observation of it: the requests of a unit are then not independent,
    /// and the unit means are what is compared.
    fn clustered(&self, key: &Metric) -> Option<(Moments, Moments)> {
        let a = self.baseline.1.unit_level.get(key)?;
        let b = self.variant.1.unit_level.get(key)?;
        (a.max_per_unit > 1 || b.max_per_unit > 1).then_some((a.means, b.means))
    }

    /// A rate: on unit means when units have several observations, else on
    /// the counts (z-test, or Fisher's exact test when small).
    fn proportion(
        &self,
        metric: &str,
        better: Better,
        key: Metric,
        pick: impl Fn(&VariantData) -> Counts,
    ) -> Result<Comparison, StatsError> {
        if let Some((a, b)) = self.clustered(&key) {
            return self.welch(metric, "proportion", Some(better), a, b, true);
        }
        let (a, b) = (pick(self.baseline.1), pick(self.variant.1));
        let result = compare_proportions(a, b, self.settings.confidence)?;
        let mut c = self.base(metric, "proportion", Some(better));
        c.n_baseline = a.trials;
        c.n_variant = b.trials;
        c.estimate_baseline = result.rate_a;
        c.estimate_variant = result.rate_b;
        c.difference = result.difference;
        c.difference_ci = result.difference_ci;
        c.relative_lift = result.relative_lift.map(|l| l.estimate);
        c.relative_lift_ci = result.relative_lift.map(|l| l.ci);
        c.test = match result.method {
            super::stats::proportions::ProportionTest::ZTest => "two_proportion_z".into(),
            super::stats::proportions::ProportionTest::FisherExact => "fisher_exact".into(),
        };
        c.p_value = result.p_value;
        if let (Some(ma), Some(mb)) = (moments_of(a), moments_of(b)) {
            c.sequential = sequential_difference(&ma, &mb, self.settings.confidence, self.rho).ok();
        }
        let target = self.power_target();
        c.minimum_detectable_difference = proportion_mde(result.rate_a, a.trials, b.trials, target)
            .ok()
            .and_then(|m| m.rate_b_up)
            .map(|up| up - result.rate_a);
        let lifted = (result.rate_a * (1.0 + self.settings.target_lift)).min(1.0);
        c.units_needed_for_target_lift = proportion_sample_size(result.rate_a, lifted, 1.0, target)
            .ok()
            .map(|s| s.required_a.max(s.required_b));
        Ok(c)
    }

    /// A mean: on unit means when units have several observations, else on
    /// the requests' values (then the same thing).
    fn mean(
        &self,
        metric: &str,
        better: Option<Better>,
        key: Metric,
        pick: impl Fn(&VariantData) -> Moments,
    ) -> Result<Comparison, StatsError> {
        match self.clustered(&key) {
            Some((a, b)) => self.welch(metric, "mean", better, a, b, true),
            None => {
                let (a, b) = (pick(self.baseline.1), pick(self.variant.1));
                self.welch(metric, "mean", better, a, b, false)
            }
        }
    }

    /// Welch's t on `a` and `b`: the requests' values, or one mean per unit
    /// (`units`), which makes the sample sizes, the always-valid numbers and
    /// the power figures counts of units.
    fn welch(
        &self,
        metric: &str,
        kind: &'static str,
        better: Option<Better>,
        a: Moments,
        b: Moments,
        units: bool,
    ) -> Result<Comparison, StatsError> {
        let result = welch(&a, &b, self.settings.confidence)?;
        let mut c = self.base(metric, kind, better);
        if units {
            c.analysis_unit = "unit";
        }
        c.n_baseline = a.count();
        c.n_variant = b.count();
        c.estimate_baseline = result.mean_a;
        c.estimate_variant = result.mean_b;
        c.difference = result.difference;
        c.difference_ci = result.difference_ci;
        c.relative_lift = result.relative_lift.map(|l| l.estimate);
        c.relative_lift_ci = result.relative_lift.map(|l| l.ci);
        c.test = if units {
            "welch_t_on_unit_means".into()
        } else {
            "welch_t".into()
        };
        c.p_value = result.p_value;
        c.sequential = sequential_difference(&a, &b, self.settings.confidence, self.rho).ok();
        let sd = a.variance().unwrap_or(0.0).sqrt();
        let target = self.power_target();
        c.minimum_detectable_difference = mean_mde(sd, a.count(), b.count(), target)
            .ok()
            .map(|m| m.absolute_effect);
        c.units_needed_for_target_lift =
            mean_sample_size(result.mean_a * self.settings.target_lift, sd, 1.0, target)
                .ok()
                .map(|s| s.required_a.max(s.required_b));
        Ok(c)
    }

    /// Skewed metrics: Mann–Whitney for the p-value, the p50 difference
    /// (bootstrap CI) as the estimate, p95 beside it.
    fn median(
        &self,
        metric: &str,
        pick: impl Fn(&VariantData) -> &Continuous,
    ) -> Result<Comparison, StatsError> {
        let (a, b) = (pick(self.baseline.1), pick(self.variant.1));
        let (sa, sb) = (&a.sample.values, &b.sample.values);
        let test: MannWhitney = mann_whitney_u(sa, sb)?;
        let seed = self.settings.seed;
        let confidence = self.settings.confidence;
        let p50 = bootstrap_quantile_difference(
            sa,
            sb,
            0.5,
            self.settings.bootstrap_resamples,
            confidence,
            seed,
        )?;
        let p95 = bootstrap_quantile_difference(
            sa,
            sb,
            0.95,
            self.settings.bootstrap_resamples,
            confidence,
            seed,
        )?;
        let mut c = self.base(metric, "median", Some(Better::Lower));
        c.n_baseline = a.moments.count();
        c.n_variant = b.moments.count();
        c.estimate_baseline = quantile(sa, 0.5)?;
        c.estimate_variant = quantile(sb, 0.5)?;
        c.difference = p50.estimate;
        c.difference_ci = p50.ci;
        if c.estimate_baseline > 0.0 {
            c.relative_lift = Some(c.estimate_variant / c.estimate_baseline - 1.0);
            c.relative_lift_ci = Some(Interval {
                lower: p50.ci.lower / c.estimate_baseline,
                upper: p50.ci.upper / c.estimate_baseline,
            });
        }
        c.test = "mann_whitney_u".into();
        c.p_value = test.p_value;
        c.sequential = sequential_difference(&a.moments, &b.moments, confidence, self.rho).ok();
        c.quantile_differences = vec![p50, p95];
        Ok(c)
    }

    fn power_target(&self) -> PowerTarget {
        PowerTarget {
            alpha: 1.0 - self.settings.confidence,
            power: 0.8,
        }
    }
}

/// The baseline: as asked, else `control` if present, else the first name.
fn pick_baseline(variants: &BTreeMap<String, VariantData>, asked: Option<&str>) -> Option<String> {
    match asked {
        Some(name) => variants.contains_key(name).then(|| name.to_owned()),
        None if variants.contains_key("control") => Some("control".into()),
        None => variants.keys().next().cloned(),
    }
}

/// The paired statistics of one difference: on all pairs, or on the uniform
/// sample of pairs kept (the mean then over all of them all the same).
fn paired(
    p: &ShadowPairs,
    pick: fn(&PairDifferences) -> Option<f64>,
    total: DifferenceTotal,
) -> Option<PairedDifference> {
    let differences = p.sampled(pick);
    if differences.is_empty() {
        return None;
    }
    let complete = p.differences.complete();
    Some(PairedDifference {
        pairs: differences.len() as u64,
        median: quantile(&differences, 0.5).ok()?,
        mean: if complete {
            differences.iter().sum::<f64>() / differences.len() as f64
        } else {
            total.sum / total.pairs as f64
        },
        wilcoxon: wilcoxon_signed_rank(&differences).ok(),
        sampled_from: (!complete).then_some(total.pairs),
    })
}

fn shadow_report((served, shadow): &(String, String), p: &ShadowPairs) -> ShadowReport {
    let share = |count: u64, of: u64| (of > 0).then(|| count as f64 / of as f64);
    let [latency_total, tokens_total, cost_total] = p.totals;
    ShadowReport {
        served_variant: served.clone(),
        shadow_variant: shadow.clone(),
        pairs: p.pairs,
        shadow_failures: p.shadow_failed,
        compared_outputs: p.compared_texts,
        exact_agreement: share(p.exact_agreements, p.compared_texts),
        normalized_agreement: share(p.normalized_agreements, p.compared_texts),
        json_field_agreement: (p.json_pairs > 0)
            .then(|| p.json_field_agreement_sum / p.json_pairs as f64),
        json_pairs: p.json_pairs,
        latency_ms: paired(p, PairDifferences::latency_ms, latency_total),
        tokens: paired(p, PairDifferences::tokens, tokens_total),
        cost_usd: paired(p, PairDifferences::cost_usd, cost_total),
        paired_feedback: p
            .paired_feedback
            .iter()
            .filter_map(|(metric, t)| {
                let counts = PairedCounts {
                    both: t[1][1],
                    only_a: t[1][0],
                    only_b: t[0][1],
                    neither: t[0][0],
                };
                mcnemar(counts).ok().map(|m| (metric.clone(), m))
            })
            .collect(),
    }
}

#[derive(Clone)]
pub struct Header {
    pub experiment: String,
    pub source: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub assignment_reasons: Vec<String>,
    pub read: ReadSummary,
}

pub fn build(header: Header, collector: &Collector, settings: &Settings) -> Report {
    let mut warnings = Vec::new();
    let confidence = settings.confidence;
    let mut variants: Vec<VariantReport> = collector
        .variants
        .iter()
        .map(|(name, data)| variant_report(name, data, confidence, collector.unit_halvings))
        .collect();
    let latency_bins_ms = latency_histograms(collector, &mut variants);
    let baseline = pick_baseline(&collector.variants, settings.baseline.as_deref());
    if let (Some(asked), None) = (&settings.baseline, &baseline) {
        warnings.push(format!(
            "baseline `{asked}` has no requests in this window: no comparisons"
        ));
    }
    let rho = rho_for_sample_size(settings.planned_units.max(1), confidence).unwrap_or(0.01);
    let mut raw: Vec<Comparison> = Vec::new();
    if let Some(base_name) = &baseline {
        let base = &collector.variants[base_name];
        for (name, data) in collector.variants.iter().filter(|(n, _)| *n != base_name) {
            let pair = Pair {
                baseline: (base_name, base),
                variant: (name, data),
                settings,
                rho,
            };
            // A rate with no event in either variant carries no evidence; left
            // out, it does not dilute the multiple-testing correction.
            let any =
                |pick: fn(&VariantData) -> Counts| pick(base).successes + pick(data).successes > 0;
            let mut attempts: Vec<(String, Result<Comparison, StatsError>)> = vec![
                (
                    "latency_ms".into(),
                    pair.median("latency_ms", |d| &d.latency_ms),
                ),
                (
                    "cost_usd".into(),
                    pair.mean("cost_usd", Some(Better::Lower), Metric::CostUsd, |d| {
                        d.cost_usd
                    }),
                ),
                (
                    "output_tokens".into(),
                    pair.mean("output_tokens", None, Metric::OutputTokens, |d| {
                        d.output_tokens
                    }),
                ),
            ];
            if base.ttfb_ms.moments.count() > 0 || data.ttfb_ms.moments.count() > 0 {
                attempts.push(("ttfb_ms".into(), pair.median("ttfb_ms", |d| &d.ttfb_ms)));
            }
            if any(|d| d.errors) {
                attempts.insert(
                    0,
                    (
                        "error_rate".into(),
                        pair.proportion("error_rate", Better::Lower, Metric::ErrorRate, |d| {
                            d.errors
                        }),
                    ),
                );
            }
            if any(|d| d.schema_valid) {
                attempts.push((
                    "schema_compliance".into(),
                    pair.proportion(
                        "schema_compliance",
                        Better::Higher,
                        Metric::SchemaCompliance,
                        |d| d.schema_valid,
                    ),
                ));
            }
            if any(|d| d.valid_json) {
                attempts.push((
                    "valid_json".into(),
                    pair.proportion("valid_json", Better::Higher, Metric::ValidJson, |d| {
                        d.valid_json
                    }),
                ));
            }
            let metrics: Vec<(&String, bool)> = base
                .feedback
                .iter()
                .filter(|(m, _)| data.feedback.contains_key(*m))
                .map(|(m, fb)| (m, fb.boolean))
                .collect();
            for (metric, boolean) in metrics {
                let pick = |d: &VariantData| d.feedback.get(metric).cloned();
                let key = Metric::Feedback(metric.clone());
                let attempt = if boolean {
                    pair.proportion(metric, Better::Higher, key, |d| {
                        pick(d).map_or(
                            Counts {
                                successes: 0,
                                trials: 0,
                            },
                            |f| f.counts,
                        )
                    })
                } else {
                    pair.mean(metric, Some(Better::Higher), key, |d| {
                        pick(d).map_or(Moments::new(), |f| f.moments)
                    })
                };
                attempts.push((metric.clone(), attempt));
            }
            for (metric, attempt) in attempts {
                match attempt {
                    Ok(r) => raw.push(r),
                    Err(StatsError::NotEnoughData(_)) => {}
                    Err(error) => {
                        warnings.push(format!("{name} vs {base_name} on {metric}: {error}"))
                    }
                }
            }
        }
    }
    if header.assignment_reasons.iter().any(|r| r != "hash") {
        warnings.push(format!(
            "the population includes non-random assignments ({}): variants are no longer comparable by randomisation, and the sample-ratio check is expected to fail",
            header.assignment_reasons.iter().filter(|r| *r != "hash").cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let excluded = header.read.feedback_excluded;
    if excluded.foreign_client + excluded.ambiguous_request_id > 0 {
        warnings.push(format!(
            "feedback excluded: {} event(s) posted by a client that neither made the request nor is a trusted reporter, {} by a trusted reporter on a request id that several clients used (read.feedback_excluded)",
            excluded.foreign_client, excluded.ambiguous_request_id
        ));
    }
    let srm = super::sample_ratio::check(collector, &mut warnings);
    let mismatch = srm.as_ref().is_some_and(|s| s.mismatch);
    if mismatch {
        warnings.insert(0, "SAMPLE RATIO MISMATCH: the split of units differs from the configured weights beyond chance (p < 0.001). Assignment or logging is broken for some units; every comparison below is suspect until the cause is found.".into());
    }
    let p_values: Vec<f64> = raw.iter().map(|c| c.p_value).collect();
    let adjusted = holm_adjust(&p_values).unwrap_or(p_values);
    let alpha = 1.0 - confidence;
    let comparisons: Vec<Comparison> = raw
        .into_iter()
        .zip(adjusted)
        .map(|(mut c, p_adjusted)| {
            c.suspect = mismatch.then_some(SUSPECT_SRM);
            c.settle(p_adjusted, alpha);
            c
        })
        .collect();
    let analysed_requests = collector.variants.values().map(|v| v.requests).sum();
    Report {
        format: FORMAT,
        experiment: header.experiment,
        source: header.source,
        from: header.from,
        to: header.to,
        confidence,
        baseline,
        read: header.read,
        population: Population {
            assignment_reasons: header.assignment_reasons,
            analysed_requests,
            excluded: collector.excluded.clone(),
        },
        srm,
        variants,
        comparisons,
        shadows: collector
            .shadows
            .iter()
            .map(|(key, pairs)| shadow_report(key, pairs))
            .collect(),
        warnings,
        latency_bins_ms,
        slices: None,
    }
}
