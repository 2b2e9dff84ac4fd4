"""The paper's Baseline: one small encoder per modality, features concatenated, MLP classifier."""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import InputSpec, ModelOutput, MultimodalModel


class EarlyFusion(MultimodalModel):
    defaults = {"hidden": 64, "dropout": 0.2}

    def __init__(self, spec: InputSpec, n_classes: int, hidden: int = 64, dropout: float = 0.2):
        super().__init__()
        self.names = spec.modalities()
        self.encoders = nn.ModuleDict({
            m: nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.shapes[m]), hidden), nn.ReLU(),
                             nn.Dropout(dropout))
            for m in self.names})
        self.classifier = nn.Sequential(nn.Linear(hidden * len(self.names), hidden), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> ModelOutput:
        fused = torch.cat([self.encoders[m](inputs[m]) for m in self.names], dim=1)
        return ModelOutput(self.classifier(fused))
