//! The judge's report as a table for a terminal.

use std::fmt::Write;

use super::JudgeReport;

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn number(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

pub fn table(report: &JudgeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "judge `{}` ({}, metric {}) on experiment `{}`, judge model {}",
        report.rubric,
        serde_json::to_value(report.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        report.metric,
        report.experiment,
        report.judge_model
    );
    let _ = writeln!(
        out,
        "items {}: judged {}, already judged {}, sampled out {}, deferred {}{}, errors {}; {} unusable answers in {} records",
        report.items,
        report.judged,
        report.already_judged,
        report.sampled_out,
        report.deferred,
        if report.stopped_by_budget {
            " (budget reached)"
        } else {
            ""
        },
        report.errors,
        report.unusable_answers,
        report.records_read
    );
    let _ = writeln!(
        out,
        "cost: estimated {} USD, spent {} USD; {} feedback events written",
        number(report.estimated_usd, 6),
        number(report.spent_usd, 6),
        report.feedback_written
    );
    for (pair, tally) in &report.pairwise {
        let _ = writeln!(
            out,
            "  {pair}: shadow wins {}, served wins {}, ties {}, position consistency {}",
            tally.wins,
            tally.losses,
            tally.ties,
            percent(tally.consistency_rate())
        );
    }
    if !report.pairwise.is_empty() {
        let _ = writeln!(
            out,
            "position consistency {}",
            percent(report.position_consistency)
        );
    }
    for (variant, scores) in &report.pointwise {
        let _ = writeln!(
            out,
            "  {variant}: {} judged, mean score {}, pass rate {}",
            scores.judged,
            number(scores.mean_score, 2),
            percent(scores.pass_rate)
        );
    }
    let v = &report.verbosity;
    let _ = writeln!(
        out,
        "verbosity: preferred answers {} chars on average, others {} ({} decided)",
        number(v.winner_mean_chars, 1),
        number(v.loser_mean_chars, 1),
        v.decided
    );
    if let Some(c) = &report.calibration {
        let _ = writeln!(
            out,
            "calibration: {} items, agreement {}, Cohen's kappa {} ({} labels without a verdict)",
            c.items,
            percent(c.agreement),
            number(c.cohen_kappa, 3),
            c.unmatched_labels
        );
        for (judge, humans) in &c.confusion {
            for (human, n) in humans {
                let _ = writeln!(out, "  judge {judge} / human {human}: {n}");
            }
        }
    }
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}
