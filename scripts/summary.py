"""Collect the per-data-set `climd report` CSVs of results/ into the README's summary tables.

    python scripts/summary.py [results]      (prints Markdown)

It reads reports written by the current `climd report` (paired CSVs with CIs, corrected-t, Wilcoxon
and Holm p-values; chosen.csv for per-replicate choices). Conventions it relies on:

* tuned-lr tables: the lr of method X chosen on validation per replicate is the `climd report
  --choose 'X@tuned=X,X+lr*'` variant ``X@tuned``; without it, the mean-over-replicates choice
  recorded by `climd select --record` in selection.json is used.
* results/<ds>/best-on-validation: `--choose 'climd-chosen=...' --choose 'baseline-chosen=...'
  --reference baseline-chosen`.
"""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pandas as pd

DATASETS = ["brca", "kipan", "lgg", "rosmap", "derm7pt"]
TUNED = "@tuned"
CHOSEN_CLIMD, CHOSEN_BASELINE = "climd-chosen", "baseline-chosen"
ROWS = [  # (label, variant at the paper's lr = the name its lr choice is recorded under, table)
    ("Baseline (early fusion, CE)", "baseline", "table2"),
    ("CLIMD, literal (capped, no redistribution)", "climd.literal", "variants"),
    ("CLIMD (redistribution; default)", "climd", "table2"),
    ("CLIMD + out-of-fold scoring", "climd.oof", "variants"),
    ("CLIMD + budget steps", "climd+steps", "table2"),
    ("CLIMD + finish 20 epochs", "climd+finish20", "variants"),
    ("CLIMD, all corrections (oof, zscore, steps, finish 20)", "climd.oof-zscore+steps+finish20", "variants"),
    ("control: CLIMD schedule, random order", "climd.random", "variants"),
    ("control: random order + budget steps", "climd.random+steps", "variants"),
    ("Random undersampling", "baseline+undersample", "table2"),
    ("SMOTE", "baseline+smote", "table2"),
    ("VAE oversampling", "baseline+vae", "table2"),
    ("WCE loss", "baseline+wce", "table2"),
    ("Focal loss", "baseline+focal", "table2"),
    ("reference: logistic regression, class-balanced", "logreg-balanced", "table2"),
    ("reference: SMOTE + logistic regression", "smote-logreg", "table2"),
]


@lru_cache(maxsize=None)
def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


@lru_cache(maxsize=None)
def _selections(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def cell(table: pd.DataFrame | None, variant: str, metric: str = "f1_macro") -> str:
    row = None if table is None else table[table.variant == variant]
    if row is None or row.empty:
        return "–"
    r = row.iloc[0]
    return f"{100 * r[metric + '_mean']:.1f} ± {100 * r[metric + '_std']:.1f}"


def tuned_name(root: Path, ds: str, base: str, table: pd.DataFrame | None) -> str:
    if table is not None and (table.variant == base + TUNED).any():
        return base + TUNED
    return _selections(root / ds / "selection.json").get(base, {}).get("chosen", base)


def _header(first: str) -> None:
    names = [d.upper() if d != "derm7pt" else "Derm7pt" for d in DATASETS]
    print(f"| {first} | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(DATASETS))


def main(root: Path) -> None:
    for mode in ("paper-lr", "tuned-lr"):
        head = "paper's lr 5e-5" if mode == "paper-lr" else "lr chosen on the validation split, per method"
        print(f"\nMacro-F1 (%), test split, mean ± std over replicates, {head}:\n")
        _header("method")
        for label, variant, table in ROWS:
            cells = []
            for ds in DATASETS:
                t = _csv(root / ds / f"{table}-{mode}" / "report.csv")
                name = variant if mode == "paper-lr" or "logreg" in variant else tuned_name(root, ds, variant, t)
                cells.append(cell(t, name))
            print(f"| {label} | " + " | ".join(cells) + " |")


PAIRS = [  # (label, variant, reference, table): paired macro-F1 differences at the paper's lr
    ("CLIMD − Baseline", "climd", "baseline", "table2"),
    ("CLIMD literal − Baseline", "climd.literal", "baseline", "variants"),
    ("CLIMD + steps − Baseline", "climd+steps", "baseline", "table2"),
    ("CLIMD all corrections − Baseline", "climd.oof-zscore+steps+finish20", "baseline", "variants"),
    ("random order − CLIMD (same schedule)", "climd.random", "climd", "variants"),
    ("random + steps − CLIMD + steps", "climd.random+steps", "climd+steps", "variants"),
    ("SMOTE − Baseline", "baseline+smote", "baseline", "table2"),
]


def _num(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def format_pair(r, metric: str = "f1_macro") -> str:
    """'+1.9 [-2.0, +5.8] (p 0.312; Holm 0.936)': difference in points, 95 % CI, t p, Holm p."""
    d, lo, hi = r[f"d_{metric}"], r[f"ci_low_{metric}"], r[f"ci_high_{metric}"]
    if not _num(d):
        return "–"
    ci = f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" if _num(lo) else ""
    p, holm = r[f"p_t_{metric}"], r[f"p_holm_{metric}"]
    return f"{100 * d:+.1f}{ci} (p {p:.3f}; Holm {holm:.3f})" if _num(p) else f"{100 * d:+.1f}{ci}"


def paired_row(folder: Path, variant: str, ref: str):
    """The row of `variant` in the report's paired_vs_<ref>.csv (its Holm family is that report's
    table), or, without that file, the same statistics recomputed from runs.csv over all its variants."""
    comp = _csv(folder / f"paired_vs_{ref}.csv")
    if comp is None:
        from stages import report

        runs = _csv(folder / "runs.csv")
        if runs is None or ref not in set(runs.variant):
            return None
        comp = report.paired(runs, ref)
    row = comp[comp.variant == variant]
    return None if row.empty else row.iloc[0]


def paired(root: Path) -> None:
    print("\nPaired macro-F1 difference (points) at the paper's lr [95 % CI] (t-test p; Holm-adjusted p over the "
          "comparisons of that report). The t-test is the Nadeau–Bengio corrected one where the replicates are "
          "resplits, the paired t-test where they are seeds of one split:\n")
    _header("comparison")
    for label, variant, ref, table in PAIRS:
        cells = []
        for ds in DATASETS:
            r = paired_row(root / ds / f"{table}-paper-lr", variant, ref)
            cells.append("–" if r is None else format_pair(r))
        print(f"| {label} | " + " | ".join(cells) + " |")


def picks(folder: Path, name: str) -> str:
    """How often each candidate was chosen on validation across replicates: 'a ×3, b ×2'."""
    chosen = _csv(folder / "chosen.csv")
    if chosen is None:
        return "–"
    counts = Counter(chosen[chosen.name == name].chosen.dropna())
    return ", ".join(f"`{v}` ×{n}" for v, n in counts.most_common())


def best_on_validation(root: Path) -> None:
    print("\nCLIMD (variant and lr) and Baseline (lr) chosen on the validation split within each replicate, "
          "test macro-F1 % and the paired difference [95 % CI] (t-test p; Holm):\n")
    print("| data set | CLIMD chosen (replicates) | its macro-F1 | Baseline chosen (replicates) | its macro-F1 | difference |")
    print("|---|---|---|---|---|---|")
    for ds in DATASETS:
        folder = root / ds / "best-on-validation"
        t = _csv(folder / "report.csv")
        r = paired_row(folder, CHOSEN_CLIMD, CHOSEN_BASELINE)
        print(f"| {ds} | {picks(folder, CHOSEN_CLIMD)} | {cell(t, CHOSEN_CLIMD)} | {picks(folder, CHOSEN_BASELINE)} | "
              f"{cell(t, CHOSEN_BASELINE)} | {'–' if r is None else format_pair(r)} |")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    main(root)
    paired(root)
    best_on_validation(root)
