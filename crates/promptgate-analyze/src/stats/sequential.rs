//! Always-valid inference for a difference in means, so an analyst who looks
//! at the experiment every day, and stops when it looks good, still gets the
//! error rate they asked for. A fixed-sample t-test peeked at daily does not:
//! its false-positive rate grows with every look.
//!
//! Both outputs come from one Robbins normal-mixture martingale: the
//! confidence sequence is the set of differences it does not reject, and the
//! p-value is the level at which it starts rejecting zero. So the two never
//! disagree: `p_value < α` exactly when the `1 − α` sequence excludes 0.

use serde::Serialize;

use super::means::Moments;
use super::{Interval, Result, StatsError, add_counts, alpha_for, finite};

/// One look at an experiment, valid simultaneously over all looks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SequentialComparison {
    /// `mean_b − mean_a`.
    pub difference: f64,
    /// The asymptotic confidence sequence at this look.
    pub ci: Interval,
    /// Always-valid p-value for "no difference" (mSPRT).
    pub p_value: f64,
    /// `ln Λ`, the mixture likelihood ratio against "no difference" (p = min(1, 1/Λ)).
    pub ln_likelihood_ratio: f64,
    /// Units seen so far, `n_a + n_b`: the sequence's clock.
    pub units: u64,
    /// Tuning parameter used (see [`rho_for_sample_size`]).
    pub rho: f64,
}

/// The tuning parameter ρ that makes the confidence sequence narrowest when
/// `n_target` units have been seen (Waudby-Smith et al. 2023, §2.2:
/// `ρ = √((−2 ln α + ln(1 − 2 ln α)) / n*)`, a closed-form approximation to
/// the exact minimiser).
///
/// Pick `n_target` as the sample size the experiment is planned to reach:
/// the sequence is then only slightly wider than a fixed-sample interval
/// around that time, and still valid (just wider) at every other time.
///
/// Errors: `InvalidArgument` if `n_target == 0` or `confidence ∉ (0, 1)`.
pub fn rho_for_sample_size(n_target: u64, confidence: f64) -> Result<f64> {
    let alpha = alpha_for(confidence)?;
    if n_target == 0 {
        return Err(StatsError::InvalidArgument(
            "target sample size must be positive",
        ));
    }
    let log_alpha = alpha.ln();
    Ok(((-2.0 * log_alpha + (1.0 - 2.0 * log_alpha).ln()) / n_target as f64).sqrt())
}

/// Always-valid comparison of `mean_b − mean_a`.
///
/// Confidence sequence: the asymptotic CS of Waudby-Smith, Arbour, Sinha,
/// Kennedy & Ramdas (2023), "Time-uniform central limit theory and asymptotic
/// confidence sequences", Theorem 2.2:
/// `θ̂ ± σ̂·√(2(tρ² + 1)/(t²ρ²) · ln(√(tρ² + 1)/α))`, applied with `t = n_a + n_b`
/// and `σ̂² = t·(s²_a/n_a + s²_b/n_b)`, the per-unit variance of the
/// difference-in-means estimator `θ̂` (a plug-in for the two-sample case; the
/// paper's theorem is stated for one i.i.d. mean and, via inverse-probability
/// weighting, for randomised experiments). Equivalently, with
/// `V = s²_a/n_a + s²_b/n_b` and `x = tρ²`: `θ̂ ± √(V·(x+1)/x · ln((x+1)/α²))`.
/// The boundary is the two-sided Robbins normal mixture, so `α` is not halved.
/// TensorZero's experiment CSs use the same boundary with ρ on the metric's raw
/// scale; here ρ is standardised so one value suits every metric.
///
/// p-value: the mixture sequential probability ratio test of Johari, Pekelis
/// & Walsh (2017), "Always valid inference: continuous monitoring of A/B tests",
/// for a normal mean difference with mixing distribution `N(0, τ²)`:
/// `Λ = √(V/(V + τ²)) · exp(τ²θ̂² / (2V(V + τ²)))`, `p = min(1, 1/Λ)`, with
/// `τ² = ρ²σ̂²` (so `τ²/V = x`), which makes it the exact dual of the CS above.
///
/// Validity is asymptotic (it relies on the CLT, like the t-test) and holds
/// over every look simultaneously: `P(∃ look: θ ∉ ci) ≤ α`. Because of that,
/// reporting the running intersection of the intervals, or the running
/// minimum of the p-values, across looks is also valid.
///
/// Errors: `NotEnoughData` if a group has fewer than two values, `NoVariance`
/// if both groups are constant, `InvalidArgument` if `rho` is not a positive
/// finite number or `confidence ∉ (0, 1)`.
pub fn sequential_difference(
    a: &Moments,
    b: &Moments,
    confidence: f64,
    rho: f64,
) -> Result<SequentialComparison> {
    let alpha = alpha_for(confidence)?;
    if !(rho.is_finite() && rho > 0.0) {
        return Err(StatsError::InvalidArgument(
            "rho must be positive and finite",
        ));
    }
    let (mean_a, var_a, n_a) = a.with_variance()?;
    let (mean_b, var_b, n_b) = b.with_variance()?;
    let v = var_a / n_a + var_b / n_b;
    if v == 0.0 {
        return Err(StatsError::NoVariance("both groups are constant"));
    }
    let units = add_counts(a.count(), b.count())?;
    let x = units as f64 * rho * rho;
    let ln_1p_x = x.ln_1p();
    let difference = finite(mean_b - mean_a)?;
    let margin = finite((v * (x + 1.0) / x * (ln_1p_x - 2.0 * alpha.ln())).sqrt())?;
    let ln_likelihood_ratio =
        finite(-0.5 * ln_1p_x + x * difference * difference / (2.0 * v * (1.0 + x)))?;
    Ok(SequentialComparison {
        difference,
        ci: Interval::centered(difference, margin),
        p_value: (-ln_likelihood_ratio).exp().min(1.0),
        ln_likelihood_ratio,
        units,
        rho,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(values: &[f64]) -> Moments {
        Moments::from_slice(values).unwrap()
    }

    #[test]
    fn p_value_and_sequence_agree_at_every_level() {
        let a = moments(&[1.0, 2.0, 3.0, 2.5, 1.5, 2.2, 1.8, 2.9]);
        let b = moments(&[2.8, 3.9, 3.1, 4.2, 2.6, 3.3, 3.7, 2.9, 3.5]);
        let rho = 0.3;
        let p = sequential_difference(&a, &b, 0.95, rho).unwrap().p_value;
        for confidence in [0.5, 0.8, 0.9, 0.95, 0.99, 0.999] {
            let r = sequential_difference(&a, &b, confidence, rho).unwrap();
            let excludes_zero = r.ci.lower > 0.0 || r.ci.upper < 0.0;
            assert_eq!(
                excludes_zero,
                p < 1.0 - confidence,
                "confidence {confidence}, p {p}"
            );
        }
    }

    #[test]
    fn invalid_tuning_and_degenerate_data_are_errors() {
        let a = moments(&[1.0, 2.0, 3.0]);
        for rho in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                sequential_difference(&a, &a, 0.95, rho),
                Err(StatsError::InvalidArgument(_))
            ));
        }
        let flat = moments(&[4.0, 4.0]);
        assert!(matches!(
            sequential_difference(&flat, &flat, 0.95, 0.1),
            Err(StatsError::NoVariance(_))
        ));
        assert!(matches!(
            sequential_difference(&moments(&[1.0]), &a, 0.95, 0.1),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(matches!(
            rho_for_sample_size(0, 0.95),
            Err(StatsError::InvalidArgument(_))
        ));
    }
}
