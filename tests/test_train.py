"""train: budgets, curriculum subsets, losses, resampling, resume after kill -9, seeds."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from stages import losses, resample
from stages.train import TrainOptions, batch_indices, parse_seeds

from . import datagen
from .conftest import ROOT


@pytest.fixture
def ros(cli, cache):
    """Embedded ROSMAP through schedule, 12 epochs (small and fast)."""
    for args in (["encode"], ["score", "--probe-epochs", "50"], ["fit-dist"], ["schedule", "--epochs", "12"]):
        r = cli(*args, "--run", "ros")
        assert r.exit_code == 0, r.output
    return cache / "ros"


def _history(path):
    return pd.read_csv(path / "history.csv")


def test_curriculum_trains_on_exactly_the_schedule(cli, ros):
    r = cli("train", "--run", "ros", "--curriculum", "climd", "--batch-size", "16")
    assert r.exit_code == 0, r.output
    h = _history(ros / "train" / "climd" / "seed0")
    sched = json.loads((ros / "schedule" / "schedule.json").read_text())
    assert h["subset_size"].tolist() == [e["size"] for e in sched["per_epoch"]]
    assert h[["n_0", "n_1"]].rename(columns=lambda c: c[2:]).to_dict("records") == [e["counts"] for e in sched["per_epoch"]]
    # budget "epochs": one pass per epoch
    assert (h["samples_seen"] == h["subset_size"]).all()
    assert (h["steps"] == np.ceil(h["subset_size"] / 16)).all()
    assert h["samples_seen"].sum() == sum(e["size"] for e in sched["per_epoch"])


def test_steps_budget_and_finish_epochs(cli, ros):
    r = cli("train", "--run", "ros", "--curriculum", "climd", "--budget", "steps", "--finish-epochs", "3",
            "--batch-size", "32", "--json")
    out = json.loads(r.stdout)[0]
    assert out["path"].endswith("train/climd+steps+finish3/seed0")
    h = _history(ros / "train" / "climd+steps+finish3" / "seed0")
    assert len(h) == 15 and (h["steps"] == 8).all()          # ceil(245 / 32) steps every epoch
    assert h["phase"].tolist() == ["curriculum"] * 12 + ["finish"] * 3
    assert (h.loc[12:, "subset_size"] == 245).all()
    assert out["summary"]["optimizer_steps"] == 15 * 8


def test_no_curriculum_and_imbalance_baselines(cli, ros):
    for extra in (["--loss", "wce"], ["--loss", "focal"], ["--resample", "smote"],
                  ["--resample", "undersample"], ["--resample", "vae"]):
        r = cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "3", *extra, "--json")
        assert r.exit_code == 0, r.output
    variants = sorted(p.name for p in (ros / "train").iterdir())
    assert variants == ["baseline+focal", "baseline+smote", "baseline+undersample", "baseline+vae", "baseline+wce"]
    h = _history(ros / "train" / "baseline+smote" / "seed0")
    assert h.loc[0, "n_0"] == h.loc[0, "n_1"] == 127      # SMOTE: minority up to the majority
    h = _history(ros / "train" / "baseline+undersample" / "seed0")
    assert h.loc[0, "n_0"] == h.loc[0, "n_1"] == 118


def test_conflicting_options_are_refused(cli, ros):
    r = cli("train", "--run", "ros", "--curriculum", "climd", "--resample", "smote")
    assert r.exit_code == 2 and "--curriculum none" in r.stderr
    r = cli("train", "--run", "ros", "--curriculum", "climd", "--epochs", "50")
    assert r.exit_code == 2 and "--epochs 50 but schedule has 12 epochs" in r.stderr
    r = cli("train", "--run", "ros", "--curriculum", "root")
    assert r.exit_code == 4 and "schedule.root" in r.stderr


def test_stale_schedule_is_refused_by_train(cli, ros):
    cli("fit-dist", "--run", "ros", "--gamma", "0.9")
    r = cli("train", "--run", "ros", "--curriculum", "climd")
    assert r.exit_code == 5 and "stale" in r.stderr and "fit-dist has changed" in r.stderr


def test_seeds_parallel_equal_sequential_and_env_seed(cli, ros, monkeypatch):
    cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "4", "--seeds", "0-1", "--jobs", "2",
        "--variant", "par")
    cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "4", "--seeds", "0-1", "--variant", "seq")
    for s in (0, 1):
        a = torch.load(ros / "train" / "par" / f"seed{s}" / "model.pt", weights_only=False)["state_dict"]
        b = torch.load(ros / "train" / "seq" / f"seed{s}" / "model.pt", weights_only=False)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    r = cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "2", "--seed-from-env", "SLURM_ARRAY_TASK_ID")
    assert r.stdout.strip().endswith("train/baseline/seed3")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    r = cli("train", "--run", "ros", "--curriculum", "none", "--seed-from-env", "SLURM_ARRAY_TASK_ID")
    assert r.exit_code == 2 and "unset" in r.stderr
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]


def test_rerun_is_reused(cli, ros):
    cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "2")
    r = cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "2")
    assert "reused" in r.stderr


def test_kill_then_resume_gives_the_same_weights(cli, ros, cache):
    env = {**os.environ, "CLIMD_CACHE": str(cache), "CLIMD_DEBUG_EPOCH_SLEEP": "0.15", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "climd_cli", "-q", "train", "--run", "ros", "--curriculum", "none",
            "--epochs", "40", "--seed", "5", "--variant", "killed"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = ros / "train" / "killed" / "seed5" / "checkpoint.pt"
    deadline = time.time() + 60
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.8)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ros / "train" / "killed" / "seed5" / "model.pt").exists()
    state = torch.load(ckpt, weights_only=False)
    assert 1 <= state["epoch"] < 40
    env.pop("CLIMD_DEBUG_EPOCH_SLEEP")
    done = subprocess.run(args[:3] + args[4:], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"from epoch {state['epoch']}" in done.stderr
    cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "40", "--seed", "5", "--variant", "whole")
    a = torch.load(ros / "train" / "killed" / "seed5" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(ros / "train" / "whole" / "seed5" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not ckpt.exists()
    ha, hb = _history(ros / "train" / "killed" / "seed5"), _history(ros / "train" / "whole" / "seed5")
    pd.testing.assert_frame_equal(ha, hb)


def test_variant_names():
    assert TrainOptions().variant_name() == "climd"
    assert TrainOptions(curriculum="none", loss="wce").variant_name() == "baseline+wce"
    assert TrainOptions(curriculum="root", budget="steps", lr=1e-3).variant_name() == "root+steps+lr0.001"
    assert TrainOptions(model="cfcml", schedule_tag="oof").variant_name() == "cfcml-climd.oof"


def test_batches_one_pass_and_steps():
    gen = torch.Generator().manual_seed(0)
    pool = torch.arange(10)
    one = batch_indices(pool, torch.zeros(10, dtype=torch.long), 4, gen)
    assert [len(b) for b in one] == [4, 4, 2] and sorted(torch.cat(one).tolist()) == list(range(10))
    steps = batch_indices(pool[:3], torch.zeros(10, dtype=torch.long), 4, gen, n_steps=5)
    assert [len(b) for b in steps] == [3] * 5
    y = torch.tensor([0] * 8 + [1] * 2)
    bal = batch_indices(pool, y, 4, gen, n_steps=3, mode="class-balanced")
    assert all(sorted(y[b].tolist()) == [0, 0, 1, 1] for b in bal)


def test_loss_values_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert losses.focal_loss(logits, y, gamma=0.0) == pytest.approx(float(ce))
    # p_t = e^2/(e^2+1) = 0.8807971 and 0.5; -(1-p)^2 ln p = 0.0142093 * 0.1269280 = 0.0018036
    # and 0.25 * 0.6931472 = 0.1732868; FL = mean = 0.0875452
    assert float(losses.focal_loss(logits, y, gamma=2.0)) == pytest.approx(0.0875452, rel=1e-5)
    np.testing.assert_allclose(losses.class_weights([30, 10]), [40 / 60, 40 / 20])


def test_vae_oversampler_balances_and_is_seeded():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(5, 1, (8, 3))])
    y = np.array([0] * 40 + [1] * 8)
    a, ya = resample.VAEOverSampler(epochs=100, random_state=1).fit_resample(X, y)
    b, _ = resample.VAEOverSampler(epochs=100, random_state=1).fit_resample(X, y)
    assert np.bincount(ya).tolist() == [40, 40] and np.allclose(a, b)
    assert abs(a[48:, 0].mean() - 5) < 1.5          # generated minority samples near the minority
