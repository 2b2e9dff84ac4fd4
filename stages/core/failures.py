"""What a failure that is not a :class:`~stages.errors.ClimdError` means to a user: every ``OSError``
(a full disk, a read-only cache, a file where a folder should be, a name too long ...), memory
exhaustion (``MemoryError``, "can't start new thread", torch's allocator) and a lost worker each
become one message with a fix and a documented exit code. The command line and the training workers
both go through :func:`classify`, so a failure reads the same wherever it happened.
"""
from __future__ import annotations

import errno

from stages.errors import ClimdError, OutOfMemory, StaleArtifactError, StorageError, UsageError

_STORAGE_FIX = ("free space, or point --cache-dir / $CLIMD_CACHE at a writable folder; the command resumes "
                "where it stopped")
STORAGE_ERRNOS = {"ENOSPC": "the disk is full", "EROFS": "the file system is read-only",
                  "EACCES": "permission denied", "EPERM": "operation not permitted", "EDQUOT": "disk quota exceeded"}
# (errno name) -> (error class, what it means, fix); {path} is the file the system call named.
_LAYOUT = {
    "ENOTDIR": (StorageError, "a file is in the way: a part of {path} is a file where climd needs a folder",
                "move that file away, or choose another --cache-dir / --run"),
    "EEXIST": (StorageError, "a file is in the way: {path} exists and is not a folder",
               "move that file away, or choose another --cache-dir / --run"),
    "EISDIR": (StorageError, "{path} is a folder where climd needs a file", "move that folder away"),
    "ENAMETOOLONG": (UsageError, "the path {path} is too long for the file system",
                     "use a shorter --cache-dir, --run, --variant or --tag"),
    "ELOOP": (StaleArtifactError, "{path} goes through a symbolic link (or a loop of them)",
              "remove the link (climd never follows links inside a cache) and rerun"),
    "EMFILE": (OutOfMemory, "this process has too many open files ({path})", "raise `ulimit -n`, or use fewer --jobs"),
    "ENFILE": (OutOfMemory, "the system has too many open files ({path})", "rerun when the node is less busy"),
    "ENOMEM": (OutOfMemory, "out of memory ({path})", "give the job more memory, or use fewer --jobs"),
    "EIO": (StorageError, "input/output error on {path} (a failing disk or a lost network mount)",
            "check the file system, then rerun"),
    "ESTALE": (StorageError, "{path} went away on the network file system", "rerun"),
}
_MEMORY_TEXT = ("can't start new thread", "failed to map segment", "defaultcpuallocator", "out of memory",
                "cannot allocate memory", "std::bad_alloc")


def classify(exc: BaseException) -> ClimdError | None:
    """The :class:`ClimdError` a user should see for ``exc`` (itself if it is one); None for a bug."""
    if isinstance(exc, ClimdError):
        return exc
    if isinstance(exc, MemoryError):
        return _memory(str(exc) or "MemoryError")
    if isinstance(exc, OSError):
        return os_error(exc)
    if isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _MEMORY_TEXT):
        return _memory(str(exc).splitlines()[0][:200])
    return None


def os_error(exc: OSError) -> ClimdError:
    """Every OSError as a message naming the path, with an exit code (6 unless another fits better)."""
    name = errno.errorcode.get(exc.errno or 0, "")
    path = exc.filename if exc.filename is not None else "the cache"
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    if name in STORAGE_ERRNOS:
        return StorageError(f"cannot write {path}: {STORAGE_ERRNOS[name]} ({name})", fix=_STORAGE_FIX)
    if name in _LAYOUT:
        cls, what, fix = _LAYOUT[name]
        return cls(what.format(path=path) + f" ({name})", fix=fix)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return StorageError(f"cannot read or write {path}: {reason}{f' ({name})' if name else ''}",
                        fix="check the path and its permissions, then rerun")


def _memory(what: str) -> OutOfMemory:
    return OutOfMemory(f"out of memory: {what}",
                       fix="give the job more memory (or address space / threads), or use fewer --jobs or "
                           "fewer replicas per call; the command resumes where it stopped")


def describe_bug(exc: BaseException) -> str:
    """One line for an unexpected exception (the traceback is for --debug)."""
    return f"unexpected {type(exc).__name__}: {exc}"
