"""climd sweep: grid format and its errors, cells, the local executor (reruns redo only what is
missing), the SLURM dry run, and the SLURM submission function run by submitit's local executor."""
import json
import os
import shutil

import numpy as np
import pytest

from stages.store import tensorio
from stages.errors import UsageError
from stages.sweep.grid import load_grid

from tests.conftest import ROOT

GRID = """\
name: small
runs: ros
seeds: 0-2
train:
  - {curriculum: none, epochs: 3}
  - {curriculum: none, epochs: 3, loss: wce}
"""


def write(tmp_path, text: str, name: str = "grid.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def grid_error(tmp_path, text: str) -> UsageError:
    with pytest.raises(UsageError) as info:
        load_grid(write(tmp_path, text))
    return info.value


# -- the grid file ---------------------------------------------------------------------------------
def test_typo_in_a_key_names_file_line_and_the_closest_key(tmp_path):
    e = grid_error(tmp_path, "runs: ros\nsedes: 0-2\ntrain: {curriculum: none}\n")
    assert f"{tmp_path / 'grid.yaml'}, line 2: sedes: unknown key 'sedes'" in e.message
    assert "did you mean 'seeds'?" in e.fix
    e = grid_error(tmp_path, "runs: ros\ntrain:\n  - {curriculum: none}\n  - curiculum: climd\n    lr: 1e-3\n")
    assert "line 4: train[1].curiculum: unknown train option 'curiculum'" in e.message
    assert "did you mean 'curriculum'?" in e.fix
    e = grid_error(tmp_path, "runs: ros\nschedule: {epoks: 10}\ntrain: {}\n")
    assert "schedule.epoks: unknown schedule option" in e.message and "'epochs'" in e.fix


def test_unknown_train_option_and_options_in_the_wrong_place(tmp_path):
    e = grid_error(tmp_path, "runs: ros\ntrain: {learning-rate: 0.1}\n")
    assert "unknown train option 'learning-rate'" in e.message and "valid keys: model, curriculum" in e.fix
    e = grid_error(tmp_path, "runs: ros\ntrain: {curriculum: none, seeds: 0-4}\n")
    assert "train.seeds" in e.message and "top level" in e.fix


@pytest.mark.parametrize("seeds, problem", [("0-x", "cannot read seeds '0-x'"), ("4-0", "names no seed"),
                                            ("[-1, 2]", "seed -1 is negative"), ("true", "cannot read seeds")])
def test_bad_seeds(tmp_path, seeds, problem):
    e = grid_error(tmp_path, f"runs: ros\nseeds: {seeds}\ntrain: {{curriculum: none}}\n")
    assert "line 2: seeds" in e.message and problem in e.message


def test_bad_values_are_named_with_their_option_set(tmp_path):
    e = grid_error(tmp_path, "runs: ros\ntrain:\n  - {curriculum: none, lr: fast}\n")
    assert "line 3: train[0].lr: expected a number, got 'fast'" in e.message
    e = grid_error(tmp_path, "runs: ros\ntrain:\n  - {curriculum: zigzag}\n")
    assert "train[0]: unknown --curriculum 'zigzag'" in e.message
    e = grid_error(tmp_path, "runs: ros\ntrain:\n  - {curriculum: climd, resample: smote}\n")
    assert "--curriculum none" in e.fix
    e = grid_error(tmp_path, "runs: ros\ntrain:\n  - {curriculum: none, variant: same}\n  - {loss: wce, variant: same}\n")
    assert "two option sets make variant 'same'" in e.message
    e = grid_error(tmp_path, "runs: [ros/x]\ntrain: {}\n")
    assert "invalid run name" in e.message
    e = grid_error(tmp_path, "runs: ros\nseeds: 0-1\nencode: {split-file: 'split{seed}.csv'}\ntrain: {}\n")
    assert "serves every seed" in e.message
    e = grid_error(tmp_path, "runs: ros\ntrain: [\n")
    assert "not valid YAML" in e.message


def test_grid_errors_through_the_cli_exit_2(cli, tmp_path, cache):
    r = cli("sweep", write(tmp_path, "runs: ros\ntrain: {curiculum: none}\n"))
    assert r.exit_code == 2 and "did you mean 'curriculum'" in r.stderr and "grid.yaml, line 2" in r.stderr
    r = cli("sweep", tmp_path / "absent.yaml")
    assert r.exit_code == 2 and "cannot read the grid file" in r.stderr
    r = cli("sweep", write(tmp_path, GRID), "--slurm-partition", "gpu")
    assert r.exit_code == 2 and "--executor slurm" in r.stderr


# -- cells -----------------------------------------------------------------------------------------
def test_cells_expand_lists_as_a_product_and_pair_runs_with_seeds(tmp_path):
    g = load_grid(write(tmp_path, """
runs: ["brca-s{seed}", pooled]
seeds: 0,1
train:
  - {curriculum: none, lr: [5e-5, 1e-3], loss: [ce, focal]}
  - {curriculum: climd, model-option: [{hidden: 16}, {hidden: 32}], variant: "c-{model-option}@lr{lr}"}
evaluate: {splits: [test, valid]}
"""))
    assert g.name == "grid" and g.seeds == [0, 1] and g.evaluate == ["test", "valid"]
    keys = [c.key for c in g.cells]
    assert len(keys) == len(set(keys)) == (4 + 2) * 2 * 2
    assert "brca-s1/baseline+focal+lr0.001/seed1" in keys and "brca-s0/baseline/seed1" not in keys
    assert "pooled/baseline/seed0" in keys and "pooled/baseline/seed1" in keys
    assert "brca-s0/c-hidden32@lr5e-05/seed0" in keys
    assert list(g.run_seeds()) == ["brca-s0", "brca-s1", "pooled"] and g.first_run == "brca-s0"
    cell = next(c for c in g.cells if c.key == "brca-s1/baseline+focal+lr0.001/seed1")
    assert cell.command() == "climd train --run brca-s1 --curriculum none --lr 0.001 --loss focal --seed 1"
    assert cell.train_options().lr == 1e-3          # YAML reads 1e-3 as a string
    # cells differing only in seed, lr and run share a batch key (one SLURM task, one engine program)
    by_key = {}
    for c in g.cells:
        by_key.setdefault(c.batch_key(), set()).add(c.variant)
    assert {"baseline", "baseline+lr0.001"} in by_key.values()


def test_upstream_options_fill_run_and_seed_and_resolve_paths(tmp_path):
    g = load_grid(write(tmp_path, """
runs: brca-s{seed}
seeds: 0-1
encode: {data: data/brca, split-file: "splits/seed{seed}.csv", val-fraction: 0.2, seed: 3}
score: [{}, {folds: 5, tag: oof}]
fit-dist: {gamma: 0.5}
schedule: {epochs: 10, score-tag: oof, tag: oof}
train: {curriculum: climd, schedule-tag: oof}
"""))
    steps = g.upstream_for("brca-s1")
    assert [s for s, _ in steps] == ["encode", "score", "score", "fit-dist", "schedule"]
    assert steps[0][1]["split-file"] == str(tmp_path / "splits" / "seed1.csv")
    assert steps[0][1]["data"] == str(tmp_path / "data" / "brca") and steps[0][1]["val-fraction"] == 0.2
    assert steps[2][1] == {"folds": 5, "tag": "oof"}


# -- the local executor ----------------------------------------------------------------------------
def _mtimes(ros):
    return {p.parent.relative_to(ros).as_posix(): p.stat().st_mtime_ns for p in ros.glob("train/*/*/meta.json")}


def test_local_sweep_trains_the_missing_cells_and_a_rerun_trains_nothing(cli, ros, tmp_path):
    grid = write(tmp_path, GRID)
    # a cell trained by `climd train` first is fresh for the sweep too: they agree through prepare()
    r = cli("train", "--run", "ros", "--curriculum", "none", "--epochs", "3", "--seed", "1")
    assert r.exit_code == 0, r.output
    r = cli("sweep", grid, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["reused"] == ["ros/baseline/seed1"] and len(out["trained"]) == 5 and out["failed"] == []
    assert sorted(_mtimes(ros)) == sorted(f"train/{v}/seed{s}" for v in ("baseline", "baseline+wce") for s in range(3))
    before = _mtimes(ros)
    r = cli("sweep", grid)
    assert r.exit_code == 0, r.output
    assert _mtimes(ros) == before and "trained 0, reused 6" in r.stderr
    assert sorted(r.stdout.split()) == sorted(str(ros / name) for name in before)
    shutil.rmtree(ros / "train" / "baseline+wce" / "seed2")
    r = cli("sweep", grid, "--json")
    assert json.loads(r.stdout)["trained"] == ["ros/baseline+wce/seed2"]
    after = _mtimes(ros)
    assert after.pop("train/baseline+wce/seed2") > before.pop("train/baseline+wce/seed2") and after == before
    record = json.loads((ros / "sweeps" / "small" / "sweep.json").read_text())
    assert len(record["cells"]) == 6 and [s["executor"] for s in record["submissions"]] == ["local"] * 3
    assert record["grid"]["seeds"] == "0-2" and record["submissions"][-1]["trained"] == ["ros/baseline+wce/seed2"]
    logs = "".join(p.read_text() for p in (ros / "sweeps" / "small" / "logs").glob("local-*.log"))
    assert "trained ros/baseline+wce/seed2" in logs


# -- SLURM -------------------------------------------------------------------------------------------
def test_slurm_dry_run_prints_the_arrays_without_submitting(cli, ros, tmp_path):
    grid = write(tmp_path, GRID)
    args = ("sweep", grid, "--executor", "slurm", "--slurm-partition", "gpu", "--slurm-time", "1:30:00",
            "--slurm-cpus", "4", "--slurm-gpus", "1", "--slurm-array-parallelism", "2",
            "--slurm-option", "mem=16G", "--dry-run")
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["plan"] == "6 cells: 0 fresh, 6 to train"
    [array] = out["arrays"]
    assert array["parameters"] == {"timeout_min": 90, "slurm_signal_delay_s": 90, "cpus_per_task": 4, "gpus_per_node": 1,
                                   "slurm_partition": "gpu", "slurm_array_parallelism": 2,
                                   "slurm_additional_parameters": {"mem": "16G"}, "name": "climd-small-train"}
    # default: one task per option set, holding all its seeds
    assert [t["does"] for t in array["tasks"]] == [[f"ros/{v}/seed{s}" for s in range(3)] for v in ("baseline", "baseline+wce")]
    r = cli(*args, "--cells-per-task", "4", "--json")
    assert [len(t["does"]) for t in json.loads(r.stdout)["arrays"][0]["tasks"]] == [4, 2]
    r = cli(*args)
    assert r.exit_code == 0 and "array 1/1: train, 2 task(s)" in r.stdout and "slurm_partition=gpu" in r.stdout
    assert "task 1 (3): ros/baseline+wce/seed0 ros/baseline+wce/seed1 ros/baseline+wce/seed2" in r.stdout
    assert not (ros / "sweeps").exists() and not (ros / "train").exists()     # nothing submitted or recorded


def test_slurm_dry_run_with_upstream_stages_chains_the_arrays(cli, cache, tmp_path):
    grid = write(tmp_path, "name: full\nruns: fresh-run\nencode: {}\nscore: {probe-epochs: 5}\nfit-dist: {}\n"
                           "schedule: {epochs: 3}\ntrain: {curriculum: climd}\n")
    r = cli("sweep", grid, "--executor", "slurm", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    arrays = json.loads(r.stdout)["arrays"]
    assert [a["stage"] for a in arrays] == ["encode", "score", "fit-dist", "schedule", "train"]
    assert arrays[0]["tasks"] == [{"task": 0, "does": ["fresh-run"]}] and "slurm_dependency" not in arrays[0]["parameters"]
    assert arrays[4]["parameters"]["slurm_dependency"] == "afterok:<array 4: schedule>"
    assert arrays[4]["tasks"][0]["does"] == ["fresh-run/climd/seed0"]


def test_slurm_without_sbatch_is_a_usage_error(cli, ros, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))                 # no sbatch here
    r = cli("sweep", write(tmp_path, GRID), "--executor", "slurm")
    assert r.exit_code == 2 and "`sbatch` is not on PATH" in r.stderr and "--executor local" in r.stderr


def test_the_slurm_submission_runs_the_task_function_and_writes_what_local_writes(ros, cache, tmp_path, cli):
    """submit_sweep on submitit's local cluster: each task is pickled, run by a fresh interpreter, and
    writes byte for byte the artifacts of the local executor."""
    from stages.sweep.run import run_local
    from stages.sweep.slurm import SlurmOptions, submit_sweep

    grid = load_grid(write(tmp_path, GRID.replace("0-2", "0-1") + "evaluate: {splits: test}\n"))
    other = tmp_path / "other"
    shutil.copytree(cache, other)
    run_local(grid, other)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    entry, submitted = submit_sweep(grid, cache, SlurmOptions(time="10", cpus=1), env=env, cluster="local")
    [array] = submitted
    assert array.stage == "train" and len(array.jobs) == 2 and array.parameters["cpus_per_task"] == 1
    assert [t["does"] for t in entry["arrays"][0]["tasks"]] == [["ros/baseline/seed0", "ros/baseline/seed1"],
                                                              ["ros/baseline+wce/seed0", "ros/baseline+wce/seed1"]]
    results = [job.result() for job in array.jobs]
    assert sorted(k for r in results for k in r["trained"]) == sorted(c.key for c in grid.cells)
    for cell in grid.cells:
        a, b = ros / cell.name, other / "ros" / cell.name
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
        wa, wb = tensorio.load(a / "model", as_numpy=True)[0], tensorio.load(b / "model", as_numpy=True)[0]
        assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
        assert (ros / f"eval-test/{cell.variant}/seed{cell.seed}/meta.json").is_file()
        assert json.loads((a / "meta.json").read_text())["command"] == cell.command()
    logs = ros / "sweeps" / "small" / "logs"
    assert len(list(logs.glob("*_log.err"))) == 2 and entry["log_dir"] == str(logs)
    record = json.loads((ros / "sweeps" / "small" / "sweep.json").read_text())
    assert record["submissions"][-1]["arrays"][0]["tasks"][1]["job_id"] == array.jobs[1].job_id
    r = cli("status", "--sweep", "small", "--json")
    assert r.exit_code == 0, r.output
    cells = json.loads(r.stdout)["cells"]
    assert {c["state"] for c in cells} == {"done"} and {c["job"]["id"] for c in cells} == {j.job_id for j in array.jobs}
    # everything is fresh now: a resubmission has nothing to submit
    r = cli("sweep", tmp_path / "grid.yaml", "--executor", "slurm", "--dry-run")
    assert r.exit_code == 0 and "nothing to submit" in r.stdout and "4 fresh, 0 to train" in r.stdout


def test_upstream_stages_run_before_training_and_are_then_known_fresh(cli, cache, tmp_path):
    """The local executor builds encode ... schedule, then trains; afterwards the SLURM planner sees
    every stage as done (is_done agrees with the stages' own reuse) and has nothing to submit."""
    grid = write(tmp_path, "name: whole\nruns: new\nseeds: 0-1\nencode: {val-fraction: 0.2}\n"
                           "score: [{probe-epochs: 5}, {probe-epochs: 5, folds: 2, tag: oof}]\nfit-dist: {}\n"
                           "schedule: [{epochs: 2}, {epochs: 2, score-tag: oof, tag: oof}]\n"
                           "train: {curriculum: climd, schedule-tag: [null, oof]}\nevaluate: {splits: valid}\n")
    r = cli("sweep", grid, "--json")
    assert r.exit_code == 0, r.output
    assert sorted(json.loads(r.stdout)["trained"]) == sorted(f"new/{v}/seed{s}" for v in ("climd", "climd.oof") for s in (0, 1))
    run = cache / "new"
    meta = json.loads((run / "schedule.oof" / "meta.json").read_text())
    assert meta["inputs"]["score"]["artifact"] == "score.oof" and meta["command"] == \
        "climd schedule --run new --epochs 2 --score-tag oof --tag oof"
    r = cli("sweep", grid, "--executor", "slurm", "--dry-run", "--json")
    out = json.loads(r.stdout)
    assert out["arrays"] == [] and out["plan"] == "4 cells: 4 fresh, 0 to train"
    r = cli("status", "--run", "new", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["counts"] == {"fresh": 6 + 4 + 4}   # upstream, train, eval-valid
    # a changed option of one stage: only that run's stage and what follows it are planned again
    grid.write_text(grid.read_text().replace("fit-dist: {}", "fit-dist: {gamma: 0.5}"))
    arrays = json.loads(cli("sweep", grid, "--executor", "slurm", "--dry-run", "--json").stdout)["arrays"]
    assert [a["stage"] for a in arrays] == ["fit-dist", "schedule", "train"]


def test_example_grids_are_valid():
    counts = {p.stem: len(load_grid(p).cells) for p in (ROOT / "examples" / "grids").glob("*.yaml")}
    assert counts == {"brca-table2": 60, "brca-table4": 85, "rosmap-table2-lr": 160, "derm7pt-shards": 6,
                      "try-slurm": 4}


@pytest.mark.parametrize("command", ["sweep", "status"])
def test_help_has_examples(cli, command):
    r = cli(command, "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout and f"climd {command}" in r.stdout


def test_a_resubmission_leaves_out_cells_whose_job_is_still_queued(ros, tmp_path, monkeypatch):
    """Two writers must not train one folder: cells of a pending/running SLURM task are skipped (the
    scheduler's word from squeue, which answers with or without accounting); a task pending on a
    dependency that can never be satisfied is not busy: it will never run."""
    from stages.sweep import jobs as sweep_jobs
    from stages.sweep import slurm as sweep_slurm
    from stages.sweep.run import write_record

    grid = load_grid(write(tmp_path, GRID))
    tasks = [{"task": 0, "job_id": "77_0", "does": ["ros/baseline/seed0", "ros/baseline/seed1"]},
             {"task": 1, "job_id": "77_1", "does": ["ros/baseline+wce/seed0"]},
             {"task": 2, "job_id": "77_2", "does": ["ros/baseline+wce/seed1"]}]
    write_record(grid, ros.parent, {"executor": "slurm", "cluster": "slurm",
                                    "arrays": [{"stage": "train", "job_id": "77", "tasks": tasks}]})
    queue = {"77_0": {"state": "RUNNING", "reason": None}, "77_1": {"state": "FAILED", "reason": "NonZeroExitCode"},
             "77_2": {"state": "PENDING", "reason": "DependencyNeverSatisfied"}}
    monkeypatch.setattr(sweep_jobs, "_squeue", lambda env: queue)
    monkeypatch.setattr(sweep_jobs, "_run", lambda command, env: None)     # no sacct, no scontrol
    plan, arrays, busy = sweep_slurm.prepare_submission(grid, ros.parent)
    assert busy == ["ros/baseline/seed0", "ros/baseline/seed1"]
    assert sorted(k for a in arrays for t in a.labels() for k in t) == sorted(
        ["ros/baseline/seed2"] + [f"ros/baseline+wce/seed{s}" for s in range(3)])
    assert len(sweep_slurm.prepare_submission(grid, ros.parent, force=True)[0].todo) == 6


def test_a_damaged_checkpoint_in_one_cell_is_discarded_and_every_cell_trains(cli, ros, tmp_path):
    """A cell whose checkpoint is damaged is named in a warning and trained from the start (issue 25:
    discarded for that replica only); every cell is trained and recorded, exit 0."""
    from stages.store.artifacts import RunStore
    from stages.pipeline.train import TrainOptions, prepare

    rep = prepare(RunStore(ros.parent, "ros"), TrainOptions(curriculum="none", epochs=3), 1)
    rep.path.mkdir(parents=True)
    (rep.path / "checkpoint.json").write_text(json.dumps({"format": "climd-tensors/1", "tensors": "checkpoint-e00002.safetensors",
                                                          "sha256": "0" * 64, "bytes": 8, "meta": {"key": rep.ticket.key, "epoch": 2}}))
    r = cli("sweep", write(tmp_path, GRID))
    assert r.exit_code == 0, r.output
    assert "checkpoint" in r.stderr and "baseline" in r.stderr and "seed1" in r.stderr
    assert len(_mtimes(ros)) == 6 and (ros / "train" / "baseline" / "seed1" / "meta.json").is_file()
    entry = json.loads((ros / "sweeps" / "small" / "sweep.json").read_text())["submissions"][-1]
    assert len(entry["trained"]) == 6 and not entry.get("failed")
