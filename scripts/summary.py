"""Collect the per-data-set `climd report` CSVs of results/ into the README's summary tables.

    python scripts/summary.py [results]      (prints Markdown)
"""
from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

import pandas as pd

DATASETS = ["brca", "kipan", "lgg", "rosmap", "derm7pt"]
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
def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


@lru_cache(maxsize=None)
def _selections(path: Path) -> dict:
    return json.loads(path.read_text())


def cell(table: pd.DataFrame, variant: str, metric: str = "f1_macro") -> str:
    row = table[table.variant == variant]
    if row.empty:
        return "–"
    r = row.iloc[0]
    return f"{100 * r[metric + '_mean']:.1f} ± {100 * r[metric + '_std']:.1f}"


def tuned_name(root: Path, ds: str, base: str) -> str:
    book = _selections(root / ds / "selection.json")
    return book.get(base, {}).get("chosen", base)


def _header(first: str) -> None:
    names = [d.upper() if d != "derm7pt" else "Derm7pt" for d in DATASETS]
    print(f"| {first} | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(DATASETS))


def main(root: Path) -> None:
    for mode in ("paper-lr", "tuned-lr"):
        head = "paper's lr 5e-5" if mode == "paper-lr" else "lr chosen on the validation split, per method"
        print(f"\nMacro-F1 (%), test split, mean ± std over 5 seeds (TCGA: 5 splits), {head}:\n")
        _header("method")
        for label, variant, table in ROWS:
            cells = []
            for ds in DATASETS:
                t = _csv(root / ds / f"{table}-{mode}" / "report.csv")
                name = variant if mode == "paper-lr" or "logreg" in variant else tuned_name(root, ds, variant)
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


def paired_cell(root: Path, ds: str, variant: str, ref: str, table: str) -> str:
    """The same pairing and test as `climd report`, on that table's replicates."""
    from stages import report

    runs = _csv(root / ds / f"{table}-paper-lr" / "runs.csv")
    row = report.paired(runs[runs.variant.isin([variant, ref])], ref)
    if row.empty:
        return "–"
    r = row.iloc[0]
    return f"{100 * r.d_f1_macro:+.1f} (p {r.p_f1_macro:.3f})"


def paired(root: Path) -> None:
    print("\nPaired macro-F1 difference (points) at the paper's lr, two-sided Wilcoxon p over the 5 replicates "
          "(the smallest possible p is 0.062):\n")
    _header("comparison")
    for label, variant, ref, table in PAIRS:
        print(f"| {label} | " + " | ".join(paired_cell(root, ds, variant, ref, table) for ds in DATASETS) + " |")


def best_on_validation(root: Path) -> None:
    print("\nThe CLIMD variant and lr a user would pick on the validation split, against the tuned Baseline "
          "(test macro-F1 %, paired difference and Wilcoxon p):\n")
    print("| data set | chosen on validation | its macro-F1 | tuned Baseline | difference (p) |")
    print("|---|---|---|---|---|")
    for ds in DATASETS:
        book = _selections(root / ds / "selection.json")
        pick, base = book["best CLIMD variant"]["chosen"], book["baseline"]["chosen"]
        folder = root / ds / "best-on-validation"
        t = pd.read_csv(folder / "report.csv")
        d = pd.read_csv(folder / f"paired_vs_{base}.csv").set_index("variant").loc[pick]
        print(f"| {ds} | `{pick}` | {cell(t, pick)} | {cell(t, base)} (`{base}`) | "
              f"{100 * d.d_f1_macro:+.1f} (p {d.p_f1_macro:.3f}) |")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    main(root)
    paired(root)
    best_on_validation(root)
