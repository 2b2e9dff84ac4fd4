"""Unimodal probes for the measurer: per modality an encoder to a shared hidden size (F(x^m)) and a
linear classifier (p^m), trained with cross-entropy on training samples only.

With ``head="shared"`` (default) one classifier serves every modality, which puts the F(x^m) of all
modalities in one space: the cosine of Eq. 2 then compares class evidence. With ``separate`` heads
the spaces are unrelated and the cosine is defined but arbitrary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEADS = ("shared", "separate")


@dataclass
class ProbeOptions:
    hidden: int = 64
    epochs: int = 200
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.2
    head: str = "shared"


def fit_predict(train: dict[str, np.ndarray], y: np.ndarray, score: dict[str, np.ndarray], n_classes: int,
                opts: ProbeOptions, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Train on ``train`` (full batch, Adam) and return log p^m and F(x^m) for the ``score`` rows."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    names = list(train)
    mu = {m: train[m].mean(0) for m in names}
    sd = {m: np.where(train[m].std(0) > 1e-12, train[m].std(0), 1.0) for m in names}
    tensor = lambda data, m: torch.as_tensor((data[m] - mu[m]) / sd[m], dtype=torch.float32)
    encoders = nn.ModuleDict({m: nn.Sequential(nn.Linear(train[m].shape[1], opts.hidden), nn.ReLU())
                              for m in names})
    heads = nn.ModuleDict({m: nn.Linear(opts.hidden, n_classes) for m in
                           (["shared"] if opts.head == "shared" else names)})
    head = (lambda m: heads["shared"]) if opts.head == "shared" else (lambda m: heads[m])
    drop = nn.Dropout(opts.dropout)
    params = list(encoders.parameters()) + list(heads.parameters())
    from stages.engine.optim import ListAdam

    optim = ListAdam(params, lr=opts.lr, weight_decay=opts.weight_decay)   # torch.optim would import dynamo
    xs = {m: tensor(train, m) for m in names}
    target = torch.as_tensor(y, dtype=torch.long)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(opts.epochs):
        optim.zero_grad()
        loss = sum(loss_fn(head(m)(drop(encoders[m](xs[m]))), target) for m in names)
        loss.backward()
        optim.step()
    with torch.no_grad():
        feats = {m: encoders[m](tensor(score, m)) for m in names}
        logp = {m: torch.log_softmax(head(m)(feats[m]), dim=1).numpy() for m in names}
    return logp, {m: f.numpy() for m, f in feats.items()}
