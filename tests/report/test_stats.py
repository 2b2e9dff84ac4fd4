"""stages.report.stats: every formula against scipy / statsmodels or against arithmetic done by hand."""
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from stages.report import stats


def test_paired_t_equals_scipy_ttest_rel_and_its_ci():
    a = np.array([0.71, 0.64, 0.69, 0.75, 0.62, 0.70, 0.66])
    b = np.array([0.68, 0.65, 0.61, 0.70, 0.60, 0.69, 0.61])
    r = stats.t_test(a - b)
    ref = sps.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert r["test"] == "paired-t" and r["df"] == 6
    assert r["t"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert r["p"] == pytest.approx(sps.ttest_1samp(a - b, 0.0).pvalue)


def test_nadeau_bengio_by_hand():
    d = np.array([0.01, 0.03, -0.02, 0.04, 0.02])
    r = stats.t_test(d, ratio=100 / 400)          # n_test 100, n_train 400
    # mean = 0.08 / 5 = 0.016
    # deviations -0.006, 0.014, -0.036, 0.024, 0.004; squares 3.6e-5, 1.96e-4, 1.296e-3, 5.76e-4, 1.6e-5
    # sum 2.12e-3, sample variance 2.12e-3 / 4 = 5.3e-4
    # corrected variance of the mean (1/5 + 100/400) * 5.3e-4 = 0.45 * 5.3e-4 = 2.385e-4
    # se = sqrt(2.385e-4) = 0.0154434; t = 0.016 / 0.0154434 = 1.03604 on 4 df
    # t_{4, 0.975} = 2.776445 (tables); half-width 2.776445 * 0.0154434 = 0.0428777
    assert r["test"] == "nadeau-bengio" and r["df"] == 4
    assert r["mean"] == pytest.approx(0.016)
    assert r["sd"] ** 2 == pytest.approx(5.3e-4)
    assert r["se"] == pytest.approx(0.0154434, rel=1e-5)
    assert r["t"] == pytest.approx(1.03604, rel=1e-5)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.016 - 0.0428777, 0.016 + 0.0428777), rel=1e-5)
    assert r["p"] == pytest.approx(2 * sps.t.sf(1.03604, 4), rel=1e-4)
    # the same t from scipy's uncorrected t, shrunk by sqrt((1/J) / (1/J + n_test/n_train)) = sqrt(0.2/0.45)
    plain = sps.ttest_1samp(d, 0.0)
    assert r["t"] == pytest.approx(plain.statistic * math.sqrt(0.2 / 0.45))
    assert r["p"] > plain.pvalue                    # the correction is conservative
    assert sps.t.ppf(0.975, 4) == pytest.approx(2.776445, rel=1e-6)


def test_corrected_with_ratio_zero_is_the_ordinary_test():
    d = np.array([0.02, -0.01, 0.05, 0.03])
    a, b = stats.t_test(d, ratio=0.0), stats.t_test(d)
    assert a["p"] == pytest.approx(b["p"]) and a["ci_low"] == pytest.approx(b["ci_low"])


def test_degenerate_inputs():
    assert math.isnan(stats.t_test([0.1])["p"]) and stats.t_test([0.1])["mean"] == pytest.approx(0.1)
    zero = stats.t_test([0.0, 0.0, 0.0], ratio=0.3)
    assert zero["p"] == 1.0 and zero["ci_low"] == zero["ci_high"] == 0.0
    const = stats.t_test([0.02, 0.02, 0.02])
    assert math.isnan(const["p"]) and const["ci_low"] == pytest.approx(0.02)
    with pytest.raises(ValueError):
        stats.t_test([0.1, 0.2], ratio=-1.0)


def test_wilcoxon_matches_scipy_and_smallest_attainable_p():
    d = np.array([0.03, -0.01, 0.05, 0.02, 0.04, -0.02, 0.06])
    assert stats.wilcoxon(d)["p"] == pytest.approx(sps.wilcoxon(d).pvalue)
    # all five differences positive: the exact two-sided p is 2 * (1/2)^5 = 0.0625, the floor 2/2^n
    five = stats.wilcoxon([0.01, 0.02, 0.03, 0.04, 0.05])
    assert five["min_p"] == 0.0625 and five["p"] == pytest.approx(0.0625)
    assert sps.wilcoxon([0.01, 0.02, 0.03, 0.04, 0.05]).pvalue == pytest.approx(0.0625)
    assert not stats.can_reach(five["min_p"])
    six = stats.wilcoxon([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    assert six["min_p"] == 0.03125 and six["p"] == pytest.approx(0.03125) and stats.can_reach(six["min_p"])
    # zeros are dropped before ranking: 5 differences of which 1 is zero -> floor 2/2^4 = 0.125
    assert stats.wilcoxon([0.0, 0.01, 0.02, 0.03, 0.04])["min_p"] == 0.125
    assert stats.wilcoxon([0.0, 0.0])["p"] == 1.0 and math.isnan(stats.wilcoxon([0.1])["p"])


def test_holm_by_hand_and_against_statsmodels():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01 = 0.03; 2*0.03 = 0.06; 1*0.04 = 0.04 -> max(0.06, 0.04) = 0.06
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 9):
        p = rng.uniform(0, 0.2, m)
        np.testing.assert_allclose(stats.holm(p), multipletests(p, method="holm")[1])
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.5])
    got = stats.holm(p)
    assert np.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2, 3, 4]], multipletests(p[[0, 2, 3, 4]], method="holm")[1])
    # ties keep their input order and the adjustment stays monotone
    np.testing.assert_allclose(stats.holm([0.02, 0.02, 0.9]), multipletests([0.02, 0.02, 0.9], method="holm")[1])
