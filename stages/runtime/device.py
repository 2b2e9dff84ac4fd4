"""Where tensors live: ``auto`` picks the GPU when there is one.

Without an NVIDIA device node (``/dev/nvidiactl``) there is no CUDA GPU to find, so ``auto`` and
``cpu`` resolve without importing torch (1.5 s): a command can then fork its CPU workers before
torch starts any thread.
"""
from __future__ import annotations

import os
from pathlib import Path

from stages.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def _no_gpu_possible() -> bool:
    return not Path("/dev/nvidiactl").exists() or os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")


def resolve(device: str) -> str:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UsageError(f"unknown --device {device!r}", fix="use auto, cpu or cuda")
    if device == "cpu" or (device == "auto" and _no_gpu_possible()):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise UsageError("--device cuda but no CUDA GPU is visible", fix="use --device auto or cpu")
    return device
