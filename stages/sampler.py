"""A climd schedule as a PyTorch sampler, for a model trained in your own loop.

    from stages.sampler import CurriculumSampler
    sampler = CurriculumSampler.from_run("brca-s0", seed=0)            # after `climd schedule`
    loader = DataLoader(dataset, batch_size=32, sampler=sampler)     # sampler.set_epoch(t) per epoch

Epoch t yields the rows of the schedule's ``epoch_t.txt`` in exactly the order ``climd train --seed
k`` uses (:mod:`stages.engine.order`): replica seed k -> its ``order`` stream, one draw per epoch, epoch after
epoch. With ``DataLoader(batch_size=B)`` the batches are climd's batches for ``--batch-size B``;
:class:`CurriculumBatchSampler` also reproduces ``--budget steps`` and ``--finish-epochs``.

Both classes implement the sampler protocol (``__iter__``, ``__len__``, ``set_epoch``) without
importing torch, so this module imports (and samples) without it.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from stages.data import features
from stages.engine import order
from stages.errors import DataError, MissingArtifactError, UsageError, check_choices
from stages.core.names import check_name
from stages.pipeline.schedule import STAGE as SCHEDULE_STAGE
from stages.store.layout import epoch_file, read_epoch_ids
from stages.store.artifacts import Artifact, RunStore

BUDGETS = ("epochs", "steps")
FIRST_EPOCH = (0, 1)


def read_ids(path: Path | str) -> list[str]:
    """The ids of one epoch file: one id per line (ids may contain spaces); an empty file is an empty
    epoch (the same reader the engine uses)."""
    return read_epoch_ids(path)


def _few(values, k: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(str(v)) for v in values[:k])
    return shown + (f" and {len(values) - k} more" if len(values) > k else "")


class _ScheduleSampler:
    """What both samplers share: the schedule's rows per epoch and the replay of the order stream."""

    def __init__(self, subsets: Sequence[Sequence[str]], train_ids: Sequence[str], *, seed: int = 0,
                 finish_epochs: int = 0, ids: Sequence | None = None, first_epoch: int = 1):
        self.subsets = subsets
        self.train_ids = train_ids
        self.seed = seed
        self.finish_epochs = finish_epochs
        self.ids = ids
        self.first_epoch = first_epoch
        self._validate()
        self.schedule_path_: Path | None = None
        self.epoch = 1
        self._epoch_set, self._iterations = False, 0
        self._states = {1: order.get_state(order.streams(seed)["order"])}

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run: str, schedule: str = "schedule", cache_dir: Path | str | None = None, **params):
        """The schedule artifact ``schedule`` (``schedule``, ``schedule.<pacing>`` or
        ``schedule.<tag>``) of run ``run`` in ``cache_dir`` (default: ``$CLIMD_CACHE`` or ``./cache``).
        ``params`` are the constructor's keyword arguments."""
        store = RunStore(cache_dir, run)
        check_name(schedule, "schedule artifact name")
        if schedule.split(".")[0] != SCHEDULE_STAGE:
            raise UsageError(f"{schedule!r} is not a schedule artifact name",
                             fix=f"use 'schedule', 'schedule.<pacing>' or 'schedule.<tag>' (the schedule* "
                                 f"folders in {store.root})")
        return cls._from_store(store, schedule, **params)

    @classmethod
    def from_artifact(cls, path: Path | str, **params):
        """The schedule artifact directory ``path`` (``<cache>/<run>/schedule[.X]``)."""
        path = Path(os.path.abspath(path))
        if not path.is_dir():
            raise MissingArtifactError(f"no schedule artifact at {path}",
                                       fix="build it with `climd schedule --run RUN` or check the path")
        return cls._from_store(RunStore(path.parent.parent, path.parent.name), path.name, **params)

    @classmethod
    def _from_store(cls, store: RunStore, name: str, **params):
        sched = store.load(name)          # refuses a missing, incomplete, corrupt or stale schedule
        if sched.stage != SCHEDULE_STAGE:
            raise UsageError(f"{sched.path} is a {sched.stage} artifact, not a schedule",
                             fix=f"pass a schedule artifact (`climd schedule --run {store.run}` builds one)")
        enc = store.load(_ancestor(store, sched, "encode") or "encode")
        feats = features.read(enc.file(features.FILE))
        train_ids = feats.ids[feats.indices("train")]
        subsets = [read_ids(sched.file(epoch_file(t))) for t in range(1, int(sched.params["epochs"]) + 1)]
        obj = cls(subsets, train_ids, **params)
        obj.schedule_path_ = sched.path
        return obj

    # -- checks ----------------------------------------------------------------------------------
    def _validate(self) -> None:
        check_choices((self.first_epoch, FIRST_EPOCH, "first_epoch"))
        if not isinstance(self.finish_epochs, (int, np.integer)) or self.finish_epochs < 0:
            raise UsageError(f"finish_epochs={self.finish_epochs!r} is not an integer >= 0",
                             fix="pass the --finish-epochs of the climd training to reproduce (default 0)")
        if len(self.subsets) == 0:
            raise DataError("the schedule has no epochs", fix="rebuild it with `climd schedule --epochs T`")
        self.train_ids_ = np.asarray([str(i) for i in self.train_ids], dtype=object)
        self.n_train_ = len(self.train_ids_)
        self.epochs_ = len(self.subsets)
        self.total_epochs_ = self.epochs_ + int(self.finish_epochs)
        row = {i: r for r, i in enumerate(self.train_ids_)}
        if len(row) != self.n_train_:
            dup = sorted(i for i, n in Counter(self.train_ids_.tolist()).items() if n > 1)
            raise DataError(f"the training ids are not unique: {_few(dup)}", fix="give every sample its own id")
        self._pools = []
        for t, subset in enumerate(self.subsets, start=1):
            missing = [i for i in subset if str(i) not in row]
            if missing:
                raise DataError(f"epoch {t} of the schedule lists ids that are not in the training split: "
                                f"{_few(missing)}",
                                fix="the schedule and the encode artifact differ: rebuild the schedule "
                                    "(`climd schedule --run RUN`)")
            self._pools.append(np.fromiter((row[str(i)] for i in subset), dtype=np.int64, count=len(subset)))
        self._targets = None if self.ids is None else self._map_ids(self.ids)

    def _map_ids(self, ids: Sequence) -> np.ndarray:
        """Position in the user's dataset of every training row (-1: never sampled, so absent is fine)."""
        wanted = np.zeros(self.n_train_, dtype=bool)
        for pool in self._pools:
            wanted[pool] = True
        if self.finish_epochs:
            wanted[:] = True
        position: dict[str, int] = {}
        duplicated = set()
        for p, i in enumerate(ids):
            key = str(i)
            if key in position:
                duplicated.add(key)
            position[key] = p
        needed = self.train_ids_[wanted]
        missing = [i for i in needed if i not in position]
        if missing:
            raise DataError(f"{len(missing)} of the {len(needed)} ids the schedule samples are not in ids=: "
                            f"{_few(missing)}",
                            fix="pass ids= listing every sample of your dataset, in its order "
                                "(climd's training ids are sampler.train_ids_; ids compare as strings)")
        clash = sorted(duplicated.intersection(needed))
        if clash:
            raise DataError(f"ids= lists these sampled ids more than once: {_few(clash)}",
                            fix="give every sample of your dataset its own id")
        return np.array([position.get(i, -1) for i in self.train_ids_], dtype=np.int64)

    def _schedule_epoch(self, t: int) -> int:
        if int(t) != t or not 1 <= t <= self.total_epochs_:
            finish = f" + {self.finish_epochs} finishing" if self.finish_epochs else ""
            raise UsageError(f"epoch {t} is not in the schedule: it has epochs 1..{self.total_epochs_} "
                             f"({self.epochs_} curriculum epochs{finish})",
                             fix="schedule epochs are numbered from 1 like its files; pass finish_epochs=K "
                                 "for K full-data epochs after the curriculum")
        return int(t)

    # -- epochs ----------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the next iteration yields (``first_epoch=1``: 1..T, then the finishing
        epochs; ``first_epoch=0``: 0..T-1, as PyTorch Lightning's ``current_epoch``)."""
        t = int(epoch) - self.first_epoch + 1
        if int(epoch) != epoch or not 1 <= t <= self.total_epochs_:
            first, last = self.first_epoch, self.total_epochs_ - 1 + self.first_epoch
            finish = f" + {self.finish_epochs} finishing" if self.finish_epochs else ""
            fix = ("this sampler counts epochs from 1; for a loop counting from 0 (Lightning) pass first_epoch=0"
                   if epoch == 0 else f"stop after epoch {last}, or pass finish_epochs=K for K full-data epochs "
                   "after the curriculum")
            raise UsageError(f"set_epoch({epoch}): the schedule has epochs {first}..{last} "
                             f"({self.epochs_} curriculum epochs{finish}, counted from {first})", fix=fix)
        self.epoch, self._epoch_set = t, True

    def subset(self, t: int) -> list[str]:
        """The ids of schedule epoch ``t`` (1-based) in the order of its file; a finishing epoch
        (t > ``epochs_``) is the whole training split."""
        t = self._schedule_epoch(t)
        return [str(i) for i in self.subsets[t - 1]] if t <= self.epochs_ else list(self.train_ids_)

    def _pool(self, t: int) -> np.ndarray:
        return self._pools[t - 1] if t <= self.epochs_ else np.arange(self.n_train_, dtype=np.int64)

    def _draw(self, gen: np.random.Generator, t: int) -> list[np.ndarray]:
        raise NotImplementedError

    def _batches(self, t: int) -> list[np.ndarray]:
        """climd's batches (training rows) of epoch t: the order stream replayed from epoch 1, so
        any epoch equals the one reached by iterating in sequence. Generator states are cached."""
        start = max(e for e in self._states if e <= t)
        gen = order.streams(self.seed)["order"]
        order.set_state(gen, self._states[start])
        for e in range(start, t + 1):
            batches = self._draw(gen, e)
            self._states.setdefault(e + 1, order.get_state(gen))
        return batches

    def _to_user(self, rows: np.ndarray) -> list[int]:
        return (rows if self._targets is None else self._targets[rows]).tolist()

    def _epoch_batches(self) -> list[np.ndarray]:
        if self._iterations and not self._epoch_set:
            warnings.warn(f"{type(self).__name__} yields epoch {self.epoch} again: call "
                          "sampler.set_epoch(t) before each epoch, or every epoch trains on the same subset",
                          UserWarning, stacklevel=3)
            self._epoch_set = True          # warn once
        self._iterations += 1
        return self._batches(self.epoch)

    def __repr__(self) -> str:
        where = f"{self.schedule_path_}, " if self.schedule_path_ else ""
        return (f"{type(self).__name__}({where}epochs_={self.epochs_}, finish_epochs={self.finish_epochs}, "
                f"seed={self.seed}, epoch={self.epoch})")


class CurriculumSampler(_ScheduleSampler):
    """Yields, per epoch, the row indices of that epoch's subset in the run's seeded order.

        from stages.sampler import CurriculumSampler
        sampler = CurriculumSampler.from_run("brca-s0", seed=0, ids=my_dataset_ids)
        loader = DataLoader(my_dataset, batch_size=32, sampler=sampler)   # sampler.set_epoch(t)

    Parameters (stored as given): ``subsets`` (the ids of each schedule epoch), ``train_ids`` (the
    training split's ids in encode order), ``seed`` (the replica seed of ``climd train --seed``),
    ``finish_epochs`` (full-data epochs after the curriculum, ``--finish-epochs``), ``ids`` (your
    dataset's sample ids in its order: indices then point into your dataset; ids it lists that the
    schedule never samples are ignored), ``first_epoch`` (1, or 0 for loops counting from 0).

    Attributes: ``epochs_`` (T), ``total_epochs_`` (T + finish_epochs), ``train_ids_`` (climd's
    training ids; the default indices are positions in it), ``n_train_``, ``schedule_path_`` (the
    artifact read, or None) and ``epoch`` (the schedule epoch, 1-based, the next iteration yields).

    Iterating yields epoch ``epoch`` in the order of climd's ``--budget epochs``: one shuffled pass,
    so ``DataLoader(batch_size=B)`` makes climd's batches of size B. ``len()`` is the subset size.
    Use :class:`CurriculumBatchSampler` for ``--budget steps``.
    """

    def _draw(self, gen, t):
        pool = self._pool(t)
        return order.epoch_batches(gen, pool, max(1, len(pool)))

    def __iter__(self) -> Iterator[int]:
        batches = self._epoch_batches()
        rows = np.concatenate(batches) if batches else np.empty(0, dtype=np.int64)
        return iter(self._to_user(rows))

    def __len__(self) -> int:
        return len(self._pool(self.epoch))


class CurriculumBatchSampler(_ScheduleSampler):
    """Yields, per epoch, climd's mini-batches (lists of row indices): pass it as ``batch_sampler=``.

        from stages.sampler import CurriculumBatchSampler
        batches = CurriculumBatchSampler.from_run("brca-s0", batch_size=32, budget="steps", seed=0)
        loader = DataLoader(my_dataset, batch_sampler=batches)   # batches.set_epoch(t) per epoch

    Parameters: those of :class:`CurriculumSampler`, plus ``batch_size`` (``--batch-size``),
    ``budget`` (``"epochs"``: one pass over the epoch's subset, the last batch possibly smaller;
    ``"steps"``: as many batches as a full-data epoch, ceil(n_train / batch_size), each of
    min(batch_size, subset size) rows, cycling through fresh shuffles of the subset) and
    ``drop_last`` (drop a last batch smaller than ``batch_size``; with ``"steps"`` there is none).
    Same attributes; ``len()`` is the number of batches of the current epoch.
    """

    def __init__(self, subsets: Sequence[Sequence[str]], train_ids: Sequence[str], *, batch_size: int = 32,
                 budget: str = "epochs", drop_last: bool = False, seed: int = 0, finish_epochs: int = 0,
                 ids: Sequence | None = None, first_epoch: int = 1):
        check_choices((budget, BUDGETS, "budget"))
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise UsageError(f"batch_size={batch_size!r} is not an integer >= 1",
                             fix="pass the --batch-size of the climd training to reproduce (default 32)")
        self.batch_size, self.budget, self.drop_last = int(batch_size), budget, bool(drop_last)
        super().__init__(subsets, train_ids, seed=seed, finish_epochs=finish_epochs, ids=ids,
                         first_epoch=first_epoch)

    def _n_steps(self) -> int | None:
        return order.steps_per_full_epoch(self.n_train_, self.batch_size) if self.budget == "steps" else None

    def _draw(self, gen, t):
        return order.epoch_batches(gen, self._pool(t), self.batch_size, self._n_steps())

    def __iter__(self) -> Iterator[list[int]]:
        for rows in self._epoch_batches():
            if len(rows) == 0 or (self.drop_last and self.budget == "epochs" and len(rows) < self.batch_size):
                continue
            yield self._to_user(rows)

    def __len__(self) -> int:
        n = len(self._pool(self.epoch))
        if n == 0:
            return 0
        if self.budget == "steps":
            return self._n_steps()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def _ancestor(store: RunStore, artifact: Artifact, stage: str) -> str | None:
    """The name of the nearest input artifact of ``stage`` upstream of ``artifact``."""
    for rec in artifact.meta.get("inputs", {}).values():
        if "artifact" not in rec:
            continue
        parent = store.read(rec["artifact"])
        found = parent.name if parent.stage == stage else _ancestor(store, parent, stage)
        if found:
            return found
    return None
