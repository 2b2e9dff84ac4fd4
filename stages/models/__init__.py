"""Model plug-ins for ``climd train --model NAME``.

A model takes a dict of input tensors (one per modality, plus image stage tokens named
``<modality>/s<k>`` when it asks for them) and returns logits and an optional auxiliary loss.
Adding a model = one class with the small interface of :class:`base.MultimodalModel` + a line here.
"""
from __future__ import annotations

from .base import InputSpec, ModelOutput, MultimodalModel


def registry() -> dict:
    from .cfcml import CFCML
    from .early_fusion import EarlyFusion

    return {"early-fusion": EarlyFusion, "cfcml": CFCML}


def build(name: str, spec: InputSpec, n_classes: int, options: dict) -> MultimodalModel:
    from ..errors import check_choices

    models = registry()
    check_choices((name, list(models), "--model"))
    return models[name].from_options(spec, n_classes, options)


__all__ = ["InputSpec", "ModelOutput", "MultimodalModel", "build", "registry"]
