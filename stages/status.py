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

from .errors import ClimdError, MissingArtifactError, StaleArtifactError
from .store import META, Artifact, RunStore

UPSTREAM_ORDER = ("encode", "score", "fit-dist", "schedule")
BAD = ("stale", "incomplete", "corrupt")
CHECKPOINT = "checkpoint.json"


def exit_code(states) -> int:
    states = set(states)
    if states & set(BAD):
        return StaleArtifactError.exit_code
    if "missing" in states:
        return MissingArtifactError.exit_code
    return 0


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
    wanted = [] if "encode" in present else [("encode", "the run has no encode artifact")]
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
        if top.name == "train" or top.name.startswith("eval-"):
            names += [f"{top.name}/{v.name}/{s.name}" for v in dirs(top) for s in dirs(v)]
        elif top.name.split(".")[0] in UPSTREAM_ORDER:
            names.append(top.name)
    return sorted(names, key=_order)


def _order(name: str) -> tuple:
    first = name.split("/")[0]
    stage = first.split(".")[0]
    rank = UPSTREAM_ORDER.index(stage) if stage in UPSTREAM_ORDER else (4 if stage == "train" else 5)
    return rank, name


def stage_of(name: str) -> str:
    first = name.split("/")[0]
    return "evaluate" if first.startswith("eval-") else first.split(".")[0]


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
        epoch = json.loads((Path(path) / CHECKPOINT).read_text())["meta"]["epoch"]
        return epoch if isinstance(epoch, int) else "?"
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def leftovers(root: Path) -> list[str]:
    """Relative paths of ``.tmp-*`` folders and files under a run (not looking inside them)."""
    from .atomic import TMP_PREFIX

    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        found += [(rel / n).as_posix() for n in sorted(dirnames + filenames) if n.startswith(TMP_PREFIX)]
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not (rel == Path(".") and d == "sweeps")]
    return found


def runs_status(cache_dir, pattern: str) -> list[dict]:
    from .store import expand_runs

    return [row for store in expand_runs(cache_dir, pattern) for row in run_status(store)]


# -- cells of a sweep ---------------------------------------------------------------------------------
def cells_status(cache_dir, cells: list, evaluate: list[str] = (), jobs: dict | None = None,
                 job_state: dict | None = None, record: dict | None = None) -> list[dict]:
    """One row per cell: done / missing / incomplete / stale / corrupt, with its newest job (id and,
    when SLURM or the task's files answer, state, exit code and message)."""
    from .sweep_jobs import explain

    from .sweep import stores

    get_store, rows = stores(Path(cache_dir)), []
    for cell in cells:
        store = get_store(cell.run)
        state, detail = cell_state(get_store, cell)
        if state == "done":
            for split in evaluate:
                row = artifact_row(store, f"eval-{split}/{cell.variant}/seed{cell.seed}")
                if row["state"] != "fresh":
                    state, detail = row["state"], f"eval-{split}: {row['detail']}"
                    break
        row = {"cell": cell.key, "run": cell.run, "variant": cell.variant, "seed": cell.seed,
               "path": str(store.path(cell.name)), "state": state, "detail": detail}
        job = (jobs or {}).get(cell.key)
        if job:
            st = (job_state or {}).get(job["job_id"]) or {}
            row["job"] = {"id": job["job_id"], "stage": job["stage"], "state": st.get("state"),
                          **{k: st[k] for k in ("reason", "exit_code", "message", "log") if st.get(k) is not None}}
            why = explain(job, st, record or {}, cell.run, job_state or {}) if state != "done" else None
            if why:
                row["job"]["explain"] = why
                row["detail"] = f"{why}; {detail}" if detail else why
        rows.append(row)
    return rows


def cell_state(get_store, cell) -> tuple[str, str]:
    """Through :func:`stages.train.prepare`, exactly as ``climd train`` and ``climd sweep`` decide."""
    from .sweep import cell_artifact

    try:
        item = cell_artifact(get_store, cell)
    except StaleArtifactError as exc:
        return "stale", exc.message
    except ClimdError as exc:               # an upstream artifact is missing, or the options do not fit it
        return "missing", exc.message
    if isinstance(item, Artifact):
        return "done", built(item)
    row = artifact_row(get_store(cell.run), cell.name)
    if row["state"] == "fresh":              # complete and intact, but not what these options make
        return "stale", "built with other options or inputs than the grid's (its key differs)"
    return row["state"], row["detail"]


def sweep_status(cache_dir, record: dict, grid=None, env=None) -> list[dict]:
    """Cells of a sweep record (or of ``grid``, when given), with the SLURM state of their jobs
    (``env``: the environment sacct runs with; default this process's)."""
    from .sweep_grid import Cell
    from .sweep_jobs import job_states, latest_jobs

    cells = grid.cells if grid is not None else [Cell.from_dict(c) for c in record.get("cells", [])]
    evaluate = grid.evaluate if grid is not None else record.get("evaluate", [])
    jobs = latest_jobs(record)
    wanted = {}                             # every task of the submissions the cells' jobs belong to
    for n in sorted({v["submission"] for v in jobs.values() if v.get("cluster") == "slurm"}):
        sub = record["submissions"][n]
        for array in sub.get("arrays", []):
            for task in array.get("tasks", []):
                wanted[task["job_id"]] = {"log_dir": sub.get("log_dir")}
    states = job_states(wanted, env) if wanted else {}
    return cells_status(cache_dir, cells, evaluate, jobs, states, record)
