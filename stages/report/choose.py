"""Choosing among candidate variants on the validation split, never on test.

* ``per_replicate``: for each replicate (run, seed), the candidate with the best validation score;
  its *test* metrics then stand for the choice (``virtual_rows``), so the test split is only read
  after the choice is made. A candidate without a validation evaluation in a replicate is not
  eligible there. Ties go to the earlier candidate (pattern priority, then name order).
* ``by_mean``: one candidate for all replicates, by the mean validation score over replicates
  (``climd select``).
"""
from __future__ import annotations

import fnmatch

import numpy as np
import pandas as pd

from stages.errors import MissingArtifactError, UsageError, check_choices
from stages.core.metrics import HEADLINE
from stages.core.names import check_name


def parse(spec: str) -> tuple[str, list[str]]:
    """'NAME=PATTERN[,PATTERN...]' -> (NAME, patterns)."""
    name, sep, patterns = (spec or "").partition("=")
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    if not sep or not name.strip() or not pats:
        raise UsageError(f"--choose {spec!r} is not NAME=PATTERN[,PATTERN...]",
                         fix="e.g. --choose 'climd-chosen=climd*' (fnmatch patterns over variant names, in priority order)")
    return check_name(name.strip(), "--choose name"), pats


def candidates(variants, patterns: list[str]) -> list[str]:
    """Variant names matching the patterns, in priority order (each pattern's matches sorted by name)."""
    names: list[str] = []
    pool = sorted(set(variants))
    for pattern in patterns:
        names += [v for v in pool if fnmatch.fnmatchcase(v, pattern) and v not in names]
    return names


def per_replicate(valid: pd.DataFrame, test: pd.DataFrame, name: str, patterns: list[str],
                  metric: str = "f1_macro") -> tuple[pd.DataFrame, list[str]]:
    """One choice per replicate on ``valid`` rows. Returns (chosen table, warnings).

    The table has one row per replicate: name, run, seed, chosen (None when nothing was eligible),
    metric, valid_score, eligible (how many candidates had a validation score), has_test."""
    check_choices((metric, HEADLINE, "--choose-metric"))
    cands = candidates(list(valid.variant) + list(test.variant), patterns)
    if not cands:
        raise MissingArtifactError(f"--choose {name}: no evaluated variant matches {patterns}",
                                   fix="train and evaluate the candidates (--split valid and --split test) first")
    scores = {(r, s, v): x for r, s, v, x in valid[["run", "seed", "variant", metric]].itertuples(index=False)}
    tested = set(map(tuple, test[["run", "seed", "variant"]].itertuples(index=False)))
    replicates = sorted({(r, s) for r, s, v in scores if v in cands} | {(r, s) for r, s, v in tested if v in cands})
    rows, missing, warnings = [], {}, []
    for run, seed in replicates:
        eligible = []
        for c in cands:
            x = scores.get((run, seed, c))
            if x is None or np.isnan(float(x)):
                missing.setdefault(c, []).append(f"{run}/seed{seed}")
            else:
                eligible.append((c, float(x)))
        if not eligible:
            warnings.append(f"--choose {name}: no candidate has a validation {metric} in {run}/seed{seed}; "
                            "the replicate has no value for it")
            rows.append({"name": name, "run": run, "seed": seed, "chosen": None, "metric": metric,
                         "valid_score": np.nan, "eligible": 0, "has_test": False})
            continue
        best = max(range(len(eligible)), key=lambda i: (eligible[i][1], -i))   # ties: the earlier candidate
        chosen, score = eligible[best]
        has_test = (run, seed, chosen) in tested
        if not has_test:
            warnings.append(f"--choose {name}: {chosen}, chosen in {run}/seed{seed}, has no test evaluation "
                            f"(fix: climd evaluate --run {run} --split test)")
        rows.append({"name": name, "run": run, "seed": seed, "chosen": chosen, "metric": metric,
                     "valid_score": score, "eligible": len(eligible), "has_test": has_test})
    for c, where in missing.items():
        warnings.append(f"--choose {name}: candidate {c} has no validation evaluation in {', '.join(where)}; "
                        f"not eligible there (fix: climd evaluate --run RUN --split valid)")
    return pd.DataFrame(rows), warnings


def virtual_rows(chosen: pd.DataFrame, test: pd.DataFrame, name: str) -> pd.DataFrame:
    """The chosen candidates' test rows, renamed to the virtual variant ``name``."""
    keyed = test.set_index(["run", "seed", "variant"])
    out = []
    for r in chosen[chosen.has_test].itertuples(index=False):
        row = keyed.loc[(r.run, r.seed, r.chosen)].to_dict()
        out.append({"run": r.run, "variant": name, "seed": r.seed, **row, "chosen": r.chosen,
                    "chosen_valid_score": r.valid_score})
    return pd.DataFrame(out)


def by_mean(rows: pd.DataFrame, patterns: list[str], metric: str) -> tuple[str, pd.DataFrame]:
    """The candidate with the best *mean* ``metric`` over replicates (ties: the earlier candidate)."""
    check_choices((metric, HEADLINE, "--metric"))
    names = candidates(rows.variant, patterns)
    if not names:
        raise MissingArtifactError(f"no evaluated variant matches {patterns}",
                                   fix="train and evaluate the candidates on the validation runs first")
    table = rows[rows.variant.isin(names)].groupby("variant")[metric].agg(["mean", "std", "count"])
    table = table.loc[names].reset_index()
    best = table.iloc[int(np.argmax(table["mean"].fillna(-np.inf).to_numpy()))]["variant"]
    return best, table


def optimism(chosen: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, panels: dict[str, list[str]],
             delta: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The selection's optimism: how much better the chosen candidates looked on validation than on test.

    Returns (chosen with ``test_score`` and ``optimism`` = valid_score − test_score per replicate,
    one summary row per NAME, warnings). Summary: replicates, candidates (the most eligible), n_valid
    (mean validation size), valid_mean, test_mean, optimism (their difference), gap_unselected (mean
    valid − test over every candidate and replicate: the gap that is not due to choosing) and excess =
    optimism − gap_unselected, what choosing the maximum of the panel costs. ``panels``: NAME -> its
    --choose patterns. A warning when excess
    exceeds ``delta`` (metric scale): the panel is then too large for its validation split."""
    if chosen is None or not len(chosen):
        return chosen, pd.DataFrame(), []
    metric = chosen.metric.iloc[0]
    tkey = test.set_index(["run", "seed", "variant"])[metric].astype(float)
    vkey = valid.set_index(["run", "seed", "variant"])
    chosen = chosen.copy()
    chosen["test_score"] = [tkey.get((r, s, c), np.nan) if c is not None else np.nan
                            for r, s, c in chosen[["run", "seed", "chosen"]].itertuples(index=False)]
    chosen["optimism"] = chosen.valid_score - chosen.test_score
    rows, warnings = [], []
    for name, group in chosen.groupby("name", sort=False):
        cands = candidates(list(valid.variant) + list(test.variant), panels[name])
        reps = set(zip(group.run, group.seed))
        gaps = [float(vkey.loc[(r, s, c), metric]) - tkey[(r, s, c)] for r, s in reps for c in cands
                if (r, s, c) in vkey.index and (r, s, c) in tkey.index]
        sizes = [vkey.loc[(r, s, c), "n_test"] for r, s, c in zip(group.run, group.seed, group.chosen)
                 if c is not None and (r, s, c) in vkey.index and "n_test" in vkey]
        ok = group.dropna(subset=["valid_score", "test_score"])
        rec = {"name": name, "metric": metric, "replicates": len(ok), "candidates": int(group.eligible.max()),
               "n_valid": float(np.mean(sizes)) if sizes else np.nan, "valid_mean": ok.valid_score.mean(),
               "test_mean": ok.test_score.mean(), "optimism": (ok.valid_score - ok.test_score).mean(),
               "gap_unselected": float(np.mean(gaps)) if gaps else np.nan}
        rec["excess"] = rec["optimism"] - rec["gap_unselected"]
        rows.append(rec)
        if delta is not None and rec["excess"] > delta:
            warnings.append(f"--choose {name}: choosing the best of {rec['candidates']} candidates on "
                            f"{rec['n_valid']:.0f} validation samples looked {rec['excess'] * 100:.1f} points better "
                            f"on validation than on test beyond the candidates' usual gap, more than the margin "
                            f"delta = {delta * 100:g}: the panel is large for its validation split (fewer candidates, "
                            "a larger validation split, or choice by inner cross-validation)")
    return chosen, pd.DataFrame(rows), warnings

