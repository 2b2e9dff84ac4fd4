"""Decisions with a margin fixed in advance: is a variant better, equivalent or worse than a reference?

``d`` are the J per-replicate differences (variant − reference) on the metric's own scale (0–1), and
``delta`` the margin on the same scale (``--delta 2`` points = 0.02).

* **Bayesian correlated t-test** (Benavoli, Corani, Demšar, Zaffalon, JMLR 18(77), 2017, §4): with a
  flat prior, the posterior of the mean difference μ is Student-t with J − 1 degrees of freedom,
  location mean(d) and scale² = (1/J + ρ/(1 − ρ))·s², s² the sample variance (ddof 1) of d and ρ the
  correlation of two replicates' differences, taken as the test fraction n_test/(n_train + n_test);
  so ρ/(1 − ρ) = n_test/n_train, the Nadeau–Bengio term. P(worse) = P(μ < −δ), P(equivalent) =
  P(−δ ≤ μ ≤ δ), P(better) = P(μ > δ). The decision is the one that reaches ``LEVEL`` (0.95), else
  *inconclusive*; either way the 95 % posterior bounds say which gain (and which loss) the data rule
  out: P(μ > gain_ruled_out) = 0.05.
* **TOST** (two one-sided tests, Schuirmann 1987) with the same Nadeau–Bengio standard error:
  p_low = P(T ≥ (mean + δ)/se), p_high = P(T ≤ (mean − δ)/se), p_tost = max of the two; equivalence
  at α = 0.05 ⇔ the 90 % interval mean ± t_{J−1, 0.95}·se lies inside (−δ, δ). Holm across a table.
  (statsmodels' ``ttost_paired`` and pingouin's ``tost`` use the uncorrected s²/J: too narrow for
  resplits.)
* **Seeds per replicate** (``two_level``): with K_j seeds in replicate j, d_jk = μ + a_j + e_jk, the
  split effects a_j correlated as above, the seed noise e_jk independent with variance σ²_seed.
  Var(d̄) ≈ (1/J + ρ/(1 − ρ))·σ²_split + σ²_seed·mean(1/K_j)/J (derived in docs/statistics.md).
"""
from __future__ import annotations

import math

import numpy as np

from stages.report import stats

LEVEL = 0.95
DEFAULT_DELTA_POINTS = 2.0           # metric points; the reasons are in docs/statistics.md
BETTER, EQUIVALENT, WORSE, INCONCLUSIVE, NO_TEST = "better", "equivalent", "worse", "inconclusive", "n/a"


def ratio_of(n_train, n_test) -> float:
    """ρ/(1 − ρ) = n_test/n_train with ρ = n_test/(n_train + n_test), averaged over replicates."""
    n_train, n_test = np.asarray(n_train, dtype=float), np.asarray(n_test, dtype=float)
    if np.any(~np.isfinite(n_train)) or np.any(n_train <= 0) or np.any(n_test < 0):
        raise ValueError(f"n_train must be > 0 and n_test >= 0, got {n_train.tolist()} and {n_test.tolist()}")
    return float(np.mean(n_test / n_train))


def test_fraction(ratio: float) -> float:
    """ρ from ρ/(1 − ρ)."""
    return ratio / (1.0 + ratio)


def posterior(d, ratio: float = 0.0) -> dict:
    """Student-t posterior of the mean difference: {df, loc, scale}. ``ratio`` = n_test/n_train (0:
    independent replicates, e.g. seeds of one split). Fewer than 2 differences: df and scale NaN."""
    d = np.asarray(d, dtype=np.float64)
    J = len(d)
    if not (math.isfinite(ratio) and ratio >= 0):
        raise ValueError(f"n_test/n_train must be a finite number >= 0, got {ratio}")
    if J < 2:
        return {"df": math.nan, "loc": float(d.mean()) if J else math.nan, "scale": math.nan, "n": J}
    return {"df": J - 1, "loc": float(d.mean()), "scale": math.sqrt((1.0 / J + ratio) * d.var(ddof=1)), "n": J}


def probabilities(post: dict, delta: float) -> tuple[float, float, float]:
    """(P(μ < −δ), P(−δ ≤ μ ≤ δ), P(μ > δ)) under ``post``; a zero scale is a point mass at loc."""
    from scipy.stats import t as t_dist

    loc, scale = post["loc"], post["scale"]
    if math.isnan(scale):
        return (math.nan,) * 3
    if scale == 0.0:
        return float(loc < -delta), float(-delta <= loc <= delta), float(loc > delta)
    worse = float(t_dist.cdf(-delta, post["df"], loc=loc, scale=scale))
    better = float(t_dist.sf(delta, post["df"], loc=loc, scale=scale))
    return worse, max(0.0, 1.0 - worse - better), better


def decide(d, delta: float, ratio: float = 0.0, level: float = LEVEL) -> dict:
    """The decision for one comparison (plain function: ``climd report`` and ``climd compare`` call it).

    Returns delta, p_worse, p_equivalent, p_better, decision (better / equivalent / worse when its
    probability reaches ``level``, else inconclusive; n/a with fewer than 2 differences), the posterior
    (df, loc, scale) and gain_ruled_out / loss_ruled_out: the posterior's upper and lower
    ``level`` bounds (P(μ > gain_ruled_out) = 1 − level)."""
    from scipy.stats import t as t_dist

    if not (math.isfinite(delta) and delta >= 0):
        raise ValueError(f"delta must be a finite number >= 0, got {delta}")
    post = posterior(d, ratio)
    worse, equivalent, better = probabilities(post, delta)
    out = {"delta": float(delta), "p_worse": worse, "p_equivalent": equivalent, "p_better": better,
           "decision": NO_TEST, "df": post["df"], "loc": post["loc"], "scale": post["scale"],
           "gain_ruled_out": math.nan, "loss_ruled_out": math.nan}
    if math.isnan(post["scale"]):
        return out
    named = ((BETTER, better), (EQUIVALENT, equivalent), (WORSE, worse))
    out["decision"] = next((name for name, p in named if p >= level), INCONCLUSIVE)
    q = float(t_dist.ppf(level, post["df"])) * post["scale"]
    out.update(gain_ruled_out=post["loc"] + q, loss_ruled_out=post["loc"] - q)
    return out


def tost(d, delta: float, ratio: float = 0.0, alpha: float = stats.ALPHA) -> dict:
    """Two one-sided tests of |μ| < δ with the Nadeau–Bengio standard error sqrt((1/J + ratio)·s²).

    Returns p_tost (the larger one-sided p), the (1 − 2α) interval (90 % for α = 0.05) and
    ``equivalent`` (p_tost < α ⇔ that interval inside (−δ, δ))."""
    from scipy.stats import t as t_dist

    post = posterior(d, ratio)
    out = {"p_tost": math.nan, "ci90_low": math.nan, "ci90_high": math.nan, "equivalent": False}
    df, m, se = post["df"], post["loc"], post["scale"]
    if math.isnan(se):
        return out
    if se == 0.0:
        inside = -delta < m < delta
        return {"p_tost": 0.0 if inside else 1.0, "ci90_low": m, "ci90_high": m, "equivalent": inside}
    p_low = float(t_dist.sf((m + delta) / se, df))       # H0: μ ≤ −δ
    p_high = float(t_dist.cdf((m - delta) / se, df))     # H0: μ ≥ +δ
    q = float(t_dist.ppf(1 - alpha, df)) * se
    p = max(p_low, p_high)
    return {"p_tost": p, "ci90_low": m - q, "ci90_high": m + q, "equivalent": bool(p < alpha)}


def two_level(diffs, replicates, ratio: float = 0.0, level: float = stats.LEVEL) -> dict:
    """Variance of the mean difference when replicates hold several seeds.

    ``diffs`` are per (replicate, seed) differences, ``replicates`` their replicate labels. The metric
    is averaged per replicate first (J replicate means m_j over K_j seeds). Method-of-moments
    components: σ²_seed = the pooled within-replicate variance (Σ_j Σ_k (d_jk − m_j)² / Σ_j (K_j − 1));
    σ²_split = max(0, s²_m − σ²_seed·mean(1/K_j)), s²_m the sample variance of the m_j.

    Returns J, K (mean seeds), sigma2_split, sigma2_seed (NaN with one seed everywhere), se_plain =
    sqrt((1/J + ratio)·s²_m) (the corrected SE on replicate means), se_two_level =
    sqrt((1/J + ratio)·σ²_split + σ²_seed·mean(1/K_j)/J), and both ``level`` intervals: the plain one
    on J − 1 df, the two-level one on min(J − 1, Satterthwaite df) (df_two_level)."""
    from scipy.stats import t as t_dist

    d = np.asarray(diffs, dtype=np.float64)
    labels = np.asarray(replicates)
    groups = [d[labels == g] for g in dict.fromkeys(labels.tolist())]
    J = len(groups)
    k = np.array([len(g) for g in groups], dtype=float)
    means = np.array([g.mean() for g in groups]) if J else np.array([])
    out = {"J": J, "K": float(k.mean()) if J else math.nan, "mean": float(means.mean()) if J else math.nan,
           "sigma2_split": math.nan, "sigma2_seed": math.nan, "se_plain": math.nan, "se_two_level": math.nan,
           "ci_low_plain": math.nan, "ci_high_plain": math.nan, "ci_low_two_level": math.nan,
           "ci_high_two_level": math.nan, "df_two_level": math.nan}
    if J < 2:
        return out
    s2m = float(means.var(ddof=1))
    inv_k = float(np.mean(1.0 / k))
    q = float(t_dist.ppf(0.5 + level / 2, J - 1))
    se_plain = math.sqrt((1.0 / J + ratio) * s2m)
    out.update(se_plain=se_plain, ci_low_plain=out["mean"] - q * se_plain, ci_high_plain=out["mean"] + q * se_plain)
    within_df = float((k - 1).sum())
    if within_df == 0:
        return out
    seed = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / within_df)
    split = max(0.0, s2m - seed * inv_k)
    c1 = 1.0 / J + ratio
    var = c1 * split + seed * inv_k / J
    df = J - 1.0
    if split > 0 and var > 0:
        # var = c1·s²_m − ratio·mean(1/K)·σ²_seed: a difference of mean squares, so Satterthwaite's df
        # (never more than J − 1); the simulation in tests/report/test_decision.py checks its coverage
        df = min(df, var ** 2 / ((c1 * s2m) ** 2 / (J - 1) + (ratio * inv_k * seed) ** 2 / within_df))
    se2 = math.sqrt(var)
    q2 = float(t_dist.ppf(0.5 + level / 2, df))
    out.update(sigma2_split=split, sigma2_seed=seed, se_two_level=se2, df_two_level=df,
               ci_low_two_level=out["mean"] - q2 * se2, ci_high_two_level=out["mean"] + q2 * se2)
    return out


def projected_half_width(J: int, ratio: float, sigma2_split: float, sigma2_seed: float, K: int,
                         level: float = stats.LEVEL) -> tuple[float, float]:
    """The ``level`` half-width of the interval on the mean difference with K seeds per replicate, from
    the variance components: plain corrected (1/J + ratio)(σ²_split + σ²_seed/K) and two-level
    (1/J + ratio)·σ²_split + σ²_seed/(J·K), both on J − 1 df (a planning figure, not a measurement)."""
    from scipy.stats import t as t_dist

    q = float(t_dist.ppf(0.5 + level / 2, J - 1))
    c1 = 1.0 / J + ratio
    return (q * math.sqrt(c1 * (sigma2_split + sigma2_seed / K)),
            q * math.sqrt(c1 * sigma2_split + sigma2_seed / (J * K)))
