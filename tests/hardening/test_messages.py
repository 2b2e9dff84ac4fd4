"""Item 8: messages that were wrong: a live training called "interrupted", a replicate missing from
both train and eval named nowhere, a MOGONET training folder taken for TCGA, fix hints pointing at the
cache folder an artifact was built in."""
import json
import shutil

from stages.store.lease import Lease
from stages.store.artifacts import RunStore

from ..conftest import ROOT

TRAIN = ["train", "--run", "ros", "--curriculum", "none", "--epochs", "2"]


def test_a_live_training_is_named_live_by_evaluate_and_report(cli, ros):
    assert cli(*TRAIN, "--seeds", "0-1", "--variant", "v").exit_code == 0
    assert cli("evaluate", "--run", "ros", "--variant", "v").exit_code == 0
    busy = ros / "train" / "v" / "seed2"
    busy.mkdir()
    with Lease(busy, purpose="a test training it"):
        r = cli("evaluate", "--run", "ros", "--variant", "v", "--seed", "2")
        said = " ".join(r.stderr.split())
        assert r.exit_code == 5 and "being written now by pid" in said and "interrupted" not in said, r.output
        assert "wait for it to finish" in said
        r = cli("report", "--run", "ros")
        said = " ".join(r.stderr.split())
        assert "being written now by pid" in said and "wait for" in said and "rerun the train" not in said, r.output


def test_a_replicate_missing_from_train_and_eval_is_named(cli, ros, tmp_path):
    assert cli(*TRAIN, "--seeds", "0-2", "--variant", "a").exit_code == 0
    assert cli(*TRAIN, "--seeds", "0-1", "--variant", "b").exit_code == 0
    assert cli("evaluate", "--run", "ros").exit_code == 0
    r = cli("report", "--run", "ros", "--out", tmp_path / "rep")
    said = " ".join(r.stderr.split())
    assert r.exit_code == 0 and "missing replicate: b seed 2 of run ros" in said, r.output
    assert "missing replicate: a" not in said


def test_predict_reads_a_mogonet_training_folder_as_mogonet(cli, ros):
    assert cli(*TRAIN, "--variant", "p").exit_code == 0
    r = cli("predict", "--run", "ros", "--variant", "p", "--data", ROOT / "stages" / "data" / "embedded" / "rosmap")
    assert r.exit_code == 0 and "duplicate sample id" not in r.output, r.output
    assert len(r.stdout.strip().splitlines()) == 351 + 1          # every sample of tr and te, and a header


def test_a_fix_hint_names_the_cache_where_the_artifact_is_now(cli, ros, tmp_path):
    built_in = tmp_path / "built-here"
    shutil.copytree(ros.parent, built_in)
    assert cli("fit-dist", "--run", "ros", "--cache-dir", built_in, "--force").exit_code == 0
    moved = tmp_path / "moved"
    shutil.move(built_in, moved)
    meta = moved / "ros" / "fit-dist" / "meta.json"
    assert str(built_in) in json.loads(meta.read_text())["command"]
    (moved / "ros" / "fit-dist" / "dist.json").write_text("{}")            # damaged after the move
    try:
        RunStore(moved, "ros").load("fit-dist")
    except Exception as exc:                                                    # noqa: BLE001
        fix = exc.fix
    assert f"--cache-dir {moved}" in fix and str(built_in) not in fix, fix
