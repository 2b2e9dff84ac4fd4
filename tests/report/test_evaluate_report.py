"""evaluate + report: metrics recomputed from the saved predictions with plain scikit-learn agree; the
paired statistics, per-replicate choices, integrity checks and incomplete replicates of `climd report`.

The real pipeline (embedded ROSMAP) is built once per module and copied into each test's cache. The
statistics tests use small stores of hand-made artifacts (``fake_run``): they go through the same
store API (hashes, keys, freshness) as real ones, so the report reads them exactly like real runs.
"""
import json
from collections import Counter
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.stats import wilcoxon
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from stages.core import metrics
from stages.store.artifacts import RunStore


# -- the real pipeline, built once ---------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from climd_cli.app import app

    root = tmp_path_factory.mktemp("built") / "cache"
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLIMD_CACHE", str(root))

        def cli(*args):
            return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

        for args in (["encode"], ["score", "--probe-epochs", "50"], ["fit-dist"], ["schedule", "--epochs", "8"]):
            assert cli(*args, "--run", "ros").exit_code == 0
        for extra in (["--curriculum", "climd"], ["--curriculum", "none", "--epochs", "8"],
                      ["--curriculum", "none", "--epochs", "8", "--loss", "wce"]):
            r = cli("train", "--run", "ros", *extra, "--seeds", "0-2", "--lr", "1e-3")
            assert r.exit_code == 0, r.output
        r = cli("evaluate", "--run", "ros")
        assert r.exit_code == 0, r.output
    return root


@pytest.fixture
def evaluated(built, cache):
    shutil.copytree(built, cache)
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
    enc = json.loads((evaluated / "encode" / "meta.json").read_text())["summary"]
    minority = enc["class_names"][int(np.argmin(enc["train_class_counts"]))]
    assert out["positive_class"]["positive"] == minority
    for variant in ("climd+lr0.001", "baseline+lr0.001", "baseline+wce+lr0.001"):
        acc, wf1, mf1, auc, sens = [], [], [], [], []
        for seed in range(3):
            p = pd.read_csv(evaluated / "eval-test" / variant / f"seed{seed}" / "predictions.csv", dtype={"true": str, "pred": str})
            acc.append(accuracy_score(p.true, p.pred))
            wf1.append(f1_score(p.true, p.pred, average="weighted"))
            mf1.append(f1_score(p.true, p.pred, average="macro"))
            auc.append(roc_auc_score(p.true.astype(int), p.p_1))
            sens.append(((p.pred == minority) & (p.true == minority)).sum() / (p.true == minority).sum())
        row = table[variant]
        assert row["n"] == 3
        assert row["accuracy_mean"] == pytest.approx(np.mean(acc)) and row["accuracy_std"] == pytest.approx(np.std(acc, ddof=1))
        assert row["f1_weighted_mean"] == pytest.approx(np.mean(wf1))
        assert row["f1_macro_mean"] == pytest.approx(np.mean(mf1))
        assert row["auc_macro_mean"] == pytest.approx(np.mean(auc))
        assert row["sensitivity_mean"] == pytest.approx(np.mean(sens))   # recall of the training minority
    paired = {row["variant"]: row for row in out["paired"][0]}
    runs = pd.read_csv(evaluated / "report" / "runs.csv")
    a = runs[runs.variant == "climd+lr0.001"].sort_values("seed").f1_macro.to_numpy()
    b = runs[runs.variant == "baseline+lr0.001"].sort_values("seed").f1_macro.to_numpy()
    rec = paired["climd+lr0.001"]
    assert rec["d_f1_macro"] == pytest.approx((a - b).mean())
    assert rec["test"] == "paired-t"                       # three seeds of one split
    if not np.allclose(a, b):
        assert rec["p_wilcoxon_f1_macro"] == pytest.approx(wilcoxon(a - b).pvalue)
        assert rec["p_t_f1_macro"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    md = (evaluated / "report" / "report.md").read_text()
    other = [c for c in enc["class_names"] if c != minority][0]
    assert f"{minority} (sensitivity)" in md and f"{other} (specificity)" in md
    assert f"the positive class is **{minority}** (the minority class of the training split" in md
    assert "| climd+lr0.001 | 3 |" in md and "Produced by: `climd report" in md
    assert "ordinary paired t-test" in md


def test_report_over_several_runs_pairs_by_run_and_seed(cli, cache, evaluated):
    shutil.copytree(evaluated, cache / "ros-copy")
    r = cli("report", "--run", "ros*", "--reference", "baseline+lr0.001", "--title", "two runs", "--json")
    out = json.loads(r.stdout)
    md = (cache / "ros" / "report" / "report.md").read_text()      # the command, quoted for a shell
    assert "`climd report --run 'ros*' --reference baseline+lr0.001 --title 'two runs'" in md
    assert {row["variant"]: row["n"] for row in out["table"]}["climd+lr0.001"] == 6
    rec = {row["variant"]: row for row in out["paired"][0]}["climd+lr0.001"]
    assert rec["n_pairs"] == 6 and rec["test"] == "nadeau-bengio"
    assert rec["n_test_over_n_train"] == pytest.approx(106 / 245)   # ROSMAP: 245 train, 106 test
    # the copy has the same split as the original: the corrected t assumes resplits, and says so
    assert rec["shared_split"] == "ros = ros-copy"
    assert "runs ros = ros-copy share one split" in r.stderr and "Nadeau–Bengio" in r.stderr
    # the header's training counts are per run, not summed over the two replicates
    enc = json.loads((evaluated / "encode" / "meta.json").read_text())["summary"]
    shown = ", ".join(f"{n} {c}" for n, c in zip(enc["class_names"], enc["train_class_counts"]))
    assert f"training counts {shown} per run, the mean over 2 runs" in md
    assert out["positive_class"]["train_counts"] == dict(zip(enc["class_names"], enc["train_class_counts"]))


def test_evaluate_is_reused_and_valid_split_needs_one(cli, evaluated):
    assert "reused" in cli("evaluate", "--run", "ros").stderr
    r = cli("evaluate", "--run", "ros", "--split", "valid")
    assert r.exit_code == 3 and "no 'valid' split" in r.stderr and "--val-fraction" in r.stderr


def test_edited_evaluation_files_are_refused(cli, evaluated):
    path = evaluated / "eval-test" / "baseline+lr0.001" / "seed1" / "metrics.json"
    m = json.loads(path.read_text())
    path.write_text(json.dumps({**m, "accuracy": 0.999}))
    r = cli("report", "--run", "ros")
    assert r.exit_code == 5 and "corrupt: metrics.json changed" in r.stderr and "seed1" in r.stderr
    assert "rerun `climd evaluate --run ros" in r.stderr and "--force`" in r.stderr
    shutil.rmtree(path.parent)
    pred = evaluated / "eval-test" / "climd+lr0.001" / "seed0" / "predictions.csv"
    pred.write_text(pred.read_text().replace("te", "tx", 1))
    r = cli("report", "--run", "ros")
    assert r.exit_code == 5 and "predictions.csv changed" in r.stderr


def test_killed_training_is_an_incomplete_replicate(cli, evaluated):
    (evaluated / "train" / "climd+lr0.001" / "seed2" / "meta.json").unlink()       # as if killed
    r = cli("report", "--run", "ros", "--reference", "baseline+lr0.001")
    assert r.exit_code == 5
    assert "incomplete replicate" in r.stderr and "climd+lr0.001 seed 2 of run ros" in r.stderr
    assert "--allow-incomplete" in r.stderr and "resumes from its checkpoint" in r.stderr
    r = cli("report", "--run", "ros", "--reference", "baseline+lr0.001", "--allow-incomplete", "--json")
    assert r.exit_code == 0 and "incomplete replicate left out" in r.stderr
    out = json.loads(r.stdout)
    assert {row["variant"]: row["n"] for row in out["table"]} == {"climd+lr0.001": 2, "baseline+lr0.001": 3,
                                                                  "baseline+wce+lr0.001": 3}
    rec = {row["variant"]: row for row in out["paired"][0]}["climd+lr0.001"]
    assert rec["n_pairs"] == 2 and rec["dropped"] == "ros/seed2 (only baseline+lr0.001)"
    assert "replicates dropped (on one side only): ros/seed2 (only baseline+lr0.001)" in r.stderr


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
    # two classes: y = [1, 1, 0], predicted [1, 0, 0] -> recall of class 1 = 1/2, of class 0 = 1
    two = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])
    m = metrics.compute(np.array([1, 1, 0]), two, ["neg", "pos"])
    assert (m["positive_class"], m["sensitivity"], m["specificity"]) == ("pos", 0.5, 1.0)
    m = metrics.compute(np.array([1, 1, 0]), two, ["neg", "pos"], positive=0)
    assert (m["positive_class"], m["sensitivity"], m["specificity"]) == ("neg", 1.0, 0.5)


# -- hand-made stores ------------------------------------------------------------------------------
def mdict(v: float, classes=("0", "1"), recall=None) -> dict:
    """A metrics.json with macro-F1 v; the other headline metrics are v shifted by fixed amounts."""
    out = {k: v + 0.01 * (i - metrics.HEADLINE.index("f1_macro")) for i, k in enumerate(metrics.HEADLINE)}
    return {"n": 50, **out, "recall": recall or {c: v for c in classes}, "class_names": list(classes)}


def fake_run(root, run, evals, split_counts=None, classes=("0", "1"), train_counts=(60, 40)):
    """evals: {(split, variant, seed): metrics dict}; builds encode, train and eval artifacts."""
    store = RunStore(root, run)
    summary = {"class_names": list(classes), "train_class_counts": list(train_counts),
               "split_counts": split_counts or {"train": 200, "valid": 40, "test": 50}}
    enc, _ = store.build("encode", "encode", 1, {"fake": True}, {},
                         lambda out: (out / "features.h5").write_text("x") and summary)
    for (split, variant, seed), m in evals.items():
        name = f"train/{variant}/seed{seed}"
        trained, _ = store.build(name, "train", 1, {"seed": seed, "variant": variant, "lr": 0.001}, {"encode": enc.ref()},
                                 lambda out: (out / "model.pt").write_text("m") and {"samples_seen": 100, "optimizer_steps": 4})
        store.build(f"eval-{split}/{variant}/seed{seed}", "evaluate", 1, {"split": split},
                    {"train": trained.ref(), "encode": enc.ref()},
                    lambda out, m=m: (out / "metrics.json").write_text(json.dumps(m)) and {})
    return store


def _values(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.55, 0.8, n).round(4)


def test_ten_resplits_nadeau_bengio_ci_wilcoxon_holm(cli, cache):
    J = 10
    base, a, b, c = _values(1, J), _values(2, J), _values(3, J), _values(4, J)
    for k in range(J):                                   # ten resplits of one data set, one seed each
        fake_run(cache, f"r{k}", {("test", "base", k): mdict(base[k]), ("test", "A", k): mdict(a[k]),
                                   ("test", "B", k): mdict(b[k]), ("test", "C", k): mdict(c[k])},
                 split_counts={"train": 200 + k, "valid": 40, "test": 50})
    r = cli("report", "--run", "r*", "--reference", "base", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["variant"]: row for row in json.loads(r.stdout)["paired"][0]}
    ratio = np.mean([50 / (200 + k) for k in range(J)])
    p_t = {}
    for name, x in (("A", a), ("B", b), ("C", c)):
        d = x - base
        rec = rows[name]
        assert rec["test"] == "nadeau-bengio" and rec["n_pairs"] == J
        assert rec["n_test_over_n_train"] == pytest.approx(ratio)
        # independent: scipy's one-sample t, its statistic rescaled by sqrt((1/J) / (1/J + ratio))
        plain = sps.ttest_1samp(d, 0.0)
        t = plain.statistic * np.sqrt((1 / J) / (1 / J + ratio))
        assert rec["t_f1_macro"] == pytest.approx(t)
        assert rec["p_t_f1_macro"] == pytest.approx(2 * sps.t.sf(abs(t), J - 1))
        half = sps.t.ppf(0.975, J - 1) * np.sqrt((1 / J + ratio) * d.var(ddof=1))
        assert (rec["ci_low_f1_macro"], rec["ci_high_f1_macro"]) == pytest.approx((d.mean() - half, d.mean() + half))
        assert rec["p_wilcoxon_f1_macro"] == pytest.approx(sps.wilcoxon(d).pvalue)
        assert rec["wilcoxon_min_p_f1_macro"] == pytest.approx(2 / 2 ** J)
        assert rec["d_accuracy"] == pytest.approx(d.mean())          # every metric is paired too
        p_t[name] = rec["p_t_f1_macro"]
    holm = multipletests([p_t[n] for n in "ABC"], method="holm")[1]
    assert [rows[n]["p_holm_f1_macro"] for n in "ABC"] == pytest.approx(list(holm))
    out = cache / "r0" / "report"
    csv = pd.read_csv(out / "paired_vs_base.csv")
    for m in metrics.HEADLINE:
        assert {f"d_{m}", f"ci_low_{m}", f"ci_high_{m}", f"p_t_{m}", f"p_wilcoxon_{m}", f"p_holm_{m}"} <= set(csv.columns)
    md = (out / "report.md").read_text()
    assert "Nadeau–Bengio corrected resampled t-test" in md and "| variant | pairs | ΔmF1 [95 % CI] | corrected-t p | Wilcoxon p | Holm p |" in md
    assert "All metrics, Δ [95 % CI] (Holm-adjusted t p):" in md
    # the terminal table: CI, corrected-t p, Wilcoxon p and Holm p for each comparison, one line per row
    r = cli("report", "--run", "r*", "--reference", "base")
    lines = r.stderr.splitlines()
    assert any("Wilcoxon p" in ln and "Holm p" in ln and "95% CI" in ln for ln in lines)
    for name in "ABC":
        rec = rows[name]
        row = [ln for ln in lines if ln.strip("│ ").startswith(f"{name} ") and "nadeau-bengio" in ln]
        assert len(row) == 1, r.stderr                                 # never wrapped off a terminal
        assert f"[{rec['ci_low_f1_macro'] * 100:+.1f}, {rec['ci_high_f1_macro'] * 100:+.1f}]" in row[0]
        assert f"{rec['p_holm_f1_macro']:.3f}" in row[0] and f"{rec['p_wilcoxon_f1_macro']:.3f}" in row[0]


def test_seeds_of_one_split_use_the_paired_t_and_warn_about_wilcoxon(cli, cache):
    base, a = _values(5, 5), _values(6, 5)
    evals = {("test", "base", k): mdict(base[k]) for k in range(5)} | {("test", "A", k): mdict(a[k]) for k in range(5)}
    fake_run(cache, "one", evals)
    r = cli("report", "--run", "one", "--reference", "base", "--json")
    rec = json.loads(r.stdout)["paired"][0][0]
    assert rec["test"] == "paired-t" and rec["p_t_f1_macro"] == pytest.approx(sps.ttest_rel(a, base).pvalue)
    ci = sps.ttest_rel(a, base).confidence_interval(0.95)
    assert (rec["ci_low_f1_macro"], rec["ci_high_f1_macro"]) == pytest.approx((ci.low, ci.high))
    assert "the Wilcoxon test cannot reach p < 0.05 for A (smallest attainable p with these pairs = 2/2^n = 0.0625)" in r.stderr
    md = (cache / "one" / "report" / "report.md").read_text()
    assert "ordinary paired t-test" in md and "can never reach p < 0.05" in md and "0.062" in md


def test_choose_per_replicate_on_validation(cli, cache):
    # replicate -> validation mF1 of lr1, lr2, lr3; test mF1 is made to disagree with validation
    valid = {0: (0.60, 0.70, 0.65), 1: (0.72, 0.72, 0.50), 2: (0.50, 0.55, None)}   # None: no valid eval
    test = {0: (0.90, 0.61, 0.62), 1: (0.66, 0.91, 0.64), 2: (0.52, 0.56, 0.95)}
    for k in range(3):
        evals = {("test", "base", k): mdict(0.6), ("valid", "base", k): mdict(0.6)}
        for j, lr in enumerate(("c+lr1", "c+lr2", "c+lr3")):
            evals[("test", lr, k)] = mdict(test[k][j])
            if valid[k][j] is not None:
                evals[("valid", lr, k)] = mdict(valid[k][j])
        fake_run(cache, f"s{k}", evals)
    r = cli("report", "--run", "s*", "--choose", "best=c+lr*", "--reference", "base", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    picks = [(c["run"], c["chosen"], c["valid_score"]) for c in out["chosen"]]
    # s0: lr2 (0.70); s1: lr1 and lr2 tie at 0.72 -> the earlier, lr1; s2: lr3 has no valid eval -> lr2
    assert picks == [("s0", "c+lr2", 0.70), ("s1", "c+lr1", 0.72), ("s2", "c+lr2", 0.55)]
    assert "candidate c+lr3 has no validation evaluation in s2/seed2; not eligible there" in r.stderr
    row = {t["variant"]: t for t in out["table"]}["best"]
    assert row["n"] == 3 and row["f1_macro_mean"] == pytest.approx(np.mean([0.61, 0.66, 0.56]))   # their TEST scores
    rec = {p["variant"]: p for p in out["paired"][0]}["best"]
    assert rec["d_f1_macro"] == pytest.approx(np.mean([0.61, 0.66, 0.56]) - 0.6)
    folder = cache / "s0" / "report"
    assert pd.read_csv(folder / "chosen.csv").chosen.tolist() == ["c+lr2", "c+lr1", "c+lr2"]
    runs = pd.read_csv(folder / "runs.csv")
    assert runs[runs.variant == "best"].chosen.tolist() == ["c+lr2", "c+lr1", "c+lr2"]
    md = (folder / "report.md").read_text()
    assert "**best**: chosen per replicate on the validation macro-F1" in md and "| s1/seed1 | c+lr1 | 72.0 | 3 |" in md and "| s2/seed2 | c+lr2 | 55.0 | 2 |" in md
    # a chosen variant works as the reference, and a name clash or a choice on valid is refused
    r = cli("report", "--run", "s*", "--choose", "best=c+lr*", "--reference", "best", "--json")
    assert r.exit_code == 0 and {p["variant"] for p in json.loads(r.stdout)["paired"][0]} >= {"base", "c+lr1"}
    assert cli("report", "--run", "s*", "--choose", "base=c+lr*").exit_code == 2
    assert cli("report", "--run", "s*", "--choose", "nope").exit_code == 2
    assert cli("report", "--run", "s*", "--choose", "x=c*", "--split", "valid").exit_code == 2


def test_select_mean_and_per_replicate(cli, cache):
    for k, (v1, v2) in enumerate(((0.6, 0.7), (0.8, 0.5))):
        fake_run(cache, f"v{k}", {("valid", "c+lr1", k): mdict(v1), ("valid", "c+lr2", k): mdict(v2)})
    r = cli("select", "--run", "v*", "--candidates", "c+lr*")
    assert r.stdout.strip() == "c+lr1" and "mean f1_macro over replicates" in r.stderr   # 0.70 vs 0.60
    r = cli("select", "--run", "v*", "--candidates", "c+lr*", "--per-replicate", "--param", "lr")
    assert r.stdout.splitlines() == ["v0\t0\t0.001", "v1\t1\t0.001"]
    r = cli("select", "--run", "v*", "--candidates", "c+lr*", "--per-replicate")
    assert r.stdout.splitlines() == ["v0\t0\tc+lr2", "v1\t1\tc+lr1"]
    fake_run(cache, "t0", {("test", "c+lr1", 0): mdict(0.5)})
    r = cli("select", "--run", "t0", "--candidates", "c+lr*", "--split", "test")
    assert r.exit_code == 0 and "choosing on the test split is not honest" in r.stderr


def test_positive_class_defaults_to_the_training_minority(cli, cache):
    classes = ("MEL", "NEV")
    evals = {("test", "base", k): mdict(0.7, classes, {"MEL": 0.5 + 0.1 * k, "NEV": 0.9}) for k in range(3)}
    fake_run(cache, "derm", evals, classes=classes, train_counts=(90, 256))
    r = cli("report", "--run", "derm", "--json")
    row = json.loads(r.stdout)["table"][0]
    assert row["sensitivity_mean"] == pytest.approx(0.6) and row["specificity_mean"] == pytest.approx(0.9)
    md = (cache / "derm" / "report" / "report.md").read_text()
    assert "the positive class is **MEL** (the minority class of the training split; training counts MEL 90, NEV 256)" in md
    assert "| variant | MEL (sensitivity) | NEV (specificity) |" in md
    r = cli("report", "--run", "derm", "--positive-class", "NEV", "--json")
    assert json.loads(r.stdout)["table"][0]["sensitivity_mean"] == pytest.approx(0.9)
    r = cli("report", "--run", "derm", "--positive-class", "BCC")
    assert r.exit_code == 2 and "MEL, NEV" in r.stderr


def test_one_malformed_artifact_is_named_not_a_traceback(cli, cache):
    fake_run(cache, "bad", {("test", "base", k): mdict(0.6) for k in range(3)})
    meta = cache / "bad" / "eval-test" / "base" / "seed1" / "meta.json"
    meta.write_text("[1, 2]")                                     # valid JSON, wrong shape
    r = cli("report", "--run", "bad")
    assert r.exit_code == 5 and str(meta.parent) in r.stderr and "malformed" in r.stderr
    meta.write_text("{not json")
    r = cli("report", "--run", "bad")
    assert r.exit_code == 5 and "unreadable meta.json" in r.stderr
    train_meta = cache / "bad" / "train" / "base" / "seed2" / "meta.json"
    meta.unlink()
    shutil.rmtree(meta.parent)
    train_meta.write_text('{"key": 1}')
    r = cli("report", "--run", "bad")
    assert r.exit_code == 5 and "seed2" in r.stderr


def test_summary_script_reads_the_new_report(cli, cache, tmp_path, capsys):
    """scripts/summary.py prints the verdict from the report's own numbers (no recomputation)."""
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("summary", ROOT / "scripts" / "summary.py")
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    rng = np.random.default_rng(7)
    for k in range(4):
        evals = {}
        for v in ("baseline", "baseline+lr0.001", "climd", "climd+lr0.001", "logreg-balanced"):
            evals[("valid", v, k)], evals[("test", v, k)] = mdict(rng.uniform(0.5, 0.8)), mdict(rng.uniform(0.5, 0.8))
        fake_run(cache, f"b{k}", evals)
    out = tmp_path / "results" / "brca" / "verdict"
    r = cli("report", "--run", "b*", "--choose", "climd-best=climd*", "--choose", "baseline@tuned=baseline,baseline+lr*",
            "--choose", "noncurriculum-best=baseline,baseline+lr*,logreg-balanced",
            "--reference", "baseline@tuned", "--reference", "noncurriculum-best", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    rec = {p["variant"]: p for p in rep["paired"][0]}["climd-best"]
    text = summary.diff(pd.read_csv(out / "paired_vs_baseline@tuned.csv"), "climd-best")
    assert text == (f"{100 * rec['d_f1_macro']:+.1f} [{100 * rec['ci_low_f1_macro']:+.1f}, "
                    f"{100 * rec['ci_high_f1_macro']:+.1f}] (p {rec['p_t_f1_macro']:.3f})")
    picked = Counter(c["chosen"] for c in rep["chosen"] if c["name"] == "climd-best")
    top, n = picked.most_common(1)[0]
    assert summary.most_chosen(tmp_path / "results", "brca", "verdict", "climd-best") == f"`{top}` ({n}/4)"
    for line in summary.verdict_table(tmp_path / "results"):
        if line.startswith("| BRCA |"):
            assert text in line
            break
    else:
        raise AssertionError("no BRCA row in the verdict table")
