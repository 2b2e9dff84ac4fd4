"""Paper Eq. 5-6: alpha(T) against values computed independently (mpmath, 25 digits)."""
import numpy as np
import pytest

from stages.errors import UsageError
from stages.method.powerlaw import PowerLawFit, rank_probabilities


@pytest.mark.parametrize("counts,gamma,alpha", [
    ([293, 32, 98, 91, 24], 0.3, 6.347458634869233),   # BRCA seed-0 training counts (the issue: ~6.35)
    ([118, 127], 0.3, 94.03324304939470),               # ROSMAP: nearly balanced, alpha explodes
    ([10, 1000], 0.5, 2.868588963806504),
    ([256, 90, 31, 16, 19], 0.3, 6.458494429819823),    # Derm7pt 5-class training counts
])
def test_alpha_hat(counts, gamma, alpha):
    fit = PowerLawFit(gamma).fit(counts)
    assert fit.status_ == "ok" and fit.alpha_ == pytest.approx(alpha, rel=1e-12)
    assert fit.alpha_ > 1 / gamma  # the paper's constraint alpha > 1/gamma holds by construction


def test_ranks_largest_first_ties_smaller_label_first():
    fit = PowerLawFit().fit([5, 9, 9, 2, 5])
    assert fit.ranks_.tolist() == [3, 1, 2, 5, 4]
    assert fit.n_min_ == 2


def test_balanced_and_single_class_are_reported_not_divided():
    fit = PowerLawFit().fit([40, 40, 40])
    assert fit.status_ == "balanced" and fit.alpha_ is None and "uniform" in fit.message_
    one = PowerLawFit().fit([12])
    assert one.status_ == "single-class" and one.alpha_ is None


def test_bad_gamma_and_empty_class():
    with pytest.raises(UsageError):
        PowerLawFit(0).fit([3, 4])
    with pytest.raises(UsageError):
        PowerLawFit().fit([3, 0])


def test_rank_probabilities_by_hand():
    # exponent 1: 1, 1/2, 1/3 normalised by 11/6 -> 6/11, 3/11, 2/11
    np.testing.assert_allclose(rank_probabilities(3, 1.0), [6 / 11, 3 / 11, 2 / 11])
    # huge exponents do not overflow: everything on rank 1
    np.testing.assert_allclose(rank_probabilities(2, 0.3 * 94.03), [1.0, 0.0], atol=1e-8)
