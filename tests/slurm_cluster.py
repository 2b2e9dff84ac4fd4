"""A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd on this host.

Everything lives in a private temporary folder: ``slurm.conf`` (this host as controller and only
node, one partition, no cgroups, no accounting), a MUNGE key and socket of its own, state, spool,
logs, and two free TCP ports, so that no system SLURM/MUNGE setup is used or touched and two test
sessions on one machine do not meet. Use it with::

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
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol")
FINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE"}
START_TIMEOUT_S = 60.0
PARTITION = "climd"
MARKER = "CLIMD_TEST_SLURM"  # in the environment of every process this cluster starts

# The test cluster keeps no accounting database (slurmdbd), so `sacct` cannot answer. submitit asks
# it `sacct -o JobID,State,NodeList --parsable2 -j ID...` for job states; this stand-in answers
# that query from squeue, which keeps finished jobs for MinJobAge seconds.
SACCT = """#!/bin/sh
jobs=""
while [ $# -gt 0 ]; do
  case "$1" in -j|--jobs) shift; jobs="${jobs:+$jobs,}$1";; esac
  shift
done
echo "JobID|State|NodeList"
[ -z "$jobs" ] || squeue -h -t all -j "$jobs" -o "%i|%T|%N" 2>/dev/null
exit 0
"""


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _hardware(slurmd: str) -> str:
    """This machine as ``slurmd -C`` sees it: CPUs, sockets, cores, threads, RealMemory."""
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    try:
        first = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        fields = dict(item.split("=", 1) for item in first.split() if "=" in item)
        if all(k in fields for k in keys):
            return " ".join(f"{k}={fields[k]}" for k in keys)
    except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
        pass
    mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    return f"CPUs={os.cpu_count() or 1} RealMemory={mem}"


class SlurmCluster:
    """The running cluster: ``env``, ``partition``, ``node``, ``run``/``sbatch``/``states``/``wait``."""

    def __init__(self, root: Path, tools: dict[str, str]):
        self.root, self.tools = root, tools
        self.partition, self.node = PARTITION, socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.logs_dir = root / "log"
        self.procs: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}
        venv_bin = str(Path(sys.executable).parent)
        path = [str(root / "bin"), venv_bin, os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), MARKER: str(root),
                    "PATH": os.pathsep.join(p for p in path if p),
                    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}

    # -- starting and stopping ---------------------------------------------------------------------
    def _write_config(self) -> None:
        for sub in ("state", "spool", "log", "run", "bin"):
            (self.root / sub).mkdir(exist_ok=True)
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        sacct = self.root / "bin" / "sacct"
        sacct.write_text(SACCT)
        sacct.chmod(0o755)
        ctld_port, slurmd_port = _free_ports(2)
        r = self.root
        self.conf.write_text(f"""# generated by tests/slurm_cluster.py: a private single-node cluster
ClusterName=climdtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge.sock
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc={r}/log/jobcomp.txt
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=300
KillWait=2
InactiveLimit=0
NodeName={self.node} NodeAddr=127.0.0.1 {_hardware(self.tools['slurmd'])} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.logs_dir / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen([self.tools[name], *args], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def _wait_for(self, what: str, ready, timeout: float = START_TIMEOUT_S) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")

    def start(self) -> None:
        t0 = time.monotonic()
        self._write_config()
        r = self.root
        self._start("munged", ["--foreground", "--force", f"--key-file={r}/munge.key",
                               f"--socket={r}/munge.sock", f"--pid-file={r}/run/munged.pid",
                               f"--seed-file={r}/run/munge.seed", f"--log-file={r}/log/munged.log"])
        self._wait_for("the munge socket", (r / "munge.sock").exists, 20)
        self.timings["munged_s"] = time.monotonic() - t0
        self._start("slurmctld", ["-D", "-c", "-f", str(self.conf)])
        self._start("slurmd", ["-D", "-f", str(self.conf), "-N", self.node])
        self._wait_for(f"node {self.node} to be idle in `sinfo`", self._node_idle)
        self.timings["start_s"] = time.monotonic() - t0

    def _node_idle(self) -> bool:
        out = subprocess.run([self.tools["sinfo"], "-h", "-N", "-n", self.node, "-o", "%t"], env=self.env,
                             capture_output=True, text=True, timeout=30)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def stop(self) -> None:
        """Cancel every job, stop the daemons, then end whatever they started (by pid)."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            with contextlib.suppress(Exception):
                subprocess.run([self.tools["scancel"], "--quiet", "-u", str(os.getuid())], env=self.env,
                               timeout=20, capture_output=True)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 15 and self.squeue("-t", "PD,R,CG,S"):
                    time.sleep(0.2)
        for name in reversed(DAEMONS):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pid in self._marked_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _marked_pids(self) -> list[int]:
        """Processes started by this cluster (slurmstepd, job steps): they carry its marker."""
        needle = f"{MARKER}={self.root}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def logs(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.logs_dir.glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} (last {lines} lines)\n" + "\n".join(text))
        return "\n".join(parts)

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

    def squeue(self, *args: str) -> list[str]:
        out = self.run(["squeue", "-h", *args], check=False)
        return out.stdout.split() if out.returncode == 0 else []

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
    tools = {t: _which(t) for t in DAEMONS + CLIENTS}
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
