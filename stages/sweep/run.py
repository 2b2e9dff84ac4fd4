"""``climd sweep``: every cell of a grid (:mod:`stages.sweep.grid`) that is not fresh, trained here
(``--executor local``) or as SLURM job arrays (:mod:`stages.sweep.slurm`).

A cell is fresh exactly when :func:`stages.pipeline.train.prepare` returns its artifact, so a sweep and
``climd train`` agree on what to redo: a resubmitted sweep trains only what is missing, incomplete
(it resumes from the checkpoint), stale or corrupt. Both executors train through
:func:`train_cells` (the batched engine; cells that differ only in seed, learning rate and run are
one program), and both record what they did in ``<cache>/<first run>/sweeps/<name>/sweep.json``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from stages.store.atomic import atomic_write_json
from stages.errors import (ClimdError, InterruptedRun, MissingArtifactError, StaleArtifactError, UsageError)
from stages.store.artifacts import Artifact, RunStore, default_cache_dir
from stages.sweep.grid import Cell, Grid
from stages.sweep.upstream import is_done, run_upstream, upstream_command

RECORD, LOGS, FORMAT = "sweep.json", "logs", 1
log = logging.getLogger("climd")


class MemoStore(RunStore):
    """A RunStore that verifies each upstream artifact once: planning and status call
    :func:`stages.pipeline.train.prepare` for every cell, and each call would re-hash the features file."""

    def __init__(self, cache_dir, run):
        super().__init__(cache_dir, run)
        self._loaded: dict = {}

    def load(self, name: str, verify: bool = True) -> Artifact:
        if (name, verify) not in self._loaded:
            self._loaded[(name, verify)] = super().load(name, verify)
        return self._loaded[(name, verify)]


def stores(cache_dir: Path) -> callable:
    memo: dict[str, MemoStore] = {}
    return lambda run: memo.setdefault(run, MemoStore(cache_dir, run))


def sweep_dir(cache_dir: Path | str | None, first_run: str, name: str) -> Path:
    return Path(cache_dir or default_cache_dir()) / first_run / "sweeps" / name


# -- what is to do ----------------------------------------------------------------------------------
@dataclass
class Plan:
    grid: Grid
    cache_dir: Path
    fresh: list[Cell] = field(default_factory=list)
    todo: list[Cell] = field(default_factory=list)
    upstream: dict[str, list[str]] = field(default_factory=dict)   # stage -> runs whose stage is to build

    def summary(self) -> str:
        ups = ", ".join(f"{stage} x{len(runs)}" for stage, runs in self.upstream.items() if runs)
        return (f"{len(self.grid.cells)} cells: {len(self.fresh)} fresh, {len(self.todo)} to train"
                + (f"; upstream to build: {ups}" if ups else ""))


def cell_artifact(get_store, cell: Cell, force: bool = False):
    """prepare() for one cell: its fresh Artifact, or the Replica that would train it. Errors name
    the cell (an upstream artifact the grid does not build, options that do not fit the schedule)."""
    from stages.pipeline.train import prepare

    try:
        return prepare(get_store(cell.run), cell.train_options(), cell.seed, cell.variant, force, cell.command())
    except ClimdError as exc:
        exc.message = f"cell {cell.key}: {exc.message}"
        raise


def plan(grid: Grid, cache_dir: Path | str | None, force: bool = False, check_upstream: bool = True) -> Plan:
    """Which cells to train. With ``check_upstream`` (SLURM), runs whose stages before training are
    not already what the grid asks for get those stages rebuilt first, and all their cells count as
    to do (the train task reuses the ones that turn out fresh)."""
    cache = Path(cache_dir or default_cache_dir()).resolve()
    result, get_store = Plan(grid, cache), stores(cache)
    pending = set()
    if check_upstream:
        from stages.sweep.upstream import UPSTREAM

        result.upstream = {stage: [] for stage in UPSTREAM}
        for run in grid.run_seeds():
            dirty = False
            for stage, opts in grid.upstream_for(run):
                dirty = dirty or not is_done(get_store(run), stage, opts)
                if dirty and run not in result.upstream[stage]:
                    result.upstream[stage].append(run)
            if dirty:
                pending.add(run)
    for cell in grid.cells:
        if cell.run in pending or force:
            result.todo.append(cell)
            continue
        item = cell_artifact(get_store, cell)
        (result.fresh if isinstance(item, Artifact) else result.todo).append(cell)
    return result


def ordered(cells: list[Cell]) -> list[Cell]:
    """Cells that the engine batches together next to each other."""
    return sorted(cells, key=lambda c: (c.batch_key(), c.options["lr"], c.run, c.variant, c.seed))


# -- doing it ---------------------------------------------------------------------------------------
def build_upstream(cache_dir: Path, run: str, invocations: list[tuple[str, dict]], force: bool = False) -> list[dict]:
    """Build (or reuse) the stages before training of one run, in pipeline order."""
    out = []
    for stage, opts in invocations:
        store = RunStore(cache_dir, run, command=upstream_command(stage, run, opts))
        artifact, reused = run_upstream(store, stage, opts, force)
        log.info("%s %s: %s -> %s", run, stage, "reused" if reused else "built", artifact.path)
        out.append({"run": run, "stage": stage, "path": str(artifact.path), "reused": reused})
    return out


def train_cells(cache_dir: Path | str, cells: list[Cell], force: bool = False, jobs: int = 1, cadence=None,
                progress=None, evaluate: list[str] = ()) -> dict:
    """Train every cell that is not fresh, in as few engine calls as possible (one per device), then
    evaluate each cell on ``evaluate`` splits. One failing replica does not stop the others: the
    errors are raised together at the end, after everything that could be done was done."""
    from stages.pipeline import train

    cache_dir = Path(cache_dir)
    cells = ordered(cells)
    by_device: dict[str, list[Cell]] = {}
    for cell in cells:
        by_device.setdefault(cell.options.get("device", "auto"), []).append(cell)
    results, errors = {}, []
    for group in by_device.values():
        tasks = [(RunStore(cache_dir, c.run), c.train_options(), c.seed, c.variant) for c in group]
        started = time.time()
        try:
            done = train.run_many(tasks, force, jobs, cadence, [c.command() for c in group], progress)
        except InterruptedRun:
            raise                          # Ctrl-C / SIGTERM: checkpoints are written, stop here
        except ClimdError as exc:          # some replicas failed: the others finished all the same
            errors.append(exc)
            done = _finished(tasks, started)
        for r in done:
            cell = group[r["task"]]
            results[cell.key] = {"cell": cell.key, "path": str(r["artifact"].path), "reused": r["reused"]}
            if not r["reused"]:
                summary = r["artifact"].summary
                loss = summary.get("final_loss")
                shown = f"final loss {loss:.4g}" if isinstance(loss, (int, float)) and loss == loss else "no loss: fitted"
                log.info("trained %s in %.1f s (%s) -> %s", cell.key, summary.get("seconds", 0), shown,
                         r["artifact"].path)
    evaluated = _evaluate(cache_dir, [c for c in cells if c.key in results], evaluate, force, errors)
    trained = [k for k, r in results.items() if not r["reused"]]
    out = {"trained": trained, "reused": [k for k in results if k not in trained],
           "failed": [c.key for c in cells if c.key not in results], "evaluated": evaluated,
           "paths": {k: r["path"] for k, r in results.items()}}
    if errors:
        first = errors[0]
        error = type(first)("; ".join(e.message for e in errors), fix=first.fix)
        error.outcome = out                # what was done all the same, for the record
        raise error
    return out


def _finished(tasks: list[tuple], since: float) -> list[dict]:
    """After a failed engine call: the tasks whose artifact is complete (trained now if its meta.json
    is newer than the call)."""
    from stages.pipeline.train import artifact_name

    out = []
    for i, (store, _, seed, variant) in enumerate(tasks):
        try:
            artifact = store.read(artifact_name(variant, seed))
        except ClimdError:
            continue
        out.append({"task": i, "artifact": artifact, "reused": (artifact.path / "meta.json").stat().st_mtime < since})
    return out


def _evaluate(cache_dir: Path, cells: list[Cell], splits, force: bool, errors: list) -> list[str]:
    if not splits:
        return []
    from stages.pipeline import evaluate

    done = []
    for cell in cells:
        for split in splits:
            try:
                command = f"climd evaluate --run {cell.run} --variant {cell.variant} --seed {cell.seed} --split {split}"
                evaluate.run(RunStore(cache_dir, cell.run, command), cell.variant, cell.seed, split, force)
                done.append(f"{cell.key}:{split}")
            except ClimdError as exc:
                exc.message = f"evaluate {cell.key} ({split}): {exc.message}"
                errors.append(exc)
    return done


def run_local(grid: Grid, cache_dir: Path | str | None, force: bool = False, jobs: int | None = None, cadence=None,
              progress=None) -> dict:
    """``--executor local``: the stages before training (reused when fresh), then every cell that is
    not fresh, then evaluation; recorded in sweep.json. Returns the record's entry for this run."""
    cache = Path(cache_dir or default_cache_dir()).resolve()
    with _log_file(sweep_dir(cache, grid.first_run, grid.name) / LOGS / f"local-{now().replace(':', '')}.log"):
        return _run_local(grid, cache, force, jobs, cadence, progress)


@contextlib.contextmanager
def _log_file(path: Path):
    """climd's log lines (INFO and up) also go to the sweep's logs folder (-q quiets only the console)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    saved, level = [(h, h.level) for h in log.handlers], log.level
    if log.getEffectiveLevel() > logging.INFO:
        for h, h_level in saved:
            h.setLevel(max(h_level, log.getEffectiveLevel()))
        log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield path
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(level)
        for h, h_level in saved:
            h.setLevel(h_level)


def _run_local(grid: Grid, cache: Path, force: bool, jobs: int, cadence, progress) -> dict:
    for run in grid.run_seeds():
        build_upstream(cache, run, grid.upstream_for(run))
    todo = plan(grid, cache, force, check_upstream=False)
    log.info("sweep %s: %s", grid.name, todo.summary())
    entry = {"executor": "local", "time": now(), "host": socket.gethostname(), "to_train": len(todo.todo)}
    try:
        # every cell: run_many reuses the fresh ones, and their evaluation may still be missing
        outcome = train_cells(cache, grid.cells, force, jobs, cadence, progress, grid.evaluate)
    except ClimdError as exc:
        entry.update(getattr(exc, "outcome", {}), error=exc.message)
        write_record(grid, cache, entry)
        raise
    entry.update(outcome)
    entry["paths"] = {c.key: str(RunStore(cache, c.run).path(c.name)) for c in grid.cells}
    write_record(grid, cache, entry)
    return entry


# -- a SLURM (or submitit local/debug) task ---------------------------------------------------------
def run_task(spec: dict) -> dict:
    """What one array task runs (picklable: a plain function of plain data). ``spec["kind"]``:
    ``upstream`` (one stage of one run) or ``train`` (a chunk of cells, then their evaluation)."""
    from stages.runtime import threads

    threads.configure()                    # SLURM_CPUS_PER_TASK, before torch starts its pools
    if not log.handlers:                   # a fresh interpreter: climd's log lines go to the task's .err log
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    cache = Path(spec["cache_dir"])
    if spec["kind"] == "upstream":
        invocations = [(spec["stage"], opts) for opts in spec["invocations"]]
        return {"kind": "upstream", "built": build_upstream(cache, spec["run"], invocations, spec.get("force", False))}
    from stages.engine.loop import Cadence

    cells = [Cell.from_dict(c) for c in spec["cells"]]
    cadence = Cadence(**spec["cadence"]) if spec.get("cadence") else None
    return {"kind": "train", **train_cells(cache, cells, spec.get("force", False), 1, cadence, None,
                                           spec.get("evaluate", []))}


# -- the record ---------------------------------------------------------------------------------------
def record_path(grid: Grid, cache_dir: Path | str | None) -> Path:
    return sweep_dir(cache_dir, grid.first_run, grid.name) / RECORD


def read_record(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MissingArtifactError(f"no sweep record at {path}", fix="run `climd sweep GRID.yaml` first") from None
    except (OSError, ValueError) as exc:
        raise StaleArtifactError(f"the sweep record {path} is unreadable ({exc.__class__.__name__})",
                                 fix="rerun `climd sweep GRID.yaml`; it rewrites the record") from None
    if not isinstance(record, dict) or not isinstance(record.get("cells"), list):
        raise StaleArtifactError(f"the sweep record {path} is malformed (no cells)",
                                 fix="rerun `climd sweep GRID.yaml`; it rewrites the record")
    return record


def write_record(grid: Grid, cache_dir: Path, entry: dict) -> Path:
    """sweep.json: the grid, its cells and every submission so far (newest last)."""
    path = record_path(grid, cache_dir)
    try:
        previous = read_record(path).get("submissions", [])
    except ClimdError:
        previous = []
    record = {"format": FORMAT, "name": grid.name, "grid_file": str(grid.path.resolve()),
              "grid": json.loads(json.dumps(grid.raw, default=str)), "cache_dir": str(cache_dir),
              "evaluate": grid.evaluate, "updated": now(), "cells": [c.as_dict() for c in grid.cells],
              "submissions": previous + [entry]}
    atomic_write_json(path, record)
    return path


def find_record(cache_dir: Path | str | None, name: str, run_pattern: str | None = None) -> Path:
    """The sweep.json of sweep ``name``: under the runs matching ``run_pattern`` (default: any run)."""
    from stages.core.names import check_name

    check_name(name, "sweep name")
    root = Path(cache_dir or default_cache_dir())
    found = sorted(root.glob(f"{run_pattern or '*'}/sweeps/{name}/{RECORD}"))
    if not found:
        raise MissingArtifactError(f"no sweep named {name!r} in {root}",
                                   fix="run `climd sweep GRID.yaml` first, or give --grid GRID.yaml")
    if len(found) > 1:
        raise UsageError(f"sweep {name!r} exists under several runs: {', '.join(str(p.parent.parent.parent.name) for p in found)}",
                         fix="choose one with --run RUN")
    return found[0]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
