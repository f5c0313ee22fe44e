//! Sample ratio mismatch: does the traffic split match the configured weights?
//! A mismatch means assignment or logging is broken, and no comparison of the
//! variants can be trusted until it is explained.

use serde::Serialize;

use super::{Result, StatsError, add_counts, chi_square_sf};

/// p-value below which the split is flagged. Deliberately strict (GrowthBook's
/// default): the check runs on every analysis, so a 5 % threshold would cry
/// wolf on one experiment in twenty.
pub const SRM_P_THRESHOLD: f64 = 0.001;

/// Outcome of the sample ratio mismatch check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleRatioMismatch {
    /// Pearson's χ² over the variants with positive weight.
    pub statistic: f64,
    /// Variants with positive weight, minus one.
    pub df: u64,
    pub p_value: f64,
    /// Expected count per variant, in input order (0 for zero-weight variants).
    pub expected_counts: Vec<f64>,
    /// Indices of zero-weight variants that nevertheless received traffic.
    pub unexpected_variants: Vec<usize>,
    /// `p_value < SRM_P_THRESHOLD`, or traffic to a zero-weight variant.
    pub mismatch: bool,
}

/// Pearson's χ² goodness-of-fit test of `observed` counts per variant against
/// the split implied by `weights` (Pearson 1900; Fabijan et al. 2019, "Diagnosing
/// sample ratio mismatch in online controlled experiments").
///
/// Weights need not sum to 1: variant `i` expects `N·wᵢ/Σw` of the `N` units
/// seen by variants with positive weight. Zero-weight variants are left out
/// of the test; one that received traffic cannot be explained by chance and
/// is reported in `unexpected_variants` as a mismatch on its own.
/// `χ² = Σ(Oᵢ − Eᵢ)²/Eᵢ` with `k − 1` degrees of freedom; matches
/// `scipy.stats.chisquare(f_obs, f_exp)` on the positive-weight variants.
///
/// Errors: `InvalidArgument` if the slices differ in length, a weight is
/// negative, or fewer than two variants have positive weight; `NonFinite` for
/// a NaN/∞ weight; `NotEnoughData` if the positive-weight variants have no
/// traffic; `Overflow` if the counts do not fit in a u64 sum.
pub fn sample_ratio_mismatch(observed: &[u64], weights: &[f64]) -> Result<SampleRatioMismatch> {
    if observed.len() != weights.len() {
        return Err(StatsError::InvalidArgument("one weight per variant"));
    }
    if weights.iter().any(|w| !w.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    if weights.iter().any(|&w| w < 0.0) {
        return Err(StatsError::InvalidArgument("weights must be ≥ 0"));
    }
    let tested = weights.iter().filter(|&&w| w > 0.0).count();
    if tested < 2 {
        return Err(StatsError::InvalidArgument(
            "at least two variants need a positive weight",
        ));
    }
    let weight_total: f64 = weights.iter().sum();
    let units = observed
        .iter()
        .zip(weights)
        .filter(|&(_, &w)| w > 0.0)
        .try_fold(0, |total, (&o, _)| add_counts(total, o))?;
    if units == 0 {
        return Err(StatsError::NotEnoughData(
            "no units in the weighted variants",
        ));
    }
    let expected_counts: Vec<f64> = weights
        .iter()
        .map(|w| units as f64 * w / weight_total)
        .collect();
    let statistic: f64 = observed
        .iter()
        .zip(&expected_counts)
        .filter(|&(_, &e)| e > 0.0)
        .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
        .sum();
    let df = (tested - 1) as u64;
    let p_value = chi_square_sf(statistic, df as f64)?;
    let unexpected_variants: Vec<usize> = observed
        .iter()
        .zip(weights)
        .enumerate()
        .filter(|&(_, (&o, &w))| w == 0.0 && o > 0)
        .map(|(i, _)| i)
        .collect();
    Ok(SampleRatioMismatch {
        statistic,
        df,
        p_value,
        mismatch: p_value < SRM_P_THRESHOLD || !unexpected_variants.is_empty(),
        expected_counts,
        unexpected_variants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_configurations_are_errors() {
        let err = |o: &[u64], w: &[f64]| sample_ratio_mismatch(o, w).unwrap_err();
        assert!(matches!(
            err(&[1, 2], &[1.0]),
            StatsError::InvalidArgument(_)
        ));
        assert!(matches!(
            err(&[1, 2], &[1.0, -1.0]),
            StatsError::InvalidArgument(_)
        ));
        assert!(matches!(
            err(&[1, 2], &[1.0, 0.0]),
            StatsError::InvalidArgument(_)
        ));
        assert_eq!(err(&[1, 2], &[1.0, f64::NAN]), StatsError::NonFinite);
        assert!(matches!(
            err(&[0, 0, 5], &[1.0, 1.0, 0.0]),
            StatsError::NotEnoughData(_)
        ));
    }

    #[test]
    fn perfect_split_does_not_flag() {
        let r = sample_ratio_mismatch(&[100, 300], &[0.25, 0.75]).unwrap();
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.p_value, 1.0);
        assert!(!r.mismatch);
    }
}
