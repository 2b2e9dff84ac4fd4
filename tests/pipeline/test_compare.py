"""climd compare: own data (three omics CSV files + labels) -> the verdict; a rerun reuses everything;
the panel as a file (--write-panel round trip, typos named by line); the dry-run plan."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from stages.compare import panel as panels
from stages.errors import UsageError
from tests import datagen


def test_compare_own_data_then_rerun_reuses_everything(tmp_path, cache, cli):
    manifest = datagen.omics_manifest(tmp_path / "study")
    out = tmp_path / "verdict"
    args = ("compare", "--data", manifest, "--replicates", "3", "--seeds", "1", "--panel", "quick", "--out", out)
    first = cli("--no-progress", *args, "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["trained"] == 15 and summary["reused"] == 0          # 5 rows x 1 lr x 3 replicates
    assert summary["runs"] == ["study-r0", "study-r1", "study-r2"]
    for name in ("report.md", "chosen.csv", "paired_vs_baseline+lr0.001.csv", "paired_vs_noncurriculum-best.csv"):
        assert (out / name).is_file(), name
    chosen = pd.read_csv(out / "chosen.csv")
    # one choice per replicate for each choice; every pick is a candidate of its group
    assert set(chosen.name) == {"curriculum-best", "noncurriculum-best"}
    assert len(chosen) == 6 and chosen.chosen.notna().all()
    cur = chosen[chosen.name == "curriculum-best"].chosen
    assert set(cur) <= {"climd+lr0.001", "climd+steps+lr0.001"}
    assert set(chosen[chosen.name == "noncurriculum-best"].chosen) <= {"baseline+lr0.001", "baseline+wce+lr0.001",
                                                                       "logreg-balanced"}
    # the chosen row's test metrics are the chosen candidate's, replicate by replicate
    runs = pd.read_csv(out / "runs.csv")
    for r in chosen.itertuples():
        virtual = runs[(runs.variant == r.name) & (runs.run == r.run)].f1_macro.item()
        real = runs[(runs.variant == r.chosen) & (runs.run == r.run)].f1_macro.item()
        assert virtual == real
    paired = pd.read_csv(out / "paired_vs_noncurriculum-best.csv")
    assert "curriculum-best" in set(paired.variant) and (paired.n_pairs == 3).all()
    assert {"delta", "p_worse", "p_equivalent", "p_better", "decision"} <= set(paired.columns)   # issue 22's decisions
    assert set(paired.decision) <= {"better", "equivalent", "worse", "inconclusive"}
    diffs = pd.read_csv(out / "differences.csv")
    assert len(diffs[(diffs.variant == "curriculum-best") & (diffs.reference == "noncurriculum-best")]) == 3
    text = (out / "report.md").read_text()
    assert "curriculum-best" in text and "noncurriculum-best" in text and "climd compare" in text

    mtimes = {p: p.stat().st_mtime_ns for p in cache.rglob("meta.json")}
    mtimes[out / "report.md"] = (out / "report.md").stat().st_mtime_ns     # the verdict too is reused
    again = cli("--no-progress", *args, "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["trained"] == 0 and summary["reused"] == 15 and summary["upstream_built"] == 0
    # nothing trained, built or rewritten (its time against the first run is measured by `make bench`,
    # never timed in a unit test)
    assert {p: p.stat().st_mtime_ns for p in [*cache.rglob("meta.json"), out / "report.md"]} == mtimes
    (out / "report.md").write_text("edited")                 # a changed report is written again
    assert cli("--no-progress", *args).exit_code == 0 and "curriculum-best" in (out / "report.md").read_text()
    assert pd.read_csv(out / "chosen.csv").equals(chosen)

    # a replica lost in flight (its folders gone, as after kill -9 before it finished): only it is redone
    import shutil

    for folder in ("train", "eval-valid", "eval-test"):
        shutil.rmtree(cache / "study-r1" / folder / "climd+steps+lr0.001")
    third = cli("--no-progress", *args, "--json")
    assert third.exit_code == 0, third.output
    summary = json.loads(third.stdout)
    assert summary["trained"] == 1 and summary["reused"] == 14


def test_write_panel_round_trip_and_typos_named_by_line(tmp_path, cli):
    path = tmp_path / "panel.yaml"
    result = cli("compare", "--write-panel", path)
    assert result.exit_code == 0, result.output
    default = panels.resolve(str(path))
    builtin = panels.builtin("default")
    assert [(r.name, r.group, r.lrs) for r in default.rows] == [(r.name, r.group, r.lrs) for r in builtin.rows]
    groups = {r.group for r in default.rows}
    assert groups == {"curriculum", "non-curriculum", "control"}
    assert next(r for r in default.rows if r.name == "climd").variant_names() == \
        ["climd", "climd+lr0.0003", "climd+lr0.001", "climd+lr0.003"]
    assert next(r for r in default.rows if r.name == "logreg").variant_names() == ["logreg"]   # no lr grid
    text = path.read_text()
    line = text.splitlines().index("  - climd.oof") + 1
    path.write_text(text.replace("  - climd.oof\n", "  - climd.ooof\n"))
    with pytest.raises(UsageError) as exc:
        panels.resolve(str(path))
    assert f"line {line}" in exc.value.message and "climd.ooof" in exc.value.message
    assert "did you mean 'climd.oof'" in exc.value.fix
    bad = cli("compare", "--panel", path, "--dry-run")
    assert bad.exit_code == 2 and f"line {line}" in bad.output


@pytest.mark.parametrize("text, words", [
    ("lr: [1e-3]\ncurriculum: [climd]\nnon-curriculum: [baseline]\nreferense: baseline\n", ["line 4", "reference"]),
    ("curriculum: [climd]\nnon-curriculum:\n  - {name: mine, train: {curriculum: none, los: wce}}\n",
     ["line 3", "did you mean 'loss'"]),
    ("curriculum: [climd]\nnon-curriculum: [baseline, baseline]\n", ["already made"]),
    ("curriculum: [climd]\nnon-curriculum: [baseline+wce]\n", ["reference 'baseline' is not a row"]),
])
def test_panel_mistakes(text, words):
    with pytest.raises(UsageError) as exc:
        panels.load_text(text, "p.yaml")
    said = exc.value.message + " " + (exc.value.fix or "")
    assert all(w in said for w in words), said


def test_panel_variant_names_are_the_code_s_names():
    """A row's variant names are exactly what `climd train` names the same options."""
    from dataclasses import asdict

    from stages.compare.protocol import Setup, cells
    from stages.pipeline.train import TrainOptions

    p = panels.builtin("default")
    s = Setup(data=None, name="x", replicates=1, seeds=[0], panel=p, cache_dir=None, out=None)
    for _, row_cells in cells(s):
        for c in row_cells:
            fields = {k: v for k, v in c.options.items()}
            assert TrainOptions(**fields).variant_name() == c.variant, c.variant
            assert asdict(TrainOptions(**fields)) == c.options


def test_dry_run_json_lists_tasks_with_stage(tmp_path, cache, cli):
    manifest = datagen.omics_manifest(tmp_path / "study")
    result = cli("compare", "--data", manifest, "--replicates", "2", "--panel", "quick", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.stdout)["tasks"]
    assert all("stage" in t for t in tasks)
    assert [t["stage"] for t in tasks].count("replicate") == 2 and "encode" not in [t["stage"] for t in tasks]
    assert sum(t["count"] for t in tasks if t["stage"] == "train") == 10
    assert not (cache / "study-r0").exists()                     # a dry run builds nothing


def test_images_are_encoded_once_per_data_set(tmp_path, cache, cli):
    """Two replicates of an image data set: one image encode (encode.shared); each replicate's encode
    copies its features, keyed as a plain `climd encode` of that replicate, which reuses it, and whose
    features are the same numbers."""
    import h5py
    import numpy as np

    from stages.pipeline import encode_shared
    from stages.store.artifacts import RunStore
    from stages.sweep.upstream import run_upstream

    manifest = datagen.manifest(tmp_path / "img", n=24, image=True)
    fast = {"random-init": True, "image-size": 32, "device": "cpu", "batch-size": 8}
    dry = cli("compare", "--data", manifest, "--replicates", "2", "--panel", "quick", "--dry-run", "--json",
              *[x for k, v in fast.items() for x in ("--encode-option", f"{k}={v}")])
    assert dry.exit_code == 0, dry.output
    stages = [t["stage"] for t in json.loads(dry.stdout)["tasks"]]
    assert stages.count("encode") == 1 and stages.count("replicate") == 2
    built = []
    for k in (0, 1):
        opts = {"data": str(manifest), "resplit": k, "seed": k, "val-fraction": 0.2, "shared-run": "img-data", **fast}
        artifact, reused = run_upstream(RunStore(cache, f"img-r{k}"), "encode", opts)
        assert not reused
        built.append(artifact)
    shared = RunStore(cache, "img-data").load(encode_shared.NAME)
    assert shared.summary["n"] == 24 and built[1].summary["features_from"]["key"] == shared.key
    assert cli("-q", "status", "--run", "img-*").exit_code == 0          # the data set's run is not "missing"
    # the same replicate, encoded the plain way: the same key (so it is reused) and the same features
    plain = ["--data", manifest, "--resplit", "1", "--seed", "1", "--val-fraction", "0.2", "--random-init",
             "--image-size", "32", "--device", "cpu", "--batch-size", "8"]
    again = cli("encode", "--run", "img-r1", *plain, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["reused"], again.output
    fresh = cli("encode", "--run", "other", *plain, "--json")
    assert json.loads(fresh.stdout)["key"] == built[1].key
    with h5py.File(built[1].path / "features.h5", "r") as a, h5py.File(cache / "other/encode/features.h5", "r") as b:
        for name in b["modalities"]:
            assert np.array_equal(a["modalities"][name][...], b["modalities"][name][...]), name
        assert list(a["split"].asstr()[...]) == list(b["split"].asstr()[...])
