"""Collect the `climd report` outputs of results/ into the summary tables of results/README.md (Markdown).

    python scripts/summary.py [results]

Reads the reports that scripts/reproduce.py writes: results/<ds>/{table2,variants}-{paper,tuned}-lr,
results/<ds>/verdict (the per-replicate choices curriculum-best, formerly climd-best, and noncurriculum-best), results/table3/<ds>,
results/cfcml/<task>/models. Every number is read from those CSVs; nothing is recomputed here.
"""
from __future__ import annotations

import math
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pandas as pd

DATASETS = ["brca", "kipan", "lgg", "rosmap", "derm7pt"]
NAMES = {"brca": "BRCA", "kipan": "KIPAN", "lgg": "LGG", "rosmap": "ROSMAP", "derm7pt": "Derm7pt",
         "derm3": "Derm7pt image + text + 7-point", "derm3oh": "Derm7pt image + one-hot meta + 7-point"}
OURS = "climd.oof-zscore+la-epochprior+steps"
ROWS = [  # (label, variant at the paper's lr, report family)
    ("Baseline (early fusion, CE)", "baseline", "table2"),
    ("CLIMD, literal (capped, no redistribution)", "climd.literal", "variants"),
    ("CLIMD (redistribution; default)", "climd", "table2"),
    ("CLIMD + out-of-fold scoring", "climd.oof", "variants"),
    ("CLIMD + budget steps", "climd+steps", "table2"),
    ("CLIMD + finish 20 epochs", "climd+finish20", "variants"),
    ("CLIMD, all corrections (oof, zscore, steps, finish 20)", "climd.oof-zscore+steps+finish20", "variants"),
    ("control: CLIMD schedule, random order", "climd.random", "variants"),
    ("control: random order + budget steps", "climd.random+steps", "variants"),
    ("CLIMD + steps + logit adjustment", "climd+la+steps", "variants"),
    ("**ours**: CLIMD schedule + LA by the epoch's mix", OURS, "variants"),
    ("Random undersampling", "baseline+undersample", "table2"),
    ("SMOTE", "baseline+smote", "table2"),
    ("VAE oversampling", "baseline+vae", "table2"),
    ("WCE loss", "baseline+wce", "table2"),
    ("Focal loss", "baseline+focal", "table2"),
    ("Logit-adjusted loss (Menon et al. 2021)", "baseline+la", "table2"),
    ("Balanced softmax (Ren et al. 2020)", "baseline+bsm", "table2"),
    ("LDAM-DRW (Cao et al. 2019)", "baseline+ldam-drw", "table2"),
    ("Class-balanced loss (Cui et al. 2019)", "baseline+cb", "table2"),
    ("reference: logistic regression, class-balanced", "logreg-balanced", "table2"),
    ("reference: SMOTE + logistic regression", "smote-logreg", "table2"),
    ("reference: gradient boosting, class-balanced", "hgb-balanced", "table2"),
    ("reference: balanced random forest", "brf", "table2"),
]


@lru_cache(maxsize=None)
def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def _pm(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean * 100:.1f}" if std is None or math.isnan(std) else f"{mean * 100:.1f} ± {std * 100:.1f}"


def cell(report: pd.DataFrame | None, variant: str, metric: str = "f1_macro") -> str:
    if report is None or variant not in set(report.variant):
        return "–"
    row = report[report.variant == variant].iloc[0]
    return _pm(row[f"{metric}_mean"], row[f"{metric}_std"])


def diff(paired: pd.DataFrame | None, variant: str, metric: str = "f1_macro") -> str:
    """Δ [95 % CI] (p) in points, from a paired_vs_<ref>.csv."""
    if paired is None or variant not in set(paired.variant):
        return "–"
    r = paired[paired.variant == variant].iloc[0]
    d, lo, hi, p = (r.get(f"{k}_{metric}") for k in ("d", "ci_low", "ci_high", "p_t"))
    if d is None or math.isnan(d):
        return "–"
    ci = "" if lo is None or math.isnan(lo) else f" [{lo * 100:+.1f}, {hi * 100:+.1f}]"
    pt = "" if p is None or math.isnan(p) else f" (p {p:.3f})" if p >= 0.001 else f" (p {p:.1e})"
    return f"{d * 100:+.1f}{ci}{pt}"


def report(results: Path, ds: str, name: str) -> pd.DataFrame | None:
    return _csv(results / ds / name / "report.csv")


def paired(results: Path, ds: str, name: str, ref: str) -> pd.DataFrame | None:
    return _csv(results / ds / name / f"paired_vs_{ref}.csv")


def best_curriculum(results: Path, ds: str) -> str:
    """The verdict's best-curriculum row: `curriculum-best` (climd compare), `climd-best` (older verdicts)."""
    rep = report(results, ds, "verdict")
    return "curriculum-best" if rep is not None and "curriculum-best" in set(rep.variant) else "climd-best"


def most_chosen(results: Path, ds: str, table: str, name: str) -> str:
    chosen = _csv(results / ds / table / "chosen.csv")
    if chosen is None or name not in set(chosen["name"]):
        return "–"
    counts = Counter(chosen[chosen["name"] == name]["chosen"])
    top, n = counts.most_common(1)[0]
    return f"`{top}` ({n}/{sum(counts.values())})"


def methods_table(results: Path, tuned: bool) -> list[str]:
    suffix = "tuned-lr" if tuned else "paper-lr"
    head = "| method | " + " | ".join(NAMES[d] for d in DATASETS) + " |"
    lines = [head, "|---|" + "---|" * len(DATASETS)]
    for label, variant, family in ROWS:
        name = f"{variant}@tuned" if tuned and not variant.startswith(("logreg", "smote-logreg", "hgb", "brf")) else variant
        cells = [cell(report(results, d, f"{family}-{suffix}"), name) for d in DATASETS]
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def verdict_table(results: Path) -> list[str]:
    lines = ["| data set | best CLIMD variant (most often chosen) | (a) best CLIMD − Baseline | "
             "(b) best CLIMD − best non-curriculum | best non-curriculum (most often chosen) | ours − Baseline |",
             "|---|---|---|---|---|---|"]
    for ds in DATASETS:
        vs_base = paired(results, ds, "verdict", "baseline@tuned")
        vs_best = paired(results, ds, "verdict", "noncurriculum-best")
        if vs_base is None:
            continue
        best = best_curriculum(results, ds)
        lines.append(f"| {NAMES[ds]} | {most_chosen(results, ds, 'verdict', best)} | "
                     f"{diff(vs_base, best)} | {diff(vs_best, best)} | "
                     f"{most_chosen(results, ds, 'verdict', 'noncurriculum-best')} | {diff(vs_base, OURS + '@tuned')} |")
    return lines


def verdict_means(results: Path) -> list[str]:
    lines = ["| data set | best CLIMD | Baseline (lr tuned) | best non-curriculum | ours | CLIMD + steps | "
             "random order | random order + steps |", "|---|---|---|---|---|---|---|---|"]
    for ds in DATASETS:
        rep = report(results, ds, "verdict")
        if rep is None:
            continue
        names = [best_curriculum(results, ds), "baseline@tuned", "noncurriculum-best", OURS + "@tuned", "climd+steps@tuned",
                 "climd.random@tuned", "climd.random+steps@tuned"]
        lines.append(f"| {NAMES[ds]} | " + " | ".join(cell(rep, n) for n in names) + " |")
    return lines


def controls_table(results: Path) -> list[str]:
    lines = ["| comparison (paper lr) | " + " | ".join(NAMES[d] for d in DATASETS) + " |",
             "|---|" + "---|" * len(DATASETS)]
    specs = [("CLIMD − Baseline", "variants-paper-lr", "baseline", "climd"),
             ("CLIMD literal − Baseline", "variants-paper-lr", "baseline", "climd.literal"),
             ("CLIMD + steps − Baseline", "variants-paper-lr", "baseline", "climd+steps"),
             ("random order − CLIMD (same schedule)", "variants-paper-lr", "climd", "climd.random"),
             ("ours − Baseline", "variants-paper-lr", "baseline", OURS)]
    for label, table, ref, variant in specs:
        lines.append(f"| {label} | " + " | ".join(diff(paired(results, d, table, ref), variant) for d in DATASETS) + " |")
    return lines


def table3(results: Path) -> list[str]:
    sets = [d for d in ("brca", "kipan", "lgg", "rosmap", "derm3", "derm3oh")
            if (results / "table3" / d / "report.csv").is_file()]
    lines = ["| data set | model | without CLIMD | with CLIMD | random order | CLIMD − without |",
             "|---|---|---|---|---|---|"]
    for ds in sets:
        rep = _csv(results / "table3" / ds / "report.csv")
        for model in ("early-fusion", "multid", "dmib"):
            pairs = _csv(results / "table3" / ds / f"paired_vs_{model}:none@tuned.csv")
            lines.append(f"| {NAMES[ds]} | {model} | " +
                         " | ".join(cell(rep, f"{model}:{c}@tuned") for c in ("none", "climd", "random")) +
                         f" | {diff(pairs, f'{model}:climd@tuned')} |")
    return lines


def cfcml(results: Path) -> list[str]:
    """CFCML vs early fusion, each without and with CLIMD, per Derm7pt task (lr chosen on validation AUC)."""
    tasks = [(t, label) for t, label in (("dermnm", "NEV vs MEL"), ("derm5", "5-class"))
             if (results / "cfcml" / t / "models" / "report.csv").is_file()]
    lines = ["| task | model | curriculum | mF1 | bACC | AUC | Δ mF1 vs no curriculum | Δ AUC vs no curriculum |",
             "|---|---|---|---|---|---|---|---|"]
    for t, label in tasks:
        rep = _csv(results / "cfcml" / t / "models" / "report.csv")
        for model in ("early-fusion", "cfcml"):
            pairs = _csv(results / "cfcml" / t / "models" / f"paired_vs_{model}:none@tuned.csv")
            for cur in ("none", "climd"):
                v = f"{model}:{cur}@tuned"
                deltas = (" | – | –" if cur == "none" else
                          f" | {diff(pairs, v)} | {diff(pairs, v, 'auc_macro')}")
                lines.append(f"| {label} | {model} | {cur} | {cell(rep, v)} | "
                             f"{cell(rep, v, 'balanced_accuracy')} | {cell(rep, v, 'auc_macro')}{deltas} |")
        pairs = _csv(results / "cfcml" / t / "models" / "paired_vs_early-fusion:none@tuned.csv")
        lines.append(f"| {label} | cfcml − early fusion (no curriculum) | | {diff(pairs, 'cfcml:none@tuned')} | | "
                     f"{diff(pairs, 'cfcml:none@tuned', 'auc_macro')} | | |")
    return lines


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    out = ["### The verdict: test macro-F1, differences in points with 95 % CIs (corrected t p)", ""]
    out += verdict_table(results) + ["", "Test macro-F1 (%), mean ± std over the replicates:", ""]
    out += verdict_means(results)
    out += ["", "### Macro-F1 (%), paper's lr 5e-5", ""] + methods_table(results, tuned=False)
    out += ["", "### Macro-F1 (%), lr chosen per replicate on validation", ""] + methods_table(results, tuned=True)
    out += ["", "### Paired differences at the paper's lr (points, 95 % CI, corrected t p)", ""]
    out += controls_table(results)
    out += ["", "### Table 3 analog: macro-F1 (%), lr chosen per replicate on validation", ""] + table3(results)
    out += ["", "### CFCML on Derm7pt: test %, lr chosen per replicate on validation AUC", ""] + cfcml(results)
    print("\n".join(out))


if __name__ == "__main__":
    main()
