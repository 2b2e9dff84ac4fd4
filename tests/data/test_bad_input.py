"""Every bad-input case: one clear message naming the file and the fix, and a non-zero exit code."""
import numpy as np
import pandas as pd

from tests import datagen
from tests.conftest import refused


_fails = refused


def test_missing_data_path(cli, cache, tmp_path):
    _fails(cli("encode", "--run", "x", "--data", tmp_path / "nope"), 3, "does not exist", "fix:")


def test_missing_view_file(cli, cache, tmp_path):
    root = datagen.mogonet(tmp_path / "m")
    (root / "2_te.csv").unlink()
    _fails(cli("encode", "--run", "x", "--data", root), 3, "missing view 2 test features", "2_te.csv", "fix:")


def test_missing_split_file(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    _fails(cli("encode", "--run", "x", "--data", root, "--split-file", tmp_path / "s.csv"), 3,
           "split file", "s.csv", "does not exist")


def test_mismatched_ids_across_modalities(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    rna = pd.read_csv(root / "rna.csv", index_col=0)
    rna.index = [i if n else "TCGA-XXXX" for n, i in enumerate(rna.index)]
    rna.to_csv(root / "rna.csv")
    _fails(cli("encode", "--run", "x", "--data", root), 3, "rna.csv", "sample ids do not match",
           "TCGA-0000", "TCGA-XXXX", "fix:")


def test_mogonet_row_count_mismatch(cli, cache, tmp_path):
    root = datagen.mogonet(tmp_path / "m")
    lines = (root / "1_tr.csv").read_text().splitlines()
    (root / "1_tr.csv").write_text("\n".join(lines[:-1]) + "\n")
    _fails(cli("encode", "--run", "x", "--data", root), 3, "1_tr.csv", "10 rows but labels_tr.csv has 11")


def test_nan_is_refused_unless_imputation_is_asked_for(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    rna = pd.read_csv(root / "rna.csv", index_col=0)
    rna.iloc[2, 1] = np.nan
    rna.to_csv(root / "rna.csv")
    _fails(cli("encode", "--run", "x", "--data", root), 3, "rna.csv", "1 NaN", "--impute mean|median")
    ok = cli("encode", "--run", "x", "--data", root, "--impute", "mean")
    assert ok.exit_code == 0, ok.output


def test_infinite_values(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    rna = pd.read_csv(root / "rna.csv", index_col=0)
    rna.iloc[0, 0] = np.inf
    rna.to_csv(root / "rna.csv")
    _fails(cli("encode", "--run", "x", "--data", root, "--impute", "mean"), 3, "rna.csv", "infinite")


def test_non_numeric_column(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    rna = pd.read_csv(root / "rna.csv", index_col=0)
    rna["rna_1"] = rna["rna_1"].astype(object)
    rna.iloc[3, 1] = "high"
    rna.to_csv(root / "rna.csv")
    _fails(cli("encode", "--run", "x", "--data", root), 3, "rna.csv", "'rna_1' is not numeric", "'high'")


def test_class_with_too_few_training_samples(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t", counts=(8, 6, 1))
    split = pd.DataFrame({"sample_id": [f"TCGA-{i:04d}" for i in range(15)],
                          "split": ["train"] * 6 + ["test"] * 2 + ["train"] * 4 + ["test"] * 2 + ["train"]})
    split.to_csv(tmp_path / "split.csv", index=False)
    _fails(cli("encode", "--run", "x", "--data", root, "--split-file", tmp_path / "split.csv"), 3,
           "target.csv", "class '2' has 1 sample", "at least 2")     # named before any split


def test_unknown_label_in_test_split(cli, cache, tmp_path):
    root = datagen.mogonet(tmp_path / "m")
    np.savetxt(root / "labels_te.csv", [0, 0, 0, 1, 1, 7], fmt="%.1f")
    _fails(cli("encode", "--run", "x", "--data", root), 3, "labels_te.csv", "unknown label(s) ['7']")


def test_unknown_label_against_manifest_classes(cli, cache, tmp_path):
    path = datagen.manifest(tmp_path / "m", image=False, classes=["benign", "dysplastic"])
    _fails(cli("encode", "--run", "x", "--data", path), 3, "samples.csv", "unknown label(s) ['malignant']")


def test_empty_label(cli, cache, tmp_path):
    path = datagen.manifest(tmp_path / "m", image=False)
    table = pd.read_csv(path.parent / "samples.csv")
    table.loc[3, "diagnosis"] = np.nan
    table.to_csv(path.parent / "samples.csv", index=False)
    _fails(cli("encode", "--run", "x", "--data", path), 3, "samples.csv", "1 empty label(s), first at row 3")


def test_unreadable_image(cli, cache, tmp_path):
    path = datagen.manifest(tmp_path / "m", n=8)
    (path.parent / "img" / "2.png").write_bytes(b"not a png at all")
    _fails(cli("encode", "--run", "x", "--data", path, "--image-encoder", "resnet18", "--allow-random-weights"),
           3, "cannot read image", "2.png", "fix:")


def test_missing_image(cli, cache, tmp_path):
    path = datagen.manifest(tmp_path / "m", n=6)
    (path.parent / "img" / "4.png").unlink()
    _fails(cli("encode", "--run", "x", "--data", path), 3, "image 'img/4.png' not found")


def test_unknown_format_and_modality(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    _fails(cli("encode", "--run", "x", "--data", root, "--format", "parquet"), 2, "unknown --format")
    _fails(cli("encode", "--run", "x", "--data", root, "--modalities", "rna,protein"), 2,
           "unknown modality ['protein']", "choose from")


def test_later_stage_without_encode(cli, cache):
    _fails(cli("inspect", "encode", "--run", "nothing-here"), 4, "no artifact")
