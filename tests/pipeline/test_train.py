"""train: budgets, curriculum subsets, losses, resampling, batched replicas, resume after kill -9."""
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

from stages.engine import losses
from stages.engine import order
from stages.engine import resample
from stages.store import tensorio
from stages.pipeline.train import TrainOptions, parse_seeds

from tests.conftest import ALL_CPUS, ROOT
from tests.procs import children_of, wait_for


def _history(path):
    return pd.read_csv(path / "history.csv")


def weights(path) -> dict:
    return tensorio.load(path / "model", as_numpy=True)[0]


def test_curriculum_trains_on_exactly_the_schedule(cli, ros):
    r = cli("train", "--run", "ros", "--curriculum", "climd", "--batch-size", "16")
    assert r.exit_code == 0, r.output
    h = _history(ros / "train" / "climd+bs16" / "seed0")
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


def test_full_batch_and_step_learning_rate(cli, ros):
    r = cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "4", "--batch-size", "full",
            "--lr-step", "2", "--lr-gamma", "0.5", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)[0]
    assert out["variant"] == "baseline+fullbatch+lrstep2x0.5"
    h = _history(ros / "train" / out["variant"] / "seed0")
    assert (h["steps"] == 1).all() and (h["samples_seen"] == 245).all()


def test_conflicting_options_are_refused(cli, ros):
    r = cli("train", "--run", "ros", "--curriculum", "climd", "--resample", "smote")
    assert r.exit_code == 2 and "--curriculum none" in r.stderr
    r = cli("train", "--run", "ros", "--curriculum", "climd", "--epochs", "50")
    assert r.exit_code == 2 and "--epochs 50 but schedule has 12 epochs" in r.stderr
    r = cli("train", "--run", "ros", "--curriculum", "root")
    assert r.exit_code == 4 and "schedule.root" in r.stderr
    r = cli("train", "--run", "ros", "--seeds", "0-2", "--seed-from-env", "SLURM_ARRAY_TASK_ID")
    assert r.exit_code == 2 and "--seeds and --seed-from-env" in r.stderr
    r = cli("train", "--run", "ros", "--batch-size", "-3")
    assert r.exit_code == 2 and "--batch-size" in r.stderr


@pytest.mark.parametrize("name", ["../../victim", "x/../../y", "a b", "..", ".hidden", "lr/0.1", ""])
def test_unsafe_variant_names_are_refused(cli, ros, name):
    r = cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "1", "--variant", name, "--force")
    assert r.exit_code == 2 and "invalid variant name" in r.stderr
    assert not (ros / "train").exists() or not any((ros / "train").iterdir())
    assert sorted(p.name for p in ros.parent.iterdir()) == ["ros"]


def test_stale_schedule_is_refused_by_train(cli, ros):
    cli("fit-dist", "--run", "ros", "--gamma", "0.9")
    r = cli("train", "--run", "ros", "--curriculum", "climd")
    assert r.exit_code == 5 and "stale" in r.stderr and "fit-dist has changed" in r.stderr


@pytest.mark.parametrize("curriculum", ["climd", "none", "dsrmc"])
def test_a_replica_alone_equals_the_same_replica_in_a_batch(cli, ros, curriculum, all_cpus):
    """Seed 3 trained alone and inside a batch of six (and next to another learning rate) ends with
    the same weights (within 1e-4; bit-identical here) and the same predictions."""
    common = ["train", "--run", "ros", "--curriculum", curriculum, "--epochs", "12", "--json"]
    batch = json.loads(cli(*common, "--seeds", "0-5", "--variant", "batch").stdout)
    assert {r["summary"]["replicas_in_program"] for r in batch} == {6}
    mixed = json.loads(cli(*common, "--seeds", "2-4", "--lr", "1e-3,5e-5").stdout)
    assert {r["summary"]["replicas_in_program"] for r in mixed} == {6}
    cli(*common, "--seed", "3", "--variant", "alone")
    alone = weights(ros / "train" / "alone" / "seed3")
    for other in (ros / "train" / "batch" / "seed3",
                  ros / "train" / ("baseline" if curriculum == "none" else curriculum) / "seed3"):
        together = weights(other)
        assert alone.keys() == together.keys()
        assert max(float(np.abs(alone[k] - together[k]).max()) for k in alone) <= 1e-4
        assert all(np.array_equal(alone[k], together[k]) for k in alone)   # bit-identical on this CPU
    assert not np.array_equal(weights(ros / "train" / "batch" / "seed2")["cls.1.w"], alone["cls.1.w"])
    cli("evaluate", "--run", "ros")
    pred = {v: pd.read_csv(ros / "eval-test" / v / "seed3" / "predictions.csv") for v in ("alone", "batch")}
    assert (pred["alone"]["pred"] == pred["batch"]["pred"]).all()
    np.testing.assert_allclose(pred["alone"].filter(like="p_"), pred["batch"].filter(like="p_"), atol=1e-6)


def test_worker_processes_equal_one_process_and_env_seed(cli, ros, monkeypatch, all_cpus):
    cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "4", "--seeds", "0-3", "--jobs", "2",
        "--variant", "par")
    cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "4", "--seeds", "0-3", "--variant", "seq")
    for s in range(4):
        a, b = weights(ros / "train" / "par" / f"seed{s}"), weights(ros / "train" / "seq" / f"seed{s}")
        assert all(np.array_equal(a[k], b[k]) for k in a)
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


def _climd(cache, *args, **kw):
    env = {**os.environ, "CLIMD_CACHE": str(cache), "PYTHONPATH": str(ROOT), **kw.pop("env", {})}
    # every CPU of the machine, also from a pinned `pytest -n` worker: --jobs is capped at the CPUs
    kw.setdefault("preexec_fn", lambda: os.sched_setaffinity(0, ALL_CPUS))
    return subprocess.Popen([sys.executable, "-m", "climd_cli", "-q", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("extra_wait", [0.0, 0.6])
def test_kill_a_batched_train_then_resume_gives_the_same_weights(cli, ros, cache, extra_wait):
    """kill -9 of a batched `climd train` part-way (just after the first checkpoint, or later):
    the rerun resumes every replica and ends identical to an uninterrupted run (in a copy of the run)."""
    import shutil

    shutil.copytree(ros, cache / "whole")
    args = ["train", "--curriculum", "climd", "--seeds", "0-4", "--lr", "5e-5,1e-3", "--checkpoint-every", "1"]
    proc = _climd(cache, *args, "--run", "ros", env={"CLIMD_DEBUG_EPOCH_SLEEP": "0.1"})
    wait_for("train/climd*/seed*/checkpoint.json", ros)
    time.sleep(extra_wait)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = [json.loads(p.read_text())["meta"]["epoch"] for p in ros.glob("train/climd*/seed*/checkpoint.json")]
    assert saved and max(saved) < 12 and not list(ros.glob("train/climd*/seed*/model.json"))
    done = _climd(cache, *args, "--run", "ros")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    cli(*args, "--run", "whole")
    for variant in ("climd", "climd+lr0.001"):
        for s in range(5):
            a, b = ros / "train" / variant / f"seed{s}", cache / "whole" / "train" / variant / f"seed{s}"
            wa, wb = weights(a), weights(b)
            assert all(np.array_equal(wa[k], wb[k]) for k in wa)
            pd.testing.assert_frame_equal(_history(a), _history(b))
            assert not list(a.glob("checkpoint*"))


def test_kill_of_the_parent_leaves_no_worker_behind(ros, cache):
    args = ["train", "--run", "ros", "--curriculum", "none", "--epochs", "12", "--seeds", "0-3", "--jobs", "2",
            "--variant", "orphans"]
    proc = _climd(cache, *args, env={"CLIMD_DEBUG_EPOCH_SLEEP": "0.3"})
    marker = str(cache)
    deadline = time.time() + 60
    while time.time() < deadline and len(children_of(proc.pid)) < 1:
        time.sleep(0.1)
    workers = children_of(proc.pid)          # the parent trains one block itself, a child the other
    assert len(workers) >= 1, "the worker never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], f"workers outlived their parent ({marker})"


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_planted_pickle_model_is_corrupt_and_never_unpickled(cli, ros, tmp_path):
    """A pickle planted as a model file never runs (damaged checkpoints: tests/hardening/test_checkpoints.py)."""
    assert cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "2", "--variant", "dmg").exit_code == 0
    marker = tmp_path / "pwned"
    model_file = ros / "train" / "dmg" / "seed0" / "model.safetensors"
    model_file.write_bytes(_evil_pickle(marker))
    r = cli("evaluate", "--run", "ros", "--variant", "dmg", "--seed", "0")
    assert r.exit_code == 5 and not marker.exists() and "model.safetensors" in r.stderr


def _evil_pickle(marker) -> bytes:
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    return pickle.dumps(Evil())


def test_variant_names():
    assert TrainOptions().variant_name() == "climd"
    assert TrainOptions(curriculum="none", loss="wce").variant_name() == "baseline+wce"
    assert TrainOptions(curriculum="root", budget="steps", lr=1e-3).variant_name() == "root+steps+lr0.001"
    assert TrainOptions(model="cfcml", schedule_tag="oof").variant_name() == "cfcml-climd.oof"


def test_batches_one_pass_steps_and_class_balanced():
    gen = order.streams(0)["order"]
    pool = np.arange(10)
    one = order.epoch_batches(gen, pool, 4)
    assert [len(b) for b in one] == [4, 4, 2] and sorted(np.concatenate(one).tolist()) == list(range(10))
    steps = order.epoch_batches(gen, pool[:3], 4, n_steps=5)
    assert [len(b) for b in steps] == [3] * 5
    y = np.array([0] * 8 + [1] * 2)
    bal = order.balanced_batches(gen, pool, y, 4, n_steps=3)
    assert all(sorted(y[b].tolist()) == [0, 0, 1, 1] for b in bal)
    a, b = order.streams(7), order.streams(7)
    assert np.array_equal(a["order"].permutation(50), b["order"].permutation(50))
    assert not np.array_equal(order.streams(7)["order"].permutation(50), order.streams(7)["noise"].permutation(50))


def test_loss_values_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, y)
    def focal(gamma):            # the engine's loss, one replica
        fn = losses.make_batched(losses.LossOptions(name="focal", focal_gamma=gamma), np.ones((1, 2)), 1, "cpu")
        return float(fn(logits[None], y[None], 1)[0])

    assert focal(0.0) == pytest.approx(float(ce))
    # p_t = e^2/(e^2+1) = 0.8807971 and 0.5; -(1-p)^2 ln p = 0.0142093 * 0.1269280 = 0.0018036
    # and 0.25 * 0.6931472 = 0.1732868; FL = mean = 0.0875452
    assert focal(2.0) == pytest.approx(0.0875452, rel=1e-5)
    np.testing.assert_allclose(losses.class_weights([30, 10]), [40 / 60, 40 / 20])


def test_vae_oversampler_balances_and_is_seeded():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(5, 1, (8, 3))])
    y = np.array([0] * 40 + [1] * 8)
    a, ya = resample.VAEOverSampler(epochs=100, random_state=1).fit_resample(X, y)
    b, _ = resample.VAEOverSampler(epochs=100, random_state=1).fit_resample(X, y)
    assert np.bincount(ya).tolist() == [40, 40] and np.allclose(a, b)
    assert abs(a[48:, 0].mean() - 5) < 1.5          # generated minority samples near the minority


def test_evaluate_names_incomplete_trainings_and_evaluates_the_rest(cli, ros):
    cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "2", "--seeds", "0-2")
    (ros / "train" / "baseline" / "seed1" / "meta.json").unlink()            # as if killed
    (ros / "train" / "baseline" / "seed2" / "meta.json").write_text("[]")     # a damaged meta.json
    r = cli("evaluate", "--run", "ros")
    assert r.exit_code == 5 and "Traceback" not in r.output
    assert "train/baseline/seed1" in r.stderr and "train/baseline/seed2" in r.stderr and "malformed" in r.stderr
    assert (ros / "eval-test" / "baseline" / "seed0" / "metrics.json").exists()
    r = cli("evaluate", "--run", "ros", "--allow-incomplete")
    assert r.exit_code == 0 and "seed1" in r.stderr
    assert cli("evaluate", "--run", "ros", "--seed", "0").exit_code == 0


@pytest.mark.parametrize("loss", ["logit-adjusted", "balanced-softmax", "ldam-drw", "cb"])
def test_new_imbalance_losses_train_with_and_without_the_curriculum(cli, ros, loss):
    for curriculum in ("climd", "none"):
        r = cli("train", "--run", "ros", "--curriculum", curriculum, "--epochs", "12", "--loss", loss,
                "--seeds", "0-1", "--json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert all(np.isfinite(o["summary"]["final_loss"]) for o in out)
        assert len({o["variant"] for o in out}) == 1 and out[0]["variant"] != ("climd" if curriculum == "climd" else "baseline")


def test_closed_form_cross_entropy_gradient_equals_autograd():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 7), generator=gen)
    loss, grad = losses.ce_value_and_grad(logits.clone(), y)
    leaf = logits.clone().requires_grad_(True)
    reference = losses.make_batched(losses.LossOptions(), np.ones((3, 4)), 10, "cpu")(leaf, y, 1)
    (expected,) = torch.autograd.grad(reference.sum(), leaf)
    torch.testing.assert_close(loss, reference.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)


def test_a_replica_being_trained_elsewhere_is_named_not_trained_twice(cli, ros):
    """A live lease on one replica's folder (another process training it): that replica is named with
    its holder (exit 6) and not touched; the other replica of the call trains; once the lease is
    released, a rerun trains it."""
    from stages.store.lease import Lease

    folder = ros / "train" / "busy" / "seed1"
    folder.mkdir(parents=True)
    args = ["train", "--run", "ros", "--curriculum", "none", "--epochs", "3", "--seeds", "0-1", "--variant", "busy",
            "--jobs", "1"]
    with Lease(folder, purpose="a test holding it"):
        r = cli(*args)
        assert r.exit_code == 6 and "busy/seed1" in r.stderr and f"pid {os.getpid()}" in r.stderr, r.stderr
        assert (ros / "train" / "busy" / "seed0" / "meta.json").exists()
        assert not (folder / "meta.json").exists() and (folder / ".lease.json").exists()
    r = cli(*args)
    assert r.exit_code == 0 and (folder / "meta.json").exists() and not (folder / ".lease.json").exists()


def test_force_starts_over_instead_of_resuming(cli, ros, cache):
    args = ["train", "--run", "ros", "--curriculum", "none", "--epochs", "12", "--checkpoint-every", "1",
            "--variant", "again"]
    proc = _climd(cache, *args, env={"CLIMD_DEBUG_EPOCH_SLEEP": "0.2"})
    wait_for("train/again/seed0/checkpoint.json", ros)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = cli(*args, "--force")
    assert r.exit_code == 0 and "resuming" not in r.stderr
    cli(*args[:-2], "--variant", "fresh")
    a, b = weights(ros / "train" / "again" / "seed0"), weights(ros / "train" / "fresh" / "seed0")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_replica_is_the_same_whatever_losses_its_neighbours_use(cli, ros):
    """Seed 1 with plain CE trained alone, and in one program with replicas using other losses."""
    cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "4", "--seed", "1", "--variant", "alone")
    from stages.store.artifacts import RunStore
    from stages.pipeline.train import TrainOptions, run_many

    store = RunStore(ros.parent, "ros")
    tasks = [(store, TrainOptions(curriculum="none", epochs=4, loss=loss), 1, f"mixed-{loss}")
             for loss in ("ce", "wce", "logit-adjusted")]
    results = run_many(tasks, jobs=1)
    assert {r["artifact"].summary["replicas_in_program"] for r in results} == {3}
    a, b = weights(ros / "train" / "alone" / "seed1"), weights(ros / "train" / "mixed-ce" / "seed1")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_an_empty_curriculum_epoch_trains_no_step_and_is_not_a_divergence(cli, cache, tmp_path):
    """48 samples over T = 100 epochs: S_1 = 0.48 rounds to no sample. That epoch trains nothing
    (0 steps, no loss in history.csv) and the rest train as usual (it crashed the engine before)."""
    import csv

    from tests import datagen

    path = datagen.omics_manifest(tmp_path / "d", n=48)
    for args in (["encode", "--data", path], ["score"], ["fit-dist"], ["schedule", "--epochs", "100"]):
        assert cli(*args, "--run", "e").exit_code == 0
    assert (cache / "e" / "schedule" / "epoch_0001.txt").read_text() == ""
    for budget in ("epochs", "steps"):
        r = cli("train", "--run", "e", "--curriculum", "climd", "--budget", budget, "--seeds", "0")
        assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((cache / "e" / "train" / "climd" / "seed0" / "history.csv").open()))
    assert len(rows) == 100 and rows[0]["steps"] == "0" and rows[0]["loss"] == ""
    assert all(int(r["steps"]) > 0 and r["loss"] for r in rows[1:])
