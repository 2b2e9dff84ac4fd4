"""stages.report.decision: the Bayesian correlated t-test against baycomp, scipy.stats.t and a closed form worked
by hand; TOST with the Nadeau–Bengio SE; the two-level (split + seed) variance model by simulation."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from stages.report import decision

D = np.array([0.01, 0.03, -0.02, 0.04, 0.02])        # the differences worked by hand in test_stats.py


def _t4_cdf(t: float) -> float:
    """Student-t CDF with 4 df in closed form: F(t) = 1/2 + (3/8)·(t/√(1 + t²/4))·(1 − t²/(12(1 + t²/4)))."""
    a = 1 + t * t / 4
    return 0.5 + 0.375 * (t / math.sqrt(a)) * (1 - t * t / (12 * a))


def test_closed_form_t4_is_right():
    for t in (-2.5, -0.3, 0.0, 1.1, 3.0):
        assert _t4_cdf(t) == pytest.approx(sps.t.cdf(t, 4), abs=1e-12)


def test_posterior_and_probabilities_by_hand():
    # mean 0.016, s² = 5.3e-4, ratio n_test/n_train = 100/400 = 0.25 (ρ = 100/500 = 0.2)
    # scale² = (1/5 + 0.2/0.8)·5.3e-4 = 0.45·5.3e-4 = 2.385e-4, scale = 0.0154434, df 4
    r = decision.decide(D, delta=0.01, ratio=decision.ratio_of(400, 100))
    assert decision.test_fraction(0.25) == pytest.approx(0.2)
    assert (r["df"], r["loc"]) == (4, pytest.approx(0.016))
    assert r["scale"] == pytest.approx(0.0154434, rel=1e-5)
    # P(μ < −0.01) = F4((−0.01 − 0.016)/0.0154434) = F4(−1.683567)
    # P(μ > +0.01) = 1 − F4((0.01 − 0.016)/0.0154434) = 1 − F4(−0.388516)
    worse, better = _t4_cdf(-0.026 / 0.0154434), 1 - _t4_cdf(-0.006 / 0.0154434)
    assert r["p_worse"] == pytest.approx(worse, rel=1e-4) and r["p_better"] == pytest.approx(better, rel=1e-4)
    # e.g. t = −0.388516: a = 1 + t²/4 = 1.037736, t/√a = −0.381387, 1 − t²/(12a) = 0.987879,
    # F4 = 0.5 + 0.375·(−0.381387)·0.987879 = 0.358714, so P(better) = 0.641286
    assert r["p_worse"] == pytest.approx(0.08378, abs=5e-5) and r["p_better"] == pytest.approx(0.641286, abs=5e-6)
    assert r["p_equivalent"] == pytest.approx(1 - worse - better, rel=1e-4)
    assert r["decision"] == "inconclusive"
    # gains above mean + t_{4,0.95}·scale = 0.016 + 2.131847·0.0154434 = 0.048923 are ruled out
    assert r["gain_ruled_out"] == pytest.approx(0.048923, rel=1e-4)
    assert r["loss_ruled_out"] == pytest.approx(0.016 - 0.032923, rel=1e-4)
    # and the same numbers straight from scipy.stats.t with (df, loc, scale)
    t = sps.t(4, loc=0.016, scale=math.sqrt(0.45 * D.var(ddof=1)))
    assert r["p_worse"] == pytest.approx(t.cdf(-0.01)) and r["p_better"] == pytest.approx(t.sf(0.01))
    assert t.cdf(r["gain_ruled_out"]) == pytest.approx(0.95)


@pytest.mark.parametrize("seed,shift,runs", [(0, 0.0, 1), (1, 0.03, 2), (2, -0.04, 5), (3, 0.005, 2)])
def test_matches_baycomp_correlated_t_test(seed, shift, runs):
    baycomp = pytest.importorskip("baycomp")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.6, 0.8, 10)
    y = x + shift + rng.normal(0, 0.01, 10)
    # baycomp: k-fold CV repeated `runs` times, nfolds = n/runs, variance × (1/n + 1/(nfolds − 1)):
    # its ρ = 1/nfolds, the test fraction of one fold, so ρ/(1 − ρ) = 1/(nfolds − 1). Ours is a
    # holdout resplit with any n_test/n_train; they coincide when n_test/n_train = 1/(nfolds − 1).
    nfolds = 10 // runs
    ratio = 1 / (nfolds - 1) if nfolds > 1 else 0.0
    ours = decision.decide(y - x, delta=0.01, ratio=ratio)
    pl, pe, pr = baycomp.CorrelatedTTest.probs(x, y, rope=0.01, runs=runs)
    assert (ours["p_worse"], ours["p_equivalent"], ours["p_better"]) == pytest.approx((pl, pe, pr), abs=1e-12)
    mean, var, df = baycomp.CorrelatedTTest.compute_statistics(x, y, runs)
    assert (ours["loc"], ours["scale"] ** 2, ours["df"]) == pytest.approx((mean, var, df))


def test_decisions_each_way_and_degenerate():
    base = np.array([0.0, 0.004, -0.004, 0.002, -0.002, 0.001, -0.001, 0.003, -0.003, 0.0])
    assert decision.decide(base, 0.02, ratio=0.1)["decision"] == "equivalent"
    assert decision.decide(base + 0.08, 0.02, ratio=0.1)["decision"] == "better"
    assert decision.decide(base - 0.08, 0.02, ratio=0.1)["decision"] == "worse"
    assert decision.decide(base * 20, 0.02, ratio=0.5)["decision"] == "inconclusive"
    one = decision.decide([0.05], 0.02)
    assert one["decision"] == "n/a" and math.isnan(one["p_better"])
    const = decision.decide([0.03, 0.03, 0.03], 0.02)                  # zero variance: a point mass
    assert (const["p_worse"], const["p_equivalent"], const["p_better"], const["decision"]) == (0, 0, 1, "better")
    with pytest.raises(ValueError):
        decision.decide(base, -0.01)
    with pytest.raises(ValueError):
        decision.ratio_of([0, 10], [5, 5])


def test_tost_with_corrected_se_by_hand_and_its_identity_with_the_posterior():
    r = decision.tost(D, delta=0.05, ratio=0.25)
    # se 0.0154434; t_low = (0.016 + 0.05)/se = 4.27367, t_high = (0.016 − 0.05)/se = −2.20159, 4 df
    p_low, p_high = 1 - _t4_cdf(4.27367), _t4_cdf(-2.20159)
    assert r["p_tost"] == pytest.approx(max(p_low, p_high), rel=1e-4)
    # 90 % interval 0.016 ± 2.131847·0.0154434 = [−0.016923, 0.048923] inside ±0.05 -> equivalent
    assert (r["ci90_low"], r["ci90_high"]) == pytest.approx((-0.016923, 0.048923), rel=1e-4)
    assert r["equivalent"] and r["p_tost"] < 0.05
    assert not decision.tost(D, delta=0.045, ratio=0.25)["equivalent"]          # 0.0489 > 0.045
    # TOST's one-sided p are the posterior tails: p_low = P(μ < −δ), p_high = P(μ > δ); so TOST asks
    # max(tails) < α while the Bayesian decision asks tails summed <= 1 − 0.95
    b = decision.decide(D, 0.05, ratio=0.25)
    assert r["p_tost"] == pytest.approx(max(b["p_worse"], b["p_better"]))
    # the uncorrected s²/J (statsmodels' ttost_paired, pingouin's tost) is narrower: it would call
    # equivalence at a margin the corrected test does not
    from statsmodels.stats.weightstats import ttost_paired
    y = np.array([0.70, 0.71, 0.69, 0.72, 0.70])
    p_plain = ttost_paired(y + D, y, -0.04, 0.04)[0]
    assert p_plain < 0.05 and decision.tost(D, 0.04, ratio=0.25)["p_tost"] > 0.05
    assert decision.tost(D, 0.04, ratio=0.0)["p_tost"] == pytest.approx(p_plain)


def _simulate(J, K, ratio, s2_split, s2_seed, n_sim, rng):
    """d_jk = a_j + e_jk with equicorrelated split effects: corr(a_i, a_j) = ρ = ratio/(1 + ratio) and
    Var(a_j) = s2_split/(1 − ρ) (so the sample variance of the a_j has expectation s2_split)."""
    rho = ratio / (1 + ratio)
    sd_a = math.sqrt(s2_split / (1 - rho))
    shared = rng.normal(size=(n_sim, 1)) * math.sqrt(rho) * sd_a
    a = shared + rng.normal(size=(n_sim, J)) * math.sqrt(1 - rho) * sd_a
    return a[:, :, None] + rng.normal(size=(n_sim, J, K)) * math.sqrt(s2_seed)


def test_two_level_variance_model_by_simulation():
    rng = np.random.default_rng(7)
    J, K, ratio = 10, 5, 0.45
    s2_split, s2_seed = 1.4, 5.8                       # points², as measured on ROSMAP (issue 22)
    d = _simulate(J, K, ratio, s2_split, s2_seed, 20000, rng)
    true_var = d.mean(axis=(1, 2)).var()              # the variance of the mean difference, empirically
    model = (1 / J + ratio) * s2_split + s2_seed / (J * K)
    assert true_var == pytest.approx(model, rel=0.04)
    labels = np.repeat(np.arange(J), K)
    est = [decision.two_level(x.ravel(), labels, ratio) for x in d[:2000]]
    # the components are unbiased; the two-level variance matches the truth, the plain corrected one
    # (which also inflates the seed noise by the overlap term) overstates it
    assert np.mean([e["sigma2_seed"] for e in est]) == pytest.approx(s2_seed, rel=0.03)
    assert np.mean([e["sigma2_split"] for e in est]) == pytest.approx(s2_split, rel=0.1)
    assert np.mean([e["se_two_level"] ** 2 for e in est]) == pytest.approx(true_var, rel=0.08)
    plain = np.mean([e["se_plain"] ** 2 for e in est])
    assert plain == pytest.approx((1 / J + ratio) * (s2_split + s2_seed / K), rel=0.06)
    assert plain > 1.3 * true_var
    # coverage of the 95 % two-level interval around the true mean 0 is nominal with Satterthwaite's df
    # (on J − 1 df it was 0.905 here: the variance is a difference of mean squares, so fewer df);
    # the plain corrected interval over-covers (0.98): it is the wider one
    cover = np.mean([e["ci_low_two_level"] <= 0 <= e["ci_high_two_level"] for e in est])
    assert 0.935 <= cover <= 0.975
    assert np.mean([e["ci_low_plain"] <= 0 <= e["ci_high_plain"] for e in est]) > cover
    assert all(e["df_two_level"] <= J - 1 for e in est)


def test_two_level_by_hand():
    # replicate A: seeds 1, 3 (mean 2); B: 4, 6 (mean 5); C: 7, 9 (mean 8)
    # within: (1 + 1 + 1 + 1 + 1 + 1)/(1 + 1 + 1) = 2; means 2, 5, 8 -> s²_m = 9
    # σ²_split = 9 − 2/2 = 8; ratio 0.5: (1/3 + 0.5)·8 + 2·(1/2)/3 = 6.6667 + 0.3333 = 7
    r = decision.two_level([1, 3, 4, 6, 7, 9], ["A", "A", "B", "B", "C", "C"], ratio=0.5)
    assert (r["J"], r["K"], r["mean"], r["sigma2_seed"], r["sigma2_split"]) == (3, 2, 5, 2, 8)
    assert r["se_two_level"] == pytest.approx(math.sqrt(7))
    assert r["se_plain"] == pytest.approx(math.sqrt((1 / 3 + 0.5) * 9))
    single = decision.two_level([1, 4, 7], ["A", "B", "C"], ratio=0.5)   # one seed: no seed component
    assert math.isnan(single["sigma2_seed"]) and single["se_plain"] == pytest.approx(math.sqrt((1 / 3 + 0.5) * 9))


def test_projected_half_widths_reproduce_the_issue_measurement():
    # ROSMAP (issue 22): σ²_seed 5.8, σ²_split 1.4 points², J = 10, n_test/n_train = 106/245; measured
    # plain corrected half-widths 4.2 (K = 1), 3.1 (K = 3), 2.6 (K = 5). By hand for K = 1:
    # (0.1 + 0.432653)·7.2 = 3.835102, sqrt = 1.958342, × t_{9, 0.975} 2.262157 = 4.430
    r = 106 / 245
    plain = [decision.projected_half_width(10, r, 1.4, 5.8, k)[0] for k in (1, 3, 5)]
    assert plain[0] == pytest.approx(4.430, abs=1e-3)
    assert plain == pytest.approx([4.2, 3.1, 2.6], abs=0.25)
    two = [decision.projected_half_width(10, r, 1.4, 5.8, k)[1] for k in (1, 3, 5)]
    # (0.532653)·1.4 + 5.8/10 = 1.325714 -> 2.262157·1.151397 = 2.605
    assert two[0] == pytest.approx(2.605, abs=1e-3) and all(t < p for t, p in zip(two, plain))
