"""A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd on this host.

The daemons and their configuration are ``scripts/slurm/cluster.py``'s (which ``make slurm-up`` uses
for the system cluster), here in a private temporary folder: ``slurm.conf`` (this host as controller
and only node, one partition, no cgroups, no accounting, a small MaxArraySize), a MUNGE key and
socket of its own, state, spool, logs, and two free ephemeral TCP ports, so that the system cluster
of ``make slurm-up`` (ports 6817/6818, /etc/slurm, /var/lib/climd-slurm) is neither used nor touched
and two test sessions on one machine do not meet. Use it with::

    from tests.slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

    def test_x(slurm_cluster):
        job = slurm_cluster.sbatch("--wrap", "echo hi", "-o", str(out))
        slurm_cluster.wait(job)

``env`` is what ``sbatch``/``squeue``/``scancel`` and submitit need (``SLURM_CONF``, ``PATH`` with
this venv's ``bin`` first, ``PYTHONPATH`` with this checkout): jobs inherit it, so Python in a job is
the venv's interpreter importing this checkout. ``with cluster.environ():`` applies it to
``os.environ`` (for submitit, which calls ``sbatch`` itself).

The daemons are packaged by Debian (``make slurm-deps``). When they are missing or do not start,
every test using the fixture fails (never skips), with the daemon logs in the message.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("climd_slurm_cluster", ROOT / "scripts" / "slurm" / "cluster.py")
base = sys.modules.setdefault("climd_slurm_cluster", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(base)
DAEMONS, CLIENTS = base.DAEMONS, base.CLIENTS
FINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE"}
PARTITION = base.PARTITION
MARKER = "CLIMD_TEST_SLURM"  # in the environment of every process this cluster starts
MAX_ARRAY_SIZE = 4           # small, so that a sweep's arrays are split (tests/sweep/test_slurm_sweep.py)


class SlurmCluster(base.Cluster):
    """The running cluster: ``env``, ``partition``, ``node``, ``run``/``sbatch``/``states``/``wait``.
    Its daemons and files are :class:`scripts/slurm/cluster.py`'s, in a private folder ``root``."""

    def __init__(self, root: Path, tools: dict[str, str]):
        venv_bin = str(Path(sys.executable).parent)
        path = [str(root / "bin"), venv_bin, os.environ.get("PATH", "")]
        env = {**os.environ, "PATH": os.pathsep.join(p for p in path if p),
               "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        super().__init__(base.Layout.private(root, MAX_ARRAY_SIZE), tools, env, (MARKER, str(root)))
        self.root, self.conf, self.logs_dir = root, self.layout.conf, self.layout.logs_dir
        self.timings: dict[str, float] = {}

    def start(self) -> None:
        self.write_config(fake_sacct=True)
        self.timings = super().start()

    def stop(self) -> None:
        """Cancel every job, stop the daemons, then end whatever they started (by pid)."""
        super().stop((MARKER, str(self.root)))

    # -- using it -------------------------------------------------------------------------------
    def run(self, cmd: str | list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command (a list, or a string for bash) with ``env``; fails the test on a non-zero exit."""
        args = ["bash", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]
        out = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            pytest.fail(f"{args} exited {out.returncode}:\n{out.stdout}{out.stderr}\n{self.logs(15)}",
                        pytrace=False)
        return out

    def sbatch(self, *args: str) -> str:
        """Submit; returns the job id (of the whole array for ``--array``)."""
        return self.run(["sbatch", "--parsable", f"--partition={self.partition}", *args]).stdout.strip().split(";")[0]

    def states(self, job_id: str) -> dict[str, str]:
        """``{"12_0": "COMPLETED", "12_[1-2]": "PENDING", ...}`` for a job or array, finished ones included."""
        rows = self.squeue("-t", "all", "-j", job_id, "-o", "%i|%T")
        return dict(row.split("|", 1) for row in rows)

    def wait(self, job_id: str, timeout: float = 60) -> dict[str, str]:
        """Wait until every task of ``job_id`` has a final state; returns the states."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            states = self.states(job_id)
            if states and all(s in FINAL for s in states.values()):
                return states
            time.sleep(0.2)
        pytest.fail(f"job {job_id} not finished after {timeout:.0f} s: {self.states(job_id)}\n{self.logs(15)}",
                    pytrace=False)

    @contextlib.contextmanager
    def environ(self):
        """Apply ``env`` to ``os.environ`` for the block (submitit runs sbatch with it)."""
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            yield self
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A started private SLURM cluster for the whole session; stopped at the end (also on failure)."""
    tools = base.tools()
    missing = sorted(t for t, path in tools.items() if path is None)
    if missing:
        pytest.fail(f"SLURM/MUNGE are not installed (missing {', '.join(missing)}): run `make slurm-deps` "
                    "(scripts/slurm/install.sh: apt-get install slurm-wlm munge)", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="climd-slurm-"))
    root.chmod(0o755)  # munged wants its socket reachable by every user
    cluster = SlurmCluster(root, tools)
    try:
        error = None
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            error = f"the test SLURM cluster did not start: {exc}\n{cluster.logs()}"
        if error:
            pytest.fail(error, pytrace=False)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
