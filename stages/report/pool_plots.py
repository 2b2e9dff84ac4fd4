"""The figures and the Markdown of ``climd pool``: forest plot, critical-difference diagram, table."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from stages.report.plots import _pyplot, _save


def _pts(x, sign: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x * 100:+.1f}" if sign else f"{x * 100:.1f}"


def _p(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def forest(result: dict, path: Path) -> Path:
    """One panel per comparison: each data set's effect ± 95 % NB interval and the pooled diamond
    (Hartung–Knapp 95 %), with the ±δ band shaded. In points."""
    from scipy.stats import t as t_dist

    plt = _pyplot()
    pooled, inputs, delta = result["pooled"], result["inputs"], result["delta"] * 100
    n = len(pooled)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 0.45 * (len(result["names"]) + 3) * rows + 0.6),
                             squeeze=False)
    for ax, (_, p) in zip(axes.flat, pooled.iterrows()):
        sub = inputs[(inputs.variant == p.variant) & (inputs.reference == p.reference)]
        labels = list(sub.dataset) + ["pooled (mHK)"]
        y = list(range(len(labels)))[::-1]
        for yi, (_, r) in zip(y, sub.iterrows()):
            half = t_dist.ppf(0.975, max(r.J - 1, 1)) * math.sqrt(r.variance) * 100
            ax.errorbar(r.effect * 100, yi, xerr=half, fmt="s", color="k", ms=4, capsize=2)
        if not math.isnan(p["mean"]):
            lo, hi, m = p.ci_low * 100, p.ci_high * 100, p["mean"] * 100
            ax.fill([lo, m, hi, m], [y[-1], y[-1] + 0.3, y[-1], y[-1] - 0.3], color="tab:blue")
        ax.axvspan(-delta, delta, color="tab:green", alpha=0.15, lw=0)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(y, labels)
        ax.set_title(f"{p.variant}\nvs {p.reference}: {p.decision}", fontsize=9)
        ax.set_xlabel(f"Δ {result['metric']} (points); band ±δ = {delta:g}", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return _save(fig, path)


def cd_diagram(means: pd.DataFrame, path: Path, minimum: int) -> str:
    """Critical-difference diagram (autorank: Friedman test, Nemenyi post hoc) of every method over the
    data sets. Returns the sentence for the Markdown: what was drawn, or why there is no diagram."""
    if len(means) < minimum:
        return (f"no critical-difference diagram: {len(means)} data sets, autorank needs at least {minimum} "
                "(one mean per method and data set)")
    full = means.dropna(axis=1)
    if full.shape[1] < 2:
        return "no critical-difference diagram: fewer than two methods are present on every data set"
    import contextlib
    import io

    from autorank import autorank, plot_stats

    plt = _pyplot()
    with contextlib.redirect_stdout(io.StringIO()):      # autorank prints its tables; stdout is for paths
        res = autorank(full, alpha=0.05, verbose=False, force_mode="nonparametric")
        ax = plot_stats(res, allow_insignificant=True)
    fig = ax.get_figure()
    fig.set_size_inches(9, 3 + 0.15 * full.shape[1])
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close("all")
    ranks = ", ".join(f"{m} {r:.1f}" for m, r in res.rankdf.meanrank.items())
    return (f"Critical-difference diagram (autorank: Friedman test p = {res.pvalue:.3f}, Nemenyi critical "
            f"difference {res.cd:.2f} mean ranks over {len(full)} data sets; mean ranks, 1 = best: {ranks}): "
            "![critical difference](cd.png)")


def markdown(result: dict, command: str, cd_note: str) -> str:
    pooled, inputs = result["pooled"], result["inputs"]
    k = len(result["names"])
    lines = [f"## Pooled over {k} data sets: {', '.join(result['names'])}", "",
             f"Metric {result['metric']}, margin δ = {result['delta'] * 100:g} points. Per data set: the mean of the J "
             "per-run differences with the Nadeau–Bengio variance (1/J + n_test/n_train)·s². Pooled: random effects "
             "(statsmodels combine_effects, Paule–Mandel τ²), modified Hartung–Knapp 95 % interval on k − 1 df "
             "(HK variance never below the random-effects variance 1/Σw, Röver et al. 2015; statsmodels' plain HK "
             "interval in the last column: it shrinks with the observed spread, tiny when Q < k − 1); P(worse), "
             "P(equivalent), P(better) against ±δ under that t distribution; decided at 0.95. Points.", "",
             "| variant | reference | pooled Δ [95 % mHK CI] | τ² (points²) | Q (k − 1 df) | P(worse) | P(equiv.) | "
             "P(better) | decision | ruled out: above | ruled out: below | plain HK 95 % CI |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, p in pooled.iterrows():
        lines.append(f"| {p.variant} | {p.reference} | {_pts(p['mean'])} [{_pts(p.ci_low)}, {_pts(p.ci_high)}] | "
                     f"{p.tau2 * 1e4:.2f} | {p.q:.2f} | {_p(p.p_worse)} | {_p(p.p_equivalent)} | {_p(p.p_better)} | "
                     f"**{p.decision}** | {_pts(p.get('gain_ruled_out'))} | {_pts(p.get('loss_ruled_out'))} | "
                     f"[{_pts(p.get('ci_low_hk_plain'))}, {_pts(p.get('ci_high_hk_plain'))}] |")
    lines += ["", "Per data set (Bayesian correlated t-test, same δ): Δ, P(equivalent), decision "
                  "(P(worse), P(better) and the gains ruled out are in inputs.csv; the per-run differences in "
                  "differences.csv):", "",
              "| variant | reference | " + " | ".join(result["names"]) + " |", "|---|---|" + "---|" * k]
    for _, p in pooled.iterrows():
        sub = inputs[(inputs.variant == p.variant) & (inputs.reference == p.reference)].set_index("dataset")
        cells = [f"{_pts(sub.loc[n, 'effect'])}, {_p(sub.loc[n, 'p_equivalent'])}, {sub.loc[n, 'decision']}"
                 if n in sub.index else "–"
                 for n in result["names"]]
        lines.append(f"| {p.variant} | {p.reference} | " + " | ".join(cells) + " |")
    lines += ["", "![forest plot](forest.png)", ""]
    opt = result.get("optimism")
    if opt is not None and len(opt):
        wide = opt.pivot(index="name", columns="dataset", values="optimism")[
            [n for n in result["names"] if n in set(opt.dataset)]]
        panel = opt.groupby("name", sort=False).candidates.max()
        lines += ["Selection optimism (points): mean validation score of the candidate chosen per replicate minus "
                  "its test score (chosen.csv and runs.csv of each report).", "",
                  "| chosen | candidates | " + " | ".join(wide.columns) + " |", "|---|---|" + "---|" * len(wide.columns)]
        for name in dict.fromkeys(opt.name):
            lines.append(f"| {name} | {panel[name]} | " + " | ".join(_pts(x) for x in wide.loc[name]) + " |")
        lines += [""]
    lines += [cd_note, "", f"Produced by: `{command}`", ""]
    return "\n".join(lines)
