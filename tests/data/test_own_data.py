"""One's own data as a new user has it: a folder of labels.csv + modality CSVs gets a ready manifest
(`climd manifest DIR`); class and split problems are named with file, line and the likely fix,
before any split; a refused input leaves no run folder; predict names the trained variants and
reads only the run's modalities from a folder (a stray truth.csv is named, not read)."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

IDS = [f"s{i:03d}" for i in range(48)]
LABELS = np.array(["class_0"] * 24 + ["class_1"] * 16 + ["class_2"] * 8)


def own_folder(root, truth=True, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    pd.DataFrame({"sample_id": IDS, "label": LABELS}).to_csv(root / "labels.csv", index=False)
    shift = pd.Series(LABELS).str[-1].astype(int).to_numpy()[:, None]
    for name, d in (("mrna", 6), ("meth", 5), ("mirna", 4)):
        pd.DataFrame(rng.normal(size=(len(IDS), d)) + shift, index=pd.Index(IDS, name="sample_id"),
                     columns=[f"{name}{j}" for j in range(d)]).to_csv(root / f"{name}.csv")
    if truth:
        pd.DataFrame({"sample_id": IDS, "label": LABELS}).to_csv(root / "truth.csv", index=False)
    return root


def with_manifest(cli, root):
    r = cli("manifest", root)
    assert r.exit_code == 0, r.output
    (root / "manifest.yaml").write_text(r.stdout)
    return root / "manifest.yaml"


def test_a_plain_folder_is_answered_with_a_ready_manifest(cli, cache, tmp_path):
    root = own_folder(tmp_path / "mydata")
    r = cli("encode", "--run", "own", "--data", root)
    assert r.exit_code == 3 and "labels.csv" in r.stderr and f"climd manifest {root}" in r.stderr
    assert not (cache / "own").exists()
    spec = yaml.safe_load(with_manifest(cli, root).read_text())
    assert spec["table"] == "labels.csv" and spec["id_column"] == "sample_id" and spec["label_column"] == "label"
    assert set(spec["modalities"]) == {"mrna", "meth", "mirna"}                  # truth.csv is no input ...
    assert "# truth.csv: left out" in (root / "manifest.yaml").read_text()      # ... and says so
    r = cli("encode", "--run", "own", "--data", root / "manifest.yaml")
    assert r.exit_code == 0, r.output


def test_a_label_typo_is_named_before_any_split(cli, cache, tmp_path):
    root = own_folder(tmp_path / "typo")
    table = pd.read_csv(root / "labels.csv")
    table.loc[5, "label"] = "Class_1"
    table.to_csv(root / "labels.csv", index=False)
    manifest = with_manifest(cli, root)
    for extra in ([], ["--val-fraction", "0.2"], ["--resplit", "1"]):
        r = cli("encode", "--run", "typo", "--data", manifest, *extra)
        assert r.exit_code == 3, r.output
        assert f"{root / 'labels.csv'}: class 'Class_1' has 1 sample (line 7)" in r.stderr, r.stderr
        assert "did you mean 'class_1'?" in r.stderr and "Classes with too few" not in r.stderr
    assert not (cache / "typo").exists()


def test_a_bad_split_value_is_named_with_file_and_line(cli, cache, tmp_path):
    root = own_folder(tmp_path / "split")
    table = pd.read_csv(root / "labels.csv")
    table["split"] = ["train"] * 32 + ["test"] * 16
    table.loc[7, "split"] = "tarin"
    table.to_csv(root / "labels.csv", index=False)
    manifest = with_manifest(cli, root)
    assert yaml.safe_load(manifest.read_text())["split_column"] == "split"
    r = cli("encode", "--run", "split", "--data", manifest)
    assert r.exit_code == 3
    assert f"{root / 'labels.csv'}: split column 'split' has 'tarin' on line 9; did you mean 'train'?" in r.stderr


def test_a_refused_value_leaves_no_run_folder(cli, cache, tmp_path):
    root = own_folder(tmp_path / "big")
    frame = pd.read_csv(root / "mrna.csv", index_col=0)
    frame.iloc[3, 2] = 1e300
    frame.to_csv(root / "mrna.csv")
    r = cli("encode", "--run", "big", "--data", with_manifest(cli, root))
    assert r.exit_code == 3 and "mrna.csv" in r.stderr and "s003" in r.stderr
    assert not (cache / "big").exists() and list(cache.iterdir()) == []


@pytest.fixture
def trained(cli, cache, tmp_path):
    root = own_folder(tmp_path / "train")
    assert cli("encode", "--run", "own", "--data", with_manifest(cli, root)).exit_code == 0
    r = cli("train", "--run", "own", "--curriculum", "none", "--epochs", "2")
    assert r.exit_code == 0, r.output
    return root


def test_predict_names_the_trained_variants(cli, trained):
    new = own_folder(trained.parent / "new", seed=1)
    r = cli("predict", "--run", "own", "--variant", "basline", "--data", new)
    assert r.exit_code == 4 and "no trained variant 'basline'; did you mean 'baseline'?" in r.stderr
    assert "baseline" in r.stderr.split("fix:")[1] and "climd train" not in r.stderr


def test_predict_reads_only_the_runs_modalities_and_its_id_message_speaks_of_ids(cli, trained):
    new = own_folder(trained.parent / "new", seed=1)
    (new / "labels.csv").unlink()
    r = cli("predict", "--run", "own", "--variant", "baseline", "--data", new, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert len(out["predictions"]) == len(IDS)
    assert any("ignored truth.csv: not a modality of the run" in n for n in out["notes"]), out["notes"]
    frame = pd.read_csv(new / "meth.csv", index_col=0).iloc[:-2]                # two samples fewer
    frame.to_csv(new / "meth.csv")
    r = cli("predict", "--run", "own", "--variant", "baseline", "--data", new)
    # without labels.csv the first table (meth.csv) gives the ids: the others have 2 ids more
    assert r.exit_code == 3 and "sample ids do not match those of meth.csv (2 id(s) not in meth.csv" in r.stderr
    assert "label" not in r.stderr
