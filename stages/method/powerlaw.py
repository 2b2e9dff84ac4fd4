"""Fit the class distribution to the paper's smoothed power law (Eq. 5-6), estimator-style."""
from __future__ import annotations

import numpy as np

from stages.errors import UsageError


class PowerLawFit:
    """alpha_ = (1/gamma) * (1 + C / (sum_c ln n_c - C ln n_min))   (Eq. 6, the MLE of Eq. 5).

    Classes are ranked by count, rank 1 = largest (ties: smaller label first). Degenerate cases get
    ``status_`` instead of a division error: "balanced" (all counts equal: the denominator is 0 and
    the schedule stays uniform) and "single-class" (nothing to balance).
    """

    def __init__(self, gamma: float = 0.3):
        self.gamma = gamma

    def fit(self, counts) -> "PowerLawFit":
        counts = np.asarray(counts, dtype=np.int64)
        if self.gamma <= 0:
            raise UsageError(f"--gamma must be > 0, got {self.gamma}")
        if (counts <= 0).any():
            raise UsageError("every class needs at least one training sample to fit the distribution")
        self.counts_ = counts
        self.n_classes_ = len(counts)
        self.n_min_ = int(counts.min())
        # rank 1 = largest; stable sort of -count keeps smaller labels first among ties
        order = np.argsort(-counts, kind="stable")
        self.ranks_ = np.empty(len(counts), dtype=np.int64)
        self.ranks_[order] = np.arange(1, len(counts) + 1)
        denominator = float(np.log(counts).sum() - len(counts) * np.log(self.n_min_))
        self.denominator_ = denominator
        if len(counts) == 1:
            self.status_, self.alpha_ = "single-class", None
        elif denominator <= 0:
            self.status_, self.alpha_ = "balanced", None
        else:
            self.status_ = "ok"
            self.alpha_ = (1.0 + len(counts) / denominator) / self.gamma
        return self

    def probabilities(self, alpha: float | None = None) -> np.ndarray:
        """Power-law share per *rank* (index 0 = rank 1): c^(-gamma*alpha) / sum_i i^(-gamma*alpha)."""
        alpha = self.alpha_ if alpha is None else alpha
        return rank_probabilities(self.n_classes_, self.gamma * alpha)

    @property
    def message_(self) -> str:
        if self.status_ == "balanced":
            return ("all classes have the same number of training samples: Eq. 6 divides by zero, "
                    "alpha(T) is undefined, and the schedule stays class-uniform at every epoch")
        if self.status_ == "single-class":
            return "one class only: nothing to balance; the schedule takes the first S_t samples in order"
        return ""


def rank_probabilities(n_classes: int, exponent: float) -> np.ndarray:
    """c^(-exponent) / sum_i i^(-exponent) for ranks c = 1..C, computed in log space (alpha can be ~100)."""
    logw = -exponent * np.log(np.arange(1, n_classes + 1))
    w = np.exp(logw - logw.max())
    return w / w.sum()
