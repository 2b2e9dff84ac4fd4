"""The multimodal curriculum measurer, paper Eq. 1-4, as pure numpy functions."""
from __future__ import annotations

import numpy as np

COMBINE = ("sum", "zscore", "rank")
MEASURE = ("both", "intra", "inter")


def intra_confidence(log_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Eq. 1: psi = sigmoid( (1/C) * sum_c y_c log p_c ) = sigmoid(log p_true / C); in (0, 0.5]."""
    from scipy.special import expit   # imported here: scipy costs ~0.7 s at CLI start-up

    n, C = log_probs.shape
    return expit(log_probs[np.arange(n), labels] / C)


def cosine(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Eq. 2, row-wise. A zero vector (an all-dead ReLU layer) has cosine 0 with anything."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > eps, num / np.maximum(den, eps), 0.0)


def inter_complementarity(feats: list[np.ndarray]) -> np.ndarray:
    """Eq. 3: phi = 1 - mean over the M(M-1) ordered pairs m != m' of s_mm'.

    With a single modality there is no pair; phi is 0 (callers warn)."""
    M = len(feats)
    if M < 2:
        return np.zeros(len(feats[0]))
    total = np.zeros(len(feats[0]))
    for m in range(M):
        for k in range(M):
            if m != k:
                total += cosine(feats[m], feats[k])
    return 1.0 - total / (M * (M - 1))


def combine(phi: np.ndarray, psi_mean: np.ndarray, measure: str = "both", how: str = "sum") -> np.ndarray:
    """Eq. 4: r = phi + mean_m psi (``sum``); ``zscore``/``rank`` put both terms on one scale.

    ``intra``/``inter`` are the Table 4 ablations (only one of the two terms)."""
    if measure == "intra":
        return psi_mean.copy()
    if measure == "inter":
        return phi.copy()
    if how == "sum":
        return phi + psi_mean
    if how == "zscore":
        return _z(phi) + _z(psi_mean)
    if how == "rank":
        from stages.core.tables import ranks

        n = len(phi)
        return (ranks(phi) + ranks(psi_mean)) / (2 * n)
    raise ValueError(f"unknown combine {how!r}")


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def easy_to_hard(r: np.ndarray, labels: np.ndarray, easy: str = "high") -> np.ndarray:
    """Position (1 = easiest) of every sample within its class. Ties keep input order."""
    order = np.zeros(len(r), dtype=np.int64)
    key = -r if easy == "high" else r
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        ranked = idx[np.argsort(key[idx], kind="stable")]
        order[ranked] = np.arange(1, len(idx) + 1)
    return order
