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

import json
import logging
from pathlib import Path

from stages.report.decision import DEFAULT_DELTA_POINTS
from stages.core.hashing import cache_key, file_sha256
from stages.errors import MissingArtifactError
from stages.store import layout
from stages.store.atomic import atomic_write_json

CURRICULUM_BEST, NONCURRICULUM_BEST = "curriculum-best", "noncurriculum-best"
STAMP = "verdict.json"               # beside report.md: what the verdict was computed from
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
    """Choose on validation, pair, decide and write the report to ``s.out`` (:mod:`stages.report.build`,
    as ``climd report --choose ... --reference ...``); its warnings go to the log."""
    from stages.report import build
    from stages.store.artifacts import RunStore

    stores = [RunStore(s.cache_dir, r) for r in s.runs]
    panel = s.panel
    wanted = {v for r in panel.rows for v in r.variant_names()}
    _check_complete(stores, wanted, s.seeds)
    req = build.Request(references=references(panel), order=shown(panel), choose=choices(panel), choose_metric=METRIC,
                        delta=DEFAULT_DELTA_POINTS if s.delta is None else s.delta)
    stamp = _stamp(stores, wanted, s.seeds, req, panel)
    if _unchanged(s.out, stamp):
        log.info("verdict unchanged (same evaluations and choices): %s", s.out)
        return s.out
    result = build.build(stores, req)
    for w in result.warnings:
        log.warning(w)
    result.run_info.update(panel=panel.source, n_replicates=s.replicates, n_seeds=len(s.seeds))
    title = (f"{s.name}: the best curriculum method against {references(panel)[0]} and against the best "
             f"non-curriculum method (all chosen per replicate on validation)")
    out = build.save(result, s.out, title, command, "test", _panel_note(panel))
    atomic_write_json(Path(out) / STAMP, {**stamp, "report_sha256": file_sha256(Path(out) / "report.md")})
    return out


def _stamp(stores, wanted: set[str], seeds: list[int], req, panel) -> dict:
    """What the verdict is a function of: the key of every evaluation it reads and the request (a
    rerun whose stamp is unchanged reuses the report, as a stage reuses its artifact)."""
    keys = {}
    for st in stores:
        for split in ("valid", "test"):
            for v in sorted(wanted):
                for k in seeds:
                    name = layout.eval_name(split, v, k)
                    keys[f"{st.run}/{name}"] = st.read(name).key
    request = {"references": req.references, "order": req.order, "choose": req.choose,
               "metric": req.choose_metric, "delta": req.delta, "panel": panel.source}
    return {"format": 1, "key": cache_key({"request": request, "evaluations": keys})}


def _unchanged(out, stamp: dict) -> bool:
    path = Path(out) / STAMP
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
        return (old.get("key") == stamp["key"] and (Path(out) / "report.md").is_file()
                and old.get("report_sha256") == file_sha256(Path(out) / "report.md"))
    except (OSError, ValueError):
        return False


def _check_complete(stores, wanted: set[str], seeds: list[int]) -> None:
    """Every (run, seed, variant) of the panel is evaluated on both splits: a choice among fewer
    candidates than the panel names would be silent."""
    from stages.store.artifacts import META

    missing = [f"{v} {st.run}/seed{k} ({split})" for split in ("valid", "test") for st in stores for k in seeds
               for v in sorted(wanted) if not (st.path(layout.eval_name(split, v, k)) / META).is_file()]
    if missing:
        raise MissingArtifactError(f"{len(missing)} panel cell(s) are not evaluated: "
                                   f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                                   fix="rerun the same `climd compare`; it trains and evaluates what is missing")


def _panel_note(panel) -> str:
    groups = {g: ", ".join(f"`{r.name}`" for r in panel.group(g)) or "–" for g in ("curriculum", "non-curriculum", "control")}
    lrs = sorted({lr for r in panel.rows for lr in r.lrs})
    return (f"\n**Panel** ({panel.source}, {panel.epochs} epochs, lr grid {', '.join(f'{x:g}' for x in lrs)}): "
            f"curriculum {groups['curriculum']}; non-curriculum {groups['non-curriculum']}; "
            f"controls {groups['control']}. `NAME@tuned`: the row's lr chosen per replicate on validation.\n")
