"""Tabular / manifest / CSV input hardening (hardening issue items 4, 7, 10, 12, 13 and the modality
names of item 2): each bad input exits with its code, one message naming the file, no traceback."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from tests import datagen
from tests.conftest import refused


def _fails(result, code, *fragments):
    refused(result, code, *fragments, fix=True)


def _manifest(tmp_path, body=None, **replace):
    path = datagen.manifest(tmp_path / "man", image=False)
    text = path.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text if body is None else body)
    return path


# -- item 2: a modality name is one safe path component --------------------------------------------
def test_unsafe_modality_name_in_a_manifest_is_refused_before_anything_is_written(cli, cache, tmp_path):
    path = _manifest(tmp_path, **{"vitals:": "lab/s:"})
    _fails(cli("encode", "--run", "x", "--data", path), 2, "manifest.yaml", "'lab/s'", "modality name")
    assert not (cache / "x" / "encode").exists()


def test_unsafe_modality_name_from_a_file_name_is_refused(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    (root / "rna.csv").rename(root / "my rna.csv")
    _fails(cli("encode", "--run", "x", "--data", root), 2, "my rna.csv", "'my rna'")


# -- item 10: empty and header-only files ----------------------------------------------------------
@pytest.mark.parametrize("name,content,expect", [
    ("rna.csv", "", "is empty (0 bytes)"), ("target.csv", "", "is empty (0 bytes)"),
    ("rna.csv", "header", "header line but no data rows"), ("target.csv", "header", "header line but no data rows"),
])
def test_empty_or_header_only_tcga_file(cli, cache, tmp_path, name, content, expect):
    root = datagen.tcga(tmp_path / "t")
    path = root / name
    path.write_text(path.read_text().splitlines()[0] + "\n" if content == "header" else "")
    _fails(cli("encode", "--run", "x", "--data", root), 3, str(path), expect)


def test_empty_split_file(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    (tmp_path / "split.csv").write_text("")
    _fails(cli("encode", "--run", "x", "--data", root, "--split-file", tmp_path / "split.csv"), 3,
           "split.csv", "split file is empty")


@pytest.mark.parametrize("target", ["table", "manifest"])
def test_empty_manifest_or_table(cli, cache, tmp_path, target):
    path = _manifest(tmp_path)
    (path if target == "manifest" else path.parent / "samples.csv").write_text("")
    _fails(cli("encode", "--run", "x", "--data", path), 3,
           "manifest.yaml" if target == "manifest" else "samples.csv", "empty")


def test_mogonet_view_with_a_header_row(cli, cache, tmp_path):
    root = datagen.mogonet(tmp_path / "m")
    path = root / "1_tr.csv"
    path.write_text("f0,f1,f2,f3\n" + path.read_text())
    _fails(cli("encode", "--run", "x", "--data", root), 3, "1_tr.csv", "looks like a header", "no header row")


# -- item 13: manifest schema ----------------------------------------------------------------------
@pytest.mark.parametrize("replace,fragments", [
    ({"split_column:": "split_colum:"}, ["unknown top-level key 'split_colum'", "did you mean 'split_column'"]),
    ({"split_column: split": "split_column: split\nlabel_columns: [a]"}, ["'label_columns'", "did you mean 'label_column'"]),
    ({"vitals: {type: tabular, columns: [age, bmi]}": "vitals: {type: tabular, colums: [age, bmi]}"},
     ["modality 'vitals'", "'colums'", "did you mean 'columns'"]),
    ({"table: samples.csv": "table: 5"}, ["'table' must be a text value, found int 5"]),
    ({"vitals: {type: tabular, columns: [age, bmi]}": "vitals: {type: tabular, columns: age}"},
     ["'columns' must be a list"]),
    ({"  vitals: {type: tabular, columns: [age, bmi]}": "  - vitals"}, ["'modalities' must be a non-empty mapping", "list"]),
    ({"  vitals: {type: tabular, columns: [age, bmi]}": "  vitals: 3"}, ["modality 'vitals' must be a mapping"]),
    ({"vitals: {type: tabular, columns: [age, bmi]}": "vitals: {type: tabular, column: age}"},
     ["'column'", "applies to other modality types", "needs 'file'"]),
])
def test_manifest_schema(cli, cache, tmp_path, replace, fragments):
    path = _manifest(tmp_path, **replace)
    _fails(cli("encode", "--run", "x", "--data", path), 3, "manifest.yaml", "invalid manifest", *fragments)


def test_manifest_modalities_as_an_int_and_not_a_mapping(cli, cache, tmp_path):
    path = _manifest(tmp_path)
    text = path.read_text().split("modalities:")[0]
    path.write_text(text + "modalities: 3\n")
    _fails(cli("encode", "--run", "x", "--data", path), 3, "manifest.yaml", "'modalities' must be", "int 3")
    path.write_text("- a\n- b\n")
    _fails(cli("encode", "--run", "x", "--data", path), 3, "manifest.yaml", "must be a mapping")


def _labs(tmp_path, id_first: bool):
    path = _manifest(tmp_path)
    table = pd.read_csv(path.parent / "samples.csv")
    labs = pd.DataFrame({"a": np.arange(12.0), "sample_id": table["sample_id"], "b": np.arange(12.0) ** 2})
    labs = labs[["sample_id", "a", "b"]] if id_first else labs
    labs.to_csv(path.parent / "labs.csv", index=False)
    path.write_text(path.read_text() + "  labs: {type: tabular, file: labs.csv}\n")
    return path


def test_manifest_id_column_of_a_modality_file(cli, cache, tmp_path):
    path = _labs(tmp_path, id_first=False)
    r = cli("encode", "--run", "x", "--data", path)
    _fails(r, 3, "labs.csv", "column 'sample_id' is not numeric", "looks like sample ids",
           "id_column: sample_id")
    assert len(r.stderr) < 800
    path.write_text(path.read_text().replace("file: labs.csv}", "file: labs.csv, id_column: sample_id}"))
    ok = cli("encode", "--run", "x", "--data", path)
    assert ok.exit_code == 0, ok.output
    with h5py.File(cache / "x" / "encode" / "features.h5") as h5:
        assert h5["modalities/labs"].shape == (12, 2)


def test_manifest_unknown_id_column_is_named(cli, cache, tmp_path):
    path = _labs(tmp_path, id_first=True)
    path.write_text(path.read_text().replace("file: labs.csv}", "file: labs.csv, id_column: patient}"))
    _fails(cli("encode", "--run", "x", "--data", path), 3, "labs.csv", "no id column 'patient'")


# -- item 10: ids with spaces through train --------------------------------------------------------
def test_ids_with_spaces_run_from_encode_to_train(cli, cache, tmp_path):
    n = 32
    root = tmp_path / "sp"
    root.mkdir()
    ids = [f"pt {i:02d}" for i in range(n)]
    y = np.array(["a", "b"])[np.arange(n) % 2]
    pd.DataFrame({"pid": ids, "dx": y}).to_csv(root / "samples.csv", index=False)
    x = np.random.default_rng(0).normal(size=(n, 3)) + (y == "b")[:, None]
    pd.DataFrame(x, index=pd.Index(ids, name="pid"), columns=list("abc")).to_csv(root / "labs.csv")
    (root / "m.yaml").write_text("table: samples.csv\nid_column: pid\nlabel_column: dx\nmodalities:\n"
                                 "  labs: {type: tabular, file: labs.csv}\n  more: {type: tabular, file: labs.csv}\n")
    for args in (["encode", "--data", root / "m.yaml"], ["score", "--probe-epochs", "10"], ["fit-dist"],
                 ["schedule", "--epochs", "2"], ["train", "--epochs", "2"]):
        r = cli(*args, "--run", "sp")
        assert r.exit_code == 0, (args, r.output)
    from stages.pipeline.schedule import epoch_file

    assert "pt 0" in (cache / "sp" / "schedule" / epoch_file(2)).read_text()
    assert (cache / "sp" / "train" / "climd" / "seed0" / "meta.json").is_file()


def test_epoch_ids_are_read_per_line(tmp_path):
    from stages.pipeline import schedule
    from stages.store.artifacts import Artifact

    art = Artifact(name="schedule", path=tmp_path, meta={})
    (tmp_path / schedule.epoch_file(1)).write_text("pt 01\npt 02\n")
    assert schedule.epoch_ids(art, 1) == ["pt 01", "pt 02"]


def test_ids_with_a_line_break_are_refused(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    for name in ("target.csv", "rna.csv", "mirna.csv"):
        path = root / name
        path.write_text(path.read_text().replace("TCGA-0003", '"TCGA\n0003"'))
    _fails(cli("encode", "--run", "x", "--data", root), 3, "target.csv", "line break")


# -- item 4: values near the float64 limit ----------------------------------------------------------
def test_finite_values_near_1e308_encode_to_finite_features(cli, cache, tmp_path):
    root = datagen.mogonet(tmp_path / "m")
    for part in ("tr", "te"):
        x = np.loadtxt(root / f"1_{part}.csv", delimiter=",")
        x[:, 0] = np.where(np.arange(len(x)) % 2, 1.7e308, -1.6e308)
        np.savetxt(root / f"1_{part}.csv", x, delimiter=",")
    r = cli("encode", "--run", "x", "--data", root)
    assert r.exit_code == 0, r.output
    with h5py.File(cache / "x" / "encode" / "features.h5") as h5:
        z = h5["modalities/view1"][:]
    assert np.isfinite(z).all() and np.abs(z[:, 0]).max() < 2


def test_a_value_that_cannot_be_standardised_names_file_line_and_column(cli, cache, tmp_path):
    root = datagen.mogonet(tmp_path / "m")
    lines = (root / "2_te.csv").read_text().splitlines()
    lines[1] = "1e300," + lines[1].split(",", 1)[1]
    (root / "2_te.csv").write_text("\n".join(lines) + "\n")
    _fails(cli("encode", "--run", "x", "--data", root), 3, "2_te.csv", "line 2", "column 'f2_0'", "1e+300")
    assert not (cache / "x" / "encode").exists()


def test_standardize_is_unchanged_for_ordinary_data():
    from stages.encoders.tabular import standardize

    x = np.random.default_rng(3).normal(5, 2, size=(30, 4))
    train = np.arange(30) < 20
    z, stats = standardize(x, train)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    assert np.array_equal(z, ((x - mean) / std).astype(np.float32))


# -- item 12: the message names the right file, briefly ---------------------------------------------
def test_infinite_value_in_the_test_file_is_reported_there(cli, cache, tmp_path):
    root = datagen.mogonet(tmp_path / "m")
    lines = (root / "2_te.csv").read_text().splitlines()
    lines[2] = "inf," + lines[2].split(",", 1)[1]
    (root / "2_te.csv").write_text("\n".join(lines) + "\n")
    r = cli("encode", "--run", "x", "--data", root)
    _fails(r, 3, "2_te.csv", "infinite", "line 3", "'f2_0'")
    assert "2_tr.csv" not in r.stderr


def test_empty_training_labels_are_named(cli, cache, tmp_path):
    root = datagen.mogonet(tmp_path / "m")
    (root / "labels_tr.csv").write_text("")
    r = cli("encode", "--run", "x", "--data", root)
    _fails(r, 3, "labels_tr.csv", "empty")
    assert "labels_te.csv" not in r.stderr


@pytest.mark.parametrize("layout", ["tcga", "manifest"])
def test_duplicate_id_in_the_label_table_is_blamed_on_it(cli, cache, tmp_path, layout):
    if layout == "tcga":
        root = datagen.tcga(tmp_path / "t")
        table, data, dup = root / "target.csv", root, "TCGA-0000"
        table.write_text(table.read_text().replace("TCGA-0001,", "TCGA-0000,"))
    else:
        data = _manifest(tmp_path)
        table, dup = data.parent / "samples.csv", "s00"
        table.write_text(table.read_text().replace("s01,", "s00,"))
    r = cli("encode", "--run", "x", "--data", data)
    _fails(r, 3, table.name, f"duplicate sample id '{dup}'", "lines 2, 3")
    assert "rna.csv" not in r.stderr and "mirna.csv" not in r.stderr


@pytest.mark.parametrize("sep,word", [(";", "semicolons"), ("\t", "tabs")])
def test_wrong_delimiter_gets_a_hint_and_a_short_message(cli, cache, tmp_path, sep, word):
    root = datagen.tcga(tmp_path / "t", mods={"rna": 400})
    pd.read_csv(root / "rna.csv").to_csv(root / "rna.csv", sep=sep, index=False)
    r = cli("encode", "--run", "x", "--data", root)
    _fails(r, 3, "rna.csv", f"separated by {word}", "comma-separated")
    assert len(r.stderr) < 600


def test_long_values_are_clipped_in_messages(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    rna = pd.read_csv(root / "rna.csv", index_col=0)
    rna.index = [("X" * 3000 + str(i)) if i < 5 else v for i, v in enumerate(rna.index)]
    rna.to_csv(root / "rna.csv")
    r = cli("encode", "--run", "x", "--data", root)
    _fails(r, 3, "rna.csv", "sample ids do not match")
    assert len(r.stderr) < 1000


# -- item 7: a run's data set is not swapped silently ----------------------------------------------
def test_encode_refuses_to_swap_a_runs_data_without_force(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    assert cli("encode", "--run", "brca", "--data", root).exit_code == 0
    for args in ([], ["--data", _manifest(tmp_path)]):
        r = cli("encode", "--run", "brca", *args)
        _fails(r, 3, "already holds", str(root), "--force", f"--data {root.resolve()}")
    assert json.loads((cache / "brca" / "encode" / "meta.json").read_text())["inputs"]["data"]["path"] == str(root)
    same = cli("encode", "--run", "brca", "--data", root, "--seed", "1")      # same data, other options: fine
    assert same.exit_code == 0, same.output
    forced = cli("encode", "--run", "brca", "--force")
    assert forced.exit_code == 0, forced.output


def test_a_damaged_encode_meta_json_still_guards_the_data_and_hints_its_path(cli, cache, tmp_path):
    root = datagen.tcga(tmp_path / "t")
    assert cli("encode", "--run", "brca", "--data", root).exit_code == 0
    (cache / "brca" / "encode" / "meta.json").write_text("[]")
    _fails(cli("encode", "--run", "brca"), 3, "already holds", str(root))
    _fails(cli("score", "--run", "brca"), 5, "meta.json", f"--data {root}", "--force")


# -- the corpus script -----------------------------------------------------------------------------
def test_broken_inputs_script_runs_cases_and_reports_them(tmp_path, capsys):
    from scripts import broken_inputs

    code = broken_inputs.main([str(tmp_path / "corpus"), "--only",
                               "ok-manifest,semicolon-csv,manifest-key-typo,mogonet-inf-in-test"])
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "corpus" / "results.json").read_text())
    assert code == 0, out
    assert [r["exit"] for r in rows] == [0, 3, 3, 3] and not any(r["traceback"] for r in rows)
    assert "semicolon-csv" in out and "1_te.csv" in out
    assert json.loads((tmp_path / "corpus" / "semicolon-csv" / "expected.json").read_text())["exit_code"] == 3


def test_the_scaler_round_trips_through_its_group_and_transforms_new_rows_as_encode_did(tmp_path):
    """Fit on the training rows only; the saved state (h5 group) transforms any rows to exactly what
    the fitted object gives, including the overflow-scaled column and the fill of a NaN."""
    import h5py

    from stages.encoders.tabular import TabularScaler

    x = np.array([[1.0, 1e307, np.nan], [3.0, -1e307, 2.0], [5.0, 1e307, 4.0], [100.0, 0.0, np.nan]])
    train = np.array([True, True, True, False])
    fitted = TabularScaler("median").fit(x, train)
    np.testing.assert_allclose(fitted.mean_[0], 3.0) and np.testing.assert_allclose(fitted.fill_[2], 3.0)
    assert fitted.scale_[1] == 1e307 and fitted.scale_[0] == 5.0     # each column by its largest training value
    z = fitted.transform(x)
    with h5py.File(tmp_path / "f.h5", "w") as h5:
        fitted.save(h5.create_group("p"))
    with h5py.File(tmp_path / "f.h5", "r") as h5:
        loaded = TabularScaler.load(h5["p"])
    np.testing.assert_array_equal(loaded.transform(x), z)
    # by hand: column 0 has training mean 3, std sqrt(8/3); row 4 (not in training) -> (100 - 3)/std
    assert z[3, 0] == pytest.approx((100 - 3) / np.sqrt(8 / 3), rel=1e-6)
    assert z[0, 2] == z[3, 2] == 0.0                                    # NaN -> fill 3 = the training mean
    assert z[1, 1] == pytest.approx(-np.sqrt(2), rel=1e-6)     # 1e307 * (1, -1, 1): mean 1/3, std sqrt(8)/3
    np.testing.assert_allclose(fitted.std_[1], 1e307 * np.sqrt(8) / 3, rtol=1e-12)
