//! Binary metrics (success rate, error rate, thumbs-up rate): two-proportion
//! comparison and the Wilson interval for one proportion.

use serde::{Deserialize, Serialize};

use super::{
    Interval, RelativeLift, Result, StatsError, add_counts, normal_two_sided_p, relative_lift,
    z_critical,
};

/// Successes out of trials for one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub successes: u64,
    pub trials: u64,
}

impl Counts {
    /// `successes / trials`, after checking the counts make sense.
    fn rate(self) -> Result<f64> {
        if self.trials == 0 {
            return Err(StatsError::NotEnoughData("a group has no trials"));
        }
        if self.successes > self.trials {
            return Err(StatsError::InvalidArgument("successes exceed trials"));
        }
        Ok(self.successes as f64 / self.trials as f64)
    }
}

/// Where [`ProportionComparison::p_value`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProportionTest {
    /// Pooled two-proportion z-test.
    ZTest,
    /// Fisher's exact test, used when an expected cell count is below 5.
    FisherExact,
}

/// Comparison of two success rates (`b − a`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProportionComparison {
    pub rate_a: f64,
    pub rate_b: f64,
    /// `rate_b − rate_a`.
    pub difference: f64,
    /// Wald interval for the difference (unpooled standard error).
    pub difference_ci: Interval,
    /// `rate_b / rate_a − 1` with a delta-method CI; `None` when `rate_a` is 0.
    pub relative_lift: Option<RelativeLift>,
    /// Pooled z, signed like `difference`, whichever test gave the p-value;
    /// `None` when both groups are all successes or all failures (SE is 0).
    pub statistic: Option<f64>,
    /// Two-sided p-value from `method`.
    pub p_value: f64,
    pub method: ProportionTest,
}

/// Compares the success rates of `a` and `b`.
///
/// - Test: pooled z = (p̂_b − p̂_a) / √(p̄(1−p̄)(1/n_a + 1/n_b)), p̄ the pooled
///   rate, two-sided normal p-value, as
///   `statsmodels.stats.proportion.proportions_ztest([x_b, x_a], [n_b, n_a])`.
///   When the smallest expected cell count of the 2×2 table,
///   `min(n_a, n_b)·min(S, F)/N`, is below 5 the normal approximation is poor
///   and the p-value is Fisher's exact test instead (Cochran's rule), matching
///   `scipy.stats.fisher_exact(table, alternative="two-sided")`.
/// - CI of the difference: Wald,
///   `difference ± z·√(p̂_a(1−p̂_a)/n_a + p̂_b(1−p̂_b)/n_b)`, as statsmodels'
///   `confint_proportions_2indep(x_b, n_b, x_a, n_a, method="wald", compare="diff")`.
///   It collapses to a point when both rates are 0 or 1.
/// - Relative lift: delta method on the ratio (see [`RelativeLift`]).
///
/// Errors: `NotEnoughData` if a group has no trials, `InvalidArgument` if
/// successes exceed trials or `confidence` is not in (0, 1), `Overflow` if
/// the two groups' counts do not fit in a u64 sum.
pub fn compare_proportions(a: Counts, b: Counts, confidence: f64) -> Result<ProportionComparison> {
    let z = z_critical(confidence)?;
    let (rate_a, rate_b) = (a.rate()?, b.rate()?);
    let (n_a, n_b) = (a.trials as f64, b.trials as f64);
    let difference = rate_b - rate_a;

    let (var_a, var_b) = (rate_a * (1.0 - rate_a) / n_a, rate_b * (1.0 - rate_b) / n_b);
    let difference_ci = Interval::centered(difference, z * (var_a + var_b).sqrt());

    let n = add_counts(a.trials, b.trials)?;
    let s = add_counts(a.successes, b.successes)?;
    let pooled = s as f64 / n as f64;
    let pooled_se = (pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)).sqrt();
    let statistic = (pooled_se > 0.0).then(|| difference / pooled_se);

    let min_expected = a.trials.min(b.trials) as f64 * s.min(n - s) as f64 / n as f64;
    let (p_value, method) = match statistic {
        Some(z) if min_expected >= 5.0 => (normal_two_sided_p(z), ProportionTest::ZTest),
        _ => (fisher_exact_two_sided(a, b), ProportionTest::FisherExact),
    };

    Ok(ProportionComparison {
        rate_a,
        rate_b,
        difference,
        difference_ci,
        relative_lift: relative_lift(rate_a, var_a, rate_b, var_b, z),
        statistic,
        p_value,
        method,
    })
}

/// Two-sided Fisher exact p-value of `[[x_a, n_a − x_a], [x_b, n_b − x_b]]`:
/// the total probability of the tables with the same margins that are no
/// more likely than the observed one (Fisher 1935; `scipy.stats.fisher_exact`).
///
/// Given the margins, `x_a` is hypergeometric. Its probabilities come from the
/// ratio recurrence `P(x+1)/P(x) = (S−x)(n_a−x) / ((x+1)(n_b−S+x+1))` in logs
/// and are normalised at the end, so no factorial or log-gamma is evaluated
/// and large tables neither overflow nor lose precision. Tables whose
/// probability equals the observed one within a relative 1e-7 count as "as
/// extreme" (R's `fisher.test` convention; scipy's 1e-14 only differs if two
/// distinct table probabilities agree to seven digits).
/// The caller has checked that the counts are consistent and their sums fit in a u64.
fn fisher_exact_two_sided(a: Counts, b: Counts) -> f64 {
    let s = a.successes + b.successes;
    let lowest = s.saturating_sub(b.trials);
    let highest = s.min(a.trials);
    // Recomputed per pass rather than stored: the support can be long when
    // one margin is huge, and three cheap passes beat allocating it.
    let log_weights = || {
        (lowest..=highest).scan(0.0, move |log_w: &mut f64, x| {
            let here = *log_w;
            // lowest ≤ x ≤ highest, so neither subtraction can underflow.
            let numerator = (s - x) as f64 * (a.trials - x) as f64;
            let denominator = (x + 1) as f64 * ((b.trials - (s - x)) as f64 + 1.0);
            *log_w += (numerator / denominator).ln();
            Some(here)
        })
    };
    let max = log_weights().fold(f64::NEG_INFINITY, f64::max);
    let weights = || log_weights().map(move |lw| (lw - max).exp());
    let observed = weights()
        .nth((a.successes - lowest) as usize)
        .unwrap_or(0.0)
        * (1.0 + 1e-7);
    let (extreme, total) = weights().fold((0.0, 0.0), |(extreme, total), w| {
        (if w <= observed { extreme + w } else { extreme }, total + w)
    });
    (extreme / total).min(1.0)
}

/// One success rate with its Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProportionEstimate {
    pub rate: f64,
    pub ci: Interval,
}

/// The Wilson (1927) score interval for one proportion:
/// `(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)`.
/// Unlike the Wald interval it stays inside [0, 1] and is not degenerate at
/// 0 or n successes. Matches
/// `statsmodels.stats.proportion.proportion_confint(x, n, alpha, method="wilson")`.
///
/// Errors: `NotEnoughData` with no trials, `InvalidArgument` if successes
/// exceed trials or `confidence` is not in (0, 1).
pub fn proportion_interval(counts: Counts, confidence: f64) -> Result<ProportionEstimate> {
    let z = z_critical(confidence)?;
    let rate = counts.rate()?;
    let n = counts.trials as f64;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (rate + z2 / (2.0 * n)) / denominator;
    let half = z * (rate * (1.0 - rate) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    // At 0 or n successes the bound is exactly 0 or 1; rounding would leave
    // it a few ulps off, outside [0, 1] or just short of the observed rate.
    let lower = if counts.successes == 0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let upper = if counts.successes == counts.trials {
        1.0
    } else {
        (center + half).min(1.0)
    };
    Ok(ProportionEstimate {
        rate,
        ci: Interval { lower, upper },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(successes: u64, trials: u64) -> Counts {
        Counts { successes, trials }
    }

    #[test]
    fn invalid_counts_are_errors() {
        let ok = counts(1, 10);
        assert!(matches!(
            compare_proportions(counts(0, 0), ok, 0.95),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(matches!(
            compare_proportions(ok, counts(11, 10), 0.95),
            Err(StatsError::InvalidArgument(_))
        ));
        assert!(matches!(
            proportion_interval(counts(0, 0), 0.95),
            Err(StatsError::NotEnoughData(_))
        ));
    }

    #[test]
    fn all_successes_everywhere_is_no_evidence() {
        let r = compare_proportions(counts(30, 30), counts(40, 40), 0.95).unwrap();
        assert_eq!(r.statistic, None);
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.method, ProportionTest::FisherExact);
        assert_eq!(r.relative_lift.map(|l| l.estimate), Some(0.0));
    }

    // The exact value, summed in rational arithmetic (Python `fractions`);
    // scipy 1.17's `fisher_exact` gives 0.021484067386323226, 1.3e-10 off.
    #[test]
    fn fisher_handles_huge_margins() {
        let p = fisher_exact_two_sided(counts(1, 1_000_000), counts(9, 1_000_000));
        let exact = 0.021484067383581544;
        assert!((p - exact).abs() < 1e-14 * exact, "{p}");
    }

    #[test]
    fn wilson_stays_in_the_unit_interval() {
        for (x, n) in [(0, 1), (1, 1), (0, 1000), (1000, 1000)] {
            let e = proportion_interval(counts(x, n), 0.99).unwrap();
            assert!(0.0 <= e.ci.lower && e.ci.lower <= e.rate && e.rate <= e.ci.upper);
            assert!(e.ci.upper <= 1.0);
        }
    }
}
