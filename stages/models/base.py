"""The plug-in interface every multimodal model implements."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class InputSpec:
    """Shapes (without the batch axis) and kinds of the tensors a model may use."""

    shapes: dict[str, tuple]
    kinds: dict[str, str] = field(default_factory=dict)

    def modalities(self) -> list[str]:
        return [k for k in self.shapes if "/" not in k]

    def stages_of(self, modality: str) -> list[str]:
        return sorted(k for k in self.shapes if k.startswith(f"{modality}/s"))


@dataclass
class ModelOutput:
    logits: torch.Tensor
    aux_loss: torch.Tensor | None = None
    aux: dict = field(default_factory=dict)   # named parts of aux_loss, for the training history


class MultimodalModel(nn.Module):
    """forward(inputs: dict[str, Tensor], labels: Tensor | None) -> ModelOutput.

    ``labels`` is given during training so models with label-aware auxiliary losses (CFCML's
    prototypes) can use it; ``logits`` must never depend on it.
    """

    #: an nn.Module plug-in trains one replica at a time (see models.adapter.ModuleAdapter)
    vectorised: bool = False
    #: the image stage tokens of ``encode --image-stages`` are required
    needs_stages: bool = False
    #: "shuffle" (plain mini-batches) or "class-balanced" (every class in every batch)
    batching: str = "shuffle"
    #: the options this model understands, with defaults (documented in --help via --model-option)
    defaults: dict = {}

    @classmethod
    def from_options(cls, spec: InputSpec, n_classes: int, options: dict) -> "MultimodalModel":
        from stages.errors import UsageError

        unknown = set(options) - set(cls.defaults)
        if unknown:
            raise UsageError(f"unknown model option(s) {sorted(unknown)} for {cls.__name__}",
                             fix=f"known: {', '.join(f'{k}={v}' for k, v in cls.defaults.items())}")
        return cls(spec, n_classes, **{**cls.defaults, **options})

    def inputs_used(self, spec: InputSpec) -> list[str]:
        return spec.modalities()
