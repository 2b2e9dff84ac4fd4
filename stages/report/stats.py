"""Paired comparisons over replicates: mean difference with a confidence interval, a t-test whose
variance suits how the replicates were made, the Wilcoxon signed-rank test, and Holm's step-down
adjustment across the comparisons of one table.

``d`` is always the vector of paired differences (variant − reference), one per replicate.

* **Nadeau–Bengio corrected resampled t-test** (Nadeau & Bengio 2003, Machine Learning 52:239) when
  the replicates are train/test resplits of the same data. Their training sets overlap, so the
  differences are positively correlated and the ordinary variance σ̂²/J is too small. The corrected
  variance of the mean is (1/J + n_test/n_train) σ̂², with σ̂² the sample variance (ddof 1) of the J
  differences; t = mean / sqrt((1/J + n_test/n_train) σ̂²) on J − 1 degrees of freedom, and the CI is
  mean ± t_{J−1, 0.975} times the same corrected standard error.
* **Ordinary paired t-test** (``ratio=None``) when every pair comes from one split (seeds of one run):
  the variance is σ̂²/J and covers training randomness only, not the choice of split.
* **Wilcoxon signed-rank** (scipy, two-sided). With n non-zero differences and no ties its smallest
  attainable p is 2/2^n (all signs alike): 0.0625 for n = 5, so n ≤ 5 can never reach 0.05.
* **Holm–Bonferroni**: with the m defined p-values of one family sorted p_(1) ≤ … ≤ p_(m),
  p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j)). Undefined p-values are left out of the family.
"""
from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
ALPHA = 0.05
NADEAU_BENGIO, PAIRED_T = "nadeau-bengio", "paired-t"


def t_test(d, ratio: float | None = None, level: float = LEVEL) -> dict:
    """Mean of ``d`` with its ``level`` CI and two-sided t-test p against 0.

    ``ratio`` = n_test/n_train gives the Nadeau–Bengio corrected test; ``None`` the ordinary paired
    t-test. Fewer than 2 differences: everything but the mean is NaN. Zero variance: p is 1 when
    the mean is 0, else undefined (NaN: a constant difference tests nothing), and the CI is the mean."""
    from scipy.stats import t as t_dist

    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    out = {"test": PAIRED_T if ratio is None else NADEAU_BENGIO, "n": n,
           "mean": float(d.mean()) if n else math.nan, "sd": math.nan, "se": math.nan, "t": math.nan,
           "df": n - 1 if n >= 2 else math.nan, "p": math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "ratio": math.nan if ratio is None else float(ratio)}
    if n < 2:
        return out
    if ratio is not None and not (ratio >= 0 and math.isfinite(ratio)):
        raise ValueError(f"n_test/n_train must be a finite number >= 0, got {ratio}")
    sd = float(d.std(ddof=1))
    se = math.sqrt((1.0 / n + (ratio or 0.0)) * sd ** 2)
    out.update(sd=sd, se=se)
    if se == 0.0:
        out.update(p=1.0 if out["mean"] == 0.0 else math.nan, ci_low=out["mean"], ci_high=out["mean"])
        return out
    t = out["mean"] / se
    q = float(t_dist.ppf(0.5 + level / 2, n - 1))
    out.update(t=t, p=float(2 * t_dist.sf(abs(t), n - 1)), ci_low=out["mean"] - q * se,
               ci_high=out["mean"] + q * se)
    return out


def wilcoxon(d) -> dict:
    """Two-sided Wilcoxon signed-rank p (scipy; zeros dropped, the 'wilcox' rule) and the smallest p
    this many non-zero differences can ever give (2/2^n; 1 when n = 0)."""
    d = np.asarray(d, dtype=np.float64)
    nonzero = int(np.count_nonzero(d))
    out = {"p": math.nan, "n_nonzero": nonzero, "min_p": min(1.0, 2.0 / 2 ** nonzero)}
    if len(d) < 2:
        return out
    if nonzero == 0:
        out["p"] = 1.0
        return out
    from scipy.stats import wilcoxon as scipy_wilcoxon

    out["p"] = float(scipy_wilcoxon(d, alternative="two-sided").pvalue)
    return out


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order; NaN stays NaN and is not counted."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def can_reach(min_p: float, alpha: float = ALPHA) -> bool:
    return min_p < alpha
