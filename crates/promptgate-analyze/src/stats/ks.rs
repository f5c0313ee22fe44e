//! Two-sample Kolmogorov–Smirnov test: do two samples come from the same
//! continuous distribution? Drift uses it on latency, TTFB, token counts and
//! prompt length, which are too skewed for a test on means.

use serde::Serialize;

use super::{Result, StatsError};

/// Above this sample size scipy's `method="auto"` switches from the exact
/// distribution to the asymptotic one (`scipy.stats._stats_py.MAX_AUTO_N`).
pub const MAX_EXACT_N: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    Exact,
    Asymptotic,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KsTest {
    /// `D = sup |F_a(x) − F_b(x)|` over the two empirical distribution functions.
    pub statistic: f64,
    /// Two-sided p-value `P(D ≥ d)` under the null.
    pub p_value: f64,
    pub method: KsMethod,
}

/// Two-sided two-sample KS test, as `scipy.stats.ks_2samp(a, b)` with its
/// default `method="auto"`: the exact null distribution when both samples have
/// at most [`MAX_EXACT_N`] values, else the asymptotic Kolmogorov distribution
/// of `√(nm/(n+m))·D` (scipy's asymptotic branch uses `kstwo` at
/// `round(nm/(n+m))` instead; both agree to about 1 % in p above n = 10,000).
///
/// Exact p-value: the number of lattice paths from (0, 0) to (n, m) that stay
/// strictly inside `|i/n − j/m| < D`, over all `C(n+m, n)` paths (Hodges 1958).
/// Each path count is carried divided by its binomial so it stays in [0, 1]:
/// no overflow at n = m = 10,000. Cost O(n·m).
///
/// Errors: `NotEnoughData` if either sample is empty; `NonFinite` for NaN/∞.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Result<KsTest> {
    if a.is_empty() || b.is_empty() {
        return Err(StatsError::NotEnoughData("both samples need a value"));
    }
    if a.iter().chain(b).any(|x| !x.is_finite()) {
        return Err(StatsError::NonFinite);
    }
    let (n, m) = (a.len(), b.len());
    let d_scaled = scaled_statistic(a, b);
    let statistic = d_scaled as f64 / (n as f64 * m as f64);
    if n.max(m) <= MAX_EXACT_N {
        let p_value = (1.0 - inside_probability(n, m, d_scaled)).clamp(0.0, 1.0);
        Ok(KsTest {
            statistic,
            p_value,
            method: KsMethod::Exact,
        })
    } else {
        let effective_n = n as f64 * m as f64 / (n + m) as f64;
        Ok(KsTest {
            statistic,
            p_value: kolmogorov_sf(effective_n.sqrt() * statistic),
            method: KsMethod::Asymptotic,
        })
    }
}

/// `D·n·m`, an integer: `|i/n − j/m|·n·m = |i·m − j·n|` at every step.
fn scaled_statistic(a: &[f64], b: &[f64]) -> u64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as i128, b.len() as i128);
    let (mut i, mut j) = (0usize, 0usize);
    let mut best = 0i128;
    while i < a.len() && j < b.len() {
        // Consume every copy of the smaller value from both samples: ties move
        // both step functions at once.
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
        best = best.max((i as i128 * m - j as i128 * n).abs());
    }
    // Once one sample is used up the gap only shrinks towards 0.
    best as u64
}

/// Share of monotone lattice paths to (n, m) whose every point satisfies
/// `|i·m − j·n| < d_scaled`.
fn inside_probability(n: usize, m: usize, d_scaled: u64) -> f64 {
    let inside =
        |i: usize, j: usize| ((i * m) as i128 - (j * n) as i128).unsigned_abs() < d_scaled as u128;
    // row[j] = paths(i, j) / C(i + j, i) for the current row i.
    let mut row = vec![0.0f64; m + 1];
    for i in 0..=n {
        for j in 0..=m {
            row[j] = if i == 0 && j == 0 {
                1.0
            } else if !inside(i, j) {
                0.0
            } else {
                let total = (i + j) as f64;
                let from_above = row[j] * i as f64 / total;
                let from_left = if j > 0 {
                    row[j - 1] * j as f64 / total
                } else {
                    0.0
                };
                from_above + from_left
            };
        }
    }
    row[m]
}

/// Survival function of the Kolmogorov distribution,
/// `Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}` (scipy's `kstwobign.sf`).
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 0.2 {
        // The alternating series converges slowly here and Q is 1 to double precision.
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u64 % 2 == 1 { term } else { -term };
        if term < 1e-17 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_have_statistic_zero_and_p_one() {
        let a = [1.0, 2.0, 3.0];
        let test = ks_2samp(&a, &a).unwrap();
        assert_eq!(test.statistic, 0.0);
        assert_eq!(test.p_value, 1.0);
    }

    #[test]
    fn disjoint_samples_give_the_smallest_exact_p() {
        // All C(6, 3) = 20 orderings equally likely; two reach D = 1.
        let test = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(test.statistic, 1.0);
        assert!((test.p_value - 0.1).abs() < 1e-12, "{}", test.p_value);
    }

    #[test]
    fn empty_and_non_finite_samples_are_refused() {
        assert!(matches!(
            ks_2samp(&[], &[1.0]),
            Err(StatsError::NotEnoughData(_))
        ));
        assert!(matches!(
            ks_2samp(&[f64::NAN], &[1.0]),
            Err(StatsError::NonFinite)
        ));
    }
}
