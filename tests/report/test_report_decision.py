"""climd report --delta: the decision columns, differences.csv (enough to recompute the posterior with
scipy.stats.t), seeds averaged per replicate with the split/seed variance decomposition, and the
selection optimism of --choose. Hand-made stores (``fake_run``), as in test_evaluate_report."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from stages.report import decision
from tests.report.test_evaluate_report import fake_run, mdict


def test_decision_columns_and_differences_recompute_with_scipy(cli, cache):
    rng = np.random.default_rng(11)
    J, K = 5, 2
    base = rng.uniform(0.6, 0.7, (J, K)).round(4)
    gain = (base + 0.05 + rng.normal(0, 0.01, (J, K))).round(4)          # clearly better
    same = (base + rng.normal(0, 0.002, (J, K))).round(4)                 # equivalent at 2 points
    for j in range(J):
        evals = {}
        for k in range(K):
            evals |= {("test", "base", k): mdict(base[j, k]), ("test", "A", k): mdict(gain[j, k]),
                      ("test", "B", k): mdict(same[j, k])}
        fake_run(cache, f"r{j}", evals, split_counts={"train": 200 + j, "valid": 40, "test": 50})
    r = cli("report", "--run", "r*", "--reference", "base", "--delta", "2", "--json")
    assert r.exit_code == 0, r.output
    rows = {x["variant"]: x for x in json.loads(r.stdout)["paired"][0]}
    out = cache / "r0" / "report"
    diffs = pd.read_csv(out / "differences.csv")
    assert list(diffs.columns[:6]) == ["replicate", "variant", "reference", "metric", "diff", "seeds"]
    assert {"n_train", "n_test"} <= set(diffs.columns)
    csv = pd.read_csv(out / "paired_vs_base.csv")
    assert {"delta", "p_worse", "p_equivalent", "p_better", "decision", "d_accuracy", "p_holm_f1_macro"} <= set(csv.columns)
    for name, x, verdict in (("A", gain, "better"), ("B", same, "equivalent")):
        rec = rows[name]
        d = diffs[diffs.variant == name].sort_values("replicate")
        assert len(d) == J and (d.seeds == K).all() and (d.reference == "base").all()
        # the seeds are averaged per replicate before pairing
        assert d["diff"].to_numpy() == pytest.approx((x - base).mean(axis=1))
        # anyone can recompute the posterior from differences.csv with scipy.stats.t
        ratio = float((d.n_test / d.n_train).mean())
        post = sps.t(J - 1, loc=d["diff"].mean(), scale=np.sqrt((1 / J + ratio) * d["diff"].var(ddof=1)))
        delta = rec["delta"]
        assert delta == pytest.approx(0.02)
        assert rec["p_worse"] == pytest.approx(post.cdf(-delta))
        assert rec["p_better"] == pytest.approx(post.sf(delta))
        assert rec["p_equivalent"] == pytest.approx(post.cdf(delta) - post.cdf(-delta))
        assert rec["decision"] == verdict and csv.set_index("variant").loc[name, "decision"] == verdict
        # the corrected t uses the J replicate means too
        assert rec["n_f1_macro"] == J and rec["n_pairs"] == J * K
        assert rec["ci_high_f1_macro"] == pytest.approx(post.ppf(0.975))
        # split / seed decomposition from the raw per-seed differences
        two = decision.two_level((x - base).ravel(), np.repeat(np.arange(J), K), ratio)
        assert rec["sigma2_seed"] == pytest.approx(two["sigma2_seed"]) and rec["seeds_per_replicate"] == K
        assert rec["ci_low_two_level"] == pytest.approx(two["ci_low_two_level"])
    # Holm over two rows: the smaller p doubled, the larger kept (it is above the doubled one)
    assert rows["B"]["p_tost_holm"] == pytest.approx(2 * rows["B"]["p_tost"]) and rows["B"]["p_tost_holm"] < 0.05
    assert rows["A"]["p_tost_holm"] == pytest.approx(rows["A"]["p_tost"]) and rows["A"]["p_tost"] > 0.99
    md = (out / "report.md").read_text()
    assert "### Decision vs base (margin δ = 2 points of macro-F1)" in md and "| **better** |" in md
    assert "σ²_split" in md and "averaged over the seeds of each run first" in md
    hw = decision.projected_half_width(J, ratio, rows["A"]["sigma2_split"], rows["A"]["sigma2_seed"], 3)
    assert "projected half-width K = 1 / 3 / 5" in md and f"{hw[0] * 100:.1f}" in md
    # a bad margin is a usage error
    assert cli("report", "--run", "r*", "--reference", "base", "--delta", "-1").exit_code == 2


def test_selection_optimism(cli, cache):
    # validation mF1 of c+lr1, c+lr2 per replicate; their test mF1
    valid = {0: (0.60, 0.70), 1: (0.80, 0.72), 2: (0.50, 0.55)}
    test = {0: (0.58, 0.62), 1: (0.70, 0.69), 2: (0.52, 0.50)}
    for k in range(3):
        evals = {("test", "base", k): mdict(0.6), ("valid", "base", k): mdict(0.6)}
        for j, lr in enumerate(("c+lr1", "c+lr2")):
            evals[("test", lr, k)] = mdict(test[k][j])
            evals[("valid", lr, k)] = mdict(valid[k][j])
        fake_run(cache, f"s{k}", evals, split_counts={"train": 200, "valid": 40, "test": 50})
    r = cli("report", "--run", "s*", "--choose", "best=c+lr*", "--reference", "base", "--delta", "2", "--json")
    assert r.exit_code == 0, r.output
    opt = json.loads(r.stdout)["optimism"][0]
    # chosen: s0 lr2 (0.70 -> 0.62), s1 lr1 (0.80 -> 0.70), s2 lr2 (0.55 -> 0.50)
    # optimism = mean(0.08, 0.10, 0.05) = 0.07666..; gap over all six = mean(0.02, 0.08, 0.10, 0.03,
    # −0.02, 0.05) = 0.26/6 = 0.04333..; excess = 0.0333..
    assert opt["optimism"] == pytest.approx(0.23 / 3) and opt["gap_unselected"] == pytest.approx(0.26 / 6)
    assert opt["excess"] == pytest.approx(0.23 / 3 - 0.26 / 6)
    assert (opt["candidates"], opt["n_valid"], opt["replicates"]) == (2, 40, 3)
    assert opt["valid_mean"] == pytest.approx(2.05 / 3) and opt["test_mean"] == pytest.approx(1.82 / 3)
    assert "the panel is large for its validation split" in r.stderr          # 3.3 points > delta 2
    chosen = pd.read_csv(cache / "s0" / "report" / "chosen.csv")
    assert chosen.optimism.tolist() == pytest.approx([0.08, 0.10, 0.05])
    md = (cache / "s0" / "report" / "report.md").read_text()
    assert "Selection optimism" in md and "| best | 2 | 40 | 68.3 | 60.7 | +7.7 | +4.3 | +3.3 |" in md
    r = cli("report", "--run", "s*", "--choose", "best=c+lr*", "--reference", "base", "--delta", "5")
    assert "the panel is large" not in r.stderr
