"""The command line: stages in pipeline order, help with examples, entry points, exit codes."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ORDER = ["encode", "score", "fit-dist", "schedule", "train", "evaluate", "report", "select", "inspect"]


def test_help_lists_the_stages_in_pipeline_order(cli):
    out = cli("--help").stdout
    positions = [out.index(f" {name} ") for name in ORDER]
    assert positions == sorted(positions)
    assert "Exit codes" in out and "5: stale" in out


@pytest.mark.parametrize("command", ORDER)
def test_every_command_has_help_with_examples(cli, command):
    r = cli(command, "--help")
    assert r.exit_code == 0 and "Examples" in r.stdout and "climd " + command in r.stdout


def test_python_dash_m_and_console_script():
    r = subprocess.run([sys.executable, "-m", "climd_cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("climd ")
    from importlib.metadata import entry_points

    assert any(ep.name == "climd" and ep.value == "climd_cli.app:main" for ep in entry_points(group="console_scripts"))


def test_usage_error_exit_code(cli, cache):
    r = cli("schedule", "--run", "x", "--pacing", "zigzag")   # options are checked before any artifact
    assert r.exit_code == 2 and "unknown --pacing 'zigzag'" in r.stderr
    r = cli("schedule", "--run", "x")
    assert r.exit_code == 4 and "climd score --run x" in r.stderr
    r = cli("fit-dist", "--run", "bad/name")
    assert r.exit_code == 2 and "invalid run name" in r.stderr


def test_quiet_prints_only_paths(cli, cache):
    r = cli("-q", "encode", "--run", "q")
    assert r.stdout.strip().endswith("q/encode") and r.stderr == ""
