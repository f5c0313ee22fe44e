//! The drift report as a table (terminal) or an HTML page with baseline vs
//! current histograms, in the style of `analyze/html.rs`.

use std::fmt::Write;

use super::{DriftReport, Verdict};
use crate::render::p_text;

fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Stable => "stable",
        Verdict::Moderate => "moderate",
        Verdict::Drift => "DRIFT",
    }
}

pub fn table(report: &DriftReport) -> String {
    let mut out = String::new();
    let window = |w: &super::WindowInfo| {
        format!(
            "{} … {} ({} records)",
            w.from.as_deref().unwrap_or("start"),
            w.to.as_deref().unwrap_or("end"),
            w.records
        )
    };
    let _ = writeln!(out, "Drift of {} in {}", report.scope, report.source);
    let _ = writeln!(
        out,
        "baseline {}\ncurrent  {}",
        window(&report.baseline),
        window(&report.current)
    );
    let _ = writeln!(
        out,
        "α = {} over {} signals (p < {:.2e} per signal)\n",
        report.alpha,
        report.signals.len(),
        report.p_threshold
    );
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>9} {:>8} {:>10} {:>10}  verdict",
        "signal", "baseline", "current", "PSI", "statistic", "p"
    );
    for s in &report.signals {
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>9} {:>8.4} {:>10.4} {:>10}  {}",
            s.name,
            s.baseline_n,
            s.current_n,
            s.psi,
            s.statistic,
            p_text(s.p_value),
            verdict_text(s.verdict)
        );
    }
    let _ = writeln!(
        out,
        "\n{}",
        if report.drift {
            "drift found (exit status 1)"
        } else {
            "no drift"
        }
    );
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Paired bars per bin: baseline grey, current blue, heights to scale.
fn histogram(bins: &[String], baseline: &[f64], current: &[f64]) -> String {
    let top = baseline
        .iter()
        .chain(current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let (width, height, bar) = (bins.len() as f64 * 30.0 + 10.0, 120.0, 12.0);
    let mut svg = format!(r#"<svg width="{width}" height="{height}" role="img">"#);
    for (i, label) in bins.iter().enumerate() {
        let x = 5.0 + i as f64 * 30.0;
        for (offset, share, colour) in [(0.0, baseline[i], "#999"), (bar, current[i], "#36c")] {
            let h = share / top * (height - 10.0);
            let _ = write!(
                svg,
                r#"<rect x="{}" y="{}" width="{bar}" height="{h}" fill="{colour}"><title>{}: {:.1}%</title></rect>"#,
                x + offset,
                height - h,
                escape(label),
                share * 100.0
            );
        }
    }
    svg + "</svg>"
}

pub fn page(report: &DriftReport) -> String {
    let mut body = String::new();
    for s in &report.signals {
        let _ = write!(
            body,
            "<section><h2>{} <small>{}</small></h2><p>PSI {:.4}, {} {:.4}, p = {}, n = {} / {}</p>{}</section>",
            escape(&s.name),
            verdict_text(s.verdict),
            s.psi,
            s.test,
            s.statistic,
            p_text(s.p_value),
            s.baseline_n,
            s.current_n,
            histogram(&s.bins, &s.baseline_shares, &s.current_shares)
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Drift: {scope}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}}small{{color:#666}}</style></head>\
         <body><h1>Drift: {scope}</h1><p>{verdict}. Baseline in grey, current in blue.</p>{body}</body></html>\n",
        scope = escape(&report.scope),
        verdict = if report.drift {
            "Drift found"
        } else {
            "No drift"
        },
    )
}
