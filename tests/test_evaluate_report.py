"""evaluate + report: metrics recomputed from the saved predictions with plain scikit-learn agree."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from stages import metrics


@pytest.fixture
def evaluated(cli, cache):
    for args in (["encode"], ["score", "--probe-epochs", "50"], ["fit-dist"], ["schedule", "--epochs", "8"]):
        assert cli(*args, "--run", "ros").exit_code == 0
    for extra in (["--curriculum", "climd"], ["--curriculum", "none", "--epochs", "8"],
                  ["--curriculum", "none", "--epochs", "8", "--loss", "wce"]):
        r = cli("train", "--run", "ros", *extra, "--seeds", "0-2", "--lr", "1e-3")
        assert r.exit_code == 0, r.output
    r = cli("evaluate", "--run", "ros")
    assert r.exit_code == 0, r.output
    return cache / "ros"


def test_predictions_and_metrics_files(evaluated):
    pred = pd.read_csv(evaluated / "eval-test" / "climd+lr0.001" / "seed1" / "predictions.csv")
    assert len(pred) == 106 and set(pred.columns) == {"id", "true", "pred", "p_0", "p_1"}
    assert np.allclose(pred[["p_0", "p_1"]].sum(axis=1), 1)
    assert all(pred["id"].str.startswith("te"))         # test samples only
    m = json.loads((evaluated / "eval-test" / "climd+lr0.001" / "seed1" / "metrics.json").read_text())
    assert np.array(m["confusion_matrix"]).sum() == 106 and {"sensitivity", "specificity"} <= set(m)


def test_report_agrees_with_sklearn_on_saved_predictions(cli, evaluated):
    r = cli("report", "--run", "ros", "--reference", "baseline+lr0.001", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    table = {row["variant"]: row for row in out["table"]}
    for variant in ("climd+lr0.001", "baseline+lr0.001", "baseline+wce+lr0.001"):
        acc, wf1, mf1, auc, sens = [], [], [], [], []
        for seed in range(3):
            p = pd.read_csv(evaluated / "eval-test" / variant / f"seed{seed}" / "predictions.csv", dtype={"true": str, "pred": str})
            acc.append(accuracy_score(p.true, p.pred))
            wf1.append(f1_score(p.true, p.pred, average="weighted"))
            mf1.append(f1_score(p.true, p.pred, average="macro"))
            auc.append(roc_auc_score(p.true.astype(int), p.p_1))
            sens.append(((p.pred == "1") & (p.true == "1")).sum() / (p.true == "1").sum())
        row = table[variant]
        assert row["n"] == 3
        assert row["accuracy_mean"] == pytest.approx(np.mean(acc)) and row["accuracy_std"] == pytest.approx(np.std(acc, ddof=1))
        assert row["f1_weighted_mean"] == pytest.approx(np.mean(wf1))
        assert row["f1_macro_mean"] == pytest.approx(np.mean(mf1))
        assert row["auc_macro_mean"] == pytest.approx(np.mean(auc))
        assert row["recall_1_mean"] == pytest.approx(np.mean(sens))     # sensitivity, class 1 positive
    paired = {row["variant"]: row for row in out["paired"][0]}
    runs = pd.read_csv(evaluated / "report" / "runs.csv")
    a = runs[runs.variant == "climd+lr0.001"].sort_values("seed").f1_macro.to_numpy()
    b = runs[runs.variant == "baseline+lr0.001"].sort_values("seed").f1_macro.to_numpy()
    assert paired["climd+lr0.001"]["d_f1_macro"] == pytest.approx((a - b).mean())
    if not np.allclose(a, b):
        assert paired["climd+lr0.001"]["p_f1_macro"] == pytest.approx(wilcoxon(a - b).pvalue)
    md = (evaluated / "report" / "report.md").read_text()
    assert "| variant | 0 (specificity) | 1 (sensitivity) |" in md
    assert "| climd+lr0.001 | 3 |" in md and "Produced by: `climd report" in md


def test_report_over_several_runs_pairs_by_run_and_seed(cli, cache, evaluated):
    import shutil

    shutil.copytree(evaluated, cache / "ros-copy")
    r = cli("report", "--run", "ros*", "--reference", "baseline+lr0.001", "--title", "two runs", "--json")
    out = json.loads(r.stdout)
    md = (cache / "ros" / "report" / "report.md").read_text()      # the command, quoted for a shell
    assert "`climd report --run 'ros*' --reference baseline+lr0.001 --title 'two runs'" in md
    assert {row["variant"]: row["n"] for row in out["table"]}["climd+lr0.001"] == 6
    assert {row["variant"]: row["n_pairs"] for row in out["paired"][0]}["climd+lr0.001"] == 6


def test_evaluate_is_reused_and_valid_split_needs_one(cli, evaluated):
    assert "reused" in cli("evaluate", "--run", "ros").stderr
    r = cli("evaluate", "--run", "ros", "--split", "valid")
    assert r.exit_code == 3 and "no 'valid' split" in r.stderr and "--val-fraction" in r.stderr


def test_metrics_by_hand():
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    y = np.array([0, 1, 2, 1])
    m = metrics.compute(y, proba, ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["recall"] == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert m["balanced_accuracy"] == pytest.approx(2.5 / 3)
    # F1 per class: a 2/3 (p 1/2, r 1), b 2/3 (p 1, r 1/2), c 1 -> macro 7/9; weighted (1*2/3+2*2/3+1)/4 = 3/4
    assert m["f1_macro"] == pytest.approx(7 / 9) and m["f1_weighted"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert metrics.compute(np.array([0, 0]), np.array([[0.6, 0.4, 0.0], [0.7, 0.2, 0.1]]), ["a", "b", "c"])["auc_macro"] is None
