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


def peek(directory: Path, key: str) -> int:
    """The epoch a replica resumes after (0: start from scratch). A checkpoint made for other
    inputs or options is removed; a damaged one raises StaleArtifactError naming the file."""
    directory = Path(directory)
    if not (directory / f"{STEM}.json").exists():
        remove(directory)          # stray tensor files of a checkpoint whose JSON never landed
        return 0
    try:
        meta = tensorio.read_meta(directory / STEM)["meta"]
    except StaleArtifactError as exc:
        raise StaleArtifactError(exc.message, fix=_fix(directory)) from None
    if meta.get("key") != key:
        log.info("checkpoint in %s is from other inputs/options: starting over", directory)
        remove(directory)
        return 0
    epoch = meta.get("epoch")
    if not isinstance(epoch, int) or epoch < 1:
        raise StaleArtifactError(f"{directory / STEM}.json has no valid epoch", fix=_fix(directory))
    try:
        tensorio.verify(directory / STEM)           # a damaged checkpoint is named before training starts
    except StaleArtifactError as exc:
        raise StaleArtifactError(exc.message, fix=_fix(directory)) from None
    return epoch


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
    directory = Path(directory)
    (directory / f"{STEM}.json").unlink(missing_ok=True)
    for f in directory.glob(f"{STEM}-e*{tensorio.SUFFIX}"):
        f.unlink(missing_ok=True)


def _fix(directory: Path) -> str:
    return (f"the checkpoint cannot be resumed: delete {Path(directory) / STEM}.json and "
            f"{Path(directory) / STEM}-e*.safetensors to train this replica from the start "
            "(or rerun with --force, which retrains every replica of the command)")
