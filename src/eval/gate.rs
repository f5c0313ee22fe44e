//! The gate: per scorer, every variant's mean score at least `min`, and no
//! candidate more than `max_drop` below the baseline. Both variants answer
//! the same cases, so the drop is tested with paired tests: McNemar on the
//! per-case pass/fail, Wilcoxon signed-rank on the per-case scores. The gate
//! decides on the observed figures; the tests say whether a drop is more
//! than noise, which the report shows beside it.

use serde::Serialize;

use super::score::CaseScore;
use super::suite::Gate;
use promptgate_analyze::stats::paired::{McNemar, PairedCounts, mcnemar};
use promptgate_analyze::stats::rank::{WilcoxonSignedRank, wilcoxon_signed_rank};

/// One scorer's verdict on one variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub scorer: String,
    pub variant: String,
    pub baseline: bool,
    /// Mean per-case score, 0–1.
    pub mean: f64,
    /// Share of cases that passed.
    pub pass_rate: f64,
    /// The baseline's mean (absent for the baseline itself).
    pub baseline_mean: Option<f64>,
    /// `baseline_mean − mean`: positive when the variant does worse.
    pub drop: Option<f64>,
    pub min: Option<f64>,
    pub max_drop: Option<f64>,
    /// McNemar's test on per-case pass/fail against the baseline.
    pub mcnemar: Option<McNemar>,
    /// Wilcoxon signed-rank test on per-case score differences (variant − baseline).
    pub wilcoxon: Option<WilcoxonSignedRank>,
    /// The variant does worse and a paired test says so at the suite's `alpha`.
    pub significant_drop: bool,
    pub passed: bool,
    /// Why it failed, one sentence per broken rule.
    pub failures: Vec<String>,
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    values.sum::<f64>() / n as f64
}

/// Checks `scores` (one per case) against the gate, and against the
/// baseline's scores of the same cases when the variant is a candidate.
pub fn check(
    scorer: &str,
    gate: Gate,
    variant: &str,
    scores: &[CaseScore],
    baseline: Option<&[CaseScore]>,
    alpha: f64,
) -> Check {
    let average = mean(scores.iter().map(|s| s.value));
    let pass_rate = mean(scores.iter().map(|s| f64::from(u8::from(s.passed))));
    let mut failures = Vec::new();
    if let Some(min) = gate.min
        && average < min
    {
        failures.push(format!("mean score {average:.4} is below min {min}"));
    }
    let mut result = Check {
        scorer: scorer.to_owned(),
        variant: variant.to_owned(),
        baseline: baseline.is_none(),
        mean: average,
        pass_rate,
        baseline_mean: None,
        drop: None,
        min: gate.min,
        max_drop: gate.max_drop,
        mcnemar: None,
        wilcoxon: None,
        significant_drop: false,
        passed: true,
        failures: Vec::new(),
    };
    if let Some(baseline) = baseline {
        let baseline_mean = mean(baseline.iter().map(|s| s.value));
        let drop = baseline_mean - average;
        let mut counts = PairedCounts {
            both: 0,
            only_a: 0,
            only_b: 0,
            neither: 0,
        };
        for (a, b) in baseline.iter().zip(scores) {
            match (a.passed, b.passed) {
                (true, true) => counts.both += 1,
                (true, false) => counts.only_a += 1,
                (false, true) => counts.only_b += 1,
                (false, false) => counts.neither += 1,
            }
        }
        let differences: Vec<f64> = baseline
            .iter()
            .zip(scores)
            .map(|(a, b)| b.value - a.value)
            .collect();
        result.mcnemar = mcnemar(counts).ok();
        result.wilcoxon = wilcoxon_signed_rank(&differences).ok();
        let p_values = [
            result.mcnemar.map(|m| m.p_value),
            result.wilcoxon.map(|w| w.p_value),
        ];
        result.significant_drop = drop > 0.0 && p_values.into_iter().flatten().any(|p| p < alpha);
        if let Some(max_drop) = gate.max_drop
            && drop > max_drop + 1e-12
        {
            failures.push(format!(
                "drop {drop:.4} from the baseline's {baseline_mean:.4} exceeds max_drop {max_drop} ({})",
                if result.significant_drop {
                    "significant"
                } else {
                    "not significant"
                }
            ));
        }
        result.baseline_mean = Some(baseline_mean);
        result.drop = Some(drop);
    }
    result.passed = failures.is_empty();
    result.failures = failures;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(values: &[f64]) -> Vec<CaseScore> {
        values
            .iter()
            .map(|&value| CaseScore {
                value,
                passed: value >= 0.5,
                detail: None,
            })
            .collect()
    }

    #[test]
    fn a_drop_beyond_max_drop_fails_and_is_tested() {
        let baseline = scores(&[1.0; 30]);
        let mut values = vec![1.0; 30];
        for v in values.iter_mut().take(10) {
            *v = 0.0;
        }
        let candidate = scores(&values);
        let gate = Gate {
            min: Some(0.5),
            max_drop: Some(0.05),
        };
        let result = check("exact", gate, "new", &candidate, Some(&baseline), 0.05);
        assert!(!result.passed);
        assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
        assert!((result.drop.expect("drop") - 1.0 / 3.0).abs() < 1e-12);
        let m = result.mcnemar.expect("mcnemar");
        assert_eq!(m.discordant, 10);
        // Exact binomial: 2 · 0.5^10.
        assert!((m.p_value - 2.0 * 0.5f64.powi(10)).abs() < 1e-12);
        assert!(result.significant_drop);
    }

    #[test]
    fn equal_scores_pass_with_no_evidence_of_a_drop() {
        let same = scores(&[1.0, 0.0, 1.0, 1.0]);
        let gate = Gate {
            min: Some(0.5),
            max_drop: Some(0.0),
        };
        let result = check("exact", gate, "new", &same, Some(&same), 0.05);
        assert!(result.passed, "{:?}", result.failures);
        assert_eq!(result.drop, Some(0.0));
        assert_eq!(result.mcnemar.map(|m| m.p_value), Some(1.0));
        assert!(result.wilcoxon.is_none(), "no non-zero difference");
        assert!(!result.significant_drop);
    }

    #[test]
    fn min_applies_to_the_baseline_too() {
        let result = check(
            "exact",
            Gate {
                min: Some(0.9),
                max_drop: None,
            },
            "base",
            &scores(&[1.0, 0.0]),
            None,
            0.05,
        );
        assert!(!result.passed);
        assert!(result.failures[0].contains("below min 0.9"));
    }
}
