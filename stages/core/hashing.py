"""Content fingerprints and cache keys (a hash of a canonical JSON, as DVC does)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_fingerprint(paths: Iterable[Path], root: Path | None = None) -> str:
    """One hash over the names (relative to ``root``) and contents of ``paths``."""
    paths = sorted(Path(p).resolve() for p in paths)
    if root is None and paths:
        root = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
    h = hashlib.sha256()
    for path in paths:
        name = path.relative_to(Path(root).resolve()).as_posix()
        h.update(name.encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return h.hexdigest()


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(obj) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
