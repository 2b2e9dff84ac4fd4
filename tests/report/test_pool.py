"""climd pool: the random-effects meta-analysis against statsmodels and against numbers worked by hand;
each data set's effect recomputed from runs.csv; the committed verdict reports pooled end to end."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.meta_analysis import combine_effects

from stages.report import decision, pool

ROOT = Path(__file__).resolve().parents[2]
VERDICTS = [ROOT / "results" / n / "verdict" for n in ("brca", "kipan", "lgg", "rosmap", "derm7pt")]


def test_meta_by_hand_heterogeneous():
    # y = 1, 2, 3 with v = 0.25: Q(τ² = 0) = (1 + 0 + 1)/0.25 = 8 > k − 1 = 2, so Paule–Mandel solves
    # Σ (y − μ)²/(v + τ²) = 2 -> 2/(0.25 + τ²) = 2 -> τ² = 0.75; weights equal, μ = 2,
    # 1/Σw = 1/3, HK variance = Σ w_rel (y − μ)²/(k − 1) = (1/3)·2/2 = 1/3 (the same)
    # 95 % CI 2 ± t_{2, 0.975}·sqrt(1/3) = 2 ± 4.302653·0.577350 = 2 ± 2.484138
    r = pool.meta(np.array([1.0, 2.0, 3.0]), np.array([0.25] * 3), delta=0.5)
    assert r["tau2"] == pytest.approx(0.75, rel=1e-4) and r["mean"] == pytest.approx(2.0)
    assert r["se_hk"] == pytest.approx(math.sqrt(1 / 3), rel=1e-4)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((2 - 2.484138, 2 + 2.484138), rel=1e-4)
    assert r["q"] == pytest.approx(8.0)
    post = sps.t(2, loc=2.0, scale=math.sqrt(1 / 3))
    assert r["p_better"] == pytest.approx(post.sf(0.5), rel=1e-4) and r["decision"] == "inconclusive"


def test_meta_modified_hk_when_the_spread_is_smaller_than_the_variances():
    # y = 1.9, 2, 2.1, v = 1: Q = 0.02 < 2 -> τ² = 0; 1/Σw = 1/3, plain HK variance = (1/3)(0.02)/2
    # = 0.0033333: the plain HK interval shrinks tenfold; the modified one keeps 1/Σw = 1/3
    r = pool.meta(np.array([1.9, 2.0, 2.1]), np.ones(3), delta=0.5)
    assert r["tau2"] == 0 and r["se_hk_plain"] == pytest.approx(math.sqrt(0.02 / 6))
    assert r["se_hk"] == pytest.approx(math.sqrt(1 / 3)) and r["se_re"] == pytest.approx(math.sqrt(1 / 3))
    assert r["ci_high"] - r["ci_low"] > 9 * (r["ci_high_hk_plain"] - r["ci_low_hk_plain"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_meta_matches_statsmodels_combine_effects(seed):
    rng = np.random.default_rng(seed)
    y, v = rng.normal(0.01, 0.02, 5), rng.uniform(0.0002, 0.002, 5)
    r = pool.meta(y, v, delta=0.02)
    sm = combine_effects(y, v, method_re="iterated", use_t=True)
    assert r["mean"] == pytest.approx(sm.mean_effect_re) and r["tau2"] == pytest.approx(sm.tau2)
    hk = sm.conf_int(alpha=0.05, use_t=True)[3]
    assert (r["ci_low_hk_plain"], r["ci_high_hk_plain"]) == pytest.approx(tuple(hk))
    assert r["se_hk_plain"] == pytest.approx(math.sqrt(sm.var_hksj_re))
    assert r["se_hk"] == pytest.approx(math.sqrt(max(sm.var_hksj_re, sm.var_eff_w_re)))


def test_effect_per_data_set_from_runs_csv():
    rows, pairs = pool.read_report(VERDICTS[0])
    assert ("climd-best", "baseline@tuned") in pairs
    e = pool.effect(rows, "climd-best", "baseline@tuned", "f1_macro", 0.02)
    a = rows[rows.variant == "climd-best"].set_index("run").f1_macro
    b = rows[rows.variant == "baseline@tuned"].set_index("run").f1_macro
    d = (a - b).dropna()
    ratio = (rows[rows.variant == "climd-best"].n_test / rows[rows.variant == "climd-best"].n_train).mean()
    assert e["J"] == 10 and e["effect"] == pytest.approx(d.mean())
    assert e["variance"] == pytest.approx((1 / 10 + ratio) * d.var(ddof=1))
    # the same as the committed paired CSV's corrected standard error
    paired = pd.read_csv(VERDICTS[0] / "paired_vs_baseline@tuned.csv").set_index("variant")
    assert math.sqrt(e["variance"]) == pytest.approx(paired.loc["climd-best", "se_f1_macro"], rel=1e-5)
    assert e["decision"] == decision.decide(d.to_numpy(), 0.02, ratio)["decision"]


def test_pool_the_committed_verdicts(cli, tmp_path):
    out = tmp_path / "pooled"
    r = cli("pool", *map(str, VERDICTS), "--out", str(out), "--delta", "2")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out)
    inputs, pooled = pd.read_csv(out / "inputs.csv"), pd.read_csv(out / "pooled.csv")
    assert len(pooled) == 11 and set(inputs.dataset) == {"brca", "kipan", "lgg", "rosmap", "derm7pt"}
    for _, p in pooled.iterrows():
        sub = inputs[(inputs.variant == p.variant) & (inputs.reference == p.reference)]
        sm = combine_effects(sub.effect.to_numpy(), sub.variance.to_numpy(), method_re="iterated", use_t=True)
        assert p["mean"] == pytest.approx(sm.mean_effect_re) and p.tau2 == pytest.approx(sm.tau2, abs=1e-12)
        assert (p.ci_low_hk_plain, p.ci_high_hk_plain) == pytest.approx(tuple(sm.conf_int(use_t=True)[3]))
        assert p.delta == pytest.approx(0.02) and p.decision in {"better", "equivalent", "worse", "inconclusive"}
    assert (out / "forest.png").stat().st_size > 10_000 and (out / "cd.png").stat().st_size > 5_000
    md = (out / "pooled.md").read_text()
    assert "Friedman test p =" in md and "| climd-best | baseline@tuned |" in md
    # differences.csv: each data set's per-run differences; its posterior recomputes inputs.csv
    diffs = pd.read_csv(out / "differences.csv")
    d = diffs[(diffs.dataset == "lgg") & (diffs.variant == "climd-best") & (diffs.reference == "baseline@tuned")]
    e = inputs[(inputs.dataset == "lgg") & (inputs.variant == "climd-best") & (inputs.reference == "baseline@tuned")].iloc[0]
    post = sps.t(len(d) - 1, loc=d["diff"].mean(),
                 scale=math.sqrt((1 / len(d) + (d.n_test / d.n_train).mean()) * d["diff"].var(ddof=1)))
    assert len(d) == 10 and e.p_better == pytest.approx(post.sf(0.02)) and e.p_worse == pytest.approx(post.cdf(-0.02))
    # selection optimism from chosen.csv and runs.csv: mean valid score of the pick minus its test score
    opt = pd.read_csv(out / "optimism.csv").set_index(["dataset", "name"])
    chosen = pd.read_csv(VERDICTS[0] / "chosen.csv")
    runs = pd.read_csv(VERDICTS[0] / "runs.csv")
    c = chosen[chosen.name == "noncurriculum-best"].merge(runs[runs.variant == "noncurriculum-best"], on=["run", "seed"])
    assert opt.loc[("brca", "noncurriculum-best"), "optimism"] == pytest.approx((c.valid_score - c.f1_macro).mean())
    assert opt.loc[("brca", "noncurriculum-best"), "candidates"] == 45 and "Selection optimism" in md
    meta = json.loads((out / "meta.json").read_text())
    assert set(meta["datasets"]) == {"brca", "kipan", "lgg", "rosmap", "derm7pt"} and "statsmodels" in str(meta)
    # two data sets: pooled, but no critical-difference diagram, and the report says why
    r = cli("pool", *map(str, VERDICTS[:2]), "--out", str(tmp_path / "two"))
    assert r.exit_code == 0 and not (tmp_path / "two" / "cd.png").exists()
    assert "autorank needs at least 5" in (tmp_path / "two" / "pooled.md").read_text()
    # a folder that is not a report: one message naming runs.csv, exit 4
    r = cli("pool", str(tmp_path), str(VERDICTS[0]), "--out", str(tmp_path / "bad"))
    assert r.exit_code == 4 and "runs.csv" in r.output


def test_bad_report_files_are_named(cli, tmp_path):
    import shutil

    for n in ("a", "b"):
        shutil.copytree(VERDICTS[2], tmp_path / n)
    runs = pd.read_csv(tmp_path / "b" / "runs.csv")
    runs["f1_macro"] = runs["f1_macro"].astype(object)
    runs.loc[3, "f1_macro"] = "oops"
    runs.to_csv(tmp_path / "b" / "runs.csv", index=False)
    r = cli("pool", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out"))
    assert r.exit_code == 3 and "runs.csv: column f1_macro is not numeric" in r.output
    (tmp_path / "b" / "paired_vs_baseline@tuned.csv").write_bytes(b"\xff\xfe\x00garbage")
    r = cli("pool", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out"))
    assert r.exit_code == 3 and "paired_vs_baseline@tuned.csv is not a readable CSV" in r.output
    r = cli("pool", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "out"))
    assert r.exit_code == 2 and "same data-set name" in r.output
    r = cli("pool", str(tmp_path / "a"), str(tmp_path / "a"), "--name", "x", "--name", "y", "--out",
            str(tmp_path / "out"), "--metric", "nope")
    assert r.exit_code == 2 and "metric 'nope'" in r.output
