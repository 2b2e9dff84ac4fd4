"""climd as a subprocess, for cases that could hang or need real signals, and waiting on its files and
worker processes (the hardening and train tests)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import ALL_CPUS, ROOT


def climd(cache, *args, env=None, **kw) -> subprocess.Popen:
    full = {**os.environ, "CLIMD_CACHE": str(cache), "PYTHONPATH": str(ROOT), **(env or {})}
    kw.setdefault("preexec_fn", lambda: os.sched_setaffinity(0, ALL_CPUS))
    return subprocess.Popen([sys.executable, "-m", "climd_cli", "-q", *map(str, args)], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run(cache, *args, timeout=90, env=None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); a hang fails the test after ``timeout`` seconds."""
    proc = climd(cache, *args, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"climd {' '.join(map(str, args))} hung for {timeout} s") from None
    return proc.returncode, out, err


def wait_for(path_glob, root, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(root.glob(path_glob))
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{path_glob} never appeared under {root}")


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out
