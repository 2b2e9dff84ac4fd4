"""A real SLURM (tests/slurm_cluster.py): sbatch, job arrays, submitit, and finding cancelled tasks.

These fail, never skip, when SLURM cannot be installed or started (``make slurm-deps``).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_cluster import ROOT, slurm_cluster  # noqa: F401  (the session fixture)


def _running(cluster, task: str, timeout: float = 30) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cluster.states(task.split("_")[0]).get(task) == "RUNNING":
            return
        time.sleep(0.1)
    pytest.fail(f"{task} never ran: {cluster.states(task.split('_')[0])}\n{cluster.logs(15)}", pytrace=False)


def test_sbatch_wrap_runs_a_command(slurm_cluster, tmp_path):
    out = tmp_path / "hello.out"
    job = slurm_cluster.sbatch("-o", str(out), "--wrap", "echo hello from $SLURM_JOB_ID on $SLURMD_NODENAME")
    assert slurm_cluster.wait(job) == {job: "COMPLETED"}
    assert out.read_text().split() == ["hello", "from", job, "on", slurm_cluster.node]


def test_array_tasks_each_see_their_task_id(slurm_cluster, tmp_path):
    job = slurm_cluster.sbatch("--array=0-2", "-o", str(tmp_path / "task_%a.out"),
                               "--wrap", "echo $SLURM_ARRAY_TASK_ID $SLURM_ARRAY_JOB_ID")
    states = slurm_cluster.wait(job)
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(3)}
    for i in range(3):
        assert (tmp_path / f"task_{i}.out").read_text().split() == [str(i), job]


def _square(x: int) -> tuple:
    """Runs inside a SLURM job (pickled by submitit)."""
    import stages

    return x * x, os.environ.get("SLURM_ARRAY_TASK_ID"), sys.executable, stages.__file__


def _square_unless_held(x: int, hold: str) -> int:
    """Runs inside a SLURM job; the task for 2 waits while the file ``hold`` exists."""
    t0 = time.time()
    while x == 2 and os.path.exists(hold) and time.time() - t0 < 120:
        time.sleep(0.1)
    return x * x


def _executor(folder: Path, cluster):
    import submitit

    executor = submitit.AutoExecutor(folder=folder)
    assert executor.cluster == "slurm", "submitit did not find sbatch/SLURM"
    executor.update_parameters(slurm_partition=cluster.partition, timeout_min=5, cpus_per_task=1,
                               slurm_array_parallelism=3)
    return executor


def test_submitit_map_array_runs_python_with_the_venv_and_checkout(slurm_cluster, tmp_path):
    with slurm_cluster.environ():
        jobs = _executor(tmp_path / "submitit", slurm_cluster).map_array(_square, [1, 2, 3])
        results = [job.result() for job in jobs]
    assert [r[0] for r in results] == [1, 4, 9]
    assert sorted(r[1] for r in results) == ["0", "1", "2"]
    assert {r[2] for r in results} == {sys.executable}  # the venv's interpreter
    assert {Path(r[3]).resolve().parent.parent for r in results} == {ROOT}  # this checkout


def test_a_cancelled_array_task_is_found_and_only_it_is_resubmitted(slurm_cluster, tmp_path):
    """scancel one task; it is CANCELLED and has no output, so a resubmission redoes only it."""
    out = tmp_path / "out"
    out.mkdir()
    # scancel signals every process of the step, but not at the same instant: if the shell saw
    # `sleep` die before its own SIGTERM arrived it would go on and write the output. A real stage
    # writes its artifact only after its work succeeded; so does this task.
    script = (f"if [ $SLURM_ARRAY_TASK_ID = 1 ]; then sleep 60 || exit 1; fi; "
              f"echo done > {out}/task_$SLURM_ARRAY_TASK_ID")
    job = slurm_cluster.sbatch("--array=0-2", "-o", "/dev/null", "--wrap", script)
    _running(slurm_cluster, f"{job}_1")
    slurm_cluster.run(["scancel", f"{job}_1"])
    states = slurm_cluster.wait(job)
    assert states == {f"{job}_0": "COMPLETED", f"{job}_1": "CANCELLED", f"{job}_2": "COMPLETED"}
    # What a sweep resubmits: the tasks without their output (what the artifact store checks) ...
    missing = [i for i in range(3) if not (out / f"task_{i}").exists()]
    assert missing == [1]
    # ... which the scheduler agrees did not complete
    assert [k for k, s in states.items() if s != "COMPLETED"] == [f"{job}_1"]
    redo = slurm_cluster.sbatch(f"--array={','.join(map(str, missing))}", "-o", "/dev/null",
                                "--wrap", script.replace("sleep 60", "true"))
    assert slurm_cluster.wait(redo) == {f"{redo}_1": "COMPLETED"}
    assert sorted(p.name for p in out.iterdir()) == ["task_0", "task_1", "task_2"]


def test_submitit_sees_a_cancelled_task_and_reruns_only_it(slurm_cluster, tmp_path):
    hold = tmp_path / "hold"
    hold.touch()
    with slurm_cluster.environ():
        executor = _executor(tmp_path / "submitit", slurm_cluster)
        args = [1, 2, 3]
        jobs = executor.map_array(_square_unless_held, args, [str(hold)] * 3)
        _running(slurm_cluster, jobs[1].job_id)
        jobs[1].cancel()
        assert jobs[0].result() == 1 and jobs[2].result() == 9
        # a task writes its result before it exits (and done() looks at the result file first):
        # wait until the scheduler itself reports every task ended
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and \
                [j.watcher.get_state(j.job_id, mode="force") for j in jobs] != ["COMPLETED", "CANCELLED", "COMPLETED"]:
            time.sleep(0.2)
        assert jobs[1].state == "CANCELLED"
        # which did not finish: no result file, or a state other than COMPLETED
        unfinished = [a for a, j in zip(args, jobs) if not j.paths.result_pickle.exists()]
        assert unfinished == [2] and [j.state for j in jobs] == ["COMPLETED", "CANCELLED", "COMPLETED"]
        hold.unlink()
        again = executor.map_array(_square_unless_held, unfinished, [str(hold)])
        assert [j.result() for j in again] == [4]
