"""Where tensors live: ``auto`` picks the GPU when there is one."""
from __future__ import annotations

from .errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def resolve(device: str) -> str:
    import torch

    if device not in DEVICES and not device.startswith("cuda:"):
        raise UsageError(f"unknown --device {device!r}", fix="use auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA GPU is visible", fix="use --device auto or cpu")
    return device
