"""Reading and walking a cache that other users can write to (a shared cluster file system).

Nothing climd writes, empties or reads inside a cache follows a symbolic link or blocks on a special
file: every path below the cache root is checked with ``lstat`` (:func:`no_links`), files are opened
with ``O_NOFOLLOW | O_NONBLOCK`` and used only when they are regular files (:func:`open_regular`), and
every read has a size bound that fits the file's kind (:data:`LIMITS`), so a FIFO planted as a lease or
a 2 GB ``meta.json`` is "corrupt" (exit 5) at once instead of a hang or a memory exhaustion.

The cache root itself may be a link (``cache -> /scratch/me/cache`` is a user's own choice); nothing
below it may be.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from stages.errors import StaleArtifactError

MiB = 1 << 20
LIMITS = {                      # the largest file of each kind climd ever writes, with a wide margin
    "meta": 64 * MiB,           # meta.json (summaries hold per-class tables, never samples)
    "command": 1 * MiB,         # COMMAND
    "lease": 64 * 1024,         # .lease.json and the .lease of a temporary folder
    "sidecar": 64 * MiB,        # <stem>.json beside a tensor file (checkpoint.json holds the history)
    "json": 256 * MiB,          # other JSON outputs (metrics, distributions, schedules)
}
_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegular(OSError):
    """A path that should be a regular file is a link, a FIFO, a device, a socket or a folder."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path) -> int:
    """A read-only descriptor of ``path`` if it is a regular file (never through a final symbolic
    link, never blocking on a FIFO); NotRegular otherwise, FileNotFoundError when absent."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:           # O_NOFOLLOW on a link
            raise NotRegular(errno.ELOOP, "is a symbolic link", str(path)) from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            raise NotRegular(exc.errno, "is not a regular file", str(path)) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegular(errno.EINVAL, f"is {_kind(st.st_mode)}", str(path))
    if getattr(os, "O_NONBLOCK", 0):
        os.set_blocking(fd, True)              # a regular file: ordinary reads from here on
    return fd


def read_bytes(path: Path, limit: int) -> bytes:
    """The content of the regular file ``path``, at most ``limit`` bytes (NotRegular, or
    :class:`TooLarge` when it is bigger)."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise TooLarge(errno.EFBIG, f"is {size} bytes, over the {limit} bytes a file of its kind may have",
                           str(path))
        data = fh.read(limit + 1)
    if len(data) > limit:                      # grew while being read
        raise TooLarge(errno.EFBIG, f"is over the {limit} bytes a file of its kind may have", str(path))
    return data


class TooLarge(OSError):
    """A file is larger than any file of its kind climd writes."""


def read_text(path: Path, kind: str) -> str:
    """:func:`read_bytes` with the bound of ``kind`` (a key of :data:`LIMITS`), decoded as UTF-8."""
    return read_bytes(path, LIMITS[kind]).decode("utf-8")


def is_regular(path: Path) -> bool:
    """Whether ``path`` itself (not a link's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def is_real_dir(path: Path) -> bool:
    """Whether ``path`` itself (not a link's target) is a folder."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def link_below(root: Path, path: Path) -> Path | None:
    """The first component of ``path`` below ``root`` that is a symbolic link (None: none is).
    Components that do not exist yet end the walk; ``path`` must lie under ``root``."""
    root, path = Path(root), Path(path)
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    current = root
    for part in rel.parts:
        current = current / part
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(st.st_mode):
            return current
    return None


def no_links(root: Path, path: Path, what: str = "") -> Path:
    """``path`` if no component of it below the cache ``root`` is a symbolic link; else a
    StaleArtifactError (exit 5) naming the link and leaving its target untouched."""
    link = link_below(root, path)
    if link is not None:
        target = ""
        with contextlib.suppress(OSError):
            target = f" -> {os.readlink(link)}"
        raise StaleArtifactError(
            f"{link}{target} is a symbolic link inside the cache{f' ({what})' if what else ''}: climd never "
            "writes, empties or reads through a link below the cache root",
            fix=f"remove the link (`rm {link}`, which leaves its target alone) and rerun; to keep a cache "
                "elsewhere, point --cache-dir at it")
    return Path(path)


def corrupt(path: Path, exc: OSError, fix: str) -> StaleArtifactError:
    """The exit-5 error for a cache file that is not a regular file or is too large."""
    return StaleArtifactError(f"{path} is corrupt: it {exc.strerror}", fix=fix)
