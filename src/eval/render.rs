//! The terminal table: variants, the gate per scorer (observed drop and the
//! paired tests' p-values), pairwise judge results, failing cases.

use std::fmt::Write;

use super::report::Report;
use promptgate_analyze::render::p_text;

/// Failing cases listed in the table (all of them are in JSON, HTML, JUnit).
const FAILURES_SHOWN: usize = 20;

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let verdict = if report.passed {
        "GATE PASSED"
    } else {
        "GATE FAILED"
    };
    let _ = writeln!(
        out,
        "promptgate eval — suite `{}` on experiment `{}`: {} cases × {} repeat(s), baseline `{}` — {verdict}\n",
        report.suite, report.experiment, report.cases, report.repeat, report.baseline
    );
    let _ = writeln!(
        out,
        "{:<20} {:<20} {:>6} {:>6} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "variant",
        "model",
        "calls",
        "failed",
        "cached",
        "p50 ms",
        "p95 ms",
        "tokens in",
        "tokens out",
        "cost usd"
    );
    for v in &report.variants {
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:>6} {:>6} {:>6} {:>9} {:>9} {:>10} {:>10} {:>10}",
            v.name,
            v.model,
            v.calls,
            v.failed_calls,
            v.cached_calls,
            cell(v.latency_ms.map(|l| l.p50), 1),
            cell(v.latency_ms.map(|l| l.p95), 1),
            v.input_tokens,
            v.output_tokens,
            cell(v.cost_usd, 6),
        );
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:<20} {:>7} {:>7} {:>8} {:>11} {:>11}  gate",
        "scorer", "variant", "mean", "pass", "drop", "McNemar p", "Wilcoxon p"
    );
    for check in &report.gate {
        let drop = match check.drop {
            Some(drop) => format!("{drop:.3}{}", if check.significant_drop { "*" } else { "" }),
            None => "–".to_owned(),
        };
        let gate = if check.passed {
            "ok".to_owned()
        } else {
            format!("FAIL: {}", check.failures.join("; "))
        };
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:>7.3} {:>6.1}% {:>8} {:>11} {:>11}  {gate}",
            check.scorer,
            check.variant,
            check.mean,
            check.pass_rate * 100.0,
            drop,
            check
                .mcnemar
                .map_or_else(|| "–".to_owned(), |m| p_text(m.p_value)),
            check
                .wilcoxon
                .map_or_else(|| "–".to_owned(), |w| p_text(w.p_value)),
        );
    }
    let _ = writeln!(
        out,
        "(drop = baseline mean − variant mean; * = significant at α = {})",
        report.alpha
    );
    for pair in &report.pairwise {
        let _ = writeln!(
            out,
            "\njudge `{}`: `{}` vs `{}`: {} wins, {} losses, {} ties, {} not compared; position consistency {}",
            pair.judge_model,
            pair.candidate,
            pair.baseline,
            pair.tally.wins,
            pair.tally.losses,
            pair.tally.ties,
            pair.tally.errors,
            pair.consistency_rate
                .map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
        );
    }
    let failing = failing_cases(report);
    if !failing.is_empty() {
        let _ = writeln!(out, "\nfailing cases ({}):", failing.len());
        for (id, variant, scorer, detail) in failing.iter().take(FAILURES_SHOWN) {
            let _ = writeln!(out, "  {id} [{variant}] {scorer}: {detail}");
        }
        if failing.len() > FAILURES_SHOWN {
            let _ = writeln!(
                out,
                "  … {} more in the JSON, HTML or JUnit report",
                failing.len() - FAILURES_SHOWN
            );
        }
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "\nwarning: {warning}");
    }
    out
}

/// (case, variant, scorer, why) for every failed score.
pub fn failing_cases(report: &Report) -> Vec<(&str, &str, &str, String)> {
    let mut failing = Vec::new();
    for case in &report.results {
        for variant in &case.variants {
            for (scorer, score) in report.scorers.iter().zip(&variant.scores) {
                if !score.passed {
                    failing.push((
                        case.id.as_str(),
                        variant.variant.as_str(),
                        scorer.as_str(),
                        score
                            .detail
                            .clone()
                            .unwrap_or_else(|| format!("score {:.3}", score.value)),
                    ));
                }
            }
        }
    }
    failing
}
