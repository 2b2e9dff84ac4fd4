"""Paper Eq. 1-4 against numbers worked out by hand (values noted next to each)."""
import math

import numpy as np
import pytest

from stages.method import measures


def test_eq1_intra_confidence_by_hand():
    # C=2, p_true=0.5: sigmoid(ln(0.5)/2) = 1/(1+sqrt 2) = sqrt(2)-1
    # C=5, p_true=1:   sigmoid(0) = 0.5 (the maximum: psi lies in (0, 0.5])
    # C=4, p_true=e^-4: sigmoid(-4/4) = 1/(1+e) = 0.268941421...
    logp2 = np.log([[0.5, 0.5]])
    logp5 = np.log([[1e-300, 1.0, 1e-300, 1e-300, 1e-300]])
    logp4 = np.log([[math.exp(-4), 1 - math.exp(-4) - 2e-9, 1e-9, 1e-9]])
    assert measures.intra_confidence(logp2, np.array([1]))[0] == pytest.approx(0.41421356237309505)
    assert measures.intra_confidence(logp5, np.array([1]))[0] == pytest.approx(0.5)
    assert measures.intra_confidence(logp4, np.array([0]))[0] == pytest.approx(0.2689414213699951)


def test_eq1_only_the_true_class_counts():
    logp = np.log([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    psi = measures.intra_confidence(logp, np.array([0, 0]))
    assert psi[0] > psi[1]  # more confident in the true class = higher psi


def test_eq2_cosine_by_hand():
    a = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    b = np.array([[4.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    # 24/25; opposite vectors -1; a zero vector has cosine 0 by our convention
    np.testing.assert_allclose(measures.cosine(a, b), [0.96, -1.0, 0.0])


def test_eq3_complementarity_three_modalities_by_hand():
    # F1=(1,0), F2=(0,1), F3=(1,1): s12=0, s13=s23=1/sqrt2; mean over 6 ordered pairs = 4/(6 sqrt2)
    # phi = 1 - 0.4714045... = 0.5285954792...
    f = [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])]
    assert measures.inter_complementarity(f)[0] == pytest.approx(0.5285954792089683)


def test_eq3_two_modalities_and_single_modality():
    f = [np.array([[3.0, 4.0]]), np.array([[4.0, 3.0]])]
    assert measures.inter_complementarity(f)[0] == pytest.approx(0.04)  # 1 - 24/25
    assert measures.inter_complementarity([np.ones((2, 3))]).tolist() == [0.0, 0.0]


def test_eq4_sum_and_ablations():
    phi = np.array([0.04, 0.5])
    psi = np.array([(0.41421356237309505 + 0.5) / 2, 0.25])
    np.testing.assert_allclose(measures.combine(phi, psi, "both", "sum"), [0.49710678118654757, 0.75])
    np.testing.assert_allclose(measures.combine(phi, psi, "intra"), psi)
    np.testing.assert_allclose(measures.combine(phi, psi, "inter"), phi)


def test_zscore_and_rank_combinations():
    phi = np.array([0.0, 1.0, 2.0])
    psi = np.array([0.30, 0.10, 0.20])
    # z(phi) = [-1.2247, 0, 1.2247], z(psi) = [1.2247, -1.2247, 0]
    np.testing.assert_allclose(measures.combine(phi, psi, "both", "zscore"), [0.0, -1.2247449, 1.2247449], atol=1e-6)
    # ranks phi [1,2,3], psi [3,1,2] -> (r_phi + r_psi) / (2n) = [4, 3, 5] / 6
    np.testing.assert_allclose(measures.combine(phi, psi, "both", "rank"), [4 / 6, 3 / 6, 5 / 6])


def test_easy_to_hard_within_each_class_and_direction():
    r = np.array([0.1, 0.9, 0.5, 0.7, 0.2])
    y = np.array([0, 0, 0, 1, 1])
    assert measures.easy_to_hard(r, y, "high").tolist() == [3, 1, 2, 1, 2]
    assert measures.easy_to_hard(r, y, "low").tolist() == [1, 3, 2, 2, 1]
