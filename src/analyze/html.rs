//! `--format html`: one self-contained page (inline SVG, no script, no
//! network): the verdicts, a confidence-interval forest plot per metric,
//! latency distributions per variant, and units over time (an SRM shows as
//! lines that do not track their expected shares).

use std::fmt::Write;

use super::render::table;
use super::report::{Comparison, Report};

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The interval a comparison is plotted on: relative lift when there is one.
fn plotted(c: &Comparison) -> (f64, f64, f64, &'static str) {
    match (c.relative_lift, c.relative_lift_ci) {
        (Some(lift), Some(ci)) => (lift * 100.0, ci.lower * 100.0, ci.upper * 100.0, "%"),
        _ => (
            c.difference,
            c.difference_ci.lower,
            c.difference_ci.upper,
            "",
        ),
    }
}

fn forest(out: &mut String, metric: &str, rows: &[&Comparison]) {
    let row_height = 28.0;
    let (width, left, right) = (720.0, 170.0, 40.0);
    let height = 40.0 + row_height * rows.len() as f64;
    let (mut low, mut high) = (0.0f64, 0.0f64);
    for c in rows {
        let (_, l, h, _) = plotted(c);
        low = low.min(l);
        high = high.max(h);
    }
    let pad = ((high - low) * 0.1).max(1e-9);
    let (low, high) = (low - pad, high + pad);
    let x = |v: f64| left + (v - low) / (high - low) * (width - left - right);
    let unit = rows.first().map_or("", |c| plotted(c).3);
    let _ = write!(
        out,
        r#"<h3>{}</h3><svg width="{width}" height="{height}" role="img" aria-label="confidence intervals for {}">"#,
        escape(metric),
        escape(metric)
    );
    let zero = x(0.0);
    let _ = write!(
        out,
        r##"<line x1="{zero}" y1="10" x2="{zero}" y2="{}" stroke="#999" stroke-dasharray="4"/>"##,
        height - 20.0
    );
    for (i, c) in rows.iter().enumerate() {
        let (point, l, h, _) = plotted(c);
        let y = 30.0 + row_height * i as f64;
        let colour = if c.significant { "#d62728" } else { "#555" };
        let _ = write!(
            out,
            r#"<text x="5" y="{}" font-size="13">{} vs {}</text><line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="2"/><circle cx="{}" cy="{y}" r="4" fill="{colour}"/><text x="{}" y="{}" font-size="11" fill="{colour}">{point:+.2}{unit} [{l:.2}, {h:.2}] p_adj={:.4}</text>"#,
            y + 4.0,
            escape(&c.variant),
            escape(&c.baseline),
            x(l),
            x(h),
            x(point),
            x(h) + 6.0,
            y + 4.0,
            c.p_adjusted
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="11">{low:.2}{unit}</text><text x="{}" y="{}" font-size="11" text-anchor="end">{high:.2}{unit}</text></svg>"#,
        left,
        height - 4.0,
        width - right,
        height - 4.0
    );
}

fn latency(out: &mut String, report: &Report) {
    let bins = &report.latency_bins_ms;
    if bins.len() < 2 {
        return;
    }
    let (width, height, left, bottom) = (720.0, 220.0, 50.0, 30.0);
    let max = report
        .variants
        .iter()
        .flat_map(|v| v.latency_histogram.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let n = bins.len() - 1;
    let step = (width - left - 10.0) / n as f64;
    let _ = write!(
        out,
        r#"<h2>Latency distribution (successful requests)</h2><svg width="{width}" height="{height}" role="img" aria-label="latency histograms">"#
    );
    for (index, variant) in report.variants.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = variant
            .latency_histogram
            .iter()
            .enumerate()
            .map(|(i, share)| {
                format!(
                    "{:.1},{:.1}",
                    left + step * (i as f64 + 0.5),
                    height - bottom - share / max * (height - bottom - 10.0)
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><text x="{}" y="{}" font-size="12" fill="{colour}">{}</text>"#,
            points.join(" "),
            width - 160.0,
            20.0 + 16.0 * index as f64,
            escape(&variant.name)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{left}" y="{}" font-size="11">{:.0} ms</text><text x="{}" y="{}" font-size="11" text-anchor="end">{:.0} ms (p99 and beyond)</text></svg>"#,
        height - 8.0,
        bins[0],
        width - 10.0,
        height - 8.0,
        bins[n]
    );
}

fn over_time(out: &mut String, report: &Report) {
    let mut days: Vec<&String> = report
        .variants
        .iter()
        .flat_map(|v| v.requests_per_day.keys())
        .collect();
    days.sort();
    days.dedup();
    if days.is_empty() {
        return;
    }
    let (width, height, left, bottom) = (720.0, 200.0, 50.0, 30.0);
    let totals: Vec<u64> = days
        .iter()
        .map(|d| {
            report
                .variants
                .iter()
                .filter_map(|v| v.requests_per_day.get(*d))
                .sum()
        })
        .collect();
    let step = (width - left - 10.0) / days.len().max(2).saturating_sub(1) as f64;
    let _ = write!(
        out,
        r#"<h2>Share of requests per day</h2><svg width="{width}" height="{height}" role="img" aria-label="share of requests per day">"#
    );
    for (index, variant) in report.variants.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = days
            .iter()
            .zip(&totals)
            .enumerate()
            .map(|(i, (day, total))| {
                let share = variant.requests_per_day.get(*day).copied().unwrap_or(0) as f64
                    / (*total).max(1) as f64;
                format!(
                    "{:.1},{:.1}",
                    left + step * i as f64,
                    height - bottom - share * (height - bottom - 10.0)
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><text x="{}" y="{}" font-size="12" fill="{colour}">{}</text>"#,
            points.join(" "),
            width - 160.0,
            20.0 + 16.0 * index as f64,
            escape(&variant.name)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{left}" y="{}" font-size="11">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text></svg>"#,
        height - 8.0,
        escape(days[0]),
        width - 10.0,
        height - 8.0,
        escape(days[days.len() - 1])
    );
}

pub fn page(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>promptgate analyze: {}</title><style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}}pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}}.srm{{background:#fdd;border:2px solid #d62728;padding:1em;font-weight:bold}}</style></head><body><h1>Experiment <code>{}</code></h1>"#,
        escape(&report.experiment),
        escape(&report.experiment)
    );
    if report.srm.as_ref().is_some_and(|s| s.mismatch) {
        let _ = write!(
            out,
            r#"<p class="srm">Sample ratio mismatch: the split of units differs from the weights beyond chance. Every comparison below is suspect until the cause is found.</p>"#
        );
    }
    let _ = write!(out, "<h2>Verdicts</h2><ul>");
    for c in &report.comparisons {
        let _ = write!(out, "<li>{}</li>", escape(&c.verdict));
    }
    let _ = write!(
        out,
        "</ul><h2>Confidence intervals (difference against the baseline)</h2>"
    );
    let mut metrics: Vec<&str> = Vec::new();
    for c in &report.comparisons {
        if !metrics.contains(&c.metric.as_str()) {
            metrics.push(&c.metric);
        }
    }
    for metric in metrics {
        let rows: Vec<&Comparison> = report
            .comparisons
            .iter()
            .filter(|c| c.metric == metric)
            .collect();
        forest(&mut out, metric, &rows);
    }
    latency(&mut out, report);
    over_time(&mut out, report);
    let _ = writeln!(
        out,
        "<h2>Full report</h2><pre>{}</pre></body></html>",
        escape(&table(report))
    );
    out
}
