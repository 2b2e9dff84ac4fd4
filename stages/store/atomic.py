"""Atomic writes: a killed process never leaves a half-written file or directory that looks complete.

Files are written to a temporary name in the same directory and renamed over the target
(``os.replace`` is atomic on POSIX file systems, including NFS and Lustre for same-directory renames).
Directories are written under a temporary name guarded by a lease (:mod:`stages.store.lease`), so a cleanup
on any node removes a leftover only once its writer is gone; see :func:`atomic_dir` for what happens
when two writers finish the same target.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Union

from stages.errors import StorageError
from stages.store.lease import (LEASE_FILE, TMP_PREFIX, Lease, _env_seconds, node_tag, parse_tmp, pid_alive, read_record, record_status, remove_if_same, tmp_name, ttl_s)

log = logging.getLogger("climd")

LEFTOVER_AGE_ENV, DEFAULT_LEFTOVER_AGE_S = "CLIMD_LEFTOVER_AGE", 3600.0
_PUBLISH_TRIES = 50
Replace = Union[bool, Callable[[Path], bool]]


def _tmp_name(target: Path) -> Path:
    return tmp_name(target.parent, target.name)


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


class TargetExists(Exception):
    """``atomic_dir(..., replace=False or a callable)``: the target that appeared meanwhile is kept.

    The writer's own temporary folder has been removed; ``target`` is the folder another process
    published. The store turns this into "reused"; it never reaches a user.
    """

    def __init__(self, target: Path):
        self.target = Path(target)
        super().__init__(f"{self.target} was completed by another process meanwhile")


# -- renames that cannot clobber ------------------------------------------------------------------
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # not glibc >= 2.28 / not Linux
    _renameat2 = None


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``: True when done, False when the kernel or file system (NFS)
    cannot do it; raises OSError (EEXIST, ENOENT, ...) otherwise."""
    if _renameat2 is None:
        return False
    if _renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def _move_in(tmp: Path, target: Path) -> bool:
    """Rename ``tmp`` to ``target`` unless a non-empty ``target`` exists; whether it moved."""
    try:
        if _rename2(tmp, target, _RENAME_NOREPLACE):
            return True
        os.rename(tmp, target)  # no renameat2: replaces only an empty directory
        return True
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            return False
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _publish(tmp: Path, target: Path, replace: Replace) -> None:
    """Put the finished ``tmp`` at ``target``; see :func:`atomic_dir`."""
    if callable(replace):
        keep = lambda existing: not replace(existing)  # noqa: E731
    else:
        keep = lambda existing: not replace  # noqa: E731
    asides: list[Path] = []
    try:
        for attempt in range(_PUBLISH_TRIES):
            if _move_in(tmp, target):
                return
            if keep(target):
                _remove(tmp)
                raise TargetExists(target)
            try:
                if _rename2(tmp, target, _RENAME_EXCHANGE):  # atomic swap: target never missing
                    _remove(tmp)  # the replaced version now lives at tmp
                    return
            except FileNotFoundError:
                continue  # the target went away meanwhile: move in on the next round
            # No atomic swap (NFS): move the target aside, then move in on the next round.
            aside = Path(f"{tmp}.old{attempt}")
            try:
                os.rename(target, aside)
            except FileNotFoundError:
                continue
            asides.append(aside)
            if keep(aside):  # someone published a version to keep between the check and the move
                with contextlib.suppress(OSError):
                    os.rename(aside, target)
                    asides.pop()
        raise StorageError(f"could not publish {target}: {_PUBLISH_TRIES} other writers replaced it meanwhile",
                           fix="run fewer writers of the same artifact at once")
    finally:
        for aside in asides:
            _remove(aside)


def _lost(tmp: Path, target: Path) -> StorageError:
    return StorageError(
        f"the temporary folder {tmp} for {target} was removed by another process while this one was "
        f"writing it: this process missed its lease heartbeats for over {ttl_s():g} s "
        "(stopped, suspended or starved?)",
        fix="rerun the command; raise $CLIMD_LEASE_TTL if this process is often paused")


@contextlib.contextmanager
def atomic_dir(target: Path, replace: Replace = True) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``target``; on success it becomes ``target``.

    The temporary directory ``.tmp-<name>-<node>-<pid>-<rand>`` carries a lease
    (``<tmp>.lease``, refreshed by a heartbeat), so no cleanup on any node removes it while this
    process runs. On an exception it is removed and ``target`` is untouched; after a kill it is left
    for :func:`sweep_leftovers` (at once on this node, after the lease TTL elsewhere).

    When ``target`` exists at the end (an older version, or another writer finished first):

    - ``replace=True``: replace it. Atomic (``renameat2(RENAME_EXCHANGE)``) on local file systems;
      on NFS the old version is moved aside first, so a reader may briefly find no ``target``.
    - ``replace=False``: keep it, remove our directory and raise :class:`TargetExists`.
    - ``replace=callable``: ``replace(existing_path)`` decides (e.g. "its key is not mine").

    Two writers finishing together never crash, and the target is always one complete version.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target)
    tmp = _tmp_name(target)
    lease = Lease(file=Path(f"{tmp}.lease"), purpose=f"writing {target.name}")
    lease.acquire()
    try:
        tmp.mkdir()
        try:
            yield tmp
            if not tmp.is_dir():
                raise _lost(tmp, target)
            _publish(tmp, target, replace)
        except BaseException as exc:
            gone = not tmp.exists()
            _remove(tmp)
            if gone and isinstance(exc, OSError):
                raise _lost(tmp, target) from exc
            raise
    finally:
        lease.release()


# -- leftovers -----------------------------------------------------------------------------------
def leftover_age_s() -> float:
    """Age after which a temporary entry without a lease, from another node, is a leftover."""
    return _env_seconds(LEFTOVER_AGE_ENV, DEFAULT_LEFTOVER_AGE_S)


def _leftover_reason(directory: Path, base: str, names: list[str]) -> tuple[str, tuple] | None:
    """Why the temporary entries ``names`` (sharing ``base``) are leftovers; None while in use."""
    rec, st = read_record(directory / f"{base}.lease")
    if rec is not None:
        status = record_status(rec, st)
        return None if status == "live" else (f"its writer's lease is {status}", (rec, st))
    owner = parse_tmp(base)
    if owner and owner[1] == node_tag():
        return None if pid_alive(owner[2]) else (f"its writer (pid {owner[2]}, this node) is gone", ())
    mtimes = []
    for name in names:
        with contextlib.suppress(OSError):
            mtimes.append(os.lstat(directory / name).st_mtime)
    age = time.time() - max(mtimes, default=time.time())
    return (f"no lease, unchanged for {age:.0f} s", ()) if age > leftover_age_s() else None


def _sweep(directory: Path, prefix: str, recursive: bool, removed: list[Path]) -> None:
    try:
        entries = {e.name: e for e in os.scandir(directory)}
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    if LEASE_FILE in entries:
        rec, st = read_record(directory / LEASE_FILE)
        if rec is not None:
            status = record_status(rec, st)
            if status == "live":
                return  # its holder writes in here: nothing below is a leftover
            with contextlib.suppress(OSError):
                if remove_if_same(directory / LEASE_FILE, rec, st):
                    log.info("removed the %s lease %s", status, directory / LEASE_FILE)
                    removed.append(directory / LEASE_FILE)
    groups: dict[str, list[str]] = {}
    for name in entries:
        if name.startswith(prefix):
            parsed = parse_tmp(name)
            groups.setdefault(parsed[0] if parsed else name, []).append(name)
    for base, names in sorted(groups.items()):
        found = _leftover_reason(directory, base, names)
        if found is None:
            continue
        reason, lease = found
        for name in sorted(names, key=lambda n: n == f"{base}.lease"):  # the lease last
            path = directory / name
            try:
                if name == f"{base}.lease" and lease:
                    if not remove_if_same(path, *lease):
                        continue
                else:
                    _remove(path)
            except OSError as exc:  # another user's, or a read-only mount: leave it
                log.warning("could not remove leftover %s: %s", path, exc)
                continue
            log.info("removed leftover %s (%s)", path, reason)
            removed.append(path)
    if recursive:
        for name, entry in sorted(entries.items()):
            if not name.startswith(TMP_PREFIX) and entry.is_dir(follow_symlinks=False):
                _sweep(directory / name, prefix, recursive, removed)


def sweep_leftovers(directory: Path, recursive: bool = True) -> list[Path]:
    """Remove every leftover temporary folder or file under ``directory``; return what was removed.

    A leftover is a ``.tmp-`` entry whose lease is dead or expired; without a lease (temporary
    files of :func:`atomic_write_bytes`), one whose writer was on this node and is gone, or that is
    older than ``$CLIMD_LEFTOVER_AGE`` (default 1 h). Folders holding a live ``.lease.json`` are
    skipped whole; dead or expired ``.lease.json`` files are removed. Nothing live is removed.
    """
    removed: list[Path] = []
    _sweep(Path(directory), TMP_PREFIX, recursive, removed)
    return removed


def remove_orphans(target: Path) -> list[Path]:
    """Remove the leftover temporary siblings of ``target`` (see :func:`sweep_leftovers`)."""
    target = Path(target)
    removed: list[Path] = []
    _sweep(target.parent, f"{TMP_PREFIX}{target.name}-", False, removed)
    return removed


def prune_empty(folder: Path, stop: Path, when: bool = True) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty (when
    ``when``: e.g. only the folders this process created)."""
    folder, stop = Path(folder), Path(stop)
    while when and folder != stop and stop in folder.parents:
        try:
            folder.rmdir()                 # only an empty folder: anything another writer put there stays
        except OSError:
            return
        folder = folder.parent
