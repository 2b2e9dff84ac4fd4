"""Image decoding (16-bit, alpha, float, damaged files) and image-weights files that fail to load."""
import numpy as np
import pytest
from PIL import Image

from stages.encoders import pixels
from stages.errors import DataError

from tests import datagen


def _rgb(path):
    return np.asarray(pixels.open_rgb(path))


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_16bit_grayscale_is_scaled_by_the_type_maximum_not_clipped(tmp_path, suffix):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / f"g{suffix}")
    assert Image.open(tmp_path / f"g{suffix}").mode.startswith("I")
    rgb = _rgb(tmp_path / f"g{suffix}")
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb.min() == 0 and rgb.max() == 255 and 120 < rgb.mean() < 135     # not all white


def test_16bit_dark_image_keeps_its_relative_contrast(tmp_path):
    """12-bit data in a 16-bit file: dark (same scale for every image), but not flat."""
    arr = np.array([[0, 1024], [2048, 4095]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.tif")
    np.testing.assert_array_equal(_rgb(tmp_path / "d.tif")[..., 0], [[0, 4], [8, 16]])


def test_alpha_is_composited_on_black(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 200                      # red everywhere, hidden where transparent
    rgba[..., 3] = [[0, 255], [128, 255]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = _rgb(tmp_path / "a.png")
    assert out[0, 0].tolist() == [0, 0, 0]               # fully transparent -> black, not red
    assert out[0, 1].tolist() == [200, 0, 0]             # opaque unchanged
    assert abs(int(out[1, 0, 0]) - 100) <= 1             # half transparent -> half as bright
    # the encoder's own loader goes through the same conversion
    from stages.encoders import image

    enc = image.ImageEncoder("x", None, "random", None, 0, (), (0.0,) * 3, (1 / 255,) * 3, 2)
    x = image.load_image(tmp_path / "a.png", enc).numpy()
    assert np.allclose(x[:, 0, 0], 0, atol=1e-3) and abs(x[0, 0, 1] - 200) < 1e-3
    la = np.stack([np.full((2, 2), 255, np.uint8), np.array([[0, 255], [255, 0]], np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert _rgb(tmp_path / "la.png")[..., 0].tolist() == [[0, 255], [255, 0]]


def test_float_and_damaged_images_are_refused_naming_the_file(tmp_path):
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match="f.tif.*floating-point"):
        pixels.open_rgb(tmp_path / "f.tif")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="bad.png"):
        pixels.open_rgb(tmp_path / "bad.png")
    good = tmp_path / "t.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(good)
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="trunc.jpg"):
        pixels.open_rgb(tmp_path / "trunc.jpg")


def test_16bit_tiff_through_encode(cli, cache, tmp_path):
    """End to end (pretrained EfficientNet-Lite0: a random init gives ~0 features): a 16-bit TIFF and
    its 8-bit twin give the same features, unlike an all-white image."""
    import h5py

    root = datagen.manifest(tmp_path / "m", n=8).parent
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(root / "img" / "0.tif")
    (root / "img" / "0.png").unlink()
    (root / "samples.csv").write_text((root / "samples.csv").read_text().replace("img/0.png", "img/0.tif"))
    Image.fromarray(np.rint(ramp / 257.0).astype(np.uint8)).convert("RGB").save(root / "img" / "1.png")
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(root / "img" / "2.png")
    r = cli("encode", "--run", "t16", "--data", root / "manifest.yaml", "--image-size", "32", "--device", "cpu")
    assert r.exit_code == 0, r.output
    with h5py.File(cache / "t16" / "encode" / "features.h5", "r") as h5:
        x = h5["modalities/photo"][...]
    assert np.abs(x[1]).max() > 0.1
    np.testing.assert_allclose(x[0], x[1], rtol=1e-4, atol=1e-4)
    assert np.abs(x[0] - x[2]).max() > 0.1


def _weights_args(tmp_path, weights):
    path = datagen.manifest(tmp_path / "m", n=8)
    return ["encode", "--run", "w", "--data", path, "--image-encoder", "resnet18", "--image-weights", weights,
            "--image-size", "32", "--device", "cpu"]


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", b"PK\x03\x04truncated zip"])
def test_unloadable_weights_file_is_a_message_not_a_traceback(cli, cache, tmp_path, content):
    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(content)
    r = cli(*_weights_args(tmp_path, weights))
    assert r.exit_code == 3, r.output
    assert "resnet18.pth" in r.stderr and "fix:" in r.stderr and "Traceback" not in r.output


def test_weights_file_with_code_never_runs_it(cli, cache, tmp_path):
    import os

    import torch

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"conv1.weight": Evil()}, tmp_path / "evil.pth")
    r = cli(*_weights_args(tmp_path, tmp_path / "evil.pth"))
    assert r.exit_code == 3 and "evil.pth" in r.stderr and "Traceback" not in r.output
    assert not marker.exists()


def test_weights_that_are_not_a_state_dict_and_safetensors(cli, cache, tmp_path):
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.save([1, 2, 3], tmp_path / "list.pth")
    r = cli(*_weights_args(tmp_path, tmp_path / "list.pth"))
    assert r.exit_code == 3 and "list.pth" in r.stderr and "not a state dict" in r.stderr
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    r = cli(*_weights_args(tmp_path, tmp_path / "bad.safetensors"))
    assert r.exit_code == 3 and "bad.safetensors" in r.stderr
    # a real (untrained) state dict in safetensors form loads and reaches the pretrained check
    save_file(torchvision.models.resnet18(weights=None).state_dict(), str(tmp_path / "r18.safetensors"))
    r = cli(*_weights_args(tmp_path, tmp_path / "r18.safetensors"), "--allow-random-weights")
    assert r.exit_code == 0, r.output


def test_two_identical_image_encodes_give_byte_identical_features(cli, cache, tmp_path):
    """Timings (seconds, images/s, GPU peak, device) live in meta.json only, never in features.h5."""
    import json
    import time

    path = datagen.manifest(tmp_path / "m", n=8)
    args = ["--data", path, "--random-init", "--image-size", "32", "--device", "cpu"]
    assert cli("encode", "--run", "a", *args).exit_code == 0
    time.sleep(1.1)                        # HDF5 object times have a resolution of one second
    assert cli("encode", "--run", "b", *args).exit_code == 0
    a, b = (cache / r / "encode" / "features.h5" for r in "ab")
    assert a.read_bytes() == b.read_bytes()
    meta = json.loads((cache / "a" / "encode" / "meta.json").read_text())
    assert "seconds" in json.dumps(meta) and "images_per_s" in json.dumps(meta)
