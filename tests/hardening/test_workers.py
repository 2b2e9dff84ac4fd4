"""Items 5 and 7 in worker processes: a SIGTERM to the parent stops every worker at once (exit 130
within 3 s, the rerun bit-identical); a worker's failure comes back with its class and exit code as
one message (no traceback); a killed worker is exit 9; a full disk is exit 6."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from stages.store import tensorio
from stages.store.lease import Lease

from ..conftest import ROOT
from tests.procs import children_of, climd, run

JOBS = ["train", "--run", "ros", "--curriculum", "none", "--epochs", "12", "--seeds", "0-3", "--jobs", "2"]


def _epochs_logged(path, seeds):
    """Seeds that have started an epoch (the CLIMD_DEBUG_BATCHES test hook)."""
    import json

    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return set()
    return {json.loads(line)["seed"] for line in lines if line.strip()} & set(seeds)


def _weights(folder):
    return tensorio.load(folder / "model", as_numpy=True)[0]


def test_sigterm_to_the_parent_stops_every_worker_within_3_s_and_resumes_identically(cli, ros, cache, tmp_path,
                                                                                    all_cpus):
    if all_cpus < 2:
        pytest.skip("needs 2 CPUs for a worker process")
    batches = tmp_path / "batches.jsonl"
    args = JOBS + ["--variant", "term"]
    proc = climd(cache, *args, env={"CLIMD_DEBUG_EPOCH_SLEEP": "0.5", "CLIMD_DEBUG_BATCHES": str(batches)})
    deadline = time.time() + 90
    while time.time() < deadline and _epochs_logged(batches, range(4)) != {0, 1, 2, 3}:
        time.sleep(0.05)
    assert _epochs_logged(batches, range(4)) == {0, 1, 2, 3}, "parent and worker never both trained"
    time.sleep(0.6)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)                 # the parent only, as `kill PID` or a container stop
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    print(f"exit {proc.returncode} {took:.2f} s after SIGTERM to the parent")
    assert proc.returncode == 130 and took < 3.0, (proc.returncode, took, err)
    assert "Traceback" not in err
    seeds = [ros / "train" / "term" / f"seed{s}" for s in range(4)]
    assert all((s / "checkpoint.json").exists() for s in seeds)        # every worker checkpointed
    code, _, err = run(cache, *args)
    assert code == 0, err
    assert cli(*JOBS[:-2], "--jobs", "1", "--variant", "clean").exit_code == 0
    for s in range(4):
        a, b = _weights(seeds[s]), _weights(ros / "train" / "clean" / f"seed{s}")
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_lease_held_in_a_workers_block_is_exit_6_not_1(ros, cache, all_cpus):
    if all_cpus < 2:
        pytest.skip("needs 2 CPUs for a worker process")
    folder = ros / "train" / "held" / "seed3"          # the worker's block: seeds 2-3
    folder.mkdir(parents=True)
    with Lease(folder, purpose="a test holding it"):
        code, _, err = run(cache, *JOBS, "--epochs", "2", "--variant", "held")
    assert code == 6 and "held/seed3" in err and f"pid {os.getpid()}" in err and "Traceback" not in err, err
    assert err.count("error:") == 1
    assert all((ros / "train" / "held" / f"seed{s}" / "meta.json").exists() for s in range(3))


def test_a_killed_worker_is_exit_9_with_one_message(ros, cache, tmp_path, all_cpus):
    if all_cpus < 2:
        pytest.skip("needs 2 CPUs for a worker process")
    batches = tmp_path / "batches.jsonl"
    proc = climd(cache, *JOBS, "--variant", "lost", env={"CLIMD_DEBUG_EPOCH_SLEEP": "0.3",
                                                          "CLIMD_DEBUG_BATCHES": str(batches)})
    deadline = time.time() + 90
    while time.time() < deadline and not _epochs_logged(batches, [2, 3]):
        time.sleep(0.05)
    workers = children_of(proc.pid)
    assert workers, "no worker"
    for pid in workers:                               # as the kernel's out-of-memory killer would
        os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 9 and "killed" in err and "Traceback" not in err, (proc.returncode, err)
    assert err.count("error:") == 1


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (private mount namespace)")
def test_a_full_disk_under_workers_is_one_message_exit_6(ros_template, tmp_path, all_cpus):
    if all_cpus < 2:
        pytest.skip("needs 2 CPUs for a worker process")
    used = int(subprocess.run(["du", "-sb", str(ros_template)], capture_output=True, text=True).stdout.split()[0])
    mnt = tmp_path / "full"
    mnt.mkdir()
    args = " ".join(JOBS + ["--checkpoint-every", "1", "--cache-dir", str(mnt)])
    script = (f"mount -t tmpfs -o size={used + 600_000} none {mnt} && cp -r {ros_template}/. {mnt}/ && "
              f"PYTHONPATH={ROOT} {sys.executable} -m climd_cli -q {args}; echo EXIT=$?")
    r = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=180)
    assert "EXIT=6" in r.stdout, r.stdout + r.stderr
    assert "disk is full" in r.stderr and "Traceback" not in r.stderr and r.stderr.count("error:") == 1, r.stderr
