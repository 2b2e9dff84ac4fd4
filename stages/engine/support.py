"""What the training engine needs around its loop: the checkpoint cadence, interrupt handling (finish
the epoch, checkpoint, exit 130), GPU memory peaks and the test hooks (``CLIMD_DEBUG_BATCHES``,
``CLIMD_DEBUG_EPOCH_SLEEP``)."""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass


@dataclass
class Cadence:
    """When to checkpoint: every ``epochs`` epochs (0: never by count) or after ``seconds``."""

    epochs: int = 0
    seconds: float = 60.0

    def due(self, epoch: int, since: float) -> bool:
        return bool(self.epochs and epoch % self.epochs == 0) or time.monotonic() - since >= self.seconds


class Signals:
    """SIGINT/SIGTERM during training: finish the epoch, checkpoint, exit 130 (a second SIGINT aborts).

    ``Signals.active``: the one in force (a SLURM task's preemption handler sets its ``stop``).
    ``Signals.shared`` (a lock-free shared boolean, ``multiprocessing.RawValue``, set by
    :mod:`stages.pipeline.workers` in the parent and in every worker) carries a stop to the worker
    processes at once: a ``kill <parent pid>`` stops every process of the call at the end of its
    current epoch. Nested ``with Signals()`` share the stop."""

    active: "Signals | None" = None
    shared = None

    def __init__(self):
        self._stop = False
        self._old = {}

    @property
    def stop(self) -> bool:
        return self._stop or (Signals.shared is not None and bool(Signals.shared.value))

    @stop.setter
    def stop(self, value: bool) -> None:
        self._stop = value
        if value and Signals.shared is not None:
            Signals.shared.value = True       # no lock: safe inside a signal handler

    def __enter__(self):
        def handler(signum, frame):
            if self._stop and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop = True
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, handler)
        except ValueError:       # not the main thread: no handlers (the caller handles interrupts)
            self._old = {}
        self._outer, Signals.active = Signals.active, self
        return self

    def __exit__(self, *exc):
        Signals.active = self._outer
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def gpu_peak_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def record_batches(epoch: int, members: list, plans: list, notes: list | None = None) -> None:
    """Test hook (CLIMD_DEBUG_BATCHES=FILE): append every replica's batches of this epoch as JSON lines
    (with ``notes``: what else the engine knows of each replica's epoch, e.g. DSRMC's batch losses)."""
    path = os.environ.get("CLIMD_DEBUG_BATCHES")
    if path:
        with open(path, "a") as fh:
            for r, (m, plan) in enumerate(zip(members, plans)):
                fh.write(json.dumps({"run": m.store.run, "seed": m.seed, "epoch": epoch,
                                     "batches": [b.tolist() for b in plan], **(notes[r] if notes else {})}) + "\n")


def batch_inputs(group, xb_all, size: int) -> dict:
    """A batch's model inputs by name from its gathered rows [R, size, columns] (``group``: the
    engine's Group, which knows each input's columns and shape)."""
    shapes = group.unit0.shapes
    return {k: (xb_all[:, :, a:b] if group.model.ones_column else xb_all[:, :, a:b].reshape(group.R, size, *shapes[k]))
            for k, (a, b) in group.columns.items()}


def debug_sleep() -> None:
    delay = os.environ.get("CLIMD_DEBUG_EPOCH_SLEEP")
    if delay:
        time.sleep(float(delay))


def diverged(m, epoch: int | None, history: list[dict]):
    """The error of a replica whose loss or weights became non-finite; nothing of it is saved."""
    from stages.engine import checkpoint
    from stages.errors import TrainingDiverged

    checkpoint.remove(m.path)           # a rerun starts over (with the same options it diverges again)
    when = f"at epoch {epoch} (loss {history[epoch - 1]['loss']})" if epoch else "(its final weights)"
    return TrainingDiverged(
        f"{m.label()}: training diverged {when} with --lr {m.opts.lr:g}: the weights are not finite, so "
        "nothing was saved for this replica",
        fix=f"lower the learning rate (e.g. --lr {m.opts.lr / 10:g}) and rerun; the other replicas are kept")


def empty_epoch(members, epoch: int) -> list[dict]:
    """The history records of a curriculum epoch whose subset is empty (S_t = t/T·N rounds to 0 on
    tiny data): no step, no sample, no loss (NaN, which is not a divergence when nothing was trained).
    The replicas' random streams are not drawn, so the epochs after it are those of a longer subset."""
    names = members[0].unit.class_names
    return [{"subset_size": 0, "steps": 0, "samples_seen": 0, "loss": float("nan"),
             **{f"n_{c}": 0 for c in names}, "epoch": epoch, "phase": "curriculum"} for _ in members]
