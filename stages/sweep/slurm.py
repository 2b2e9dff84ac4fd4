"""``climd sweep --executor slurm``: the cells to do as SLURM job arrays, submitted with submitit.

One array per stage: ``encode``, ``score``, ``fit-dist``, ``schedule`` (one task per run whose
artifact is not already what the grid asks for), then ``train`` (each task a chunk of cells: by
default all the cells of one option set that differ only in seed, learning rate and run, which the
engine trains as one program). Each array waits for the previous one (``afterok``). A task runs
:func:`stages.sweep.run.run_task` with the submitter's interpreter, environment and (absolute) cache
folder; submitit writes its logs to ``<cache>/<first run>/sweeps/<name>/logs/``.

:func:`submit_arrays` is the only function that talks to submitit: it takes the submitit parameters
and the environment that ``sbatch`` needs, and any submitit cluster (``slurm``; ``local`` and
``debug`` run the same tasks on this machine, one array after the other).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from stages.errors import ClimdError, StaleArtifactError, UsageError
from stages.sweep.jobs import active_cells
from stages.sweep.run import LOGS, Plan, ordered, plan, record_path, sweep_dir, write_record, now
from stages.sweep.grid import Cell, Grid
from stages.sweep.task import SweepTask
from stages.sweep.upstream import SHARD_INDEX, UPSTREAM

log = logging.getLogger("climd")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\Z")


@dataclass
class SlurmOptions:
    partition: str | None = None
    time: str = "60"                       # minutes, or [D-]HH:MM[:SS] as sbatch --time reads it
    cpus: int | None = None
    gpus: int | None = None
    array_parallelism: int | None = None
    extra: dict = field(default_factory=dict)   # more sbatch options (--slurm-option mem=16G)

    def parameters(self) -> dict:
        """The submitit parameters (``AutoExecutor.update_parameters``) of every array."""
        p: dict = {"timeout_min": parse_time(self.time)}
        # --signal=USR2@N: N s before the time limit a task checkpoints and requeues (stages/sweep/task.py);
        # submitit's 90 s, or a quarter of a shorter limit
        p["slurm_signal_delay_s"] = min(90, p["timeout_min"] * 15)
        if self.cpus is not None:
            p["cpus_per_task"] = self.cpus
        if self.gpus:
            p["gpus_per_node"] = self.gpus
        if self.partition:
            p["slurm_partition"] = self.partition
        if self.array_parallelism:
            p["slurm_array_parallelism"] = self.array_parallelism
        if self.extra:
            p["slurm_additional_parameters"] = dict(self.extra)
        return p


def parse_time(text: str) -> int:
    """'90' -> 90 min; '1:30:00' -> 90; '2-00:00:00' -> 2880 (sbatch --time formats)."""
    m = _TIME.match(str(text).strip())
    if not m:
        raise UsageError(f"--slurm-time {text!r}", fix="give minutes (90) or [D-]HH:MM:SS (1:30:00, 2-00:00:00)")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:                                  # D-HH[:MM[:SS]]
        minutes = days * 1440 + a * 60 + (b or 0) + (1 if c else 0)
    elif c is not None:                                   # HH:MM:SS
        minutes = a * 60 + b + (1 if c else 0)
    elif b is not None:                                   # MM:SS
        minutes = a + (1 if b else 0)
    else:
        minutes = a
    if minutes < 1:
        raise UsageError(f"--slurm-time {text!r} is less than a minute")
    return minutes


@dataclass
class Array:
    stage: str
    specs: list[dict]                      # one per task: the argument of stages.sweep.run.run_task

    def labels(self) -> list[list[str]]:
        """What each task does: its cells (run/variant/seedK) or its run."""
        return [[Cell.from_dict(c).key for c in s["cells"]] if s["kind"] == "train" else [s.get("label", s["run"])]
                for s in self.specs]


def arrays(p: Plan, cells_per_task: int | None = None, force: bool = False, cadence=None) -> list[Array]:
    """The job arrays of a plan, in the order they must run."""
    if cells_per_task is not None and cells_per_task < 1:
        raise UsageError("--cells-per-task must be >= 1")
    cache, out = str(p.cache_dir), []
    for stage in UPSTREAM:
        specs = [{"kind": "upstream", "stage": stage, "cache_dir": cache, "run": run,
                  "invocations": [o for s, o in p.grid.upstream_for(run) if s == stage]}
                 for run in p.upstream.get(stage, [])]
        if stage == "encode" and any(o.get("shards") for spec in specs for o in spec["invocations"]):
            out.append(Array("encode-shards", [task for spec in specs for task in shard_tasks(spec)]))
            out.append(Array("encode-merge", specs))      # the merge reuses the fresh shards
        elif specs:
            out.append(Array(stage, specs))
    chunks = chunk(p.todo, cells_per_task)
    if chunks:
        out.append(Array("train", [{"kind": "train", "cache_dir": cache, "cells": [c.as_dict() for c in cells],
                                    "evaluate": p.grid.evaluate, "force": force,
                                    "cadence": asdict(cadence) if cadence else None} for cells in chunks]))
    return out


def shard_tasks(spec: dict) -> list[dict]:
    """One task per shard of each ``shards: N`` encode of a run (an unsharded encode: one task)."""
    tasks = []
    for opts in spec["invocations"]:
        count = opts.get("shards") or 0
        for index in range(count) if count else [None]:
            one = opts if index is None else {**opts, SHARD_INDEX: index}
            tasks.append({**spec, "invocations": [one],
                          "label": spec["run"] + (f" shard {index}/{count}" if index is not None else "")})
    return tasks


def chunk(cells: list[Cell], size: int | None) -> list[list[Cell]]:
    """``size`` cells per task, or (default) one task per option set: the cells that differ only in
    seed, learning rate and run, which the engine trains as one vectorised program."""
    cells = ordered(cells)
    if size:
        return [cells[i:i + size] for i in range(0, len(cells), size)]
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.batch_key(), []).append(c)
    return list(groups.values())


# -- submitting -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def environment(env: Mapping[str, str] | None):
    """``os.environ`` replaced by ``env`` while submitit runs sbatch (jobs inherit it)."""
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_slurm(env: Mapping[str, str] | None = None) -> None:
    path = (env if env is not None else os.environ).get("PATH", "")
    for tool in ("sbatch", "srun"):
        if shutil.which(tool, path=path) is None:
            raise UsageError(f"`{tool}` is not on PATH: --executor slurm submits job arrays with SLURM's "
                             f"{tool} (through submitit), and this machine has no SLURM client",
                             fix="run on the cluster's login node (or `module load slurm`), `make slurm-up` to try "
                                 "SLURM on this machine (docs/sweeps.md), --executor local to train here, or "
                                 "--dry-run to see the jobs")


@dataclass
class Submitted:
    stage: str
    job_id: str
    parameters: dict
    tasks: list[dict]
    jobs: list = field(default_factory=list, repr=False)     # submitit Job objects (to wait on)
    after: list = field(default_factory=list)                # the job ids it waits for (afterok)

    def record(self) -> dict:
        return {"stage": self.stage, "job_id": self.job_id, "parameters": self.parameters, "tasks": self.tasks,
                "after": self.after}


def submit_arrays(job_arrays: list[Array], parameters: dict, folder: Path, env: Mapping[str, str] | None = None,
                  cluster: str = "slurm", name: str = "climd", out: list | None = None) -> list[Submitted]:
    """Submit each array with submitit (``map_array`` over :func:`stages.sweep.run.run_task`), with
    ``parameters`` (``AutoExecutor.update_parameters``: timeout_min, cpus_per_task, gpus_per_node,
    slurm_partition, slurm_array_parallelism, slurm_additional_parameters ...) and ``env`` as the
    environment of sbatch and of the jobs. On SLURM each array depends on the previous one
    (``afterok``); on submitit's ``local``/``debug`` clusters it runs after the previous one ended.
    ``out`` (optional) receives each submitted array as soon as it is submitted."""
    import submitit

    if cluster == "slurm":
        check_slurm(env)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = [] if out is None else out
    with environment(env):
        for array in job_arrays:
            after = [s.job_id for s in out if s.stage == out[-1].stage] if out and cluster == "slurm" else []
            parts = split(array.specs, max_array_size(env) if cluster == "slurm" else None)
            labels = array.labels()
            for k, specs in enumerate(parts):
                params = {**parameters, "name": f"{name}-{array.stage}"}
                if after:
                    params["slurm_dependency"] = "afterok:" + ":".join(after)
                    # a failed dependency cancels the dependents (instead of leaving them pending forever)
                    params["slurm_additional_parameters"] = {**params.get("slurm_additional_parameters", {}),
                                                             "kill-on-invalid-dep": "yes"}
                executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
                executor.update_parameters(**params)
                try:
                    jobs = executor.map_array(SweepTask(), specs)
                except Exception as exc:          # sbatch refused the job: bad partition, time, account ...
                    raise UsageError(f"sbatch refused the {array.stage} array: {str(exc).strip()[-600:]}",
                                     fix="check that `sbatch` works here (no configuration source: `make slurm-up` starts one on this "
                                         "machine, docs/sweeps.md), and --slurm-partition, --slurm-time, --slurm-cpus, "
                                         "--slurm-gpus and --slurm-option (`climd sweep ... --dry-run` shows them)") from None
                offset = sum(len(p) for p in parts[:k])
                tasks = [{"task": offset + i, "job_id": str(j.job_id), "does": labels[offset + i]}
                         for i, j in enumerate(jobs)]
                out.append(Submitted(array.stage, str(jobs[0].job_id).split("_")[0], params, tasks, list(jobs), after))
                log.info("submitted %s%s: job %s, %d task(s)", array.stage,
                         f" (part {k + 1}/{len(parts)})" if len(parts) > 1 else "", out[-1].job_id, len(jobs))
                if cluster != "slurm":
                    _wait(jobs, array.stage, folder)
    return out


def split(specs: list, size: int | None) -> list[list]:
    """An array of more tasks than the cluster's MaxArraySize, as several arrays."""
    if not size or len(specs) <= size:
        return [specs]
    return [specs[i:i + size] for i in range(0, len(specs), size)]


def max_array_size(env: Mapping[str, str] | None = None) -> int | None:
    """The cluster's MaxArraySize (`scontrol show config`): tasks per array, at most (indices 0..N-1)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return int(value.strip())
    return None


def _wait(jobs: list, stage: str, folder: Path) -> None:
    for job in jobs:
        exc = job.exception()
        if exc is not None:
            if isinstance(exc, ClimdError):
                raise exc
            tail = str(exc).strip().splitlines()[-1:] or [""]
            raise StaleArtifactError(f"{stage} task {job.job_id} failed: {tail[0]}",
                                     fix=f"see its log in {folder}, then rerun the sweep (it redoes only what is missing)")


# -- the whole submission ---------------------------------------------------------------------------
def prepare_submission(grid: Grid, cache_dir, cells_per_task: int | None = None, force: bool = False,
                       skip_active: bool = True, cadence=None, env: Mapping[str, str] | None = None
                       ) -> tuple[Plan, list[Array], list[str]]:
    """(plan, arrays, cells left out because a job of an earlier submission is still queued or running)."""
    p = plan(grid, cache_dir, force)
    busy = [] if force or not skip_active else \
        sorted(active_cells(record_path(grid, p.cache_dir), env) & {c.key for c in p.todo})
    if busy:
        p.todo = [c for c in p.todo if c.key not in busy]
    return p, arrays(p, cells_per_task, force, cadence), busy


def describe(job_arrays: list[Array], parameters: dict, name: str) -> list[dict]:
    """What --dry-run prints: each array's submitit parameters and each task's cells."""
    out = []
    for i, array in enumerate(job_arrays):
        params = {**parameters, "name": f"{name}-{array.stage}"}
        if i:
            params["slurm_dependency"] = f"afterok:<array {i}: {job_arrays[i - 1].stage}>"
        out.append({"stage": array.stage, "tasks": [{"task": k, "does": labels} for k, labels in enumerate(array.labels())],
                    "parameters": params})
    return out


def submit_sweep(grid: Grid, cache_dir, options: SlurmOptions, cells_per_task: int | None = None,
                 env: Mapping[str, str] | None = None, cluster: str = "slurm", log_dir: Path | None = None,
                 force: bool = False, cadence=None) -> tuple[dict, list[Submitted]]:
    """Plan, submit and record a sweep: (the sweep.json entry, the submitted arrays)."""
    if cluster == "slurm":
        check_slurm(env)                   # before planning: say at once that this machine cannot submit
    p, job_arrays, busy = prepare_submission(grid, cache_dir, cells_per_task, force, cadence=cadence, env=env)
    folder = Path(log_dir).resolve() if log_dir else sweep_dir(p.cache_dir, grid.first_run, grid.name) / LOGS
    entry = {"executor": "slurm", "cluster": cluster, "time": now(), "host": socket.gethostname(),
             "log_dir": str(folder), "plan": p.summary(), "still_queued": busy, "arrays": []}
    if busy:
        log.warning("%d cell(s) left out: a job of an earlier submission still has them (%s ...)", len(busy), busy[0])
    submitted: list[Submitted] = []
    try:
        if job_arrays:
            submit_arrays(job_arrays, options.parameters(), folder, env, cluster, f"climd-{grid.name}", submitted)
    except ClimdError as exc:
        entry["error"] = exc.message
        raise
    finally:                               # what was submitted is recorded, also when a later array failed
        entry["arrays"] = [s.record() for s in submitted]
        write_record(grid, p.cache_dir, entry)
    return entry, submitted
