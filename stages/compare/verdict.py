"""The verdict report of ``climd compare``: what ``climd report --choose ... --reference ...`` writes,
with the choices made from the panel instead of typed by hand.

Per replicate (run, seed), on the validation macro-F1: each row's learning rate (``NAME@tuned``; a row
with one variant is shown as that variant), the best curriculum variant (``curriculum-best``, among
every variant of every curriculum row) and the best non-curriculum variant (``noncurriculum-best``).
Their test metrics are compared, paired by replicate, and decided against ±delta
(:mod:`stages.report.decision`; ``--delta``, default 2 points), with the panel's reference (tuned) and with
``noncurriculum-best``: ``report.md``, ``chosen.csv``, ``paired_vs_<reference>.csv`` and the rest of
:func:`stages.report.collect.write`.
"""
from __future__ import annotations

import logging

import pandas as pd

from stages.report import choose
from stages.report import collect as report
from stages.report.decision import DEFAULT_DELTA_POINTS
from stages.errors import MissingArtifactError

CURRICULUM_BEST, NONCURRICULUM_BEST = "curriculum-best", "noncurriculum-best"
METRIC = "f1_macro"
log = logging.getLogger("climd")


def label(row) -> str:
    names = row.variant_names()
    return names[0] if len(names) == 1 else f"{row.name}@tuned"


def choices(panel) -> list[tuple[str, list[str]]]:
    """(virtual variant, candidates in priority order) of every choice the verdict makes."""
    out = [(CURRICULUM_BEST, [v for r in panel.group("curriculum") for v in r.variant_names()]),
           (NONCURRICULUM_BEST, [v for r in panel.group("non-curriculum") for v in r.variant_names()])]
    out += [(label(r), r.variant_names()) for r in panel.rows if len(r.variant_names()) > 1]
    return out


def shown(panel) -> list[str]:
    rows = panel.group("curriculum") + panel.group("control") + panel.group("non-curriculum")
    return [CURRICULUM_BEST] + [label(r) for r in rows] + [NONCURRICULUM_BEST]


def references(panel) -> list[str]:
    ref = next(r for r in panel.rows if r.name == panel.reference)
    return [label(ref), NONCURRICULUM_BEST]


def write(s, command: str = ""):
    """Collect the evaluations of the replicates, choose on validation, write the report to ``s.out``."""
    from stages.store.artifacts import RunStore

    stores = [RunStore(s.cache_dir, r) for r in s.runs]
    panel = s.panel
    wanted = {v for r in panel.rows for v in r.variant_names()}
    relevant = wanted.__contains__
    test = report.collect(stores, "test", False, relevant)
    valid = report.collect(stores, "valid", False, relevant)
    rows = test.rows[test.rows.variant.isin(wanted)]
    _check_complete(rows, valid.rows, wanted, s)
    chosen, info = [], []
    for name, cands in choices(panel):
        picks, warnings = choose.per_replicate(valid.rows[valid.rows.variant.isin(cands)],
                                               rows[rows.variant.isin(cands)], name, cands, METRIC)
        for w in warnings:
            log.warning(w)
        rows = pd.concat([rows, choose.virtual_rows(picks, rows, name)], ignore_index=True)
        chosen.append(picks)
        info.append({"name": name, "patterns": cands, "metric": METRIC, "split": "valid", "candidates": cands})
    positive = report.positive_class(test.encode)
    rows = report.add_sensitivity(rows, positive)
    order = shown(panel)
    delta = (DEFAULT_DELTA_POINTS if s.delta is None else s.delta) / 100
    others = lambda ref: [v for v in order if v != ref]  # noqa: E731
    comparisons = [report.paired(rows, ref, others(ref), delta=delta) for ref in references(panel)]
    diffs = pd.concat([report.differences(rows, ref, others(ref)) for ref in references(panel)], ignore_index=True)
    picked, optimism, warnings = choose.optimism(pd.concat(chosen, ignore_index=True), valid.rows, test.rows,
                                                 dict(choices(panel)), delta)
    for w in warnings:
        log.warning(w)
    rows = rows[rows.variant.isin(order)]
    table = report.summarise(rows, order)
    title = (f"{s.name}: the best curriculum method against {references(panel)[0]} and against the best "
             f"non-curriculum method (all chosen per replicate on validation)")
    run_info = {"positive_class": positive, "incomplete": [], "unevaluated": [], "choose": info,
                "panel": panel.source, "n_replicates": s.replicates, "n_seeds": len(s.seeds),
                "delta_points": delta * 100, "optimism": optimism.to_dict(orient="records")}
    extra = _panel_note(panel)
    return report.write(s.out, rows, table, comparisons, title, command, "test", extra, run_info, picked, diffs)


def _check_complete(test: pd.DataFrame, valid: pd.DataFrame, wanted: set[str], s) -> None:
    """Every (run, seed, variant) of the panel is evaluated on both splits: a choice among fewer
    candidates than the panel names would be silent."""
    for split, frame in (("test", test), ("valid", valid)):
        have = set(map(tuple, frame[["run", "seed", "variant"]].itertuples(index=False)))
        missing = [f"{v} {r}/seed{k}" for r in s.runs for k in s.seeds for v in sorted(wanted) if (r, k, v) not in have]
        if missing:
            raise MissingArtifactError(f"{len(missing)} panel cell(s) have no {split} evaluation: "
                                       f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                                       fix="rerun the same `climd compare`; it trains and evaluates what is missing")


def _panel_note(panel) -> str:
    groups = {g: ", ".join(f"`{r.name}`" for r in panel.group(g)) or "–" for g in ("curriculum", "non-curriculum", "control")}
    lrs = sorted({lr for r in panel.rows for lr in r.lrs})
    return (f"\n**Panel** ({panel.source}, {panel.epochs} epochs, lr grid {', '.join(f'{x:g}' for x in lrs)}): "
            f"curriculum {groups['curriculum']}; non-curriculum {groups['non-curriculum']}; "
            f"controls {groups['control']}. `NAME@tuned`: the row's lr chosen per replicate on validation.\n")
