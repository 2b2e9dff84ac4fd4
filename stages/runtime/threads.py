"""How many CPU threads this process may use, and making torch/BLAS/OpenMP use no more.

A process may use the CPUs of its affinity mask (``taskset``, cgroups cpusets, SLURM's binding), at
most ``SLURM_CPUS_PER_TASK`` inside a SLURM job, and at most its cgroup CPU quota (containers).
Libraries default to every core of the node, which on a shared node means oversubscription: with a
second job on 2 cores, an OpenMP-spinning ``train`` ran 20x slower than with one thread.

:func:`configure` is called by every command before torch or numpy start their thread pools. It
sets the standard environment variables (also inherited by worker processes) and, when torch is
already imported, torch's own pools. Worker processes run with one thread each.
"""
from __future__ import annotations

import logging
import math
import os
import sys

log = logging.getLogger("climd")

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
# Spin-waiting OpenMP threads steal the CPU from the other processes of a busy node; sleeping at once
# (PASSIVE) makes every small parallel region pay a wake-up. A short spin is the robust middle.
SPIN = {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "1"}
_CONFIGURED: list[int] = []


def allowed_cpus() -> int:
    """CPUs this process may use: affinity mask, SLURM_CPUS_PER_TASK and the cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        n = min(n, int(slurm))
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def _cgroup_quota() -> int | None:
    """ceil(quota / period) of cgroup v2 ``cpu.max`` (or v1 cfs files); None when unlimited."""
    try:
        text = open("/sys/fs/cgroup/cpu.max").read().split()
        if text and text[0] != "max":
            return max(1, math.ceil(int(text[0]) / int(text[1])))
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return max(1, math.ceil(quota / period)) if quota > 0 else None
    except (OSError, ValueError):
        return None


def resolve(requested: int | None) -> int:
    """The thread count to use: ``requested`` (``--threads``/``CLIMD_THREADS``), capped at the
    allowed CPUs, or the allowed CPUs."""
    allowed = allowed_cpus()
    if requested is None:
        env = os.environ.get("CLIMD_THREADS", "").strip()
        requested = int(env) if env.isdigit() and int(env) > 0 else None
    if requested is None:
        return allowed
    if requested > allowed:
        log.warning("--threads %d is more than the %d CPU(s) this process may use: using %d",
                    requested, allowed, allowed)
        return allowed
    return max(1, requested)


def configure(requested: int | None = None, worker: bool = False) -> int:
    """Limit every thread pool of this process (and of the processes it starts) to the chosen count.

    ``worker=True``: a worker process of a parallel pool; it gets one thread."""
    n = 1 if worker else resolve(requested)
    for var in ENV_VARS:
        os.environ[var] = str(n)
    for var, value in SPIN.items():
        os.environ.setdefault(var, value)
    if "torch" in sys.modules:
        _torch_threads(n)
    _CONFIGURED[:] = [n]
    return n


def _torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:   # only settable before the first parallel work; harmless afterwards
        pass


def configured() -> int:
    """The thread count chosen by :func:`configure` (the allowed CPUs when it was never called)."""
    return _CONFIGURED[0] if _CONFIGURED else allowed_cpus()


def apply_to_torch() -> int:
    """Called right after importing torch in a compute path: torch's pools follow :func:`configure`."""
    n = configured()
    _torch_threads(n)
    return n
