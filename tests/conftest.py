"""Shared fixtures. Tests that read ../shared/data fail (never skip) when it is missing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CLIMD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: CI needs ../shared/data beside the checkout "
                    "(or CLIMD_SHARED_DATA pointing to it)", pytrace=False)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CLIMD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def cli():
    """Run ``climd ARGS`` in-process; returns the click Result (exit_code, stdout, stderr)."""
    from climd_cli.app import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def run_cli(*args: str, cache_dir: Path | None = None):
    """climd ARGS in-process (outside a test's fixtures), failing loudly."""
    from climd_cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False,
                                env={"CLIMD_CACHE": str(cache_dir)} if cache_dir else None)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="session")
def ros_template(tmp_path_factory) -> Path:
    """The embedded ROSMAP through schedule (12 epochs), built once per session; tests use copies."""
    root = tmp_path_factory.mktemp("ros-template")
    for args in (["encode"], ["score", "--probe-epochs", "50"], ["fit-dist"], ["schedule", "--epochs", "12"]):
        run_cli(*args, "--run", "ros", cache_dir=root)
    return root


@pytest.fixture
def ros(ros_template, cache) -> Path:
    """A private copy of the session's ROSMAP run (encode -> schedule): ``<cache>/ros``."""
    import shutil

    shutil.copytree(ros_template, cache)
    return cache / "ros"
