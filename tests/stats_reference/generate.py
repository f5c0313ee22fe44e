#!/usr/bin/env python3
"""Reference values for `src/analyze/stats`, checked by `tests/analyze_stats.rs`.

Generated with Python 3.11.7, numpy 2.4.6, scipy 1.17.1, statsmodels 0.15.0
(pandas 3.1.1, patsy 1.0.3 pulled in by statsmodels).

Regenerate (from the repository root; the venv lives outside the repo):

    python3 -m venv /tmp/statsref
    /tmp/statsref/bin/pip install numpy==2.4.6 scipy==1.17.1 statsmodels==0.15.0
    /tmp/statsref/bin/python tests/stats_reference/generate.py

The output, `values.json`, holds every input next to its expected output so the
Rust test reads exactly the data the libraries saw. It is committed: CI does not
run Python. Every expected value comes from scipy/statsmodels, except the
sequential formulas (no library has them), the delta-method relative lift and the
power-MDE conversion back to rates, which are written out below with numpy in
the algebraic form of the paper they cite, independently of the Rust code.
"""

import json
import math
import pathlib
import sys

import numpy as np
import scipy
import statsmodels
from scipy import optimize, stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

OUT = pathlib.Path(__file__).with_name("values.json")
rng = np.random.default_rng(20240601)


def num(x):
    """JSON has no NaN: an undefined value is null, and the Rust side must agree."""
    x = float(x)
    return x if math.isfinite(x) else None


def arr(xs):
    return [float(x) for x in xs]


def draw(x, decimals=3):
    """Rounded like logged metrics, which also keeps values.json small."""
    return np.round(x, decimals)


def interval(lower, upper):
    """Shaped like the Rust `Interval` so the test can compare serialized results."""
    return {"lower": float(lower), "upper": float(upper)}


def z_crit(confidence):
    return stats.norm.isf((1 - confidence) / 2)


def delta_lift(est_a, var_a, est_b, var_b, confidence):
    """Relative lift b/a - 1 with a delta-method CI on the ratio (not log-ratio)."""
    if est_a == 0:
        return None
    lift = est_b / est_a - 1
    se = math.sqrt(var_b / est_a**2 + est_b**2 * var_a / est_a**4)
    h = z_crit(confidence) * se
    return {"estimate": lift, "ci": interval(lift - h, lift + h)}


# --- proportions -------------------------------------------------------------


def proportion_case(name, xa, na, xb, nb, confidence=0.95):
    pa, pb = xa / na, xb / nb
    s, n = xa + xb, na + nb
    min_expected = min(na, nb) * min(s, n - s) / n
    z, p_z = proportions_ztest([xb, xa], [nb, na])
    if min_expected < 5:
        method = "fisher_exact"
        _, p = stats.fisher_exact([[xb, nb - xb], [xa, na - xa]])
    else:
        method = "z_test"
        p = p_z
    lo, hi = confint_proportions_2indep(
        xb, nb, xa, na, method="wald", compare="diff", alpha=1 - confidence
    )
    lift = delta_lift(pa, pa * (1 - pa) / na, pb, pb * (1 - pb) / nb, confidence)
    return {
        "name": name,
        "a": {"successes": xa, "trials": na},
        "b": {"successes": xb, "trials": nb},
        "confidence": confidence,
        "expected": {
            "rate_a": pa,
            "rate_b": pb,
            "difference": pb - pa,
            "difference_ci": interval(lo, hi),
            "relative_lift": lift,
            "statistic": num(z),
            "p_value": float(p),
            "method": method,
        },
    }


proportions = [
    proportion_case("large_equal_sizes", 480, 5000, 545, 5000),
    proportion_case("unequal_sizes", 1210, 12000, 260, 2300),
    proportion_case("unequal_sizes_99", 1210, 12000, 260, 2300, confidence=0.99),
    proportion_case("small_counts_fisher", 1, 30, 7, 32),
    proportion_case("fisher_equal_tables", 3, 20, 3, 20),
    proportion_case("fisher_asymmetric", 6, 9, 2, 12),
    proportion_case("rare_events_large_n", 1, 20000, 6, 20000),
    proportion_case("zero_baseline", 0, 50, 4, 50),
    proportion_case("all_successes_in_a", 50, 50, 45, 50),
    proportion_case("both_zero", 0, 10, 0, 12),
]

proportion_intervals = []
for x, n, c in [(0, 20, 0.95), (20, 20, 0.95), (7, 40, 0.95), (480, 5000, 0.99), (1, 1, 0.9)]:
    lo, hi = proportion_confint(x, n, alpha=1 - c, method="wilson")
    proportion_intervals.append(
        {
            "counts": {"successes": x, "trials": n},
            "confidence": c,
            "expected": {"rate": x / n, "ci": interval(lo, hi)},
        }
    )

# --- means -------------------------------------------------------------------


def welch_expected(ma, va, na, mb, vb, nb, confidence, res=None):
    """Lift by the delta method (numpy); t, df, p, CI from scipy."""
    lift = delta_lift(ma, va / na, mb, vb / nb, confidence)
    if res is None:
        # Summary-statistics case: scipy gives t and p; df and the CI are the
        # Welch–Satterthwaite closed form with scipy's t quantile.
        res = stats.ttest_ind_from_stats(
            mb, math.sqrt(vb), nb, ma, math.sqrt(va), na, equal_var=False
        )
        se2 = va / na + vb / nb
        df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
        h = stats.t.isf((1 - confidence) / 2, df) * math.sqrt(se2)
        ci = interval(mb - ma - h, mb - ma + h)
    else:
        df = float(res.df)
        c = res.confidence_interval(confidence)
        ci = interval(c.low, c.high)
    return {
        "mean_a": ma,
        "mean_b": mb,
        "difference": mb - ma,
        "difference_ci": ci,
        "relative_lift": lift,
        "statistic": float(res.statistic),
        "df": df,
        "p_value": float(res.pvalue),
    }


def welch_case(name, a, b, confidence=0.95):
    a, b = np.asarray(a, float), np.asarray(b, float)
    # ttest_ind(b, a) so the statistic has the sign of mean_b - mean_a.
    res = stats.ttest_ind(b, a, equal_var=False)
    exp = welch_expected(
        a.mean(), a.var(ddof=1), len(a), b.mean(), b.var(ddof=1), len(b), confidence, res
    )
    return {"name": name, "a": arr(a), "b": arr(b), "confidence": confidence, "expected": exp}


welch = [
    welch_case(
        "normal_unequal_sizes", draw(rng.normal(10, 3, 200)), draw(rng.normal(10.8, 4.5, 150))
    ),
    welch_case(
        "lognormal_latency", draw(rng.lognormal(6, 0.8, 1000)), draw(rng.lognormal(6.05, 0.9, 1300))
    ),
    welch_case("tiny_samples_99", [1.2, 3.4, 2.2], [2.0, 5.5, 3.1, 4.4, 6.0], confidence=0.99),
    welch_case("a_has_zero_variance", [5.0, 5.0, 5.0, 5.0], [4.0, 6.0, 7.0, 5.5, 6.5]),
    welch_case("zero_mean_baseline", [-1.0, 1.0, -2.0, 2.0, 0.0], [0.5, 1.5, 2.5, 0.0]),
]

welch_from_summary = []
for name, (ma, sa, na, mb, sb, nb) in {
    # Millions of records: df in the millions, where a t quantile needs care.
    "five_million_each": (1.000, 1.1, 5_000_000, 1.002, 1.2, 5_000_000),
    "billions_of_df": (0.5, 2.0, 2_000_000_000, 0.5001, 2.0, 1_500_000_000),
    "moderate": (12.0, 4.0, 40, 14.5, 6.0, 25),
}.items():
    welch_from_summary.append(
        {
            "name": name,
            "a": {"n": na, "mean": ma, "variance": sa**2},
            "b": {"n": nb, "mean": mb, "variance": sb**2},
            "confidence": 0.95,
            "expected": welch_expected(ma, sa**2, na, mb, sb**2, nb, 0.95),
        }
    )

mean_intervals = []
for data, c in [
    (draw(rng.normal(3, 2, 50)), 0.95),
    ([4.0, 7.5], 0.9),
    (draw(rng.exponential(2.0, 3000)), 0.99),
]:
    data = np.asarray(data, float)
    ci = stats.ttest_1samp(data, 0.0).confidence_interval(c)
    mean_intervals.append(
        {
            "data": arr(data),
            "confidence": c,
            "expected": {
                "mean": float(data.mean()),
                "std_error": float(stats.sem(data)),
                "df": len(data) - 1,
                "ci": interval(ci.low, ci.high),
            },
        }
    )

# --- rank tests --------------------------------------------------------------


def mann_whitney_case(name, a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    kw = dict(alternative="two-sided", method="asymptotic", use_continuity=True)
    res = stats.mannwhitneyu(a, b, **kw)
    u_b = stats.mannwhitneyu(b, a, **kw).statistic
    return {
        "name": name,
        "a": arr(a),
        "b": arr(b),
        "expected": {
            "u_statistic": float(res.statistic),
            "p_value": float(res.pvalue),
            "probability_b_greater": float(u_b / (len(a) * len(b))),
        },
    }


mann_whitney = [
    mann_whitney_case("continuous_shift", draw(rng.normal(0, 1, 60)), draw(rng.normal(0.5, 1, 45))),
    mann_whitney_case(
        "ratings_with_ties", rng.integers(1, 6, 80), np.minimum(rng.integers(1, 7, 70), 5)
    ),
    mann_whitney_case("tiny", [1.0, 2.0, 3.0], [4.0, 5.0]),
    mann_whitney_case("mostly_tied", [0, 0, 0, 0, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0, 1]),
]


def wilcoxon_case(name, d):
    d = np.asarray(d, float)
    res = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="asymptotic")
    nz = d[d != 0]
    ranks = stats.rankdata(np.abs(nz))
    return {
        "name": name,
        "differences": arr(d),
        "expected": {
            "statistic": float(res.statistic),
            # scipy reports -|z| for two-sided; the sign says whether R+ is
            # above its null mean n(n+1)/4.
            "z": float(np.sign(ranks[nz > 0].sum() - len(nz) * (len(nz) + 1) / 4))
            * float(abs(res.zstatistic)),
            "p_value": float(res.pvalue),
            "r_plus": float(ranks[nz > 0].sum()),
            "r_minus": float(ranks[nz < 0].sum()),
            "n_nonzero": len(nz),
        },
    }


wilcoxon = [
    wilcoxon_case("continuous", draw(rng.normal(0.3, 1, 40))),
    wilcoxon_case("zeros_and_ties", np.round(rng.normal(0.2, 1, 60) * 2) / 2),
    wilcoxon_case("tiny", [0.5, -1.2, 2.0, 3.1, 0.8, 1.1]),
    wilcoxon_case("single_nonzero", [0.0, 0.0, 2.5]),
]

# --- bootstrap ---------------------------------------------------------------

quantiles = []
qdata = [3.5, -1.0, 7.25, 3.5, 0.0, 12.0, 2.0]
for q in [0.0, 0.1, 0.25, 0.5, 0.95, 0.999, 1.0]:
    quantiles.append({"data": qdata, "q": q, "expected": float(np.quantile(qdata, q))})
quantiles.append({"data": [42.0], "q": 0.95, "expected": 42.0})

# The tolerance is derived from scipy itself: the Rust CI uses a different RNG
# stream, so it can only agree up to Monte Carlo error. Re-running scipy with
# SPREAD_SEEDS other seeds shows how far two honest bootstraps land apart
# (under 1 % of the width at 40 000 resamples). 3 % leaves room for that, and
# the Rust side is deterministic so it cannot be flaky, yet it still catches
# real mistakes: the 5th instead of the 2.5th percentile moves a bound by
# about 8 % of the width.
SPREAD_SEEDS = 30
BOOT_RESAMPLES = 40_000
BOOT_TOLERANCE = 0.03  # of the reference CI width, per bound


def quantile_diff(q):
    def stat(b, a, axis=-1):
        return np.quantile(b, q, axis=axis) - np.quantile(a, q, axis=axis)

    return stat


def scipy_boot(a, b, q, resamples, confidence, seed):
    res = stats.bootstrap(
        (b, a),
        quantile_diff(q),
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        paired=False,
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


boot_a = draw(rng.lognormal(6.0, 0.6, 400))
boot_b = draw(rng.lognormal(6.1, 0.6, 300))
bootstrap = []
for q in [0.5, 0.95]:
    resamples, confidence, seed = BOOT_RESAMPLES, 0.95, 7
    lo, hi = scipy_boot(boot_a, boot_b, q, resamples, confidence, seed)
    width = hi - lo
    spread = 0.0
    for s in range(1000, 1000 + SPREAD_SEEDS):
        l2, h2 = scipy_boot(boot_a, boot_b, q, resamples, confidence, s)
        spread = max(spread, abs(l2 - lo) / width, abs(h2 - hi) / width)
    if spread >= 0.5 * BOOT_TOLERANCE:
        sys.exit(f"bootstrap q={q}: scipy's own seed spread {spread:.3f} exceeds the tolerance")
    bootstrap.append(
        {
            "a": arr(boot_a),
            "b": arr(boot_b),
            "q": q,
            "resamples": resamples,
            "confidence": confidence,
            "seed": seed,
            "tolerance_fraction_of_width": BOOT_TOLERANCE,
            "scipy_max_seed_spread_fraction": spread,
            "expected": {
                "estimate": float(np.quantile(boot_b, q) - np.quantile(boot_a, q)),
                "ci": interval(lo, hi),
            },
        }
    )

# --- sample ratio mismatch ---------------------------------------------------


def srm_case(name, observed, weights):
    observed = np.asarray(observed)
    weights = np.asarray(weights, float)
    unexpected = [i for i, (o, w) in enumerate(zip(observed, weights)) if w == 0 and o > 0]
    keep = weights > 0
    obs = observed[keep]
    exp_counts = obs.sum() * weights / weights[keep].sum()
    res = stats.chisquare(obs, exp_counts[keep])
    return {
        "name": name,
        "observed": observed.tolist(),
        "weights": arr(weights),
        "expected": {
            "statistic": float(res.statistic),
            "df": int(keep.sum() - 1),
            "p_value": float(res.pvalue),
            "expected_counts": arr(exp_counts),
            "unexpected_variants": unexpected,
            "mismatch": bool(res.pvalue < 0.001 or unexpected),
        },
    }


srm = [
    srm_case("flags_imbalance", [5000, 5400], [1, 1]),
    srm_case("balanced_three_way", [5012, 4988, 10050], [25, 25, 50]),
    srm_case("zero_weight_without_traffic", [3000, 0, 6100], [1, 0, 2]),
    srm_case("zero_weight_with_traffic", [3000, 12, 6100], [1, 0, 2]),
]

# --- multiple comparisons ----------------------------------------------------

holm = []
for pv in [
    [0.01, 0.04, 0.03, 0.005, 0.5],
    [0.2, 0.2, 0.9, 1e-8, 0.04],
    [0.03],
    [0.6, 0.7, 0.8],
]:
    holm.append({"p_values": pv, "expected": arr(multipletests(pv, method="holm")[1])})

# --- sequential ----------------------------------------------------------------


def rho_for_target(n_target, alpha):
    """Waudby-Smith et al. (2023), the approximate width-minimising rho at n_target."""
    return math.sqrt((-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / n_target)


def sequential_case(name, a, b, confidence, rho):
    a, b = np.asarray(a, float), np.asarray(b, float)
    alpha = 1 - confidence
    na, nb = len(a), len(b)
    t = na + nb
    var_diff = a.var(ddof=1) / na + b.var(ddof=1) / nb
    theta = b.mean() - a.mean()
    # Theorem 2.2 form: sigma_hat * sqrt(2(t rho^2 + 1)/(t^2 rho^2) log(sqrt(t rho^2 + 1)/alpha)),
    # with sigma_hat^2 = t * var_diff, the per-unit variance of the difference.
    sigma = math.sqrt(t * var_diff)
    margin = sigma * math.sqrt(
        2 * (t * rho**2 + 1) / (t**2 * rho**2) * math.log(math.sqrt(t * rho**2 + 1) / alpha)
    )
    # Johari–Pekelis–Walsh mSPRT, normal mixing N(0, tau^2) with tau^2 = rho^2 sigma^2.
    tau2 = rho**2 * sigma**2
    lam = math.sqrt(var_diff / (var_diff + tau2)) * math.exp(
        tau2 * theta**2 / (2 * var_diff * (var_diff + tau2))
    )
    return {
        "name": name,
        "a": arr(a),
        "b": arr(b),
        "confidence": confidence,
        "rho": rho,
        "expected": {
            "difference": theta,
            "ci": interval(theta - margin, theta + margin),
            "ln_likelihood_ratio": math.log(lam),
            "p_value": min(1.0, 1.0 / lam),
        },
    }


rho_targets = [
    {"n_target": n, "alpha": al, "expected": rho_for_target(n, al)}
    for n, al in [(1000, 0.05), (50_000, 0.05), (20_000, 0.01)]
]
sequential = [
    sequential_case(
        "clear_effect",
        draw(rng.normal(1.0, 2.0, 800)),
        draw(rng.normal(1.6, 2.5, 900)),
        0.95,
        rho_for_target(1700, 0.05),
    ),
    sequential_case(
        "no_effect",
        draw(rng.normal(5.0, 1.0, 3000)),
        draw(rng.normal(5.0, 1.0, 2800)),
        0.95,
        rho_for_target(10_000, 0.05),
    ),
    sequential_case(
        "binary_outcomes_90",
        (rng.random(5000) < 0.10).astype(float),
        (rng.random(5200) < 0.115).astype(float),
        0.90,
        0.02,
    ),
]

# --- power ---------------------------------------------------------------------


def check_solver(value, equation, lo, hi):
    """The root of statsmodels' own power equation, solved tightly.

    `NormalIndPower.solve_power` stops its brentq early (its MDE for 5000 vs 6000
    is off by 5e-6 relative), so the reference is the tight root of
    `NormalIndPower.power(...) - power`; solve_power is kept as a sanity check.
    """
    tight = optimize.brentq(equation, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    if abs(value - tight) > 1e-4 * abs(tight):
        sys.exit(f"statsmodels solve_power disagrees with its power function: {value} vs {tight}")
    return tight


power_proportions = []
for base, na, nb, alpha, power in [
    (0.10, 5000, 6000, 0.05, 0.8),
    (0.02, 100_000, 100_000, 0.05, 0.9),
    (0.5, 300, 200, 0.01, 0.8),
]:
    ratio = nb / na
    h = NormalIndPower().solve_power(
        effect_size=None, nobs1=na, alpha=alpha, power=power, ratio=ratio
    )
    h = check_solver(
        float(h),
        lambda x: NormalIndPower().power(x, na, alpha, ratio) - power,
        1e-9,
        10.0,
    )
    phi = math.asin(math.sqrt(base))
    up = math.sin(phi + h / 2) ** 2 if phi + h / 2 <= math.pi / 2 else None
    down = math.sin(phi - h / 2) ** 2 if phi - h / 2 >= 0 else None
    power_proportions.append(
        {
            "kind": "mde",
            "baseline_rate": base,
            "n_a": na,
            "n_b": nb,
            "alpha": alpha,
            "power": power,
            "expected": {"effect_size": h, "rate_b_up": up, "rate_b_down": down},
        }
    )

for pa, pb, alpha, power, ratio in [
    (0.10, 0.11, 0.05, 0.8, 1.0),
    (0.30, 0.25, 0.05, 0.9, 2.0),
]:
    h = proportion_effectsize(pb, pa)
    n1 = NormalIndPower().solve_power(
        effect_size=h, nobs1=None, alpha=alpha, power=power, ratio=ratio
    )
    n1 = check_solver(
        float(n1),
        lambda n: NormalIndPower().power(h, n, alpha, ratio) - power,
        2.0,
        1e9,
    )
    power_proportions.append(
        {
            "kind": "sample_size",
            "rate_a": pa,
            "rate_b": pb,
            "alpha": alpha,
            "power": power,
            "ratio": ratio,
            "expected": {"effect_size": float(h), "n_a": n1, "n_b": n1 * ratio},
        }
    )

power_means = []
for sd, na, nb, alpha, power in [(3.0, 200, 150, 0.05, 0.8), (120.0, 40_000, 40_000, 0.05, 0.9)]:
    ratio = nb / na
    d = NormalIndPower().solve_power(
        effect_size=None, nobs1=na, alpha=alpha, power=power, ratio=ratio
    )
    d = check_solver(
        float(d), lambda x: NormalIndPower().power(x, na, alpha, ratio) - power, 1e-9, 10.0
    )
    power_means.append(
        {
            "kind": "mde",
            "std_dev": sd,
            "n_a": na,
            "n_b": nb,
            "alpha": alpha,
            "power": power,
            "expected": {"effect_size": d, "absolute_effect": d * sd},
        }
    )
for effect, sd, alpha, power, ratio in [(0.5, 3.0, 0.05, 0.8, 1.0), (2.0, 120.0, 0.01, 0.8, 0.5)]:
    n1 = NormalIndPower().solve_power(
        effect_size=effect / sd, nobs1=None, alpha=alpha, power=power, ratio=ratio
    )
    n1 = check_solver(
        float(n1),
        lambda n: NormalIndPower().power(effect / sd, n, alpha, ratio) - power,
        2.0,
        1e9,
    )
    power_means.append(
        {
            "kind": "sample_size",
            "absolute_effect": effect,
            "std_dev": sd,
            "alpha": alpha,
            "power": power,
            "ratio": ratio,
            "expected": {"effect_size": effect / sd, "n_a": n1, "n_b": n1 * ratio},
        }
    )

# --- paired binary ---------------------------------------------------------------

mcnemar_cases = []
for both, only_a, only_b, neither in [
    (40, 3, 11, 46),
    (70, 0, 6, 24),
    (12, 12, 12, 64),
    (55, 0, 0, 45),
    (300, 20, 38, 142),
    (4000, 150, 110, 740),
]:
    exact = only_a + only_b < 25
    res = mcnemar([[both, only_a], [only_b, neither]], exact=exact, correction=True)
    mcnemar_cases.append(
        {
            "counts": {"both": both, "only_a": only_a, "only_b": only_b, "neither": neither},
            "expected": {
                "statistic": float(res.statistic),
                "p_value": float(res.pvalue),
                "method": "exact_binomial" if exact else "chi_square",
            },
        }
    )

# --- drift: two-sample KS and chi-square of independence ---------------------
# Drawn after every other family so the earlier cases keep their inputs.

ks_cases = []
for name, a, b in [
    ("same_normal_40_55", draw(rng.normal(0, 1, 40)), draw(rng.normal(0, 1, 55))),
    ("shifted_normal_300_300", draw(rng.normal(0, 1, 300)), draw(rng.normal(0.3, 1, 300))),
    ("lognormal_scale_800_1200", draw(rng.lognormal(5.7, 0.5, 800)), draw(rng.lognormal(5.9, 0.5, 1200))),
    ("ties_integers_200_150", rng.integers(0, 8, 200).astype(float), rng.integers(1, 9, 150).astype(float)),
    ("tiny_3_4", np.array([1.0, 2.0, 3.0]), np.array([2.5, 4.0, 5.0, 6.0])),
]:
    res = stats.ks_2samp(a, b, method="auto")
    ks_cases.append(
        {
            "name": name,
            "a": arr(a),
            "b": arr(b),
            "expected": {"statistic": float(res.statistic), "p_value": float(res.pvalue), "method": "exact"},
        }
    )

kolmogorov = [{"lambda": x, "sf": float(stats.kstwobign.sf(x))} for x in [0.3, 0.5, 0.8, 1.0, 1.36, 1.63, 2.5]]

chi2_independence = []
for table in [
    [[120, 80, 15], [100, 95, 30]],
    [[500, 20], [480, 45]],
    [[30, 0, 12, 7], [25, 3, 20, 9]],
    [[9000, 700, 300], [8800, 900, 250]],
]:
    stat, p, dof, _ = stats.chi2_contingency(table, correction=False)
    chi2_independence.append(
        {"table": table, "expected": {"statistic": float(stat), "df": int(dof), "p_value": float(p)}}
    )

values = {
    "versions": {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
    },
    "proportions": proportions,
    "proportion_intervals": proportion_intervals,
    "welch": welch,
    "welch_from_summary": welch_from_summary,
    "mean_intervals": mean_intervals,
    "mann_whitney": mann_whitney,
    "wilcoxon": wilcoxon,
    "quantiles": quantiles,
    "bootstrap": bootstrap,
    "srm": srm,
    "holm": holm,
    "rho_for_target": rho_targets,
    "sequential": sequential,
    "power_proportions": power_proportions,
    "power_means": power_means,
    "mcnemar": mcnemar_cases,
    "ks_2samp": ks_cases,
    "kolmogorov_sf": kolmogorov,
    "chi2_independence": chi2_independence,
}
# One case per line: readable diffs without a line per array element.
lines = []
for key, value in values.items():
    if isinstance(value, list):
        body = ",\n".join("  " + json.dumps(case) for case in value)
        lines.append(f"{json.dumps(key)}: [\n{body}\n ]")
    else:
        lines.append(f"{json.dumps(key)}: {json.dumps(value)}")
OUT.write_text("{\n " + ",\n ".join(lines) + "\n}\n")
print(f"wrote {OUT}")
