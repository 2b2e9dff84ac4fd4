"""Threads that fit the machine, and start-up that imports only what a command computes with."""
import json
import os
import subprocess
import sys

import pytest

from stages.runtime import threads

from tests.conftest import ROOT


def _climd(cache, *args, env=None, prefix=()):
    env = {**os.environ, "CLIMD_CACHE": str(cache), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([*prefix, sys.executable, "-m", "climd_cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_allowed_cpus_follow_affinity_slurm_and_requests(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("CLIMD_THREADS", raising=False)
    assert threads.allowed_cpus() <= cpus
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert threads.allowed_cpus() == 1 and threads.resolve(None) == 1
    assert threads.resolve(8) == 1                             # never more than allowed
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setenv("CLIMD_THREADS", "1")
    assert threads.resolve(None) == 1
    assert threads.configure(worker=True) == 1 and os.environ["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("how", ["slurm", "taskset", "threads"])
def test_a_train_process_uses_no_more_threads_than_it_may(ros, cache, how):
    env, prefix, extra = {}, (), []
    if how == "slurm":
        env["SLURM_CPUS_PER_TASK"] = "1"
    elif how == "taskset":
        prefix = ("taskset", "-c", "0")
    else:
        extra = ["--threads", "64"]
    r = _climd(cache, "train", "--run", "ros", "--curriculum", "none", "--epochs", "2", "--seeds", "0-1",
               "--variant", f"t-{how}", "--json", *extra, env=env, prefix=prefix)
    assert r.returncode == 0, r.stderr
    used = {o["summary"]["threads"] for o in json.loads(r.stdout)}
    allowed = 1 if how != "threads" else len(os.sched_getaffinity(0))
    assert used and max(used) <= allowed
    if how == "threads" and allowed < 64:
        assert "more than the" in r.stderr                      # capped, with a warning


def test_start_up_imports_only_what_a_command_computes_with(ros, cache, tmp_path):
    mods = tmp_path / "modules.txt"

    def imported(*args):
        r = _climd(cache, "-q", *args, env={"CLIMD_DEBUG_MODULES": str(mods)})
        assert r.returncode == 0, r.stderr
        return set(mods.read_text().split())

    train = imported("train", "--run", "ros", "--curriculum", "climd", "--seed", "0")
    assert "torch" in train
    assert not {"torch._dynamo", "pandas", "scipy.stats"} & train       # trained without them
    reused = imported("train", "--run", "ros", "--curriculum", "climd", "--seed", "0")
    assert not {"torch", "pandas", "scipy.stats", "sklearn"} & reused   # a reused stage computes nothing
    assert "torch" not in imported("--help") and "pandas" not in imported("--help")
    for stage in (["score", "--run", "ros", "--probe-epochs", "50"], ["fit-dist", "--run", "ros"],
                  ["schedule", "--run", "ros", "--epochs", "12"]):
        assert not {"torch", "pandas"} & imported(*stage), stage        # reused: nothing heavy
    # encode's key needs the files and options only: a reused encode draws no split (no sklearn)
    resplit = ["encode", "--run", "rs", "--resplit", "1", "--val-fraction", "0.2"]
    assert "sklearn.model_selection" in imported(*resplit)
    assert not {"torch", "sklearn"} & imported(*resplit)
    assert json.loads((cache / "rs" / "encode" / "meta.json").read_text())["summary"]["split_counts"] == \
        {"test": 106, "train": 196, "valid": 49}
    evaluated = imported("evaluate", "--run", "ros")        # scikit-learn's metrics (it imports pandas itself)
    assert "sklearn.metrics" in evaluated and "torch._dynamo" not in evaluated
