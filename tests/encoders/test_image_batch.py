"""The image encoding loop: channels-last output, bounded prefetching, and the GPU path's pieces
(batched JPEG decode, grouped resize, assembly, fallbacks) run on CPU tensors."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from stages.encoders import image
from stages.encoders import image_batch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def tiny():
    return image.build("efficientnet-lite0", None, size=32, random_init=True)


def _photos(root, n=5, size=(48, 40)):
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        # smooth images (a gradient plus noise): JPEG decoders then agree closely
        h, w = size if i % 2 else (size[1], size[0])
        base = np.linspace(0, 200, w)[None, :, None] + np.linspace(0, 50, h)[:, None, None]
        px = np.clip(base + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)
        path = root / (f"{i}.jpg" if i != 2 else f"{i}.png")
        Image.fromarray(px).save(path, quality=95)
        paths.append(path)
    return paths


def test_channels_last_output_equals_contiguous(tiny):
    x = torch.randn(3, 3, 32, 32)
    model = tiny.model.to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        want, want_maps = model.forward_features(x.contiguous(), True)
    last = image_batch.to_channels_last(model, "cpu")
    assert last._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    pooled, tokens = image_batch.forward(last, x, stages=True, grid=2)
    np.testing.assert_allclose(pooled, want.numpy(), atol=1e-5, rtol=1e-5)
    for tok, m in zip(tokens, want_maps):
        ref = torch.nn.functional.adaptive_avg_pool2d(m, 2).flatten(2).transpose(1, 2).numpy()
        np.testing.assert_allclose(tok, ref, atol=1e-5, rtol=1e-5)


def test_prefetch_keeps_order_and_holds_at_most_depth():
    made, taken, worst = [0], [0], [0]
    lock = threading.Lock()

    def work(i):
        with lock:
            made[0] += 1
            worst[0] = max(worst[0], made[0] - taken[0])
        return i * 10

    out = []
    for value in image_batch.prefetch(work, range(20), workers=3, depth=3):
        out.append(value)
        with lock:
            taken[0] += 1
    assert out == [i * 10 for i in range(20)]
    assert worst[0] <= 3


@pytest.mark.parametrize("device", DEVICES)
def test_resize_batch_groups_by_size_and_keeps_order(device):
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    shapes = [(3, 40, 50), (3, 16, 16), (3, 40, 50), (3, 64, 20)]
    imgs = [torch.randint(0, 256, s, generator=g, dtype=torch.uint8).to(device) for s in shapes]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = image_batch.resize_batch(imgs, 16, mean, std)
    assert out.shape == (4, 3, 16, 16) and out.device.type == device
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    for k, img in enumerate(imgs):
        x = img.cpu().float()[None]
        if x.shape[-2:] != (16, 16):
            x = F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
        np.testing.assert_allclose(out[k].cpu().numpy(), ((x[0] / 255 - m) / s).numpy(), atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_path_decodes_jpegs_batched_and_pngs_with_pil(tmp_path, tiny, device):
    paths = _photos(tmp_path)
    batches = list(image_batch.gpu_batches(paths, tiny, 3, device, range(0, 5, 3)))
    assert [s for s, _ in batches] == [0, 3] and [len(x) for _, x in batches] == [3, 2]
    x = torch.cat([b for _, b in batches]).cpu()
    ref = torch.stack([image.load_image(p, tiny) for p in paths])
    assert torch.equal(x[2], ref[2])                     # the PNG went through the PIL loader
    for k in (0, 1, 3, 4):                               # JPEGs: another decoder and resize, same picture
        assert (x[k] - ref[k]).abs().mean() < 0.03, k


def test_gpu_path_names_a_damaged_jpeg(tmp_path, tiny):
    from stages.errors import DataError

    paths = _photos(tmp_path, n=3)
    paths[1].write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)       # JPEG magic, no picture
    with pytest.raises(DataError, match="1.jpg"):
        list(image_batch.gpu_batches(paths, tiny, 3, "cpu", [0]))


def test_cpu_loop_matches_batch_of_one(tmp_path, tiny):
    paths = _photos(tmp_path, n=5)
    whole = np.concatenate([p for _, p, _ in image_batch.encode_batches(paths, tiny, 4, "cpu")])
    ones = np.concatenate([p for _, p, _ in image_batch.encode_batches(paths, tiny, 1, "cpu")])
    assert whole.shape == (5, 1280)
    np.testing.assert_allclose(whole, ones, atol=1e-5, rtol=1e-4)


def test_cudnn_autotuning_is_restored_after_the_loop():
    before = torch.backends.cudnn.benchmark
    with image_batch._cudnn_autotune(True):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark == before
