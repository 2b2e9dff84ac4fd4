"""Training checkpoints: one per replica, inside its artifact folder, without pickle.

``checkpoint.json`` (key, epoch, history, the replica's random-stream states) points to
``checkpoint-e<epoch>.safetensors`` (parameters, Adam moments, the best-so-far weights) and records
its SHA-256. A new checkpoint is written under a new tensor-file name and the JSON is replaced last,
so a kill at any moment leaves the previous checkpoint valid. Resuming restores everything the next
epoch depends on, so a resumed replica ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import logging
from pathlib import Path

from stages.store import tensorio
from stages.errors import StaleArtifactError

STEM = "checkpoint"
log = logging.getLogger("climd")


def save(directory: Path, key: str, epoch: int, tensors: dict, state: dict) -> None:
    directory = Path(directory)
    name = f"{STEM}-e{epoch:05d}{tensorio.SUFFIX}"
    tensorio.save(directory / STEM, tensors, {"key": key, "epoch": epoch, **state}, tensor_file=name)
    for old in directory.glob(f"{STEM}-e*{tensorio.SUFFIX}"):
        if old.name != name:
            old.unlink(missing_ok=True)


def peek(directory: Path, key: str, total: int | None = None, size: int | None = None) -> int:
    """The epoch a replica resumes after (0: start from scratch). A checkpoint made for other inputs
    or options is removed. A damaged one (unreadable, corrupt bytes, or a field that is not what this
    replica needs: ``total`` epochs, ``size`` parameters) is discarded with a warning naming the file
    and the problem, and the replica trains from the start: that replica only, and bit-identical to a
    run that never had the checkpoint."""
    directory = Path(directory)
    sidecar = directory / f"{STEM}.json"
    if not (sidecar.exists() or sidecar.is_symlink()):
        remove(directory)          # stray tensor files of a checkpoint whose JSON never landed
        return 0
    try:
        meta = tensorio.read_meta(directory / STEM)["meta"]
    except StaleArtifactError as exc:
        return _discard(directory, exc.message)
    if meta.get("key") != key:
        log.info("checkpoint in %s is from other inputs/options: starting over", directory)
        remove(directory)
        return 0
    try:
        tensors, _ = tensorio.load(directory / STEM, as_numpy=True)    # a damaged file is named here
    except StaleArtifactError as exc:
        return _discard(directory, exc.message)
    problem = problem_of(meta, tensors, total, size)
    if problem:
        return _discard(directory, f"{sidecar}: {problem}")
    return meta["epoch"]


def problem_of(meta: dict, tensors: dict, total: int | None, size: int | None) -> str | None:
    """What in a checkpoint's record or tensors cannot be resumed (None: all of it can)."""
    import numpy as np

    epoch = meta.get("epoch")
    if not _int(epoch) or epoch < 1 or (total is not None and epoch >= total):
        return f"epoch {epoch!r} is not between 1 and {'the total' if total is None else total - 1}"
    if not _int(meta.get("steps")) or meta["steps"] < 0:
        return f"steps {meta.get('steps')!r} is not a count"
    history = meta.get("history")
    if not isinstance(history, list) or len(history) != epoch:
        return f"history is not a list of {epoch} epochs"
    for rec in history:
        if not (isinstance(rec, dict) and isinstance(rec.get("loss"), (int, float))
                and _int(rec.get("samples_seen")) and _int(rec.get("steps"))):
            return "history holds an epoch without loss, samples_seen and steps"
    rng = meta.get("rng")
    if not isinstance(rng, dict) or not all(_rng_ok(rng.get(name)) for name in ("order", "noise")):
        return "the random-stream states (rng.order, rng.noise) are missing or malformed"
    best = meta.get("best_epoch")
    if best is not None and not (_int(best) and 1 <= best <= epoch
                                 and isinstance(meta.get("best_score"), (int, float))):
        return f"best_epoch {best!r} / best_score {meta.get('best_score')!r} are not a selected epoch and its score"
    needed = ("params", "exp_avg", "exp_avg_sq") + (("best",) if best is not None else ())
    for name in needed:
        t = tensors.get(name)
        if t is None:
            return f"tensor {name!r} is missing"
        if t.dtype != np.float32 or t.ndim != 1 or (size is not None and t.shape[0] != size):
            return (f"tensor {name!r} is {t.dtype} {list(t.shape)}, the model needs float32 "
                    f"[{size if size is not None else 'P'}]")
    if len({tensors[name].shape[0] for name in needed}) != 1:
        return "its tensors have different lengths"
    return None


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rng_ok(state) -> bool:
    import numpy as np

    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        return False
    try:
        np.random.PCG64().state = state
    except (TypeError, ValueError, KeyError, OverflowError):
        return False
    return True


def _discard(directory: Path, problem: str) -> int:
    log.warning("%s: the checkpoint cannot be resumed (%s): it is discarded and this replica trains from the "
                "start", directory, problem)
    remove(directory)
    return 0


def load(directory: Path, key: str, device: str = "cpu") -> tuple[dict, dict]:
    """(tensors, state) of the checkpoint :func:`peek` accepted; the tensor bytes are verified."""
    try:
        tensors, meta = tensorio.load(Path(directory) / STEM, device=device)
    except StaleArtifactError as exc:
        raise StaleArtifactError(exc.message, fix=_fix(directory)) from None
    if meta.get("key") != key:
        raise StaleArtifactError(f"{directory}: checkpoint changed while resuming", fix=_fix(directory))
    return tensors, meta


def remove(directory: Path) -> None:
    """The checkpoint and the temporary files of checkpoints whose writer was killed (the caller holds
    the folder's lease, so no live writer owns them)."""
    directory = Path(directory)
    (directory / f"{STEM}.json").unlink(missing_ok=True)
    for f in directory.glob(f"{STEM}-e*{tensorio.SUFFIX}"):
        f.unlink(missing_ok=True)
    for f in directory.glob(f".tmp-{STEM}*"):
        if not f.is_dir() or f.is_symlink():
            f.unlink(missing_ok=True)


def _fix(directory: Path) -> str:
    return (f"the checkpoint cannot be resumed: delete {Path(directory) / STEM}.json and "
            f"{Path(directory) / STEM}-e*.safetensors to train this replica from the start "
            "(or rerun with --force, which retrains every replica of the command)")
