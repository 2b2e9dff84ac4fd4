"""``climd status``: the state of every artifact of some runs, or of every cell of a sweep — the
``dvc status`` of climd.

Artifact states:

- ``fresh``: complete, its outputs hash to what meta.json records, every ancestor unchanged;
- ``stale``: an ancestor changed (or disappeared) since it was built;
- ``incomplete``: no meta.json (a stage interrupted, or a training in progress or killed at epoch N);
- ``corrupt``: an output changed or is missing, or meta.json is unreadable;
- ``missing``: an artifact that another one was built from, or a run's encode, is not there;
- ``leftover``: a temporary ``.tmp-*`` folder or file of an interrupted write (listed only: the next
  run of its stage removes it).

Cell states (a sweep): ``done`` (its train artifact is what ``climd train`` would reuse, and it is
evaluated when the grid asks for it), ``missing``, ``incomplete``, ``stale``, ``corrupt``.

Exit code (:func:`exit_code`): 0 when everything is fresh/done, 5 when something is stale,
incomplete or corrupt, else 4 when something is missing. Nothing here imports torch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from stages.core import safefs
from stages.store import layout
from stages.errors import ClimdError, MissingArtifactError, StaleArtifactError
from stages.store.artifacts import META, Artifact, RunStore

UPSTREAM_ORDER = layout.UPSTREAM
BAD = ("stale", "incomplete", "corrupt")
CHECKPOINT = "checkpoint.json"


def exit_code(states) -> int:
    states = set(states)
    if states & set(BAD):
        return StaleArtifactError.exit_code
    if "missing" in states:
        return MissingArtifactError.exit_code
    return 0


def summary(rows: list[dict]) -> list[dict]:
    """``status --summary``: per variant (cells of a sweep, or train/eval artifacts of runs) or per
    stage (the stages before training), how many are done (fresh), missing, failed (their job failed
    or was cancelled), and in each other state."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        if "cell" in row:
            key = ("train", row["variant"])
        else:
            parts = row["name"].split("/")
            key = (row["stage"], parts[1] if len(parts) == 3 and row["stage"] in ("train", "evaluate") else "")
        g = groups.setdefault(key, {"stage": key[0], "variant": key[1], "total": 0, "done": 0, "missing": 0,
                                    "failed": 0})
        g["total"] += 1
        state = "done" if row["state"] in ("fresh", "done") else row["state"]
        job = row.get("job") or {}
        if state != "done" and job.get("state") in FAILED_JOB:
            state = "failed"
        g[state] = g.get(state, 0) + 1
    return list(groups.values())


FAILED_JOB = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def counts(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row["state"]] = out.get(row["state"], 0) + 1
    return out


# -- artifacts of a run -------------------------------------------------------------------------------
def run_status(store: RunStore) -> list[dict]:
    """One row per artifact folder of the run (pipeline order), plus missing inputs and leftovers."""
    if not store.root.is_dir():
        return [_row(store, "encode", "missing", f"run {store.run} has no folder in {store.cache_dir}")]
    rows = [artifact_row(store, name) for name in artifact_names(store)]
    present = {r["name"] for r in rows}
    # a data set's run of `climd compare` holds only encode.shared (features its replicates copy)
    wanted = [] if present & {"encode", "encode.shared"} else [("encode", "the run has no encode artifact")]
    for r in rows:
        wanted += [(name, f"{r['name']} was built from it") for name in r.pop("inputs", [])]
    for name, why in wanted:
        if name not in present and not store.path(name).exists():
            present.add(name)
            rows.append(_row(store, name, "missing", why))
    rows += [_row(store, rel, "leftover", "temporary files of an interrupted write; the next run of its stage "
                                          "removes them") for rel in leftovers(store.root)]
    return rows


def artifact_names(store: RunStore) -> list[str]:
    """Artifact folders of a run: <stage>[.TAG]/, train/<variant>/seed<k>/, eval-<split>/<variant>/seed<k>/."""
    def dirs(path: Path) -> list[Path]:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))

    names = []
    for top in dirs(store.root):
        if top.name == layout.TRAIN or top.name.startswith(layout.EVAL_PREFIX):
            names += [f"{top.name}/{v.name}/{s.name}" for v in dirs(top) for s in dirs(v)]
        elif top.name.split(".")[0] in UPSTREAM_ORDER:
            names.append(top.name)
    return sorted(names, key=_order)


def _order(name: str) -> tuple:
    stage = layout.stage_of(name)
    rank = UPSTREAM_ORDER.index(stage) if stage in UPSTREAM_ORDER else (4 if stage == "train" else 5)
    return rank, name


def stage_of(name: str) -> str:
    return layout.stage_of(name)


def artifact_row(store: RunStore, name: str) -> dict:
    """The state of one artifact folder (complete or not)."""
    path = store.path(name)
    try:
        artifact = store.read(name)
    except MissingArtifactError as exc:
        return _row(store, name, "missing", exc.message)
    except StaleArtifactError as exc:
        if (path / CHECKPOINT).is_file():
            return _row(store, name, "incomplete", f"in progress or killed at epoch {checkpoint_epoch(path)} "
                                                   f"({CHECKPOINT}, no {META}); rerun to resume")
        if not (path / META).exists():
            return _row(store, name, "incomplete", f"no {META}: its stage was interrupted, or the file was removed")
        return _row(store, name, "corrupt", exc.message)
    inputs = [rec["artifact"] for rec in artifact.meta.get("inputs", {}).values() if "artifact" in rec]
    try:
        artifact.verify_outputs()
    except StaleArtifactError as exc:
        return _row(store, name, "corrupt", exc.message, inputs, artifact.stage)
    try:
        store.check_fresh(artifact)
    except StaleArtifactError as exc:
        return _row(store, name, "stale", exc.message, inputs, artifact.stage)
    return _row(store, name, "fresh", built(artifact), inputs, artifact.stage)


def built(artifact: Artifact) -> str:
    return f"built {str(artifact.meta.get('finished', '?'))[:16].replace('T', ' ')}, key {artifact.key[:8]}"


def _row(store: RunStore, name: str, state: str, detail: str, inputs=None, stage: str | None = None) -> dict:
    # names here come from scanning the cache (leftovers start with '.'), not from a user: no check_name
    row = {"run": store.run, "stage": stage or stage_of(name), "name": name, "path": str(store.root / name),
           "state": state, "detail": detail}
    if inputs:
        row["inputs"] = inputs
    return row


def checkpoint_epoch(path: Path) -> int | str:
    try:
        epoch = json.loads(safefs.read_text(Path(path) / CHECKPOINT, "sidecar"))["meta"]["epoch"]
        return epoch if isinstance(epoch, int) else "?"
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def leftovers(root: Path) -> list[str]:
    """Relative paths of ``.tmp-*`` folders and files under a run (not looking inside them)."""
    from stages.store.atomic import TMP_PREFIX

    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        found += [(rel / n).as_posix() for n in sorted(dirnames + filenames) if n.startswith(TMP_PREFIX)]
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not (rel == Path(".") and d == "sweeps")]
    return found


def runs_status(cache_dir, pattern: str) -> list[dict]:
    from stages.store.artifacts import expand_runs

    return [row for store in expand_runs(cache_dir, pattern) for row in run_status(store)]
