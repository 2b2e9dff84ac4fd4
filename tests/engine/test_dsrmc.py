"""--curriculum dsrmc (Dynamic SRM Curriculum, Zhu et al. ICASSP 2025): the pacing and the easy->hard
batch order by hand, the engine's snapshot losses against an independent recomputation, end to end
on the embedded ROSMAP, resume after kill -9, options and refusals."""
import json
import signal

import numpy as np
import pandas as pd
import pytest
import torch

from stages.data import features
from stages.engine import dsrmc, losses, order
from stages.engine.replicas import load_model, model_inputs
from stages.pipeline.train import TrainOptions
from stages.store.artifacts import RunStore, without_defaults

from tests.pipeline.test_train import _history, weights


# -- by hand ----------------------------------------------------------------------------------------
def test_paced_count_by_hand_and_as_the_authors_loop():
    # N_b = 4 batches, T = 10, pace 0.5 -> m = 5: n_t = min(4, ceil(4t/5) + 1)
    # ceil(0.8) + 1, ceil(1.6) + 1, ceil(2.4) + 1 = 4, then capped at 4
    assert [dsrmc.paced_count(t, 4, 10, 0.5) for t in (1, 2, 3, 4, 10)] == [2, 3, 4, 4, 4]
    # the authors' setting: m = 85 (pace 0.85 of T = 100), N_b = 8 (ROSMAP at batch 32)
    assert dsrmc.paced_count(1, 8, 100) == 2                  # ceil(8/85) + 1
    assert dsrmc.paced_count(42, 8, 100) == 5                 # ceil(336/85 = 3.95) + 1
    assert dsrmc.paced_count(63, 8, 100) == 7                 # ceil(504/85 = 5.93) + 1
    assert dsrmc.paced_count(74, 8, 100) == 8                 # ceil(592/85 = 6.96) + 1
    assert dsrmc.paced_count(1, 1, 100) == 1                  # one batch (full batch): always it
    # their loop (train_test.py): train while cnt < (epoch + 1) / 85.0 * N_b + 1, epoch 0-based
    for n_b in range(1, 61):
        for t in range(1, 102):
            theirs = min(n_b, sum(1 for cnt in range(n_b + 2) if cnt < t / 85.0 * n_b + 1))
            assert dsrmc.paced_count(t, n_b, 100, 0.85) == theirs, (n_b, t)


def test_batches_ordered_easy_to_hard_by_their_mean_loss_by_hand():
    """Eight samples of two classes with logit margins d = z_y - z_other; the cross-entropy of each
    is ln(1 + e^-d). Four drawn batches of two; their snapshot losses are the batch means."""
    d = np.array([2.0, -1.0, 0.0, 3.0, -2.0, 1.0, 0.0, 2.0])
    # ln(1+e^-d): 0.126928 1.313262 0.693147 0.048587 2.126928 0.313262 0.693147 0.126928
    drawn = [np.array([4, 1]), np.array([0, 3]), np.array([2, 5]), np.array([6, 7])]
    # batch means: (2.126928+1.313262)/2 = 1.720095, (0.126928+0.048587)/2 = 0.087758,
    #              (0.693147+0.313262)/2 = 0.503204, (0.693147+0.126928)/2 = 0.410038
    by_hand = [1.720095, 0.087758, 0.503204, 0.410038]
    y = torch.zeros(8, dtype=torch.long)
    logits = torch.stack([torch.as_tensor(d, dtype=torch.float32), torch.zeros(8)], dim=1)   # class 0 true
    ce = losses.make_batched(losses.LossOptions(), np.array([[4, 4]]), 10, "cpu")          # the engine's loss
    batch_losses = [float(ce(logits[b][None], y[b][None], 1)[0]) for b in drawn]
    np.testing.assert_allclose(batch_losses, by_hand, atol=1e-6)
    chosen, ranked = dsrmc.plan(drawn, batch_losses, t=1, epochs=10, pace=0.5)
    assert ranked.tolist() == [1, 3, 2, 0]                    # 0.0878 < 0.4100 < 0.5032 < 1.7201
    assert [b.tolist() for b in chosen] == [[0, 3], [6, 7]]   # n_1 = ceil(4/5) + 1 = 2 easiest
    chosen, _ = dsrmc.plan(drawn, batch_losses, t=2, epochs=10, pace=0.5)
    assert [b.tolist() for b in chosen] == [[0, 3], [6, 7], [2, 5]]
    chosen, _ = dsrmc.plan(drawn, batch_losses, t=1, epochs=10, pace=0.5, n_steps=5)   # --budget steps
    assert [b.tolist() for b in chosen] == [[0, 3], [6, 7], [0, 3], [6, 7], [0, 3]]
    assert dsrmc.easy_to_hard([0.5, 0.2, 0.5, 0.2]).tolist() == [1, 3, 0, 2]   # ties keep the drawn order


def test_candidates_are_equal_batches_seeing_every_row():
    gen = order.streams(0)["order"]
    batches = dsrmc.candidates(gen, np.arange(10), np.zeros(10, dtype=int), 4, "shuffle")
    assert [len(b) for b in batches] == [4, 4, 4]             # ceil(10/4); the last topped up
    assert set(np.concatenate(batches).tolist()) == set(range(10))
    y = np.array([0] * 6 + [1] * 4)
    bal = dsrmc.candidates(gen, np.arange(10), y, 4, "class-balanced")
    assert len(bal) == 3 and all(sorted(y[b].tolist()) == [0, 0, 1, 1] for b in bal)


# -- the engine --------------------------------------------------------------------------------------
def _per_sample_ce(ros, model, params) -> np.ndarray:
    """Cross-entropy of every training row of the embedded ROSMAP under ``params``, computed apart
    from the engine (torch's cross_entropy on the model's evaluation forward)."""
    feats = features.read(RunStore(ros.parent, "ros").load("encode").file(features.FILE))
    rows = feats.indices("train")
    x = {k: torch.as_tensor(v[rows][None]) for k, v in model_inputs(feats).items()}
    with torch.no_grad():
        logits = model.forward(params, x, None).logits[0]
    return torch.nn.functional.cross_entropy(logits, torch.as_tensor(feats.labels[rows]), reduction="none").numpy()


def test_engine_orders_by_the_loss_of_the_model_at_each_epochs_start(cli, ros, tmp_path, monkeypatch):
    """Epoch 1's snapshot is the initial model, epoch 2's the model after epoch 1 (= a one-epoch run
    with the same pacing, m = pace T = 2). The logged batch losses equal the per-sample losses of
    those models averaged over each batch, and the trained batches are the n_t lowest, ascending."""
    log = tmp_path / "batches.jsonl"
    monkeypatch.setenv("CLIMD_DEBUG_BATCHES", str(log))
    r = cli("train", "--run", "ros", "--curriculum", "dsrmc", "--epochs", "2", "--dsrmc-pace", "1", "--lr", "1e-3",
            "--variant", "two")
    assert r.exit_code == 0, r.output
    epochs = [json.loads(line) for line in log.read_text().splitlines()]
    monkeypatch.delenv("CLIMD_DEBUG_BATCHES")
    assert cli("train", "--run", "ros", "--curriculum", "dsrmc", "--epochs", "1", "--dsrmc-pace", "2", "--lr", "1e-3",
               "--variant", "one").exit_code == 0
    model, after_one, _ = load_model(RunStore(ros.parent, "ros").read("train/one/seed0"))
    initial = torch.as_tensor(model.initial(order.streams(0)["init"]))[None]     # seed 0's init stream
    snapshots = [model.views(initial), model.views(after_one)]
    assert len(epochs) == 2
    for rec, params, used in zip(epochs, snapshots, (5, 8)):          # N_b = 8: ceil(8t/2) + 1, capped
        per_sample = _per_sample_ce(ros, model, params)
        cands = [np.array(b) for b in rec["candidates"]]
        assert [len(b) for b in cands] == [32] * 8 and set(np.concatenate(cands).tolist()) == set(range(245))
        means = np.array([per_sample[b].mean() for b in cands])
        np.testing.assert_allclose(rec["losses"], means, rtol=1e-5)
        assert rec["order"] == np.argsort(means, kind="stable").tolist()
        assert rec["batches"] == [rec["candidates"][i] for i in rec["order"][:used]]
        assert rec["dsrmc_batches"] == used
    h = _history(ros / "train" / "two" / "seed0")
    assert h["steps"].tolist() == [5, 8] and h["phase"].tolist() == ["curriculum"] * 2
    assert (h["dsrmc_loss_first"] <= h["dsrmc_loss_last"]).all()


def test_dsrmc_trains_end_to_end_on_rosmap_and_evaluates(cli, ros):
    r = cli("train", "--run", "ros", "--curriculum", "dsrmc", "--epochs", "12", "--lr", "1e-3", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)[0]
    assert out["variant"] == "dsrmc+lr0.001"
    h = _history(ros / "train" / out["variant"] / "seed0")
    # m = 0.85 * 12 = 10.2, N_b = 8: n_t = ceil(8t / 10.2) + 1 -> 2 3 4 5 5 6 7 8 8 8 8 8
    assert h["steps"].tolist() == [2, 3, 4, 5, 5, 6, 7, 8, 8, 8, 8, 8]
    assert h["samples_seen"].tolist() == [32 * s for s in h["steps"]]
    assert h["loss"].iloc[-1] < h["loss"].iloc[0]
    assert cli("evaluate", "--run", "ros", "--variant", out["variant"]).exit_code == 0
    metrics = json.loads((ros / "eval-test" / out["variant"] / "seed0" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.6                         # chance is ~0.5 on ROSMAP


def test_other_models_losses_and_budget_steps(cli, ros, tmp_path, monkeypatch):
    """Multi-D's auxiliary losses enter the snapshot loss (epoch 1, recomputed from the initial
    model: CE of the batch + its auxiliary losses); an epoch-dependent loss, --budget steps and
    finish epochs train; all replicas of a call in one program."""
    log = tmp_path / "batches.jsonl"
    monkeypatch.setenv("CLIMD_DEBUG_BATCHES", str(log))
    r = cli("train", "--run", "ros", "--curriculum", "dsrmc", "--epochs", "3", "--model", "multid",
            "--model-option", "hidden=16", "--seeds", "0-1", "--json")
    monkeypatch.delenv("CLIMD_DEBUG_BATCHES")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {o["summary"]["replicas_in_program"] for o in out} == {2}
    first = next(json.loads(line) for line in log.read_text().splitlines() if json.loads(line)["seed"] == 0)
    model = load_model(RunStore(ros.parent, "ros").read(f"train/{out[0]['variant']}/seed0"))[0]
    params = model.views(torch.as_tensor(model.initial(order.streams(0)["init"]))[None])
    feats = features.read(RunStore(ros.parent, "ros").load("encode").file(features.FILE))
    rows, inputs = feats.indices("train"), model_inputs(feats)
    expected, ce_only = [], []
    with torch.no_grad():
        for batch in first["candidates"]:
            x = {k: torch.as_tensor(v[rows][batch][None]) for k, v in inputs.items()}
            y = torch.as_tensor(feats.labels[rows][batch])
            result = model.forward(params, x, None, y[None])
            ce_only.append(float(torch.nn.functional.cross_entropy(result.logits[0], y)))
            expected.append(ce_only[-1] + float(result.aux_loss[0]))
    np.testing.assert_allclose(first["losses"], expected, rtol=1e-5)
    assert all(a > c + 0.1 for a, c in zip(first["losses"], ce_only))      # the auxiliary terms count
    r = cli("train", "--run", "ros", "--curriculum", "dsrmc", "--epochs", "4", "--loss", "ldam-drw",
            "--budget", "steps",
            "--finish-epochs", "2", "--json")
    assert r.exit_code == 0, r.output
    h = _history(ros / "train" / json.loads(r.stdout)[0]["variant"] / "seed0")
    assert (h["steps"] == 8).all() and h["phase"].tolist() == ["curriculum"] * 4 + ["finish"] * 2
    # m = 0.85 * 4 = 3.4: ceil(2.35) + 1, ceil(4.71) + 1, ceil(7.06) + 1 = 9 capped at 8, 8
    assert h["dsrmc_batches"].iloc[:4].tolist() == [4, 6, 8, 8]


def test_options_refusals_and_unchanged_keys(cli, ros):
    assert TrainOptions(curriculum="dsrmc").variant_name() == "dsrmc"
    assert TrainOptions(curriculum="dsrmc", dsrmc_pace=0.5, budget="steps").variant_name() == "dsrmc+steps+pace0.5"
    # the new option at its default is not part of any key: existing caches stay valid
    assert "dsrmc_pace" not in without_defaults({"dsrmc_pace": 0.85, "lr": 1e-3}, {"dsrmc_pace": 0.85, "lr": 5e-5})
    r = cli("train", "--run", "ros", "--curriculum", "climd", "--dsrmc-pace", "0.5")
    assert r.exit_code == 2 and "--dsrmc-pace applies only to --curriculum dsrmc" in r.stderr
    r = cli("train", "--run", "ros", "--curriculum", "dsrmc", "--dsrmc-pace", "0")
    assert r.exit_code == 2 and "--dsrmc-pace must be a number > 0" in r.stderr
    r = cli("train", "--run", "ros", "--curriculum", "dsrmc", "--schedule-tag", "oof")
    assert r.exit_code == 2 and "--schedule-tag" in r.stderr
    r = cli("train", "--run", "ros", "--curriculum", "dsrmc", "--model", "logreg")
    assert r.exit_code == 2 and "scikit-learn reference" in r.stderr
    r = cli("train", "--run", "ros", "--curriculum", "dsrmc", "--epochs", "2", "--resample", "smote")
    assert r.exit_code == 0, r.output                        # synthetic rows need no schedule ids


def test_interrupted_then_resumed_equals_uninterrupted(cli, ros, cache, monkeypatch):
    """A SIGTERM during epoch 3 (raised in-process, deterministically): checkpoint, exit 130; the
    rerun resumes every replica after epoch 3 and ends bit-identical to an uninterrupted run. DSRMC
    keeps no state of its own: the snapshot is the parameters at the epoch's start, and the batches
    come from the replica's order stream, both in the checkpoint."""
    import shutil

    from stages.engine import loop as engine

    shutil.copytree(ros, cache / "whole")
    args = ["train", "--curriculum", "dsrmc", "--epochs", "8", "--seeds", "0-1", "--lr", "1e-3", "--jobs", "1"]
    epochs_done = []

    def interrupt_in_epoch_3():
        epochs_done.append(1)
        if len(epochs_done) == 3:
            signal.raise_signal(signal.SIGTERM)          # the engine's handler: finish the epoch, checkpoint

    original = engine.debug_sleep
    monkeypatch.setattr(engine, "debug_sleep", interrupt_in_epoch_3)
    r = cli(*args, "--run", "ros")
    assert r.exit_code == 130 and "interrupted" in r.stderr
    saved = [json.loads(p.read_text())["meta"]["epoch"] for p in ros.glob("train/dsrmc*/seed*/checkpoint.json")]
    assert saved == [3, 3] and not list(ros.glob("train/dsrmc*/seed*/model.json"))
    monkeypatch.setattr(engine, "debug_sleep", original)
    log = cache / "batches.jsonl"
    monkeypatch.setenv("CLIMD_DEBUG_BATCHES", str(log))
    r = cli(*args, "--run", "ros")
    assert r.exit_code == 0, r.output
    assert sorted({json.loads(line)["epoch"] for line in log.read_text().splitlines()}) == list(range(4, 9))  # resumed
    monkeypatch.delenv("CLIMD_DEBUG_BATCHES")
    cli(*args, "--run", "whole")
    for s in range(2):
        a, b = ros / "train" / "dsrmc+lr0.001" / f"seed{s}", cache / "whole" / "train" / "dsrmc+lr0.001" / f"seed{s}"
        wa, wb = weights(a), weights(b)
        assert all(np.array_equal(wa[k], wb[k]) for k in wa)
        pd.testing.assert_frame_equal(_history(a), _history(b))
        assert not list(a.glob("checkpoint*"))


def test_a_sweep_grid_takes_dsrmc_and_its_pace(tmp_path):
    from stages.sweep.grid import load_grid

    grid = tmp_path / "grid.yaml"
    grid.write_text("runs: ros\nseeds: 0-1\ntrain:\n  - {curriculum: [none, dsrmc], epochs: 4}\n"
                    "  - {curriculum: dsrmc, dsrmc-pace: 0.5, lr: 1e-3}\n")
    cells = {c.key: c for c in load_grid(grid).cells}
    assert {"ros/baseline/seed0", "ros/dsrmc/seed1", "ros/dsrmc+lr0.001+pace0.5/seed0"} <= set(cells)
    assert cells["ros/dsrmc+lr0.001+pace0.5/seed0"].command() == \
        "climd train --run ros --curriculum dsrmc --lr 0.001 --dsrmc-pace 0.5 --seed 0"


def test_an_nn_module_plugin_with_class_balanced_batches(cli, cache, tmp_path):
    """CFCML (an nn.Module behind the adapter, class-balanced batches, HRM auxiliary losses): its
    candidate batches are class-balanced, scored in eval mode, and the paced count is trained."""
    from tests import datagen

    path = datagen.manifest(tmp_path / "m", n=16)
    r = cli("encode", "--run", "c", "--data", path, "--image-stages", "--stage-grid", "2", "--device", "cpu",
            "--image-encoder", "resnet18", "--allow-random-weights")
    assert r.exit_code == 0, r.output
    r = cli("train", "--run", "c", "--model", "cfcml", "--curriculum", "dsrmc", "--epochs", "3", "--model-option",
            "dim=16", "--model-option", "tokens=4", "--batch-size", "4", "--dsrmc-pace", "1", "--json")
    assert r.exit_code == 0, r.output
    h = _history(cache / "c" / "train" / json.loads(r.stdout)[0]["variant"] / "seed0")
    # 12 training rows (6 + 6), batch 4: N_b = 3, m = 1 * 3: n_t = ceil(3t/3) + 1, capped -> 2, 3, 3
    assert h["dsrmc_batches"].tolist() == h["steps"].tolist() == [2, 3, 3]
    assert h.loc[0, "n_benign"] == h.loc[0, "n_malignant"] == 4            # two class-balanced batches
    assert (h["dsrmc_loss_first"] < h["dsrmc_loss_last"]).all() and "aux_sam" in h.columns
