//! Paired binary outcomes: both variants judged on the same inputs (e.g. an
//! offline replay of one prompt set through two prompts).

use serde::{Deserialize, Serialize};

use super::{Result, StatsError, add_counts, chi_square_sf};

/// Outcomes of `n` pairs, each pair being one input run through `a` and `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedCounts {
    /// Pairs where both succeeded.
    pub both: u64,
    /// Pairs where only `a` succeeded.
    pub only_a: u64,
    /// Pairs where only `b` succeeded.
    pub only_b: u64,
    /// Pairs where both failed.
    pub neither: u64,
}

/// Which McNemar variant produced the p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum McNemarMethod {
    /// Exact binomial test on the discordant pairs (fewer than 25 of them).
    ExactBinomial,
    /// χ² with continuity correction.
    ChiSquare,
}

/// Result of McNemar's test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct McNemar {
    pub rate_a: f64,
    pub rate_b: f64,
    /// `rate_b − rate_a = (only_b − only_a) / n`.
    pub difference: f64,
    /// `only_a + only_b`: the only pairs that carry evidence.
    pub discordant: u64,
    /// `min(only_a, only_b)` for the exact test, the corrected χ² otherwise.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    pub method: McNemarMethod,
}

/// Discordant-pair count below which the exact binomial test is used, the
/// usual rule for when the χ² approximation becomes unreliable.
const EXACT_BELOW: u64 = 25;

/// McNemar's (1947) test that `a` and `b` succeed equally often on paired data.
///
/// Only discordant pairs matter: under the null, `only_b` out of
/// `d = only_a + only_b` is Binomial(d, ½).
/// - `d < 25`: exact, `p = min(1, 2·P(X ≤ min(only_a, only_b)))`, summed in
///   exact integer arithmetic (2^24 fits a double).
/// - otherwise: `χ² = (|only_a − only_b| − 1)² / d` on 1 degree of freedom.
///
/// Matches `statsmodels.stats.contingency_tables.mcnemar([[both, only_a],
/// [only_b, neither]], exact=(d < 25), correction=True)`, with one
/// deliberate difference: when `only_a == only_b` in the χ² branch the
/// correction is clamped at 0 (χ² = 0, p = 1), where statsmodels computes
/// `(0 − 1)²/d` and reports p < 1 for perfectly balanced pairs.
///
/// With no discordant pairs there is no evidence either way: p = 1.
/// Errors: `NotEnoughData` if there are no pairs, `Overflow` if the counts
/// do not fit in a u64 sum.
pub fn mcnemar(counts: PairedCounts) -> Result<McNemar> {
    let PairedCounts {
        both,
        only_a,
        only_b,
        neither,
    } = counts;
    let discordant = add_counts(only_a, only_b)?;
    let pairs = add_counts(add_counts(both, neither)?, discordant)? as f64;
    if pairs == 0.0 {
        return Err(StatsError::NotEnoughData("no pairs"));
    }
    let (statistic, p_value, method) = if discordant < EXACT_BELOW {
        let smaller = only_a.min(only_b);
        // C(d, i) built up incrementally stays an exact integer for d < 25.
        let mut binomial = 1.0;
        let mut tail = 0.0;
        for i in 0..=smaller {
            tail += binomial;
            binomial = binomial * (discordant - i) as f64 / (i + 1) as f64;
        }
        let p = (2.0 * tail / 2f64.powi(discordant as i32)).min(1.0);
        (smaller as f64, p, McNemarMethod::ExactBinomial)
    } else {
        let gap = only_a.abs_diff(only_b) as f64;
        let chi2 = (gap - 1.0).max(0.0).powi(2) / discordant as f64;
        (chi2, chi_square_sf(chi2, 1.0)?, McNemarMethod::ChiSquare)
    };
    let (rate_a, rate_b) = (
        (both + only_a) as f64 / pairs,
        (both + only_b) as f64 / pairs,
    );
    Ok(McNemar {
        rate_a,
        rate_b,
        difference: (only_b as f64 - only_a as f64) / pairs,
        discordant,
        statistic,
        p_value,
        method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(only_a: u64, only_b: u64) -> PairedCounts {
        PairedCounts {
            both: 10,
            only_a,
            only_b,
            neither: 10,
        }
    }

    #[test]
    fn no_pairs_is_an_error_and_no_discordance_is_p_one() {
        let empty = PairedCounts {
            both: 0,
            only_a: 0,
            only_b: 0,
            neither: 0,
        };
        assert!(matches!(mcnemar(empty), Err(StatsError::NotEnoughData(_))));
        assert_eq!(mcnemar(pairs(0, 0)).unwrap().p_value, 1.0);
    }

    #[test]
    fn balanced_discordance_in_the_chi_square_branch_is_p_one() {
        let r = mcnemar(pairs(30, 30)).unwrap();
        assert_eq!(r.method, McNemarMethod::ChiSquare);
        assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
    }

    #[test]
    fn overflowing_counts_are_an_error() {
        assert_eq!(mcnemar(pairs(u64::MAX, 1)), Err(StatsError::Overflow));
    }
}
