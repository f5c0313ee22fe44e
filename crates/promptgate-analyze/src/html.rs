//! `--format html`: one self-contained page (inline SVG, no script, no
//! network): the verdicts, winners first, a confidence-interval forest plot
//! per metric, latency distributions per variant, and each variant's share
//! of requests per day against its expected share (an SRM shows as points
//! away from their dashed line).
//!
//! Text whose length depends on the data (variant and metric names,
//! estimates) is HTML, which the browser wraps; the SVGs hold only the
//! graphics and short numeric axis labels, placed inside margins wide enough
//! for them, so no label can run off a chart.

use std::fmt::Write;

use super::render::{Direction, estimate_text, p_text, table};
use super::report::{Comparison, Report};

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}\
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px}\
.srm{background:#fdd;border:2px solid #d62728;padding:1em;font-weight:bold}\
.warnings{background:#fff6d6;border:1px solid #e0c050;padding:.5em 1em .5em 2em}\
.badge{display:inline-block;min-width:4.5em;text-align:center;border-radius:3px;padding:0 .4em;margin-right:.5em;color:#fff;font-size:.85em;font-weight:bold}\
.better{color:#1b7a2e}.worse{color:#c62828}.changed{color:#1f5fa8}.none{color:#666}\
.badge.better{background:#1b7a2e;color:#fff}.badge.worse{background:#c62828;color:#fff}.badge.changed{background:#1f5fa8;color:#fff}.badge.suspect{background:#7a4b00;color:#fff}\
li.significant{font-weight:bold;margin:.3em 0}li.suspect{color:#7a4b00}\
table.slices{border-collapse:collapse}table.slices td,table.slices th{padding:2px .5em;border-top:1px solid #eee;text-align:left}table.slices tr.too-small td{color:#777}\
table.forest{border-collapse:collapse}table.forest td{padding:0 .5em;vertical-align:middle}\
table.forest td.plot{padding:0;line-height:0}\
table.forest tr+tr td{border-top:1px solid #eee}\
table.forest td.name{max-width:20em;overflow-wrap:anywhere;font-size:13px}\
table.forest td.estimate{font-size:12px;max-width:20em}\
ul.legend{list-style:none;padding:0;margin:.3em 0;font-size:13px}\
ul.legend li{overflow-wrap:anywhere}\
.swatch{display:inline-block;width:1.5em;height:.3em;vertical-align:middle;margin-right:.4em}\
.note{font-size:12px;color:#555}";

/// Width of a chart's plot area and of the margins that hold its tick labels.
const PLOT_WIDTH: f64 = 360.0;
const TICK_MARGIN: f64 = 40.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number for an axis label: about three significant digits, so that a
/// half-millisecond latency does not read "0 ms".
fn short(value: f64) -> String {
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 || magnitude == 0.0 {
        0
    } else if magnitude >= 1.0 {
        2 - magnitude.log10().floor() as usize
    } else {
        (2 - magnitude.log10().floor() as i64).clamp(0, 9) as usize
    };
    trim_zeros(format!("{value:.decimals$}"))
}

/// "0.50" → "0.5", "2.00" → "2", "300" → "300".
fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Round tick values (1, 2, 2.5 or 5 × 10^k apart) covering `[low, high]`,
/// about `count` of them, each with its label: as many decimals as the
/// step needs, so that neighbouring ticks never read the same.
fn ticks(low: f64, high: f64, count: usize) -> Vec<(f64, String)> {
    let span = high - low;
    if !span.is_finite() || span <= 0.0 {
        return vec![(low, short(low))];
    }
    // The round step whose tick count comes closest to `count`.
    let rough = span / count.max(1) as f64;
    let power = 10f64.powf(rough.log10().floor());
    let off = |step: f64| (span / step - count as f64).abs();
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .min_by(|a, b| off(*a).total_cmp(&off(*b)))
        .unwrap_or(power);
    let decimals = (0..=12)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(12) as usize;
    let first = (low / step).ceil() as i64;
    let last = (high / step).floor() as i64;
    (first..=last)
        .map(|i| {
            let value = i as f64 * step;
            (value, trim_zeros(format!("{value:.decimals$}")))
        })
        .collect()
}

/// A linear map from `[low, high]` onto `[left, right]` pixels; a domain
/// narrower than `min_span` is widened to it around its centre (an interval
/// of rounding noise, ±1e-13 %, is a point at 0, not a full-width bar).
struct Scale {
    low: f64,
    high: f64,
    left: f64,
    right: f64,
}

impl Scale {
    fn new(low: f64, high: f64, min_span: f64, (left, right): (f64, f64)) -> Scale {
        let (low, high) = if high - low >= min_span {
            (low, high)
        } else {
            let centre = (low + high) / 2.0;
            (centre - min_span / 2.0, centre + min_span / 2.0)
        };
        Scale {
            low,
            high,
            left,
            right,
        }
    }

    fn at(&self, value: f64) -> f64 {
        self.left + (value - self.low) / (self.high - self.low) * (self.right - self.left)
    }
}

/// Tick marks and labels under a horizontal axis at `y`.
fn x_axis(out: &mut String, scale: &Scale, y: f64, unit: &str) {
    let _ = write!(
        out,
        r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#999"/>"##,
        scale.left, scale.right
    );
    for (tick, label) in ticks(scale.low, scale.high, 5) {
        let x = scale.at(tick);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{y}" x2="{x:.1}" y2="{}" stroke="#999"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{label}{unit}</text>"##,
            y + 4.0,
            y + 15.0,
        );
    }
}

/// Tick marks, labels and grid lines beside a vertical axis at `x`, for
/// shares (0.25 → "25%").
fn y_axis(out: &mut String, scale: &Scale, x: f64, grid_to: f64) {
    let _ = write!(
        out,
        r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#999"/>"##,
        scale.left, scale.right
    );
    // Shares are labelled in percent: the ticks are computed in percent too.
    for (percent, label) in ticks(scale.low * 100.0, scale.high * 100.0, 4) {
        let y = scale.at(percent / 100.0);
        let _ = write!(
            out,
            r##"<line x1="{}" y1="{y:.1}" x2="{grid_to}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{label}%</text>"##,
            x - 4.0,
            x - 6.0,
            y + 4.0,
        );
    }
}

fn legend(out: &mut String, report: &Report) {
    let _ = write!(out, r#"<ul class="legend">"#);
    for (index, variant) in report.variants.iter().enumerate() {
        let _ = write!(
            out,
            r#"<li><span class="swatch" style="background:{}"></span>{}</li>"#,
            COLOURS[index % COLOURS.len()],
            escape(&variant.name)
        );
    }
    let _ = write!(out, "</ul>");
}

/// The class of a comparison's verdict and its interval's colour.
fn class(c: &Comparison) -> &'static str {
    match Direction::of(c) {
        Some(Direction::Better) => "better",
        Some(Direction::Worse) => "worse",
        Some(Direction::Higher | Direction::Lower) => "changed",
        None => "none",
    }
}

fn colour(class: &str) -> &'static str {
    match class {
        "better" => "#1b7a2e",
        "worse" => "#c62828",
        "changed" => "#1f5fa8",
        _ => "#888",
    }
}

/// Winners and losers first, each marked, then the comparisons that found
/// nothing.
fn verdicts(out: &mut String, report: &Report) {
    let (found, nothing): (Vec<&Comparison>, Vec<&Comparison>) =
        report.comparisons.iter().partition(|c| c.significant);
    let item = |out: &mut String, c: &Comparison| {
        let class = class(c);
        let badge = match class {
            "none" => String::new(),
            word => format!(r#"<span class="badge {word}">{word}</span>"#),
        };
        let suspect = c.suspect.map_or_else(String::new, |_| {
            r#"<span class="badge suspect">suspect</span>"#.to_owned()
        });
        let significant = if c.significant { " significant" } else { "" };
        let suspected = if c.suspect.is_some() { " suspect" } else { "" };
        let _ = write!(
            out,
            r#"<li class="{class}{significant}{suspected}">{suspect}{badge}{}</li>"#,
            escape(&c.verdict)
        );
    };
    if !found.is_empty() {
        let _ = write!(out, "<h3>Significant differences</h3><ul>");
        found.into_iter().for_each(|c| item(out, c));
        let _ = write!(out, "</ul>");
    }
    if !nothing.is_empty() {
        let _ = write!(out, "<h3>No significant difference</h3><ul>");
        nothing.into_iter().for_each(|c| item(out, c));
        let _ = write!(out, "</ul>");
    }
}

/// `--by`: one row per slice and comparison, with its verdict.
fn slice_table(out: &mut String, slices: &crate::slices::Slices) {
    let _ = write!(
        out,
        r#"<h2>By <code>{}</code> ({})</h2><table class="slices"><tr><th>slice</th><th>requests</th><th>metric</th><th>variant</th><th>estimate</th><th>p (Holm)</th><th>verdict</th></tr>"#,
        escape(&slices.by),
        escape(slices.correction)
    );
    for slice in &slices.slices {
        let value = escape(&slice.value);
        if let Some(note) = &slice.too_small {
            let _ = write!(
                out,
                r#"<tr class="too-small"><td>{value}</td><td>{}</td><td colspan="5">{}</td></tr>"#,
                slice.requests,
                escape(note)
            );
        }
        for c in &slice.comparisons {
            let significant = if c.significant { " significant" } else { "" };
            let _ = write!(
                out,
                r#"<tr class="{}{significant}"><td>{value}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                class(c),
                slice.requests,
                escape(&c.metric),
                escape(&c.variant),
                escape(&estimate_text(c)),
                p_text(c.p_adjusted),
                escape(&c.verdict)
            );
        }
    }
    let _ = write!(out, "</table>");
}

/// The interval a comparison is plotted on: relative lift in % when there
/// is one.
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

/// One row per comparison: names, the interval on a shared scale with the
/// zero line, and the estimate in the words of the verdict.
fn forest(out: &mut String, metric: &str, rows: &[&Comparison]) {
    let row_height = 24.0;
    let (mut low, mut high) = (0.0f64, 0.0f64);
    for c in rows {
        let (_, l, h, _) = plotted(c);
        low = low.min(l);
        high = high.max(h);
    }
    let pad = (high - low) * 0.05;
    let unit = rows.first().map_or("", |c| plotted(c).3);
    let width = PLOT_WIDTH + 2.0 * TICK_MARGIN;
    // The text gives one decimal of a percentage, four of a difference: a
    // narrower interval would be drawn at a precision nobody can read.
    let min_span = if unit == "%" { 1.0 } else { 1e-3 };
    let scale = Scale::new(
        low - pad,
        high + pad,
        min_span,
        (TICK_MARGIN, width - TICK_MARGIN),
    );
    let zero = scale.at(0.0);
    let what = if unit == "%" {
        "relative difference, %"
    } else {
        "difference"
    };
    let _ = write!(
        out,
        r#"<h3>{}</h3><table class="forest" aria-label="confidence intervals for {}">"#,
        escape(metric),
        escape(metric)
    );
    for c in rows {
        let (point, l, h, _) = plotted(c);
        let colour = colour(class(c));
        let y = row_height / 2.0;
        let _ = write!(
            out,
            r##"<tr><td class="name">{} vs {}</td><td class="plot"><svg width="{width}" height="{row_height}" role="img"><line x1="{zero:.1}" y1="0" x2="{zero:.1}" y2="{row_height}" stroke="#666" stroke-dasharray="4"/><line x1="{:.1}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{colour}" stroke-width="2"/><circle cx="{:.1}" cy="{y}" r="4" fill="{colour}"/></svg></td><td class="estimate {}">{}</td></tr>"##,
            escape(&c.variant),
            escape(&c.baseline),
            scale.at(l),
            scale.at(h),
            scale.at(point),
            class(c),
            escape(&estimate_text(c))
        );
    }
    let _ = write!(
        out,
        r#"<tr><td class="name note">{what}</td><td class="plot"><svg width="{width}" height="22" role="img">"#
    );
    x_axis(out, &scale, 2.0, unit);
    let _ = write!(out, "</svg></td><td></td></tr></table>");
}

fn latency(out: &mut String, report: &Report) {
    let bins = &report.latency_bins_ms;
    if bins.len() < 2 {
        return;
    }
    let (left, top, bottom) = (56.0, 10.0, 44.0);
    let width = left + PLOT_WIDTH * 1.6 + TICK_MARGIN;
    let height = 240.0;
    let n = bins.len() - 1;
    let max = report
        .variants
        .iter()
        .flat_map(|v| v.latency_histogram.iter().copied())
        .fold(0.0f64, f64::max);
    let x = Scale::new(
        bins[0],
        bins[n],
        (bins[0].abs() * 0.2).max(0.01),
        (left, width - TICK_MARGIN),
    );
    let y = Scale::new(0.0, max, 0.01, (height - bottom, top));
    let _ = write!(
        out,
        r#"<h2>Latency distribution (successful requests)</h2><svg width="{width}" height="{height}" role="img" aria-label="latency histograms">"#
    );
    y_axis(out, &y, left, width - TICK_MARGIN);
    x_axis(out, &x, height - bottom, "");
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">latency, ms</text><text transform="translate(12 {:.1}) rotate(-90)" font-size="11" text-anchor="middle">share of requests</text>"#,
        (left + width - TICK_MARGIN) / 2.0,
        height - 6.0,
        (top + height - bottom) / 2.0
    );
    for (index, variant) in report.variants.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = variant
            .latency_histogram
            .iter()
            .zip(bins.windows(2))
            .map(|(share, edges)| {
                format!(
                    "{:.1},{:.1}",
                    x.at((edges[0] + edges[1]) / 2.0),
                    y.at(*share)
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
    }
    let _ = write!(out, "</svg>");
    legend(out, report);
    let _ = write!(
        out,
        r#"<p class="note">{n} bins from the fastest request to the 99th percentile ({} ms); the last bin also holds every slower request.</p>"#,
        short(bins[n])
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
    let (left, top, bottom) = (56.0, 10.0, 30.0);
    let width = left + PLOT_WIDTH * 1.6 + TICK_MARGIN;
    let height = 220.0;
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
    // One day sits in the middle; several span the plot area.
    let plot = (left + TICK_MARGIN, width - 2.0 * TICK_MARGIN);
    let day_x = |i: usize| match days.len() {
        1 => (plot.0 + plot.1) / 2.0,
        n => plot.0 + (plot.1 - plot.0) * i as f64 / (n - 1) as f64,
    };
    let y = Scale::new(0.0, 1.0, 1.0, (height - bottom, top));
    let _ = write!(
        out,
        r#"<h2>Share of requests per day</h2><svg width="{width}" height="{height}" role="img" aria-label="share of requests per day">"#
    );
    y_axis(out, &y, left, width - TICK_MARGIN);
    // Date labels (about 70 px each) thinned out so that they never touch.
    let every = ((days.len() as f64 * 80.0) / (plot.1 - plot.0))
        .ceil()
        .max(1.0) as usize;
    for (i, day) in days.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
                day_x(i),
                height - bottom + 16.0,
                escape(day)
            );
        }
    }
    for (index, variant) in report.variants.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        if let Some(expected) = report
            .srm
            .as_ref()
            .and_then(|s| s.expected_share.get(&variant.name))
        {
            let _ = write!(
                out,
                r#"<line x1="{left}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{colour}" stroke-dasharray="6 4" stroke-width="1"/>"#,
                y.at(*expected),
                width - TICK_MARGIN,
                y.at(*expected)
            );
        }
        let points: Vec<(f64, f64)> = days
            .iter()
            .zip(&totals)
            .enumerate()
            .map(|(i, (day, total))| {
                let share = variant.requests_per_day.get(*day).copied().unwrap_or(0) as f64
                    / (*total).max(1) as f64;
                (day_x(i), y.at(share))
            })
            .collect();
        let line: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        // Earlier variants get larger points: equal shares show as rings
        // rather than hiding each other.
        let radius = 3.0 + 1.5 * (report.variants.len() - 1 - index) as f64;
        for (x, y) in points {
            let _ = write!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="{radius}" fill="{colour}"/>"#
            );
        }
    }
    let _ = write!(out, "</svg>");
    legend(out, report);
    if report.srm.is_some() {
        let _ = write!(
            out,
            r#"<p class="note">Dashed: each variant's expected share (the sample-ratio check's weights). Points far from their line on many days suggest a sample ratio mismatch.</p>"#
        );
    }
}

pub fn page(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>promptgate analyze: {}</title><style>{STYLE}</style></head><body><h1>Experiment <code>{}</code></h1>"#,
        escape(&report.experiment),
        escape(&report.experiment)
    );
    let mismatch = report.srm.as_ref().is_some_and(|s| s.mismatch);
    if let Some(srm) = report.srm.as_ref().filter(|s| s.mismatch) {
        let _ = write!(
            out,
            r#"<p class="srm">Sample ratio mismatch (p = {}): the split of units differs from the weights beyond chance. Every comparison below is suspect until the cause is found.</p>"#,
            p_text(srm.p_value)
        );
    }
    // The mismatch's own warning is the banner above.
    let warnings = &report.warnings[usize::from(mismatch).min(report.warnings.len())..];
    if !warnings.is_empty() {
        let _ = write!(out, r#"<ul class="warnings">"#);
        for warning in warnings {
            let _ = write!(out, "<li>{}</li>", escape(warning));
        }
        let _ = write!(out, "</ul>");
    }
    let _ = write!(out, "<h2>Verdicts</h2>");
    verdicts(&mut out, report);
    if let Some(slices) = &report.slices {
        slice_table(&mut out, slices);
    }
    let _ = write!(
        out,
        "<h2>Confidence intervals (difference against the baseline)</h2>"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers_keep_three_significant_digits() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(0.31), "0.31");
        assert_eq!(short(0.0004567), "0.000457");
        assert_eq!(short(4.25), "4.25");
        assert_eq!(short(12.34), "12.3");
        assert_eq!(short(312.4), "312");
        assert_eq!(short(-2.5), "-2.5");
    }

    fn labels(ticks: Vec<(f64, String)>) -> Vec<String> {
        ticks.into_iter().map(|(_, label)| label).collect()
    }

    #[test]
    fn ticks_are_round_inside_the_range_and_read_differently() {
        assert_eq!(
            labels(ticks(0.0, 1.0, 4)),
            ["0", "0.25", "0.5", "0.75", "1"]
        );
        assert_eq!(labels(ticks(-3.2, 7.9, 5)), ["-2", "0", "2", "4", "6"]);
        assert_eq!(labels(ticks(5.0, 5.0, 5)), ["5"]);
        assert_eq!(
            labels(ticks(0.21, 0.48, 5)),
            ["0.25", "0.3", "0.35", "0.4", "0.45"]
        );
        assert_eq!(
            labels(ticks(0.0, 6168.0, 5)),
            ["0", "1000", "2000", "3000", "4000", "5000", "6000"]
        );
    }

    #[test]
    fn a_span_of_rounding_noise_is_widened() {
        let noise = Scale::new(-1e-13, 1e-13, 1.0, (0.0, 100.0));
        assert_eq!((noise.low, noise.high), (-0.5, 0.5));
        assert_eq!(noise.at(0.0), 50.0);
        let real = Scale::new(-2.5, 7.5, 1.0, (0.0, 100.0));
        assert_eq!((real.low, real.high), (-2.5, 7.5));
        assert_eq!(real.at(0.0), 25.0);
    }
}
