"""``climd report``: every evaluated (variant, seed) of one or more runs -> mean +- std per variant,
the training budget of each variant, and paired comparisons against reference variants.

A *replicate* is (run, seed): with fixed split files per seed (BRCA), run k holds split k. Paired
comparisons use the replicates both variants have; the test is a two-sided Wilcoxon signed-rank
test (scipy). With 5 pairs its smallest possible p-value is 0.0625.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import evaluate, metrics
from .atomic import atomic_dir, atomic_write_json
from .errors import MissingArtifactError, UsageError, check_choices
from .store import RunStore
from .store import expand_runs as store_runs

METRICS = metrics.HEADLINE
SHORT = {"accuracy": "ACC", "f1_weighted": "wF1", "f1_macro": "mF1", "balanced_accuracy": "bACC", "auc_macro": "AUC"}


def expand_runs(cache_dir: Path, patterns: list[str]) -> list[RunStore]:
    """Run names, with shell-style wildcards matched against the cache directory."""
    return [store for pattern in patterns for store in store_runs(cache_dir, pattern)]


def collect(stores: list[RunStore], split: str = "test") -> pd.DataFrame:
    rows = []
    for store in stores:
        for a in store.list(f"eval-{split}"):
            store.check_fresh(a)
            _, variant, seed = a.name.split("/")
            m = evaluate.load_metrics(a)
            trained = store.read(a.meta["inputs"]["train"]["artifact"]).summary
            rows.append({"run": store.run, "variant": variant, "seed": int(seed.removeprefix("seed")),
                         **{k: m[k] for k in METRICS}, **{f"recall_{c}": v for c, v in m["recall"].items()},
                         "samples_seen": trained.get("samples_seen"), "optimizer_steps": trained.get("optimizer_steps")})
    if not rows:
        raise MissingArtifactError(f"no evaluated models ({split}) in run(s) {[s.run for s in stores]}",
                                   fix="run `climd evaluate --run RUN` first")
    return pd.DataFrame(rows)


def summarise(rows: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    cols = METRICS + ["samples_seen", "optimizer_steps"] + recall_columns(rows)
    grouped = rows.groupby("variant", sort=False)
    table = pd.DataFrame({"n": grouped.size()})
    for col in cols:
        table[f"{col}_mean"] = grouped[col].mean()
        table[f"{col}_std"] = grouped[col].std(ddof=1)
    table = table.reset_index()
    if order:
        table = table.set_index("variant").loc[[v for v in order if v in set(table.variant)]].reset_index()
    return table


def recall_columns(frame: pd.DataFrame) -> list[str]:
    """Per-class recall columns, in class order (``recall_<class>`` in runs, ``..._mean`` in tables)."""
    return [c.removesuffix("_mean") for c in frame.columns
            if c.startswith("recall_") and not c.endswith("_std")]


def paired(rows: pd.DataFrame, reference: str) -> pd.DataFrame:
    from scipy.stats import wilcoxon

    if reference not in set(rows.variant):
        raise UsageError(f"reference variant {reference!r} has no evaluations",
                         fix=f"choose from {sorted(set(rows.variant))}")
    ref = rows[rows.variant == reference].set_index(["run", "seed"])
    out = []
    for variant, group in rows[rows.variant != reference].groupby("variant", sort=False):
        g = group.set_index(["run", "seed"])
        common = g.index.intersection(ref.index)
        rec = {"variant": variant, "reference": reference, "n_pairs": len(common)}
        for m in METRICS:
            d = (g.loc[common, m] - ref.loc[common, m]).dropna().to_numpy(dtype=float)
            rec[f"d_{m}"] = float(d.mean()) if len(d) else np.nan
            rec[f"p_{m}"] = _wilcoxon(d, wilcoxon)
        out.append(rec)
    return pd.DataFrame(out)


def _wilcoxon(d: np.ndarray, test) -> float:
    if len(d) < 2:
        return np.nan
    if np.allclose(d, 0):
        return 1.0
    return float(test(d, alternative="two-sided").pvalue)


def selections_markdown(path: Path, shown: list[str]) -> str:
    """The validation choices behind the variants shown (from ``climd select --record``)."""
    book = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    lines = []
    for name, e in book.items():
        if e["chosen"] not in shown:
            continue
        cands = ", ".join(f"{v} {c['mean'] * 100:.1f}" for v, c in e["candidates"].items())
        lines.append(f"| {name} | **{e['chosen']}** | {e['metric']} on {e['split']} of {', '.join(e['runs'])}: {cands} |")
    if not lines:
        return ""
    return "\n".join(["", "Chosen on the validation split (never the test set):", "",
                      "| method | chosen | validation mean (%) of every candidate |", "|---|---|---|", *lines, ""])


def write(out: Path, rows: pd.DataFrame, table: pd.DataFrame, comparisons: list[pd.DataFrame], title: str,
          command: str, split: str, extra: str = "") -> Path:
    out = Path(out)
    with atomic_dir(out) as tmp:
        rows.to_csv(tmp / "runs.csv", index=False, float_format="%.10g")
        table.to_csv(tmp / "report.csv", index=False, float_format="%.6g")
        for comp in comparisons:
            comp.to_csv(tmp / f"paired_vs_{comp.reference.iloc[0] if len(comp) else 'ref'}.csv", index=False,
                        float_format="%.6g")
        (tmp / "report.md").write_text(markdown(table, comparisons, title, command, split, extra))
        atomic_write_json(tmp / "report.json", {"title": title, "command": command, "split": split,
                                                "runs": sorted(rows.run.unique().tolist()),
                                                "replicates": int(len(rows))})
    return out


def _pm(mean: float, std: float, scale: float = 100.0) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "n/a"
    if std is None or np.isnan(std):
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def markdown(table: pd.DataFrame, comparisons: list[pd.DataFrame], title: str, command: str, split: str,
             extra: str = "") -> str:
    lines = [f"## {title}", "", f"{split} split; mean ± std over replicates (run × seed), metrics in %.", "",
             "| variant | n | " + " | ".join(SHORT[m] for m in METRICS) + " | samples seen | optimizer steps |",
             "|---|---|" + "---|" * (len(METRICS) + 2)]
    for _, r in table.iterrows():
        cells = [_pm(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS]
        lines.append(f"| {r.variant} | {r.n} | " + " | ".join(cells) +
                     f" | {r.samples_seen_mean:,.0f} | {r.optimizer_steps_mean:,.0f} |")
    lines += _recall_markdown(table)
    for comp in comparisons:
        if comp.empty:
            continue
        ref = comp.reference.iloc[0]
        lines += ["", f"Paired difference vs **{ref}** (variant − {ref}, points; two-sided Wilcoxon p):", "",
                  "| variant | pairs | " + " | ".join(f"Δ{SHORT[m]} (p)" for m in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for _, r in comp.iterrows():
            cells = [("n/a" if np.isnan(r[f"d_{m}"]) else f"{r[f'd_{m}'] * 100:+.1f} ({_p(r[f'p_{m}'])})")
                     for m in METRICS]
            lines.append(f"| {r.variant} | {r.n_pairs} | " + " | ".join(cells) + " |")
    lines += [extra] if extra else []
    lines += ["", f"Produced by: `{command}`", ""]
    return "\n".join(lines)


def _recall_markdown(table: pd.DataFrame) -> list[str]:
    """Per-class recall; with two classes (class 1 positive) that is specificity and sensitivity."""
    cols = [c for c in recall_columns(table) if table[f"{c}_mean"].notna().any()]
    if not cols:
        return []
    names = [c.removeprefix("recall_") for c in cols]
    if len(cols) == 2:
        names = [f"{names[0]} (specificity)", f"{names[1]} (sensitivity)"]
    lines = ["", "Per-class recall (%):", "", "| variant | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append(f"| {r.variant} | " + " | ".join(_pm(r[f"{c}_mean"], r[f"{c}_std"]) for c in cols) + " |")
    return lines


def _p(p: float) -> str:
    return "–" if p is None or np.isnan(p) else f"{p:.3f}"


def select(rows: pd.DataFrame, candidates: list[str], metric: str) -> tuple[str, pd.DataFrame]:
    """The candidate variant with the best mean ``metric`` (ties: the earlier candidate).

    ``candidates`` are variant names or fnmatch patterns ('baseline+lr*'), in priority order."""
    import fnmatch

    check_choices((metric, METRICS, "--metric"))
    names = []
    for pattern in candidates:
        names += [v for v in sorted(rows.variant.unique()) if fnmatch.fnmatchcase(v, pattern) and v not in names]
    if not names:
        raise MissingArtifactError(f"no evaluated variant matches {candidates}",
                                   fix="train and evaluate the candidates on the validation runs first")
    table = rows[rows.variant.isin(names)].groupby("variant")[metric].agg(["mean", "std", "count"])
    table = table.loc[names].reset_index()
    best = table.iloc[int(np.argmax(table["mean"].to_numpy()))]["variant"]
    return best, table


def record_selection(path: Path, name: str, entry: dict) -> None:
    """Keep every choice made on validation data in one JSON file (read-modify-write, atomic)."""
    path = Path(path)
    book = json.loads(path.read_text()) if path.exists() else {}
    book[name] = entry
    atomic_write_json(path, dict(sorted(book.items())))
