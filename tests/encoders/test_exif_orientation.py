"""EXIF orientation: phones and cameras store a rotated sensor image plus a tag saying how to turn
it; the encoders see the picture upright (Pillow's ImageOps.exif_transpose is the reference), on the
PIL path, on the GPU decode path (run here on CPU tensors) and end to end through `encode`."""
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from stages.encoders import image
from stages.encoders import image_batch
from stages.encoders import pixels

from tests import datagen


def _save(path, px, turn):
    img = Image.fromarray(px)
    exif = img.getexif()
    exif[pixels.ORIENTATION_TAG] = turn
    img.save(path, exif=exif, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def _stored_as(upright, turn):
    """The pixels a camera stores for an upright picture, given the tag it writes: the inverse of
    the transpose that the tag asks for (worked out per tag, not taken from the code under test)."""
    inverse = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
               6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}
    img = Image.fromarray(upright)
    return np.asarray(img.transpose(inverse[turn]) if turn > 1 else img)


@pytest.mark.parametrize("turn", range(1, 9))
def test_open_rgb_turns_every_orientation_upright_like_pillow(tmp_path, turn):
    px = np.random.default_rng(turn).integers(0, 256, (5, 7, 3), dtype=np.uint8)   # not square
    path = _save(tmp_path / "a.png", px, turn)
    with Image.open(path) as img:
        want = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    got = np.asarray(pixels.open_rgb(path))
    np.testing.assert_array_equal(got, want)
    assert got.shape == ((7, 5, 3) if turn >= 5 else (5, 7, 3))
    np.testing.assert_array_equal(np.asarray(pixels.open_rgb(path, exif=False)), px)     # as stored
    # a picture stored the way a camera stores it comes back as the upright picture
    upright = np.random.default_rng(10 + turn).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    stored = _save(tmp_path / "b.png", _stored_as(upright, turn), turn)
    np.testing.assert_array_equal(np.asarray(pixels.open_rgb(stored)), upright)


@pytest.mark.parametrize("turn", range(1, 9))
def test_orient_tensor_equals_pillows_transpose(tmp_path, turn):
    px = np.random.default_rng(turn).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = _save(tmp_path / "a.png", px, turn)
    with Image.open(path) as img:
        want = torch.from_numpy(np.asarray(ImageOps.exif_transpose(img).convert("RGB")).copy()).permute(2, 0, 1)
    got = pixels.orient_tensor(torch.from_numpy(px.copy()).permute(2, 0, 1), turn)
    assert torch.equal(got, want)


def test_a_damaged_exif_block_counts_as_no_orientation(tmp_path, caplog):
    class Broken:
        def getexif(self):
            raise SyntaxError("not a TIFF header")

    assert pixels.orientation(Broken(), "x.jpg") == 1
    assert "x.jpg" in caplog.text
    assert pixels.jpeg_orientation(b"\xff\xd8\xff garbage") == 1


def _gradient(h=40, w=56):
    base = np.linspace(0, 220, w)[None, :, None] + np.linspace(0, 30, h)[:, None, None]
    return np.clip(base + np.zeros((h, w, 3)), 0, 255).astype(np.uint8)


def test_gpu_path_turns_jpegs_upright_like_the_pil_loader(tmp_path):
    tiny = image.build("efficientnet-lite0", None, size=16, random_init=True)
    upright = _gradient()
    paths = [_save(tmp_path / f"{t}.jpg", _stored_as(upright, t), t) for t in (1, 6, 3, 8)]
    jpegs, others = image_batch.read_batch(paths, tiny)
    assert not others and [turn for *_, turn in jpegs] == [1, 6, 3, 8]
    x = torch.stack([t for _, t in sorted(image_batch.decode_jpegs(jpegs, tiny, "cpu"), key=lambda p: p[0])])
    ref = torch.stack([image.load_image(p, tiny) for p in paths])
    for k in range(4):
        assert (x[k] - x[0]).abs().mean() < 0.05, k           # every file shows the same upright picture
        assert (x[k] - ref[k]).abs().mean() < 0.03, k          # and the PIL loader agrees
    # the test can fail: ignoring the tag leaves the rotated files visibly different
    as_stored = image.build("efficientnet-lite0", None, size=16, random_init=True, exif_orientation=False)
    jpegs, _ = image_batch.read_batch(paths, as_stored)
    y = torch.stack([t for _, t in sorted(image_batch.decode_jpegs(jpegs, as_stored, "cpu"), key=lambda p: p[0])])
    assert all((y[k] - y[0]).abs().mean() > 0.3 for k in (1, 2, 3))


def test_encode_sees_a_tagged_photo_like_its_upright_twin(cli, cache, tmp_path):
    """End to end (pretrained EfficientNet-Lite0): a photo stored rotated with its EXIF tag gives
    the features of the same photo stored upright; --no-exif-orientation keeps it as stored, is
    recorded, and is another cache key."""
    import h5py

    root = datagen.manifest(tmp_path / "m", n=8).parent
    upright = _gradient(32, 48)
    Image.fromarray(upright).save(root / "img" / "0.png")
    _save(root / "img" / "1.png", _stored_as(upright, 6), 6)
    args = ["--data", root / "manifest.yaml", "--image-size", "32", "--device", "cpu"]
    assert (r := cli("encode", "--run", "up", *args)).exit_code == 0, r.output
    assert (r := cli("encode", "--run", "raw", *args, "--no-exif-orientation")).exit_code == 0, r.output
    feats, metas = {}, {}
    for run in ("up", "raw"):
        with h5py.File(cache / run / "encode" / "features.h5", "r") as h5:
            feats[run] = h5["modalities/photo"][...]
        metas[run] = json.loads((cache / run / "encode" / "meta.json").read_text())
    np.testing.assert_allclose(feats["up"][0], feats["up"][1], rtol=1e-4, atol=1e-4)
    assert np.abs(feats["raw"][0] - feats["raw"][1]).max() > 0.1
    assert metas["up"]["params"]["image"]["exif_orientation"] is True
    assert metas["raw"]["params"]["image"]["exif_orientation"] is False
    assert metas["up"]["key"] != metas["raw"]["key"]


def test_a_sweep_records_the_opt_out_as_a_flag():
    from stages.sweep.upstream import upstream_command

    assert "--no-exif-orientation" in upstream_command("encode", "r", {"exif-orientation": False})
    assert "exif" not in upstream_command("encode", "r", {"exif-orientation": True})
