"""Atomic writes: a killed process never leaves a half-written file or directory that looks complete.

Files are written to a temporary name in the same directory and renamed over the target
(``os.replace`` is atomic on POSIX file systems, including NFS and Lustre for same-directory renames).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".tmp-"


def _tmp_name(target: Path) -> Path:
    return target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}-{secrets.token_hex(3)}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def _json_default(obj):
    # numpy scalars/arrays and paths appear in summaries; keep json.dumps strict otherwise.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, to_json(obj))


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``target``; on success it replaces ``target``.

    On an exception (or a kill) the temporary directory is removed (or left under a ``.tmp-`` name
    that :func:`remove_orphans` cleans), and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target)
    tmp = _tmp_name(target)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = _tmp_name(target)
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(target: Path) -> None:
    """Delete temporary siblings of ``target`` left by processes that are no longer running."""
    prefix = f"{TMP_PREFIX}{target.name}-"
    if not target.parent.exists():
        return
    for entry in target.parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        pid_part = entry.name[len(prefix):].split("-")[0]
        if pid_part.isdigit() and not _pid_alive(int(pid_part)):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
