"""CFCML (coarse-to-fine crossmodal learning, image + tabular) as a plug-in model.

Coarse stage: the four stage maps of every image modality (cached by ``encode --image-stages``) are
compressed to ``tokens`` tokens (Conv1d over the token axis) of ``dim`` channels (Linear); every
tabular modality becomes ``tab_tokens`` tokens. At every stage each modality's tokens attend (multi-
head cross-attention) to the other modalities' tokens; original and attended tokens are
concatenated; the stages are fused per modality (Conv1d over tokens + mean pool) into one vector.
Classifier: concatenation -> dim -> 16 -> classes, dropout 0.5.
Fine stage: the HRM losses of :mod:`hrm` on the per-modality vectors, weighted by w_sam/w_up/w_cp.

``coarse=False`` drops multi-granularity and cross-attention (last stage only, no attention);
``fine=False`` drops the HRM losses: the ablation of the CFCML paper.
Difference from the authors' setting: their Swin-T is fine-tuned end to end on clinical +
dermoscopic images; ours is a frozen offline backbone whose stage maps ``encode`` cached.
"""
from __future__ import annotations

import torch
from torch import nn

from stages.errors import UsageError
from stages.models.base import InputSpec, ModelOutput, MultimodalModel
from stages.models.hrm import hrm_losses


class CrossAttention(nn.Module):
    """Tokens of one modality attend to the tokens of the others."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, own: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        return self.attn(own, others, others, need_weights=False)[0]


class CFCML(MultimodalModel):
    needs_stages = True
    batching = "class-balanced"
    defaults = {"dim": 128, "tokens": 32, "tab_tokens": 4, "heads": 4, "dropout": 0.5, "tau": 0.07,
                "w_sam": 0.04, "w_up": 0.06, "w_cp": 0.18, "coarse": True, "fine": True}

    def __init__(self, spec: InputSpec, n_classes: int, dim=128, tokens=32, tab_tokens=4, heads=4,
                 dropout=0.5, tau=0.07, w_sam=0.04, w_up=0.06, w_cp=0.18, coarse=True, fine=True):
        super().__init__()
        self.images = [m for m in spec.modalities() if spec.stages_of(m)]
        self.tables = [m for m in spec.modalities() if not spec.stages_of(m)]
        if not self.images:
            raise UsageError("cfcml needs an image modality with stage maps (encode --image-stages)")
        self.coarse, self.fine, self.tau = coarse, fine, tau
        self.weights = {"sam": w_sam, "up": w_up, "cp": w_cp}
        self.n_stages = len(spec.stages_of(self.images[0])) if coarse else 1
        self.stage_keys = {m: spec.stages_of(m)[-self.n_stages:] for m in self.images}
        self.compress = nn.ModuleDict({
            key.replace("/", "_"): nn.Sequential(_TokenConv(spec.shapes[key][0], tokens), nn.Linear(spec.shapes[key][1], dim))
            for m in self.images for key in self.stage_keys[m]})
        self.tabular = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(spec.shapes[m][0], tab_tokens * dim), nn.ReLU(), nn.Unflatten(1, (tab_tokens, dim)))
            for m in self.tables})
        self.names = self.images + self.tables
        n_tok = {m: tokens for m in self.images} | {m: tab_tokens for m in self.tables}
        if coarse:
            self.attend = nn.ModuleList([nn.ModuleDict({m: CrossAttention(dim, heads) for m in self.names})
                                         for _ in range(self.n_stages)])
            self.fuse = nn.ModuleDict({m: _TokenConv(2 * self.n_stages * n_tok[m], n_tok[m]) for m in self.names})
        self.classifier = nn.Sequential(nn.Linear(dim * len(self.names), dim), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(dim, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, n_classes))

    def inputs_used(self, spec: InputSpec) -> list[str]:
        return self.tables + [k for m in self.images for k in self.stage_keys[m]]

    def modality_vectors(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        tab = {m: self.tabular[m](inputs[m]) for m in self.tables}
        per_stage = []
        for s in range(self.n_stages):
            tokens = {m: self.compress[self.stage_keys[m][s].replace("/", "_")](inputs[self.stage_keys[m][s]])
                      for m in self.images} | tab
            per_stage.append(self._enhance(tokens, s) if self.coarse else tokens)
        if not self.coarse:
            return [per_stage[0][m].mean(1) for m in self.names]
        return [self.fuse[m](torch.cat([stage[m] for stage in per_stage], dim=1)).mean(1) for m in self.names]

    def _enhance(self, tokens: dict[str, torch.Tensor], s: int) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.names:
            others = torch.cat([tokens[o] for o in self.names if o != m], dim=1)
            out[m] = torch.cat([tokens[m], self.attend[s][m](tokens[m], others)], dim=1)
        return out

    def forward(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> ModelOutput:
        vectors = self.modality_vectors(inputs)
        logits = self.classifier(torch.cat(vectors, dim=1))
        if not (self.training and self.fine and labels is not None):
            return ModelOutput(logits)
        parts = hrm_losses(vectors, labels, self.tau)
        aux = {k: self.weights[k] * v for k, v in parts.items()}
        return ModelOutput(logits, sum(aux.values()), {k: v.detach() for k, v in aux.items()})


class _TokenConv(nn.Module):
    """Conv1d over the token axis: (B, n_in, C) -> (B, n_out, C)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Conv1d(n_in, n_out, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
