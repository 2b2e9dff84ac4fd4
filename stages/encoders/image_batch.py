"""The image encoding loop: batches, decoding overlapped with the forward pass, channels-last.

CPU: a background thread decodes and resizes the next batch with PIL (:func:`image.load_image`)
while torch runs the forward pass of the current one on the threads :mod:`stages.runtime.threads` allows;
model and batch are channels-last (NHWC), which oneDNN runs faster with the same output.

CUDA: file bytes are read by background threads; JPEGs are decoded on the GPU in one batched call
(``torchvision.io.decode_jpeg(list, device="cuda")``), resized on the GPU (one ``interpolate`` per
group of images of equal size), normalised there and run channels-last under autocast (``AMP_DTYPE``).
Files that are not JPEG, and JPEGs the GPU decoder refuses, go through the CPU path's PIL loader.

Either way at most ``depth`` batches of decoded images exist at once: never the whole set.
"""
from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

JPEG_MAGIC = b"\xff\xd8\xff"
AMP_DTYPE = "float16"          # inference in fp16 keeps 10 mantissa bits (bf16: 7); EfficientNet/ResNet stay in range


def decode_workers(threads: int) -> int:
    """Threads that decode on CPU: one keeps up with the forward pass (1.4 ms vs 44 ms per image at
    224 px on one core); more only on machines with many cores, where the forward pass is faster."""
    return max(1, min(8, threads // 4))


def prefetch(fn: Callable, items: Iterable, workers: int = 1, depth: int = 2) -> Iterator:
    """``fn(item)`` for each item, in order, computed by ``workers`` threads at most ``depth`` items
    ahead of the consumer (so at most ``depth`` results are held)."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="climd-decode") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:          # the consumer stopped (error, interrupt): drop queued work
                future.cancel()


def to_channels_last(model, device: str):
    import torch

    return model.to(device=device, memory_format=torch.channels_last).eval()


def forward(model, x, stages: bool = False, grid: int = 7, amp: str | None = None):
    """(pooled features, stage token arrays) of one batch as float32 numpy arrays."""
    import torch
    import torch.nn.functional as F

    x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(x.device.type, dtype=getattr(torch, amp)) if amp else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        if hasattr(model, "forward_features"):
            pooled, maps = model.forward_features(x, stages)
        else:
            pooled, maps = resnet_features(model, x, stages)
        tokens = [F.adaptive_avg_pool2d(m.float(), grid).flatten(2).transpose(1, 2).contiguous().cpu().numpy()
                  for m in maps]
    return pooled.float().cpu().numpy(), tokens


def resnet_features(model, x, stages: bool):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    maps = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        maps.append(x)
    return x.mean((2, 3)), maps if stages else []


def encode_batches(paths: list[Path], encoder, batch_size: int, device: str, stages: bool = False,
                   grid: int = 7, amp: str | None = "auto") -> Iterator[tuple[int, np.ndarray, list]]:
    """Yield (start row, pooled features, stage token arrays) per batch of ``paths``.
    ``amp``: autocast dtype on CUDA ("auto": :data:`AMP_DTYPE`; None: float32)."""
    from stages.runtime import threads

    threads.apply_to_torch()
    cuda = device.startswith("cuda")
    amp = (AMP_DTYPE if amp == "auto" else amp) if cuda else None
    model = to_channels_last(encoder.model, device)
    starts = range(0, len(paths), batch_size)
    if cuda:
        batches = gpu_batches(paths, encoder, batch_size, device, starts)
    else:
        workers = decode_workers(threads.configured())
        batches = prefetch(lambda s: (s, cpu_batch(paths[s:s + batch_size], encoder)), starts, workers, workers + 1)
    with _cudnn_autotune(cuda):
        for start, x in batches:
            pooled, tokens = forward(model, x.to(device, non_blocking=True), stages, grid, amp)
            yield start, pooled, tokens


@contextlib.contextmanager
def _cudnn_autotune(on: bool):
    """One input shape: cuDNN may time its kernels once and keep the fastest. Restored afterwards, so
    that a training step later in the same process keeps its deterministic kernel choice."""
    if not on:
        yield
        return
    import torch

    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def cpu_batch(paths: list[Path], encoder):
    import torch

    from stages.encoders.pixels import load_image

    return torch.stack([load_image(p, encoder) for p in paths])


# -- the GPU path (its pieces run on any device, so they are tested on CPU) -----------------------------------
def read_batch(paths: list[Path], encoder) -> tuple[list, list]:
    """(JPEG files as (position, path, uint8 byte tensor, EXIF orientation), other files as
    (position, preprocessed CHW float tensor from the PIL loader)) for one batch; runs in a
    background thread."""
    import torch

    from stages.encoders.pixels import load_image
    from stages.encoders.pixels import jpeg_orientation

    jpegs, others = [], []
    for i, path in enumerate(paths):
        try:
            data = Path(path).read_bytes()
        except OSError:
            data = b""                               # the PIL loader reports the missing file properly
        if data[:3] == JPEG_MAGIC:
            turn = jpeg_orientation(data, path) if encoder.exif_orientation else 1
            jpegs.append((i, path, torch.frombuffer(bytearray(data), dtype=torch.uint8), turn))
        else:
            others.append((i, load_image(path, encoder)))
    return jpegs, others


def gpu_batches(paths: list[Path], encoder, batch_size: int, device: str, starts: Iterable[int]):
    """(start, normalised NCHW batch on ``device``) per batch: bytes read ahead by threads, JPEGs
    decoded on ``device``."""
    read = prefetch(lambda s: (s, read_batch(paths[s:s + batch_size], encoder)), starts, workers=4, depth=4)
    for start, (jpegs, others) in read:
        yield start, assemble(len(paths[start:start + batch_size]), decode_jpegs(jpegs, encoder, device),
                              others, encoder, device)


def decode_jpegs(jpegs: list, encoder, device: str) -> list[tuple[int, object]]:
    """(position, normalised CHW tensor on ``device``) of each JPEG: one batched decode, then batched
    resizes; a file the decoder refuses is decoded alone, else by the PIL loader (which names it)."""
    import warnings

    with warnings.catch_warnings():          # torchvision 0.29 announces a move to torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

    from stages.encoders.pixels import load_image
    from stages.encoders.pixels import orient_tensor

    if not jpegs:
        return []
    try:
        decoded = decode_jpeg([data for _, _, data, _ in jpegs], mode=ImageReadMode.RGB, device=device)
        done = [(i, orient_tensor(img, turn)) for (i, _, _, turn), img in zip(jpegs, decoded)]
        fallback = []
    except RuntimeError:
        done, fallback = [], []
        for i, path, data, turn in jpegs:
            try:
                done.append((i, orient_tensor(decode_jpeg(data, mode=ImageReadMode.RGB, device=device), turn)))
            except RuntimeError:
                fallback.append((i, load_image(path, encoder).to(device)))
    resized = resize_batch([img for _, img in done], encoder.size, encoder.mean, encoder.std)
    return [(i, resized[k]) for k, (i, _) in enumerate(done)] + fallback


def resize_batch(images: list, size: int, mean, std):
    """uint8 CHW images of any sizes (on one device) -> float32 (n, 3, size, size), scaled to [0, 1],
    normalised with ``mean``/``std``; bilinear with antialiasing (like PIL's BILINEAR), one
    ``interpolate`` call per group of equal-sized images."""
    import torch
    import torch.nn.functional as F

    if not images:
        return torch.empty((0, 3, size, size))
    device = images[0].device
    out = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=device)
    groups: dict[tuple, list[int]] = {}
    for k, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(k)
    for shape, idx in groups.items():
        x = torch.stack([images[k] for k in idx]).float()
        if shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[torch.tensor(idx, device=device)] = x.clamp_(0, 255)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    return (out - m) / s


def assemble(n: int, decoded: list, others: list, encoder, device: str):
    """The batch in file order from the GPU-decoded JPEGs and the CPU-loaded other files."""
    import torch

    batch = torch.empty((n, 3, encoder.size, encoder.size), dtype=torch.float32, device=device)
    seen = set()
    for i, x in list(decoded) + [(i, x.to(device, non_blocking=True)) for i, x in others]:
        batch[i] = x
        seen.add(i)
    assert seen == set(range(n)), "every image of the batch is decoded once"
    return batch
