//! The report for a terminal: the sample-ratio check first (an SRM voids
//! everything after it), then one table per concern and a verdict in words
//! per comparison.

use std::fmt::Write;

use super::report::{Better, Comparison, Distribution, Report};

/// Which way a significant comparison went, in the words of its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Better,
    Worse,
    /// Significant on a metric that is neither better high nor low (tokens).
    Higher,
    Lower,
}

impl Direction {
    /// None: no significant difference.
    pub fn of(c: &Comparison) -> Option<Direction> {
        if !c.significant {
            return None;
        }
        let up = c.difference > 0.0;
        Some(match c.better {
            Some(Better::Higher) if up => Direction::Better,
            Some(Better::Higher) => Direction::Worse,
            Some(Better::Lower) if up => Direction::Worse,
            Some(Better::Lower) => Direction::Better,
            None if up => Direction::Higher,
            None => Direction::Lower,
        })
    }

    pub fn words(self) -> &'static str {
        match self {
            Direction::Better => "better than",
            Direction::Worse => "worse than",
            Direction::Higher => "higher than",
            Direction::Lower => "lower than",
        }
    }
}

/// "+3.1% [1.2, 5.0], p_adj = 0.004": the estimate (relative lift when there
/// is one), its interval and the adjusted p-value, as the verdict and the
/// HTML forest plot both print it.
pub fn estimate_text(c: &Comparison) -> String {
    let (value, ci) = match (c.relative_lift, c.relative_lift_ci) {
        (Some(lift), Some(ci)) => (
            format!("{:+.1}%", lift * 100.0),
            format!("[{:.1}, {:.1}]", ci.lower * 100.0, ci.upper * 100.0),
        ),
        _ => (
            format!("{:+.4}", c.difference),
            format!(
                "[{:.4}, {:.4}]",
                c.difference_ci.lower, c.difference_ci.upper
            ),
        ),
    };
    format!("{value} {ci}, p_adj = {}", p_text(c.p_adjusted))
}

/// "treatment better than control on thumbs_up, +3.1% [1.2, 5.0], p_adj = 0.004",
/// after "suspect: sample ratio mismatch — " when the report has one.
pub fn verdict(c: &Comparison) -> String {
    let what = if c.kind == "median" {
        format!("{} (p50)", c.metric)
    } else {
        c.metric.clone()
    };
    let stats = estimate_text(c);
    let finding = match Direction::of(c) {
        None => format!(
            "no significant difference between {} and {} on {what} ({stats})",
            c.variant, c.baseline
        ),
        Some(direction) => format!(
            "{} {} {} on {what}, {stats}",
            c.variant,
            direction.words(),
            c.baseline
        ),
    };
    match c.suspect {
        Some(reason) => format!("suspect: {reason} — {finding}"),
        None => finding,
    }
}

/// A p-value as every format prints it: four decimals, or `<0.0001`.
pub fn p_text(p: f64) -> String {
    if p < 0.0001 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

fn dist(d: &Distribution) -> String {
    if d.n == 0 {
        return "–".into();
    }
    format!(
        "{} / {} / {}{}",
        opt(d.mean, 1),
        opt(d.p50, 1),
        opt(d.p95, 1),
        if d.exact_quantiles { "" } else { " ~" }
    )
}

/// `--by`: each slice's verdicts, Holm-adjusted over every slice.
fn slices_text(out: &mut String, slices: &crate::slices::Slices) {
    let tests: usize = slices.slices.iter().map(|s| s.comparisons.len()).sum();
    let _ = writeln!(
        out,
        "\nBy {} ({} slices, Holm-adjusted over {tests} tests across slices):",
        slices.by,
        slices.slices.len()
    );
    for slice in &slices.slices {
        let srm = if slice.sample_ratio_mismatch {
            "; SAMPLE RATIO MISMATCH"
        } else {
            ""
        };
        let _ = writeln!(out, "  {} ({} requests{srm})", slice.value, slice.requests);
        for c in &slice.comparisons {
            let _ = writeln!(
                out,
                "    {} [p = {}, adjusted {}]",
                c.verdict,
                p_text(c.p_value),
                p_text(c.p_adjusted)
            );
        }
        if let Some(note) = &slice.too_small {
            let _ = writeln!(out, "    note: {note}");
        }
    }
}

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Experiment `{}` from {}{}{}",
        report.experiment,
        report.source,
        report
            .from
            .as_ref()
            .map(|f| format!(", from {f}"))
            .unwrap_or_default(),
        report
            .to
            .as_ref()
            .map(|t| format!(" to {t}"))
            .unwrap_or_default(),
    );
    let _ = writeln!(
        out,
        "Read {} objects: {} request records, {} feedback records ({} not matched to an analysed request).",
        report.read.objects,
        report.read.request_records,
        report.read.feedback_records,
        report.read.feedback_unmatched
    );
    for corrupt in &report.read.corrupt_objects {
        let _ = writeln!(
            out,
            "SKIPPED unreadable object {}: {}",
            corrupt.object, corrupt.reason
        );
    }
    let excluded: Vec<String> = report
        .population
        .excluded
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    let _ = writeln!(
        out,
        "Intent to treat: {} requests assigned by {}; excluded: {}.",
        report.population.analysed_requests,
        report.population.assignment_reasons.join(", "),
        if excluded.is_empty() {
            "none".into()
        } else {
            excluded.join(", ")
        }
    );
    for warning in &report.warnings {
        let _ = writeln!(out, "\n!! {warning}");
    }
    if let Some(srm) = &report.srm {
        let _ = writeln!(
            out,
            "\nSample ratio ({} weights): {} — χ² = {:.2}, df = {}, p = {}",
            srm.weights,
            if srm.mismatch { "MISMATCH" } else { "ok" },
            srm.statistic,
            srm.df,
            p_text(srm.p_value)
        );
        for (name, units) in &srm.observed_units {
            let _ = writeln!(
                out,
                "  {name:<24} {units:>8} units (expected share {:.1}%)",
                srm.expected_share.get(name).copied().unwrap_or(0.0) * 100.0
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:>9} {:>8} {:>14} {:>26} {:>22} {:>10} {:>12}",
        "variant",
        "requests",
        "units",
        "error rate",
        "latency ms mean/p50/p95",
        "ttfb ms mean/p50/p95",
        "out tok",
        "cost/req $"
    );
    for v in &report.variants {
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>8} {:>14} {:>26} {:>22} {:>10} {:>12}",
            v.name,
            v.requests,
            v.units,
            v.error_rate
                .map_or_else(|| "–".into(), |e| format!("{:.2}%", e.rate * 100.0)),
            dist(&v.latency_ms),
            dist(&v.ttfb_ms),
            opt(v.output_tokens_mean, 1),
            opt(v.cost_usd_mean, 6),
        );
    }
    let feedback_rows: Vec<String> = report
        .variants
        .iter()
        .flat_map(|v| {
            let rates = [
                ("valid_json", v.valid_json),
                ("schema_compliance", v.schema_compliance),
            ];
            let json = rates.into_iter().filter_map(|(metric, rate)| {
                rate.map(|j| {
                    format!(
                        "  {:<20} {metric:<20} {:>7.2}% [{:.2}, {:.2}]",
                        v.name,
                        j.rate * 100.0,
                        j.ci.lower * 100.0,
                        j.ci.upper * 100.0
                    )
                })
            });
            json.into_iter()
                .chain(v.feedback.iter().map(move |(metric, m)| {
                    let ci = m.ci.map_or_else(String::new, |ci| {
                        format!(" [{:.4}, {:.4}]", ci.lower, ci.upper)
                    });
                    format!(
                        "  {:<20} {metric:<20} {:>8.4}{ci} (n = {}, {})",
                        v.name, m.estimate, m.n, m.kind
                    )
                }))
        })
        .collect();
    if !feedback_rows.is_empty() {
        let _ = writeln!(out, "\nOutput quality and feedback:");
        for row in feedback_rows {
            let _ = writeln!(out, "{row}");
        }
    }
    if !report.comparisons.is_empty() {
        let _ = writeln!(
            out,
            "\nComparisons against `{}` ({:.0}% confidence, Holm-adjusted over {} tests):",
            report.baseline.as_deref().unwrap_or("-"),
            report.confidence * 100.0,
            report.comparisons.len()
        );
        for c in &report.comparisons {
            let sequential = c.sequential.as_ref().map_or_else(String::new, |s| {
                format!("; always-valid p = {}", p_text(s.p_value))
            });
            let power = c
                .minimum_detectable_difference
                .map_or_else(String::new, |m| format!("; detectable now: ±{m:.4}"));
            // Unit-level sizes are said, since the per-variant table shows requests.
            let units = if c.analysis_unit == "unit" {
                format!("; {} vs {} units", c.n_baseline, c.n_variant)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {}\n      [{}{units}; p = {}{sequential}{power}]",
                c.verdict,
                c.test,
                p_text(c.p_value)
            );
        }
    }
    if let Some(slices) = &report.slices {
        slices_text(&mut out, slices);
    }
    for s in &report.shadows {
        let _ = writeln!(
            out,
            "\nShadow `{}` beside served `{}`: {} pairs, {} shadow failures",
            s.shadow_variant, s.served_variant, s.pairs, s.shadow_failures
        );
        let percent =
            |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{:.1}%", v * 100.0));
        let _ = writeln!(
            out,
            "  agreement: exact {}, normalised {}, JSON fields {} ({} JSON pairs)",
            percent(s.exact_agreement),
            percent(s.normalized_agreement),
            percent(s.json_field_agreement),
            s.json_pairs
        );
        for (name, d) in [
            ("latency ms", &s.latency_ms),
            ("tokens", &s.tokens),
            ("cost $", &s.cost_usd),
        ] {
            if let Some(d) = d {
                let _ = writeln!(
                    out,
                    "  {name} shadow − served: median {:+.4}, mean {:+.4} over {} pairs{}{}",
                    d.median,
                    d.mean,
                    d.sampled_from.unwrap_or(d.pairs),
                    d.wilcoxon.as_ref().map_or_else(String::new, |w| format!(
                        ", Wilcoxon p = {}",
                        p_text(w.p_value)
                    )),
                    d.sampled_from.map_or_else(String::new, |all| format!(
                        " (median and test on a uniform sample of {} of the {all} pairs)",
                        d.pairs
                    ))
                );
            }
        }
        for (metric, m) in &s.paired_feedback {
            let _ = writeln!(
                out,
                "  {metric}: served {:.1}% vs shadow {:.1}%, McNemar p = {}",
                m.rate_a * 100.0,
                m.rate_b * 100.0,
                p_text(m.p_value)
            );
        }
    }
    out
}
