"""Several worker processes for one ``climd train`` call: the replicas are split into contiguous
blocks of the engine's grouping order (so each worker still vectorises what it holds), and every
worker runs with an equal share of this process's CPUs (one thread each on a 2-core machine).

The workers are a :class:`concurrent.futures.ProcessPoolExecutor`, forked before torch is imported
(they start at once and share the parent's loaded modules; a spawned process would pay Python's and
torch's start-up again), spawned when torch is already imported (forking a process with live OpenMP
threads is unsafe). Each worker asks the kernel to kill it when its parent dies
(``PR_SET_PDEATHSIG``), so a ``kill -9`` of ``climd train`` leaves no orphan; a SIGTERM or SIGINT to
the parent reaches every worker at once through a shared flag (:class:`stages.engine.support.Signals`),
so each checkpoints at the end of its epoch and the call exits 130. The parent trains the first block
itself. A worker's failure comes back as the :class:`~stages.errors.ClimdError` it is (its class, exit
code, message and fix; the traceback only with ``--debug``); a worker that was killed is
:class:`~stages.errors.WorkerLost` (exit 9).
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


def _init_worker(parent_pid: int, threads_per_worker: int, stop_flag) -> None:
    """Every worker: die with the parent, its share of the threads, no progress bars, and the
    parent's stop flag. SIGINT is ignored while idle (a Ctrl-C reaches the parent, which sets the
    flag); the engine's own handlers take over while a worker trains."""
    die_with_parent(parent_pid)
    from stages.engine.support import Signals
    from stages.runtime import progress, threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threads.configure(threads_per_worker)
    progress.set_enabled(False)
    Signals.shared = stop_flag


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


def _worker_block(block: list, force: bool, cadence, run_many) -> list[dict]:
    """:func:`_train_block` in a worker: any failure goes back to the parent as a ClimdError (its
    class and exit code kept; an unexpected one as exit 1 with its traceback for --debug)."""
    from stages import errors
    from stages.core.failures import classify, describe_bug

    try:
        return _train_block(block, force, cadence, run_many)
    except KeyboardInterrupt:
        raise errors.InterruptedRun("interrupted", fix="rerun the same command to resume") from None
    except BaseException as exc:
        known = classify(exc)
        if known is None:
            known = errors.ClimdError(f"a training worker failed: {describe_bug(exc)}",
                                      fix="this is a bug in climd: rerun with `climd --debug ...` for the "
                                          "traceback and report it")
        known.detail = "".join(traceback.format_exception(exc))
        known.__traceback__ = None
        raise known from None


def train_in_workers(todo: list, force: bool, jobs: int, cadence, commands, run_many) -> list[dict]:
    """Train the (task index, replica) pairs of ``todo`` in ``jobs`` processes (this one included),
    each block through ``run_many`` (:func:`stages.pipeline.train.run_many`, one process each)."""
    import ctypes
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from stages import errors
    from stages.core.failures import classify
    from stages.engine.support import Signals
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
        return _read_all(RunStore, _train_block(items, force, cadence, run_many))
    size = -(-len(items) // jobs)
    blocks = [items[k:k + size] for k in range(0, len(items), size)]
    before = threads.configured()
    per_worker = max(1, before // len(blocks))
    ctx = mp.get_context("spawn" if "torch" in sys.modules else "fork")
    stop_flag = ctx.RawValue(ctypes.c_bool, False)
    done, problems = [], []
    saved_flag, Signals.shared = Signals.shared, stop_flag
    try:
        with Signals() as signals, ProcessPoolExecutor(len(blocks) - 1, mp_context=ctx, initializer=_init_worker,
                                                       initargs=(os.getpid(), per_worker, stop_flag)) as pool:
            futures = [pool.submit(_worker_block, block, force, cadence, run_many) for block in blocks[1:]]
            threads.configure(per_worker)
            try:
                done = _train_block(blocks[0], force, cadence, run_many)
            except errors.ClimdError as exc:
                problems.append(exc)
            except BaseException as exc:
                known = classify(exc)
                if known is None:
                    raise
                problems.append(known)
            finally:
                threads.configure(before)             # the parent's own thread count again
            for future in futures:
                try:
                    done += future.result()
                except errors.ClimdError as exc:
                    problems.append(exc)
                except BrokenProcessPool:
                    problems.append(_lost(signals.stop))
    finally:
        Signals.shared = saved_flag
    if problems:    # one message: an interrupt first, then every replica that did not train
        first = next((p for p in problems if isinstance(p, errors.InterruptedRun)), problems[0])
        if not isinstance(first, errors.InterruptedRun):
            first.message = "; ".join(dict.fromkeys(p.message for p in problems))
        raise first
    return _read_all(RunStore, done)


def _lost(stopping: bool):
    from stages import errors

    if stopping:
        return errors.InterruptedRun("interrupted: a worker ended before it could checkpoint",
                                     fix="rerun the same command to resume")
    return errors.WorkerLost(
        "a training worker process was killed before it finished (by a signal, or by the kernel's "
        "out-of-memory killer: see `dmesg` or the job's accounting)",
        fix="rerun the same command: it resumes from the last checkpoints; if memory ran out, give the job "
            "more memory or use fewer --jobs")


def _read_all(RunStore, results: list[dict]) -> list[dict]:
    return [{"task": r["task"], "artifact": RunStore(r["cache"], r["run"]).read(r["name"]), "reused": r["reused"]}
            for r in results]
