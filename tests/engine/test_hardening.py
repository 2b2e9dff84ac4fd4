"""Hardening of names, meta.json and output: each case from the hardening issue, reproduced."""
import json

import pytest

from stages.errors import StaleArtifactError
from stages.store.artifacts import RunStore


@pytest.mark.parametrize("args", [
    ["score", "--tag", "x/../../../../victimdir"], ["fit-dist", "--tag", ".."],
    ["schedule", "--tag", "a/b"], ["schedule", "--score-tag", "../../x"], ["schedule", "--dist-tag", "../x"],
    ["train", "--schedule-tag", "../../../x"], ["train", "--variant", "../../victim", "--force"],
])
def test_names_that_would_leave_the_cache_are_refused(cli, ros, tmp_path, args):
    victim = ros.parent.parent / "victimdir"
    victim.mkdir(exist_ok=True)
    (victim / "keep.txt").write_text("precious")
    before = sorted(p.relative_to(ros.parent.parent) for p in ros.parent.parent.rglob("*"))
    r = cli(*args, "--run", "ros")
    assert r.exit_code == 2 and "invalid" in r.stderr and "Traceback" not in r.output, r.output
    assert sorted(p.relative_to(ros.parent.parent) for p in ros.parent.parent.rglob("*")) == before
    assert (victim / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("meta", ["[]", "null", '"text"', '{"key": "k", "stage": "score"}',
                                  '{"key": "k", "stage": "s", "params": {}, "inputs": {}, "summary": {}}',
                                  '{"key": "k", "stage": "s", "params": {}, "inputs": {}, "summary": {}, '
                                  '"outputs": {"f": {"sha256": "x"}}}',
                                  '{"key": "k", "stage": "s", "params": {}, "inputs": {}, "summary": {}, '
                                  '"outputs": {"../../etc/passwd": {"sha256": "x", "bytes": 1}}}', "{not json"])
def test_a_malformed_meta_json_is_named_with_the_rebuild_command(tmp_path, meta):
    store = RunStore(tmp_path, "r")
    store.build("score", "score", 1, {}, {}, lambda out: (out / "scores.csv").write_text("x") and {})
    (store.path("score") / "meta.json").write_text(meta)
    with pytest.raises(StaleArtifactError) as err:
        store.load("score")
    assert "meta.json" in err.value.message and str(store.path("score")) in err.value.message
    assert "rerun" in err.value.fix or "delete" in err.value.fix


def test_fix_hint_replays_the_recorded_command_when_meta_json_is_damaged(cli, ros):
    meta = ros / "fit-dist" / "meta.json"
    recorded = json.loads(meta.read_text())["command"]
    meta.write_text("[]")
    r = cli("schedule", "--run", "ros", "--epochs", "12", "--force")
    assert r.exit_code == 5 and "--force" in r.stderr
    # replayed, with --cache-dir naming where the cache is now, not where it was built (issue 25)
    from stages.core.cmdline import with_cache_dir

    assert with_cache_dir(recorded, ros.parent) in r.stderr
    assert "--cache-dir" not in recorded or f"--cache-dir {ros.parent}" in r.stderr


def test_inspect_plot_says_where_and_piped_tables_are_not_wrapped(cli, ros, tmp_path):
    png = tmp_path / "mix.png"
    r = cli("inspect", "schedule", "--run", "ros", "--plot", png)
    assert r.exit_code == 0 and str(png) in r.stderr and png.read_bytes()[:4] == b"\x89PNG"
    widest = max(len(line) for line in r.stdout.splitlines())
    assert widest > 80                      # piped: the terminal's 80 columns do not apply
