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


# -- batched losses (interim: ce / wce / focal; the full set lands with the imbalance peers) ---------
from dataclasses import dataclass  # noqa: E402


@dataclass(frozen=True)
class LossOptions:
    name: str = "ce"
    focal_gamma: float = 2.0
    la_tau: float = 1.0
    ldam_max_margin: float = 0.5
    ldam_scale: float = 1.0
    drw_start: float = 0.8
    drw_beta: float = 0.9999
    cb_beta: float = 0.9999

    def check(self) -> None:
        if self.name not in LOSSES:
            raise UsageError(f"unknown --loss {self.name!r}", fix=f"choose from {', '.join(LOSSES)}")

    def variant_suffix(self) -> str:
        return "" if self.name == "ce" else self.name


def make_batched(opts: LossOptions, counts: np.ndarray, total_epochs: int, device: str):
    """loss(logits [R,B,C], y [R,B], epoch) -> [R]: each replica's loss over its batch."""
    import torch
    import torch.nn.functional as F

    counts = np.asarray(counts, dtype=np.float64)

    def ce(logits, y, epoch):
        R, B, C = logits.shape
        return F.cross_entropy(logits.reshape(R * B, C), y.reshape(R * B), reduction="none").view(R, B).mean(1)

    if opts.name == "ce":
        return ce
    if opts.name == "wce":
        w = torch.as_tensor(np.stack([class_weights(c) for c in counts]), dtype=torch.float32, device=device)

        def wce(logits, y, epoch):
            R, B, C = logits.shape
            per = F.cross_entropy(logits.reshape(R * B, C), y.reshape(R * B), reduction="none").view(R, B)
            wy = torch.gather(w, 1, y)
            return (wy * per).sum(1) / wy.sum(1)
        return wce
    if opts.name == "focal":
        def focal(logits, y, epoch):
            logp_t = F.log_softmax(logits, dim=2).gather(2, y.unsqueeze(2)).squeeze(2)
            return (-(1 - logp_t.exp()) ** opts.focal_gamma * logp_t).mean(1)
        return focal
    raise UsageError(f"--loss {opts.name} is not available yet")
