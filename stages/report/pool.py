"""``climd pool``: one answer across data sets, from the verdict reports of ``climd report``.

For each data set (a report folder), each comparison (variant, reference) of its ``paired_vs_*.csv``
is recomputed from ``runs.csv`` (every replicate's metric, with ``n_train``/``n_test``): the (run,
seed) differences are averaged per run, effect = their mean over the J runs, and its variance the
Nadeau–Bengio one, (1/J + mean n_test/n_train)·s² (the square of the Bayesian posterior's scale).
The effects of the data sets are then pooled by a random-effects meta-analysis (statsmodels
``combine_effects``, Paule–Mandel τ², modified Hartung–Knapp interval on k − 1 df: the HK variance
never below the random-effects one, Röver et al. 2015; the plain HK interval is kept beside it),
decided against ±δ as
``decision.decide`` does (P(worse/equivalent/better) under t_{k−1}(pooled mean, HK standard
error); a confidence distribution, not a Bayesian posterior). Also: a forest plot per comparison and a
critical-difference diagram of every method over the data sets (autorank, Friedman + Nemenyi; it
needs at least 5 data sets).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from stages.core.hashing import file_sha256
from stages.errors import DataError, MissingArtifactError, UsageError
from stages.report import collect as report
from stages.report import decision
from stages.store.artifacts import package_versions
from stages.store.atomic import atomic_dir, atomic_write_json

CD_MIN_DATASETS = 5          # autorank refuses fewer performance estimations (rows)


def read_report(folder: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """runs.csv and the (variant, reference) comparisons of a report folder."""
    folder = Path(folder)
    runs = folder / "runs.csv"
    if not runs.is_file():
        raise MissingArtifactError(f"{runs} does not exist: {folder} is not a `climd report` folder",
                                   fix="pass folders written by `climd report --reference ...` (e.g. results/brca/verdict)")
    rows = _csv(runs)
    bad = [c for c in ("n_train", "n_test") if c in rows and not pd.api.types.is_numeric_dtype(rows[c])]
    if bad:
        raise DataError(f"{runs}: column {bad[0]} is not numeric", fix="rewrite it with `climd report`")
    missing = {"run", "variant", "seed", "n_train", "n_test"} - set(rows.columns)
    if missing:
        raise DataError(f"{runs} lacks the column(s) {sorted(missing)}", fix="rewrite it with a current `climd report`")
    pairs = []
    for path in sorted(folder.glob("paired_vs_*.csv")):
        table = _csv(path)
        for col in ("variant", "reference"):
            if col not in table:
                raise DataError(f"{path} has no column {col!r}", fix="rewrite it with `climd report`")
        pairs += [(v, r) for v, r in zip(table.variant, table.reference)
                  if (v, r) not in pairs and (r, v) not in pairs]
    if not pairs:
        raise MissingArtifactError(f"{folder} holds no paired_vs_*.csv", fix="rerun `climd report` with --reference")
    return rows, pairs


def _csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV ({exc})", fix="rewrite it with `climd report`") from None


def effect(rows: pd.DataFrame, variant: str, reference: str, metric: str, delta: float, source: str = "") -> dict:
    """One data set's effect of one comparison: per-run differences, their mean and NB variance."""
    if metric not in rows:
        raise UsageError(f"metric {metric!r} is not a column of {source or 'runs.csv'}",
                         fix=f"choose one of {[c for c in rows.columns if rows[c].dtype.kind == 'f']}")
    if not pd.api.types.is_numeric_dtype(rows[metric]):
        raise DataError(f"{source or 'runs.csv'}: column {metric} is not numeric", fix="rewrite it with `climd report`")
    a = rows[rows.variant == variant].set_index(["run", "seed"])
    b = rows[rows.variant == reference].set_index(["run", "seed"])
    common = a.index.intersection(b.index)
    d = (a.loc[common, metric].astype(float) - b.loc[common, metric].astype(float)).dropna()
    per_run = d.groupby(level="run").mean()
    sizes = a.loc[common, ["n_train", "n_test"]].astype(float).groupby(level="run").mean()
    J = len(per_run)
    ratio = decision.ratio_of(sizes.n_train, sizes.n_test) if J else math.nan
    dec = decision.decide(per_run.to_numpy(), delta, ratio) if J else {}
    return {"variant": variant, "reference": reference, "J": J, "ratio": ratio,
            "effect": float(per_run.mean()) if J else math.nan,
            "variance": dec.get("scale", math.nan) ** 2 if J else math.nan,
            **{k: dec.get(k, math.nan) for k in ("p_worse", "p_equivalent", "p_better", "decision",
                                                 "gain_ruled_out", "loss_ruled_out")}}


def meta(effects: np.ndarray, variances: np.ndarray, delta: float, names=None) -> dict:
    """Random-effects pooling (statsmodels ``combine_effects``, Paule–Mandel τ²) with the Hartung–Knapp
    interval, and the decision against ±δ under t_{k−1}(mean, HK standard error).

    The decision and ci_low/ci_high use the *modified* HK standard error sqrt(max(HK variance,
    1/Σ_i w_i)), w_i = 1/(v_i + τ²); statsmodels' plain HK interval is kept as ci_*_hk_plain."""
    from scipy.stats import t as t_dist
    from statsmodels.stats.meta_analysis import combine_effects

    k = len(effects)
    out = {"k": k, "mean": math.nan, "se_hk": math.nan, "tau2": math.nan, "i2": math.nan, "q": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "ci90_low": math.nan, "ci90_high": math.nan,
           "delta": delta, "p_worse": math.nan, "p_equivalent": math.nan, "p_better": math.nan,
           "decision": decision.NO_TEST}
    if k < 2 or not np.all(np.asarray(variances) > 0):
        return out
    res = combine_effects(np.asarray(effects, float), np.asarray(variances, float), method_re="iterated",
                          row_names=names, use_t=True)
    hk = res.conf_int(alpha=0.05, use_t=True)[3]                  # statsmodels' Hartung–Knapp, as is
    # modified HK (Röver, Knapp, Friede 2015): the HK variance never below the random-effects one,
    # 1/Σ w; plain HK shrinks with the observed spread, which is tiny when Q < k − 1
    se = math.sqrt(max(res.var_hksj_re, res.var_eff_w_re))
    q975, q95 = (float(t_dist.ppf(x, k - 1)) for x in (0.975, 0.95))
    m = float(res.mean_effect_re)
    ci, ci90 = (m - q975 * se, m + q975 * se), (m - q95 * se, m + q95 * se)
    out.update(se_hk_plain=math.sqrt(res.var_hksj_re), ci_low_hk_plain=float(hk[0]), ci_high_hk_plain=float(hk[1]),
               se_re=math.sqrt(res.var_eff_w_re))
    post = {"df": k - 1, "loc": m, "scale": se}
    worse, equiv, better = decision.probabilities(post, delta)
    named = ((decision.BETTER, better), (decision.EQUIVALENT, equiv), (decision.WORSE, worse))
    q95 = float(t_dist.ppf(decision.LEVEL, k - 1)) * se
    out.update(mean=m, se_hk=se, tau2=float(res.tau2), q=float(res.q),
               i2=float(max(0.0, (res.q - (k - 1)) / res.q)) if res.q > 0 else 0.0,
               ci_low=float(ci[0]), ci_high=float(ci[1]), ci90_low=float(ci90[0]), ci90_high=float(ci90[1]),
               p_worse=worse, p_equivalent=equiv, p_better=better,
               decision=next((n for n, p in named if p >= decision.LEVEL), decision.INCONCLUSIVE),
               gain_ruled_out=post["loc"] + q95, loss_ruled_out=post["loc"] - q95)
    return out


def pool(folders: list[Path], names: list[str] | None = None, metric: str = "f1_macro",
         delta: float = decision.DEFAULT_DELTA_POINTS / 100) -> dict:
    """Every comparison present in all folders: per-data-set effects and the pooled meta-analysis."""
    if len(folders) < 2:
        raise UsageError("pooling needs the reports of at least two data sets", fix="pass two or more report folders")
    names = names or [_name(Path(f)) for f in folders]
    if len(set(names)) != len(names):
        raise UsageError(f"two folders have the same data-set name ({names})", fix="give --name once per folder")
    reports = {n: read_report(f) for n, f in zip(names, folders)}
    shared = [p for p in next(iter(reports.values()))[1] if all(p in r[1] or p[::-1] in r[1] for r in reports.values())]
    if not shared:
        raise DataError("no comparison (variant, reference) is in every report", fix="report the same variants on every data set")
    inputs = [{"dataset": n, **effect(rows, v, r, metric, delta, str(Path(f) / "runs.csv"))}
              for (n, (rows, _)), f in zip(reports.items(), folders) for v, r in shared]
    inputs = pd.DataFrame(inputs)
    pooled = []
    for v, r in shared:
        sub = inputs[(inputs.variant == v) & (inputs.reference == r)].dropna(subset=["effect", "variance"])
        pooled.append({"variant": v, "reference": r, "metric": metric,
                       **meta(sub.effect.to_numpy(), sub.variance.to_numpy(), delta, list(sub.dataset))})
    diffs = pd.concat([report.differences(rows, r, [v], metric).assign(dataset=n)
                       for n, (rows, _) in reports.items() for v, r in shared], ignore_index=True)
    chosen = [optimism(f, rows, n) for (n, (rows, _)), f in zip(reports.items(), folders)]
    chosen = pd.concat(chosen, ignore_index=True) if any(len(c) for c in chosen) else pd.DataFrame()
    means = pd.DataFrame({n: rows.groupby("variant")[metric].mean() for n, (rows, _) in reports.items()}).T
    methods = sorted({x for p in shared for x in p})
    return {"inputs": inputs, "pooled": pd.DataFrame(pooled), "means": means[[m for m in methods if m in means]],
            "optimism": chosen, "differences": diffs[["dataset", *diffs.columns[:-1]]],
            "names": names, "metric": metric, "delta": delta}


def optimism(folder: Path, rows: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per --choose NAME of a report: its panel size, the chosen candidates' mean validation score, their
    mean test score and the difference (the selection's optimism), from chosen.csv and runs.csv."""
    path = Path(folder) / "chosen.csv"
    if not path.is_file():
        return pd.DataFrame()
    chosen = pd.read_csv(path)
    out = []
    for name, group in chosen.groupby("name", sort=False):
        metric = group.metric.iloc[0]
        test = rows[rows.variant == name].set_index(["run", "seed"])[metric]
        g = group.set_index(["run", "seed"]).join(test.rename("test_score"), how="inner").dropna(subset=["valid_score"])
        out.append({"dataset": dataset, "name": name, "metric": metric, "candidates": int(group.eligible.max()),
                    "replicates": len(g), "valid_mean": g.valid_score.mean(), "test_mean": g.test_score.mean(),
                    "optimism": (g.valid_score - g.test_score).mean()})
    return pd.DataFrame(out)


def _name(folder: Path) -> str:
    """results/brca/verdict -> brca (the folder above a report folder named like a report)."""
    return folder.parent.name if folder.name in ("verdict", "report") and folder.parent.name else folder.name


def write(result: dict, out: Path, folders: list[Path], command: str, versions: dict) -> Path:
    """pooled.csv, pooled.md, inputs.csv, differences.csv, means.csv, optimism.csv, forest.png, cd.png (or the
    reason there is none),
    meta.json with the inputs' hashes; one atomic folder."""
    from stages.report import pool_plots

    out = Path(out)
    with atomic_dir(out) as tmp:
        result["inputs"].to_csv(tmp / "inputs.csv", index=False, float_format="%.10g")
        result["differences"].to_csv(tmp / "differences.csv", index=False, float_format="%.10g")
        result["pooled"].to_csv(tmp / "pooled.csv", index=False, float_format="%.10g")
        result["means"].to_csv(tmp / "means.csv", index_label="dataset", float_format="%.10g")
        if len(result["optimism"]):
            result["optimism"].to_csv(tmp / "optimism.csv", index=False, float_format="%.10g")
        pool_plots.forest(result, tmp / "forest.png")
        cd_note = pool_plots.cd_diagram(result["means"], tmp / "cd.png", CD_MIN_DATASETS)
        (tmp / "pooled.md").write_text(pool_plots.markdown(result, command, cd_note))
        atomic_write_json(tmp / "meta.json", {
            "command": command, "versions": {**versions, **package_versions("statsmodels", "autorank")}, "metric": result["metric"], "delta": result["delta"],
            "datasets": {n: {"folder": str(f), "runs.csv": file_sha256(Path(f) / "runs.csv")}
                         for n, f in zip(result["names"], folders)},
            "cd_diagram": cd_note})
    return out
