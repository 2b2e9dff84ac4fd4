"""Several worker processes for one ``climd train`` call: the replicas are split into contiguous
blocks of the engine's grouping order (so each worker still vectorises what it holds), and every
worker runs with an equal share of this process's CPUs (one thread each on a 2-core machine).

Workers are forked before torch is imported, so they start at once and share the parent's loaded
modules (a spawned process would pay Python's and torch's start-up again); when torch is already
imported they are spawned instead (forking a process with live OpenMP threads is unsafe). Each worker
asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of
``climd train`` leaves no orphan. The parent trains the first block itself.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import traceback

log = logging.getLogger("climd")
PR_SET_PDEATHSIG = 1
MIN_PER_WORKER = 4       # vectorised replicas a worker needs to be worth its own torch import


def auto_jobs(replicas: list, device: str, cpus: int) -> int:
    """Workers for ``--jobs auto``: on the CPU, one per MIN_PER_WORKER vectorised replicas (each
    non-vectorised replica counts as a whole worker's load), at most one per CPU."""
    from stages.models import registry

    if device != "cpu" or cpus < 2:
        return 1
    models = registry()
    load = sum(1.0 if getattr(models[r.opts.model], "vectorised", False) else MIN_PER_WORKER for r in replicas)
    return max(1, min(cpus, int(load // MIN_PER_WORKER)))


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent_pid:        # the parent died before prctl took effect
            os._exit(1)


def _payload(rep, command: str) -> tuple:
    return (str(rep.store.cache_dir), rep.store.run, rep.opts, rep.seed, rep.variant, command)


def _train_block(block: list, force: bool, cadence, run_many) -> list[dict]:
    """``run_many``: the train stage's own function (passed in, so this pool never imports the stage
    it serves)."""
    from stages.store.artifacts import RunStore

    tasks = [(RunStore(cache, run), opts, seed, variant) for _, (cache, run, opts, seed, variant, _) in block]
    results = run_many(tasks, force, 1, cadence, [cmd for _, (*_, cmd) in block])
    return [{"task": block[r["task"]][0], "cache": block[r["task"]][1][0], "run": block[r["task"]][1][1],
             "name": r["artifact"].name, "reused": r["reused"]} for r in results]


def _child(block: list, force: bool, cadence, run_many, threads_per_worker: int, parent_pid: int, conn) -> None:
    die_with_parent(parent_pid)
    from stages.runtime import progress
    from stages.runtime import threads

    threads.configure(threads_per_worker)
    progress.set_enabled(False)
    try:
        conn.send(("ok", _train_block(block, force, cadence, run_many)))
    except BaseException as exc:           # report any failure to the parent, which raises it
        from stages.errors import ClimdError

        if isinstance(exc, ClimdError):
            conn.send(("climd", (type(exc).__name__, exc.message, exc.fix)))
        else:
            conn.send(("bug", "".join(traceback.format_exception(exc))))
    finally:
        conn.close()
        os._exit(0)


def train_in_workers(todo: list, force: bool, jobs: int, cadence, commands, run_many) -> list[dict]:
    """Train the (task index, replica) pairs of ``todo`` in ``jobs`` processes (this one included),
    each block through ``run_many`` (:func:`stages.pipeline.train.run_many`, one process each)."""
    import multiprocessing as mp

    from stages import errors
    from stages.runtime import threads
    from stages.store.artifacts import RunStore

    ordered = sorted(todo, key=lambda item: (item[1].opts.model, item[1].variant, item[1].opts.lr, item[1].seed))
    items = [(i, _payload(rep, commands[i] if commands else "")) for i, rep in ordered]
    if jobs > threads.configured():
        log.warning("--jobs %d is more than the %d CPU(s) this process may use: using %d",
                    jobs, threads.configured(), threads.configured())
        jobs = threads.configured()
    jobs = max(1, min(jobs, len(items)))
    if jobs == 1:
        return [{"task": r["task"], "artifact": RunStore(r["cache"], r["run"]).read(r["name"]), "reused": r["reused"]}
                for r in _train_block(items, force, cadence, run_many)]
    size = -(-len(items) // jobs)
    blocks = [items[k:k + size] for k in range(0, len(items), size)]
    per_worker = max(1, threads.configured() // len(blocks))
    ctx = mp.get_context("spawn" if "torch" in sys.modules else "fork")
    children = []
    for block in blocks[1:]:
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(block, force, cadence, run_many, per_worker, os.getpid(), send), daemon=True)
        proc.start()
        send.close()
        children.append((proc, receive))
    threads.configure(per_worker)
    done, problems = [], []
    try:
        done = _train_block(blocks[0], force, cadence, run_many)
    except errors.ClimdError as exc:
        problems.append(exc)
    for proc, receive in children:
        try:
            kind, value = receive.recv()
        except EOFError:
            kind, value = "bug", f"worker {proc.pid} died without a result (exit code {proc.exitcode})"
        proc.join()
        if kind == "ok":
            done += value
        elif kind == "climd":
            name, message, fix = value
            problems.append(getattr(errors, name, errors.ClimdError)(message, fix=fix))
        else:
            problems.append(errors.ClimdError(f"a training worker failed:\n{value}"))
    if problems:
        raise problems[0]
    return [{"task": r["task"], "artifact": RunStore(r["cache"], r["run"]).read(r["name"]), "reused": r["reused"]}
            for r in done]
