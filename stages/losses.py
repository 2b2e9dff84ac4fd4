"""Training losses: cross-entropy, class-weighted cross-entropy and multi-class focal loss."""
from __future__ import annotations

import numpy as np

from .errors import UsageError

LOSSES = ("ce", "wce", "focal")


def class_weights(counts: np.ndarray) -> np.ndarray:
    """w_c = N / (C n_c) ("balanced" weighting: every class contributes equally in expectation)."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts.sum() / (len(counts) * counts)


def focal_loss(logits, target, gamma: float = 2.0):
    """Multi-class focal loss (Lin et al. 2017): mean of -(1 - p_t)^gamma log p_t; gamma=0 is CE."""
    import torch.nn.functional as F

    logp_t = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    return (-(1 - logp_t.exp()) ** gamma * logp_t).mean()


def make(name: str, counts: np.ndarray, focal_gamma: float, device: str):
    import torch
    import torch.nn.functional as F

    if name == "ce":
        return lambda logits, y: F.cross_entropy(logits, y)
    if name == "wce":
        w = torch.as_tensor(class_weights(counts), dtype=torch.float32, device=device)
        return lambda logits, y: F.cross_entropy(logits, y, weight=w)
    if name == "focal":
        return lambda logits, y: focal_loss(logits, y, focal_gamma)
    raise UsageError(f"unknown --loss {name!r}", fix=f"choose from {', '.join(LOSSES)}")
