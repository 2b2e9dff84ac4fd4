"""What one SLURM array task of a sweep runs: :func:`stages.sweep.run.run_task`, with climd's own exit
code and message instead of a traceback, and preemption/time limits survived.

- A :class:`~stages.errors.ClimdError` ends the task with that error's exit code (3 for bad data ...),
  its message and fix as the last lines of the task's ``.err`` log, and a small record
  ``<log dir>/<job>_climd.json`` (exit code, message) that ``climd status --sweep`` reads when the
  scheduler no longer remembers the job.
- ``USR2`` is what SLURM sends ``--signal=USR2@N`` seconds before the time limit (submitit asks for it,
  ``--slurm-signal-delay``) and what a preempting scheduler can be told to send: a training in progress
  finishes its epoch, writes its checkpoint, the task requeues itself (``scontrol requeue``) and the
  requeued task resumes from that checkpoint; the replicas end as an uninterrupted run would (the
  checkpoint holds every random state). Outside a training the task requeues at once (the stages
  before training are rebuilt or reused from scratch). At most ``MAX_REQUEUES`` times.

Off SLURM (submitit's ``local``/``debug`` clusters) errors are raised as before, for the submitter.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from stages.store.atomic import atomic_write_json
from stages.errors import ClimdError, InterruptedRun

log = logging.getLogger("climd")
PREEMPT_SIGNAL = signal.SIGUSR2
MAX_REQUEUES = 20
RECORD_SUFFIX = "_climd.json"


def slurm_job_id() -> str | None:
    """This task's id as squeue shows it: ``ARRAY_TASK`` (``12_3``) or the job id; None off SLURM."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def record_file(log_dir: Path | str, job_id: str) -> Path:
    return Path(log_dir) / f"{job_id}{RECORD_SUFFIX}"


class SweepTask:
    """Picklable callable that submitit maps over the array's specs."""

    def __init__(self):
        self.preempted = False

    def __call__(self, spec: dict) -> dict:
        from stages.sweep.run import run_task

        job = slurm_job_id()
        if job is None:
            return run_task(spec)
        self.preempted = False
        signal.signal(PREEMPT_SIGNAL, self._on_preempt)
        try:
            return run_task(spec)
        except InterruptedRun as exc:
            if self.preempted:
                self._requeue(job, exc.message)
            self._fail(job, exc)
        except ClimdError as exc:
            self._fail(job, exc)

    # -- preemption and time limits ------------------------------------------------------------------
    def _on_preempt(self, signum, frame) -> None:
        from stages.engine.support import Signals

        self.preempted = True
        log.warning("task %s: signal %s (time limit near, or preempted): checkpointing, then requeueing",
                    slurm_job_id(), signal.Signals(signum).name)
        if Signals.active is not None:     # a training: it checkpoints at the end of this epoch
            Signals.active.stop = True
        else:
            self._requeue(slurm_job_id(), "no training in progress")

    def _requeue(self, job: str, why: str) -> None:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        if restarts >= MAX_REQUEUES:
            log.error("task %s: not requeued again (%d requeues already): %s", job, restarts, why)
            return
        try:
            subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("task %s: `scontrol requeue %s` failed: %s", job, job, getattr(exc, "stderr", "") or exc)
            return
        log.warning("task %s: requeued (%s); it resumes from its checkpoint", job, why)
        _flush()
        os._exit(0)                        # the scheduler ends this instance and starts the requeued one

    # -- failures ------------------------------------------------------------------------------------
    def _fail(self, job: str, exc: ClimdError):
        log.error("error: %s", exc.message)
        if exc.fix:
            log.error("  fix: %s", exc.fix)
        folder = os.environ.get("SUBMITIT_FOLDER")
        if folder and "%" not in folder:
            try:
                atomic_write_json(record_file(folder, job), {"job_id": job, "exit_code": exc.exit_code,
                                                             "error": type(exc).__name__, "message": exc.message,
                                                             "fix": exc.fix})
            except (OSError, ClimdError) as write_error:
                log.error("could not write %s: %s", record_file(folder, job), write_error)
        _flush()
        raise SystemExit(exc.exit_code)    # not an Exception: submitit re-raises nothing, no traceback


def _flush() -> None:
    for h in log.handlers:
        h.flush()
    sys.stdout.flush()
    sys.stderr.flush()


def read_record(log_dir: Path | str | None, job_id: str) -> dict | None:
    if not log_dir:
        return None
    try:
        data = json.loads(record_file(log_dir, job_id).read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
