//! Continuous metrics (latency, tokens, cost, scores): streaming moments,
//! Welch's t-test and the one-sample t interval.

use serde::Serialize;

use super::{
    Interval, RelativeLift, Result, StatsError, add_counts, alpha_for, finite, relative_lift,
    student_t_two_sided_p, student_t_upper_quantile, z_critical,
};

/// Count, mean and sum of squared deviations (`M2`) of a stream of values, in
/// constant memory.
///
/// Updated with Welford's (1962) recurrence, `δ = x − mean; mean += δ/n;
/// M2 += δ·(x − mean)`, and merged with Chan, Golub & LeVeque's (1979)
/// pairwise formula, so partial summaries (per file, per thread) combine
/// without the cancellation of the naive `Σx² − n·mean²`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// The summary of `values`; `Err(NonFinite)` if any is NaN or infinite.
    pub fn from_slice(values: &[f64]) -> Result<Self> {
        let mut moments = Self::new();
        for &x in values {
            moments.push(x)?;
        }
        Ok(moments)
    }

    /// A summary from aggregates computed elsewhere (e.g. by a database):
    /// `variance` is the sample variance with denominator `n − 1`, as in
    /// `scipy.stats.ttest_ind_from_stats`; it is ignored when `n < 2`.
    pub fn from_summary(n: u64, mean: f64, variance: f64) -> Result<Self> {
        if n == 0 {
            return Ok(Self::new());
        }
        if !mean.is_finite() || !variance.is_finite() {
            return Err(StatsError::NonFinite);
        }
        if variance < 0.0 {
            return Err(StatsError::InvalidArgument("variance must be ≥ 0"));
        }
        let m2 = if n < 2 {
            0.0
        } else {
            finite(variance * (n - 1) as f64)?
        };
        Ok(Self { n, mean, m2 })
    }

    /// Adds one value. A NaN or infinite `x` is rejected with
    /// `Err(NonFinite)` (and a value so large that the squares overflow with
    /// `Err(Overflow)`), leaving the summary unchanged.
    pub fn push(&mut self, x: f64) -> Result<()> {
        if !x.is_finite() {
            return Err(StatsError::NonFinite);
        }
        let n = add_counts(self.n, 1)?;
        let delta = x - self.mean;
        let mean = self.mean + delta / n as f64;
        let m2 = finite(self.m2 + delta * (x - mean))?;
        *self = Self {
            n,
            mean: finite(mean)?,
            m2,
        };
        Ok(())
    }

    /// Adds every value summarised by `other`, as if each had been pushed;
    /// `Err(Overflow)` (summary unchanged) if the result is not representable.
    pub fn merge(&mut self, other: &Moments) -> Result<()> {
        if other.n == 0 {
            return Ok(());
        }
        if self.n == 0 {
            *self = *other;
            return Ok(());
        }
        let n = add_counts(self.n, other.n)?;
        let (na, nb) = (self.n as f64, other.n as f64);
        let delta = other.mean - self.mean;
        let mean = finite(self.mean + delta * (nb / n as f64))?;
        let m2 = finite(self.m2 + other.m2 + delta * delta * (na * nb / n as f64))?;
        *self = Self { n, mean, m2 };
        Ok(())
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Arithmetic mean; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }

    /// Sample variance `M2 / (n − 1)`; `None` when `n < 2`.
    pub fn variance(&self) -> Option<f64> {
        (self.n > 1).then(|| self.m2 / (self.n - 1) as f64)
    }

    /// Mean, sample variance and count as floats, or `NotEnoughData` if `n < 2`.
    pub(super) fn with_variance(&self) -> Result<(f64, f64, f64)> {
        match self.variance() {
            Some(variance) => Ok((self.mean, variance, self.n as f64)),
            None => Err(StatsError::NotEnoughData(
                "each group needs at least two values",
            )),
        }
    }
}

/// Welch's two-sample comparison of means (`b − a`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanComparison {
    pub mean_a: f64,
    pub mean_b: f64,
    /// `mean_b − mean_a`.
    pub difference: f64,
    /// Welch t interval for the difference.
    pub difference_ci: Interval,
    /// `mean_b / mean_a − 1` with a delta-method normal CI; `None` when `mean_a` is 0.
    pub relative_lift: Option<RelativeLift>,
    /// Welch's t, signed like `difference`.
    pub statistic: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Welch's unequal-variance t-test of `mean_b − mean_a`.
///
/// `t = (x̄_b − x̄_a) / √(s²_a/n_a + s²_b/n_b)` with the Welch–Satterthwaite
/// `ν = (s²_a/n_a + s²_b/n_b)² / ((s²_a/n_a)²/(n_a−1) + (s²_b/n_b)²/(n_b−1))`,
/// a two-sided p-value `2·P(T_ν > |t|)` and the CI `difference ± t_{ν,1−α/2}·SE`
/// (Welch 1947). Matches `scipy.stats.ttest_ind(b, a, equal_var=False)`: its
/// `statistic`, `pvalue`, `df` and `confidence_interval(confidence)`.
///
/// Errors: `NotEnoughData` if a group has fewer than two values,
/// `NoVariance` if both groups are constant (t is undefined; scipy gives NaN).
pub fn welch(a: &Moments, b: &Moments, confidence: f64) -> Result<MeanComparison> {
    let alpha = alpha_for(confidence)?;
    let (mean_a, var_a, n_a) = a.with_variance()?;
    let (mean_b, var_b, n_b) = b.with_variance()?;
    let (se2_a, se2_b) = (var_a / n_a, var_b / n_b);
    let se2 = se2_a + se2_b;
    if se2 == 0.0 {
        return Err(StatsError::NoVariance("both groups are constant"));
    }
    let se = se2.sqrt();
    // Shares of the variance rather than squared variances: the textbook form
    // underflows to 0/0 when the variances are tiny.
    let (share_a, share_b) = (se2_a / se2, se2_b / se2);
    let df = finite(1.0 / (share_a * share_a / (n_a - 1.0) + share_b * share_b / (n_b - 1.0)))?;
    let difference = finite(mean_b - mean_a)?;
    let statistic = finite(difference / se)?;
    let critical = student_t_upper_quantile(alpha / 2.0, df)?;
    Ok(MeanComparison {
        mean_a,
        mean_b,
        difference,
        difference_ci: Interval::centered(difference, finite(critical * se)?),
        relative_lift: relative_lift(mean_a, se2_a, mean_b, se2_b, z_critical(confidence)?),
        statistic,
        df,
        p_value: student_t_two_sided_p(statistic, df)?,
    })
}

/// A mean with its t interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanEstimate {
    pub mean: f64,
    /// `s / √n`.
    pub std_error: f64,
    /// `n − 1`.
    pub df: f64,
    pub ci: Interval,
}

/// The t confidence interval for one mean: `x̄ ± t_{n−1,1−α/2}·s/√n`.
/// Matches `scipy.stats.ttest_1samp(x, 0).confidence_interval(confidence)`
/// (and `scipy.stats.sem` for `std_error`).
///
/// Errors: `NotEnoughData` if `n < 2`. A constant sample gives a zero-width
/// interval, which is the exact t interval for it.
pub fn mean_interval(m: &Moments, confidence: f64) -> Result<MeanEstimate> {
    let alpha = alpha_for(confidence)?;
    let (mean, variance, n) = m.with_variance()?;
    let std_error = (variance / n).sqrt();
    let df = n - 1.0;
    let critical = student_t_upper_quantile(alpha / 2.0, df)?;
    Ok(MeanEstimate {
        mean,
        std_error,
        df,
        ci: Interval::centered(mean, finite(critical * std_error)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_halves_equal_one_pass() {
        let data: Vec<f64> = (0..1000).map(|i| 1e6 + f64::from(i % 37) * 0.25).collect();
        let whole = Moments::from_slice(&data).unwrap();
        let mut left = Moments::from_slice(&data[..313]).unwrap();
        left.merge(&Moments::from_slice(&data[313..]).unwrap())
            .unwrap();
        assert_eq!(left.count(), whole.count());
        assert!((left.mean().unwrap() - whole.mean().unwrap()).abs() < 1e-9);
        let (lv, wv) = (left.variance().unwrap(), whole.variance().unwrap());
        assert!((lv - wv).abs() < 1e-9 * wv);
    }

    #[test]
    fn merging_with_empty_is_identity() {
        let m = Moments::from_slice(&[1.0, 2.0, 4.0]).unwrap();
        let mut empty = Moments::new();
        empty.merge(&m).unwrap();
        assert_eq!(empty, m);
        let mut same = m;
        same.merge(&Moments::new()).unwrap();
        assert_eq!(same, m);
    }

    #[test]
    fn rejected_values_leave_the_summary_unchanged() {
        let mut m = Moments::from_slice(&[1.0, 2.0]).unwrap();
        let before = m;
        assert_eq!(m.push(f64::NAN), Err(StatsError::NonFinite));
        assert_eq!(m.push(f64::INFINITY), Err(StatsError::NonFinite));
        assert_eq!(m.push(f64::MAX), Err(StatsError::Overflow));
        assert_eq!(m, before);
    }

    #[test]
    fn too_little_data_is_an_error_not_nan() {
        let one = Moments::from_slice(&[3.0]).unwrap();
        let two = Moments::from_slice(&[3.0, 4.0]).unwrap();
        assert_eq!(one.variance(), None);
        assert_eq!(Moments::new().mean(), None);
        assert!(matches!(
            welch(&one, &two, 0.95),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(matches!(
            welch(&Moments::new(), &two, 0.95),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(matches!(
            mean_interval(&one, 0.95),
            Err(StatsError::NotEnoughData(_))
        ));
    }

    #[test]
    fn two_constant_groups_have_no_t_statistic() {
        let a = Moments::from_slice(&[2.0, 2.0, 2.0]).unwrap();
        let b = Moments::from_slice(&[3.0, 3.0]).unwrap();
        assert!(matches!(
            welch(&a, &b, 0.95),
            Err(StatsError::NoVariance(_))
        ));
    }

    #[test]
    fn constant_sample_has_a_zero_width_interval() {
        let m = Moments::from_slice(&[5.0; 4]).unwrap();
        let est = mean_interval(&m, 0.95).unwrap();
        assert_eq!((est.ci.lower, est.ci.upper), (5.0, 5.0));
    }

    #[test]
    fn summary_validates_its_inputs() {
        assert_eq!(
            Moments::from_summary(3, f64::NAN, 1.0),
            Err(StatsError::NonFinite)
        );
        assert!(matches!(
            Moments::from_summary(3, 1.0, -1.0),
            Err(StatsError::InvalidArgument(_))
        ));
        assert_eq!(Moments::from_summary(0, 7.0, 2.0).unwrap(), Moments::new());
    }
}
