"""climd status: artifact states (fresh, stale, incomplete, corrupt, missing, leftover), sweep cells,
the JSON shape and the exit codes."""
import json
import shutil
import subprocess
import sys

import pytest

from stages.store.status import exit_code

from tests.conftest import ROOT

GRID = """\
name: st
runs: ros
seeds: 0-1
train: {curriculum: none, epochs: 2}
evaluate: {splits: test}
"""


def status(cli, *args):
    r = cli("status", *args, "--json")
    return r, json.loads(r.stdout)


def states(out) -> dict:
    return {a["name"]: a["state"] for a in out["artifacts"]}


@pytest.mark.parametrize("found, code", [({"fresh"}, 0), ({"fresh", "leftover"}, 0), ({"missing", "fresh"}, 4),
                                         ({"missing", "stale"}, 5), ({"incomplete"}, 5), ({"corrupt"}, 5),
                                         ({"done"}, 0), (set(), 0)])
def test_exit_codes(found, code):
    assert exit_code(found) == code


def test_fresh_run_and_the_json_shape(cli, ros):
    r, out = status(cli, "--run", "ros")
    assert r.exit_code == 0 and out["exit_code"] == 0
    assert states(out) == {"encode": "fresh", "score": "fresh", "fit-dist": "fresh", "schedule": "fresh"}
    assert out["counts"] == {"fresh": 4}
    first = out["artifacts"][0]
    assert set(first) == {"run", "stage", "name", "path", "state", "detail"}
    assert first["run"] == "ros" and first["stage"] == "encode" and first["path"] == str(ros / "encode")
    r = cli("status", "--run", "ros")              # the table goes to stderr, stdout lists what is not fresh
    assert r.exit_code == 0 and r.stdout == "" and "4 fresh" in r.stderr
    assert cli("-q", "status", "--run", "ros").stderr == ""


def test_stale_after_an_upstream_stage_changed(cli, ros):
    assert cli("fit-dist", "--run", "ros", "--gamma", "0.5").exit_code == 0      # rebuilt: the schedule is stale
    r, out = status(cli, "--run", "ros")
    assert r.exit_code == 5 and states(out)["schedule"] == "stale" and states(out)["fit-dist"] == "fresh"
    row = next(a for a in out["artifacts"] if a["name"] == "schedule")
    assert "fit-dist has changed" in row["detail"]
    assert cli("status", "--run", "ros").stdout.split() == [str(ros / "schedule")]


def test_corrupt_incomplete_missing_and_leftover(cli, ros):
    with open(ros / "score" / "scores.csv", "a") as fh:                # an edited output
        fh.write("x\n")
    (ros / "fit-dist" / "meta.json").unlink()                         # a stage that never finished
    killed = ros / "train" / "climd" / "seed3"                         # a training killed at epoch 7
    killed.mkdir(parents=True)
    (killed / "checkpoint.json").write_text(json.dumps({"meta": {"epoch": 7, "key": "k"}}))
    (ros / ".tmp-score-4242-abc123").mkdir()                           # a leftover temporary folder
    r, out = status(cli, "--run", "ros")
    assert r.exit_code == 5
    s = states(out)
    assert s["score"] == "corrupt" and s["fit-dist"] == "incomplete" and s["train/climd/seed3"] == "incomplete"
    assert s["schedule"] == "stale" and s[".tmp-score-4242-abc123"] == "leftover"
    detail = {a["name"]: a["detail"] for a in out["artifacts"]}
    assert "scores.csv changed" in detail["score"]
    assert "killed at epoch 7" in detail["train/climd/seed3"]
    shutil.rmtree(ros / "encode")
    r, out = status(cli, "--run", "ros")
    assert states(out)["encode"] == "missing" and r.exit_code == 5
    assert out["counts"]["missing"] == 1


def test_only_missing_is_exit_4_and_an_unknown_pattern_too(cli, cache):
    (cache / "empty").mkdir(parents=True)
    r, out = status(cli, "--run", "empty")
    assert r.exit_code == 4 and out["artifacts"][0]["state"] == "missing" and out["artifacts"][0]["name"] == "encode"
    r = cli("status", "--run", "nothing*")
    assert r.exit_code == 4 and "no run matches" in r.stderr


def test_sweep_cells_done_missing_incomplete_stale(cli, ros, tmp_path):
    grid = tmp_path / "st.yaml"
    grid.write_text(GRID)
    r, out = status(cli, "--grid", grid)                     # nothing trained yet
    assert r.exit_code == 4 and {c["state"] for c in out["cells"]} == {"missing"}
    assert cli("sweep", grid).exit_code == 0
    r, out = status(cli, "--sweep", "st")
    assert r.exit_code == 0 and [c["state"] for c in out["cells"]] == ["done", "done"]
    assert set(out["cells"][0]) >= {"cell", "run", "variant", "seed", "path", "state", "detail"}
    (ros / "train" / "baseline" / "seed1" / "meta.json").unlink()          # killed: a train without meta.json
    shutil.rmtree(ros / "eval-test" / "baseline" / "seed0")                  # trained, not evaluated
    r, out = status(cli, "--sweep", "st")
    assert r.exit_code == 5 and [c["state"] for c in out["cells"]] == ["missing", "incomplete"]
    assert "eval-test" in out["cells"][0]["detail"]
    assert cli("status", "--sweep", "st").stdout.split() == [str(ros / "train/baseline/seed0"),
                                                             str(ros / "train/baseline/seed1")]
    r, out = status(cli, "--run", "ros")
    assert states(out)["train/baseline/seed1"] == "incomplete"
    assert cli("encode", "--run", "ros", "--val-fraction", "0.2", "--force").exit_code == 0   # new inputs
    r, out = status(cli, "--grid", grid)
    assert r.exit_code == 5 and out["cells"][0]["state"] == "stale" and "encode has changed" in out["cells"][0]["detail"]
    r = cli("status", "--sweep", "nope")
    assert r.exit_code == 4 and "no sweep named 'nope'" in r.stderr


def test_status_does_not_import_torch(ros, cache):
    code = ("import sys; from typer.testing import CliRunner; from climd_cli.app import app; "
            "r = CliRunner().invoke(app, ['status', '--run', 'ros']); print(r.exit_code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"CLIMD_CACHE": str(cache), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["0", "False"], out.stderr
