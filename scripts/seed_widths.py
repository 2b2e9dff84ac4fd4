"""How the interval of a paired comparison narrows with K training seeds per replicate (issue 22).

Reads ``runs.csv`` of a ``climd report`` over J replicates with (at least) K_max seeds each, and for
K = 1, 3, 5 (the first K seeds of every replicate) prints the plain Nadeau–Bengio 95 % half-width on the
replicate means and the two-level one (split variance corrected, seed variance not; docs/statistics.md),
with the variance components. Usage:

    python scripts/seed_widths.py RUNS_CSV VARIANT REFERENCE [--metric f1_macro] [--ks 1,3,5]
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from stages.report.decision import ratio_of, two_level


def widths(runs: pd.DataFrame, variant: str, reference: str, metric: str, ks: list[int]) -> pd.DataFrame:
    a = runs[runs.variant == variant].set_index(["run", "seed"])
    b = runs[runs.variant == reference].set_index(["run", "seed"])
    common = a.index.intersection(b.index)
    d = ((a.loc[common, metric] - b.loc[common, metric]) * 100).rename("d").reset_index()
    ratio = ratio_of(a.loc[common, "n_train"], a.loc[common, "n_test"])
    rows = []
    for k in ks:
        sub = d[d.groupby("run").seed.rank(method="first") <= k]
        if sub.groupby("run").size().min() < k:
            continue
        out = two_level(sub.d.to_numpy(), sub.run.to_numpy(), ratio)
        rows.append({"K": k, "J": sub.run.nunique(), "mean": out["mean"],
                     "half_plain": (out["ci_high_plain"] - out["ci_low_plain"]) / 2,
                     "half_two_level": (out["ci_high_two_level"] - out["ci_low_two_level"]) / 2,
                     "sigma2_split": out["sigma2_split"], "sigma2_seed": out["sigma2_seed"]})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_csv")
    ap.add_argument("variant")
    ap.add_argument("reference")
    ap.add_argument("--metric", default="f1_macro")
    ap.add_argument("--ks", default="1,3,5")
    args = ap.parse_args()
    table = widths(pd.read_csv(args.runs_csv), args.variant, args.reference, args.metric,
                   [int(k) for k in args.ks.split(",")])
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
