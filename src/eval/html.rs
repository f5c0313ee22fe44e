//! `--html`: one self-contained page (no script, no network): the verdict,
//! the variants, each scorer's comparison with the baseline (observed drop,
//! paired tests, gate), the judge's pairwise results, the failing cases side
//! by side with the expected output and every variant's answer, and slices
//! by tag.

use std::fmt::Write;

use super::junit::xml as escape;
use super::report::Report;
use promptgate_analyze::render::p_text;

/// Failing cases shown side by side (the JSON report has all of them).
const CASES_SHOWN: usize = 200;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top;font-size:13px}\
th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{display:inline-block;padding:.2em .8em;border-radius:4px;color:#fff;font-weight:bold}\
.passed{background:#1b7a2e}.failed{background:#c62828}.fail{color:#c62828;font-weight:bold}.ok{color:#1b7a2e}\
.bar{display:inline-block;height:.7em;background:#1f77b4;vertical-align:middle;margin-right:.4em}\
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;font-size:12px;max-width:28em}\
.warnings{background:#fff6d6;border:1px solid #e0c050;padding:.5em 1em .5em 2em}";

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

pub fn page(report: &Report) -> String {
    let mut out = String::new();
    let (class, verdict) = if report.passed {
        ("passed", "gate passed")
    } else {
        ("failed", "gate failed")
    };
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>promptgate eval: {}</title><style>{STYLE}</style></head><body>\
         <h1>Suite <code>{}</code> <span class=\"verdict {class}\">{verdict}</span></h1>\
         <p>Experiment <code>{}</code>, {} cases × {} repeat(s) at temperature {}, baseline <code>{}</code>, config version <code>{}</code>, α = {}.</p>",
        escape(&report.suite),
        escape(&report.suite),
        escape(&report.experiment),
        report.cases,
        report.repeat,
        report.temperature,
        escape(&report.baseline),
        escape(&report.config_version),
        report.alpha
    );
    if !report.warnings.is_empty() {
        out.push_str("<ul class=\"warnings\">");
        for warning in &report.warnings {
            let _ = write!(out, "<li>{}</li>", escape(warning));
        }
        out.push_str("</ul>");
    }
    variants(&mut out, report);
    scorers(&mut out, report);
    pairwise(&mut out, report);
    failing(&mut out, report);
    slices(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

fn variants(out: &mut String, report: &Report) {
    out.push_str("<h2>Variants</h2><table><tr><th>variant</th><th>model</th><th>calls</th><th>failed</th><th>cached</th><th>latency p50 / p95 ms</th><th>tokens in / out</th><th>cost USD</th></tr>");
    for v in &report.variants {
        let _ = write!(
            out,
            "<tr><td>{}{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{} / {}</td><td class=num>{} / {}</td><td class=num>{}</td></tr>",
            escape(&v.name),
            if v.baseline { " (baseline)" } else { "" },
            escape(&v.model),
            v.calls,
            v.failed_calls,
            v.cached_calls,
            opt(v.latency_ms.map(|l| l.p50), 1),
            opt(v.latency_ms.map(|l| l.p95), 1),
            v.input_tokens,
            v.output_tokens,
            opt(v.cost_usd, 6)
        );
    }
    out.push_str("</table>");
}

fn scorers(out: &mut String, report: &Report) {
    out.push_str("<h2>Scorers and the gate</h2><p>Drop = baseline mean − variant mean. McNemar tests the per-case pass/fail, Wilcoxon signed-rank the per-case scores, both paired on the same cases.</p>\
        <table><tr><th>scorer</th><th>variant</th><th>mean</th><th>pass rate</th><th>drop</th><th>McNemar p</th><th>Wilcoxon p</th><th>min / max_drop</th><th>gate</th></tr>");
    for check in &report.gate {
        let gate = if check.passed {
            "<span class=ok>ok</span>".to_owned()
        } else {
            format!(
                "<span class=fail>FAIL</span>: {}",
                escape(&check.failures.join("; "))
            )
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=num><span class=bar style=\"width:{:.0}px\"></span>{:.3}</td><td class=num>{:.1}%</td><td class=num>{}{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{} / {}</td><td>{gate}</td></tr>",
            escape(&check.scorer),
            escape(&check.variant),
            check.mean.clamp(0.0, 1.0) * 80.0,
            check.mean,
            check.pass_rate * 100.0,
            opt(check.drop, 3),
            if check.significant_drop {
                " (significant)"
            } else {
                ""
            },
            check
                .mcnemar
                .map_or_else(|| "–".to_owned(), |m| p_text(m.p_value)),
            check
                .wilcoxon
                .map_or_else(|| "–".to_owned(), |w| p_text(w.p_value)),
            opt(check.min, 2),
            opt(check.max_drop, 2)
        );
    }
    out.push_str("</table>");
}

fn pairwise(out: &mut String, report: &Report) {
    if report.pairwise.is_empty() {
        return;
    }
    out.push_str("<h2>Judge: pairwise against the baseline</h2><p>Each pair is judged in both orders; a win counts only when both orders agree, otherwise it is a tie.</p><table><tr><th>candidate</th><th>judge</th><th>wins</th><th>losses</th><th>ties</th><th>not compared</th><th>position consistency</th></tr>");
    for pair in &report.pairwise {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
            escape(&pair.candidate),
            escape(&pair.judge_model),
            pair.tally.wins,
            pair.tally.losses,
            pair.tally.ties,
            pair.tally.errors,
            pair.consistency_rate
                .map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
        );
    }
    out.push_str("</table>");
}

fn failing(out: &mut String, report: &Report) {
    let failing: Vec<_> = report
        .results
        .iter()
        .filter(|case| {
            case.variants
                .iter()
                .any(|v| v.scores.iter().any(|s| !s.passed))
        })
        .collect();
    let _ = write!(out, "<h2>Failing cases ({})</h2>", failing.len());
    if failing.is_empty() {
        out.push_str("<p>None.</p>");
        return;
    }
    out.push_str("<table><tr><th>case</th><th>expected</th>");
    for v in &report.variants {
        let _ = write!(out, "<th>{}</th>", escape(&v.name));
    }
    out.push_str("</tr>");
    for case in failing.iter().take(CASES_SHOWN) {
        let expected = case
            .expected
            .as_ref()
            .map_or_else(String::new, |e| match e {
                serde_json::Value::String(text) => text.clone(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            });
        let _ = write!(
            out,
            "<tr><td>{} <small>(line {})</small></td><td><pre>{}</pre></td>",
            escape(&case.id),
            case.line,
            escape(&expected)
        );
        for variant in &case.variants {
            let text = match (&variant.answer, &variant.error) {
                (Some(answer), _) => answer.clone(),
                (None, Some(error)) => format!("(no answer: {error})"),
                (None, None) => String::new(),
            };
            let _ = write!(out, "<td><pre>{}</pre>", escape(&text));
            for (scorer, score) in report.scorers.iter().zip(&variant.scores) {
                if !score.passed {
                    let _ = write!(
                        out,
                        "<div class=fail>✗ {}: {}</div>",
                        escape(scorer),
                        escape(score.detail.as_deref().unwrap_or("failed"))
                    );
                }
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    if failing.len() > CASES_SHOWN {
        let _ = write!(
            out,
            "<p>… and {} more in the JSON report.</p>",
            failing.len() - CASES_SHOWN
        );
    }
}

fn slices(out: &mut String, report: &Report) {
    if report.slices.is_empty() {
        return;
    }
    out.push_str("<h2>Slices by tag</h2><table><tr><th>tag</th><th>value</th><th>scorer</th><th>variant</th><th>cases</th><th>mean</th><th>pass rate</th></tr>");
    for slice in &report.slices {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{:.3}</td><td class=num>{:.1}%</td></tr>",
            escape(&slice.tag),
            escape(&slice.value),
            escape(&slice.scorer),
            escape(&slice.variant),
            slice.cases,
            slice.mean,
            slice.pass_rate * 100.0
        );
    }
    out.push_str("</table>");
}
