"""How many samples each epoch takes: the CLIMD scheduler (paper Eq. 7) and the pacing baselines of
the paper's Table 4. Pure functions of class counts and epochs; ``schedule`` turns counts into ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stages.method.powerlaw import rank_probabilities

PACINGS = ("climd", "baby-step", "one-pass", "linear", "root", "geom")
OVERFLOW = ("redistribute", "drop")


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def mixing_weight(t: int, T: int) -> float:
    """w = (t-1)/(T-1); a one-epoch schedule is the final epoch (w = 1)."""
    return 1.0 if T == 1 else (t - 1) / (T - 1)


def alpha_at(t: int, T: int, alpha_T: float) -> float:
    """alpha(t) = 1 + (alpha(T) - 1) (t-1)/(T-1)."""
    return 1.0 + (alpha_T - 1.0) * mixing_weight(t, T)


def q_by_rank(t: int, T: int, alpha_T: float | None, gamma: float, n_classes: int) -> np.ndarray:
    """Eq. 7: q_t(c) = (1-w)/C + w * c^(-gamma alpha(t)) / sum_i i^(-gamma alpha(t)), c = rank.

    ``alpha_T=None`` (balanced data, Eq. 6 undefined) keeps q uniform."""
    uniform = np.full(n_classes, 1.0 / n_classes)
    if alpha_T is None:
        return uniform
    w = mixing_weight(t, T)
    return (1 - w) * uniform + w * rank_probabilities(n_classes, gamma * alpha_at(t, T, alpha_T))


def water_fill(q: np.ndarray, total: float, capacity: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Real-valued targets q*total, with every class that would exceed its capacity capped and its
    surplus handed to the other classes in proportion to q (repeated until nothing overflows).

    When every class left has a share that underflowed to 0 (alpha(T) in the hundreds), the
    surplus fills them in rank order (``priority``, lower first): the limit of the proportional rule."""
    capped = np.zeros(len(q), dtype=bool)
    while True:
        free = ~capped
        remaining = total - capacity[capped].sum()
        if remaining <= 0 or not free.any():
            return np.where(capped, capacity, 0.0).astype(float)
        if q[free].sum() <= 0:
            target = np.where(capped, capacity, 0.0).astype(float)
            for c in sorted(np.flatnonzero(free), key=lambda c: priority[c]):
                target[c] = min(capacity[c], remaining)
                remaining -= target[c]
            return target
        target = np.where(capped, capacity, remaining * q / q[free].sum())
        over = free & (target > capacity)
        if not over.any():
            return np.minimum(target, capacity).astype(float)
        capped |= over


def largest_remainder(target: np.ndarray, total: int, capacity: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Integers summing to ``total``, each floor or ceil of its target, never above capacity.

    Units left after flooring go to the largest fractional parts (ties: lower ``priority`` first)."""
    counts = np.floor(target + 1e-9).astype(np.int64)
    frac = target - counts
    left = total - int(counts.sum())
    if left > 0:
        order = sorted(np.flatnonzero(counts < capacity), key=lambda c: (-frac[c], priority[c]))
        for c in order[:left]:
            counts[c] += 1
    return np.minimum(counts, capacity)


@dataclass
class EpochPlan:
    t: int
    size_target: float                 # S_t
    counts: np.ndarray                 # per class (label order)
    alpha: float | None = None         # alpha(t) (climd)
    q: np.ndarray | None = None        # q_t per class (label order) (climd)
    target: np.ndarray | None = None   # real-valued per-class targets after capping (climd)
    competence: float | None = None    # fraction of the ordered set (competence pacings)
    buckets: list | None = None        # bucket numbers used (baby-step/one-pass)


def climd(counts, ranks, alpha_T: float | None, gamma: float, T: int, overflow: str = "redistribute") -> list[EpochPlan]:
    """Per-class sample counts for t = 1..T (Eq. 7), with integer rounding and capacity rules."""
    counts = np.asarray(counts, dtype=np.int64)
    ranks = np.asarray(ranks, dtype=np.int64)
    N, C = int(counts.sum()), len(counts)
    plans = []
    for t in range(1, T + 1):
        S = t / T * N
        q = q_by_rank(t, T, alpha_T, gamma, C)[ranks - 1]     # rank order -> label order
        if overflow == "redistribute":
            target = water_fill(q, S, counts.astype(float), ranks)
            total = min(round_half_up(S), N)
        else:
            target = np.minimum(q * S, counts)
            total = round_half_up(target.sum())
        n = largest_remainder(target, total, counts, ranks)
        plans.append(EpochPlan(t, S, n, None if alpha_T is None else alpha_at(t, T, alpha_T), q, target))
    return plans


def competence(kind: str, t: int, T: int, c0: float) -> float:
    """Fraction of the easy->hard ordered training set available at epoch t (reaches 1 at t = T).

    linear: c0 + (1-c0) t/T;  root (Platanios et al. 2019): sqrt(c0^2 + (1-c0^2) t/T);
    geom (Penha & Hauff 2020): c0 * (1/c0)^(t/T)."""
    x = t / T
    if kind == "linear":
        c = c0 + (1 - c0) * x
    elif kind == "root":
        c = math.sqrt(c0 ** 2 + (1 - c0 ** 2) * x)
    elif kind == "geom":
        c = c0 * (1 / c0) ** x
    else:
        raise ValueError(kind)
    return min(1.0, c)


def bucket_of_epoch(t: int, T: int, n_buckets: int) -> int:
    """Baby step / one-pass (Bengio et al. 2009): epochs are split evenly over the buckets; 1-based."""
    return min(n_buckets, math.ceil(t * n_buckets / T))
