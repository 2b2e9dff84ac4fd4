"""Tensors on disk without pickle: a ``.safetensors`` file (raw little-endian arrays and a JSON
header, nothing executable) and a ``.json`` sidecar with the metadata and the SHA-256 of the tensor
file. A cache is shared on clusters, so nothing read from it may run code: loading parses JSON,
checks the size and hash of the tensor bytes, and only then decodes them.

    save(directory / "model", {"w": tensor}, {"model": "early-fusion"})
    tensors, meta = load(directory / "model")       # StaleArtifactError when damaged
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from stages.store.atomic import atomic_write_bytes, atomic_write_json
from stages.errors import StaleArtifactError

FORMAT = "climd-tensors/1"
SUFFIX = ".safetensors"
_PLAIN = re.compile(r"^[A-Za-z0-9._-]+$")


def save(stem: Path, tensors: dict, meta: dict, tensor_file: str | None = None) -> Path:
    """Write ``<stem>.safetensors`` (or ``tensor_file`` beside it), then ``<stem>.json``.

    The JSON is written last, so a reader never sees a sidecar whose tensors are missing; writing
    checkpoints under a new ``tensor_file`` name keeps the previous pair valid until the new JSON lands.
    """
    stem = Path(stem)
    name = tensor_file or stem.name + SUFFIX
    data = encode(tensors)
    atomic_write_bytes(stem.parent / name, data)
    atomic_write_json(stem.with_name(stem.name + ".json"), {
        "format": FORMAT, "tensors": name, "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data), "meta": meta})
    return stem.parent / name


def encode(tensors: dict) -> bytes:
    import numpy as np
    from safetensors.numpy import save as np_save

    arrays = {}
    for key, value in tensors.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arrays[key] = np.ascontiguousarray(value)
    return np_save(arrays)


def read_meta(stem: Path) -> dict:
    """The sidecar of ``stem`` (StaleArtifactError when missing, unreadable or malformed)."""
    stem = Path(stem)
    path = stem.with_name(stem.name + ".json")
    if not path.is_file():
        raise StaleArtifactError(f"{path} is missing", fix=_fix(stem))
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StaleArtifactError(f"{path} is unreadable ({exc.__class__.__name__})", fix=_fix(stem)) from None
    ok = (isinstance(record, dict) and record.get("format") == FORMAT and isinstance(record.get("meta"), dict)
          and isinstance(record.get("sha256"), str) and isinstance(record.get("bytes"), int)
          and isinstance(record.get("tensors"), str) and _PLAIN.match(record["tensors"]))
    if not ok:
        raise StaleArtifactError(f"{path} is not a climd tensor sidecar ({FORMAT})", fix=_fix(stem))
    return record


def verify(stem: Path) -> dict:
    """The sidecar record of ``stem`` once its tensor bytes have been checked (StaleArtifactError)."""
    record = read_meta(stem)
    _verified_bytes(Path(stem), record)
    return record


def _verified_bytes(stem: Path, record: dict) -> bytes:
    path = stem.parent / record["tensors"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StaleArtifactError(f"{path} cannot be read ({exc.strerror or exc})", fix=_fix(stem)) from None
    if len(data) != record["bytes"] or hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise StaleArtifactError(f"{path} is corrupt: its content does not match the SHA-256 recorded in "
                                 f"{stem.name}.json", fix=_fix(stem))
    return data


def load(stem: Path, as_numpy: bool = False, device: str = "cpu") -> tuple[dict, dict]:
    """``(tensors, meta)`` of ``stem``; the tensor bytes are checked against the sidecar's hash."""
    stem = Path(stem)
    record = read_meta(stem)
    path = stem.parent / record["tensors"]
    data = _verified_bytes(stem, record)
    try:
        if as_numpy:
            from safetensors.numpy import load as decode
            return decode(data), record["meta"]
        from safetensors.torch import load as decode
        tensors = decode(data)
    except Exception as exc:   # any decoding failure of verified-but-malformed bytes is the same problem
        raise StaleArtifactError(f"{path} is not a valid safetensors file ({exc})", fix=_fix(stem)) from None
    if device != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return tensors, record["meta"]


def _fix(stem: Path) -> str:
    return f"delete {stem.parent} (or rerun the command that built it with --force) to rebuild it"
