"""Sharded encode: shards + merge equal an unsharded encode bitwise; the merge names the shard that
does not fit (missing, other options, other data, rows twice or not at all)."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from stages.pipeline import shards as sharding
from tests import datagen

FAST = ["--random-init", "--image-size", "32", "--device", "cpu", "--image-stages", "--stage-grid", "2"]


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda k, v: out.__setitem__(k, v[...]) if isinstance(v, h5py.Dataset) else None)
    return out


@pytest.fixture
def data(tmp_path):
    return datagen.manifest(tmp_path / "m", n=10, image=True)


def _shards(cli, data, run, count, batch=3, extra=()):
    for i in range(count):
        r = cli("encode", "--run", run, "--data", data, "--batch-size", batch, "--shard", f"{i}/{count}", *FAST, *extra)
        assert r.exit_code == 0, r.output


def test_rows_cover_every_row_once_in_whole_batches():
    for n in (1, 7, 10, 33, 100):
        for batch in (1, 3, 8, 64):
            for count in (1, 2, 3, 5, 9):
                spans = [sharding.rows(n, batch, sharding.Shard(i, count)) for i in range(count)]
                assert spans[0][0] == 0 and spans[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
                assert all(start % batch == 0 for start, _ in spans)


def test_shards_then_merge_equal_an_unsharded_encode(cli, cache, data):
    _shards(cli, data, "sh", 3)
    r = cli("encode", "--run", "sh", "--data", data, "--batch-size", "3", "--merge", "--shards", "3", *FAST, "--json")
    assert r.exit_code == 0, r.output
    merged = json.loads(r.stdout)
    assert [m["shard"] for m in merged["summary"]["merged_from"]] == [f"encode.shard-{i}-of-3" for i in range(3)]
    assert merged["summary"]["modalities"]["photo"]["shards"] == 3
    r = cli("encode", "--run", "whole", "--data", data, "--batch-size", "3", *FAST, "--json")
    whole = json.loads(r.stdout)
    assert whole["key"] == merged["key"]                # the same artifact: downstream stages cannot tell
    a, b = _datasets(cache / "sh/encode/features.h5"), _datasets(cache / "whole/encode/features.h5")
    assert sorted(a) == sorted(b) and "stages/photo/s3" in a and "modalities/vitals" in a
    for k in a:
        assert np.array_equal(a[k], b[k]), k            # bitwise, tabular statistics included
    with h5py.File(cache / "sh/encode.shard-1-of-3/shard.h5", "r") as h5:
        assert list(h5.attrs["rows"]) == [3, 6] and h5["modalities/photo"].shape == (3, 1280)
        assert "vitals" not in h5["modalities"]            # tabular is done by the merge, over all rows
    # an unsharded encode in the merged run reuses the merged artifact
    r = cli("encode", "--run", "sh", "--data", data, "--batch-size", "3", *FAST)
    assert "reused" in r.stderr


def test_merge_names_the_missing_shard(cli, cache, data):
    _shards(cli, data, "gap", 1)                      # shard 0 of 1 exists, not those of 3
    cli("encode", "--run", "gap", "--data", data, "--batch-size", "3", "--shard", "0/3", *FAST)
    r = cli("encode", "--run", "gap", "--data", data, "--batch-size", "3", "--merge", "--shards", "3", *FAST)
    assert r.exit_code == 4 and "shard 1/3 (encode.shard-1-of-3) is missing" in r.stderr, r.stderr
    assert "--shard 1/3" in r.stderr


def test_merge_refuses_other_encoder_options_other_data_and_rows_twice(cli, cache, data):
    _shards(cli, data, "odd", 2)
    cli("encode", "--run", "odd", "--data", data, "--batch-size", "3", "--shard", "1/2", *FAST[:2], "40",
        *FAST[3:], "--force")
    r = cli("encode", "--run", "odd", "--data", data, "--batch-size", "3", "--merge", "--shards", "2", *FAST)
    assert r.exit_code == 3 and "shard 1/2 (encode.shard-1-of-2)" in r.stderr and "image.size: shard 40, merge 32" in r.stderr, r.stderr
    # batch size 4 moves the boundary to row 4: rows 4-5 are in both shards
    cli("encode", "--run", "odd", "--data", data, "--batch-size", "4", "--shard", "1/2", *FAST, "--force")
    r = cli("encode", "--run", "odd", "--data", data, "--batch-size", "3", "--merge", "--shards", "2", *FAST)
    assert r.exit_code == 3 and "rows 4-5 are in two shards" in r.stderr, r.stderr
    # the table changed after the shards were made
    table = data.parent / "samples.csv"
    table.write_text(table.read_text().replace(",5", ",6", 1))
    r = cli("encode", "--run", "odd", "--data", data, "--batch-size", "3", "--merge", "--shards", "2", *FAST)
    assert r.exit_code == 3 and "shard 0/2" in r.stderr and "other data" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["--shard", "2/2"], ["--shard", "a/b"], ["--merge"], ["--shards", "2"],
                                  ["--shard", "0/2", "--merge", "--shards", "2"], ["--merge", "--shards", "0"]])
def test_bad_shard_options_are_usage_errors(cli, cache, data, args):
    r = cli("encode", "--run", "bad", "--data", data, *args, *FAST)
    assert r.exit_code == 2 and "shard" in r.stderr, r.stderr


def test_sweep_runs_the_shards_as_an_array_then_one_merge(cli, cache):
    from tests.conftest import ROOT

    r = cli("sweep", ROOT / "examples/grids/derm7pt-shards.yaml", "--executor", "slurm", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    arrays = json.loads(r.stdout)["arrays"]
    assert [a["stage"] for a in arrays] == ["encode-shards", "encode-merge", "score", "fit-dist", "schedule", "train"]
    assert [t["does"] for t in arrays[0]["tasks"]] == [[f"derm-shards shard {i}/4"] for i in range(4)]
    assert arrays[1]["tasks"] == [{"task": 0, "does": ["derm-shards"]}]
    assert arrays[1]["parameters"]["slurm_dependency"] == "afterok:<array 1: encode-shards>"


def test_sweep_task_builds_one_shard_and_the_merge_task_merges(cache, data):
    from stages.sweep.run import build_upstream
    from stages.sweep.slurm import shard_tasks
    from stages.sweep.upstream import upstream_command

    opts = {"data": str(data), "shards": 2, "batch-size": 3, "random-init": True, "image-size": 32, "device": "cpu"}
    tasks = shard_tasks({"kind": "upstream", "stage": "encode", "run": "sw", "invocations": [opts]})
    assert [t["label"] for t in tasks] == ["sw shard 0/2", "sw shard 1/2"]
    built = build_upstream(cache, "sw", [("encode", tasks[1]["invocations"][0])])
    assert built[0]["path"].endswith("encode.shard-1-of-2") and not (cache / "sw/encode").exists()
    assert upstream_command("encode", "sw", tasks[1]["invocations"][0]).startswith("climd encode --run sw --shard 1/2")
    built = build_upstream(cache, "sw", [("encode", opts)])          # builds the missing shard 0, then merges
    meta = json.loads((cache / "sw/encode/meta.json").read_text())
    assert built[0]["path"].endswith("/encode") and len(meta["summary"]["merged_from"]) == 2
    assert meta["command"].startswith("climd encode --run sw --merge --shards 2")


def test_synthetic_image_set_is_a_manifest_climd_reads(tmp_path):
    import subprocess
    import sys

    from stages.data.adapters import DataOptions, load_dataset
    from tests.conftest import ROOT, shared

    source = shared("Derm7pt_plus")
    out = tmp_path / "syn"
    r = subprocess.run([sys.executable, str(ROOT / "scripts/make_synthetic_images.py"), "--n", "30", "--out", str(out),
                        "--source", str(source), "--workers", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ds = load_dataset(out / "manifest.yaml", DataOptions())
    assert ds.n == 30 and ds.modalities["derm"].kind == "image"
    from PIL import Image

    sides = {Image.open(p).size for p in ds.modalities["derm"].values}
    assert all(224 <= w == h <= 448 for w, h in sides) and len(sides) > 1
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_synthetic_images

    assert load_dataset(make_synthetic_images.subset(out, 20), DataOptions()).n == 20
