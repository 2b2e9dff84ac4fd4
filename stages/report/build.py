"""One report, from evaluated runs to the files: what ``climd report`` and ``climd compare`` both call.

:func:`build` collects the evaluations, makes every ``--choose`` per replicate on validation (with the
selection's optimism), pairs each variant with each reference and decides it against ±delta;
:func:`save` writes ``report.md`` and its CSV/JSON files. Nothing here prints: every warning a
reader needs is in :attr:`Report.warnings` (the CLI shows them; a library caller logs them).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stages.errors import UsageError
from stages.report import choose as chooser
from stages.report import collect, stats
from stages.report.decision import DEFAULT_DELTA_POINTS
from stages.store import layout
from stages.store.artifacts import RunStore


@dataclass
class Request:
    """What to report. ``choose``: (NAME, patterns in priority order) pairs; ``delta`` in metric points."""

    split: str = "test"
    references: list[str] = field(default_factory=list)
    order: list[str] | None = None             # variants to show, in this order (None: all)
    choose: list[tuple[str, list[str]]] = field(default_factory=list)
    choose_metric: str = "f1_macro"
    delta: float = DEFAULT_DELTA_POINTS
    positive_class: str | None = None
    allow_incomplete: bool = False

    def check(self) -> None:
        if not (0 <= self.delta < 100):
            raise UsageError(f"--delta {self.delta} is not a margin in metric points",
                             fix="give a number in [0, 100), e.g. --delta 2")
        if self.choose and self.split != "test":
            raise UsageError("--choose reports the chosen candidates' test metrics; it needs --split test",
                             fix="drop --split (test is the default); the choice itself is always made on valid")
        if len({n for n, _ in self.choose}) != len(self.choose):
            raise UsageError("two --choose share a NAME", fix="give every --choose its own NAME")


@dataclass
class Report:
    rows: pd.DataFrame                          # one row per shown (run, seed, variant), chosen ones included
    table: pd.DataFrame                         # mean ± std per variant
    comparisons: list[pd.DataFrame]             # one paired table per reference, with the decisions
    differences: pd.DataFrame | None            # one row per replicate and comparison
    chosen: pd.DataFrame | None                 # every choice per replicate, with its optimism
    run_info: dict
    warnings: list[str] = field(default_factory=list)


def problems(col: collect.Collected, split: str, unevaluated: bool = True) -> list[str]:
    """Replicates a report leaves out, each named with its fix."""
    out = [f"incomplete replicate left out: {i['variant']} seed {i['seed']} of run {i['run']} ({i['stage']}: "
           f"{i['path']} {'is being written now by ' + i['live'] if i.get('live') else 'has no meta.json'}); "
           f"fix: {i['fix']}" for i in col.incomplete]
    out += [f"missing replicate: {m['variant']} seed {m['seed']} of run {m['run']} was neither trained nor "
            f"evaluated (other variants of the run have that seed), so its n is one smaller; fix: "
            f"`climd train --run {m['run']} --seed {m['seed']}` with the options of {m['variant']}, then "
            f"`climd evaluate --run {m['run']} --split {split}`" for m in col.missing]
    if unevaluated and col.unevaluated:
        names = ", ".join(f"{u['variant']} seed {u['seed']} of {u['run']}" for u in col.unevaluated)
        runs = sorted({u["run"] for u in col.unevaluated})
        out.append(f"trained but not evaluated on {split}, so not in the report: {names}; "
                   f"fix: {' ; '.join(f'climd evaluate --run {r} --split {split}' for r in runs)}")
    return out


def paired_warnings(comp: pd.DataFrame) -> list[str]:
    """What a paired table cannot show by itself: dropped replicates, untestable rows, runs that share
    one split under the corrected t, a Wilcoxon floor."""
    if comp.empty:
        return []
    ref, out = comp.reference.iloc[0], []
    out += [f"{r.variant} vs {ref}: replicates dropped (on one side only): {r.dropped}"
            for _, r in comp[comp.n_dropped > 0].iterrows()]
    few = comp[comp.n_pairs < 2].variant.tolist()
    if few:
        out.append(f"vs {ref}: fewer than 2 pairs, no test possible for {', '.join(few)}")
    shared = comp[comp.shared_split.astype(str) != ""] if "shared_split" in comp else comp.iloc[:0]
    if len(shared):
        out.append(f"vs {ref}: runs {shared.shared_split.iloc[0]} share one split (same data, split file and split "
                   "options); the Nadeau–Bengio corrected t assumes every run is its own resplit, so its variance "
                   "is not the right one here; fix: compare resplits (`climd encode --resplit K` or split files), "
                   "or report seeds of one run (one run: the ordinary paired t)")
    floor = comp[(comp.n_pairs >= 2) & ~comp.wilcoxon_min_p_f1_macro.map(stats.can_reach)]
    out += [f"vs {ref}: the Wilcoxon test cannot reach p < 0.05 for {', '.join(group.variant)} "
            f"(smallest attainable p with these pairs = 2/2^n = {min_p:.4g})"
            for min_p, group in floor.groupby("wilcoxon_min_p_f1_macro")]
    return out


def build(stores: list[RunStore], req: Request) -> Report:
    """Collect, choose on validation, pair and decide (see the module doc)."""
    req.check()
    patterns = [p for _, ps in req.choose for p in ps]
    relevant = None
    if req.order:
        wanted = set(req.order) | set(req.references)
        relevant = lambda v: v in wanted or any(fnmatch.fnmatchcase(v, p) for p in patterns)  # noqa: E731
    col = collect.collect(stores, req.split, req.allow_incomplete, relevant)
    warnings = problems(col, req.split)
    rows, chosen, choose_info, valid = col.rows, [], [], None
    if req.choose:
        valid = collect.collect(stores, "valid", req.allow_incomplete,
                                lambda v: any(fnmatch.fnmatchcase(v, p) for p in patterns), require=False)
        warnings += problems(valid, "valid", unevaluated=False)
        for name, pats in req.choose:
            if name in set(col.rows.variant):
                raise UsageError(f"--choose name {name!r} is already an evaluated variant", fix="pick another NAME")
            picks, more = chooser.per_replicate(valid.rows, col.rows, name, pats, req.choose_metric)
            warnings += more
            extra_rows = chooser.virtual_rows(picks, col.rows, name)
            rows = pd.concat([rows, extra_rows], ignore_index=True) if len(extra_rows) else rows
            chosen.append(picks)
            choose_info.append({"name": name, "patterns": pats, "metric": req.choose_metric, "split": "valid",
                                "candidates": chooser.candidates(list(valid.rows.variant) + list(col.rows.variant), pats)})
    positive = collect.positive_class(col.encode, req.positive_class)
    rows = collect.add_sensitivity(rows, positive)
    shown = lambda ref: [v for v in req.order if v != ref] if req.order else None  # noqa: E731
    delta = req.delta / 100
    comparisons = [collect.paired(rows, ref, shown(ref), delta=delta) for ref in req.references]
    diffs = (pd.concat([collect.differences(rows, ref, shown(ref)) for ref in req.references], ignore_index=True)
             if req.references else None)
    optimism = None
    if chosen:
        picked, optimism, more = chooser.optimism(pd.concat(chosen, ignore_index=True), valid.rows, col.rows,
                                                  dict(req.choose), delta)
        chosen = [picked]
        warnings += more
    if req.order:
        rows = rows[rows.variant.isin(req.order)]
    table = collect.summarise(rows, req.order)
    for comp in comparisons:
        warnings += paired_warnings(comp)
    run_info = {"positive_class": positive, "incomplete": col.incomplete, "unevaluated": col.unevaluated,
                "choose": choose_info, "delta_points": req.delta,
                "optimism": [] if optimism is None else optimism.to_dict(orient="records")}
    return Report(rows, table, comparisons, diffs, pd.concat(chosen, ignore_index=True) if chosen else None,
                  run_info, warnings)


def save(report: Report, target: Path, title: str, command: str, split: str = "test", extra: str = "") -> Path:
    """Write the report's files to ``target`` (report.md, report.csv, runs.csv, paired_vs_*.csv,
    differences.csv, chosen.csv, report.json)."""
    collect.write(target, report.rows, report.table, report.comparisons, title, command, split, extra,
                  report.run_info, report.chosen, report.differences)
    return target


def default_target(stores: list[RunStore], split: str) -> Path:
    """``<cache>/<first run>/report`` (``report-<split>`` for another split)."""
    return stores[0].path(layout.REPORT if split == "test" else f"{layout.REPORT}-{split}")
