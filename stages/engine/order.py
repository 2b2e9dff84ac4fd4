"""The seeded randomness of one training replica, shared by the training engine and by
:class:`stages.sampler.CurriculumSampler` (so a user's own loop sees climd's exact batch order).

A replica's seed feeds one :class:`numpy.random.SeedSequence`, split into independent streams:

* ``init``  - the initial weights;
* ``order`` - the order of training rows: one permutation of the epoch's pool per pass;
* ``noise`` - dropout masks.

Because each replica owns its streams, its result does not depend on which other replicas are
trained beside it. Every stream is a PCG64 generator whose state is plain JSON (checkpoints).
"""
from __future__ import annotations

import numpy as np

from stages.errors import UsageError

STREAMS = ("init", "order", "noise")


def streams(seed: int) -> dict[str, np.random.Generator]:
    """The independent generators of replica ``seed`` (an integer >= 0)."""
    if int(seed) < 0:
        raise UsageError(f"seed {seed} is negative", fix="use seeds >= 0")
    children = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))
    return {name: np.random.Generator(np.random.PCG64(child)) for name, child in zip(STREAMS, children)}


def epoch_batches(gen: np.random.Generator, pool: np.ndarray, batch_size: int,
                  n_steps: int | None = None) -> list[np.ndarray]:
    """Mini-batches of one epoch, as arrays of training rows.

    ``n_steps=None`` (budget "epochs"): one pass over ``pool`` in a random order, the last batch
    possibly smaller. Otherwise (budget "steps"): exactly ``n_steps`` batches of
    min(batch_size, |pool|) rows, cycling through freshly shuffled passes over the pool.
    """
    pool = np.asarray(pool, dtype=np.int64)
    if n_steps is None:
        order = pool[gen.permutation(len(pool))]
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    size = min(batch_size, len(pool))
    buffer, batches = np.empty(0, dtype=np.int64), []
    for _ in range(n_steps):
        while len(buffer) < size:
            buffer = np.concatenate([buffer, pool[gen.permutation(len(pool))]])
        batches.append(buffer[:size])
        buffer = buffer[size:]
    return batches


def balanced_batches(gen: np.random.Generator, pool: np.ndarray, labels: np.ndarray, batch_size: int,
                     n_steps: int) -> list[np.ndarray]:
    """``n_steps`` batches holding batch_size // C rows of every class present in ``pool``, each
    class cycling through fresh permutations of its own rows (CFCML's class-balanced batches)."""
    pool = np.asarray(pool, dtype=np.int64)
    classes = np.unique(labels[pool])
    per_class = max(1, batch_size // len(classes))
    members = {int(c): pool[labels[pool] == c] for c in classes}
    queues = {c: np.empty(0, dtype=np.int64) for c in members}
    batches = []
    for _ in range(n_steps):
        parts = []
        for c, rows in members.items():
            while len(queues[c]) < per_class:
                queues[c] = np.concatenate([queues[c], rows[gen.permutation(len(rows))]])
            parts.append(queues[c][:per_class])
            queues[c] = queues[c][per_class:]
        batches.append(np.concatenate(parts))
    return batches


def steps_per_full_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps of one pass over the whole training split (the unit of ``--budget steps``)."""
    return -(-n_train // batch_size)


def get_state(gen: np.random.Generator) -> dict:
    """JSON-able state of a generator (for checkpoints)."""
    return gen.bit_generator.state


def set_state(gen: np.random.Generator, state: dict) -> None:
    gen.bit_generator.state = state
