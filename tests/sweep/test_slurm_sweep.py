"""`climd sweep --executor slurm` against a real single-node SLURM (tests/slurm_cluster.py): the
artifacts equal the local executor's, and a sweep resubmitted after one task was cancelled redoes
only that task. Fails, never skips, when SLURM cannot start (`make slurm-deps`)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.slurm_cluster import ROOT, slurm_cluster  # noqa: F401  (the session fixture)

GRID = """name: {name}
runs: ros
seeds: 0-2
train:
{train}
evaluate: {{splits: [test]}}
"""


def _climd(cluster, *args, env=None, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "climd_cli", *map(str, args)], capture_output=True, text=True,
                         env={**cluster.env, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)
    if check and out.returncode != 0:
        pytest.fail(f"climd {' '.join(map(str, args))} exited {out.returncode}:\n{out.stderr}\n{cluster.logs(15)}",
                    pytrace=False)
    return out


def _submit(cluster, grid, cache, *extra, env=None) -> list[str]:
    out = _climd(cluster, "-q", "sweep", grid, "--executor", "slurm", "--slurm-partition", cluster.partition,
                 "--slurm-time", "10", "--slurm-cpus", "1", "--cells-per-task", "1", "--cache-dir", cache, *extra, env=env)
    return out.stdout.split()


def _cells(cluster, cache, name) -> dict:
    out = _climd(cluster, "status", "--sweep", name, "--cache-dir", cache, "--json", check=False)
    return {c["cell"]: c for c in json.loads(out.stdout)["cells"]}


def test_slurm_sweep_writes_what_the_local_executor_writes(slurm_cluster, ros_template, tmp_path):
    """2 variants x 3 seeds on ROSMAP as a job array on the real slurmctld; every artifact equals the
    local executor's byte for byte, and status sees every cell done with its job COMPLETED."""
    cache, local = tmp_path / "slurm", tmp_path / "local"
    shutil.copytree(ros_template, cache)
    shutil.copytree(ros_template, local)
    grid = tmp_path / "table.yaml"
    grid.write_text(GRID.format(name="table", train="  - {curriculum: none, epochs: 12}\n  - {curriculum: climd}"))
    _climd(slurm_cluster, "-q", "sweep", grid, "--cache-dir", local)
    out = _climd(slurm_cluster, "sweep", grid, "--executor", "slurm", "--slurm-partition", slurm_cluster.partition,
                 "--slurm-time", "10", "--slurm-cpus", "1", "--cells-per-task", "1", "--cache-dir", cache)
    jobs = out.stdout.split()
    assert len(jobs) == 2                    # 6 one-cell tasks, split by the cluster's MaxArraySize (4): 4 + 2
    assert out.stderr.count(f"job {jobs[0]}") == 1 and out.stderr.count(f"job {jobs[1]}") == 1   # said once
    states = {**slurm_cluster.wait(jobs[0], timeout=300), **slurm_cluster.wait(jobs[1], timeout=300)}
    assert len(states) == 6 and set(states.values()) == {"COMPLETED"}, states
    for variant in ("baseline", "climd"):
        for seed in range(3):
            rel = f"ros/train/{variant}/seed{seed}"
            for name in ("model.safetensors", "history.csv"):
                assert (cache / rel / name).read_bytes() == (local / rel / name).read_bytes(), (rel, name)
            assert (cache / f"ros/eval-test/{variant}/seed{seed}/metrics.json").read_bytes() == \
                (local / f"ros/eval-test/{variant}/seed{seed}/metrics.json").read_bytes()
    cells = _cells(slurm_cluster, cache, "table")
    assert len(cells) == 6 and {c["state"] for c in cells.values()} == {"done"}
    assert {c["job"]["state"] for c in cells.values()} == {"COMPLETED"}
    logs = list((cache / "ros" / "sweeps" / "table" / "logs").glob("*_log.err"))
    assert len(logs) == 6                                       # each task's log beside the run


def test_a_resubmitted_sweep_redoes_only_the_cancelled_task(slurm_cluster, ros_template, tmp_path):
    cache = tmp_path / "c"
    shutil.copytree(ros_template, cache)
    grid = tmp_path / "cancel.yaml"
    grid.write_text(GRID.format(name="cancel", train="  - {curriculum: none, epochs: 12, lr: 1e-3}"))
    [job] = _submit(slurm_cluster, grid, cache, env={"CLIMD_DEBUG_EPOCH_SLEEP": "0.5"})   # ~6 s a task
    deadline = time.monotonic() + 120
    while slurm_cluster.states(job).get(f"{job}_1") != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    slurm_cluster.run(["scancel", f"{job}_1"])
    states = slurm_cluster.wait(job, timeout=300)
    assert states[f"{job}_1"] == "CANCELLED" and states[f"{job}_0"] == states[f"{job}_2"] == "COMPLETED", states
    cells = _cells(slurm_cluster, cache, "cancel")
    done = {k: c for k, c in cells.items() if c["state"] == "done"}
    assert len(done) == 2 and [c["state"] for c in cells.values()].count("done") == 2
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("meta.json")}
    plan = _climd(slurm_cluster, "sweep", grid, "--executor", "slurm", "--slurm-partition", slurm_cluster.partition,
                  "--cells-per-task", "1", "--cache-dir", cache, "--dry-run", "--json")
    arrays = json.loads(plan.stdout)["arrays"]
    assert len(arrays) == 1 and [t["does"] for t in arrays[0]["tasks"]] == [["ros/baseline+lr0.001/seed1"]]
    [redo] = _submit(slurm_cluster, grid, cache)
    assert set(slurm_cluster.wait(redo, timeout=300).values()) == {"COMPLETED"}
    assert {c["state"] for c in _cells(slurm_cluster, cache, "cancel").values()} == {"done"}
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after                                      # the two finished cells were not retrained


def test_a_task_failing_on_bad_data_exits_3_and_status_names_it_and_what_never_runs(slurm_cluster, tmp_path):
    """Run `bad` has a NaN: its encode task ends with climd's exit code 3 and message (no traceback);
    every later array is cancelled (kill-on-invalid-dep, not pending forever); `status --sweep --json`
    shows the failure with its exit code and message, and for each cell the job that never ran and why."""
    import numpy as np
    import pandas as pd

    from tests import datagen

    datagen.tcga(tmp_path / "data" / "good")
    bad = datagen.tcga(tmp_path / "data" / "bad")
    rna = pd.read_csv(bad / "rna.csv", index_col=0)
    rna.iloc[2, 1] = np.nan
    rna.to_csv(bad / "rna.csv")
    grid = tmp_path / "fails.yaml"
    grid.write_text(f"name: fails\nruns: [good, bad]\nseeds: 0\nencode:\n  data: \"{tmp_path}/data/{{run}}\"\n"
                    "score: {}\nfit-dist: {}\nschedule: {epochs: 2}\ntrain: {curriculum: climd}\n")
    cache = tmp_path / "c"
    jobs = _submit(slurm_cluster, grid, cache)
    assert len(jobs) == 5                                        # encode, score, fit-dist, schedule, train
    encode = slurm_cluster.wait(jobs[0], timeout=120)
    assert encode == {f"{jobs[0]}_0": "COMPLETED", f"{jobs[0]}_1": "FAILED"}, encode
    for job in jobs[1:]:                                         # cancelled, not pending forever
        assert set(slurm_cluster.wait(job, timeout=60).values()) == {"CANCELLED"}, job
    shown = slurm_cluster.run(["scontrol", "-o", "show", "job", f"{jobs[0]}_1"]).stdout
    assert "ExitCode=3:0" in shown, shown
    log = (cache / "good" / "sweeps" / "fails" / "logs" / f"{jobs[0]}_1_0_log.err").read_text()
    assert "Traceback" not in log and "error: " in log and "rna.csv" in log and "1 NaN" in log, log
    out = _climd(slurm_cluster, "status", "--sweep", "fails", "--cache-dir", cache, "--json", check=False)
    assert out.returncode == 4, out.stderr
    cells = {c["cell"]: c for c in json.loads(out.stdout)["cells"]}
    assert set(cells) == {"good/climd/seed0", "bad/climd/seed0"}
    for key, cell in cells.items():
        job = cell["job"]
        assert job["id"].startswith(jobs[4] + "_") and job["state"] == "CANCELLED", cell
        assert f"the encode job {jobs[0]}_1 (bad) it waited for failed with exit 3" in job["explain"], cell
        assert "rna.csv" in job["explain"] and job["explain"] in cell["detail"], cell
    # without the scheduler (its memory of the jobs gone): the failure record of the task still answers
    from stages.sweep.jobs import job_states

    states = job_states({f"{jobs[0]}_1": {"log_dir": str(cache / "good" / "sweeps" / "fails" / "logs")}},
                        env={"PATH": "/nonexistent"})
    assert states[f"{jobs[0]}_1"]["state"] == "FAILED" and states[f"{jobs[0]}_1"]["exit_code"] == 3


@pytest.mark.slow
def test_a_preempted_train_task_checkpoints_requeues_and_ends_bit_identical(slurm_cluster, ros_template, tmp_path):
    """USR2 is what `--signal=USR2@N` sends N s before the time limit (and what a preempting
    scheduler is told to send): the task finishes its epoch, checkpoints, requeues itself, and the
    requeued task resumes; its artifacts equal an uninterrupted local run's byte for byte."""
    cache, local = tmp_path / "slurm", tmp_path / "local"
    shutil.copytree(ros_template, cache)
    shutil.copytree(ros_template, local)
    grid = tmp_path / "preempt.yaml"
    grid.write_text(GRID.replace("0-2", "0").format(name="preempt", train="  - {curriculum: climd, lr: 1e-3}"))
    _climd(slurm_cluster, "-q", "sweep", grid, "--cache-dir", local)
    [job] = _submit(slurm_cluster, grid, cache, "--checkpoint-every", "1", env={"CLIMD_DEBUG_EPOCH_SLEEP": "0.4"})
    record = json.loads((cache / "ros/sweeps/preempt/sweep.json").read_text())
    [[task]] = [[t["job_id"] for t in a["tasks"]] for a in record["submissions"][-1]["arrays"]]   # "N" (one task)
    ckpt = cache / "ros/train/climd+lr0.001/seed0/checkpoint.json"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:        # training, past its first epoch
        time.sleep(0.1)
    assert ckpt.exists(), slurm_cluster.logs(15)
    slurm_cluster.run(["scancel", "--signal=USR2", task])
    # SLURM makes a requeued job eligible 121 s later; the test moves that to now
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "Reason=BeginTime" not in \
            slurm_cluster.run(["scontrol", "-o", "show", "job", task]).stdout:
        time.sleep(0.2)
    slurm_cluster.run(["scontrol", "update", f"JobId={task}", "StartTime=now"])
    assert slurm_cluster.wait(job, timeout=180) == {task: "COMPLETED"}
    shown = slurm_cluster.run(["scontrol", "-o", "show", "job", task]).stdout
    assert "Restarts=1" in shown, shown
    log = (cache / "ros/sweeps/preempt/logs" / f"{task}_0_log.err").read_text()
    assert "requeued" in log and "resum" in log.lower() and "Traceback" not in log, log
    rel = "ros/train/climd+lr0.001/seed0"
    for name in ("model.safetensors", "history.csv"):
        assert (cache / rel / name).read_bytes() == (local / rel / name).read_bytes(), name
    assert (cache / "ros/eval-test/climd+lr0.001/seed0/metrics.json").read_bytes() == \
        (local / "ros/eval-test/climd+lr0.001/seed0/metrics.json").read_bytes()
