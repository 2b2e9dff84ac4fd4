"""DMIB (Fang et al., "Dynamic Multimodal Information Bottleneck for Multimodality Classification",
WACV 2024) as a batched plug-in, written from the description of the authors' diagnosis code
(ayanglab/DMIB, ``diagnosis_tasks/model.py`` class ``MMDynamic_blank_directfuse_re_IB``).

Per modality v: h_v = Dropout(ReLU(x_v W_v + b_v)) (Linear d_v -> H) and a view classifier
Linear(H -> C). z = concat_v h_v [B, M*H]. The *observed* head Linear(M*H -> C) reads z; the
bottleneck Linear(M*H -> B) + ReLU + Linear(B -> M*H) (no dropout, no activation after it) feeds the
prediction head Linear(M*H -> C), whose logits are the model's prediction.

Loss (per replica, over its batch):

    L = loss(bottleneck head) + observed_weight * CE(observed head)
        + beta * mean_b KL(p_obs[b] || p_bn[b]) + view_weight * sum_v CE(view_v)

with p_obs = softmax(observed logits) *detached* and p_bn = softmax(bottleneck logits), so
KL(p_obs || p_bn) = sum_c p_obs,c (log p_obs,c - log p_bn,c) trains only the bottleneck branch (and
the encoders through it). ``loss(...)`` is the engine's loss (``--loss``); the rest is ``aux_loss``.

Differences from the released code, on purpose: it calls ``kl_div(softmax(obs).detach(),
softmax(bn))`` (probabilities where log-probabilities belong, averaged over B*C elements), which is
sum_{b,c} p_bn (log p_bn - p_obs) / (B*C), not a KL divergence; and it hard-codes the bottleneck
Linear(1500, 1000), which fits only 3 modalities x H = 500 (BRCA). We compute the KL above and take
the widths from the inputs: M*H, and B = round(2/3 * M*H) unless ``bottleneck`` is given (2/3 is the
authors' 1000/1500).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from stages.models.base import InputSpec
from stages.models.batched import BatchedModel, BatchedOutput, drop, flat_input, linear
from stages.models.multid import authors_initial, check_options, nll


def kl_detached(obs_logits, bn_logits):
    """[R]: mean over the batch of KL(p_obs || p_bn), p_obs = softmax(obs_logits) detached.
    (softmax and log_softmax work row by row, so their bits do not depend on the number of replicas;
    an elementwise exp over the whole tensor would: see multid.LanewiseSigmoid.)"""
    obs = obs_logits.detach()
    log_obs, log_bn = torch.log_softmax(obs, dim=-1), torch.log_softmax(bn_logits, dim=-1)
    return (torch.softmax(obs, dim=-1) * (log_obs - log_bn)).sum(-1).mean(-1)


class DMIB(BatchedModel):
    defaults = {"hidden": 500, "bottleneck": 0, "dropout": 0.5, "beta": 500.0, "view_weight": 1000.0,
                "observed_weight": 1.0, "init": "authors"}
    #: the authors' training (same as Multi-D's; the engine does not read it): full batch, Adam lr 1e-4,
    #: weight decay 1e-4, StepLR(500, 0.2); 2500 epochs, H = 500 on BRCA; 1000 epochs, H = 300 on ROSMAP
    recipe = {"batch_size": 0, "lr": 1e-4, "weight_decay": 1e-4, "lr_step": 500, "lr_gamma": 0.2,
              "epochs": {"brca": 2500, "rosmap": 1000}, "hidden": {"brca": 500, "rosmap": 300}}

    def __init__(self, spec: InputSpec, n_classes: int, hidden: int = 500, bottleneck: int = 0,
                 dropout: float = 0.5, beta: float = 500.0, view_weight: float = 1000.0,
                 observed_weight: float = 1.0, init: str = "authors"):
        super().__init__(spec, n_classes)
        check_options("dmib", locals(), positive=("hidden",), whole=("bottleneck",), fraction=("dropout",),
                      nonneg=("beta", "view_weight", "observed_weight"), inits=("init",))
        self.names, self.hidden, self.init = spec.modalities(), int(hidden), init
        width = self.hidden * len(self.names)
        self.width, self.bottleneck = width, int(bottleneck) or max(1, round(2 * width / 3))
        self.weights = {"observed_ce": float(observed_weight), "kl": float(beta), "view_ce": float(view_weight)}
        for m in self.names:
            self.add_linear(f"enc.{m}", math.prod(spec.shapes[m]), self.hidden)
            self.add_linear(f"view.{m}", self.hidden, n_classes)
        self.add_linear("observed", width, n_classes)
        self.add_linear("bn.0", width, self.bottleneck)
        self.add_linear("bn.1", self.bottleneck, width)
        self.add_linear("predict", width, n_classes)
        for m in self.names:
            self.add_dropout(f"enc.{m}", self.hidden, dropout)

    def initial(self, gen: np.random.Generator) -> np.ndarray:
        """As the authors: encoders, view heads and the observed head are their Xavier-normal
        ``LinearLayer``; the bottleneck and the prediction head plain ``nn.Linear``."""
        if self.init == "torch":
            return super().initial(gen)
        xavier = {f"enc.{m}" for m in self.names} | {f"view.{m}" for m in self.names} | {"observed"}
        return authors_initial(self, gen, xavier)

    def forward(self, params: dict, x: dict, noise: dict | None, y=None) -> BatchedOutput:
        hs = [drop(torch.relu(linear(params, f"enc.{m}", flat_input(x[m]))), noise, f"enc.{m}") for m in self.names]
        z = torch.cat(hs, 2)
        bn = linear(params, "bn.1", torch.relu(linear(params, "bn.0", z)))
        logits = linear(params, "predict", bn)
        if y is None:
            return BatchedOutput(logits)
        observed = linear(params, "observed", z)
        parts = {"observed_ce": nll(observed, y).mean(-1), "kl": kl_detached(observed, logits),
                 "view_ce": sum(nll(linear(params, f"view.{m}", h), y).mean(-1) for m, h in zip(self.names, hs))}
        aux_loss = sum(self.weights[k] * v for k, v in parts.items())
        return BatchedOutput(logits, aux_loss, parts)
