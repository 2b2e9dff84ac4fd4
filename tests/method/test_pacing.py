"""Paper Eq. 7: the Fig. 2 setting against numbers computed independently, and properties of the
integer schedule over random class counts, T and gamma (hypothesis)."""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stages.method import pacing
from stages.method.powerlaw import PowerLawFit

# Fig. 2: N = 1000, T = 10, C = 10, alpha(T) = 5 (gamma = 0.3, the paper's value). Real-valued
# targets s_t(c) = q_t(c) * S_t for ranks 1, 2, 3 and 10, computed with mpmath (30 digits) from the
# formulas of the paper, and the largest-remainder integers (ties to the lower rank).
FIG2_REAL = {
    1: ([10.0, 10.0, 10.0], 10.0),
    2: ([21.84841216, 20.79228109, 20.30654907], 19.27859831),
    5: ([92.30009856, 63.98970595, 53.6068576], 37.2483593),
    10: ([501.1686016, 177.1898583, 96.44994234], 15.84834273),
}
FIG2_INT = {
    1: [10] * 10,
    2: [22, 21, 20, 20, 20, 20, 20, 19, 19, 19],
    3: [38, 33, 31, 30, 29, 29, 28, 28, 27, 27],
    4: [60, 47, 42, 40, 38, 36, 35, 35, 34, 33],
    5: [92, 64, 54, 48, 45, 42, 41, 39, 38, 37],
    6: [137, 83, 65, 56, 50, 46, 43, 41, 40, 39],
    7: [197, 105, 75, 61, 53, 48, 44, 41, 39, 37],
    8: [277, 128, 84, 65, 53, 46, 41, 38, 35, 33],
    9: [377, 152, 92, 65, 51, 42, 36, 31, 28, 26],
    10: [501, 177, 96, 63, 45, 34, 27, 22, 19, 16],
}


def _fig2(t):
    """Fig. 2 has N = 1000 but no class sizes: no capacity limit applies."""
    S = t / 10 * 1000
    q = pacing.q_by_rank(t, 10, 5.0, 0.3, 10)
    ranks = np.arange(1, 11)
    return S, q, pacing.largest_remainder(q * S, pacing.round_half_up(S), np.full(10, 10**6), ranks)


def test_fig2_real_valued_targets():
    for t, (first3, last) in FIG2_REAL.items():
        S, q, _ = _fig2(t)
        np.testing.assert_allclose(q[:3] * S, first3, rtol=1e-8)
        assert q[9] * S == pytest.approx(last, rel=1e-8)
        assert pacing.alpha_at(t, 10, 5.0) == pytest.approx(1 + 4 * (t - 1) / 9)


def test_fig2_integer_counts():
    for t in range(1, 11):
        assert _fig2(t)[2].tolist() == FIG2_INT[t]
    # with the epoch-10 counts as the real class sizes, the last epoch is exactly those classes
    plans = pacing.climd(FIG2_INT[10], np.arange(1, 11), 5.0, 0.3, 10)
    assert plans[0].counts.tolist() == [10] * 10 and plans[-1].counts.tolist() == FIG2_INT[10]


def test_alpha_and_mixing_weight_endpoints():
    assert pacing.alpha_at(1, 100, 6.35) == 1.0 and pacing.alpha_at(100, 100, 6.35) == pytest.approx(6.35)
    assert pacing.mixing_weight(1, 1) == 1.0  # a one-epoch schedule is the final distribution
    np.testing.assert_allclose(pacing.q_by_rank(7, 10, None, 0.3, 4), 0.25)  # balanced data: uniform


def test_brca_first_and_last_epoch():
    fit = PowerLawFit(0.3).fit([293, 32, 98, 91, 24])
    plans = pacing.climd(fit.counts_, fit.ranks_, fit.alpha_, 0.3, 100)
    assert plans[0].counts.tolist() == [1, 1, 1, 1, 1]          # S_1 = 5.38 -> 5, uniform
    assert plans[-1].counts.tolist() == [293, 32, 98, 91, 24]   # the whole training set
    # without redistribution part of every minority class is never used (the warning)
    dropped = pacing.climd(fit.counts_, fit.ranks_, fit.alpha_, 0.3, 100, overflow="drop")
    assert dropped[-1].counts.sum() < 538 and dropped[-1].counts[0] == 293


def test_rosmap_drop_mode_starves_the_minority_but_redistribution_does_not():
    fit = PowerLawFit(0.3).fit([118, 127])
    drop = pacing.climd(fit.counts_, fit.ranks_, fit.alpha_, 0.3, 100, overflow="drop")
    redistribute = pacing.climd(fit.counts_, fit.ranks_, fit.alpha_, 0.3, 100)
    assert drop[-1].counts.tolist() == [0, 127]
    assert redistribute[-1].counts.tolist() == [118, 127]
    assert min(p.counts[0] for p in redistribute) >= 1


def test_water_fill_by_hand():
    # q = (0.5, 0.3, 0.2), total 10, capacity (100, 1, 100): class 1 capped at 1, the surplus of 2
    # goes to classes 0 and 2 in proportion 5:2 -> 9 * 5/7 and 9 * 2/7
    out = pacing.water_fill(np.array([0.5, 0.3, 0.2]), 10.0, np.array([100.0, 1.0, 100.0]), np.array([1, 2, 3]))
    np.testing.assert_allclose(out, [45 / 7, 1.0, 18 / 7])


def test_water_fill_when_the_remaining_shares_underflow_to_zero():
    """Found by hypothesis: counts 241/241/242 give alpha ~ 725 and q = (1, 4e-219, 0) by rank."""
    q = np.array([4.0e-219, 0.0, 1.0])                      # labels 0, 1, 2; ranks 2, 3, 1
    out = pacing.water_fill(q, 724.0, np.array([241.0, 241.0, 242.0]), np.array([2, 3, 1]))
    np.testing.assert_allclose(out, [241.0, 241.0, 242.0])
    out = pacing.water_fill(np.array([0.0, 0.0, 1.0]), 300.0, np.array([241.0, 241.0, 242.0]), np.array([2, 3, 1]))
    np.testing.assert_allclose(out, [58.0, 0.0, 242.0])     # surplus 58 to the next rank first


def test_competence_pacings_reach_one_at_T():
    for kind in ("linear", "root", "geom"):
        assert pacing.competence(kind, 100, 100, 0.01) == pytest.approx(1.0)
    assert pacing.competence("linear", 50, 100, 0.0) == pytest.approx(0.5)
    assert pacing.competence("root", 50, 100, 0.0) == pytest.approx(math.sqrt(0.5))
    assert pacing.competence("geom", 50, 100, 0.01) == pytest.approx(0.1)   # 0.01 * 100^0.5
    assert [pacing.bucket_of_epoch(t, 10, 5) for t in range(1, 11)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


# derandomize: CI must not pass or fail by luck; the examples below are cases found earlier.
@settings(max_examples=500, deadline=None, derandomize=True)
@given(counts=st.lists(st.integers(1, 400), min_size=1, max_size=8),
       T=st.integers(1, 40), gamma=st.floats(0.05, 2.0), overflow=st.sampled_from(pacing.OVERFLOW))
@example(counts=[241, 241, 242], T=1, gamma=1.0, overflow="redistribute")
@example(counts=[118, 127], T=100, gamma=0.3, overflow="drop")
def test_schedule_properties(counts, T, gamma, overflow):
    fit = PowerLawFit(gamma).fit(counts)
    caps = np.array(counts)
    plans = pacing.climd(caps, fit.ranks_, fit.alpha_, gamma, T, overflow)
    N = caps.sum()
    for p in plans:
        q_rank = pacing.q_by_rank(p.t, T, fit.alpha_, gamma, len(counts))
        assert (np.diff(q_rank) <= 1e-12).all()                      # q never increases with rank
        assert (p.counts >= 0).all() and (p.counts <= caps).all()   # never negative, never above n_c
        assert (np.abs(p.counts - p.target) < 1 + 1e-9).all()      # each within 1 of its target
        if overflow == "redistribute":
            assert p.counts.sum() == min(pacing.round_half_up(p.t / T * N), N)
        # classes below capacity get targets proportional to q, so a better rank never gets fewer
        open_ = np.flatnonzero(p.counts < caps)
        by_rank = open_[np.argsort(fit.ranks_[open_])]
        assert (np.diff(p.counts[by_rank]) <= 0).all()
    if overflow == "redistribute":
        assert plans[-1].counts.tolist() == list(counts)               # last epoch = whole set
