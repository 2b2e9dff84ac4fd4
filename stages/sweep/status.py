"""The state of every cell of a sweep (``climd status --sweep``): each cell's train artifact, decided
exactly as ``climd train`` and ``climd sweep`` decide (:func:`stages.pipeline.train.prepare`), its
evaluations, and the newest scheduler job that was to make it."""
from __future__ import annotations

from pathlib import Path

from stages.errors import ClimdError, StaleArtifactError
from stages.store import layout
from stages.store.artifacts import Artifact
from stages.store.status import artifact_row, built


def cells_status(cache_dir, cells: list, evaluate: list[str] = (), jobs: dict | None = None,
                 job_state: dict | None = None, record: dict | None = None) -> list[dict]:
    """One row per cell: done / missing / incomplete / stale / corrupt, with its newest job (id and,
    when SLURM or the task's files answer, state, exit code and message)."""
    from stages.sweep.jobs import explain
    from stages.sweep.run import stores

    get_store, rows = stores(Path(cache_dir)), []
    for cell in cells:
        store = get_store(cell.run)
        state, detail = cell_state(get_store, cell)
        if state == "done":
            for split in evaluate:
                row = artifact_row(store, layout.eval_name(split, cell.variant, cell.seed))
                if row["state"] != "fresh":
                    state, detail = row["state"], f"{layout.eval_dir(split)}: {row['detail']}"
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
    """Through :func:`stages.pipeline.train.prepare`, exactly as ``climd train`` and ``climd sweep`` decide."""
    from stages.sweep.run import cell_artifact

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
    from stages.sweep.grid import Cell
    from stages.sweep.jobs import job_states, latest_jobs

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
