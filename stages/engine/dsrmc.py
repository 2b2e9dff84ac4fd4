"""DSRMC, the Dynamic SRM Curriculum (Zhu et al., ICASSP 2025), as a batch-ordering curriculum for
the training engine: ``climd train --curriculum dsrmc``.

Read from the authors' code (github.com/HackerHyper/DSRMC, ``train_test.py``, ``train_epoch``): at the
start of every epoch the current model is copied (the *snapshot*); the training set is cut into random
mini-batches; the snapshot's training loss of every batch (the mean over the batch) orders the batches
easy -> hard (ascending loss; ties keep their drawn order); the epoch trains on the first n_t of them:

    n_t = min(N_b, ceil(t * N_b / m) + 1),   t = 1..T (1-based epoch),  m = pace * T,

where N_b is the number of batches. The authors' loop stops once its counter reaches
(t / m) * N_b + 1, with m fixed per data set: 85 in the released code, which trains 101 epochs (the
log names of their run scripts say 40 for ROSMAP, 30 for BRCA). ``pace`` = m / T is that number as a
fraction of the epochs, 0.85 by default. The snapshot is the model at the start of the epoch,
refreshed every epoch.

The count, the order and the epoch's plan are pure functions; :mod:`stages.engine.loop` calls
:func:`order_epoch`, which scores each replica's batches with its own parameters, loss and model.
See docs/method-dsrmc.md.
"""
from __future__ import annotations

import math

import numpy as np

from stages.engine import order
from stages.engine.support import batch_inputs
from stages.errors import UsageError

NAME = "dsrmc"
DEFAULT_PACE = 0.85


def check_pace(pace: float) -> None:
    if isinstance(pace, bool) or not isinstance(pace, (int, float)) or not math.isfinite(pace) or pace <= 0:
        raise UsageError(f"--dsrmc-pace must be a number > 0, got {pace!r}",
                         fix="e.g. --dsrmc-pace 0.85 (every batch from epoch 0.85 T on; the authors' 85 of 100)")


def n_batches(n_train: int, batch_size: int) -> int:
    """N_b: the candidate batches of an epoch (ceil(N / B), as the authors' DataLoader)."""
    return -(-n_train // batch_size)


def paced_count(t: int, total_batches: int, epochs: int, pace: float = DEFAULT_PACE) -> int:
    """n_t = min(N_b, ceil(t N_b / m) + 1), m = pace T: the easiest batches epoch t trains on. The
    product is rounded to 9 decimals before the ceiling so that 0.85 * 100 = 85.00000000000001
    cannot add a batch."""
    m = round(pace * epochs, 9)
    return int(min(total_batches, math.ceil(round(t * total_batches / m, 9)) + 1))


def easy_to_hard(batch_losses) -> np.ndarray:
    """Batch indices by ascending snapshot loss; equal losses keep their drawn order (Python's
    ``sorted`` in the authors' code is stable too). A NaN loss sorts last."""
    return np.argsort(np.asarray(batch_losses, dtype=np.float64), kind="stable")


def candidates(gen: np.random.Generator, pool: np.ndarray, labels: np.ndarray, batch_size: int,
               batching: str) -> list[np.ndarray]:
    """The epoch's N_b = ceil(|pool| / B) random batches, all of one size: shuffled (the last one
    topped up from a fresh permutation, so every row is seen once and the losses of batches are
    means over the same count) or class-balanced (models that ask for it)."""
    k = n_batches(len(pool), batch_size)
    if batching == "class-balanced":
        return order.balanced_batches(gen, pool, labels, batch_size, k)
    return order.epoch_batches(gen, pool, batch_size, n_steps=k)


def plan(batches: list[np.ndarray], batch_losses, t: int, epochs: int, pace: float = DEFAULT_PACE,
         n_steps: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """(the batches epoch t <= T trains on, in order; the easy->hard order of all of them). With
    ``n_steps`` (``--budget steps``), the n_t easiest batches are cycled, easy->hard, for n_steps steps."""
    ranked = easy_to_hard(batch_losses)
    used = paced_count(t, len(batches), epochs, pace)
    chosen = [batches[i] for i in ranked[:used]]
    if n_steps is not None:
        chosen = [chosen[s % used] for s in range(n_steps)]
    return chosen, ranked


def steps(n_train: int, batch_size: int, t: int, epochs: int, pace: float, budget: str) -> int:
    """The optimizer steps of curriculum epoch t <= T, known before training (the engine groups
    replicas on it): N_b with ``--budget steps`` (a full-data epoch's), else n_t."""
    total = n_batches(n_train, batch_size)
    return total if budget == "steps" else paced_count(t, total, epochs, pace)


def snapshot_losses(group, batches: list[list[np.ndarray]], epoch: int, torch) -> np.ndarray:
    """[R, N_b]: every replica's training loss of each of its candidate batches under its parameters
    at the start of the epoch (the snapshot): its own ``--loss`` (at this epoch) plus the model's
    auxiliary losses, a mean over the batch as the authors' ``loss_tmp``, without dropout.
    ``group`` is the engine's :class:`stages.engine.loop.Group`; nothing here touches a random stream."""
    R, n = group.R, len(batches[0])
    out = []
    group.model.train_mode(False)
    with torch.no_grad():
        for j in range(n):
            rows = np.stack([b[j] for b in batches]) + group.offset[:, None]
            index = torch.as_tensor(rows.reshape(-1), device=group.device)
            size = rows.shape[1]
            x = batch_inputs(group, group.X.index_select(0, index).view(R, size, -1), size)
            y = group.Y.index_select(0, index).view(R, size)
            result = group.model.forward(group.params, x, None, y)
            per = group.loss(result.logits, y, epoch, torch)
            if result.aux_loss is not None:
                per = per + result.aux_loss
            out.append(per.double())
    return torch.stack(out, dim=1).cpu().numpy()                # one transfer from a GPU per epoch


def signature(rep, batch_size: int) -> tuple:
    """What replicas trained in one program must share beyond their step plan: the candidate count
    (their snapshot losses are scored side by side) and the pacing."""
    return NAME, n_batches(rep.unit.n, batch_size), rep.epochs, rep.opts.dsrmc_pace


def order_epoch(group, candidates: list, epoch: int, torch) -> tuple[list, list[dict], list]:
    """Each replica's DSRMC epoch: its candidate batches ordered easy->hard by its snapshot's loss and
    cut to the paced count, with what its history (``dsrmc_*``) and the batch log record, and the
    rows it trains on."""
    losses = snapshot_losses(group, candidates, epoch, torch)
    plans, notes = [], []
    for r, m in enumerate(group.members):
        full = len(candidates[r]) if m.opts.budget == "steps" else None    # N_b: a full-data epoch's steps
        chosen, ranked = plan(candidates[r], losses[r], epoch, m.epochs, m.opts.dsrmc_pace, full)
        used = paced_count(epoch, len(ranked), m.epochs, m.opts.dsrmc_pace)
        plans.append(chosen)
        notes.append({"dsrmc_batches": used, "dsrmc_loss_first": float(losses[r, ranked[0]]),
                      "dsrmc_loss_last": float(losses[r, ranked[used - 1]]),
                      "order": ranked.tolist(), "losses": losses[r].tolist(),
                      "candidates": [b.tolist() for b in candidates[r]]})
    return plans, notes, [np.unique(np.concatenate(p)) for p in plans]
