//! Multiple comparisons: several variants or metrics tested at once.

use super::{Result, StatsError};

/// Holm–Bonferroni step-down adjusted p-values (Holm 1979), in input order.
///
/// With the `m` p-values sorted ascending, `p̃₍ᵢ₎ = min(1, max_{j ≤ i} (m − j + 1)·p₍ⱼ₎)`
/// (1-based): monotone in the raw p-values and capped at 1. Rejecting every
/// hypothesis with `p̃ ≤ α` controls the family-wise error rate at `α` under
/// any dependence, and is uniformly more powerful than Bonferroni. Matches
/// `statsmodels.stats.multitest.multipletests(p, method="holm")[1]`.
///
/// An empty input gives an empty output. Errors: `NonFinite` for NaN/∞,
/// `InvalidArgument` for a value outside [0, 1].
pub fn holm_adjust(p_values: &[f64]) -> Result<Vec<f64>> {
    if p_values.iter().any(|p| !p.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    if p_values.iter().any(|p| !(0.0..=1.0).contains(p)) {
        return Err(StatsError::InvalidArgument("p-values must be in [0, 1]"));
    }
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p_values[i].total_cmp(&p_values[j]));
    let mut adjusted = vec![0.0; m];
    let mut running_max: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running_max = running_max.max((m - rank) as f64 * p_values[i]);
        adjusted[i] = running_max.min(1.0);
    }
    Ok(adjusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_invalid_inputs() {
        assert_eq!(holm_adjust(&[]), Ok(vec![]));
        assert_eq!(holm_adjust(&[0.1, f64::NAN]), Err(StatsError::NonFinite));
        assert!(matches!(
            holm_adjust(&[1.5]),
            Err(StatsError::InvalidArgument(_))
        ));
    }
}
