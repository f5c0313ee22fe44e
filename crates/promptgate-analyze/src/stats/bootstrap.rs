//! Quantiles (p50, p95 latency) and a seeded percentile bootstrap for the
//! difference of a quantile between two variants.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use super::{Interval, Result, StatsError, alpha_for, check_all_finite};

/// The `q`-quantile of `values` by linear interpolation between order
/// statistics (Hyndman & Fan 1996, type 7): with `h = (n − 1)·q`,
/// `x₍⌊h⌋₎ + (h − ⌊h⌋)·(x₍⌊h⌋+1₎ − x₍⌊h⌋₎)`. Matches `numpy.quantile(values, q)`
/// (default `method="linear"`), including numpy's interpolation rounding.
///
/// Errors: `NotEnoughData` if empty, `NonFinite` for NaN/∞, `InvalidArgument`
/// if `q` is not in [0, 1].
pub fn quantile(values: &[f64], q: f64) -> Result<f64> {
    check_quantile_inputs(values, q)?;
    Ok(quantile_in_place(&mut values.to_vec(), q))
}

fn check_quantile_inputs(values: &[f64], q: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&q) {
        return Err(StatsError::InvalidArgument("quantile must be in [0, 1]"));
    }
    if values.is_empty() {
        return Err(StatsError::NotEnoughData("a sample is empty"));
    }
    check_all_finite(values)
}

/// Type-7 quantile of a non-empty, finite `values`, reordering it: a selection
/// in O(n) instead of a sort, which matters inside the bootstrap loop.
fn quantile_in_place(values: &mut [f64], q: f64) -> f64 {
    let last = values.len() - 1;
    let h = last as f64 * q;
    if h >= last as f64 {
        return values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    }
    let below_index = h.floor() as usize;
    let gamma = h - below_index as f64;
    let (_, below, above) = values.select_nth_unstable_by(below_index, f64::total_cmp);
    let below = *below;
    let above = above.iter().copied().fold(f64::INFINITY, f64::min);
    // numpy's `_lerp`: interpolating from the nearer end keeps the result
    // monotone in q and bit-identical to numpy.
    let diff = above - below;
    if gamma >= 0.5 {
        above - diff * (1.0 - gamma)
    } else {
        below + diff * gamma
    }
}

/// Bootstrap estimate of `quantile(b, q) − quantile(a, q)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuantileDifference {
    /// The quantile compared, e.g. 0.95.
    pub quantile: f64,
    /// `quantile(b, q) − quantile(a, q)` on the observed samples.
    pub estimate: f64,
    /// Percentile bootstrap interval.
    pub ci: Interval,
    pub resamples: u32,
    /// Seed that reproduces `ci`.
    pub seed: u64,
}

/// Percentile bootstrap CI (Efron & Tibshirani 1993, §13.3) for the
/// difference in the `q`-quantile between two independent samples.
///
/// Each of `resamples` rounds draws `n_a` values from `a` and `n_b` from `b`
/// with replacement and records `quantile(b*, q) − quantile(a*, q)` (type 7,
/// as [`quantile`]); the CI is the type-7 `α/2` and `1 − α/2` quantiles of
/// those differences. This is what `scipy.stats.bootstrap((b, a), statistic,
/// method="percentile", paired=False)` computes; the two differ only by
/// Monte Carlo error because their random streams differ.
///
/// Deterministic: the same inputs and `seed` give the same interval on every
/// platform and rand release, because the generator is xoshiro256++, one of
/// rand's named portable generators (`StdRng` may change algorithm between
/// releases). Cost is O(resamples·(n_a + n_b)).
///
/// With one value per group every resample equals the estimate and the CI
/// has zero width: the bootstrap cannot see variability it was not shown.
///
/// Errors: `NotEnoughData` for an empty sample, `NonFinite` for NaN/∞,
/// `InvalidArgument` if `q ∉ [0, 1]`, `resamples == 0` or `confidence ∉ (0, 1)`.
pub fn bootstrap_quantile_difference(
    a: &[f64],
    b: &[f64],
    q: f64,
    resamples: u32,
    confidence: f64,
    seed: u64,
) -> Result<QuantileDifference> {
    let alpha = alpha_for(confidence)?;
    check_quantile_inputs(a, q)?;
    check_quantile_inputs(b, q)?;
    if resamples == 0 {
        return Err(StatsError::InvalidArgument("resamples must be at least 1"));
    }
    let estimate = quantile(b, q)? - quantile(a, q)?;

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut resample_a = vec![0.0; a.len()];
    let mut resample_b = vec![0.0; b.len()];
    let mut differences = Vec::with_capacity(resamples as usize);
    for _ in 0..resamples {
        for slot in resample_a.iter_mut() {
            *slot = a[rng.random_range(0..a.len())];
        }
        for slot in resample_b.iter_mut() {
            *slot = b[rng.random_range(0..b.len())];
        }
        differences
            .push(quantile_in_place(&mut resample_b, q) - quantile_in_place(&mut resample_a, q));
    }
    let lower = quantile_in_place(&mut differences, alpha / 2.0);
    let upper = quantile_in_place(&mut differences, 1.0 - alpha / 2.0);
    Ok(QuantileDifference {
        quantile: q,
        estimate,
        ci: Interval { lower, upper },
        resamples,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_interval_other_seed_other_interval() {
        let a: Vec<f64> = (0..200).map(|i| f64::from(i * 7 % 101)).collect();
        let b: Vec<f64> = (0..150).map(|i| f64::from(i * 13 % 97) + 3.0).collect();
        let run = |seed| bootstrap_quantile_difference(&a, &b, 0.5, 500, 0.9, seed).unwrap();
        assert_eq!(run(1), run(1));
        assert_ne!(run(1).ci, run(2).ci);
    }

    #[test]
    fn single_values_give_a_zero_width_interval() {
        let r = bootstrap_quantile_difference(&[2.0], &[5.0], 0.95, 100, 0.95, 0).unwrap();
        assert_eq!(r.estimate, 3.0);
        assert_eq!((r.ci.lower, r.ci.upper), (3.0, 3.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ok = [1.0, 2.0];
        let boot =
            |a: &[f64], q, resamples| bootstrap_quantile_difference(a, &ok, q, resamples, 0.95, 0);
        assert!(matches!(
            boot(&[], 0.5, 10),
            Err(StatsError::NotEnoughData(_))
        ));
        assert_eq!(boot(&[f64::NAN], 0.5, 10), Err(StatsError::NonFinite));
        assert!(matches!(
            boot(&ok, 1.5, 10),
            Err(StatsError::InvalidArgument(_))
        ));
        assert!(matches!(
            boot(&ok, f64::NAN, 10),
            Err(StatsError::InvalidArgument(_))
        ));
        assert!(matches!(
            boot(&ok, 0.5, 0),
            Err(StatsError::InvalidArgument(_))
        ));
    }
}
