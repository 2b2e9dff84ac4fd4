"""CFCML's fine stage: prototypes and hierarchical anchor-based relationship mining (HRM).

With s(a, b) = exp((cos(a, b) + 1) / tau) and l(a; P, N) = -log(sum_P s / (sum_P s + sum_N s)):

* L_sam: every sample feature f_i^m as anchor; positives = the crossmodal prototype C_y and the
  unimodal prototypes P_y^m' of every modality; negatives = other-class samples of modality m.
  Averaged over the samples of each class, summed over classes and modalities.
* L_up: every unimodal prototype P_k^m as anchor; positive = C_k; negatives = P_l^m' for every
  modality m' and class l != k. Summed over (m, k), divided by the number of modalities.
* L_cp: every crossmodal prototype C_k as anchor; positives = P_k^m of every modality; negatives =
  C_l, l != k. Summed over classes, divided by the number of classes present.

P_k^m is the L2-normalised mean of the L2-normalised class-k features of modality m; C_k the same
mean over all modalities. Only classes present in the batch have prototypes: anchors of absent
classes are skipped and a batch with fewer than two classes contributes zero (nothing to contrast).
Computed as logsumexp(all) - logsumexp(positives), which is exact and cannot overflow at tau = 0.07.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def prototypes(feats: list[torch.Tensor], labels: torch.Tensor):
    """(classes present, unimodal prototypes (M, K, D), crossmodal prototypes (K, D))."""
    classes = torch.unique(labels)
    normed = [F.normalize(f, dim=1) for f in feats]
    onehot = (labels[:, None] == classes[None, :]).float()           # (B, K)
    counts = onehot.sum(0)[:, None]                                  # (K, 1)
    uni = torch.stack([F.normalize(onehot.T @ f / counts, dim=1) for f in normed])
    cross = F.normalize(sum(onehot.T @ f for f in normed) / (counts * len(feats)), dim=1)
    return classes, uni, cross


def _loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor, neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """-log(sum_P e^x / (sum_P e^x + sum_N e^x)) per row, from logits x = (cos + 1) / tau."""
    if neg_mask is not None:
        neg_logits = neg_logits.masked_fill(~neg_mask, float("-inf"))
    both = torch.cat([pos_logits, neg_logits], dim=1)
    return torch.logsumexp(both, dim=1) - torch.logsumexp(pos_logits, dim=1)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)


def sample_loss(feats, labels, classes, uni, cross, tau: float) -> torch.Tensor:
    slot = torch.searchsorted(classes, labels)                        # class -> prototype row
    total = feats[0].new_zeros(())
    for f in feats:
        pos = torch.cat([_cos(f[:, None, :], cross[slot][:, None, :]).squeeze(-1),
                         torch.stack([(F.normalize(f, dim=1) * F.normalize(u[slot], dim=1)).sum(1)
                                      for u in uni], dim=1)], dim=1)
        neg = _cos(f, f)
        per_sample = _loss((pos + 1) / tau, (neg + 1) / tau, labels[:, None] != labels[None, :])
        for k in range(len(classes)):
            total = total + per_sample[slot == k].mean()
    return total


def unimodal_prototype_loss(classes, uni, cross, tau: float) -> torch.Tensor:
    M, K, _ = uni.shape
    total = uni.new_zeros(())
    others = ~torch.eye(K, dtype=torch.bool, device=uni.device)
    for m in range(M):
        pos = (F.normalize(uni[m], dim=1) * F.normalize(cross, dim=1)).sum(1, keepdim=True)   # (K, 1)
        neg = torch.cat([_cos(uni[m], uni[m2]) for m2 in range(M)], dim=1)                   # (K, M*K)
        mask = others.repeat(1, M)
        total = total + _loss((pos + 1) / tau, (neg + 1) / tau, mask).sum()
    return total / M


def crossmodal_prototype_loss(classes, uni, cross, tau: float) -> torch.Tensor:
    M, K, _ = uni.shape
    pos = torch.stack([(F.normalize(cross, dim=1) * F.normalize(uni[m], dim=1)).sum(1) for m in range(M)], dim=1)
    neg = _cos(cross, cross)
    mask = ~torch.eye(K, dtype=torch.bool, device=cross.device)
    return _loss((pos + 1) / tau, (neg + 1) / tau, mask).sum() / K


def hrm_losses(feats: list[torch.Tensor], labels: torch.Tensor, tau: float = 0.07) -> dict[str, torch.Tensor]:
    classes, uni, cross = prototypes(feats, labels)
    if len(classes) < 2:
        zero = feats[0].new_zeros(())
        return {"sam": zero, "up": zero, "cp": zero}
    return {"sam": sample_loss(feats, labels, classes, uni, cross, tau),
            "up": unimodal_prototype_loss(classes, uni, cross, tau),
            "cp": crossmodal_prototype_loss(classes, uni, cross, tau)}
