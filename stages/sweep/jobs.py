"""Where the SLURM tasks of a sweep stand, for ``climd status --sweep`` and for a resubmission.

The scheduler is asked first: ``squeue`` (pending, running, and jobs finished less than MinJobAge
ago, with its reason, e.g. ``DependencyNeverSatisfied``), then ``sacct`` for the rest (when the
cluster keeps accounting). What neither knows is read from the task's own files in the sweep's log
folder: the failure record :mod:`stages.sweep.task` writes (exit code, message), submitit's result
file (the task completed), or its log. Without SLURM every job is ``None``: never an error.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from stages.errors import ClimdError

log = logging.getLogger("climd")
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
          "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT"}
FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
NEVER = "DependencyNeverSatisfied"


def latest_jobs(record: dict) -> dict[str, dict]:
    """cell key or run -> {job_id, stage, cluster, log_dir, after, submission} of the newest
    submission that had it (``after``: the job ids its array waited for)."""
    out: dict[str, dict] = {}
    for n, sub in enumerate(record.get("submissions", [])):
        for array in sub.get("arrays", []):
            for task in array.get("tasks", []):
                for item in task.get("does", []):
                    out[item] = {"job_id": task["job_id"], "stage": array["stage"], "cluster": sub.get("cluster"),
                                 "log_dir": sub.get("log_dir"), "after": array.get("after", []), "submission": n}
    return out


def _run(command: list[str], env) -> str | None:
    path = (env if env is not None else os.environ).get("PATH", "")
    if shutil.which(command[0], path=path) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("%s: %s", command[0], exc)
        return None
    if out.returncode != 0:
        log.debug("%s says %s", command[0], out.stderr.strip()[-300:])
        return None
    return out.stdout


def _squeue(env) -> dict[str, dict]:
    text = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r"], env)
    out = {}
    for line in (text or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            out[parts[0]] = {"state": parts[1].split()[0], "reason": parts[2] if parts[2] not in ("None", "") else None}
    return out


def _sacct(arrays: list[str], env) -> dict[str, dict]:
    command = ["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode"]
    for array in arrays:
        command += ["-j", array]
    text = _run(command, env)
    out = {}
    for line in (text or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] and not parts[0].startswith("JobID"):
            row = {"state": parts[1].split()[0] if parts[1] else None, "reason": None}
            if len(parts) >= 3 and parts[2].split(":")[0].isdigit():
                row["exit_code"] = int(parts[2].split(":")[0])
            if row["state"]:
                out[parts[0]] = row
    return out


def _exit_code(job_id: str, env) -> int | None:
    text = _run(["scontrol", "-o", "show", "job", job_id], env) or ""
    for item in text.split():
        if item.startswith("ExitCode="):
            code = item.split("=", 1)[1].split(":")[0]
            return int(code) if code.isdigit() else None
    return None


def job_states(jobs: list[str] | dict[str, dict], env: Mapping[str, str] | None = None) -> dict[str, dict]:
    """job id -> {state, reason, exit_code, message, log} for each task id (``12_3``) in ``jobs`` (a
    list, or :func:`latest_jobs` values by id, whose ``log_dir`` gives the tasks' files)."""
    info = jobs if isinstance(jobs, dict) else {j: {} for j in jobs}
    if not info:
        return {}
    from stages.sweep.task import read_record

    found = _squeue(env)
    rest = [j for j in info if j not in found]
    if rest:
        found.update({k: v for k, v in _sacct(sorted({j.split("_")[0] for j in rest}), env).items() if k in info})
    out = {}
    for job, meta in info.items():
        row = dict(found.get(job) or {"state": None, "reason": None})
        log_dir = meta.get("log_dir")
        failure = read_record(log_dir, job)
        if failure:
            row.setdefault("exit_code", failure.get("exit_code"))
            row["message"] = failure.get("message")
            if row["state"] is None:
                row["state"] = "FAILED"
        elif row["state"] is None and log_dir and (Path(log_dir) / f"{job}_0_result.pkl").exists():
            row["state"] = "COMPLETED"      # submitit's result file: written only when the task ended well
        if row["state"] in FAILED and row.get("exit_code") is None and row.get("reason") != NEVER:
            row["exit_code"] = _exit_code(job, env)
        if log_dir:
            row["log"] = str(Path(log_dir) / f"{job}_0_log.err")
            if row["state"] in FAILED and not row.get("message"):
                row["message"] = last_line(Path(row["log"]))
        out[job] = row
    return out


def last_line(path: Path) -> str | None:
    """The last line of a task's log that is not srun's or submitit's own bookkeeping."""
    try:
        lines = path.read_text(errors="replace").splitlines()[-50:]
    except OSError:
        return None
    for line in reversed(lines):
        text = line.strip()
        if text and not text.startswith(("srun:", "slurmstepd:", "submitit ")):
            return text
    return None


def active_cells(path: Path, env: Mapping[str, str] | None = None) -> set[str]:
    """Cells whose newest SLURM task is still pending or running (resubmitting them would start a
    second writer on the same folder). A task pending on a dependency that can never be satisfied
    does not count: it will never run."""
    from stages.sweep.run import read_record

    try:
        latest = latest_jobs(read_record(path))
    except ClimdError:
        return set()
    slurm = {k: v for k, v in latest.items() if v.get("cluster") == "slurm"}
    states = job_states({v["job_id"]: v for v in slurm.values()}, env)
    return {k for k, v in slurm.items()
            if states.get(v["job_id"], {}).get("state") in ACTIVE and states[v["job_id"]].get("reason") != NEVER}


def explain(job: dict, state: dict, record: dict, run: str, states: dict[str, dict]) -> str | None:
    """One line on a cell's job that did not end well: its failure (exit code, message) or, for a
    job that never ran, which job it waited for failed."""
    s = state.get("state")
    if s is None or s == "COMPLETED":
        return None
    if s in ACTIVE and state.get("reason") != NEVER:
        return f"job {job['job_id']} {s.lower()}" + (f" ({state['reason']})" if state.get("reason") else "")
    if state.get("reason") == NEVER or (s == "CANCELLED" and job.get("after") and _failed_upstream(job, record, run, states)):
        cause = _failed_upstream(job, record, run, states)
        verb = "cancelled" if s == "CANCELLED" else "pending forever"
        if not cause:
            return f"never runs: job {job['job_id']} {verb}: a job it waited for did not succeed"
        stage, dep, code, message, does = cause
        return (f"never runs: job {job['job_id']} {verb}: the {stage} job {dep} ({does}) it waited for failed"
                + (f" with exit {code}" if code is not None else "") + (f": {message}" if message else ""))
    code = state.get("exit_code")
    return (f"job {job['job_id']} {s.lower()}" + (f" with exit {code}" if code is not None else "")
            + (f": {state['message']}" if state.get("message") else ""))


def _failed_upstream(job: dict, record: dict, run: str, states: dict[str, dict]):
    """(stage, job id, exit code, message, run) of the task that did not succeed in the arrays this
    cell's job waited for: one that failed (not merely cancelled) first, of this cell's run first."""
    subs = record.get("submissions", [])
    if job.get("submission") is None or job["submission"] >= len(subs):
        return None
    found = []
    for array in subs[job["submission"]].get("arrays", []):
        if array.get("stage") == job.get("stage"):
            continue
        for task in array.get("tasks", []):
            st = states.get(task["job_id"], {})
            if st.get("state") in FAILED and st.get("reason") != NEVER:
                mine = any(d == run or d.startswith(run + " ") for d in task.get("does", []))
                found.append((st["state"] == "CANCELLED", not mine, array["stage"], task["job_id"],
                              st.get("exit_code"), st.get("message"), ", ".join(task.get("does", []))))
    if not found:
        return None
    return min(found, key=lambda f: f[:2])[2:]
