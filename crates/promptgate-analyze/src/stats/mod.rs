//! Statistical tests for comparing variants.
//!
//! Every function here is pure: data in, a `Serialize` result out, no I/O, no
//! clock, and randomness only through an explicit seed. Conventions shared by
//! all of them:
//!
//! - `a` is the baseline (control) and `b` the variant: differences are
//!   `b − a` and relative lift is `b / a − 1`.
//! - `confidence` is a two-sided level in (0, 1), e.g. `0.95`.
//! - Anything that would come out as NaN or ±∞ (too little data, no variance,
//!   non-finite input, overflow) is a [`StatsError`] or a documented `None`
//!   instead, so results can go straight into a JSON report.
//!
//! Each function names the scipy/statsmodels function it matches;
//! `tests/analyze_stats.rs` checks them against values those libraries
//! produced (`tests/stats_reference/`).

pub mod bootstrap;
pub mod ks;
pub mod means;
pub mod multiple;
pub mod paired;
pub mod power;
pub mod proportions;
pub mod psi;
pub mod rank;
pub mod sequential;
pub mod srm;

use serde::Serialize;
use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// A group is empty or too small for the statistic (e.g. a variance needs n ≥ 2).
    #[error("not enough data: {0}")]
    NotEnoughData(&'static str),
    /// The statistic is undefined because the data do not vary (e.g. all values tied).
    #[error("no variation in the data: {0}")]
    NoVariance(&'static str),
    /// An input value is NaN or infinite.
    #[error("input contains a NaN or infinite value")]
    NonFinite,
    /// A parameter is outside its domain (confidence not in (0, 1), negative weight, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// Finite inputs so extreme that an intermediate result overflowed.
    #[error("inputs too extreme: the result is not a finite number")]
    Overflow,
}

/// Shorthand used by every statistic in this module.
pub type Result<T> = std::result::Result<T, StatsError>;

/// A two-sided interval; `lower ≤ upper`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

impl Interval {
    fn centered(center: f64, half_width: f64) -> Self {
        Self {
            lower: center - half_width,
            upper: center + half_width,
        }
    }
}

/// Relative lift `b / a − 1` with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RelativeLift {
    pub estimate: f64,
    pub ci: Interval,
}

/// statrs' Student t degrades with the degrees of freedom: its incomplete
/// beta loses about df·1e-16 relative (1e-10 at df = 1e5, 1e-6 at 1e9) and its
/// inverse is 3e-6 off at df = 1e5 and stops converging near 1e8. Past these
/// thresholds the asymptotic expansions in 1/df take over; they are accurate
/// to ~1e-15 there (the tail one loses relative accuracy only for p < 1e-50).
const CORNISH_FISHER_FROM_DF: f64 = 1e5;
const TAIL_EXPANSION_FROM_DF: f64 = 1e7;

/// `1 − confidence`, after checking `confidence` is in (0, 1).
fn alpha_for(confidence: f64) -> Result<f64> {
    if confidence.is_finite() && confidence > 0.0 && confidence < 1.0 {
        Ok(1.0 - confidence)
    } else {
        Err(StatsError::InvalidArgument("confidence must be in (0, 1)"))
    }
}

/// `x` itself when finite: a final guard so no NaN/∞ reaches a report.
fn finite(x: f64) -> Result<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(StatsError::Overflow)
    }
}

/// `a + b` for counts, which come from callers and may be arbitrarily large.
fn add_counts(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b).ok_or(StatsError::Overflow)
}

fn check_all_finite(values: &[f64]) -> Result<()> {
    if values.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(StatsError::NonFinite)
    }
}

/// `x` with `P(Z > x) = tail` for a standard normal `Z`.
fn normal_upper_quantile(tail: f64) -> f64 {
    // Computed from the lower tail: `inverse_cdf(1 − tail)` would lose the
    // digits of a small `tail` to the subtraction.
    -Normal::standard().inverse_cdf(tail)
}

/// The two-sided critical value `z_{1−α/2}` for a confidence level.
fn z_critical(confidence: f64) -> Result<f64> {
    Ok(normal_upper_quantile(alpha_for(confidence)? / 2.0))
}

/// Two-sided p-value `2·P(Z > |z|)` of a standard normal statistic.
fn normal_two_sided_p(z: f64) -> f64 {
    (2.0 * Normal::standard().sf(z.abs())).min(1.0)
}

fn student_t(df: f64) -> Result<StudentsT> {
    StudentsT::new(0.0, 1.0, df).map_err(|_| StatsError::NotEnoughData("degrees of freedom"))
}

/// `x` with `P(T > x) = tail` for Student's t with `df` degrees of freedom,
/// for `tail < 0.5` and `df ≥ 1`.
///
/// For small df, statrs' inverse is only a starting point; Newton steps on the
/// survival function bring it to the accuracy of that function (~1e-10).
fn student_t_upper_quantile(tail: f64, df: f64) -> Result<f64> {
    let z = normal_upper_quantile(tail);
    // Cornish–Fisher expansion (Abramowitz & Stegun 26.7.5); its error is
    // O(z⁹/df⁴): negligible past 1e5 and a fine Newton start from df = 4.
    let z2 = z * z;
    let cornish_fisher = z
        + (z2 + 1.0) * z / (4.0 * df)
        + ((5.0 * z2 + 16.0) * z2 + 3.0) * z / (96.0 * df * df)
        + (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / (384.0 * df * df * df);
    if df > CORNISH_FISHER_FROM_DF {
        return finite(cornish_fisher);
    }
    let dist = student_t(df)?;
    let mut x = if df < 4.0 {
        // By symmetry from the lower tail: `1 − tail` would cancel digits.
        -dist.inverse_cdf(tail)
    } else {
        cornish_fisher
    };
    for _ in 0..50 {
        let step = (dist.sf(x) - tail) / dist.pdf(x);
        x += step;
        if !x.is_finite() || step.abs() <= 1e-13 * x.abs() {
            break;
        }
    }
    finite(x)
}

/// Two-sided p-value `2·P(T > |t|)` for Student's t with `df` degrees of freedom.
fn student_t_two_sided_p(t: f64, df: f64) -> Result<f64> {
    let x = t.abs();
    let upper = if df > TAIL_EXPANSION_FROM_DF {
        // Two terms of Fisher's (1925) expansion of the t tail in powers of
        // 1/df around the normal; its error shrinks as 1/df³ (checked against
        // scipy).
        let x2 = x * x;
        let g1 = (x2 + 1.0) * x / 4.0;
        let g2 = (((3.0 * x2 - 7.0) * x2 - 5.0) * x2 - 3.0) * x / 96.0;
        let normal = Normal::standard();
        normal.sf(x) + normal.pdf(x) * (g1 / df + g2 / (df * df))
    } else {
        student_t(df)?.sf(x)
    };
    finite((2.0 * upper).min(1.0))
}

/// Upper tail `P(X > x)` of a chi-square distribution with `df` degrees of freedom.
fn chi_square_sf(x: f64, df: f64) -> Result<f64> {
    let dist = ChiSquared::new(df).map_err(|_| StatsError::NotEnoughData("degrees of freedom"))?;
    finite(dist.sf(x))
}

/// Relative lift `b / a − 1` of two independent estimates with a delta-method
/// CI on the ratio: `Var(b/a) ≈ Var(b)/a² + b²·Var(a)/a⁴` (Casella & Berger
/// §5.5.4; the frequentist lift CI of GrowthBook and Eppo). `None` when the
/// baseline is 0, where the lift is undefined.
///
/// The ratio (not log-ratio) form keeps the estimate equal to the observed
/// lift; with few events the interval can extend below −100 %.
fn relative_lift(a: f64, var_a: f64, b: f64, var_b: f64, z: f64) -> Option<RelativeLift> {
    if a == 0.0 {
        return None;
    }
    let estimate = b / a - 1.0;
    let se = (var_b / (a * a) + b * b * var_a / (a * a * a * a)).sqrt();
    let ci = Interval::centered(estimate, z * se);
    [estimate, ci.lower, ci.upper]
        .iter()
        .all(|x| x.is_finite())
        .then_some(RelativeLift { estimate, ci })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from scipy 1.17.1: stats.t.isf(tail, df) and 2 * stats.t.sf(t, df).
    #[test]
    fn t_quantile_matches_scipy_across_df() {
        let cases = [
            (0.025, 1.0, 12.706204736174694),
            (0.025, 2.5, 3.574654842003682),
            (0.005, 10.0, 3.1692726726169504),
            (0.025, 57.3, 2.002238268231336),
            (0.025, 1e5, 1.959987707534609),
            (0.025, 1e7, 1.959964221767205),
            (0.025, 1e9, 1.959963986912325),
            (1e-10, 1.0, 3183098861.8379064),
            (1e-12, 3.0, 10331.108244292487),
            (1e-8, 1e6, 5.6120468343692815),
        ];
        for (tail, df, expected) in cases {
            let got = student_t_upper_quantile(tail, df).unwrap();
            assert!(
                (got - expected).abs() <= 1e-9 * expected,
                "df={df}: {got} vs {expected}"
            );
        }
    }

    // statrs' normal tail is ~1e-10 relative off, so that is the floor here.
    #[test]
    fn t_p_value_matches_scipy_across_df() {
        let cases = [
            (2.0, 1e5, 2.0 * 2.275148172875326e-2),
            (2.0, 1e9, 2.0 * 2.275013208315662e-2),
            (8.0, 1e12, 2.0 * 6.220960580839769e-16),
        ];
        for (t, df, expected) in cases {
            let got = student_t_two_sided_p(t, df).unwrap();
            assert!(
                (got - expected).abs() <= 1e-8 * expected,
                "df={df}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn confidence_outside_unit_interval_is_rejected() {
        for c in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(matches!(z_critical(c), Err(StatsError::InvalidArgument(_))));
        }
    }

    #[test]
    fn lift_of_zero_baseline_is_none() {
        assert_eq!(relative_lift(0.0, 0.0, 0.1, 0.01, 1.96), None);
    }
}
