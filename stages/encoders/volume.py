"""CT and MRI volumes encoded 2.5-D by the pretrained 2-D image encoder, one vector per volume.

Per volume (reading: :mod:`.volume_io`):

1. **decode** to float32 in the canonical RAS frame (a background thread reads the next volume
   while the current one is encoded: at most two volumes are in memory at once);
2. **transfer once** to the device (``cuda`` when the encode runs there), **resample** to
   ``spacing`` mm with trilinear ``torch.nn.functional.interpolate`` (``native``: kept as stored);
3. **slices**: ``slices`` evenly spaced planes (positions ``(i + 0.5) / slices`` of the axis) along
   each of the chosen ``planes`` (default ``three``: axial, coronal and sagittal), each shown the
   radiological way up (anterior / superior at the top), zero-padded to a square and resized to the
   encoder's input size (bilinear with antialiasing);
4. **intensity** per slice into three channels in [0, 1]: CT: three Hounsfield windows
   (level:width), one per channel; MRI: the volume's ``mri_percentiles`` (over all its resampled
   voxels) map to 0 and 1, clipped, the same value in all three channels. ``auto``: the DICOM
   Modality tag (CT / MR) decides; a NIfTI file (no tag) counts as CT when its 1st percentile is
   at most -500 (air around the body in Hounsfield units), else as MRI;
5. **forward** through the encoder in batches of ``batch_size`` slices (channels-last, autocast on
   CUDA, as for 2-D images; the slices of small volumes are gathered from consecutive volumes, in
   fixed groups of rows (:func:`volumes_per_batch`), so one forward call serves several volumes) and
   **pool** over the slices: ``meanmax`` (the default) concatenates the
   mean and the maximum of the slice features (2 x 1280 for EfficientNet-Lite0: the mean describes
   the organ, the maximum keeps a small lesion that only a few slices cut); CFCML's stage maps, when
   asked for, are the element-wise maximum over the same slices.

Every option (except the memory budget, which decides only whether a volume is refused) enters the
encode key and the artifact's provenance; ``climd predict`` rebuilds the options from there.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from stages.encoders import volume_io
from stages.errors import UsageError, check_choices

PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}        # the RAS array axis each plane cuts across
PLANE_CHOICES = ("three", "axial", "coronal", "sagittal")
INTENSITIES = ("auto", "ct", "mri")
POOLS = ("meanmax", "mean", "max")
# soft tissue, liver (narrow, for arterial-phase liver lesions), bone: (level, width) in HU
CT_WINDOWS = ((40.0, 400.0), (60.0, 160.0), (400.0, 1800.0))
CT_AIR = -500.0


@dataclass(frozen=True)
class VolumeOptions:
    spacing: tuple | None = (1.5, 1.5, 1.5)    # mm per RAS axis; None: the volume's own spacing
    planes: str = "three"
    slices: int = 8                            # per plane
    intensity: str = "auto"
    ct_windows: tuple = CT_WINDOWS
    mri_percentiles: tuple = (1.0, 99.0)
    pool: str = "meanmax"
    memory_mb: float = 2048.0                  # per volume: decoded + resampled float32 arrays

    def key(self) -> dict:
        """The options that change the features (the encode key and provenance)."""
        out = asdict(self)
        out.pop("memory_mb")
        return {k: (list(map(list, v)) if k == "ct_windows" else list(v) if isinstance(v, tuple) else v)
                for k, v in out.items()}

    @classmethod
    def from_key(cls, key: dict, memory_mb: float = 2048.0) -> "VolumeOptions":
        return cls(tuple(key["spacing"]) if key.get("spacing") else None, key["planes"], int(key["slices"]),
                   key["intensity"], tuple(tuple(w) for w in key["ct_windows"]), tuple(key["mri_percentiles"]),
                   key["pool"], memory_mb)

    @property
    def plane_axes(self) -> list[tuple[str, int]]:
        return list(PLANES.items()) if self.planes == "three" else [(self.planes, PLANES[self.planes])]

    def feature_multiplier(self) -> int:
        return 2 if self.pool == "meanmax" else 1


def parse(spacing: str = "1.5", planes: str = "three", slices: int = 8, intensity: str = "auto",
          ct_windows: str = "40:400,60:160,400:1800", mri_percentiles: str = "1,99", pool: str = "meanmax",
          memory_mb: float = 2048.0) -> VolumeOptions:
    """Options from their command-line text; UsageError naming the flag otherwise."""
    check_choices((planes, PLANE_CHOICES, "--volume-planes"), (intensity, INTENSITIES, "--volume-intensity"),
                  (pool, POOLS, "--volume-pool"))
    if str(spacing).strip().lower() == "native":
        sp = None
    else:
        sp = _floats(spacing, "--volume-spacing", "1.5 (isotropic), 0.8,0.8,2.5 or native")
        sp = sp * 3 if len(sp) == 1 else sp
        if len(sp) != 3 or min(sp) <= 0:
            raise UsageError(f"--volume-spacing {spacing!r} needs one or three positive values (mm)",
                             fix="e.g. --volume-spacing 1.5 or 0.8,0.8,2.5, or native")
    windows = []
    for part in str(ct_windows).split(","):
        lw = _floats(part.replace(":", ","), "--volume-ct-windows", "40:400,60:160,400:1800 (level:width in HU)")
        if len(lw) != 2 or lw[1] <= 0:
            raise UsageError(f"--volume-ct-windows {ct_windows!r}: each window is level:width with width > 0",
                             fix="e.g. --volume-ct-windows 40:400,60:160,400:1800")
        windows.append(tuple(lw))
    if len(windows) != 3:
        raise UsageError(f"--volume-ct-windows {ct_windows!r} gives {len(windows)} window(s); three are needed "
                         "(one per colour channel of the encoder)", fix="e.g. --volume-ct-windows 40:400,60:160,400:1800")
    pct = _floats(mri_percentiles, "--volume-mri-percentiles", "1,99")
    if len(pct) != 2 or not 0 <= pct[0] < pct[1] <= 100:
        raise UsageError(f"--volume-mri-percentiles {mri_percentiles!r} needs two values 0 <= low < high <= 100",
                         fix="e.g. --volume-mri-percentiles 1,99")
    if not 1 <= int(slices) <= 512:
        raise UsageError(f"--volume-slices {slices} must be between 1 and 512")
    if not memory_mb > 0:
        raise UsageError(f"--volume-memory-mb {memory_mb} must be positive")
    return VolumeOptions(sp, planes, int(slices), intensity, tuple(windows), tuple(pct), pool, float(memory_mb))


def _floats(text: str, flag: str, example: str) -> tuple:
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a list of numbers", fix=f"e.g. {flag} {example}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{flag} {text!r} is not a list of finite numbers", fix=f"e.g. {flag} {example}")
    return values


# -- one volume ---------------------------------------------------------------------------------------------
def intensity_mode(vol: volume_io.Volume, opts: VolumeOptions) -> str:
    if opts.intensity != "auto":
        return opts.intensity
    tag = (vol.modality or "").upper()
    if tag in ("CT", "MR"):
        return "ct" if tag == "CT" else "mri"
    flat = vol.data.reshape(-1)
    sample = flat[::max(1, flat.size // 2 ** 20)]          # every k-th voxel: deterministic, fast
    return "ct" if float(np.percentile(sample, 1)) <= CT_AIR else "mri"


def prepare(vol: volume_io.Volume, opts: VolumeOptions, size: int, mean, std, device: str):
    """(normalised slice batch (S, 3, size, size) on ``device``, facts): transfer, resample, slice,
    intensity, resize."""
    import torch
    import torch.nn.functional as F

    shape = volume_io.resampled_shape(vol.data.shape, vol.spacing, opts.spacing)
    x = torch.from_numpy(vol.data).to(device)                      # the one host -> device transfer
    if shape != tuple(x.shape):
        x = F.interpolate(x[None, None], size=shape, mode="trilinear", align_corners=False)[0, 0]
    mode = intensity_mode(vol, opts)
    scale = _mri_scale(x, opts.mri_percentiles) if mode == "mri" else None
    planes = []
    for _, axis in opts.plane_axes:
        n = x.shape[axis]
        idx = torch.tensor([min(n - 1, int((i + 0.5) * n / opts.slices)) for i in range(opts.slices)], device=x.device)
        planes.append(_to_channels(_upright(x.index_select(axis, idx).movedim(axis, 0), axis), mode, opts, scale))
    batch = torch.cat([_square_resize(p, size) for p in planes])
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (batch - m) / s, {"intensity": mode, "resampled_shape": list(shape), "axes": vol.original_axes}


def _upright(stack, axis: int):
    """(S, a, b) slices -> (S, H, W) with anterior (axial) or superior (coronal, sagittal) at the top."""
    return stack.transpose(1, 2).flip(1)        # rows: the second in-plane axis, reversed


def _to_channels(stack, mode: str, opts: VolumeOptions, scale):
    import torch

    if mode == "ct":
        chans = [((stack - (level - width / 2)) / width).clamp(0, 1) for level, width in opts.ct_windows]
        return torch.stack(chans, 1)
    lo, hi = scale
    gray = ((stack - lo) / max(hi - lo, 1e-6)).clamp(0, 1)
    return gray[:, None].expand(-1, 3, -1, -1)


def _mri_scale(x, percentiles) -> tuple[float, float]:
    """The volume's percentiles (linear interpolation, as numpy's default); over every k-th voxel
    when the volume has more than 2**24 (torch.quantile's limit), which is deterministic."""
    import torch

    flat = x.reshape(-1)
    step = max(1, math.ceil(flat.numel() / 2 ** 24))
    q = torch.quantile(flat[::step], torch.tensor(percentiles, device=x.device, dtype=x.dtype) / 100)
    return float(q[0]), float(q[1])


def _square_resize(stack, size: int):
    import torch.nn.functional as F

    h, w = stack.shape[-2:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    stack = F.pad(stack, [left, side - w - left, top, side - h - top])
    if side != size:
        stack = F.interpolate(stack, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)
    return stack


def pool(feats: np.ndarray, how: str) -> np.ndarray:
    if how == "mean":
        return feats.mean(0)
    if how == "max":
        return feats.max(0)
    return np.concatenate([feats.mean(0), feats.max(0)])


# -- many volumes ---------------------------------------------------------------------------------------------
def encode_volumes(paths: list[Path], encoder, opts: VolumeOptions, batch_size: int, device: str,
                   stages: bool = False, grid: int = 7, timing: dict | None = None,
                   amp: str | None = "auto") -> Iterator[tuple[int, np.ndarray, list, dict]]:
    """Yield (row, pooled vector, stage token arrays (grid², C) each, facts) per volume.
    ``timing`` (optional): seconds spent decoding / resampling+slicing / in the forward pass are
    added to its keys ``decode``, ``resample``, ``forward``."""
    import torch

    from stages.encoders.image_batch import AMP_DTYPE, forward, prefetch, to_channels_last
    from stages.runtime import threads

    threads.apply_to_torch()
    cuda = device.startswith("cuda")
    amp = (AMP_DTYPE if amp == "auto" else amp) if cuda else None
    model = to_channels_last(encoder.model, device)
    timing = timing if timing is not None else {}
    for key in ("decode", "resample", "forward"):
        timing.setdefault(key, 0.0)

    def decode(k):
        t0 = time.perf_counter()
        vol = volume_io.read(paths[k], opts.memory_mb, opts.spacing)
        return k, vol, time.perf_counter() - t0

    group = volumes_per_batch(batch_size, opts.slices * len(opts.plane_axes))
    pending: list = []                     # prepared volumes whose slices wait for a full batch

    def flush():
        t1 = time.perf_counter()
        x = torch.cat([b for _, b, _ in pending])
        pooled, tokens = [], []
        for start in range(0, len(x), batch_size):
            p, tok = forward(model, x[start:start + batch_size], stages, grid, amp)
            pooled.append(p)
            tokens.append(tok)
        _sync(cuda)
        timing["forward"] += time.perf_counter() - t1
        feats = np.concatenate(pooled)
        maps = [np.concatenate([t[s] for t in tokens]) for s in range(len(tokens[0]))] if stages else []
        at = 0
        for k, b, facts in pending:
            rows = slice(at, at + len(b))
            at += len(b)
            yield k, pool(feats[rows], opts.pool).astype(np.float32), [m[rows].max(0) for m in maps], facts
        pending.clear()

    for k, vol, seconds in prefetch(decode, range(len(paths)), workers=1, depth=2):
        timing["decode"] += seconds
        t0 = time.perf_counter()
        batch, facts = prepare(vol, opts, encoder.size, encoder.mean, encoder.std, device)
        del vol
        _sync(cuda)
        timing["resample"] += time.perf_counter() - t0
        pending.append((k, batch, facts))
        if (k + 1) % group == 0:
            yield from flush()
    if pending:
        yield from flush()


def volumes_per_batch(batch_size: int, slices: int) -> int:
    """How many consecutive volumes share one forward call: the largest divisor of ``batch_size``
    whose slices fit in a batch. Groups start at rows that are multiples of it, so a shard (which
    starts at a multiple of ``batch_size`` rows) groups its volumes as the unsharded encode does
    and gives bitwise the same features."""
    fit = max(1, batch_size // max(1, slices))
    return max(d for d in range(1, fit + 1) if batch_size % d == 0)


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()
