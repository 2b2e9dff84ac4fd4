"""Seeing what is done: `inspect` shows a train artifact's final loss and steps and an evaluation's
metrics, a stage name with --run lists that stage's artifacts, `status --summary` counts per
variant, the main flags work after the command, and help epilogs keep their [brackets]."""
import json

from climd_cli.app import hoist_global_flags


def _train_and_evaluate(cli):
    r = cli("train", "--run", "ros", "--curriculum", "none", "--seeds", "0-1", "--epochs", "2")
    assert r.exit_code == 0, r.output
    r = cli("evaluate", "--run", "ros")
    assert r.exit_code == 0, r.output


def test_inspect_shows_loss_steps_and_metrics_and_lists_a_stage(cli, ros):
    _train_and_evaluate(cli)
    meta = json.loads((ros / "train/baseline/seed0/meta.json").read_text())["summary"]
    out = json.loads(cli("inspect", "train/baseline/seed0", "--run", "ros", "--json").stdout)
    rows = dict(map(tuple, out["tables"][1]["rows"]))
    assert rows["final_loss"] == meta["final_loss"] and rows["optimizer_steps"] == meta["optimizer_steps"]
    metrics = json.loads((ros / "eval-test/baseline/seed0/metrics.json").read_text())
    out = json.loads(cli("inspect", str(ros / "eval-test/baseline/seed0"), "--json").stdout)
    rows = dict(map(tuple, out["tables"][1]["rows"]))
    assert rows["accuracy"] == metrics["accuracy"] and rows["f1_macro"] == metrics["f1_macro"]
    r = cli("inspect", "train", "--run", "ros")
    assert r.exit_code == 0, r.output
    assert "train/baseline/seed0" in r.stdout and "train/baseline/seed1" in r.stdout
    assert f"final loss {meta['final_loss']:.4g}, {meta['optimizer_steps']} steps" in r.stdout
    listing = json.loads(cli("inspect", "evaluate", "--run", "ros", "--json").stdout)["tables"][0]["rows"]
    assert [row[0] for row in listing] == ["eval-test/baseline/seed0", "eval-test/baseline/seed1"]
    assert listing[0][2].startswith(f"accuracy {metrics['accuracy']:.4g}")


def test_status_summary_counts_per_variant(cli, ros):
    _train_and_evaluate(cli)
    (ros / "train/baseline/seed1/meta.json").unlink()            # one cell interrupted
    r = cli("status", "--run", "ros", "--summary", "--json")
    groups = {(g["stage"], g["variant"]): g for g in json.loads(r.stdout)["summary"]}
    assert groups[("train", "baseline")] == {"stage": "train", "variant": "baseline", "total": 2, "done": 1,
                                            "missing": 0, "failed": 0, "incomplete": 1}
    assert groups[("evaluate", "baseline")]["done"] == 1 and groups[("encode", "")]["done"] == 1
    r = cli("status", "--run", "ros", "--summary")
    assert r.exit_code == 5 and "incomplete" in r.stderr and "baseline" in r.stderr


def test_main_flags_after_the_command(cli, ros):
    assert hoist_global_flags(["report", "-q", "--run", "x"]) == ["-q", "report", "--run", "x"]
    assert hoist_global_flags(["--debug", "status", "--json", "--quiet"]) == ["--debug", "--quiet", "status", "--json"]
    assert hoist_global_flags(["predict", "--", "-q"]) == ["predict", "--", "-q"]
    r = cli("status", "--run", "ros", "-q")
    assert r.exit_code == 0 and r.stderr == "", r.output        # quiet: no table
    assert cli("status", "--run", "ros").stderr != ""


def test_help_epilogs_keep_their_brackets(cli):
    r = cli("sweep", "--help")
    assert "loss: [wce, focal]" in r.stdout and "{splits: [test]}" in r.stdout
