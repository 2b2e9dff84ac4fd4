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
