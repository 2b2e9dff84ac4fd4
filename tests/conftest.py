"""Shared fixtures. Tests that read ../shared/data fail (never skip) when it is missing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CLIMD_SHARED_DATA", ROOT.parent / "shared" / "data"))


ALL_CPUS = frozenset(os.sched_getaffinity(0))    # before a worker is pinned: for tests that need them all


def _pin_xdist_worker() -> None:
    """Under ``pytest -n N`` each worker (and every process it starts) gets its own share of this
    process's CPUs, so climd sizes its threads to that share and workers never oversubscribe."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cpus = sorted(os.sched_getaffinity(0))
    if worker and 1 < count <= len(cpus):
        os.sched_setaffinity(0, cpus[int(worker.removeprefix("gw")) % count::count])


_pin_xdist_worker()


def pytest_collection_modifyitems(config, items):
    """The slow tests first, so that under ``pytest -n N`` one worker starts the longest test at once
    while the others share the rest (the order of the other tests is kept)."""
    for item in items:                     # `-m "not slurm"` deselects every test that starts a cluster
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing: CI needs ../shared/data beside the checkout "
                    "(or CLIMD_SHARED_DATA pointing to it)", pytrace=False)
    return path


@pytest.fixture
def all_cpus():
    """Every CPU of the machine for this test, also inside a pinned ``pytest -n`` worker: for tests of
    multi-threaded or multi-process paths (threads this process starts from now on inherit it)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, ALL_CPUS)
    yield len(ALL_CPUS)
    os.sched_setaffinity(0, before)


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


def refused(result, code: int, *fragments: str, fix: bool = False):
    """The one check of a refused command (bad input, a missing or damaged artifact): the documented
    exit code, no traceback, nothing on stdout, every fragment (a file, a row, the fix) in the
    message on stderr, and with ``fix=True`` a ``fix:`` line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    assert result.stdout == "", result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    if fix:
        assert "fix:" in result.stderr, result.stderr
