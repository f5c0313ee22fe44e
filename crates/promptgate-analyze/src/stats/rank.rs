//! Rank tests for skewed metrics (latency, token counts) where a mean is
//! dominated by the tail: Mann–Whitney U for two independent groups and the
//! Wilcoxon signed-rank test for paired differences.

use serde::Serialize;

use super::{Result, StatsError, check_all_finite, normal_two_sided_p};

/// Average (mid-)ranks, 1-based, of `values` (all finite), and the tie term
/// `Σ(t³ − t)` over groups of `t` equal values.
fn average_ranks(values: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_unstable_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < order.len() {
        let value = values[order[start]];
        // `==` rather than `total_cmp` so that −0.0 and 0.0 tie, as in scipy.
        let end = start + order[start..].partition_point(|&i| values[i] == value);
        let t = (end - start) as f64;
        // Positions start+1 ..= end share their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        tie_term += t * t * t - t;
        start = end;
    }
    (ranks, tie_term)
}

/// Result of the Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    /// `U` of sample `a`: pairs `(x_a, x_b)` with `x_a > x_b`, ties counting ½
    /// (scipy's `statistic` for `mannwhitneyu(a, b)`).
    pub u_statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// `U_b / (n_a·n_b)`: the probability that a random `b` value exceeds a
    /// random `a` value, ties counting ½ (the common-language effect size).
    pub probability_b_greater: f64,
}

/// Mann–Whitney U test (Mann & Whitney 1947), two-sided, by the normal
/// approximation with tie correction and continuity correction:
/// `z = (max(U_a, U_b) − n_a·n_b/2 − ½) / √(n_a·n_b/12 · ((n+1) − Σ(t³−t)/(n(n−1))))`,
/// `p = min(1, 2·P(Z > z))`. Matches `scipy.stats.mannwhitneyu(a, b,
/// alternative="two-sided", method="asymptotic", use_continuity=True)`.
///
/// Errors: `NotEnoughData` if a sample is empty, `NonFinite` for NaN/∞,
/// `NoVariance` if every value is tied (the statistic has no spread; scipy
/// reports p = 1).
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Result<MannWhitney> {
    if a.is_empty() || b.is_empty() {
        return Err(StatsError::NotEnoughData(
            "each sample needs at least one value",
        ));
    }
    check_all_finite(a)?;
    check_all_finite(b)?;
    let combined: Vec<f64> = a.iter().chain(b).copied().collect();
    let (ranks, tie_term) = average_ranks(&combined);
    let (n_a, n_b) = (a.len() as f64, b.len() as f64);
    let n = n_a + n_b;
    let rank_sum_a: f64 = ranks[..a.len()].iter().sum();
    let u_a = rank_sum_a - n_a * (n_a + 1.0) / 2.0;
    let u_b = n_a * n_b - u_a;
    let variance = n_a * n_b / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        return Err(StatsError::NoVariance("every value is tied"));
    }
    let z = (u_a.max(u_b) - n_a * n_b / 2.0 - 0.5) / variance.sqrt();
    Ok(MannWhitney {
        u_statistic: u_a,
        // The continuity correction can push z below 0 when U sits at its
        // mean; the p-value is then 1, as scipy's clip gives.
        p_value: normal_two_sided_p(z.max(0.0)),
        probability_b_greater: u_b / (n_a * n_b),
    })
}

/// Result of the Wilcoxon signed-rank test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WilcoxonSignedRank {
    /// `min(R⁺, R⁻)` (scipy's two-sided `statistic`).
    pub statistic: f64,
    /// Sum of the ranks of `|d|` over positive differences.
    pub r_plus: f64,
    /// Sum of the ranks of `|d|` over negative differences.
    pub r_minus: f64,
    /// `(R⁺ − n(n+1)/4) / σ`: positive when `b` tends to exceed `a`.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Pairs used: the non-zero differences.
    pub n_nonzero: u64,
}

/// Wilcoxon (1945) signed-rank test of paired differences `d_i = b_i − a_i`,
/// two-sided, normal approximation without continuity correction.
///
/// Zero differences are dropped (Wilcoxon's method); the `|d|` left are
/// mid-ranked, and `z = (R⁺ − n(n+1)/4) / √((n(n+1)(2n+1) − Σ(t³−t)/2) / 24)`,
/// `p = 2·P(Z > |z|)`. Matches `scipy.stats.wilcoxon(d, zero_method="wilcox",
/// correction=False, method="asymptotic")` (scipy reports `zstatistic = −|z|`).
///
/// Errors: `NotEnoughData` if no difference is non-zero, `NonFinite` for NaN/∞.
pub fn wilcoxon_signed_rank(differences: &[f64]) -> Result<WilcoxonSignedRank> {
    check_all_finite(differences)?;
    let nonzero: Vec<f64> = differences.iter().copied().filter(|&d| d != 0.0).collect();
    if nonzero.is_empty() {
        return Err(StatsError::NotEnoughData("no non-zero difference"));
    }
    let magnitudes: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let (ranks, tie_term) = average_ranks(&magnitudes);
    let (r_plus, r_minus) =
        nonzero
            .iter()
            .zip(&ranks)
            .fold((0.0, 0.0), |(plus, minus), (&d, &r)| {
                if d > 0.0 {
                    (plus + r, minus)
                } else {
                    (plus, minus + r)
                }
            });
    let n = nonzero.len() as f64;
    // Positive for n ≥ 1 even when every |d| is tied.
    let sd = ((n * (n + 1.0) * (2.0 * n + 1.0) - tie_term / 2.0) / 24.0).sqrt();
    let z = (r_plus - n * (n + 1.0) / 4.0) / sd;
    Ok(WilcoxonSignedRank {
        statistic: r_plus.min(r_minus),
        r_plus,
        r_minus,
        z,
        p_value: normal_two_sided_p(z),
        n_nonzero: nonzero.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_over_ties_including_signed_zero() {
        let (ranks, tie_term) = average_ranks(&[3.0, -0.0, 0.0, 3.0, 3.0, -1.0]);
        assert_eq!(ranks, vec![5.0, 2.5, 2.5, 5.0, 5.0, 1.0]);
        assert_eq!(tie_term, 6.0 + 24.0);
    }

    #[test]
    fn empty_or_non_finite_samples_are_errors() {
        assert!(matches!(
            mann_whitney_u(&[], &[1.0]),
            Err(StatsError::NotEnoughData(_))
        ));
        assert_eq!(
            mann_whitney_u(&[f64::NAN], &[1.0]),
            Err(StatsError::NonFinite)
        );
        assert!(matches!(
            wilcoxon_signed_rank(&[0.0, 0.0]),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(matches!(
            wilcoxon_signed_rank(&[]),
            Err(StatsError::NotEnoughData(_))
        ));
        assert_eq!(
            wilcoxon_signed_rank(&[1.0, f64::INFINITY]),
            Err(StatsError::NonFinite)
        );
    }

    #[test]
    fn all_tied_samples_have_no_rank_test() {
        assert!(matches!(
            mann_whitney_u(&[2.0, 2.0], &[2.0]),
            Err(StatsError::NoVariance(_))
        ));
    }

    // scipy.stats.mannwhitneyu([1, 2, 3], [4, 5], method="asymptotic").pvalue
    #[test]
    fn single_values_per_group_work() {
        let r = mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0]).unwrap();
        assert_eq!(r.u_statistic, 0.0);
        assert_eq!(r.probability_b_greater, 1.0);
        // statrs' normal tail is ~1e-10 relative off scipy's.
        assert!((r.p_value - 0.14891467317876572).abs() < 1e-9);
        let one = mann_whitney_u(&[1.0], &[2.0]).unwrap();
        assert_eq!(one.p_value, 1.0);
    }
}
