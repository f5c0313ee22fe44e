//! Power analysis: the smallest effect the current sample sizes can detect,
//! and the sample size a given effect needs. Both metric families reduce to
//! one normal-approximation power equation in a standardised effect size
//! (Cohen 1988): Cohen's h for proportions, Cohen's d for means.

use std::f64::consts::FRAC_PI_2;

use serde::Serialize;
use statrs::distribution::{Continuous, ContinuousCDF, Normal};

use super::{Result, StatsError, finite, normal_upper_quantile};

/// Significance level and power to plan for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PowerTarget {
    /// Two-sided significance level.
    pub alpha: f64,
    /// Probability of detecting an effect of the planned size.
    pub power: f64,
}

impl Default for PowerTarget {
    /// The conventional α = 0.05, power = 0.8.
    fn default() -> Self {
        Self {
            alpha: 0.05,
            power: 0.8,
        }
    }
}

/// `u = |effect|·√n_eff` at which a two-sided z-test at level `alpha` has
/// the target power: the root of `P(Z > c − u) + P(Z < −c − u) = power`,
/// `c = z_{1−α/2}`. This is `statsmodels.stats.power.normal_power` (the power
/// function of `NormalIndPower`), both tails included; solved to ~1e-15
/// because statsmodels' own `solve_power` stops its root search early (5e-6
/// relative off in one reference case).
fn standardized_shift(target: PowerTarget) -> Result<f64> {
    let PowerTarget { alpha, power } = target;
    if !(alpha.is_finite() && alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidArgument("alpha must be in (0, 1)"));
    }
    if !(power.is_finite() && power > alpha && power < 1.0) {
        return Err(StatsError::InvalidArgument("power must be in (alpha, 1)"));
    }
    let normal = Normal::standard();
    let c = normal_upper_quantile(alpha / 2.0);
    let excess = |u: f64| normal.sf(c - u) + normal.cdf(-c - u) - power;
    // The far tail only adds power, so the one-tail answer is an upper
    // bracket; the excess is negative at 0 because power > alpha.
    let (mut low, mut high) = (0.0, c + normal_upper_quantile(1.0 - power));
    let mut u = high;
    for _ in 0..100 {
        let g = excess(u);
        if g > 0.0 {
            high = u;
        } else {
            low = u;
        }
        let slope = normal.pdf(c - u) - normal.pdf(c + u);
        let newton = u - g / slope;
        // Newton inside the bracket, bisection when it would leave it.
        let next = if newton > low && newton < high {
            newton
        } else {
            0.5 * (low + high)
        };
        if (next - u).abs() <= 4.0 * f64::EPSILON * u {
            return Ok(next);
        }
        u = next;
    }
    Ok(u)
}

/// Harmonic combination `1 / (1/n_a + 1/n_b)`: the `n` of a one-sample test
/// with the same standard error as the two-sample difference.
fn effective_n(n_a: f64, n_b: f64) -> f64 {
    n_a * n_b / (n_a + n_b)
}

/// Per-group sample sizes that reach the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SampleSize {
    /// Standardised effect planned for (Cohen's h or d), signed like `b − a`.
    pub effect_size: f64,
    /// Exact solution for group `a` (what statsmodels reports as `nobs1`).
    pub n_a: f64,
    /// `ratio · n_a`.
    pub n_b: f64,
    /// `⌈n_a⌉`: units to actually collect in `a`.
    pub required_a: u64,
    /// `⌈n_b⌉`.
    pub required_b: u64,
}

fn sample_size(effect_size: f64, ratio: f64, target: PowerTarget) -> Result<SampleSize> {
    if !(ratio.is_finite() && ratio > 0.0) {
        return Err(StatsError::InvalidArgument("ratio must be positive"));
    }
    if effect_size == 0.0 {
        return Err(StatsError::InvalidArgument(
            "a zero effect needs infinitely many units",
        ));
    }
    let u = standardized_shift(target)?;
    // n_eff = n_a·r/(1 + r) must equal (u/effect)².
    let n_a = finite((u / effect_size).powi(2) * (1.0 + ratio) / ratio)?;
    let n_b = finite(ratio * n_a)?;
    Ok(SampleSize {
        effect_size,
        n_a,
        n_b,
        // Saturating casts: a u64-overflowing size is "never" either way.
        required_a: n_a.ceil() as u64,
        required_b: n_b.ceil() as u64,
    })
}

fn group_sizes(n_a: u64, n_b: u64) -> Result<(f64, f64)> {
    if n_a == 0 || n_b == 0 {
        return Err(StatsError::NotEnoughData(
            "each group needs at least one unit",
        ));
    }
    Ok((n_a as f64, n_b as f64))
}

fn check_rate(rate: f64) -> Result<f64> {
    if !rate.is_finite() {
        return Err(StatsError::NonFinite);
    }
    if !(0.0..=1.0).contains(&rate) {
        return Err(StatsError::InvalidArgument("rates must be in [0, 1]"));
    }
    Ok(rate)
}

/// Cohen's h, `2·asin√p_b − 2·asin√p_a`: the arcsine transform makes the
/// variance of a proportion `1/(4n)` whatever its level.
/// Same as `statsmodels.stats.proportion.proportion_effectsize(p_b, p_a)`.
fn cohens_h(rate_a: f64, rate_b: f64) -> f64 {
    2.0 * rate_b.sqrt().asin() - 2.0 * rate_a.sqrt().asin()
}

/// Minimum detectable effect for a success rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProportionMde {
    /// Detectable |Cohen's h|.
    pub effect_size: f64,
    /// Smallest detectable rate above the baseline; `None` if even a rate of 1 is too close.
    pub rate_b_up: Option<f64>,
    /// Largest detectable rate below the baseline; `None` if even 0 is too close.
    pub rate_b_down: Option<f64>,
}

/// Minimum detectable effect of a two-sided two-proportion test at sample
/// sizes `n_a`, `n_b` around `baseline_rate`: the |h| solving
/// `NormalIndPower().solve_power(effect_size=None, nobs1=n_a, ratio=n_b/n_a,
/// alpha, power)` (statsmodels), converted back to rates with
/// `p_b = sin²(asin√p_a ± h/2)`.
///
/// Errors: `NotEnoughData` if a group is empty, `InvalidArgument` for a rate
/// outside [0, 1] or a target with `power ∉ (alpha, 1)`, `NonFinite` for NaN.
pub fn proportion_mde(
    baseline_rate: f64,
    n_a: u64,
    n_b: u64,
    target: PowerTarget,
) -> Result<ProportionMde> {
    let baseline = check_rate(baseline_rate)?;
    let (n_a, n_b) = group_sizes(n_a, n_b)?;
    let h = standardized_shift(target)? / effective_n(n_a, n_b).sqrt();
    let angle = baseline.sqrt().asin();
    let (up, down) = (angle + h / 2.0, angle - h / 2.0);
    Ok(ProportionMde {
        effect_size: h,
        rate_b_up: (up <= FRAC_PI_2).then(|| up.sin().powi(2)),
        rate_b_down: (down >= 0.0).then(|| down.sin().powi(2)),
    })
}

/// Per-group sample size for a two-sided two-proportion test to detect
/// `rate_a → rate_b` with `n_b = ratio·n_a`: `NormalIndPower().solve_power(
/// effect_size=proportion_effectsize(rate_b, rate_a), nobs1=None, ratio,
/// alpha, power)` (statsmodels), i.e. `n_a = (u/h)²·(1 + r)/r`.
///
/// Errors: `InvalidArgument` for rates outside [0, 1], equal rates, a
/// non-positive `ratio` or an invalid target; `NonFinite` for NaN.
pub fn proportion_sample_size(
    rate_a: f64,
    rate_b: f64,
    ratio: f64,
    target: PowerTarget,
) -> Result<SampleSize> {
    let h = cohens_h(check_rate(rate_a)?, check_rate(rate_b)?);
    sample_size(h, ratio, target)
}

/// Minimum detectable difference in means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanMde {
    /// Detectable |Cohen's d| (difference / standard deviation).
    pub effect_size: f64,
    /// The same in the metric's units: `effect_size · std_dev`.
    pub absolute_effect: f64,
}

fn check_std_dev(std_dev: f64) -> Result<f64> {
    if !std_dev.is_finite() {
        return Err(StatsError::NonFinite);
    }
    if std_dev <= 0.0 {
        return Err(StatsError::InvalidArgument(
            "standard deviation must be positive",
        ));
    }
    Ok(std_dev)
}

/// Minimum detectable difference in means at sample sizes `n_a`, `n_b` for
/// a metric with standard deviation `std_dev` (e.g. the baseline's, or the
/// pooled one): `d = u/√n_eff`, as `NormalIndPower().solve_power(
/// effect_size=None, nobs1=n_a, ratio=n_b/n_a, alpha, power)` (statsmodels).
///
/// The normal approximation, not the noncentral t of `tt_ind_solve_power`:
/// at A/B-test sizes they agree to well under 1 %; below ~30 units per group
/// it understates the MDE slightly.
///
/// Errors: `NotEnoughData` if a group is empty, `InvalidArgument` for a
/// non-positive `std_dev` or an invalid target, `NonFinite` for NaN/∞.
pub fn mean_mde(std_dev: f64, n_a: u64, n_b: u64, target: PowerTarget) -> Result<MeanMde> {
    let std_dev = check_std_dev(std_dev)?;
    let (n_a, n_b) = group_sizes(n_a, n_b)?;
    let effect_size = standardized_shift(target)? / effective_n(n_a, n_b).sqrt();
    Ok(MeanMde {
        effect_size,
        absolute_effect: effect_size * std_dev,
    })
}

/// Per-group sample size to detect a difference in means of
/// `absolute_effect` for a metric with standard deviation `std_dev`, with
/// `n_b = ratio·n_a`: `NormalIndPower().solve_power(effect_size=effect/sd,
/// nobs1=None, ratio, alpha, power)` (statsmodels). Same normal
/// approximation as [`mean_mde`].
///
/// Errors: `InvalidArgument` for a zero effect, non-positive `std_dev` or
/// `ratio`, or an invalid target; `NonFinite` for NaN/∞.
pub fn mean_sample_size(
    absolute_effect: f64,
    std_dev: f64,
    ratio: f64,
    target: PowerTarget,
) -> Result<SampleSize> {
    if !absolute_effect.is_finite() {
        return Err(StatsError::NonFinite);
    }
    sample_size(absolute_effect / check_std_dev(std_dev)?, ratio, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_targets_are_errors() {
        for (alpha, power) in [(0.0, 0.8), (0.05, 0.05), (0.05, 1.0), (f64::NAN, 0.8)] {
            let target = PowerTarget { alpha, power };
            assert!(matches!(
                mean_mde(1.0, 10, 10, target),
                Err(StatsError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn degenerate_designs_are_errors() {
        let t = PowerTarget::default();
        assert!(matches!(
            mean_mde(1.0, 0, 10, t),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(matches!(
            mean_mde(0.0, 10, 10, t),
            Err(StatsError::InvalidArgument(_))
        ));
        assert!(matches!(
            proportion_sample_size(0.1, 0.1, 1.0, t),
            Err(StatsError::InvalidArgument(_))
        ));
        assert!(matches!(
            proportion_sample_size(0.1, 1.2, 1.0, t),
            Err(StatsError::InvalidArgument(_))
        ));
        assert!(matches!(
            mean_sample_size(1.0, 1.0, 0.0, t),
            Err(StatsError::InvalidArgument(_))
        ));
    }

    #[test]
    fn tiny_samples_cannot_detect_moves_past_the_bounds() {
        let mde = proportion_mde(0.5, 1, 1, PowerTarget::default()).unwrap();
        assert_eq!((mde.rate_b_up, mde.rate_b_down), (None, None));
    }

    #[test]
    fn sample_size_reaches_the_planned_effect() {
        let t = PowerTarget::default();
        let size = mean_sample_size(0.25, 1.0, 1.5, t).unwrap();
        let u = standardized_shift(t).unwrap();
        assert!((u / effective_n(size.n_a, size.n_b).sqrt() - 0.25).abs() < 1e-12);
        assert_eq!(
            (size.required_a, size.required_b),
            (size.n_a.ceil() as u64, size.n_b.ceil() as u64)
        );
    }

    #[test]
    fn shift_solves_the_two_tailed_power_equation_at_extremes() {
        let normal = Normal::standard();
        for (alpha, power) in [(1e-6, 0.999), (0.5, 0.51), (0.05, 0.8)] {
            let u = standardized_shift(PowerTarget { alpha, power }).unwrap();
            let c = normal_upper_quantile(alpha / 2.0);
            let achieved = normal.sf(c - u) + normal.cdf(-c - u);
            assert!(
                (achieved - power).abs() < 1e-13,
                "{alpha} {power}: {achieved}"
            );
        }
    }
}
