"""Model plug-ins for ``climd train --model NAME``.

Two kinds of plug-in:

* a :class:`batched.BatchedModel` declares per-replica parameter shapes and computes on ``[R, B, ...]``
  inputs, so many replicas train as one vectorised program (early fusion, Multi-D, DMIB);
* a :class:`base.MultimodalModel` is an ordinary ``nn.Module`` taking a dict of input tensors (one per
  modality, plus image stage tokens named ``<modality>/s<k>`` when it asks for them) and returning
  logits and an optional auxiliary loss; the engine trains it one replica at a time through
  :class:`adapter.ModuleAdapter` (CFCML).

Adding a model = one class + a line in :func:`registry`.
"""
from __future__ import annotations

from stages.models.base import InputSpec, ModelOutput, MultimodalModel


def registry() -> dict:
    from stages.models.cfcml import CFCML
    from stages.models.dmib import DMIB
    from stages.models.early_fusion import EarlyFusion
    from stages.models.multid import MultiD

    return {"early-fusion": EarlyFusion, "cfcml": CFCML, "multid": MultiD, "dmib": DMIB}


def build(name: str, spec: InputSpec, n_classes: int, options: dict):
    """A :class:`batched.BatchedModel` (nn.Module plug-ins come wrapped in a ModuleAdapter)."""
    from stages.errors import check_choices
    from stages.models.adapter import ModuleAdapter

    models = registry()
    check_choices((name, list(models), "--model"))
    cls = models[name]
    if getattr(cls, "vectorised", False):
        return cls.from_options(spec, n_classes, options)
    return ModuleAdapter(cls, spec, n_classes, options)


__all__ = ["InputSpec", "ModelOutput", "MultimodalModel", "build", "registry"]
