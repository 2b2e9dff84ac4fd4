"""``climd train --jobs N``: the replicas to train, split over N worker processes of one thread each.

Workers are started fresh (``spawn``), so each imports torch with the thread limits already in its
environment, and each asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``): a
``kill -9`` of ``climd train`` leaves no orphan. Replicas are dealt in contiguous blocks of the
engine's grouping order, so each worker still batches what it can.
"""
from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    from . import threads

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent_pid:        # the parent died before prctl took effect
            os._exit(1)
    threads.configure(worker=True)


def _work(items: list, force: bool, cadence) -> list[dict]:
    from .store import RunStore
    from .train import run_many

    tasks = [(RunStore(cache, run), opts, seed, variant) for _, cache, run, opts, seed, variant, _ in items]
    commands = [command for *_, command in items]
    results = run_many(tasks, force, 1, cadence, commands)
    return [{"task": items[r["task"]][0], "path": str(r["artifact"].path), "name": r["artifact"].name,
             "cache": items[r["task"]][1], "run": items[r["task"]][2], "reused": r["reused"]} for r in results]


def train_in_workers(todo: list, tasks: list, force: bool, jobs: int, cadence, commands) -> list[dict]:
    """Train the (task index, replica) pairs of ``todo`` in ``jobs`` processes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .store import RunStore

    ordered = sorted(todo, key=lambda item: (item[1].opts.model, item[1].variant, item[1].opts.lr, item[1].seed))
    items = [(i, str(rep.store.cache_dir), rep.store.run, rep.opts, rep.seed, rep.variant,
              commands[i] if commands else "") for i, rep in ordered]
    jobs = min(jobs, len(items))
    size = -(-len(items) // jobs)
    chunks = [items[k:k + size] for k in range(0, len(items), size)]
    with ProcessPoolExecutor(max_workers=len(chunks), mp_context=mp.get_context("spawn"),
                             initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_work, chunk, force, cadence) for chunk in chunks]
        done = [r for f in futures for r in f.result()]
    return [{"task": r["task"], "artifact": RunStore(r["cache"], r["run"]).read(r["name"]), "reused": r["reused"]}
            for r in done]
